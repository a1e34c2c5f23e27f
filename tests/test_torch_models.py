"""Issue 14 "done means": a CNN (Conv2d + BatchNorm + pooling) and an LSTM language model
under block, scaled and tensor-core profiles. Every GEMM the bridge runs is recorded and
recomputed independently: operands rounded by the core ``fpsim.quantize`` (oracle-tested
against ml_dtypes / exact rationals), products by ``fpsim.matmul`` with the profile's model
(bit for bit) or, for torch's native fp32 accumulation, in float64 (fp32-rounding tolerance).
The lowerings themselves (im2col, transposed conv, LSTM/GRU cell math) are checked against
torch's own ops in float64."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import fpsim  # noqa: E402
import fpsim.torch as ft  # noqa: E402
from fpsim.torch import Policy, Scaled  # noqa: E402
import fpsim.torch.conv as ft_conv  # noqa: E402
import fpsim.torch.gemm_ops as ft_gemm_ops  # noqa: E402
from fpsim.torch.gemm import gemm as real_gemm  # noqa: E402

PROFILES = ["mxfp8", "mxfp4", "nvfp4", "dint4_w4a8", "h100_fp8", "a100_bf16"]
# relative error ||y - y_fp32|| / ||y_fp32|| a profile may plausibly give on these tiny nets
MAX_REL = {"mxfp8": 0.15, "mxfp4": 0.6, "nvfp4": 0.5, "dint4_w4a8": 0.6, "h100_fp8": 0.15,
           "a100_bf16": 0.03}


# ---------------------------------------------------------------------------------------
# independent recomputation of one recorded GEMM
# ---------------------------------------------------------------------------------------

def _np(t):
    return t.detach().to(torch.float64).numpy()


def _quant(x, fmt, axis):
    """Element values (float64) and fp32 scale of an operand, as the policy prescribes."""
    if fmt is None:
        return x, None
    if isinstance(fmt, Scaled):
        x32 = x.astype(np.float32)
        amax = np.abs(x32).max() if fmt.per == "tensor" else np.abs(x32).max(axis=axis, keepdims=True)
        s = np.float32(amax) / np.float32(fmt.fmt.max) if fmt.per == "tensor" else \
            (amax / np.float32(fmt.fmt.max)).astype(np.float32)
        s = np.where(s > 0, s, np.float32(1)).astype(np.float32)
        kw = {} if fmt.fmt.has_nan else {"nan": "zero"}
        q = fpsim.quantize((x32 / s).astype(np.float32), fmt.fmt, **kw)
        return np.asarray(q, np.float64), s
    # float32 in (the operands are fp32 values): the kernels the bridge compiled already
    kw = {"axis": axis} if ft.is_block_format(fmt) else {}
    return np.asarray(fpsim.quantize(np.ascontiguousarray(x, np.float32), fmt, **kw), np.float64), None


def _expected(a, b, pol, roles):
    model = None if pol.is_native else pol.accum
    fa, fb = pol.role_fmt(roles[0], model), pol.role_fmt(roles[1], model)
    A, B = _np(a), _np(b)
    qa, sa = _quant(A, fa, -1)
    qb, sb = _quant(B, fb, -2)
    if model is None:
        d = np.matmul(qa, qb)
        exact = False
    else:
        d = np.asarray(fpsim.matmul(qa, qb, model=model), np.float64)
        exact = True
    d = d.astype(np.float32)
    if sa is not None:
        d = d * sa
    if sb is not None:
        d = d * sb
    return d, exact


@pytest.fixture
def recorded(monkeypatch):
    """Record every emulated GEMM (operands, policy, roles, result)."""
    calls = []
    real = real_gemm

    def rec(a, b, pol, roles=("activation", "weight"), what="matmul"):
        out = real(a, b, pol, roles=roles, what=what)
        calls.append((a.detach().clone(), b.detach().clone(), pol, roles, out.detach().clone(), what))
        return out

    monkeypatch.setattr(ft_gemm_ops, "gemm", rec)
    monkeypatch.setattr(ft_conv, "gemm", rec)
    return calls


def _check_gemms(calls, prof):
    assert calls, "no GEMM was emulated"
    for a, b, pol, roles, out, what in calls:
        want, exact = _expected(a, b, pol, roles)
        got = out.numpy().reshape(want.shape) if out.shape != want.shape else out.numpy()
        if exact:
            assert np.array_equal(got.astype(np.float32), want), (prof, what)
        else:
            assert np.allclose(got, want, rtol=2e-6, atol=2e-6 * np.abs(want).max()), (prof, what)


# ---------------------------------------------------------------------------------------
# the two models
# ---------------------------------------------------------------------------------------

class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, groups=2)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.c1(x))), 2)
        x = F.adaptive_avg_pool2d(F.relu(self.c2(x)), 1).flatten(1)
        return self.head(x)


class LSTMLM(nn.Module):
    def __init__(self, vocab=20, d=16):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.rnn = nn.LSTM(d, d, batch_first=True)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx):
        return self.head(self.rnn(self.emb(idx))[0])


def _inputs(kind):
    g = torch.Generator().manual_seed(11)
    if kind == "cnn":
        return torch.randn(2, 3, 8, 8, generator=g)
    return torch.randint(0, 20, (2, 5), generator=g)


@pytest.mark.parametrize("kind", ["cnn", "lstm"])
@pytest.mark.parametrize("prof", PROFILES)
def test_models_every_gemm_is_fpsim_matmul(kind, prof, recorded):
    torch.manual_seed(0)
    net = CNN() if kind == "cnn" else LSTMLM()
    x = _inputs(kind)
    ref = net(x).detach()
    recorded.clear()
    emu = ft.convert(net, ft.profiles.get(prof).replace(strict=True))  # nothing passes through
    y = emu(x)
    n_gemms = len(recorded)
    _check_gemms(recorded, prof)
    # conv1, conv2 (2 groups in one batched GEMM), head; LSTM: input projection, 5 steps, head
    assert n_gemms == (3 if kind == "cnn" else 7), n_gemms
    rel = ((y - ref).norm() / ref.norm()).item()
    assert 1e-6 < rel < MAX_REL[prof], rel
    rep = emu.report()
    assert not rep.passthrough and rep.emulated
    y.square().mean().backward()
    for n, p in net.named_parameters():
        if n.startswith("emb"):
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n


# ---------------------------------------------------------------------------------------
# the lowerings against torch (float64, no rounding)
# ---------------------------------------------------------------------------------------

EXACT = Policy(name="exact")


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 2), (1, "same", 2, 1)])
def test_conv_lowering_matches_torch(nd, stride, padding, dilation, groups):
    g = torch.Generator().manual_seed(nd)
    x = torch.randn(2, 4, *([6] * nd), generator=g, dtype=torch.float64)
    w = torch.randn(6, 4 // groups, *([3] * nd), generator=g, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    f = getattr(F, f"conv{nd}d")
    mx = Policy(weight="mxfp8e4m3", activation="mxfp8e4m3", name="mx")  # forces the GEMM path
    got = ft_conv.conv_gemm(x, w, stride, padding, dilation, groups, nd=nd, pol=EXACT)
    assert torch.allclose(got, f(x, w, None, stride, padding, dilation, groups), atol=1e-12)
    if padding == "same":
        return
    wt = torch.randn(4, 6 // groups, *([3] * nd), generator=g, dtype=torch.float64)
    ft_ = getattr(F, f"conv_transpose{nd}d")
    for op in {0, max(stride, dilation) - 1}:
        want = ft_(x, wt, b, stride, padding, op, groups, dilation)
        got = ft_conv.conv_transpose_gemm(x, wt, stride, padding, op, groups, dilation, nd=nd, pol=EXACT)
        assert torch.allclose(got + b.reshape(-1, *[1] * nd), want, atol=1e-12)
    with ft.emulate(mx, strict=True) as m:  # intercepted (not passed through) under blocks
        f(x.float(), w.float(), None, stride, padding, dilation, groups)
        ft_(x.float(), wt.float(), None, stride, padding, 0, groups, dilation)
    assert not m.report().passthrough and sum(m.report().emulated.values()) == 2


@pytest.mark.parametrize("cls,kw", [(nn.LSTM, dict(num_layers=2, bidirectional=True)),
                                    (nn.LSTM, dict(proj_size=3, batch_first=True)),
                                    (nn.GRU, dict(num_layers=2, bidirectional=True)),
                                    (nn.RNN, dict(nonlinearity="relu", bias=False))])
def test_recurrent_cell_math_matches_torch(cls, kw):
    torch.manual_seed(1)
    net = cls(5, 4, **kw).double()
    x = torch.randn(6, 2, 5, dtype=torch.float64)
    if kw.get("batch_first"):
        x = x.transpose(0, 1)
    with ft.emulate(EXACT, strict=True) as m:
        got = net(x)
    want = net(x)
    flat = lambda o: [o[0]] + (list(o[1]) if isinstance(o[1], tuple) else [o[1]])  # noqa: E731
    for a, b in zip(flat(got), flat(want)):
        assert torch.allclose(a, b, atol=1e-12)
    assert not m.report().passthrough
    cell = nn.LSTMCell(5, 4).double()
    with ft.emulate(EXACT, strict=True):
        h, c = cell(x[0])
    h2, c2 = cell(x[0])
    assert torch.allclose(h, h2, atol=1e-12) and torch.allclose(c, c2, atol=1e-12)
