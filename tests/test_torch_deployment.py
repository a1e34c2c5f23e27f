"""fpsim.torch.Deployment: the split-K rule and the tensor-parallel all-reduce change a
GEMM's bits exactly as documented (hand-computed cases, and fpsim.matmul with the
accumulation model the rule names); batch-invariant kernels give the same bits for every
batch size."""

from fractions import Fraction

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fpsim  # noqa: E402
import fpsim.torch as ft  # noqa: E402
from fpsim.torch.gemm import gemm  # noqa: E402

SMALL = dict(sms=4, tile_m=16, tile_n=16)  # a GPU scaled down: 1 tile -> 4 slices, 4 tiles -> none
BIG = 2.0 ** 24


def _fp32(q):
    return Fraction(float(np.float32(float(q))))  # values here are exact in float64


def _seq_fp32(terms):
    s = Fraction(0)
    for t in terms:
        s = _fp32(s + t)
    return s


def _column():
    """K = 128 products: 2^24 at k = 0, ones at k = 70 and 90 (the second grain of 64)."""
    w = torch.zeros(128)
    w[0], w[70], w[90] = BIG, 1.0, 1.0
    return w


@pytest.mark.parametrize("M, expect", [(1, "split"), (40, "whole"), (64, "whole")])
def test_split_k_follows_batch_size_fp32(M, expect):
    dep = ft.Deployment("a100", "fp32", **SMALL)
    w = _column()
    x = torch.ones(M, 128)
    lin = torch.nn.Linear(128, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w[None])
    with ft.emulate(dep):
        y = lin(x)
    terms = [Fraction(float(v)) for v in w]
    # split: the rule gives min(16, 4 // 1, 128 // 64) = 2 slices of 64, summed in fp32
    split = _fp32(_seq_fp32(terms[:64]) + _seq_fp32(terms[64:]))
    whole = _seq_fp32(terms)  # 2^24 + 1 ties to 2^24, twice
    assert split == BIG + 2 and whole == BIG
    want = float(split if expect == "split" else whole)
    assert dep.splits(M, 1, 128) == (2 if expect == "split" else 1)
    assert torch.all(y == want), (y.ravel()[:3], want)


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_rule_is_the_named_accumulation_model(dtype):
    """Random operands: every batch size's GEMM equals fpsim.matmul with the model the rule
    names (Promoted(base, slice) for split-K, the base model otherwise)."""
    from fpsim import accum
    dep = ft.Deployment("a100", dtype, **SMALL)
    base = fpsim.hardware.tensor_core("a100", dtype) if dtype == "bf16" else accum.Sequential("fp32", fma=True)
    rng = np.random.default_rng(1)
    X = fpsim.quantize(rng.standard_normal((64, 200)), dtype)
    W = fpsim.quantize(rng.standard_normal((200, 8)), dtype)
    pol = dep.policy()
    for M, model in [(1, accum.Promoted(base, every=128)), (16, accum.Promoted(base, every=128)),
                     (64, base)]:
        got = gemm(torch.tensor(X[:M], dtype=torch.float32), torch.tensor(W, dtype=torch.float32), pol)
        want = fpsim.matmul(X[:M], W, model=model)
        assert dep.gemm_model(M, 8, 200) == model
        np.testing.assert_array_equal(got.numpy().astype(np.float64), want)
    # and the split actually changes bits somewhere (else the test could not fail)
    one = gemm(torch.tensor(X[:1], dtype=torch.float32), torch.tensor(W, dtype=torch.float32), pol)
    whole = fpsim.matmul(X[:1], W, model=base)
    assert np.any(one.numpy() != whole)


def test_batch_invariant_same_bits_every_batch_size():
    dep = ft.Deployment("a100", "bf16", kernels="batch_invariant", **SMALL)
    torch.manual_seed(0)
    lin = torch.nn.Linear(128, 8)
    x = torch.randn(64, 128)
    with ft.emulate(dep):
        full = lin(x)
        for n in (1, 3, 16):
            assert torch.equal(lin(x[:n]), full[:n])
        # the accumulator (before the bf16 output rounding) too
        wt = lin.weight.detach().t()
        assert torch.equal(gemm(x[:1], wt, dep.policy()), gemm(x, wt, dep.policy())[:1])
    sd = ft.Deployment("a100", "bf16", **SMALL).policy()  # shape-dependent: batch 1 and 64 differ
    assert not torch.equal(gemm(x[:1], wt, sd), gemm(x, wt, sd)[:1])


class _Net(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.qkv = torch.nn.Linear(4, n, bias=False)  # column-parallel
        self.proj = torch.nn.Linear(4, n, bias=False)  # row-parallel

    def forward(self, x):
        return self.qkv(x), self.proj(x)


@pytest.mark.parametrize("tp, order, expect", [
    (1, "ring", [BIG + 2] * 4),  # one rank: sequential fp32 (1 + 1) + 2^24 + 0
    # ring, chunk c summed from rank c+1 round to rank c: c=0: ((1 + 2^24) + 0) + 1 = 2^24
    # (two ties to even); c=1: ((2^24 + 0) + 1) + 1 = 2^24; c=2: ((0 + 1) + 1) + 2^24 and
    # c=3: ((1 + 1) + 2^24) + 0 = 2^24 + 2
    (4, "ring", [BIG, BIG, BIG + 2, BIG + 2]),
    (4, "tree", [BIG + 2] * 4),  # (1 + 1) + (2^24 + 0)
    (2, "ring", [BIG + 2] * 4),  # (1 + 1) + (2^24 + 0) for both chunks
])
def test_tensor_parallel_allreduce_order(tp, order, expect):
    net = _Net(4)
    w = torch.tensor([1.0, 1.0, BIG, 0.0]).expand(4, 4)
    with torch.no_grad():
        net.qkv.weight.copy_(w)
        net.proj.weight.copy_(w)
    dep = ft.Deployment("a100", "fp32", tp=tp, allreduce=order, kernels="batch_invariant")
    col, row = ft.convert(net, dep)(torch.ones(1, 4))
    assert row.ravel().tolist() == expect
    assert col.ravel().tolist() == [BIG + 2] * 4  # column-parallel: unchanged bits
    with ft.emulate(dep, model=net):  # emulate takes the deployment too
        assert net(torch.ones(1, 4))[1].ravel().tolist() == expect


def test_allreduce_bf16_rounds_every_addition():
    from fpsim.torch.deployment import allreduce
    parts = [torch.tensor([1.0]), torch.tensor([2.0 ** -8]), torch.tensor([2.0 ** -8]), torch.tensor([0.0])]
    # ring (one element: chunk 0): ((x1 + x2) + x3) + x0 = 1 + 2^-7, exact in bf16;
    # tree: (x0 + x1) + (x2 + x3): 1 + 2^-8 ties to 1 in bf16, then 1 + 2^-8 -> 1 again
    assert allreduce(parts, "ring", "bf16").item() == 1 + 2.0 ** -7
    assert allreduce(parts, "tree", "bf16").item() == 1.0
    assert allreduce(parts, "tree", "fp32").item() == 1 + 2.0 ** -7


def test_deployment_errors():
    with pytest.raises(ValueError, match="gpu"):
        ft.Deployment("h300")
    with pytest.raises(ValueError, match="kernels"):
        ft.Deployment("h100", kernels="fast")
    with pytest.raises(ValueError, match="tp"):
        ft.Deployment("h100", tp=0)
    with pytest.raises(ValueError, match="model="):  # tp > 1: row-parallel layers need names
        ft.emulate(ft.Deployment("h100", tp=2))
    net = torch.nn.Sequential()
    net.proj = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match="not divisible by tp=2"):
        ft.convert(net, ft.Deployment("h100", "fp32", tp=2))(torch.ones(1, 3))


def test_deployment_audit_tiny_gpt_bf16_drifts_fp32_does_not():
    """The audit against the right baseline (same dtype, batch 1, tp 1): bf16 changes with
    batch size (split-K partials added in bf16) and tp (bf16 all-reduce); fp32 changes by
    fp32 rounding errors only and no greedy output diverges."""
    import warnings

    import fpsim.analysis as fa
    torch.manual_seed(0)
    lm = ft.TinyGPT(vocab=12, d=32, heads=2, layers=1, ctx=16).eval()
    prompts = torch.randint(0, 12, (4, 6), generator=torch.Generator().manual_seed(1)).tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the row-parallel overrides match (no warning)
        a = fa.deployment_audit(lm, prompts, max_new_tokens=3, dtypes=("bf16", "fp32"),
                                batch_sizes=(1, 4), tps=(1, 2), judge=lambda i, t: t[0] % 2 == 0,
                                sms=4, tile_m=4, tile_n=16, k_grain=16, splitk_reduction="output")
    rows = {(r["dtype"], r["config"]): r for r in a.to_records()}
    assert set(rows) == {(d, c) for d in ("bf16", "fp32") for c in ("baseline", "batch_size=4", "tp=2")}
    for c in ("batch_size=4", "tp=2"):
        assert rows[("bf16", c)]["max_top1_diff"] > 1e-4, c
        assert 0 < rows[("fp32", c)]["max_top1_diff"] < 1e-6, c
        assert rows[("fp32", c)]["div_rate"] == 0
    assert rows[("bf16", "baseline")]["max_logit_diff"] == 0
    groups = {g["dtype"]: g for g in a.group_records()}
    assert groups["fp32"]["std_acc"] == 0 and groups["bf16"]["configs"] == 3
    assert len(a.plot().axes) >= 2


def test_splitk_output_reduction_adds_partials_in_bf16():
    dep = ft.Deployment("a100", "bf16", splitk_reduction="output", **SMALL)
    base = fpsim.hardware.tensor_core("a100", "bf16")
    rng = np.random.default_rng(2)
    X = fpsim.quantize(rng.standard_normal((1, 128)), "bf16")
    W = fpsim.quantize(rng.standard_normal((128, 16)), "bf16")
    got = gemm(torch.tensor(X, dtype=torch.float32), torch.tensor(W, dtype=torch.float32), dep.policy())
    p0, p1 = (fpsim.quantize(fpsim.matmul(X[:, s], W[s], model=base), "bf16")
              for s in (slice(0, 64), slice(64, 128)))
    np.testing.assert_array_equal(got.numpy().astype(np.float64), fpsim.quantize(p0 + p1, "bf16"))


def test_split_kv_attention_follows_the_heuristic_and_matches_softmax():
    """Split-KV attention: the number of key chunks follows batch x heads (few query blocks
    -> more splits); the combination equals softmax(s) @ v up to fp32 rounding, and its bits
    change with the split."""
    import torch.nn.functional as F
    dep = ft.Deployment("a100", "fp32", kv_block=4, sms=8)
    assert dep.kv_splits(2, 1, 16) == 4 and dep.kv_splits(16, 1, 16) == 1
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 5, 8) for _ in range(3))
    with ft.emulate(dep):
        one = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        many = F.scaled_dot_product_attention(q.expand(8, 2, 5, 8), k.expand(8, 2, 5, 8),
                                              v.expand(8, 2, 5, 8), is_causal=True)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True)
    torch.testing.assert_close(one.double(), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(many[:1].double(), ref, rtol=1e-5, atol=1e-6)
    # batch 1: 2 splits of 4 keys (S = 5); batch 8: 16 query blocks fill 0.8 x 16 slots -> 1
    assert dep.kv_splits(2, 5, 5) == 2 and dep.kv_splits(16, 5, 5) == 1
    assert not torch.equal(one, many[:1])
    inv = ft.Deployment("a100", "fp32", kv_block=4, sms=8, kernels="batch_invariant")
    with ft.emulate(inv):
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        b = F.scaled_dot_product_attention(q.expand(8, 2, 5, 8), k.expand(8, 2, 5, 8),
                                           v.expand(8, 2, 5, 8), is_causal=True)
    assert torch.equal(a, b[:1]) and torch.equal(b[0], b[7])


def test_norm_split_follows_rows():
    import torch.nn.functional as F
    dep = ft.Deployment("a100", "fp32", sms=8, norm_grain=16)
    assert dep.norm_splits(1, 64) == 4 and dep.norm_splits(8, 64) == 1
    torch.manual_seed(0)
    x = torch.randn(8, 64) * 3 + 1
    w, b = torch.randn(64), torch.randn(64)
    with ft.emulate(dep):
        one = [F.layer_norm(x[i:i + 1], (64,), w, b) for i in range(8)]
        many = F.layer_norm(x, (64,), w, b)
        r1, r8 = F.rms_norm(x[:1], (64,), w), F.rms_norm(x, (64,), w)
    ref = F.layer_norm(x.double(), (64,), w.double(), b.double())
    torch.testing.assert_close(many.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat(one).double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r1, r8[:1], rtol=1e-5, atol=1e-6)
    # 4 chunk sums (1 row) vs one sum (8 rows): the bits differ for some row
    assert not torch.equal(torch.cat(one), many)
    inv = ft.Deployment("a100", "fp32", sms=8, norm_grain=16, kernels="batch_invariant")
    with ft.emulate(inv):
        assert torch.equal(torch.cat([F.layer_norm(x[i:i + 1], (64,), w, b) for i in range(8)]),
                           F.layer_norm(x, (64,), w, b))
