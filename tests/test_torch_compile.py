"""torch.compile of emulated models (issue 14 item 4): the Numba kernels are torch.library
custom ops (fpsim.torch._ops), so Dynamo traces the model in one graph (fullgraph=True: no
graph break, hence no tracing into Numba or numpy) and the compiled model gives the bits of
eager emulation, forward and backward. The reference is eager emulation, whose own
correctness the oracle suites (test_torch_mode, test_torch_quantize, ...) establish; each
case also checks that emulation changed the result, so equality is not fp32 == fp32."""

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import fpsim.torch as ft  # noqa: E402
from fpsim.torch.tiny import TinyGPT  # noqa: E402

# one profile per code path: no rounding, element formats (native GEMM), block and scaled
# formats, the bit-exact model GEMM (fused tensor cores, fp8 promotion, L-Mul)
CORE = ("fp32", "tf32", "bf16", "fp16", "layercast", "h100_fp8", "mxfp8", "mxfp4", "nvfp4",
        "lmul3", "dint4_w4a8", "a100_bf16", "v100_fp16", "h100_e4m3")


def _code_path(name):
    """What torch.compile traces for a profile: the GEMM model's kind and the formats. Many
    GPUs share one (H100/H200/GH200, A100/A30/A40...): tracing each again checks nothing new."""
    pol = ft.profiles.get(name)
    return (type(pol.accum).__name__, type(pol.backward_accum).__name__, str(pol.weight),
            str(pol.activation), str(pol.gradient), pol.compute is None)


_seen = {_code_path(p) for p in CORE}
REST = tuple(p for p in ft.profiles.names()
             if p not in CORE and not (_code_path(p) in _seen or _seen.add(_code_path(p))))


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors: torch's thread pool only adds contention on a 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _gpt():
    torch.manual_seed(0)
    return TinyGPT(vocab=11, d=16, heads=2, layers=1, ctx=8), torch.randint(0, 11, (2, 6))


def _cnn():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 5))
    return net, torch.randn(2, 2, 8, 8)


MODELS = {"gpt": _gpt, "cnn": _cnn}


def _compiled_equals_eager(profile, model, backend):
    net, x = MODELS[model]()
    em = ft.convert(net, profile)
    ref = em(x)
    torch._dynamo.reset()
    out = torch.compile(em, backend=backend, fullgraph=True)(x)
    assert out.dtype == ref.dtype and out.shape == ref.shape
    assert torch.equal(out, ref), f"{profile}/{model}/{backend}: max |diff| {(out - ref).abs().max()}"
    if profile != "fp32":  # the emulation did something (else the check is fp32 == fp32)
        assert not torch.equal(ref, net(x)), f"{profile}/{model}: emulation changed nothing"
    return em, x


@pytest.mark.filterwarnings("ignore:fpsim.torch")
@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("profile", CORE)
def test_compile_equals_eager(profile, model, backend):
    _compiled_equals_eager(profile, model, backend)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:fpsim.torch")
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("profile", REST)
def test_compile_equals_eager_every_profile(profile, model):
    _compiled_equals_eager(profile, model, "aot_eager")


def _grads(module, x):
    module.zero_grad()
    out = module(x)
    out.float().square().sum().backward()
    return out, [p.grad.clone() for p in module.parameters()]


@pytest.mark.filterwarnings("ignore:fpsim.torch")
@pytest.mark.parametrize("profile", ["bf16", "a100_bf16", "mxfp4", "h100_fp8"])
def test_compiled_gradients_equal_eager(profile):
    """The backward graph holds the same ops (gradient rounding, the backward model GEMMs)."""
    net, x = _gpt()
    em = ft.convert(net, profile)
    ref, gref = _grads(em, x)
    torch._dynamo.reset()
    out, gout = _grads(torch.compile(em, backend="aot_eager", fullgraph=True), x)
    assert torch.equal(out, ref)
    assert len(gout) == len(gref) and all(torch.equal(a, b) for a, b in zip(gout, gref))
    net.zero_grad()
    plain = net(x).square().sum()
    plain.backward()
    assert not all(torch.equal(p.grad, g) for p, g in zip(net.parameters(), gref))


def test_ops_are_registered_with_fake_and_autograd():
    """Every kernel call is one torch.ops.fpsim node; fake tensors give shapes only."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    for name in ("quantize", "grad_round", "round_grad", "model_gemm", "model_gemm_grad_a",
                 "model_gemm_grad_b"):
        assert hasattr(torch.ops.fpsim, name)
    from fpsim.torch import _ops
    pol = ft.profiles.get("a100_bf16")
    with FakeTensorMode():
        a, b = torch.empty(3, 2, 5), torch.empty(5, 4)
        out = torch.ops.fpsim.model_gemm(a, b, _ops.key(pol), "activation", "weight")
        assert out.shape == (3, 2, 4)
        q = torch.ops.fpsim.quantize(a, _ops.key(ft.profiles.get("mxfp4").weight), "rne", None,
                                     None, False, None, None, "", None, -1, "auto", "ste", "", "rne")
        assert q.shape == a.shape and q.dtype == a.dtype


def test_quantize_compiles_with_every_option():
    """ft.quantize itself: format names resolved outside the graph, seeds as int64."""
    x = torch.linspace(-3, 3, 64).reshape(2, 32)

    def f(t):
        return (ft.quantize(t, "e4m3") + ft.quantize(t, "mxfp4", axis=-1)
                + ft.quantize(t, "e2m1", rounding="stochastic", seed=2**64 - 1))

    torch._dynamo.reset()
    assert torch.equal(torch.compile(f, backend="aot_eager", fullgraph=True)(x), f(x))
    # the stochastic stream of seed 2**64-1 is that of -1 (fpsim reduces seeds mod 2**64)
    assert torch.equal(ft.quantize(x, "e2m1", rounding="stochastic", seed=2**64 - 1),
                       ft.quantize(x, "e2m1", rounding="stochastic", seed=-1))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:fpsim.torch")
@pytest.mark.parametrize("profile", ["mxfp4", "a100_bf16"])
def test_inductor_cnn_bit_exact(profile):
    """Inductor compiles C++; the CNN's other ops (ReLU, max-pool, bias add) are exact, so
    the compiled output equals eager emulation bit for bit. One profile per kind of graph:
    quantize ops around a native GEMM (mxfp4; bf16's graph has the same ops, one more
    quantize of the output, and cost another cold C++ compile) and the model-GEMM op
    (a100_bf16)."""
    _compiled_equals_eager(profile, "cnn", "inductor")
