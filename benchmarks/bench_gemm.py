"""Benchmark: bit-exact emulated GEMM (256x1024x256 by default; bf16 or e4m3 inputs).

Times ``fpsim.matmul`` for the sequential fp32 model (fma off and on), the A100 and H100
bf16 tensor-core models and ``fp8_promoted`` (H100 FP8 partials promoted into fp32 every
128, on e4m3 inputs), against numpy's float32 matmul (BLAS) on the same data in the same
run. Reports G multiply-accumulates/s, the ratio to numpy, PASS/MISS against the ratio
targets of issue 12 (sequential <= 4x numpy, tensor core <= 8x, promoted <= 10x), the
CPU-time ratio (steadier on a shared machine: run with ``--threads 1`` and
``OPENBLAS_NUM_THREADS=1`` for a per-core comparison), the process's peak RSS after each
model next to the size of the output, and whether the results depend on the thread count. ``--m 1024 --k 4096 --n 1024`` shows that the kernels scale.
``--batch 96 --m 128 --k 32 --n 128`` is the batched attention row (all-MiniLM-L6-v2's
scores: 96 matrices of 128x32x128 in one ``fpsim.matmul`` call on (batch, M, K) x
(batch, K, N) arrays; numpy's batched float32 matmul is the reference).

    python benchmarks/bench_gemm.py [--m 256 --k 1024 --n 256] [--batch 0] [--threads 2]
                                    [--repeat 5]
                                    [--models seq,seq-fma,a100,h100,fp8-promoted]
"""

from __future__ import annotations

import argparse
import resource
import time

import numba
import numpy as np

import fpsim

# name: (model, input format, target ratio to numpy's time)
MODELS = {
    "seq": ("sequential fp32", lambda: fpsim.accum.Sequential("fp32"), "bf16", 4.0),
    "seq-fma": ("sequential fp32 fma", lambda: fpsim.accum.Sequential("fp32", fma=True), "bf16",
                4.0),
    "a100": ("tensor core A100 bf16", lambda: fpsim.hardware.tensor_core("A100", "bf16"), "bf16",
             8.0),
    "h100": ("tensor core H100 bf16", lambda: fpsim.hardware.tensor_core("H100", "bf16"), "bf16",
             8.0),
    "fp8-promoted": ("fp8_promoted H100 e4m3", lambda: fpsim.hardware.fp8_promoted(), "e4m3",
                     10.0),
}


def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def best_time(fn, repeat):
    """(best wall time, CPU time of that run) after a warm-up (JIT compile, page faults)."""
    fn()
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        t, c = time.perf_counter(), _cpu()
        fn()
        best = min(best, (time.perf_counter() - t, _cpu() - c))
    return best


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=256)
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch", type=int, default=0,
                    help="leading batch dimension (0: plain 2-D GEMM)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args(argv)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    rng = np.random.default_rng(0)
    lead = (args.batch,) if args.batch > 0 else ()
    a0 = rng.standard_normal(lead + (args.m, args.k))
    b0 = rng.standard_normal(lead + (args.k, args.n))
    nb = max(args.batch, 1)
    macs = nb * args.m * args.k * args.n
    shape = (f"{args.batch} x " if args.batch > 0 else "") + f"{args.m}x{args.k}x{args.n}"
    print(f"GEMM {shape}, {numba.get_num_threads()} thread(s); output "
          f"{nb * args.m * args.n * 8 / 2**20:.1f} MiB (float64), inputs "
          f"{(a0.size + b0.size) * 8 / 2**20:.1f} MiB; peak RSS at start {_peak_rss_mib():.0f} MiB")
    ok = True
    t_np, cpu_np = {}, {}
    for key in args.models.split(","):
        name, make, fmt, target = MODELS[key]
        model = make()
        A, B = fpsim.quantize(a0, fmt), fpsim.quantize(b0, fmt)
        if fmt not in t_np:
            A32, B32 = A.astype(np.float32), B.astype(np.float32)
            t_np[fmt], cpu_np[fmt] = best_time(lambda: A32 @ B32, max(args.repeat, 20))
            print(f"numpy float32 matmul (BLAS), {fmt} data: {t_np[fmt] * 1e3:8.2f} ms  "
                  f"{macs / t_np[fmt] / 1e9:8.2f} G MAC/s  (CPU time {cpu_np[fmt] * 1e3:.2f} ms)")
        t, cpu = best_time(lambda m=model: fpsim.matmul(A, B, model=m), args.repeat)
        rate = macs / t / 1e9
        ratio = t / t_np[fmt]
        res = "PASS" if ratio <= target else "MISS"
        ok &= res == "PASS"
        print(f"{name:<24}: {t * 1e3:8.2f} ms  {rate:8.3f} G MAC/s  "
              f"{ratio:8.1f}x numpy time  target <= {target:g}x: {res}")
        # on a shared machine the wall time includes waiting for the CPU: the rate per
        # CPU-second times the thread count is what dedicated cores would give
        nt = numba.get_num_threads()
        print(f"{'':<24}  CPU time {cpu * 1e3:8.2f} ms -> {macs / max(cpu, 1e-9) * nt / 1e9:.3f} "
              f"G MAC/s on {nt} dedicated core(s) ({cpu / max(cpu_np[fmt], 1e-9):.1f}x numpy's "
              f"CPU time); peak RSS so far {_peak_rss_mib():.0f} MiB")
        # thread-count independence on a slice
        a, b = A[..., :32, :], B[..., :32]
        numba.set_num_threads(1)
        d1 = fpsim.matmul(a, b, model=model)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
        d2 = fpsim.matmul(a, b, model=model)
        same = np.array_equal(d1.view(np.uint64), d2.view(np.uint64))
        print(f"{'':<24}  identical results for 1 and {numba.get_num_threads()} threads: {same}")
    print("overall:", "PASS" if ok else "MISS")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
