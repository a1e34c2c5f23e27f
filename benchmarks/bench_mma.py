"""Benchmark: instruction-level matrix-engine models (fpsim.hardware.mma).

1. A B200 NVFP4 block-scaled GEMM (``tcgen05.mma ... kind::mxf4nvf4.block16``, E2M1
   elements, UE4M3 scales per 16 elements along K), 256x1024x256 by default, with its ratio
   to numpy's float32 matmul (BLAS) on the same shapes in the same run.
2. fpsim against MMA-Sim (``mmasim``, if installed) on the same dot products of the same
   instructions (bit-identical results checked): how many times faster fpsim is.

    python benchmarks/bench_mma.py [--m 256 --k 1024 --n 256] [--rows 4096] [--repeat 3]
"""

from __future__ import annotations

import argparse

import numba
import numpy as np

import fpsim
from _timing import best_time

NVFP4 = "tcgen05.mma.m128n256k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue4m3"


def _nvfp4_operands(rng, shape, axis):
    """E2M1 elements and UE4M3 scales (one per 16 elements along ``axis``)."""
    x = fpsim.quantize(np.clip(rng.standard_normal(shape) * 2, -6, 6), "e2m1")
    sshape = list(shape)
    sshape[axis] //= 16
    s = fpsim.quantize(2.0 ** rng.uniform(-6, 6, sshape), "ue4m3")
    return x, s


def gemm(args, rng):
    m = fpsim.hardware.mma("Blackwell", NVFP4)
    A, SA = _nvfp4_operands(rng, (args.m, args.k), 1)
    B, SB = _nvfp4_operands(rng, (args.k, args.n), 0)
    macs = args.m * args.k * args.n
    A32 = (A * np.repeat(SA, 16, 1)).astype(np.float32)
    B32 = (B * np.repeat(SB, 16, 0)).astype(np.float32)
    t_np = best_time(lambda: A32 @ B32, args.repeat)
    t = best_time(lambda: fpsim.matmul(A, B, model=m, a_scale=SA, b_scale=SB), args.repeat)
    print(f"B200 NVFP4 block-scaled GEMM {args.m}x{args.k}x{args.n}, "
          f"{numba.get_num_threads()} thread(s)")
    print(f"  numpy float32 matmul (BLAS, pre-scaled operands): {t_np * 1e3:9.2f} ms")
    print(f"  fpsim {NVFP4}: {t * 1e3:9.2f} ms  {macs / t / 1e9:7.3f} G MAC/s  "
          f"{t / t_np:7.1f}x numpy time")


def versus_mmasim(args, rng):
    try:
        import torch
        from mmasim.nv_ptx import sim
    except ImportError:
        print("MMA-Sim (mmasim) not installed: fpsim vs MMA-Sim skipped")
        return
    torch.set_num_threads(numba.get_num_threads())  # the same cores for both
    R = args.rows
    cases = []
    # Hopper wgmma bf16 (K=16) and the B200 NVFP4 instruction (K=64)
    a = fpsim.quantize(rng.standard_normal((R, 16)), "bf16")
    b = fpsim.quantize(rng.standard_normal((R, 16)), "bf16")
    c = fpsim.quantize(rng.standard_normal(R), "fp32")
    op = sim.WGMMA("Hopper", "m64n8k16.f32.bf16.bf16")
    ta, tb = (torch.tensor(x, dtype=torch.float32).bfloat16() for x in (a, b))
    tc = torch.tensor(c, dtype=torch.float32)
    cases.append(("Hopper wgmma.m64n8k16.f32.bf16.bf16", op, (ta, tb, tc),
                  fpsim.hardware.mma("Hopper", "wgmma.m64n256k16.f32.bf16.bf16"), (a, b, c), {}))
    a, sa = _nvfp4_operands(rng, (R, 64), 1)
    b, sb = _nvfp4_operands(rng, (R, 64), 1)
    codes = [fpsim.encode(x, "e2m1").astype(np.uint8) for x in (a, b)]
    packed = [torch.tensor((x[:, ::2] << 4) | x[:, 1::2]) for x in codes]
    scales = [torch.tensor(fpsim.encode(s, "ue4m3").astype(np.uint8)).view(torch.float8_e4m3fn)
              for s in (sa, sb)]
    op = sim.TCGen05MMABlockScale("Blackwell", "m128n8k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue4m3")
    cases.append((f"Blackwell {NVFP4.split('.', 2)[2]}", op, (*packed, tc, *scales),
                  fpsim.hardware.mma("Blackwell", NVFP4), (a, b, c), {"a_scale": sa, "b_scale": sb}))
    print(f"fpsim vs MMA-Sim on {R} dot products of one instruction (same inputs, same run, "
          f"{numba.get_num_threads()} thread(s) each)")
    for name, op, targs, model, fargs, kw in cases:
        want = op.dpa(*targs).double().numpy()
        got = fpsim.dot(*fargs, model=model, **kw)
        same = np.array_equal(got.view(np.uint64), want.view(np.uint64))
        t_sim = best_time(lambda: op.dpa(*targs), args.repeat)
        t_fp = best_time(lambda: fpsim.dot(*fargs, model=model, **kw), args.repeat)
        print(f"  {name:<58} MMA-Sim {t_sim * 1e3:8.2f} ms  fpsim {t_fp * 1e3:7.2f} ms  "
              f"{t_sim / t_fp:6.1f}x faster  bit-identical: {same}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=256)
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    rng = np.random.default_rng(0)
    gemm(args, rng)
    versus_mmasim(args, rng)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
