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


# -- fp8 deployments ------------------------------------------------------------------------

def _fp8_operands(M):
    """K = 512 = 4 promotion blocks of 128 whose block sums are c = (64, 0, 2^-18, 2^-18);
    448 (E4M3's max) in each operand where the other is 0, so both per-tensor scales are
    amax / 448 = 1 and the element values are the operands themselves."""
    x, w = torch.zeros(M, 512), torch.zeros(512, 1)
    x[:, 0], w[0, 0] = 1.0, 64.0
    for k in (300, 400):  # blocks 2 and 3: one product 2^-9 * 2^-9 (E4M3's smallest) each
        x[:, k], w[k, 0] = 2.0 ** -9, 2.0 ** -9
    x[:, 511], w[510, 0] = 448.0, 448.0
    return x, w


@pytest.mark.parametrize("sms, M, slices", [(2, 1, 2), (2, 16, 2), (2, 32, 1), (4, 1, 4)])
def test_fp8_split_k_at_the_fp8_grain(sms, M, slices):
    """The H100 FP8 core sums each block of 128 exactly here (one product each); the fp32
    additions of the block sums follow the rule: unsplit ((c0 + c1) + c2) + c3 = 64 (two
    ties to even); two slices of 256: (c0 + c1) + (c2 + c3) = 64 + 2^-17; four slices of
    one grain (128) each: the unsplit order again."""
    dep = ft.Deployment("h100", "fp8", sms=sms, tile_m=16, tile_n=16)
    assert dep.k_grain == 128 and dep.splits(M, 1, 512) == slices
    c = [Fraction(64), Fraction(0), Fraction(2) ** -18, Fraction(2) ** -18]
    whole = _seq_fp32(c)
    two = _fp32(_seq_fp32(c[:2]) + _seq_fp32(c[2:]))
    assert whole == 64 and two == 64 + Fraction(2) ** -17
    x, w = _fp8_operands(M)
    got = gemm(x, w, dep.policy())
    assert torch.all(got == float(two if slices == 2 else whole)), got.ravel()[:3]
    inv = ft.Deployment("h100", "fp8", sms=sms, tile_m=16, tile_n=16, kernels="batch_invariant")
    assert torch.all(gemm(x, w, inv.policy()) == 64.0)
    # without promotion (fast accumulation) the narrow accumulator is the whole reduction
    fast = ft.Deployment("h100", "fp8", fast_accum=True, kernels="batch_invariant")
    assert fast.base_model() == fpsim.hardware.tensor_core("h100", "e4m3")


@pytest.mark.parametrize("gpu", ["h100", "ada"])
def test_fp8_rule_is_the_named_model(gpu):
    """Random E4M3 operands (each row and the weight hold 448: scales 1): every batch size's
    GEMM equals fpsim.matmul with Promoted(Promoted(core, 128), slice) when split, the
    promoted core otherwise; the scaled path equals the tensor-core profile's bits."""
    from fpsim import accum
    dep = ft.Deployment(gpu, "e4m3", sms=4, tile_m=16, tile_n=16)
    core = fpsim.hardware.tensor_core(gpu, "e4m3")
    base = accum.Promoted(core, every=128)
    rng = np.random.default_rng(3)
    X = fpsim.quantize(rng.standard_normal((64, 640)) * 8, "e4m3")
    W = fpsim.quantize(rng.standard_normal((640, 8)) * 8, "e4m3")
    X[:, 7], W[9, :] = 448.0, 448.0
    for M, model in [(1, accum.Promoted(base, every=256)), (16, accum.Promoted(base, every=256)),
                     (64, base)]:
        assert dep.gemm_model(M, 8, 640) == model
        got = gemm(torch.tensor(X[:M], dtype=torch.float32), torch.tensor(W, dtype=torch.float32),
                   dep.policy())
        np.testing.assert_array_equal(got.numpy().astype(np.float64),
                                      fpsim.matmul(X[:M], W, model=model))
    # arbitrary scales: the deployment's scaled GEMM is the h100_fp8 profile's when unsplit
    if gpu == "h100":
        a, b = torch.randn(64, 640), torch.randn(640, 8)
        np.testing.assert_array_equal(gemm(a, b, dep.policy()).numpy(),
                                      gemm(a, b, ft.profiles.get("h100_fp8")).numpy())


def test_fp8_batch_invariant_same_bits_every_batch():
    torch.manual_seed(0)
    x, w = torch.randn(64, 256), torch.randn(256, 8)
    x[:, 3] = 10.0  # every batch has the same amax: the same per-tensor scale
    for kw in ({}, {"scaling": "row"}):
        inv = ft.Deployment("h100", "fp8", kernels="batch_invariant", sms=4, tile_m=16, tile_n=16, **kw)
        full = gemm(x, w, inv.policy())
        for n in (1, 3, 16):
            assert torch.equal(gemm(x[:n], w, inv.policy()), full[:n]), (kw, n)
    sd = ft.Deployment("h100", "fp8", sms=4, tile_m=16, tile_n=16, k_grain=64).policy()
    assert not torch.equal(gemm(x[:1], w, sd), gemm(x, w, sd)[:1])  # shape-dependent: differs
    # per-token scales: batch invariant for any rows; a per-tensor scale couples the rows
    y = torch.randn(8, 256)
    row = ft.Deployment("h100", "fp8", kernels="batch_invariant", scaling="row").policy()
    assert torch.equal(gemm(y[:1], w, row), gemm(y, w, row)[:1])


def test_fp8_needs_an_fp8_gpu():
    with pytest.raises(ValueError, match=r"no FP8 tensor cores.*'h100'"):
        ft.Deployment("a100", "fp8")
    for g in ft.deployment.FP8_GPUS:  # the list matches the hardware table
        fpsim.hardware.tensor_core(g, "e4m3")
    for g in set(ft.deployment.SMS) - set(ft.deployment.FP8_GPUS):
        with pytest.raises(ValueError):
            fpsim.hardware.tensor_core(g, "e4m3")
    with pytest.raises(ValueError, match="fast_accum"):
        ft.Deployment("h100", "bf16", fast_accum=True)
    with pytest.raises(ValueError, match="scaling"):
        ft.Deployment("h100", "bf16", scaling="row")
    assert ft.Deployment("h100", "e4m3") == ft.Deployment("h100", "fp8")


# -- NCCL's double binary tree --------------------------------------------------------------

def test_double_binary_tree_shape():
    from fpsim.torch.collectives import btree, double_binary_tree
    assert btree(8) == {0: (-1, (4,)), 1: (2, ()), 2: (4, (1, 3)), 3: (2, ()), 4: (0, (2, 6)),
                        5: (6, ()), 6: (4, (5, 7)), 7: (6, ())}
    t0, t1 = double_binary_tree(8)  # mirror r -> 7 - r
    assert t1 == {7: (-1, (3,)), 6: (5, ()), 5: (3, (6, 4)), 4: (5, ()), 3: (7, (5, 1)),
                  2: (1, ()), 1: (3, (2, 0)), 0: (1, ())}
    for p in (2, 3, 4, 5, 6, 8):
        t0, t1 = double_binary_tree(p)
        assert sorted(t0) == sorted(t1) == list(range(p))
        for t in (t0, t1):  # each a tree: every parent lists the rank as its child
            assert all(r in t[u][1] for r, (u, _) in t.items() if u != -1)
        inner = [{r for r, (_, k) in t.items() if k} for t in (t0, t1)]
        if p % 2 == 0:  # mirrored: complementary, no rank is an inner node of both trees
            assert not inner[0] & inner[1], (p, inner)
    assert double_binary_tree(3)[1] == {1: (-1, (0,)), 2: (0, ()), 0: (1, (2,))}  # shift r -> r + 1


def _dbt_by_hand(x, p):
    """Element 0 through tree 0, element 1 through tree 1, in float32, the order written out."""
    a = [np.float32(v[0]) for v in x]
    b = [np.float32(v[1]) for v in x]
    if p == 2:
        return a[0] + a[1], b[1] + b[0]
    if p == 4:
        return a[0] + ((a[2] + a[1]) + a[3]), b[3] + ((b[1] + b[2]) + b[0])
    s2, s6 = (a[2] + a[1]) + a[3], (a[6] + a[5]) + a[7]
    t5, t1 = (b[5] + b[6]) + b[4], (b[1] + b[2]) + b[0]
    return a[0] + ((a[4] + s2) + s6), b[7] + ((b[3] + t5) + t1)


@pytest.mark.parametrize("p", [2, 4, 8])
def test_double_binary_tree_allreduce_order(p):
    from fpsim.torch.collectives import allreduce
    rng = np.random.default_rng(p)
    hits = 0
    for _ in range(200):
        x = [torch.tensor(np.float32(rng.standard_normal(2) * 2.0 ** rng.integers(-12, 12, 2)))
             for _ in range(p)]
        got = allreduce(x, "double_binary_tree", "fp32")
        want = _dbt_by_hand([t.numpy() for t in x], p)
        assert got.tolist() == [float(v) for v in want]
        hits += got.tolist() != allreduce(x, "ring", "fp32").tolist()
    assert p == 2 or hits > 0  # the orders differ, so the test could fail


def test_double_binary_tree_in_a_model():
    net = _Net(4)
    w = torch.tensor([1.0, 1.0, BIG, 0.0]).expand(4, 4)
    with torch.no_grad():
        net.proj.weight.copy_(w)
        net.qkv.weight.copy_(w)
    dep = ft.Deployment("a100", "fp32", tp=4, allreduce="double_binary_tree", kernels="batch_invariant")
    # elements 0, 1 (tree 0): x0 + ((x2 + x1) + x3) = 1 + (2^24 + 1) = 2^24 (ties);
    # elements 2, 3 (tree 1): x3 + ((x1 + x2) + x0) = 0 + ((1 + 2^24) + 1) = 2^24 too
    assert ft.convert(net, dep)(torch.ones(1, 4))[1].ravel().tolist() == [BIG] * 4
    with pytest.raises(ValueError, match="allreduce"):
        ft.Deployment("h100", allreduce="nccl")


# -- backward GEMMs, each with its own shape ------------------------------------------------

def _dw_case(B):
    """x = ones (B, 64, 16); dY: 2^24 at row 0 and ones at rows 40 and 50 of sample 0, ones
    at rows 6 and 10 of sample 1: dW = X^T dY reduces the B * 64 rows."""
    g = torch.zeros(B, 64, 16)
    g[0, 0], g[0, 40], g[0, 50] = BIG, 1.0, 1.0
    if B > 1:
        g[1, 6], g[1, 10] = 1.0, 1.0
    return g


@pytest.mark.parametrize("B, kernels, want", [
    (1, "shape_dependent", BIG),          # M = 64 rows: one grain, no split: 2^24 (ties)
    (2, "shape_dependent", BIG + 2),      # M = 128: 2 slices of 64: 2^24 + (1 + 1)
    (2, "batch_invariant", BIG),          # one sequential fp32 sum over the 128 rows
])
def test_backward_dw_split_follows_the_batch(B, kernels, want):
    """dW's GEMM is (K=16, N=16, M=B*64): its split-K, min(16, sms // 1, M // 64), grows
    with the batch, while the forward GEMM (M, 16, 16) never splits (K < one grain)."""
    dep = ft.Deployment("a100", "fp32", kernels=kernels, **SMALL)
    lin = torch.nn.Linear(16, 16, bias=False)
    x = torch.ones(B, 64, 16, requires_grad=True)
    with ft.emulate(dep):
        y = lin(x)
        (y * _dw_case(B)).sum().backward()
    assert dep.splits(B * 64, 16, 16) == 1
    assert dep.splits(16, 16, B * 64) == (B if kernels == "shape_dependent" else 1)
    assert torch.all(lin.weight.grad == want), lin.weight.grad[:2, :2]
    # dX = dY W^T is (M, 16, 16): no split either way; equal to the exact product here
    np.testing.assert_array_equal(x.grad.numpy(), (_dw_case(B) @ lin.weight.detach()).numpy())


def test_backward_models_by_shape_and_fp8():
    from fpsim import accum
    dep = ft.Deployment("h100", "fp8", sms=4, tile_m=16, tile_n=16)
    mixed = dep.base_model(backward=True)
    assert mixed.inner.in_fmt is None and mixed.every == 128  # e4m3 x e5m2 products
    # dX of a (16, 512) x (512, 16) GEMM is (16, 512, 16): K = 16 < one grain, no split;
    # dW is (512, 16, 16): 4 x 1 tiles fill the 4 SMs, no split; a (16, 16, 512) GEMM splits
    assert dep.gemm_model(16, 512, 16, backward=True) == mixed
    assert dep.gemm_model(16, 16, 512, backward=True) == accum.Promoted(mixed, every=128)
    # a training step under an fp8 deployment: gradients flow and are finite
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 16)
    x = torch.randn(4, 256, requires_grad=True)
    with ft.emulate(dep):
        lin(x).square().sum().backward()
    assert torch.isfinite(lin.weight.grad).all() and lin.weight.grad.abs().sum() > 0
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_tensor_parallel_and_output_splitk_train():
    """The row-parallel all-reduce and the "output" split-K reduction carry gradients: the
    gradient of the sum to every rank's (every slice's) GEMM, whose backward GEMMs run with
    their own shapes; equal to fp32 torch up to rounding."""
    torch.manual_seed(0)
    net = _Net(8)
    x = torch.randn(3, 4)
    ref = [p.detach().clone() for p in net.proj.parameters()]
    net(x)[1].square().sum().backward()
    want = [p.grad.clone() for p in net.proj.parameters()]
    for dep in (ft.Deployment("a100", "fp32", tp=2, allreduce="double_binary_tree"),
                ft.Deployment("a100", "bf16", splitk_reduction="output", sms=4, tile_m=16, tile_n=16,
                              k_grain=2)):
        net.zero_grad()
        with ft.emulate(dep, model=net):
            net(x)[1].square().sum().backward()
        for p, r, w in zip(net.proj.parameters(), ref, want):
            assert torch.equal(p.detach(), r)
            torch.testing.assert_close(p.grad, w, rtol=0.05, atol=0.05)
