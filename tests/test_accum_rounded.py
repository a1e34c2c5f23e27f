"""fpsim.accum.Rounded: operands that are values of a format by construction, whose input
check fpsim.matmul skips - checked against ml_dtypes' casts (an independent rounding), and
the check still refusing everything it refused before for every other input."""

import types

import ml_dtypes
import numpy as np
import pytest
import torch

import fpsim
from fpsim import accum as A
from fpsim.accum.inputs import check_inputs
from fpsim.torch import profiles

SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 2.0**-140, -2.0**-133, 1e-45,
                     3.0e38, -65504.0, 448.0, 464.0, 57344.0, 1.0 + 2.0**-8, 0.1, 6e-8])

ORACLES = [("bf16", ml_dtypes.bfloat16), ("fp16", np.float16), ("e4m3", ml_dtypes.float8_e4m3fn),
           ("e5m2", ml_dtypes.float8_e5m2), ("fp32", np.float32)]


def _inputs(seed=0, n=4000):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * np.exp2(rng.integers(-40, 40, n))
    return np.concatenate([x, SPECIALS])


@pytest.mark.parametrize("name,dt", ORACLES)
def test_rounded_values_are_the_oracle_casts(name, dt):
    x = _inputs()
    if name == "e4m3":  # no inf: ml_dtypes gives NaN beyond 464, fpsim saturates by default
        x = x[~(np.abs(x) >= 464)]
    got = A.Rounded(x, name).values
    with np.errstate(over="ignore"):
        want = x.astype(dt).astype(np.float64)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    assert same.all(), x[~same][:5]
    assert (np.signbit(got) == np.signbit(want))[~np.isnan(want)].all()


@pytest.mark.parametrize("name", ["bf16", "fp16", "e4m3", "e5m2", "e3m2", "e2m1", "tf32",
                                  "e4m3fnuz", "e5m2fnuz", "int8", "fp32"])
def test_the_full_check_accepts_every_rounded_value(name):
    """The skip is sound: quantize-and-compare (the rule it skips) passes on the values."""
    fmt = fpsim.as_format(name)
    nan = None if getattr(fmt, "has_nan", True) else "zero"
    x = _inputs(1)
    r = A.Rounded(x, name, nan=nan)
    # the rule of any model whose input format is fmt (check_inputs reads only these)
    m = types.SimpleNamespace(input_formats=(fmt, fmt), in_fmt=fmt,
                              _multiplier=A.Exact("fp32")._multiplier)
    check_inputs(m, [("A", r.values), ("B", r.values)])  # the full rule: no error
    with pytest.raises(ValueError, match=f"not a value of the model's input format {name}"):
        check_inputs(m, [("A", np.where(np.isnan(x), 0.0, x)), ("B", r.values)])  # it can fail


def test_matmul_of_rounded_operands_gives_the_bits_of_plain_arrays():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((33, 300)), rng.standard_normal((300, 17))
    for m, f in ((fpsim.hardware.tensor_core("H100", "bf16"), "bf16"),
                 (fpsim.hardware.fp8_promoted("H100", "e4m3", 128), "e4m3")):
        want = fpsim.matmul(fpsim.quantize(a, f), fpsim.quantize(b, f), model=m)
        got = fpsim.matmul(A.Rounded(a, f), A.Rounded(b, f), model=m)
        assert np.array_equal(got.view(np.int64), want.view(np.int64))
        part = fpsim.matmul(A.Rounded(a, f)[:, :128], A.Rounded(b, f)[:128], model=m)
        assert np.array_equal(part, fpsim.matmul(fpsim.quantize(a[:, :128], f),
                                                 fpsim.quantize(b[:128], f), model=m))


def test_a_rounded_of_another_format_is_still_checked():
    m = fpsim.hardware.tensor_core("H100", "bf16")
    with pytest.raises(ValueError, match="A holds .*not a value of the model's input format bf16"):
        fpsim.matmul(A.Rounded(np.array([[1.0 + 2.0**-10]]), "fp16"), np.ones((1, 1)), model=m)
    # a wide format proves nothing about 26 significant bits: the narrow test still runs
    with pytest.raises(ValueError, match="more than 26 significant bits"):
        fpsim.matmul(A.Rounded(np.array([[0.1]]), "fp64"), np.ones((1, 1)), model=A.Exact("fp32"))
    # ...and a narrow one passes it, as its plain values do
    assert fpsim.matmul(A.Rounded(np.array([[0.1]]), "bf16"), np.ones((1, 1)),
                        model=A.Exact("fp32")).item() == 0.10009765625


def test_rounded_refuses_what_quantize_refuses():
    with pytest.raises(ValueError, match="seed= is for rounding='stochastic'"):
        A.Rounded(np.ones(2), "bf16", seed=1)
    with pytest.raises(ValueError, match="NaN"):
        A.Rounded(np.array([np.nan]), "e2m1")
    with pytest.raises(TypeError):
        A.Rounded(np.array(["x"]), "bf16")


@pytest.mark.parametrize("prof", ["h100_bf16", "h100_fp8"])
def test_bridge_gemm_equals_numpy_matmul_of_explicitly_rounded_operands(prof):
    """The bridge rounds straight into float64 now: the same bits as rounding the fp32
    tensors (fpsim.torch.quantize, the path before) and multiplying them with fpsim.matmul."""
    import fpsim.torch as ft
    pol = profiles.get(prof)
    g = torch.Generator().manual_seed(3)
    a = torch.randn(2, 40, 256, generator=g) * 3
    b = torch.randn(256, 24, generator=g)
    a[0, 0, 0] = 1e-30  # a subnormal of fp32 (and of neither format)
    got = ft.gemm(a, b, pol).reshape(80, 24)
    if prof == "h100_bf16":
        qa, qb = (ft.quantize(t, "bf16").double().numpy() for t in (a.reshape(80, 256), b))
        want = fpsim.matmul(qa, qb, model=pol.accum)
    else:  # per-tensor amax scaling into E4M3, the scales applied to the fp32 result
        sa, sb = (t.abs().amax() / 448.0 for t in (a, b))
        qa = ft.quantize(a.reshape(80, 256) / sa, "e4m3").double().numpy()
        qb = ft.quantize(b / sb, "e4m3").double().numpy()
        want = fpsim.matmul(qa, qb, model=pol.accum)
        want = torch.from_numpy(want).float() * sa * sb
    assert torch.equal(got, torch.as_tensor(want, dtype=torch.float32))
