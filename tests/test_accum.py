"""Accumulation models (fpsim.accum): properties against independent oracles.

Oracles: fractions (exact sums), gmpy2/MPFR (correct rounding of exact sums into a format),
numpy float32 arithmetic (plain loops, np.sum), numpy integer arithmetic.
"""

import math
from fractions import Fraction

import gmpy2
import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fpsim
from fpsim import accum as A

f32 = np.float32

_GM = {"rne": gmpy2.RoundToNearest, "rtz": gmpy2.RoundToZero, "rup": gmpy2.RoundUp,
       "rdn": gmpy2.RoundDown}


def mpfr_round(q: Fraction, fmt: str, mode: str) -> float:
    """Correct rounding of the exact dyadic rational q into fmt (MPFR, subnormals)."""
    f = fpsim.parse(fmt)
    M = f.man_bits
    with gmpy2.context(precision=4000, emin=-100000, emax=100000):
        exact = gmpy2.mpfr(gmpy2.mpq(q.numerator, q.denominator))
        assert gmpy2.mpq(exact) == gmpy2.mpq(q.numerator, q.denominator)  # dyadic, exact
    ctx = gmpy2.context(precision=M + 1, emin=f.emin - M + 1, emax=f.emax + 1,
                        subnormalize=True, round=_GM[mode])
    return float(ctx.plus(exact))


def exact_dot(a, b, c=0.0) -> Fraction:
    return sum((Fraction(float(x)) * Fraction(float(y)) for x, y in zip(a, b)), Fraction(float(c)))


def finite_in(fmt, lo=-20, hi=20):
    """Hypothesis strategy: values of fmt with exponents in [lo, hi]."""
    return st.builds(lambda m, e: float(fpsim.quantize(m * 2.0**e, fmt)),
                     st.floats(-2, 2, allow_nan=False), st.integers(lo, hi))


# ---------------------------------------------------------------------------------------
# Exact
# ---------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(finite_in("fp32"), finite_in("bf16")), min_size=1, max_size=40),
       finite_in("fp32"), st.sampled_from(["fp32", "bf16", "fp16", "e5m2", "e11m50", "e8m40"]),
       st.sampled_from(["rne", "rtz", "rup", "rdn"]))
def test_exact_is_correctly_rounded_exact_sum(pairs, c, fmt, mode):
    a = np.array([p[0] for p in pairs])
    b = np.array([p[1] for p in pairs])
    c = float(fpsim.quantize(c, fmt))
    with np.errstate(over="ignore"):
        c = c if math.isfinite(c) else 0.0
    q = exact_dot(a, b, c)
    want = mpfr_round(q, fmt, mode)
    got = float(fpsim.dot(a, b, c, model=A.Exact(fmt, mode)))
    if q == 0:
        assert got == 0.0
    else:
        assert got == want, (got, want)


def test_exact_huge_range_and_cancellation():
    a = np.array([2.0**100, 1.0, -2.0**100, 2.0**-100])
    got = float(fpsim.sum(a, model=A.Exact("fp32")))
    assert got == mpfr_round(Fraction(1) + Fraction(2) ** -100, "fp32", "rne")
    assert float(fpsim.sum(a, model=A.Exact("fp32", "rup"))) == float(np.nextafter(f32(1), f32(2)))


# ---------------------------------------------------------------------------------------
# Sequential, Pairwise, Kahan against plain numpy / Python loops
# ---------------------------------------------------------------------------------------

def test_sequential_fp32_equals_float32_loop():
    rng = np.random.default_rng(1)
    for K in (1, 7, 64, 333):
        a = (rng.standard_normal((5, K)) * np.exp2(rng.integers(-10, 10, (5, K)))).astype(f32)
        b = (rng.standard_normal((K, 6)) * np.exp2(rng.integers(-10, 10, (K, 6)))).astype(f32)
        c = rng.standard_normal((5, 6)).astype(f32)
        want = np.empty((5, 6), dtype=f32)
        for i in range(5):
            s = c[i].copy()
            for k in range(K):
                s = s + a[i, k] * b[k]  # float32 product, float32 sum: both rounded (RNE)
            want[i] = s
        m = A.Sequential("fp32")
        got = fpsim.matmul(a, b, c, model=m)
        assert np.array_equal(got, want.astype(np.float64))
        gotd = fpsim.dot(a[:, None, :], b.T[None, :, :], c, model=m)  # generic path
        assert np.array_equal(gotd, want.astype(np.float64))


def test_sequential_fma_and_modes_against_mpfr_per_step():
    rng = np.random.default_rng(2)
    a = fpsim.quantize(rng.standard_normal(50), "bf16")
    b = fpsim.quantize(rng.standard_normal(50), "bf16")
    for fmt, mode in [("fp32", "rne"), ("bf16", "rtz"), ("fp16", "rup"), ("e5m2", "rdn")]:
        s = 0.0
        for x, y in zip(a, b):
            s = mpfr_round(Fraction(s) + Fraction(float(x)) * Fraction(float(y)), fmt, mode)
        got = float(fpsim.dot(a, b, model=A.Sequential(fmt, mode, fma=True)))
        assert got == s, (fmt, mode)


def _fma64_chain(a, b, c):
    """s = fl64(a_k * b_k + s) per step: the exact value rounded by MPFR (finite inputs;
    an infinite s stays, as IEEE fma gives for finite products)."""
    s = float(c)
    for x, y in zip(a, b):
        if math.isfinite(s):
            s = mpfr_round(Fraction(s) + Fraction(float(x)) * Fraction(float(y)), "fp64", "rne")
    return s


def test_sequential_fp64_fma_against_mpfr_per_step():
    """Sequential("fp64", fma=True) (fp64 mma/v_mfma) on any float64 inputs: 53-bit
    products that float64 cannot hold, cancellation, subnormal products and sums, overflow."""
    rng = np.random.default_rng(12)
    R, K = 60, 13
    a, b = rng.standard_normal((R, K)), rng.standard_normal((R, K))
    a[20:30] *= 2.0 ** rng.integers(-560, 520, (10, K))  # wide exponents
    b[20:30] *= 2.0 ** rng.integers(-560, 520, (10, K))
    a[30:35] *= 2.0**-530  # products and sums among the subnormals
    b[30:35] *= 2.0**-540
    a[35:40] *= 2.0**1000  # overflow to +-inf, which later finite products keep
    b[35:40] *= 2.0**23
    b[40:, 1::2] = b[40:, ::2][:, :6]  # cancellation: a x b + (-a (1 + u)) x b
    a[40:, 1::2] = -a[40:, ::2][:, :6] * (1 + 2.0 ** -rng.integers(20, 52, (20, 6)))
    c = rng.standard_normal(R)
    c[::7] = 0.0
    c[30:33] = 2.0**-1070  # a subnormal start
    m = A.Sequential("fp64", fma=True)
    want = np.array([_fma64_chain(x, y, z) for x, y, z in zip(a, b, c)])
    assert np.array_equal(fpsim.dot(a, b, c, model=m), want)
    D = fpsim.matmul(a, b.T, np.diag(c), model=m)  # the GEMM path: the diagonal
    assert np.array_equal(np.diag(D), want)
    # the rounded-product loop gives other bits (the test can fail)
    with np.errstate(all="ignore"):
        plain = c + sum(a[:, k] * b[:, k] for k in range(K))
    assert not np.array_equal(plain, want)
    assert np.isinf(want).any() and (np.abs(want[want != 0]) < 2.0**-1022).any()


def test_sequential_fp64_fma_specials_and_composites():
    m = A.Sequential("fp64", fma=True)
    inf, nan = np.inf, np.nan
    a = np.array([[inf, 1.0], [inf, -inf], [1e308, 1e308], [0.0, inf], [1.0, nan]])
    b = np.array([[1.0, -5.0], [1.0, 1.0], [10.0, -10.0], [1.0, 0.0], [1.0, 1.0]])
    got = fpsim.dot(a, b, np.zeros(5), model=m)
    # inf stays; inf - inf is NaN; an fp64 overflow is inf then inf - huge stays inf;
    # inf * 0 is NaN; NaN propagates
    assert got[0] == inf and np.isnan(got[1]) and got[2] == inf
    assert np.isnan(got[3]) and np.isnan(got[4])
    # narrow inputs: exact float64 products, the same as the exact-product loop
    rng = np.random.default_rng(13)
    x = fpsim.quantize(rng.standard_normal((8, 40)), "fp32")
    y = fpsim.quantize(rng.standard_normal((8, 40)), "fp32")
    assert np.array_equal(fpsim.dot(x, y, model=m),
                          fpsim.dot(x, y, model=A.Sequential("fp64", multiply="exact")))
    # inside composites the factors reach the FMA leaf (wide inputs)
    w, v = rng.standard_normal((8, 40)), rng.standard_normal((8, 40))
    chained = fpsim.dot(w, v, model=m)
    assert np.array_equal(fpsim.dot(w, v, model=A.Blocked(40, m)), chained)
    perm = A.Permuted(m, order=tuple(range(39, -1, -1)))
    want = np.array([_fma64_chain(p[::-1], q[::-1], 0.0) for p, q in zip(w, v)])
    assert np.array_equal(fpsim.dot(w, v, model=perm), want)
    # the GEMM kernel (columns vectorised) against the row-by-row FMA leaf, specials too
    G, H, C = rng.standard_normal((9, 40)), rng.standard_normal((40, 17)), rng.standard_normal((9, 17))
    G[0, :3] = [np.inf, -np.inf, np.nan]
    H[5, 2] = 1e308
    D = fpsim.matmul(G, H, C, model=m)
    ref = fpsim.dot(G[:, None, :], H.T[None, :, :], C, model=m)
    assert np.array_equal(D, ref, equal_nan=True) and np.isnan(D[0]).all()
    with pytest.raises(ValueError, match="tree order adds products held on their own"):
        A.Permuted(m, order=((0, 1), 2))
    with pytest.raises(ValueError, match="more than 26 significant bits"):
        fpsim.dot(w, v, model=A.Sequential("fp64"))  # rounded products still need 26 bits
    with pytest.raises(ValueError, match="overflow='saturate' is not supported there"):
        A.Sequential("fp64", fma=True, overflow="saturate")  # native fp64 overflows to inf


def _seq32_ref(a, b, c, fma):
    """Sequential fp32 (RNE) per step, IEEE specials: MPFR rounds each finite exact sum
    (overflow to inf included); an inf or NaN operand follows IEEE addition."""
    s = float(c)
    for x, y in zip(a, b):
        p = float(x) * float(y)  # exact in float64 for fp32 inputs (or inf/NaN)
        if not fma:
            p = mpfr_round(Fraction(p), "fp32", "rne") if math.isfinite(p) else p
        if math.isfinite(s) and math.isfinite(p):
            s = mpfr_round(Fraction(s) + Fraction(p), "fp32", "rne")
        else:
            s = s + p  # inf + finite = inf, inf - inf = NaN
    return s


@pytest.mark.parametrize("fma", [False, True], ids=["mul-add", "fma"])
def test_sequential_fp32_matmul_overflow_against_mpfr(fma):
    """Rows whose fp32 accumulator overflows to +inf or -inf and stays there, and +inf meeting
    -inf (NaN), through both GEMM kernels (float32 data: the register-blocked kernel; C not
    in fp32: the float64 kernel gemm_seq_f32) and fpsim.dot: the same bits as MPFR per step."""
    big = float(np.finfo(np.float32).max)
    A_ = np.array([[big, big, 1.0, -big, -big, 3.0],
                   [big, big, -big, -big, -big, -big],
                   [big, big, 1.0, -np.inf, 1.0, 1.0],
                   [2.0**100, -2.0**100, 1.0, 1.0, 1.0, 1.0],
                   [-big, -big, 2.0**-149, big, 7.0, big]])
    B_ = np.stack([np.ones(6), np.full(6, 0.5), -np.ones(6), np.full(6, 2.0**100)], axis=1)
    for C in (np.zeros((5, 4)), np.full((5, 4), 0.1)):  # 0.1 is no fp32 value: float64 kernel
        m = A.Sequential("fp32", fma=fma)
        want = np.array([[_seq32_ref(A_[i], B_[:, j], C[i, j], fma) for j in range(4)]
                         for i in range(5)])
        assert np.isposinf(want).any() and np.isneginf(want).any() and np.isnan(want).any()
        got = fpsim.matmul(A_, B_, C, model=m)
        assert np.array_equal(got, want, equal_nan=True), (got, want)
        dot = fpsim.dot(A_[:, None, :], B_.T[None, :, :], C, model=m)  # the generic path
        assert np.array_equal(dot, want, equal_nan=True)
    # a product that overflows fp32 after rounding: inf, then -2**200 gives NaN only when
    # the product is rounded first (fma=False)
    assert np.isnan(want[3, 3]) != fma


def _pairwise_ref(x):
    if len(x) == 1:
        return x[0]
    h = len(x) // 2
    return f32(_pairwise_ref(x[:h]) + _pairwise_ref(x[h:]))


def test_pairwise_fp32_against_recursive_float32():
    rng = np.random.default_rng(3)
    for K in (1, 2, 3, 5, 16, 17, 100, 1000):
        x = (rng.standard_normal(K) * np.exp2(rng.integers(-12, 12, K))).astype(f32)
        assert fpsim.sum(x, model=A.Pairwise("fp32")) == np.float64(_pairwise_ref(list(x)))


def test_kahan_fp32_against_float32_loop_and_beats_sequential():
    rng = np.random.default_rng(4)
    wins = 0
    for t in range(20):
        x = rng.random(3000).astype(f32)
        s, comp = f32(0), f32(0)
        for v in x:
            y = f32(v - comp)
            u = f32(s + y)
            comp = f32(f32(u - s) - y)
            s = u
        k = fpsim.sum(x, model=A.Kahan("fp32"))
        assert k == np.float64(s)
        exact = math.fsum(x.astype(np.float64))
        seq = fpsim.sum(x, model=A.Sequential("fp32"))
        assert abs(k - exact) <= 2 * 2.0**-24 * abs(exact)  # Kahan: O(u), independent of K
        wins += abs(k - exact) <= abs(seq - exact)
    assert wins == 20


# ---------------------------------------------------------------------------------------
# Blocked, Permuted, Promoted
# ---------------------------------------------------------------------------------------

@settings(deadline=None, max_examples=30)
@given(st.integers(1, 70), st.integers(0, 10**6))
def test_blocked_with_k_ge_K_equals_inner(K, seed):
    rng = np.random.default_rng(seed)
    a = fpsim.quantize(rng.standard_normal((3, K)), "bf16")
    b = fpsim.quantize(rng.standard_normal((3, K)), "bf16")
    for inner in (A.Sequential("fp32"), A.Pairwise("bf16"), A.Kahan("fp32"),
                  fpsim.hardware.tensor_core("A100", "bf16")):
        want = fpsim.dot(a, b, model=inner)
        for k in (K, K + 5):
            got = fpsim.dot(a, b, model=A.Blocked(k, inner, A.Sequential("fp32", fma=True)))
            assert np.array_equal(got, want)


def test_blocked_split_matches_manual_partials():
    rng = np.random.default_rng(5)
    x = fpsim.quantize(rng.standard_normal(103), "bf16")
    inner, outer = A.Sequential("bf16"), A.Sequential("fp32")
    parts = [fpsim.sum(x[i:i + 10], model=inner) for i in range(0, 103, 10)]
    want = fpsim.sum(np.array(parts), model=outer)
    assert fpsim.sum(x, model=A.Blocked(10, inner, outer)) == want


@settings(deadline=None, max_examples=25)
@given(st.integers(2, 200), st.integers(0, 10**6))
def test_permuted_orders_within_classical_bound(K, seed):
    rng = np.random.default_rng(seed)
    a = fpsim.quantize(rng.standard_normal(K), "bf16")
    b = fpsim.quantize(rng.standard_normal(K), "bf16")
    exact = float(exact_dot(a, b))
    absum = float(np.sum(np.abs(a * b)))
    u = 2.0**-24
    gamma = K * u / (1 - K * u)
    for s in range(5):
        for inner in (A.Sequential("fp32", fma=True), A.Pairwise("fp32")):
            d = float(fpsim.dot(a, b, model=A.Permuted(inner, seed=seed + s)))
            assert abs(d - exact) <= gamma * absum


def test_permuted_explicit_order_and_tree():
    x = np.array([1.0, 2.0**-24, 2.0**-24, 2.0**-24])
    seq = A.Sequential("fp32")
    assert fpsim.sum(x, model=A.Permuted(seq, order=[1, 2, 3, 0])) == 1 + 2.0**-22
    assert fpsim.sum(x, model=A.Permuted(seq, order=((1, 2), (0, 3)))) == 1 + 2.0**-23
    assert fpsim.sum(x, model=A.Permuted(seq, order=(0, 1, 2, 3))) == 1.0
    with pytest.raises(ValueError, match="permutation"):
        fpsim.sum(x, model=A.Permuted(seq, order=[0, 1, 2]))
    with pytest.raises(ValueError, match="exactly once"):
        fpsim.sum(x, model=A.Permuted(seq, order=((0, 1), (1, 3))))


def test_promoted_fp8_recipe_is_more_accurate():
    rng = np.random.default_rng(6)
    K = 4096
    a = fpsim.quantize(rng.random((4, K)), "e4m3")
    b = fpsim.quantize(rng.random((4, K)), "e4m3")
    exact = np.array([float(exact_dot(a[i], b[i])) for i in range(4)])
    tc = fpsim.hardware.tensor_core("H100", "e4m3")
    plain = fpsim.dot(a, b, model=tc)
    promo = fpsim.dot(a, b, model=fpsim.hardware.fp8_promoted("H100"))
    assert np.all(np.abs(promo - exact) < np.abs(plain - exact))
    # promoted = 128-chunks on the tensor core, partials added in fp32 (checked by hand)
    parts = [fpsim.dot(a[0, i:i + 128], b[0, i:i + 128], model=tc) for i in range(0, K, 128)]
    s = f32(0)
    for p in parts:
        s = f32(s + f32(p))
    assert promo[0] == np.float64(s)


# ---------------------------------------------------------------------------------------
# numpy's order
# ---------------------------------------------------------------------------------------

def test_numpy_order_matches_np_sum_lengths():
    rng = np.random.default_rng(7)
    m = A.NumpyOrder()
    lengths = list(range(1, 260)) + [511, 1000, 1023, 1024, 1025, 4097, 8191, 8192, 8193, 70001]
    for n in lengths:
        x = (rng.standard_normal(n) * np.exp(rng.standard_normal(n) * 3)).astype(f32)
        assert fpsim.sum(x, model=m) == np.float64(np.sum(x)), n
        assert fpsim.sum(x, model=m) == np.float64(np.add.reduce(x)), n


@pytest.mark.parametrize("shape,axis", [((5, 300), 1), ((300, 5), 0), ((7, 3, 200), 2),
                                        ((7, 200, 3), 1), ((200, 7, 3), 0), ((3, 10000), -1),
                                        ((40, 40), 0), ((6, 50), None)])
def test_numpy_order_matches_np_sum_axes(shape, axis):
    x = (np.random.default_rng(8).standard_normal(shape) * 1e3).astype(f32)
    got = fpsim.sum(x, model=A.NumpyOrder(), axis=axis)
    assert np.array_equal(got, np.sum(x, axis=axis).astype(np.float64))


# ---------------------------------------------------------------------------------------
# Integer accumulators
# ---------------------------------------------------------------------------------------

def test_integer_wrap_matches_numpy_int_arithmetic():
    rng = np.random.default_rng(9)
    a = rng.integers(-128, 128, (4, 300)).astype(np.int64)
    b = rng.integers(-128, 128, (300, 5)).astype(np.int64)
    with np.errstate(over="ignore"):
        want16 = np.zeros((4, 5), dtype=np.int16)
        for k in range(300):
            want16 = (want16 + (a[:, k:k + 1] * b[k]).astype(np.int16)).astype(np.int16)
    got = fpsim.matmul(a.astype(np.float64), b.astype(np.float64), model=A.Integer("int16"))
    assert np.array_equal(got, want16.astype(np.float64))
    got32 = fpsim.matmul(a.astype(np.float64), b.astype(np.float64), model=A.Integer("int32"))
    assert np.array_equal(got32, (a @ b).astype(np.float64))


def test_integer_saturate_per_step():
    x = np.array([100, 100, -50, -200, -100], dtype=np.float64)
    s = 0
    for v in x:
        s = min(127, max(-128, s + int(v)))
    assert fpsim.sum(x, model=A.Integer("int8", overflow="saturate")) == s
    w = np.cumsum(x.astype(np.int64)).astype(np.int8)[-1]  # wrap: numpy int8 cast
    assert fpsim.sum(x, model=A.Integer("int8")) == w


# ---------------------------------------------------------------------------------------
# Multipliers
# ---------------------------------------------------------------------------------------

def test_rounded_products_and_lmul():
    a = np.array([1.5, 1.75]); b = np.array([1.5, 1.75])
    # products rounded to e4m3 first: 2.25 -> 2.25, 3.0625 -> 3.0 (RNE)
    m = A.Exact("fp32", multiply="e4m3")
    assert fpsim.dot(a, b, model=m) == 2.25 + 3.0
    try:
        from fpsim.arith import lmul  # noqa: F401  (the elementwise-arithmetic module)
    except ImportError:
        pytest.skip("fpsim.arith.lmul (optional module of another issue) not available")
    m = A.Exact("fp32", multiply=A.LMulProduct(23))
    assert fpsim.dot(a, b, model=m) == 2.125 + 3.125  # SPEC §3.1 test vectors


# ---------------------------------------------------------------------------------------
# Determinism, shapes, errors
# ---------------------------------------------------------------------------------------

def test_thread_count_independence():
    rng = np.random.default_rng(10)
    a = fpsim.quantize(rng.standard_normal((17, 300)), "bf16")
    b = fpsim.quantize(rng.standard_normal((300, 13)), "bf16")
    models = [A.Sequential("fp32"), fpsim.hardware.tensor_core("H100", "bf16"), A.Pairwise("bf16"),
              A.Exact("fp16", "rtz"), A.Blocked(64, A.Sequential("bf16"), A.Kahan("fp32"))]
    n0 = numba.get_num_threads()
    try:
        res = {}
        for nt in sorted({1, n0}):
            numba.set_num_threads(nt)
            res[nt] = [fpsim.matmul(a, b, model=m) for m in models]
        for r in res.values():
            for x, y in zip(r, res[1]):
                assert np.array_equal(x.view(np.uint64), y.view(np.uint64))
    finally:
        numba.set_num_threads(n0)


def test_broadcast_batches_and_C():
    rng = np.random.default_rng(11)
    a = fpsim.quantize(rng.standard_normal((2, 1, 3, 8)), "bf16")
    b = fpsim.quantize(rng.standard_normal((4, 8, 5)), "bf16")
    m = A.Sequential("fp32", fma=True)
    d = fpsim.matmul(a, b, 1.0, model=m)
    assert d.shape == (2, 4, 3, 5)
    d2 = fpsim.matmul(a[1, 0], b[2], np.ones((3, 5)), model=m)
    assert np.array_equal(d[1, 2], d2)


def test_bad_inputs_raise_clear_errors():
    m = A.Sequential("fp32")
    with pytest.raises(ValueError, match="K=3"):
        fpsim.matmul(np.ones((2, 3)), np.ones((4, 2)), model=m)
    with pytest.raises(ValueError, match="last axes differ"):
        fpsim.dot(np.ones(3), np.ones(4), model=m)
    with pytest.raises(ValueError, match="broadcast"):
        fpsim.matmul(np.ones((2, 3)), np.ones((3, 2)), np.ones((3, 3)), model=m)
    with pytest.raises(TypeError, match="model="):
        fpsim.matmul(np.ones((2, 3)), np.ones((3, 2)), model="fp32")
    tc = fpsim.hardware.tensor_core("Ada", "e4m3")
    with pytest.raises(ValueError, match="no NaN"):
        fpsim.dot(np.array([np.nan, 1.0]), np.ones(2), model=A.FusedBlock(16, -10, in_fmt="e2m3"))
    with pytest.raises(ValueError, match="not a value of the model's input format e4m3"):
        fpsim.dot(np.array([0.3, 1.0]), np.ones(2), model=tc)
    with pytest.raises(ValueError, match="no NaN"):
        fpsim.sum(np.array([np.nan, 1.0]), model=A.Sequential("e2m3"))
    with pytest.raises(ValueError, match="26 significant bits"):
        fpsim.dot(np.array([0.1]), np.array([0.1]), model=A.Exact("fp32"))
    with pytest.raises(ValueError, match="wider than the outer"):
        A.Blocked(8, A.Sequential("fp32"), A.Sequential("bf16"))
    with pytest.raises(ValueError, match="stochastic"):
        A.Kahan("fp32", rounding="stochastic")
    with pytest.raises(ValueError, match="51 bits"):
        A.Kahan("fp64")
    with pytest.raises(ValueError, match="codebook"):
        A.Sequential("nf4")
    with pytest.raises(ValueError, match="exactly one"):
        A.Permuted(m)
    with pytest.raises(ValueError, match="unknown GPU"):
        fpsim.hardware.tensor_core("P100", "fp16")
    with pytest.raises(ValueError, match="fp8"):
        fpsim.hardware.tensor_core("A100", "e4m3")


def test_fp64_native_sequential():
    x = np.array([1.0, 2.0**-53, 2.0**-53])
    assert fpsim.sum(x, model=A.Sequential("fp64")) == 1.0
    assert fpsim.sum(x, model=A.Exact(fpsim.FloatFormat(11, 50))) == 1.0
    x = np.array([1.0, 2.0**-60])
    assert fpsim.sum(x, model=A.Exact(fpsim.FloatFormat(11, 50), "rup")) == 1.0 + 2.0**-50


# --- stochastic rounding inside Sequential ---------------------------------------------

def _sr(seed, fmt="bf16"):
    return fpsim.accum.Sequential(fmt, rounding="stochastic", seed=seed)


def test_sequential_stochastic_one_addition_rounds_up_with_the_exact_probability():
    # 1 + 3/4 ulp(1) in bf16 (ulp 2**-7): up to 1 + 2**-7 with probability 3/4
    x = np.array([1.0, 0.75 * 2.0**-7])
    n = 4000
    got = np.array([float(fpsim.sum(x, model=_sr(s))) for s in range(n)])
    assert set(np.unique(got)) == {1.0, 1.0 + 2.0**-7}
    p = np.mean(got > 1.0)
    assert abs(p - 0.75) < 4 * math.sqrt(0.75 * 0.25 / n)


def test_sequential_stochastic_is_unbiased_where_rne_stagnates():
    x = np.array([1.0] + [2.0**-9] * 1000)  # every term is a quarter ulp: RNE never moves
    exact = 1.0 + 1000 * 2.0**-9
    assert float(fpsim.sum(x, model=fpsim.accum.Sequential("bf16"))) == 1.0
    vals = np.array([float(fpsim.sum(x, model=_sr(s))) for s in range(1500)])
    assert abs(vals.mean() - exact) < 4 * vals.std() / math.sqrt(vals.size)


def test_sequential_stochastic_is_reproducible_and_independent_of_threads_and_chunks(monkeypatch):
    import fpsim.accum as acc
    rng = np.random.default_rng(5)
    a = fpsim.quantize(rng.standard_normal((2, 6, 200)), "bf16")
    b = fpsim.quantize(rng.standard_normal((200, 7)), "bf16")
    m = _sr(11)
    d1 = fpsim.matmul(a, b, model=m)
    assert np.array_equal(d1, fpsim.matmul(a, b, model=m))
    assert not np.array_equal(d1, fpsim.matmul(a, b, model=_sr(12)))
    dd = fpsim.matmul(np.stack([a[0], a[0]]), b, model=m)
    assert not np.array_equal(dd[0], dd[1])  # each batch draws its own bits
    n = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert np.array_equal(d1, fpsim.matmul(a, b, model=m))
    finally:
        numba.set_num_threads(n)
    monkeypatch.setattr(acc.models, "_CHUNK_TERMS", 200 * 5)  # 5 output rows per chunk
    assert np.array_equal(d1, fpsim.matmul(a, b, model=m))
    # dot over the same rows draws the same bits as matmul (row index = output index)
    assert np.array_equal(d1[0], fpsim.dot(a[0][:, None, :], b.T[None], model=m))
    # every rounding (products to nearest, additions stochastic) errs by < 1 ulp of a value
    # bounded by S = sum |a_k b_k|: the result is within (K + 1) * 2**-7 * S of exact
    ex = a @ b
    S = np.abs(a) @ np.abs(b)
    assert np.all(np.abs(d1 - ex) <= 201 * 2.0**-7 * S * 1.01)


def test_stochastic_inside_composite_models_and_errors():
    x = np.random.default_rng(0).standard_normal((3, 256))
    m = fpsim.accum.Blocked(64, _sr(3), _sr(4, "fp32"))
    s1 = fpsim.sum(x, model=m)
    assert np.array_equal(s1, fpsim.sum(x, model=m))
    assert np.allclose(s1, x.sum(-1), atol=0.2)
    with pytest.raises(ValueError, match="stochastic"):
        fpsim.accum.Pairwise("bf16", rounding="stochastic")
    with pytest.raises(ValueError, match="tree order"):
        fpsim.accum.Permuted(_sr(1), order=((0, 1), 2))
    with pytest.raises(ValueError, match="seed only applies"):
        fpsim.accum.Sequential("bf16", seed=3)
    with pytest.raises(TypeError, match="seed"):
        fpsim.accum.Sequential("bf16", rounding="stochastic", seed="x")


# --- Exact("fp64"): the exact reference accumulator (issue 15) --------------------------------
def _fraction_f64(terms):
    from fractions import Fraction
    q = sum(Fraction(float(t)) for t in terms)
    try:
        return float(q) + 0.0
    except OverflowError:
        return float("inf") if q > 0 else float("-inf")


@pytest.mark.parametrize("kind", ["wide", "cancel", "huge", "tiny"])
def test_exact_fp64_equals_exact_rationals(kind):
    rng = np.random.default_rng(7)
    R, K = 40, 33
    if kind == "wide":
        T = rng.standard_normal((R, K)) * 2.0 ** rng.integers(-80, 80, (R, K))
    elif kind == "cancel":  # big terms cancel exactly, small ones decide
        big = rng.standard_normal((R, K // 2)) * 2.0**60
        T = np.concatenate([big, -big, rng.standard_normal((R, 1)) * 2.0**-70], 1)
    elif kind == "huge":  # partials overflow float64 although some sums are finite
        T = np.full((R, K), 1.6e308) * rng.choice([-1.0, 1.0], (R, K))
    else:  # subnormal results
        T = rng.integers(-9, 9, (R, K)) * 2.0**-1074
    c = rng.standard_normal(R)
    got = fpsim.sum(np.concatenate([c[:, None], T], 1), model=fpsim.accum.Exact("fp64"))
    want = np.array([_fraction_f64([ci, *row]) for ci, row in zip(c, T)])
    assert np.array_equal(got, want)
    if kind == "cancel":  # plain float64 summation does lose it (the check is not vacuous)
        assert not np.array_equal(got, T.sum(1) + c)


def test_exact_fp64_dot_matmul_and_specials():
    rng = np.random.default_rng(3)
    A = fpsim.quantize(rng.standard_normal((5, 17)) * 2.0 ** rng.integers(-40, 40, (5, 17)), "bf16")
    B = fpsim.quantize(rng.standard_normal((17, 4)), "bf16")
    m = fpsim.accum.Exact("fp64")
    D = fpsim.matmul(A, B, model=m)
    want = np.array([[_fraction_f64(A[i] * B[:, j]) for j in range(4)] for i in range(5)])
    assert np.array_equal(D, want)  # bf16 products are exact in float64
    nan, inf = np.nan, np.inf
    x = np.array([[1.0, inf, 2.0], [inf, -inf, 0.0], [nan, 1.0, 1.0], [-inf, 5.0, 1.0],
                  [-0.0, -0.0, -0.0]])
    got = fpsim.sum(x, model=m)
    assert np.array_equal(got, [inf, nan, nan, -inf, 0.0], equal_nan=True)
    assert not np.signbit(got[-1])
    with pytest.raises(ValueError, match="Exact"):
        fpsim.accum.Exact("fp64", rounding="rtz")
