"""fpsim.torch.quantize: the Numba and pure-torch paths give identical bits; both agree with
independent oracles (torch's own bfloat16/float16/float8 casts, ml_dtypes); gradients."""

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ml_dtypes = pytest.importorskip("ml_dtypes")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fpsim.torch as ft  # noqa: E402

_INT = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
        torch.float64: torch.int64}
_WIDTH = {torch.float16: 16, torch.bfloat16: 16, torch.float32: 32, torch.float64: 64}


def _rand(dtype, n, seed):
    """Random bit patterns (every class: normals, subnormals, zeros, inf, NaN) + edge values."""
    w = _WIDTH[dtype]
    rng = np.random.default_rng(seed)
    b = torch.from_numpy(rng.integers(-(2 ** (w - 1)), 2 ** (w - 1), n, dtype=np.int64))
    x = b.to(_INT[dtype]).view(dtype)
    edges = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), 1e-30, -1e-30, 448, 464,
                          -464, 1.0, 1.5, 2.5, 65504, 3e38], dtype=torch.float64).to(dtype)
    return torch.cat([x, edges])


def _same_bits(a, b):
    return torch.equal(a.view(_INT[a.dtype]), b.view(_INT[b.dtype]))


FMTS = ["e4m3", "e5m2", "bf16", "fp16", "tf32", "e2m1", "e3m2", "e4m3fnuz", "e8m0", "e8m3",
        "int8", "uint4", "fixed(8,3)", "p3109_k8p3"]
MODES = ["rne", "rna", "rtz", "rup", "rdn", "rto", "stochastic"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("fmt", FMTS)
def test_torch_path_equals_numba_path(dtype, fmt):
    x = _rand(dtype, 3000, zlib.crc32(f"{dtype}{fmt}".encode()))
    for mode in MODES:
        for ovf in (None, "saturate", "inf", "nan"):
            kw = dict(rounding=mode, overflow=ovf, nan="zero" if fmt in ("e2m1", "e3m2", "int8", "uint4", "fixed(8,3)") else None, seed=11)
            try:
                a = ft.quantize(x, fmt, impl="numba", **kw)
            except ValueError as e:
                with pytest.raises(ValueError):
                    ft.quantize(x, fmt, impl="torch", **kw)
                continue
            b = ft.quantize(x, fmt, impl="torch", **kw)
            assert a.dtype == b.dtype == x.dtype
            assert _same_bits(a, b), (fmt, mode, ovf)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=40),
       st.sampled_from(MODES), st.sampled_from(["e4m3", "e5m2", "bf16", "e3m4", "e2m1"]),
       st.booleans(), st.integers(0, 2**31))
def test_torch_path_equals_numba_path_property(xs, mode, fmt, ftz, seed):
    x = torch.tensor(xs, dtype=torch.float32)
    kw = dict(rounding=mode, seed=seed, subnormals=not ftz)
    assert _same_bits(ft.quantize(x, fmt, impl="numba", **kw), ft.quantize(x, fmt, impl="torch", **kw))


def _finite(dtype, n, seed):
    x = _rand(dtype, n, seed).to(torch.float32)
    return x[torch.isfinite(x)]


@pytest.mark.parametrize("impl", ["numba", "torch"])
def test_against_torch_casts(impl):
    """Oracle: torch's own RNE casts to bfloat16, float16 and float8."""
    x = _finite(torch.float32, 20000, 1)
    assert _same_bits(ft.quantize(x, "bf16", impl=impl), x.to(torch.bfloat16).float())
    small = x[x.abs() < 60000]
    assert _same_bits(ft.quantize(small, "fp16", impl=impl), small.half().float())
    e4 = x[x.abs() < 464]  # in range: no overflow-policy difference
    assert _same_bits(ft.quantize(e4, "e4m3", impl=impl), e4.to(torch.float8_e4m3fn).float())
    e5 = x[x.abs() < 57344]
    assert _same_bits(ft.quantize(e5, "e5m2", impl=impl), e5.to(torch.float8_e5m2).float())


@pytest.mark.parametrize("impl", ["numba", "torch"])
def test_against_ml_dtypes_from_bf16_and_fp16(impl):
    """16-bit inputs (bfloat16 through its uint16 view) against ml_dtypes' float8 casts."""
    for dt, npdt in ((torch.bfloat16, ml_dtypes.bfloat16), (torch.float16, np.float16)):
        x = _rand(dt, 20000, 3)
        x = x[torch.isfinite(x) & (x.float().abs() < 400)]
        xn = x.float().numpy().astype(npdt)
        want = xn.astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
        got = ft.quantize(x, "e4m3", impl=impl).float().numpy()
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_numba_path_shares_memory_for_input():
    x = torch.randn(1000)
    y = ft.quantize(x, "bf16")
    assert y.dtype == torch.float32 and y.shape == x.shape
    # zero-copy input: the numpy view used by the kernel is x's own buffer
    from fpsim.torch.quantize import _to_numpy
    assert _to_numpy(x).__array_interface__["data"][0] == x.data_ptr()
    xb = x.bfloat16()
    assert _to_numpy(xb).__array_interface__["data"][0] == xb.data_ptr()


def test_noncontiguous_and_scalar():
    x = torch.randn(8, 6).t()
    assert torch.equal(ft.quantize(x, "e4m3"), ft.quantize(x.contiguous(), "e4m3"))
    assert ft.quantize(torch.tensor(0.3), "e4m3").item() == 0.3125


def test_gradients():
    x = torch.tensor([0.3, 500.0, -2.0], requires_grad=True)
    ft.quantize(x, "e4m3").sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]  # straight-through
    x.grad = None
    ft.quantize(x, "e4m3", backward="clip").sum().backward()
    assert x.grad.tolist() == [1.0, 0.0, 1.0]  # 500 > 448 is clipped
    x.grad = None
    (ft.quantize(x, "e4m3", backward="quantize", grad_fmt="e5m2") * 0.3).sum().backward()
    assert x.grad.tolist() == [0.3125, 0.3125, 0.3125]  # 0.3 -> e5m2
    y = ft.quantize(x, "e4m3", backward="none")
    assert not y.requires_grad or y.grad_fn is not None


def test_stochastic_is_reproducible_and_unbiased():
    x = torch.full((20000,), 1.0 + 2**-10)  # 1/8 of the way between two bf16 values
    a = ft.quantize(x, "bf16", rounding="stochastic", seed=5)
    b = ft.quantize(x, "bf16", rounding="stochastic", seed=5, impl="torch")
    assert torch.equal(a, b)
    frac_up = (a > 1).float().mean().item()
    assert 0.11 < frac_up < 0.14


def test_block_format():
    x = torch.randn(4, 64)
    q = ft.quantize(x, "mxfp4")
    import fpsim
    want = fpsim.quantize(x.numpy(), "mxfp4", axis=-1)
    assert np.array_equal(q.numpy(), want)
    assert ft.is_block_format("mxfp4") and not ft.is_block_format("e4m3")


def test_bad_input():
    with pytest.raises(TypeError, match="torch.Tensor"):
        ft.quantize(np.ones(3), "bf16")
    with pytest.raises(TypeError, match="float16/bfloat16/float32/float64"):
        ft.quantize(torch.ones(3, dtype=torch.int32), "bf16")
    with pytest.raises(ValueError, match="backward"):
        ft.quantize(torch.ones(3), "bf16", backward="magic")
    with pytest.raises(ValueError, match="impl"):
        ft.quantize(torch.ones(3), "bf16", impl="cuda")
    with pytest.raises(ValueError, match="NaN"):
        ft.quantize(torch.tensor([float("nan")]), "e2m1", impl="torch")
    for impl in ("numba", "torch"):  # 65504 rounds to the bf16 value 65536, beyond float16
        with pytest.raises(ValueError, match="not representable"):
            ft.quantize(torch.tensor([65504.0], dtype=torch.float16), "bf16", impl=impl)


def test_meta_tensors_give_meta_results():
    """Shape inference on the meta device (issue 16: e2m1 used to fail in Tensor.item())."""
    import fpsim.torch as ft
    for fmt in ("e2m1", "e4m3", "mxfp4"):
        y = ft.quantize(torch.empty(4, 32, device="meta"), fmt)
        assert y.device.type == "meta" and y.shape == (4, 32) and y.dtype == torch.float32
