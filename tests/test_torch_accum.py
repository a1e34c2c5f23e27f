"""fpsim.torch.accum (the accumulation models in torch ops, any device) == the Numba kernels
bit for bit, on CPU: every model a torch profile uses, every input class (bf16, fp16, tf32,
e4m3, e5m2, mixed), K not a multiple of the block, K = 1, empty shapes, NaN/inf, subnormals,
overflow; and emulated models under the forced torch path == the Numba path.

The Numba kernels are themselves checked against MMA-Sim, captured GPU data and exact
rationals (tests/test_tensor_cores.py, test_mmasim.py, test_accum.py); here the oracle for
the torch twin is that proven implementation, plus a few hand-derived values."""

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fpsim  # noqa: E402
import fpsim.torch as ft  # noqa: E402
from fpsim import hardware as hw  # noqa: E402
from fpsim.accum import Blocked, FusedBlock, Pairwise, Permuted, Promoted, Sequential  # noqa: E402
from fpsim.torch import accum as ta  # noqa: E402

# (model, A's format, B's format): what the torch profiles run, plus the composites
MODELS = {
    "seq_fp32_fma": (Sequential("fp32", fma=True), "bf16", "bf16"),
    "seq_fp32": (Sequential("fp32"), "fp16", "fp16"),
    "seq_fp32_tf32": (Sequential("fp32", fma=True), "tf32", "tf32"),
    "seq_bf16": (Sequential("bf16", fma=True), "bf16", "bf16"),
    "seq_fp32_bf16_products": (Sequential("fp32", multiply="bf16"), "bf16", "bf16"),
    "seq_fp16_rtz": (Sequential("fp16", rounding="rtz"), "fp16", "fp16"),
    "pairwise_bf16": (Pairwise("bf16"), "e4m3", "e4m3"),
    "h100_bf16": (hw.tensor_core("H100", "bf16"), "bf16", "bf16"),
    "a100_tf32": (hw.tensor_core("A100", "tf32"), "tf32", "tf32"),
    "v100_fp16_fp16": (hw.tensor_core("V100", "fp16", "fp16"), "fp16", "fp16"),
    "ada_e4m3": (hw.tensor_core("Ada", "e4m3"), "e4m3", "e4m3"),
    "ada_e5m2_fp16": (hw.tensor_core("Ada", "e5m2", "fp16"), "e5m2", "e5m2"),
    "b200_e5m2_rne": (hw.tensor_core("B200", "e5m2"), "e5m2", "e5m2"),
    "h100_e4m3xe5m2": (hw.tensor_core("H100", ("e4m3", "e5m2")), "e4m3", "e5m2"),
    "fp8_promoted": (hw.fp8_promoted("H100", "e4m3", 128), "e4m3", "e4m3"),
    "mixed_any_in": (FusedBlock(32, -10, in_fmt=None), "e5m2", "e4m3"),
    "promoted_mixed": (Promoted(FusedBlock(32, -10, in_fmt=None), every=48), "e4m3", "e5m2"),
    "splitk_tc": (Blocked(24, hw.tensor_core("H100", "bf16"), Sequential("fp32", fma=True)), "bf16", "bf16"),
    "splitk_bf16_seq": (Blocked(5, Sequential("bf16", fma=True), Sequential("fp32")), "bf16", "bf16"),
    "permuted": (Permuted(Sequential("bf16"), seed=3), "bf16", "bf16"),
}
SHAPES = [(4, 45, 3), (3, 1, 2), (2, 0, 3), (0, 5, 2), (2, 130, 2)]  # K % block != 0, K=1, empty


def _data(shape, fmt, kind, rng):
    """Values of ``fmt``: random over many binades, with subnormals, +-max and zeros;
    ``kind="special"`` adds +-inf and NaN."""
    f = fpsim.as_format(fmt)
    x = rng.standard_normal(shape) * np.exp2(rng.integers(-8, 8, shape))
    u = rng.random(shape)
    x = np.where(u < 0.1, f.min_subnormal * rng.integers(-3, 4, shape), x)
    x = np.where((u >= 0.1) & (u < 0.15), f.max * np.sign(x), x)  # overflows the accumulators
    x = np.where((u >= 0.15) & (u < 0.2), 0.0, x)
    if kind == "special":
        x = np.where((u >= 0.2) & (u < 0.23), np.inf, x)
        x = np.where((u >= 0.23) & (u < 0.26), -np.inf, x)
        x = np.where((u >= 0.26) & (u < 0.28), np.nan if f.has_nan else 0.0, x)
    return fpsim.quantize(x, fmt, overflow=None if kind == "special" else "saturate")


def _same(d_numba, d_torch):
    """Identical bits except NaN payloads (NaN at the same places)."""
    a, b = np.asarray(d_numba), d_torch.numpy()
    na, nb = np.isnan(a), np.isnan(b)
    return (a.shape == b.shape and np.array_equal(na, nb)
            and np.array_equal(np.where(na, 0.0, a).view(np.int64), np.where(nb, 0.0, b).view(np.int64)))


def _both(model, A, B, C=None):
    want = fpsim.matmul(A, B, C, model=model)
    got = ta.matmul(torch.from_numpy(A), torch.from_numpy(B),
                    None if C is None else torch.from_numpy(C), model=model)
    assert got.dtype == torch.float64
    return want, got


@pytest.mark.parametrize("kind", ["finite", "special"])
@pytest.mark.parametrize("name", list(MODELS))
def test_torch_path_equals_numba(name, kind):
    model, fa, fb = MODELS[name]
    rng = np.random.default_rng(zlib.crc32(f"{name}{kind}".encode()))
    for i, (M, K, N) in enumerate(SHAPES):
        A, B = _data((M, K), fa, kind, rng), _data((K, N), fb, kind, rng)
        # with and without C (a value of the output format) on alternate shapes
        c = fpsim.quantize(rng.standard_normal((M, N)) * 4, model.out_fmt) if i % 2 == 0 else None
        want, got = _both(model, A, B, c)
        assert _same(want, got), (name, kind, M, K, N, c is None)


def test_batched_and_wide_exponents():
    """Batch dims broadcast as in fpsim.matmul; bf16 over its whole range (products far
    outside fp32's range take the exact path, not the float32 shortcut)."""
    rng = np.random.default_rng(1)
    A = fpsim.quantize(rng.standard_normal((2, 3, 40)) * np.exp2(rng.integers(-120, 120, (2, 3, 40))), "bf16")
    B = fpsim.quantize(rng.standard_normal((1, 40, 4)) * np.exp2(rng.integers(-120, 120, (1, 40, 4))), "bf16")
    C = np.random.default_rng(2).standard_normal((2, 3, 4))  # not fp32 values
    for m in (Sequential("fp32", fma=True), hw.tensor_core("H100", "bf16"), Sequential("fp32")):
        assert _same(*_both(m, A, B)), m
        if not isinstance(m, FusedBlock):
            assert _same(*_both(m, A[:, :, :8], B[:, :8], C)), m


@settings(deadline=None, max_examples=25)
@given(st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_random_bit_patterns(K, seed):
    """Random bf16 bit patterns (every class, NaN included) through a tensor core and a bf16
    sequential accumulator."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**16, (2 * K + K * 2,), dtype=np.uint32) << 16
    with np.errstate(invalid="ignore"):  # signalling NaN patterns
        v = bits.view(np.float32).astype(np.float64)
    A, B = v[:2 * K].reshape(2, K), v[2 * K:].reshape(K, 2)
    for m in (hw.tensor_core("A100", "bf16"), Sequential("bf16", fma=True)):
        assert _same(*_both(m, A, B)), m


def test_hand_values():
    """Values derived by hand: no guard bits in the V100 block; inf - inf is NaN; an fp32
    accumulator that overflowed to -inf stays -inf (also in the Numba fp32 fast kernel)."""
    v100 = FusedBlock(4, 0, in_fmt="fp16")
    a = torch.tensor([[1.0, 2.0**-12, 2.0**-12, 0.0]])
    assert ta.matmul(a, a.T, model=v100).item() == 1.0  # 2**-24 terms truncated at 2**-23
    assert ta.matmul(a, a.T, model=fpsim.accum.Sequential("fp32", fma=True)).item() == 1.0
    inf = torch.tensor([[float("inf"), -float("inf")]], dtype=torch.float64)
    assert torch.isnan(ta.matmul(inf, torch.ones(2, 1, dtype=torch.float64), model=v100)).all()
    A = np.array([[-2.0**100, 1.0]]); B = np.array([[2.0**100], [1.0]])
    for fma in (True, False):
        m = Sequential("fp32", fma=fma)
        assert fpsim.matmul(A, B, model=m)[0, 0] == -np.inf
        assert ta.matmul(torch.from_numpy(A), torch.from_numpy(B), model=m).item() == -np.inf


def test_errors_and_backend_choice(monkeypatch):
    m = hw.tensor_core("H100", "bf16")
    with pytest.raises(ValueError, match="not a value of the model's input format bf16"):
        ta.matmul(torch.tensor([[0.1]]), torch.tensor([[1.0]]), model=m)
    with pytest.raises(ValueError, match="more than 26 significant bits"):
        ta.matmul(torch.tensor([[0.1]], dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64),
                  model=Sequential("fp32", fma=True))
    with pytest.raises(NotImplementedError, match="not written in torch ops"):
        ta.matmul(torch.ones(1, 1), torch.ones(1, 1), model=fpsim.accum.Exact("fp32"))
    with pytest.raises(ValueError, match="K=2 columns"):
        ta.matmul(torch.ones(1, 2), torch.ones(3, 1), model=m)
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    monkeypatch.delenv(ta.ENV, raising=False)
    assert [ta.backend(d, m) for d in (cpu, cuda, mps)] == ["numba", "torch", "numba"]
    assert ta.backend(cuda, fpsim.accum.Exact("fp32")) == "numba"  # not written in torch
    assert ta.backend(cuda, Sequential("fp32", multiply=fpsim.accum.LMulProduct(3))) == "numba"
    monkeypatch.setenv(ta.ENV, "torch")
    assert ta.backend(cpu, m) == "torch"
    monkeypatch.setenv(ta.ENV, "numba")
    assert ta.backend(cuda, m) == "numba"
    monkeypatch.setenv(ta.ENV, "gpu")
    with pytest.raises(ValueError, match="allowed auto, torch, numba"):
        ta.backend(cpu, m)


def _train_step(prof, monkeypatch, backend):
    monkeypatch.setenv(ta.ENV, backend)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(40, 24), torch.nn.GELU(), torch.nn.Linear(24, 8))
    x = torch.randn(2, 6, 40) * 3
    with ft.emulate(prof):
        y = net(x)
        y.square().sum().backward()
    return [y.detach()] + [p.grad for p in net.parameters()]


# the tensor-core models, and the instruction-level engines (fpsim.torch.accum_scaled,
# fpsim.torch.accum_mfma: Blackwell block-scaled MMA, AMD MFMA)
@pytest.mark.parametrize("prof", ["h100_bf16", "h100_fp8", "a100_tf32", "b200_nvfp4",
                                  "b200_mxfp8", "mi300x_fp8"])
def test_emulated_model_forced_torch_path_equals_numba(prof, monkeypatch):
    """Forward and both backward GEMMs of a small MLP: same bits on both paths, and the
    torch twin really ran."""
    calls = []
    real = ta.matmul
    monkeypatch.setattr(ta, "matmul", lambda *a, **k: calls.append(1) or real(*a, **k))
    ref = _train_step(prof, monkeypatch, "numba")
    assert not calls
    got = _train_step(prof, monkeypatch, "torch")
    assert calls  # the torch path really ran
    for r, g in zip(ref, got):
        assert torch.equal(r.view(torch.int32), g.view(torch.int32)), prof


def test_gpu_check_script_without_gpu():
    """benchmarks/gpu_check.py: without a CUDA device it says so (status 2); its captured
    problems are regenerated exactly from their seeds and are values of their format."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gc)
    if not torch.cuda.is_available():
        assert gc.main([]) == 2
    for fmt in ("e4m3", "bf16"):
        A, B = gc.problem(7, fmt, 16, 32, 16)
        A2, B2 = gc.problem(7, fmt, 16, 32, 16)
        assert gc._crc(A, B) == gc._crc(A2, B2)
        assert np.array_equal(fpsim.quantize(A, fmt), A) and np.array_equal(fpsim.quantize(B, fmt), B)
