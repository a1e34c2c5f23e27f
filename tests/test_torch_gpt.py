"""A small GPT trained here in seconds, then run unmodified under emulation profiles:
greedy generation, plausible error ordering, training under emulation, low-precision
master weights with stochastic rounding, determinism."""

import math

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import fpsim.torch as ft  # noqa: E402
from fpsim.torch.tiny import TinyGPT  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors: torch's thread pool only adds contention on a 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

TEXT = "the quick brown fox jumps over the lazy dog. " * 6
CHARS = sorted(set(TEXT))
STOI = {c: i for i, c in enumerate(CHARS)}
CTX = 16


def GPT(vocab, d=32, heads=2, layers=2):
    """The tiny GPT of ``fpsim report`` (fpsim.torch.tiny), with this file's context length."""
    return TinyGPT(vocab, d=d, heads=heads, layers=layers, ctx=CTX)


def _batches(n, seed):
    g = torch.Generator().manual_seed(seed)
    data = torch.tensor([STOI[c] for c in TEXT])
    ix = torch.randint(0, len(data) - CTX - 1, (n,), generator=g)
    return torch.stack([data[i:i + CTX] for i in ix]), torch.stack([data[i + 1:i + CTX + 1] for i in ix])


def _train(model, steps, policy=None, opt=None, seed=0):
    opt = opt or torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for s in range(steps):
        x, y = _batches(16, seed * 1000 + s)
        if policy is None:
            logits = model(x)
        else:
            with ft.emulate(policy, model=model):
                logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    m = GPT(len(CHARS))
    losses = _train(m, 100)
    assert losses[-1] < 0.35 * losses[0]
    return m.eval()


@torch.no_grad()
def generate(model, prompt, n, policy=None):
    idx = torch.tensor([[STOI[c] for c in prompt]])
    logits_all = []
    for _ in range(n):
        ctx = idx[:, -CTX:]
        if policy is None:
            logits = model(ctx)[:, -1]
        else:
            with ft.emulate(policy, model=model):
                logits = model(ctx)[:, -1]
        logits_all.append(logits)
        idx = torch.cat([idx, logits.argmax(-1, keepdim=True)], 1)
    return "".join(CHARS[i] for i in idx[0].tolist()), torch.cat(logits_all)


def test_greedy_generation_under_profiles(trained):
    prompt = "the quick"
    ref, ref_logits = generate(trained, prompt, 16)
    assert "brown fox" in ref
    errs = {}
    for prof in ("fp32", "tf32", "bf16", "fp16", "layercast", "mxfp8", "mxfp4", "dint4_w4a8"):
        text, logits = generate(trained, prompt, 16, prof)
        errs[prof] = (logits - ref_logits).norm().item() / ref_logits.norm().item()
        same = sum(a == b for a, b in zip(text, ref)) / len(ref)
        if prof not in ("mxfp4", "dint4_w4a8"):
            assert same > 0.9, (prof, text)
    assert errs["fp32"] < 1e-5
    # coarser formats perturb the logits more (and never by nothing)
    assert 0 < errs["layercast"] < errs["bf16"] * 1.5
    assert errs["tf32"] < errs["bf16"] < errs["mxfp4"]
    assert errs["fp16"] < errs["bf16"]
    assert errs["mxfp8"] < errs["mxfp4"] < 1.0


def test_tensor_core_profile_generation(trained):
    """Bit-exact tensor-core GEMMs on a short generation (slow path, kept small)."""
    ref, _ = generate(trained, "the quick", 4)
    text, logits = generate(trained, "the quick", 4, "a100_bf16")
    assert torch.isfinite(logits).all()
    assert sum(a == b for a, b in zip(text, ref)) >= len(ref) - 2


def test_training_under_emulation_and_low_precision_master_weights():
    torch.manual_seed(1)
    m = GPT(len(CHARS), d=16)
    opt = ft.LowPrecisionOptimizer(torch.optim.AdamW(m.parameters(), lr=2e-2),
                                   weight_fmt="bf16", state_fmt="bf16", seed=3)
    losses = _train(m, 20, policy="bf16", opt=opt)
    assert sum(losses[-3:]) < 0.75 * sum(losses[:3])
    for p in m.parameters():  # master weights really are bf16 values
        assert torch.equal(p.detach(), p.detach().bfloat16().float())
    st = opt.state[m.lm_head.weight]["exp_avg"]
    assert torch.equal(st, st.bfloat16().float())


def test_training_is_deterministic():
    def run():
        torch.manual_seed(2)
        m = GPT(len(CHARS), d=16, layers=1)
        opt = ft.LowPrecisionOptimizer(torch.optim.SGD(m.parameters(), lr=0.1), "bf16", seed=9)
        return _train(m, 5, policy="fp16", opt=opt), [p.detach().clone() for p in m.parameters()]
    (l1, p1), (l2, p2) = run(), run()
    assert l1 == l2 and all(torch.equal(a, b) for a, b in zip(p1, p2))


def test_stochastic_rounding_keeps_small_updates():
    """RNE master weights in bf16 lose updates below half an ulp; stochastic rounding keeps
    them on average."""
    w0 = torch.ones(4096)
    res = {}
    for mode in ("rne", "stochastic"):
        p = nn.Parameter(w0.clone())
        opt = ft.LowPrecisionOptimizer(torch.optim.SGD([p], lr=1.0), "bf16", rounding=mode, seed=1)
        for _ in range(20):
            p.grad = torch.full_like(p, -1e-3)  # 1e-3 < ulp(1)/2 = 2**-8
            opt.step()
        res[mode] = p.detach().mean().item()
    assert res["rne"] == 1.0
    assert math.isclose(res["stochastic"], 1.02, rel_tol=2e-3)


def test_gradients_flow_under_every_cheap_profile(trained):
    x, y = _batches(4, 99)
    for prof in ("bf16", "h100_fp8", "mxfp4", "nvfp4", "dint4_w4a8"):
        trained.zero_grad()
        if prof == "h100_fp8":
            x, y = x[:1, :8], y[:1, :8]  # bit-exact FP8 path: keep it tiny
        with ft.emulate(prof, model=trained):
            loss = F.cross_entropy(trained(x).reshape(-1, len(CHARS)), y.reshape(-1))
        loss.backward()
        g = trained.blocks[0].qkv.weight.grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, prof
    trained.zero_grad()
