"""GPU check of the torch accumulation path (fpsim.torch.accum) and capture of the GPU's GEMMs.

On a machine with a CUDA device:

1. **check**: random GEMMs (every model the torch profiles use, K not a multiple of the
   block, K = 1, subnormals, overflow, inf/NaN) evaluated by ``fpsim.torch.accum.matmul`` on
   the GPU and by ``fpsim.matmul`` (the Numba kernels) on the CPU must agree bit for bit:
   the tensor cores, the MI300X MFMA (``mi300x_fp8``), the fp64 FMA chain, and the
   block-scaled B200 models (``b200_mxfp8``, ``b200_nvfp4``: the operands encoded on the GPU
   by ``fpsim.torch.block_quant`` against ``fpsim.encode``, the GEMM by
   ``fpsim.torch.accum_scaled`` against ``fpsim.matmul`` with scales), and the NVFP4
   recipe's 2D weight tiles (GPU against CPU);
2. **throughput**: a ``--m x --k x --n`` GEMM of bf16 inputs under the H100 bf16 tensor-core
   model, the FP8 promoted model and sequential fp32 (and of FP8 / NVFP4 inputs under the
   MI300X MFMA and the B200 ``kind::mxf4nvf4`` block16 models), against the GPU's native bf16
   ``torch.matmul`` in the same run (G multiply-accumulates/s and the ratio);
3. **capture**: what this GPU's own ``torch.matmul`` (bf16, fp16, tf32) and
   ``torch._scaled_mm`` (e4m3, fast accumulation on and off) return for a few hundred small
   random problems, written to ``--out`` (``.npz``, a few hundred KB: the inputs are
   regenerated from their seeds by :func:`problem`, a CRC32 of the input bytes checks that;
   the outputs, shapes, library flags and device name are stored) for a later GEMM-level
   model of the library (K order, split-K, promotion).

Without a CUDA device the script says so and exits with status 2, unless ``--cpu`` is given:
then it runs the check and the throughput comparison on the CPU (torch path against the
Numba kernels; no capture, which needs the GPU).

    python benchmarks/gpu_check.py [--out gpu_gemms.npz] [--m 256 --k 1024 --n 256]
    python benchmarks/gpu_check.py --cpu [--m 128 --k 256 --n 128]

Exit status: 0 when every check passes, 1 on a mismatch, 2 without a device.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import best_time  # noqa: E402


def _models():
    from fpsim import hardware as hw
    from fpsim.accum import FusedBlock, Promoted, Sequential
    return {
        "seq fp32 fma (bf16)": (Sequential("fp32", fma=True), "bf16", "bf16"),
        "seq fp32 (fp16)": (Sequential("fp32"), "fp16", "fp16"),
        "seq bf16 (bf16)": (Sequential("bf16", fma=True), "bf16", "bf16"),
        "H100 bf16": (hw.tensor_core("H100", "bf16"), "bf16", "bf16"),
        "A100 tf32": (hw.tensor_core("A100", "tf32"), "tf32", "tf32"),
        "V100 fp16 -> fp16": (hw.tensor_core("V100", "fp16", "fp16"), "fp16", "fp16"),
        "Ada e4m3": (hw.tensor_core("Ada", "e4m3"), "e4m3", "e4m3"),
        "B200 e5m2": (hw.tensor_core("B200", "e5m2"), "e5m2", "e5m2"),
        "H100 e4m3 x e5m2": (hw.tensor_core("H100", ("e4m3", "e5m2")), "e4m3", "e5m2"),
        "H100 fp8 promoted": (hw.fp8_promoted("H100", "e4m3", 128), "e4m3", "e4m3"),
        "mixed fp8 promoted": (Promoted(FusedBlock(32, -10, in_fmt=None), every=128), "e5m2", "e4m3"),
        "MI300X e4m3fnuz MFMA": (hw.tensor_core("MI300X", "e4m3fnuz"), "e4m3fnuz", "e4m3fnuz"),
        "seq fp64 (fp32)": (Sequential("fp64"), "fp32", "fp32"),
        "seq fp64 fma (fp32)": (Sequential("fp64", fma=True), "fp32", "fp32"),
    }


#: Block-scaled models of the torch profiles (b200_mxfp8, b200_nvfp4): (GPU kind, A, B formats).
BLOCK_MODELS = {"B200 mxfp8": ("mxfp8", "mxfp8_e4m3", "mxfp8_e4m3"),
                "B200 mxfp8 x e5m2": (("mxfp8_e4m3", "mxfp8_e5m2"), "mxfp8_e4m3", "mxfp8_e5m2"),
                "B200 nvfp4": ("nvfp4", "nvfp4", "nvfp4")}


def _same(want, got):
    """Bit identity with NaN == NaN."""
    want, got = np.asarray(want, np.float64), np.asarray(got, np.float64)
    nw, ng = np.isnan(want), np.isnan(got)
    return want.shape == got.shape and np.array_equal(nw, ng) and np.array_equal(
        np.where(nw, 0.0, want).view(np.int64), np.where(ng, 0.0, got).view(np.int64))


def check_block(device, trials):
    """Block quantization (fpsim.torch.block_quant, the NVFP4 recipe's 2D tiles) and the
    block-scaled GEMMs (fpsim.torch.accum_scaled) on ``device`` == fpsim.encode and
    fpsim.matmul on the CPU; returns the number of mismatches."""
    import torch
    import fpsim
    from fpsim.torch import accum as ta
    from fpsim.torch.block_quant import block_operand
    from fpsim.torch.recipes import nvfp4_operand
    rng = np.random.default_rng(13)
    bad = 0
    for name, (kind, fa, fb) in BLOCK_MODELS.items():
        model = fpsim.hardware.tensor_core("B200", kind)
        n = fails = 0
        for t in range(trials):
            for M, K, N in [(5, 64, 3), (7, 45, 5), (16, 128, 16), (3, 300, 4)]:
                A = rng.standard_normal((M, K)) * np.exp2(rng.integers(-6, 6, (M, K)))
                B = rng.standard_normal((K, N)) * np.exp2(rng.integers(-6, 6, (K, N)))
                if t % 2:
                    A[0, 0], B[1, 0] = np.inf, np.nan
                ops = []
                for X, f, ax in ((A, fa, -1), (B, fb, -2)):
                    fmt = fpsim.parse(f)
                    e, s, g = block_operand(torch.from_numpy(X).to(device), fmt, ax)
                    c = fpsim.encode(X, fmt, axis=ax)
                    ce = fpsim.decode(c.elements, fmt.elem)
                    L = X.shape[ax]
                    ok = (_same(ce, e.cpu().numpy().take(range(L), axis=ax))
                          and _same(fpsim.decode(c.scales, fmt.scale), s.cpu().numpy()))
                    fails += not ok
                    n += 1
                    ops.append((e, s, g))
                (ea, sa, _), (eb, sb, _) = ops
                want = fpsim.matmul(ea.cpu().numpy(), eb.cpu().numpy(), model=model,
                                    a_scale=sa.cpu().numpy(), b_scale=sb.cpu().numpy())
                got = ta.matmul(ea, eb, model=model, a_scale=sa, b_scale=sb).cpu().numpy()
                fails += not _same(want, got)
                n += 1
        print(f"  check {name:22s} {n - fails:4d}/{n} encodings and GEMMs bit-identical")
        bad += fails
    # the NVFP4 recipe's 2D (16x16) weight scales: on the device == on the CPU (torch ops)
    W = rng.standard_normal((48, 40))
    cpu = nvfp4_operand(torch.from_numpy(W), -2, tile=16)
    dev = nvfp4_operand(torch.from_numpy(W).to(device), -2, tile=16)
    ok = all(_same(a.cpu().numpy(), b.cpu().numpy()) for a, b in zip(cpu[:2], dev[:2]))
    print(f"  check {'NVFP4 recipe 2D tiles':22s} {'bit-identical' if ok else 'MISMATCH'}")
    return bad + (not ok)


def _data(shape, fmt, rng, special):
    import fpsim
    f = fpsim.as_format(fmt)
    x = rng.standard_normal(shape) * np.exp2(rng.integers(-10, 10, shape))
    u = rng.random(shape)
    x = np.where(u < 0.05, f.min_subnormal * rng.integers(-3, 4, shape), x)
    x = np.where((u >= 0.05) & (u < 0.07), f.max * np.sign(x), x)
    x = np.where((u >= 0.07) & (u < 0.1), 0.0, x)
    if special:
        x = np.where((u >= 0.1) & (u < 0.11), np.inf, x)
        x = np.where((u >= 0.11) & (u < 0.12), -np.inf, x)
        x = np.where((u >= 0.12) & (u < 0.13), np.nan if f.has_nan else 0.0, x)
    return fpsim.quantize(x, fmt, overflow=None if special else "saturate")


def check(device, trials):
    """torch path on ``device`` == Numba kernels on the CPU; returns the number of mismatches."""
    import torch
    import fpsim
    from fpsim.torch import accum as ta
    models = _models()
    bad = 0
    rng = np.random.default_rng(12)
    shapes = [(7, 45, 5), (3, 1, 4), (2, 0, 3), (9, 300, 6), (16, 128, 16)]
    for name, (model, fa, fb) in models.items():
        if not ta.supports(model):  # no torch twin: the CPU kernels run it on every device
            print(f"  check {name:22s} no torch twin (fpsim.torch.accum.supports): skipped")
            continue
        n = fails = 0
        for t in range(trials):
            for M, K, N in shapes:
                special = t % 2 == 1
                A, B = _data((M, K), fa, rng, special), _data((K, N), fb, rng, special)
                want = fpsim.matmul(A, B, model=model)
                got = ta.matmul(torch.from_numpy(A).to(device), torch.from_numpy(B).to(device),
                                model=model).cpu().numpy()
                nw, ng = np.isnan(want), np.isnan(got)
                ok = (np.array_equal(nw, ng) and np.array_equal(
                    np.where(nw, 0.0, want).view(np.int64), np.where(ng, 0.0, got).view(np.int64)))
                n += 1
                fails += not ok
        print(f"  check {name:22s} {n - fails:4d}/{n} GEMMs bit-identical")
        bad += fails
    return bad


def _sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(device, m, k, n, repeat):
    """G MAC/s of the torch path (and, on CPU, of the Numba path) against native matmul."""
    import torch
    import fpsim
    from fpsim import hardware as hw
    from fpsim.torch import accum as ta
    from fpsim.torch.block_quant import block_operand
    rng = np.random.default_rng(0)
    A = fpsim.quantize(rng.standard_normal((m, k)), "bf16")
    B = fpsim.quantize(rng.standard_normal((k, n)), "bf16")
    A8 = fpsim.quantize(rng.standard_normal((m, k)), "e4m3")
    B8 = fpsim.quantize(rng.standard_normal((k, n)), "e4m3")
    macs = m * k * n
    tA, tB = torch.from_numpy(A).to(device), torch.from_numpy(B).to(device)
    tA8, tB8 = torch.from_numpy(A8).to(device), torch.from_numpy(B8).to(device)
    native_dt = torch.bfloat16 if device.type == "cuda" else torch.float32
    nA, nB = tA.to(native_dt), tB.to(native_dt)

    def timed(fn):
        def run():
            fn()
            _sync(device)
        return best_time(run, repeat)

    t_nat = timed(lambda: nA @ nB)
    what = "bf16" if device.type == "cuda" else "float32"
    print(f"  GEMM {m}x{k}x{n} on {device}: native {what} torch.matmul {t_nat * 1e3:9.2f} ms "
          f"{macs / t_nat / 1e9:9.2f} G MAC/s")
    Af = fpsim.quantize(rng.standard_normal((m, k)), "e4m3fnuz")
    Bf = fpsim.quantize(rng.standard_normal((k, n)), "e4m3fnuz")
    nv = fpsim.parse("nvfp4")  # NVFP4 operands encoded on the device (block_quant)
    ea, sa, _ = block_operand(torch.from_numpy(A).to(device), nv, -1)
    eb, sb, _ = block_operand(torch.from_numpy(B).to(device), nv, -2)
    scales = {"a_scale": sa, "b_scale": sb}
    np_scales = {key: v.cpu().numpy() for key, v in scales.items()}
    rows = {}
    for name, model, a, b, na, nb, kw, nkw in [
            ("seq fp32 fma", fpsim.accum.Sequential("fp32", fma=True), tA, tB, A, B, {}, {}),
            ("H100 bf16 tensor core", hw.tensor_core("H100", "bf16"), tA, tB, A, B, {}, {}),
            ("H100 fp8 promoted", hw.fp8_promoted("H100", "e4m3", 128), tA8, tB8, A8, B8, {}, {}),
            ("MI300X fp8 MFMA", hw.tensor_core("MI300X", "e4m3fnuz"),
             torch.from_numpy(Af).to(device), torch.from_numpy(Bf).to(device), Af, Bf, {}, {}),
            ("B200 nvfp4 block16", hw.tensor_core("B200", "nvfp4"), ea, eb, ea.cpu().numpy(),
             eb.cpu().numpy(), scales, np_scales)]:
        t_t = timed(lambda: ta.matmul(a, b, model=model, **kw))
        line = (f"  {name:22s} torch path {t_t * 1e3:9.1f} ms {macs / t_t / 1e9:7.3f} G MAC/s "
                f"({t_t / t_nat:7.0f}x native)")
        if device.type == "cpu":
            t_n = best_time(lambda: fpsim.matmul(na, nb, model=model, **nkw), repeat)
            line += f"; Numba {t_n * 1e3:8.1f} ms (torch path {t_t / t_n:5.1f}x Numba's time)"
        print(line)
        rows[name] = t_t
    return rows


# ---------------------------------------------------------------------------------------
# capture of the GPU's own GEMMs
# ---------------------------------------------------------------------------------------

#: (op, input format, output) of the captured GEMMs.
OPS = (("matmul", "bf16", "bf16"), ("matmul", "fp16", "fp16"), ("matmul_tf32", "tf32", "fp32"),
       ("scaled_mm", "e4m3", "fp32"), ("scaled_mm_fast", "e4m3", "fp32"))
KS = (16, 32, 64, 128, 256, 512, 1024, 4096)


def problem(seed, fmt, M, K, N):
    """The inputs (float64 values of ``fmt``) of one captured problem, regenerated from its
    seed: integer draws only (stable across numpy versions); exponents spread over 2**+-8 so
    that alignment and truncation matter."""
    import fpsim
    rng = np.random.default_rng(seed)
    f = fpsim.as_format(fmt)

    def gen(shape):  # normal values of fmt (saturated at its max: e4m3's top binade)
        sig = rng.integers(0, 1 << f.man_bits, shape)
        e = rng.integers(max(-8, f.emin), 9, shape)
        s = rng.integers(0, 2, shape) * 2 - 1
        return fpsim.quantize(s * (1.0 + sig / 2.0 ** f.man_bits) * np.exp2(e), fmt,
                              overflow="saturate")

    return gen((M, K)), gen((K, N))


def _crc(A, B):
    return zlib.crc32(np.ascontiguousarray(A).tobytes() + np.ascontiguousarray(B).tobytes())


def capture(device, out, per_k):
    import torch
    M = N = 16  # torch._scaled_mm needs multiples of 16
    flags = {"allow_tf32": torch.backends.cuda.matmul.allow_tf32,
             "allow_bf16_reduced_precision_reduction":
                 torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
             "allow_fp16_reduced_precision_reduction":
                 torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction}
    rec = {"op": [], "K": [], "seed": [], "crc": [], "D": []}
    for oi, (op, fmt, _) in enumerate(OPS):
        for K in KS:
            for j in range(per_k):
                seed = 1_000_000 * oi + 1000 * K + j
                A, B = problem(seed, fmt, M, K, N)
                a, b = torch.from_numpy(A).to(device), torch.from_numpy(B).to(device)
                if op == "matmul":
                    dt = torch.bfloat16 if fmt == "bf16" else torch.float16
                    D = (a.to(dt) @ b.to(dt)).float()
                elif op == "matmul_tf32":
                    old = torch.backends.cuda.matmul.allow_tf32
                    torch.backends.cuda.matmul.allow_tf32 = True
                    try:
                        D = a.float() @ b.float()
                    finally:
                        torch.backends.cuda.matmul.allow_tf32 = old
                else:
                    one = torch.ones((), device=device)
                    D = torch._scaled_mm(a.to(torch.float8_e4m3fn),
                                         b.to(torch.float8_e4m3fn).t().contiguous().t(),
                                         scale_a=one, scale_b=one, out_dtype=torch.float32,
                                         use_fast_accum=op.endswith("fast"))
                rec["op"].append(oi)
                rec["K"].append(K)
                rec["seed"].append(seed)
                rec["crc"].append(_crc(A, B))
                rec["D"].append(D.cpu().numpy().astype(np.float32))
    props = torch.cuda.get_device_properties(device)
    np.savez_compressed(
        out, op=np.array(rec["op"], np.int8), K=np.array(rec["K"], np.int32),
        seed=np.array(rec["seed"], np.int64), crc=np.array(rec["crc"], np.uint32),
        D=np.stack(rec["D"]), M=M, N=N, ops=np.array([" ".join(o) for o in OPS]),
        device=props.name, capability=f"{props.major}.{props.minor}",
        torch=torch.__version__, cuda=str(torch.version.cuda),
        flags=np.array([f"{k}={v}" for k, v in flags.items()]))
    print(f"  captured {len(rec['D'])} problems ({len(OPS)} ops x {len(KS)} K x {per_k}) -> "
          f"{out} ({os.path.getsize(out) / 1024:.0f} KB)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="no GPU: run the checks on the CPU")
    ap.add_argument("--out", default="gpu_gemms.npz", help="capture file (GPU only)")
    ap.add_argument("--m", type=int, default=256)
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--trials", type=int, default=4,
                    help="random GEMMs per model and shape (0: no check)")
    ap.add_argument("--per-k", type=int, default=8, help="captured problems per op and K")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads of torch and Numba (0: their defaults); on a loaded "
                         "machine 1 avoids the spin-waiting of oversubscribed thread pools")
    args = ap.parse_args(argv)
    import torch
    if args.threads:
        import numba
        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    if torch.cuda.is_available():
        device = torch.device("cuda")
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    elif args.cpu:
        device = torch.device("cpu")
        print(f"no CUDA device: CPU-only checks (torch {torch.__version__}, "
              f"{torch.get_num_threads()} torch threads)")
    else:
        print("no CUDA device on this machine (torch.cuda.is_available() is False): nothing "
              "to check or capture; run with --cpu for the CPU-only checks")
        return 2
    t0 = time.perf_counter()
    bad = (check(device, args.trials) + check_block(device, args.trials)) if args.trials else 0
    throughput(device, args.m, args.k, args.n, args.repeat)
    if device.type == "cuda":
        capture(device, args.out, args.per_k)
    print(f"{'PASS' if bad == 0 else 'FAIL'}: {bad} mismatching GEMM(s); "
          f"{time.perf_counter() - t0:.0f} s")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
