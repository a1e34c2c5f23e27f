"""The block-scaled and AMD FP8 torch profiles (b200_mxfp8, b200_nvfp4, mi300x_fp8) against
the core computation written out by hand: fpsim.encode / fpsim.quantize of the operands,
then fpsim.matmul on the GPU table's model (fpsim.hardware.tensor_core)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fpsim  # noqa: E402
import fpsim.torch as ft  # noqa: E402


def _linear(name, K=40):
    torch.manual_seed(0)
    lin = torch.nn.Linear(K, 6)
    x = torch.randn(5, K)
    with ft.emulate(name), torch.no_grad():
        y = lin(x)
    return x.numpy().astype(np.float64), lin.weight.detach().numpy().astype(np.float64), \
        lin.bias.detach().numpy(), y.numpy()


def _blocks(X, fmt, axis):
    """Element values, block scales, tensor scale of X in block format ``fmt`` along
    ``axis``, K padded with zeros to a multiple of the block."""
    f = fpsim.parse(fmt)
    codes = fpsim.encode(X, f, axis=axis)
    e = fpsim.decode(codes.elements, f.elem)
    s = fpsim.decode(codes.scales, f.scale)
    pad = [(0, 0)] * X.ndim
    pad[axis] = (0, -X.shape[axis] % f.block)
    g = None if codes.tensor_scale is None else \
        np.float32(fpsim.decode(np.array([codes.tensor_scale]), f.tensor_scale)[0])
    return np.pad(e, pad), s, g


def _fnuz_scaled(X, fmt, fmax):
    """Per-tensor amax scale in fp32, elements rounded into ``fmt`` (the Scaled recipe)."""
    X32 = X.astype(np.float32)
    s = np.float32(np.abs(X32).max()) / np.float32(fmax)
    return np.asarray(fpsim.quantize((X32 / s).astype(np.float32), fmt), np.float64), s


@pytest.mark.parametrize("name,fmt,kind", [("b200_mxfp8", "mxfp8_e4m3", "mxfp8"),
                                           ("b200_nvfp4", "nvfp4", "nvfp4")])
def test_b200_block_scaled_linear_is_the_core_computation(name, fmt, kind):
    x, w, bias, y = _linear(name)
    ea, sa, ga = _blocks(x, fmt, -1)
    eb, sb, gb = _blocks(w.T, fmt, -2)
    m = fpsim.hardware.tensor_core("B200", kind)
    d = np.asarray(fpsim.matmul(ea, eb, model=m, a_scale=sa, b_scale=sb), np.float32)
    if ga is not None:  # NVFP4: the fp32 tensor scales multiply the fp32 result
        d = d * ga * gb
    assert np.array_equal((d + bias).view(np.uint32), y.view(np.uint32))


def test_mi300x_fp8_linear_is_the_core_computation():
    x, w, bias, y = _linear("mi300x_fp8", K=48)
    qa, sa = _fnuz_scaled(x, "e4m3fnuz", 240.0)
    qb, sb = _fnuz_scaled(w.T, "e4m3fnuz", 240.0)
    m = fpsim.hardware.tensor_core("MI300X", "e4m3fnuz")
    d = np.asarray(fpsim.matmul(qa, qb, model=m), np.float32) * sa * sb
    assert np.array_equal((d + bias).view(np.uint32), y.view(np.uint32))


def _grads(name):
    torch.manual_seed(2)
    lin = torch.nn.Linear(40, 6, bias=False)
    x = torch.randn(5, 40, requires_grad=True)
    r = torch.randn(5, 6)
    with ft.emulate(name):
        (lin(x) * r).sum().backward()  # the output gradient is r
    return (x.detach().numpy().astype(np.float64), lin.weight.detach().numpy().astype(np.float64),
            r.numpy().astype(np.float64), x.grad.numpy(), lin.weight.grad.numpy())


def test_mi300x_fp8_backward_is_the_core_computation():
    """dX = G Wᵀ on the bf8 x fp8 instruction, dW = Xᵀ G on fp8 x bf8 (the mixed model with
    its formats swapped): the core computation by hand."""
    x, w, g, dx, dw = _grads("mi300x_fp8")
    qg, sg = _fnuz_scaled(g, "e5m2fnuz", 57344.0)
    qw, sw = _fnuz_scaled(w, "e4m3fnuz", 240.0)
    qx, sx = _fnuz_scaled(x.T, "e4m3fnuz", 240.0)
    H = fpsim.hardware
    want_dx = np.asarray(fpsim.matmul(qg, qw, model=H.tensor_core("MI300X", ("e5m2fnuz", "e4m3fnuz"))),
                         np.float32) * sg * sw
    want_dw = np.asarray(fpsim.matmul(qx, qg, model=H.tensor_core("MI300X", ("e4m3fnuz", "e5m2fnuz"))),
                         np.float32) * sx * sg
    assert np.array_equal(want_dx.view(np.uint32), dx.view(np.uint32))
    assert np.array_equal(want_dw.T.view(np.uint32), dw.view(np.uint32))


def test_b200_mxfp8_backward_is_the_core_computation():
    x, w, g, dx, dw = _grads("b200_mxfp8")
    H = fpsim.hardware
    eg, sg, _ = _blocks(g, "mxfp8_e5m2", -1)      # dX = G @ W: reduction over the 6 outputs
    ew, sw, _ = _blocks(w, "mxfp8_e4m3", -2)
    want_dx = fpsim.matmul(eg, ew, model=H.tensor_core("B200", ("mxfp8_e5m2", "mxfp8_e4m3")),
                           a_scale=sg, b_scale=sw)
    ex, sx, _ = _blocks(x.T, "mxfp8_e4m3", -1)    # dWᵀ = Xᵀ @ G: reduction over the 5 rows
    eg2, sg2, _ = _blocks(g, "mxfp8_e5m2", -2)
    want_dw = fpsim.matmul(ex, eg2, model=H.tensor_core("B200", ("mxfp8_e4m3", "mxfp8_e5m2")),
                           a_scale=sx, b_scale=sg2)
    assert np.array_equal(np.float32(want_dx).view(np.uint32), dx.view(np.uint32))
    assert np.array_equal(np.float32(want_dw).T.view(np.uint32), dw.view(np.uint32))


@pytest.mark.parametrize("name", ["b200_mxfp8", "b200_nvfp4", "mi300x_fp8"])
def test_backward_gemms_run_on_the_profile_models(name):
    """The backward GEMMs see mixed operands (E5M2 gradients x E4M3 weights): the models
    take both orders of their two formats."""
    torch.manual_seed(1)
    lin = torch.nn.Linear(32, 4)
    x = torch.randn(3, 32, requires_grad=True)
    with ft.emulate(name):
        lin(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(lin.weight.grad).all()
    assert x.grad.abs().sum() > 0 and lin.weight.grad.abs().sum() > 0
    v = ft.profiles.validation(name)
    assert v.startswith("MMA-Sim agreement"), v


def test_tiny_gpt_runs_under_b200_nvfp4():
    torch.manual_seed(0)
    net = ft.TinyGPT(vocab=11, d=16, heads=2, layers=1, ctx=8)
    ids = torch.randint(0, 11, (2, 6))
    with torch.no_grad():
        ref = net(ids)
        with ft.emulate("b200_nvfp4") as mode:
            out = net(ids)
    assert out.shape == ref.shape and torch.isfinite(out).all()
    assert not torch.equal(out, ref)  # 4-bit operands: not the fp32 result
    assert mode.report().emulated["torch.nn.functional.linear"] > 0


def test_block_scaled_model_needs_block_operands():
    pol = ft.Policy(weight="e4m3", activation="e4m3", accum=fpsim.hardware.tensor_core("B200", "nvfp4"))
    with pytest.raises(ValueError, match="takes operands in block formats of 16 elements"):
        ft.gemm(torch.ones(2, 16), torch.ones(16, 2), pol)
