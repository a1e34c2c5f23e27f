"""Benchmark: MX block quantization of a 4096x4096 float32 matrix along either axis.

Reports the time of ``fpsim.quantize(x, "mxfp4" | "mxfp8_e4m3", axis=...)`` and its ratio to
the plain element quantize (``fpsim.quantize(x, "e2m1" | "e4m3")``, no scaling) and to a
numpy copy of the matrix. Target: within 2x of the plain element quantize (PASS/MISS).

    python benchmarks/bench_block.py [--n 4096] [--repeat 7]
"""

from __future__ import annotations

import argparse

import numpy as np

import fpsim
from _timing import best_time  # noqa: E402

TARGET = 2.0  # block quantize / plain element quantize


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    x = np.random.default_rng(0).standard_normal((args.n, args.n)).astype(np.float32)
    t_copy = best_time(lambda: x.copy(), args.repeat)
    print(f"{args.n}x{args.n} float32; numpy copy {t_copy * 1e3:.1f} ms")
    print(f"{'format':<12}{'axis':>5}{'block ms':>10}{'plain ms':>10}{'/plain':>8}{'/copy':>8}  result")
    ok = True
    for name, elem in (("mxfp4", "e2m1"), ("mxfp8_e4m3", "e4m3")):
        t_plain = best_time(lambda: fpsim.quantize(x, elem), args.repeat)
        for axis in (-1, 0):
            t_blk = best_time(lambda: fpsim.quantize(x, name, axis=axis), args.repeat)
            r = t_blk / t_plain
            verdict = "PASS" if r <= TARGET else "MISS"
            ok &= verdict == "PASS"
            print(f"{name:<12}{axis:>5}{t_blk * 1e3:>10.1f}{t_plain * 1e3:>10.1f}{r:>8.2f}"
                  f"{t_blk / t_copy:>8.2f}  {verdict} (target <= {TARGET:g}x plain)")
    print("overall:", "PASS" if ok else "MISS")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
