"""Throughput of correctly rounded elementwise arithmetic against plain numpy.

Usage::

    python benchmarks/bench_arith.py [--size N] [--repeat R]

Every timing is the minimum over ``R`` repetitions after one warm-up call (the machine may
be shared). Ratios compare timings taken in the same run on the same arrays:

* ``fpsim.add/mul(a, b, fmt)`` (exact result rounded once into fmt) against ``numpy a + b``
  (float64, no rounding into fmt) and against ``numpy a + b`` followed by ``fpsim.quantize``
  (double rounding: what a naive emulation does),
* ``fpsim.lmul`` against ``numpy a * b``.

No targets: this is for information (docs/arithmetic.md, docs/benchmarks.md).
"""

from __future__ import annotations

import argparse

import numpy as np

import fpsim
from _timing import best_time as _best  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1 << 22)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    a = rng.standard_normal(args.size)
    b = rng.standard_normal(args.size)
    t_np_add = _best(lambda: a + b, args.repeat)
    t_np_mul = _best(lambda: a * b, args.repeat)
    print(f"size {args.size}, numpy float64 add {t_np_add * 1e3:.2f} ms, mul {t_np_mul * 1e3:.2f} ms")
    print(f"{'operation':28s} {'ms':>8s} {'Melem/s':>8s} {'x numpy op':>10s} {'x numpy+quantize':>16s}")
    for name in ("bf16", "e4m3", "fp32", "fp64"):
        for op, t_np, npf in (("add", t_np_add, np.add), ("mul", t_np_mul, np.multiply)):
            f = getattr(fpsim, op)
            t = _best(lambda f=f, name=name: f(a, b, name), args.repeat)
            t_naive = _best(lambda npf=npf, name=name: fpsim.quantize(npf(a, b), name), args.repeat)
            print(f"{op + ' -> ' + name:28s} {t * 1e3:8.2f} {args.size / t / 1e6:8.1f} "
                  f"{t / t_np:10.1f} {t / t_naive:16.2f}")
    for name in ("e4m3", "bf16"):
        t = _best(lambda name=name: fpsim.add(a, b, name, rounding="stochastic", seed=1), args.repeat)
        print(f"{'add -> ' + name + ' (SR)':28s} {t * 1e3:8.2f} {args.size / t / 1e6:8.1f} "
              f"{t / t_np_add:10.1f} {'':>16s}")
    for m in (3, 4, 7):
        t = _best(lambda m=m: fpsim.lmul(a, b, m), args.repeat)
        print(f"{'lmul m=' + str(m):28s} {t * 1e3:8.2f} {args.size / t / 1e6:8.1f} "
              f"{t / t_np_mul:10.1f} {'':>16s}")


if __name__ == "__main__":
    main()
