"""Measurement: peak memory of quantize/encode for element, table and block formats.

The peak is taken with ``tracemalloc`` (numpy reports its buffers to it) while one call runs
on a float32 (or float64) standard-normal array, and printed as a multiple of the input size
next to the output size. Target (issue 16): at most about ``1.5 x input + output`` for table
and block formats (PASS/MISS). Not a timed test: run it by hand.

    python benchmarks/bench_memory.py [--mib 32] [--dtype float32]
"""

from __future__ import annotations

import argparse
import tracemalloc

import numpy as np

import fpsim

FORMATS = ("e4m3", "int8", "nf4", "dint4", "mxfp4", "mxfp8_e4m3", "mxint8", "nvfp4",
           "block[nf4,64,fp32]", "scaled[int8,tensor,fp32]")


def peak_of(fn):
    tracemalloc.start()
    try:
        out = fn()
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=32, help="input size in MiB")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    a = ap.parse_args(argv)
    dt = np.dtype(a.dtype)
    x = np.random.default_rng(0).standard_normal((a.mib << 20) // dt.itemsize).astype(dt)
    print(f"input: {x.nbytes / 2**20:.0f} MiB {dt.name}")
    print(f"{'call':<28} {'peak/input':>10} {'output/input':>12} {'bound':>6}  result")
    for name in FORMATS:
        for what, fn in (("quantize", fpsim.quantize), ("encode", fpsim.encode)):
            fn(x[:4096], name)  # compile and warm the caches outside the measurement
            peak, out = peak_of(lambda: fn(x, name))
            outs = out if isinstance(out, tuple) else (out,)
            onb = sum(np.asarray(o).nbytes for o in outs)
            bound = 1.5 + onb / x.nbytes
            ok = "PASS" if peak <= bound * x.nbytes else "MISS"
            print(f"{what + ' ' + name:<28} {peak / x.nbytes:>10.2f} {onb / x.nbytes:>12.2f} "
                  f"{bound:>6.2f}  {ok}")


if __name__ == "__main__":
    main()
