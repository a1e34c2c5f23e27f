"""fpsim.torch.block_quant (block quantization in torch ops, any device) == fpsim.encode (the
Numba block kernels, themselves checked against ml_dtypes/gfloat and the OCP MX rules in
tests/test_block.py) bit for bit: every block preset of float elements x every deterministic
rounding mode x every scale rule, along the last and other axes, partial last blocks,
zeros, subnormal and huge inputs, inf/NaN blocks; and block_scaled_matmul on the torch path
(encoding and GEMM on the device) == its Numba path."""

import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fpsim  # noqa: E402
from fpsim.block import MX_FORMATS  # noqa: E402
from fpsim.torch import accum as ta  # noqa: E402
from fpsim.torch import block_quant as bq  # noqa: E402
from fpsim.torch.gemm import block_scaled_matmul  # noqa: E402

PRESETS = [f for f in MX_FORMATS if f != "mxint8"] + ["nvfp4"]
RULES = {"mxfp4": ["ceil", "even", "rceil", "rne", "rtz"], "nvfp4": ["rtz", "rup"]}


def _data(rng, shape):
    x = rng.standard_normal(shape) * 2.0 ** rng.integers(-40, 40, shape[:-1] + (1,))
    u = rng.random(shape)
    x[u < 0.05] = 0.0
    x[(u > 0.05) & (u < 0.06)] = np.inf
    x[(u > 0.06) & (u < 0.065)] = -np.inf
    x[(u > 0.065) & (u < 0.07)] = np.nan
    x[(u > 0.07) & (u < 0.1)] *= 2.0**-1000  # float64 subnormals among normal values
    x[(u > 0.1) & (u < 0.12)] = 2.0**1000 * np.sign(x[(u > 0.1) & (u < 0.12)])
    x[:2] = 0.0  # all-zero blocks
    x[2] = rng.standard_normal(shape[1:]) * 2.0**-1060  # a block of float64 subnormals
    return x


def _reference(x, fmt, axis, rounding):
    c = fpsim.encode(x, fmt, axis=axis, rounding=rounding)
    e = fpsim.decode(c.elements, fmt.elem)
    pad = -x.shape[axis] % fmt.block
    if pad:
        w = [(0, 0)] * x.ndim
        w[axis] = (0, pad)
        e = np.pad(e, w)
    ts = None if c.tensor_scale is None else float(
        fpsim.decode(np.array([c.tensor_scale]), fmt.tensor_scale)[0])
    return e, fpsim.decode(c.scales, fmt.scale), ts


def _same(want, got):
    a, b = np.asarray(want), got.numpy()
    na, nb = np.isnan(a), np.isnan(b)
    return (a.shape == b.shape and np.array_equal(na, nb)
            and np.array_equal(np.where(na, 0.0, a).view(np.int64), np.where(nb, 0.0, b).view(np.int64)))


def _formats():
    out = []
    for name in PRESETS:
        f = fpsim.parse(name)
        out.append((name, f))
        for r in RULES.get(name, []):
            out.append((f"{name}:{r}", f.replace(scale_rounding=r)))
    return out


FORMATS = _formats()


@pytest.mark.parametrize("rounding", bq.ROUNDINGS)
@pytest.mark.parametrize("name,fmt", FORMATS, ids=[f[0] for f in FORMATS])
def test_block_operand_equals_encode(name, fmt, rounding):
    assert bq.supports(fmt, rounding)
    rng = np.random.default_rng(zlib.crc32(f"{name}{rounding}".encode()))
    for axis, shape in ((-1, (6, 70)), (-2, (70, 5)), (1, (3, 40, 2))):
        x = _data(rng, shape) if axis != 1 else rng.standard_normal(shape) * 1e3
        want = _reference(x, fmt, axis, rounding)
        e, s, ts = bq.block_operand(torch.from_numpy(x), fmt, axis, rounding)
        assert _same(want[0], e) and _same(want[1], s) and want[2] == ts, (name, rounding, axis)
    # a finite tensor: NVFP4's tensor scale from the amax, not from inf
    x = _data(rng, (4, 48))
    x = np.where(np.isfinite(x), x, 3.0)
    want = _reference(x, fmt, -1, rounding)
    e, s, ts = bq.block_operand(torch.from_numpy(x), fmt, -1, rounding)
    assert _same(want[0], e) and _same(want[1], s) and want[2] == ts, (name, rounding)


def test_what_is_not_written_here():
    assert not bq.supports(fpsim.parse("mxint8"))  # fixed-point elements
    assert not bq.supports(fpsim.parse("mxfp4"), "stochastic")
    assert not bq.supports(fpsim.parse("e4m3"))
    with pytest.raises(ValueError, match="not written in torch ops"):
        bq.block_operand(torch.ones(2, 32), fpsim.parse("mxint8"))


@pytest.mark.parametrize("kind,rounding", [("mxfp8", "rne"), ("mxfp8", "rtz"), ("nvfp4", "rne"),
                                           ("nvfp4", "rup"), ("mxfp4", "rna")])
def test_block_scaled_matmul_torch_path_equals_numba(kind, rounding, monkeypatch):
    """Encoding and GEMM on the device (forced torch path) == the CPU kernels, K not a
    multiple of the block, a mixed-format pair (swapped operands), inf/NaN in the inputs."""
    m = fpsim.hardware.tensor_core("B200", kind)
    fa = fpsim.parse({"mxfp8": "mxfp8_e4m3", "nvfp4": "nvfp4", "mxfp4": "mxfp4"}[kind])
    pairs = [(fa, fa)] + ([(fpsim.parse("mxfp8_e5m2"), fa)] if kind == "mxfp8" else [])
    rng = np.random.default_rng(zlib.crc32(f"{kind}{rounding}".encode()))
    calls = []
    real = bq.block_operand
    monkeypatch.setattr(bq, "block_operand", lambda *a, **k: calls.append(1) or real(*a, **k))
    for f1, f2 in pairs:
        mm = fpsim.hardware.tensor_core("B200", ("mxfp8_e5m2", "mxfp8")) if f1 is not f2 else m
        a = torch.from_numpy(rng.standard_normal((2, 5, 77)) * 10).float()
        b = torch.from_numpy(rng.standard_normal((77, 6))).float()
        a[0, 1, 3] = float("inf")
        b[10, 2] = float("nan")
        monkeypatch.setenv(ta.ENV, "numba")
        want = block_scaled_matmul(a, b, f1, f2, mm, rounding)
        monkeypatch.setenv(ta.ENV, "torch")
        got = block_scaled_matmul(a, b, f1, f2, mm, rounding)
        assert got.dtype == torch.float32 and want.dtype == torch.float32
        assert _same(want.double().numpy(), got.double())
    assert calls
