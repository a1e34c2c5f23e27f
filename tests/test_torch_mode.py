"""fpsim.torch.emulate: interception of every listed op, forward and backward, against
independent oracles (torch's own bfloat16/float8 casts + fp32 matmul), per-module overrides,
strict/lenient handling, determinism."""

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import fpsim.torch as ft  # noqa: E402
from fpsim.torch import Policy, Scaled  # noqa: E402


def bf(t):
    """Oracle rounding: torch's own RNE cast to bfloat16."""
    return t.to(torch.bfloat16).float()


def e4(t):
    return t.to(torch.float8_e4m3fn).float()


def e5(t):
    return t.to(torch.float8_e5m2).float()


BF16_IN = Policy(weight="bf16", activation="bf16", name="bf16_in")


@pytest.fixture
def xw():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 5, 16, generator=g), torch.randn(7, 16, generator=g)


def test_fp32_profile_is_native(xw):
    x, w = xw
    lin = torch.nn.Linear(16, 7)
    with ft.emulate("fp32"):
        y = lin(x)
        s = F.softmax(x, -1)
    assert torch.allclose(y, lin(x), rtol=1e-6, atol=1e-6)
    assert torch.equal(s, F.softmax(x, -1))


def test_linear_matmul_variants_against_oracle(xw):
    x, w = xw
    b = torch.randn(7)
    want = bf(x) @ bf(w).t()
    with ft.emulate(BF16_IN):
        outs = {
            "linear": F.linear(x, w),
            "matmul": torch.matmul(x, w.t()),
            "@": x @ w.t(),
            "Tensor.matmul": x.matmul(w.t()),
            "bmm": torch.bmm(x, w.t().expand(3, 16, 7)),
            "einsum": torch.einsum("bmk,nk->bmn", x, w),
            "einsum...": torch.einsum("...k,nk->...n", x, w),
        }
        mm = torch.mm(x[0], w.t())
        addmm = torch.addmm(b, x[0], w.t(), beta=0.5, alpha=2.0)
        baddbmm = torch.baddbmm(b.expand(3, 5, 7), x, w.t().expand(3, 16, 7))
        lin_b = F.linear(x, w, b)
    for k, v in outs.items():
        assert torch.allclose(v, want, rtol=1e-6, atol=1e-5), k
    assert torch.allclose(mm, want[0], rtol=1e-6, atol=1e-5)
    assert torch.allclose(addmm, 2 * want[0] + 0.5 * b, rtol=1e-6, atol=1e-5)
    assert torch.allclose(baddbmm, want + b, rtol=1e-6, atol=1e-5)
    assert torch.allclose(lin_b, want + b, rtol=1e-6, atol=1e-5)
    # and it really differs from fp32
    assert (outs["linear"] - x @ w.t()).abs().max() > 1e-3


def test_output_and_scaled_formats(xw):
    x, w = xw
    pol = Policy(weight=Scaled("e4m3"), activation=Scaled("e4m3"), output="bf16")
    with ft.emulate(pol):
        y = F.linear(x, w)
    sx = x.abs().max() / 448
    sw = w.abs().max() / 448
    want = bf((e4(x / sx) @ e4(w / sw).t()) * sx * sw)
    assert torch.allclose(y, want, rtol=1e-6, atol=0)


def test_conv_against_oracle():
    g = torch.Generator().manual_seed(1)
    x1, w1 = torch.randn(2, 4, 20, generator=g), torch.randn(6, 4, 3, generator=g)
    x2, w2 = torch.randn(2, 4, 9, 9, generator=g), torch.randn(6, 2, 3, 3, generator=g)
    with ft.emulate(BF16_IN):
        y1 = F.conv1d(x1, w1, padding=1, stride=2)
        y2 = F.conv2d(x2, w2, padding="same", groups=2)
    assert torch.allclose(y1, F.conv1d(bf(x1), bf(w1), padding=1, stride=2), atol=1e-5)
    assert torch.allclose(y2, F.conv2d(bf(x2), bf(w2), padding="same", groups=2), atol=1e-5)


def test_sdpa_and_softmax_and_norms():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 2, 6, 8, generator=g) for _ in range(3))
    with ft.emulate(BF16_IN):
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    s = (bf(q) @ bf(k).transpose(-1, -2)) / math.sqrt(8)
    s = s.masked_fill(~torch.ones(6, 6, dtype=torch.bool).tril(), float("-inf"))
    want = bf(torch.softmax(s, -1)) @ bf(v)
    assert torch.allclose(y, want, atol=1e-5)
    pol = Policy(compute="bf16")
    x = torch.randn(4, 10, generator=g)
    with ft.emulate(pol):
        sm = torch.softmax(x, -1)
        ln = F.layer_norm(x, (10,))
        rn = F.rms_norm(x, (10,))
        su, me = x.sum(-1), torch.mean(x)
    assert torch.equal(sm, bf(torch.softmax(bf(x), -1)))
    assert torch.equal(ln, bf(F.layer_norm(bf(x), (10,))))
    assert torch.equal(rn, bf(F.rms_norm(bf(x), (10,))))
    assert torch.equal(su, bf(bf(x).sum(-1))) and torch.equal(me, bf(bf(x).mean()))


def test_backward_gemms_use_gradient_format(xw):
    """dW = Gᵀ X and dX = G W with G rounded to e5m2, operands to e4m3 (oracle: torch casts)."""
    x, w = xw
    x = x.reshape(-1, 16)
    pol = Policy(weight="e4m3", activation="e4m3", gradient="e5m2")
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    gout = torch.randn(15, 7, generator=torch.Generator().manual_seed(3))
    with ft.emulate(pol):
        y = F.linear(xr, wr)
    y.backward(gout)
    gq = e5(gout)
    assert torch.allclose(wr.grad, gq.t() @ e4(x), atol=1e-5)
    assert torch.allclose(xr.grad, gq @ e4(w), atol=1e-5)


def test_multihead_attention_composite_is_emulated():
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 2, batch_first=True)
    x = torch.randn(2, 5, 16)
    calls = []

    class Count(ft.EmulationMode):
        def __torch_function__(self, func, types_, args=(), kwargs=None):
            if func is F.linear or func is F.scaled_dot_product_attention:
                calls.append(func)
            return super().__torch_function__(func, types_, args, kwargs)

    with Count(ft.profiles.get("bf16")):
        y = mha(x, x, x, need_weights=False)[0]
    assert F.linear in calls  # inner projections were seen
    assert 1e-4 < (y - mha(x, x, x, need_weights=False)[0]).abs().max() < 0.1


def test_overrides_by_module_name():
    torch.manual_seed(0)
    net = torch.nn.Sequential()
    net.add_module("body", torch.nn.Linear(8, 8))
    net.add_module("head", torch.nn.Linear(8, 4))
    x = torch.randn(3, 8)
    pol = Policy(weight="e2m1", activation="e2m1", overrides=(("head", "fp32"),))
    with ft.emulate(pol, model=net):
        y = net(x)
    h = F.linear(e2m1(x), e2m1(net.body.weight), net.body.bias)
    assert torch.allclose(y, net.head(h), atol=1e-5)
    conv = ft.convert(net, pol)  # same through the persistent wrapper
    assert torch.equal(conv(x), y)


def e2m1(t):
    import fpsim
    return torch.from_numpy(fpsim.quantize(t.detach().numpy(), "e2m1"))


def test_strict_and_lenient():
    """Pass-through ops raise under strict and warn once per op name and policy otherwise."""
    x = torch.randn(4, 4) + 4 * torch.eye(4)
    with pytest.raises(ft.UnsupportedOpError, match="linalg.det"):
        with ft.emulate("bf16", strict=True):
            torch.linalg.det(x)
    with pytest.raises(ft.UnsupportedOpError, match="linalg.inv"):
        with ft.emulate(Policy(strict=True)):
            torch.linalg.inv(x)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for prof in ("bf16", "mxfp8"):
            with ft.emulate(prof) as mode:
                a = torch.linalg.det(x)
                torch.linalg.det(x)
                torch.linalg.svdvals(x)
            assert mode.report().passthrough == {"torch.linalg.det": 2, "torch.linalg.svdvals": 1}
    msgs = [str(r.message) for r in rec if "not emulated" in str(r.message)]
    for op in ("linalg.det", "linalg.svdvals"):  # once per op name and profile
        assert len([m for m in msgs if op in m]) == 2, msgs
    assert torch.equal(a, torch.linalg.det(x))


def test_mismatch_errors():
    with ft.emulate("bf16"):
        with pytest.raises(RuntimeError, match="same dtype, but got float32 != float64"):
            torch.matmul(torch.ones(2, 2), torch.ones(2, 2, dtype=torch.float64))
        with pytest.raises(RuntimeError, match="same dtype"):  # not "unsupported operand"
            torch.ones(2, 2) @ torch.ones(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown profile"):
        ft.emulate("bf17")
    with pytest.raises(TypeError, match="Policy or a profile"):
        ft.emulate(3)
    with pytest.raises(ValueError, match="accum"):
        Policy(accum="kahan")
    with pytest.raises(ValueError, match="not a format"):
        Policy(weight="e9m99")


def test_half_tensors_and_determinism(xw):
    x, w = xw
    with ft.emulate("bf16"):
        a = F.linear(x.bfloat16(), w.bfloat16())
        b = F.linear(x, w)
        c = F.linear(x, w)
    assert a.dtype == torch.bfloat16 and torch.equal(b, c)
    assert torch.equal(a.float(), b)


def test_profiles_are_documented():
    names = ft.profiles.names()
    for n in ("fp32", "tf32", "bf16", "fp16", "layercast", "h100_fp8", "mxfp8", "mxfp4", "nvfp4",
              "lmul3", "lmul4", "dint4_w4a8", "h100_bf16", "v100_fp16", "a100_tf32"):
        assert n in names
    for n in ("fp32", "tf32", "bf16", "fp16", "layercast", "mxfp8", "mxfp4", "nvfp4", "dint4_w4a8"):
        assert len(ft.profiles.describe(n)) > 20


def test_supported_ops_listed():
    ops = ft.supported_ops()
    for n in ("linear", "matmul", "bmm", "baddbmm", "addmm", "einsum", "conv1d", "conv2d",
              "scaled_dot_product_attention", "softmax", "layer_norm", "rms_norm", "sum", "mean"):
        assert any(n in o for o in ops), n


def _np(t):
    return t.detach().double().numpy()


@pytest.mark.parametrize("prof,gpu,fmt,cast", [("h100_bf16", "H100", "bf16", bf),
                                                ("v100_fp16", "V100", "fp16", lambda t: t.half().float())])
def test_tensor_core_gemm_is_bit_exact(prof, gpu, fmt, cast):
    """Intercepted GEMM == fpsim.matmul with the tensor-core model on the same rounded inputs
    (rounded here by torch's own casts), forward and both backward GEMMs."""
    import fpsim
    g = torch.Generator().manual_seed(4)
    x = (torch.randn(2, 24, 40, generator=g) * torch.logspace(-3, 3, 40)).requires_grad_()
    w = torch.randn(12, 40, generator=g).requires_grad_()
    model = fpsim.hardware.tensor_core(gpu, fmt)
    with ft.emulate(prof):
        y = F.linear(x, w)
    xq, wq = _np(cast(x)).reshape(-1, 40), _np(cast(w))
    want = fpsim.matmul(xq, wq.T, model=model)
    assert np.array_equal(_np(y).reshape(-1, 12), want)
    assert not np.array_equal(want, _np(cast(x).reshape(-1, 40) @ cast(w).t()))  # not fp32
    gout = torch.randn(2, 24, 12, generator=g)
    y.backward(gout)
    gq = _np(cast(gout)).reshape(-1, 12)
    assert np.array_equal(_np(x.grad).reshape(-1, 40), fpsim.matmul(gq, wq, model=model))
    assert np.array_equal(_np(w.grad), fpsim.matmul(gq.T, xq, model=model))


def test_fp8_tensor_core_with_scales():
    import fpsim
    g = torch.Generator().manual_seed(5)
    x, w = torch.randn(16, 64, generator=g), torch.randn(8, 64, generator=g) * 1e-2
    with ft.emulate("h100_e4m3"):
        y = x @ w.t()
    sx, sw = x.abs().max() / 448, w.abs().max() / 448
    core = fpsim.matmul(_np(e4(x / sx)), _np(e4(w / sw)).T, model=fpsim.hardware.tensor_core("H100", "e4m3"))
    want = torch.from_numpy(core).float() * sx * sw
    assert torch.equal(y, want)


def test_model_path_is_deterministic_and_matches_lmul():
    import fpsim
    g = torch.Generator().manual_seed(6)
    x, w = torch.randn(4, 8, generator=g), torch.randn(3, 8, generator=g)
    with ft.emulate("lmul4"):
        a = F.linear(x, w)
        b = F.linear(x, w)
    assert torch.equal(a, b)
    xq, wq = fpsim.quantize(_np(x), "e8m4"), fpsim.quantize(_np(w), "e8m4")
    # L-Mul oracle from the SPEC formula ('int' semantics), summed in fp32 with RNE
    want = np.zeros((4, 3), dtype=np.float32)
    for i in range(4):
        for j in range(3):
            s = np.float32(0)
            for k in range(8):
                s = np.float32(s + np.float32(_lmul_int(xq[i, k], wq[j, k], 4)))
            want[i, j] = s
    assert np.array_equal(_np(a).astype(np.float32), want)


def _lmul_int(x, y, m):
    """SPEC §3.1 'int' semantics: (1 + fx + fy + 2^-l) 2^(ex+ey), a mantissa carry bumping
    the exponent (then 2^(ex+ey+1) (fx + fy + 2^-l))."""
    if x == 0 or y == 0:
        return 0.0
    s = -1.0 if (x < 0) != (y < 0) else 1.0
    fx, ex = np.frexp(abs(x))
    fy, ey = np.frexp(abs(y))
    fx, fy, ex, ey = fx * 2 - 1, fy * 2 - 1, ex - 1, ey - 1
    lo = m if m <= 3 else (3 if m == 4 else 4)
    t = fx + fy + 2.0 ** -lo
    return s * (2.0 ** (ex + ey)) * (1 + t if t < 1 else 2 * t)


def test_promoted_fast_path_equals_fpsim_matmul():
    """The chunked evaluation of the FP8 promoted model used by the bridge == fpsim.matmul."""
    import fpsim
    from fpsim.torch.gemm import _promoted_fast
    rng = np.random.default_rng(7)
    m = fpsim.hardware.fp8_promoted("H100", "e4m3", 128)
    for K in (5, 128, 300):
        A = fpsim.quantize(rng.standard_normal((2, 6, K)) * np.exp(rng.uniform(-6, 6, (2, 6, K))), "e4m3")
        B = fpsim.quantize(rng.standard_normal((2, K, 5)), "e4m3")
        assert np.array_equal(_promoted_fast(A, B, m), fpsim.matmul(A, B, model=m))


def test_override_is_inherited_by_submodules():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(8, 8)), torch.nn.Linear(8, 4))
    x = torch.randn(3, 8)
    pol = Policy(weight="e2m1", activation="e2m1", overrides=(("0", "fp32"),))
    with ft.emulate(pol, model=net):
        y = net(x)
    h = net[0](x)  # the whole container "0" runs in fp32
    assert torch.allclose(y, F.linear(e2m1(h), e2m1(net[1].weight), net[1].bias), atol=1e-5)
