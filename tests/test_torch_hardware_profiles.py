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

    def scaled(X):  # per-tensor amax scale in fp32, elements rounded into e4m3fnuz
        X32 = X.astype(np.float32)
        s = np.float32(np.abs(X32).max()) / np.float32(240.0)
        return np.asarray(fpsim.quantize((X32 / s).astype(np.float32), "e4m3fnuz"),
                          np.float64), s

    qa, sa = scaled(x)
    qb, sb = scaled(w.T)
    m = fpsim.hardware.tensor_core("MI300X", "e4m3fnuz")
    d = np.asarray(fpsim.matmul(qa, qb, model=m), np.float32) * sa * sb
    assert np.array_equal((d + bias).view(np.uint32), y.view(np.uint32))


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
