"""Register-blocked GEMM kernels (fpsim.kernels.gemm) against the reference kernels.

The reference is the generic path of :func:`fpsim.dot` (one dot product per row, the leaf
kernels that tests/test_accum.py checks against MPFR and float32 loops) and, for
``fma=False``, a plain numpy float32 loop. Shapes are chosen so that tiles are partial
(M not a multiple of 6, N not a multiple of 16) and K is not a multiple of any block.
"""

import math

import numba
import numpy as np
import pytest

import fpsim
from fpsim import accum as A
from fpsim.kernels import gemm_fused

f32 = np.float32


def same(x, y):
    """Bit-identical, except that any NaN equals any NaN."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    nx, ny = np.isnan(x), np.isnan(y)
    return (x.shape == y.shape and np.array_equal(nx, ny)
            and np.array_equal(np.where(nx, 0.0, x).view(np.uint64),
                               np.where(ny, 0.0, y).view(np.uint64)))


def reference(a, b, c, model):
    """Every output element as one dot product on the generic (row-by-row) path."""
    return fpsim.dot(a[:, None, :], np.swapaxes(b, 0, 1)[None, :, :], c, model=model)


def wide_f32(rng, shape, specials=True):
    """float32 values over a wide exponent range, with zeros, subnormals, huge values
    (products overflow), and inf/-inf/NaN when ``specials``."""
    x = (rng.standard_normal(shape) * np.exp2(rng.integers(-30, 30, shape))).astype(f32)
    flat = x.reshape(-1)
    n = flat.size
    pick = rng.integers(0, n, max(1, n // 8))
    flat[pick[0::4]] = 0.0
    flat[pick[1::4]] = (rng.standard_normal(pick[1::4].size) * 2.0**-135).astype(f32)
    flat[pick[2::4]] = f32(3e37) * np.sign(rng.standard_normal(pick[2::4].size)).astype(f32)
    if specials and n >= 8:
        flat[pick[3::4][:3]] = np.array([np.inf, -np.inf, np.nan], dtype=f32)[:pick[3::4][:3].size]
    return x.astype(np.float64)


SHAPES = [(1, 1, 1), (7, 37, 19), (13, 70, 33)]


def _same_for_1_and_2_threads(a, b, m, want):
    n0 = numba.get_num_threads()
    try:
        for nt in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(nt)
            assert same(fpsim.matmul(a, b, model=m), want), nt
    finally:
        numba.set_num_threads(n0)


@pytest.mark.parametrize("fma", [False, True], ids=["mul-add", "fma"])
def test_seq_f32_matches_reference_kernels(fma):
    rng = np.random.default_rng(5)
    m = A.Sequential("fp32", fma=fma)
    for M, K, N in SHAPES:
        for specials in (False, True):
            a, b = wide_f32(rng, (M, K), specials), wide_f32(rng, (K, N), specials)
            c = wide_f32(rng, (M, N), False)
            got = fpsim.matmul(a, b, c, model=m)
            assert same(got, reference(a, b, c, m)), (M, K, N, specials)
            if not fma:  # an independent oracle: a float32 loop
                with np.errstate(all="ignore"):
                    s = c.astype(f32)
                    for k in range(K):
                        s = s + a[:, k, None].astype(f32) * b[k].astype(f32)
                assert same(got, s)


def test_seq_f32_bf16_products_and_accumulation_order():
    """bf16 inputs (the benchmark's case) where the order of the K loop shows in the bits."""
    rng = np.random.default_rng(6)
    a = fpsim.quantize(rng.standard_normal((9, 300)) * 100, "bf16")
    b = fpsim.quantize(rng.standard_normal((300, 21)), "bf16")
    for fma in (False, True):
        m = A.Sequential("fp32", fma=fma)
        got = fpsim.matmul(a, b, model=m)
        assert same(got, reference(a, b, np.zeros((9, 21)), m))
        # not the exact result: the sequential roundings are visible
        assert not same(got, fpsim.matmul(a, b, model=A.Exact("fp32")))


def test_seq_f32_non_contiguous_inputs_and_threads():
    rng = np.random.default_rng(7)
    big_a = wide_f32(rng, (30, 90), False)
    big_b = wide_f32(rng, (40, 60), False)
    a = big_a[::2, ::3]  # (15, 30), strided
    b = big_b[::2, :].T[:30, :17].T.T  # a transposed view (30, 17)
    assert not a.flags.c_contiguous and not b.flags.c_contiguous
    m = A.Sequential("fp32", fma=True)
    want = reference(np.ascontiguousarray(a), np.ascontiguousarray(b), np.zeros((15, 17)), m)
    _same_for_1_and_2_threads(a, b, m, want)


@pytest.mark.parametrize("fma", [False, True], ids=["mul-add", "fma"])
def test_seq_f32_data_outside_float32_uses_the_float64_kernel(fma):
    """Values float32 cannot hold (26-bit inputs, float64 exponents, C not in fp32): the
    float64 kernel; -inf stays -inf there (it used to become NaN)."""
    a = np.array([[1 + 2.0**-25, 2.0**-200, -np.inf, 3.0]])
    b = np.array([[3.0], [2.0**190], [1.0], [2.0**-25]])
    c = np.array([[0.1]])
    m = A.Sequential("fp32", fma=fma)
    got = fpsim.matmul(a, b, c, model=m)
    assert got[0, 0] == -np.inf
    a[0, 2] = 5.0
    assert same(fpsim.matmul(a, b, c, model=m), reference(a, b, c, m))


def test_seq_f32_empty_k_returns_c():
    c = np.array([[1.5, -0.0]])
    got = fpsim.matmul(np.zeros((1, 0)), np.zeros((0, 2)), c, model=A.Sequential("fp32"))
    assert same(got, c)


# ---------------------------------------------------------------------------------------
# Tensor-core chains: Promoted (FP8 recipe) and Blocked split-K over FusedBlock
# ---------------------------------------------------------------------------------------

def tc_inputs(rng, fmt, shape, specials=False):
    """Values of ``fmt``: normal, subnormal, zero and the largest (products overflow)."""
    f = fpsim.parse(fmt)
    x = rng.standard_normal(shape) * np.exp2(rng.integers(-4, 4, shape))
    flat = x.reshape(-1)
    pick = rng.integers(0, flat.size, max(1, flat.size // 6))
    flat[pick[0::4]] = 0.0
    flat[pick[1::4]] = f.min_normal * rng.uniform(-1, 1, pick[1::4].size)
    flat[pick[2::4]] = f.max * np.sign(rng.standard_normal(pick[2::4].size))
    if specials:
        flat[pick[3::4][:2]] = [np.inf, np.nan][:pick[3::4][:2].size]
    return fpsim.quantize(x, fmt)


CHAINS = {
    "fp8_promoted": (fpsim.hardware.fp8_promoted(), "e4m3"),
    "promoted-48-e5m2": (fpsim.hardware.fp8_promoted("H100", "e5m2", every=48), "e5m2"),
    "blocked-20-bf16": (A.Blocked(20, fpsim.hardware.tensor_core("A100", "bf16"),
                                  A.Sequential("fp32")), "bf16"),
    "blocked-fp16-out": (A.Blocked(24, A.FusedBlock(8, 3, out_fmt="fp16", rounding="rne",
                                                   in_fmt="fp16"), A.Sequential("fp16", "rtz")),
                         "fp16"),
}


@pytest.mark.parametrize("name", list(CHAINS))
def test_fused_chain_matches_reference_kernels(name):
    m, fmt = CHAINS[name]
    rng = np.random.default_rng(8)
    for M, K, N in [(3, 1, 5), (7, 101, 19), (5, 130, 70)]:
        a, b = tc_inputs(rng, fmt, (M, K)), tc_inputs(rng, fmt, (K, N))
        c = fpsim.quantize(rng.standard_normal((M, N)) * 8, "fp16")
        got = fpsim.matmul(a, b, c, model=m)
        assert same(got, reference(a, b, c, m)), (name, M, K, N)


def test_fused_chain_specials_threads_and_non_contiguous(monkeypatch):
    m, fmt = CHAINS["fp8_promoted"]
    rng = np.random.default_rng(9)
    a = tc_inputs(rng, fmt, (9, 300))[:, ::2]  # strided (9, 150)
    b = tc_inputs(rng, fmt, (19, 150)).T  # transposed view (150, 19)
    want = reference(np.ascontiguousarray(a), np.ascontiguousarray(b), np.zeros((9, 19)), m)
    _same_for_1_and_2_threads(a, b, m, want)
    # inf/NaN inputs take the general kernels, which agree with the fast chain elsewhere
    a2, b2 = tc_inputs(rng, fmt, (4, 70), True), tc_inputs(rng, fmt, (70, 6))
    got = fpsim.matmul(a2, b2, model=m)
    monkeypatch.setattr(A.fused, "_FUSED_FAST", False)
    assert same(got, reference(a2, b2, np.zeros((4, 6)), m))
    assert np.isnan(got).any()


# ---------------------------------------------------------------------------------------
# The packed tensor-core kernel (fpsim.kernels.gemm_fused) against exact rationals
# ---------------------------------------------------------------------------------------

from fractions import Fraction  # noqa: E402

import reference as R  # noqa: E402


def _fused_ref(a, b, c, n, neab, fin, out_man):
    """One dot product on FusedBlock's documented arithmetic, in exact rationals: blocks of
    ``n`` chained from ``c``; clamped input exponents, the extra alignment bit, truncation
    of every term at 2**(E - 23 - neab - big), truncating output into ``out_man`` mantissa
    bits of fp32's range (overflow: inf; a zero sum, or one that rounds to 0: +0)."""
    emin_in = fpsim.parse(fin).emin
    fout = fpsim.formats.FloatFormat(8, out_man)
    cv = float(c)
    for lo in range(0, len(a), n):
        terms, exps = [], []
        for x, y in zip(a[lo:lo + n], b[lo:lo + n]):
            t = Fraction(x) * Fraction(y)
            if t != 0:
                e = (max(R.floor_log2(abs(Fraction(x))), emin_in)
                     + max(R.floor_log2(abs(Fraction(y))), emin_in))
                terms.append(t)
                exps.append((e, abs(t) / Fraction(2) ** e >= 2))
        if np.isinf(cv):
            continue  # an overflowed accumulator stays inf (finite products)
        cf = Fraction(cv)
        ec = max(R.floor_log2(abs(cf)), -126) if cf != 0 else None
        if not terms and ec is None:
            cv = 0.0
            continue
        E = max([e + big for e, big in exps] + ([ec] if ec is not None else []))
        big = 0
        if terms:
            emaxp = max(e for e, _ in exps)
            if any(bg for e, bg in exps if e == emaxp) and (ec is None or emaxp >= ec):
                big = 1
        q = Fraction(2) ** (E - 23 - neab - big)
        S = sum(int(t / q) for t in terms + [cf])  # int() truncates toward zero
        v = S * q
        if abs(v) >= Fraction(2) ** 128:
            cv = np.inf if v > 0 else -np.inf
        else:
            cv = R.round_value(v, fout, "rtz")
            cv = 0.0 if cv == 0.0 else cv
    return cv


def _packed_inputs(rng, fmt, shape, kind):
    f = fpsim.parse(fmt)
    x = rng.standard_normal(shape)
    if kind == "wide":  # products beyond fp32 and far below it: the float64 pass
        x *= np.exp2(rng.integers(f.emin - 3, f.emax, shape))
    elif kind == "zeros":
        x *= rng.random(shape) < 0.3
    elif kind == "subnormal":
        x *= np.exp2(f.emin - rng.integers(0, f.man_bits + 1, shape))
    elif kind == "cancel":
        x[..., 1::2] = -x[..., ::2][..., :x[..., 1::2].shape[-1]]
    elif kind == "tiny":  # products near fp32's subnormal range: results need rnd1
        x *= np.exp2(rng.integers(max(f.emin, -75), max(f.emin, -75) + 8, shape))
    return fpsim.quantize(np.clip(x, -f.max, f.max), fmt)


PACKED = {
    "H100-bf16": (lambda: fpsim.hardware.tensor_core("H100", "bf16"), "bf16", 23),
    "H100-e4m3": (lambda: fpsim.hardware.tensor_core("H100", "e4m3"), "e4m3", 13),
    "A100-bf16": (lambda: fpsim.hardware.tensor_core("A100", "bf16"), "bf16", 23),
    # n * 2**(25 + neab) > 2**31: the int32 pass is off, every block takes the float64 pass
    "n16-neab3-fp16": (lambda: A.FusedBlock(16, 3, in_fmt="fp16"), "fp16", 23),
}


@pytest.mark.parametrize("name", list(PACKED))
def test_packed_fused_kernel_equals_exact_rationals(name):
    make, fmt, out_man = PACKED[name]
    m = make()
    rng = np.random.default_rng(sum(map(ord, name)))
    n0 = numba.get_num_threads()
    try:
        for M, K, N in [(1, 1, 1), (13, 70, 21), (8, 32, 16), (9, 45, 17)]:
            for kind in ("normal", "wide", "zeros", "subnormal", "cancel", "tiny"):
                a = _packed_inputs(rng, fmt, (M, K), kind)
                b = _packed_inputs(rng, fmt, (K, N), "normal" if kind == "cancel" else kind)
                if kind == "cancel":  # b's rows pair up so that products cancel
                    b[1::2] = b[::2][:b[1::2].shape[0]]
                c = fpsim.quantize(rng.standard_normal((M, N)) * 4, "fp32")
                if kind == "tiny":
                    c *= 2.0**-130
                c[::3, ::2] = 0.0
                want = np.array([[_fused_ref(a[i], b[:, j], c[i, j], m.n, m.neab, fmt, out_man)
                                  for j in range(N)] for i in range(M)])
                for nt in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
                    numba.set_num_threads(nt)
                    got = m._packed(a, b, c, 0, None, m.out_fmt)
                    assert got is not None, "the packed kernel did not run"
                    assert same(got, want), (name, M, K, N, kind, nt)
                assert same(fpsim.matmul(a, b, c, model=m), want)
    finally:
        numba.set_num_threads(n0)


def test_packed_promoted_chain_equals_exact_rationals():
    """fp8_promoted: chunks of 128 products by the H100 e4m3 adder from 0, each added into
    an fp32 round-to-nearest-even accumulator started at C."""
    m = fpsim.hardware.fp8_promoted()
    rng = np.random.default_rng(12)
    M, K, N = 5, 300, 19  # K: two full chunks and a partial one, partial blocks of 32
    a, b = _packed_inputs(rng, "e4m3", (M, K), "normal"), _packed_inputs(rng, "e4m3", (K, N),
                                                                          "zeros")
    c = fpsim.quantize(rng.standard_normal((M, N)), "fp32")
    want = np.empty((M, N))
    for i in range(M):
        for j in range(N):
            s = float(c[i, j])
            for k0 in range(0, K, 128):
                part = _fused_ref(a[i, k0:k0 + 128], b[k0:k0 + 128, j], 0.0, 32, -10, "e4m3", 13)
                s = R.round_value(Fraction(s) + Fraction(part), fpsim.parse("fp32"), "rne")
            want[i, j] = s
    kind, po = m.outer._leaf_args()
    got = m.inner._packed(a, b, c, 128, po, m.out_fmt)
    assert got is not None, "the packed kernel did not run"
    assert same(got, want)
    assert same(fpsim.matmul(a, b, c, model=m), want)


def test_packed_kernel_declines_what_it_cannot_do_exactly(monkeypatch):
    """No declared input format (values need not be float32), and C beyond its exponent
    range: the other kernels run, with the same bits as before."""
    rng = np.random.default_rng(13)
    a = fpsim.quantize(rng.standard_normal((6, 40)), "bf16")
    b = fpsim.quantize(rng.standard_normal((40, 7)), "bf16")
    m_any = A.FusedBlock(16, 2)  # in_fmt None
    assert m_any._packed(a, b, np.zeros((6, 7)), 0, None, m_any.out_fmt) is None
    m = fpsim.hardware.tensor_core("H100", "bf16")
    c = np.full((6, 7), 2.0**950)
    assert m._packed(a, b, c, 0, None, m.out_fmt) is None
    got = fpsim.matmul(a, b, c, model=m)
    monkeypatch.setattr(A.fused, "_FUSED_FAST", False)
    assert same(got, reference(a, b, c, m))


def test_packed_kernel_c_range_check_matches_frexp():
    """The packed kernel's branch-free range check of C (|exponent| <= 900, zeros in
    range) against Python's math.frexp on the boundary values, float64 subnormals, signs,
    and an odd row length (the vectorised loop's remainder); 1 and 2 threads."""
    edges = [0.0, -0.0, 1.0, 2.0**900, 2.0**901 * 0.999, 2.0**901, 2.0**-900,
             2.0**-900 * 0.999, 2.0**-1022, 5e-324, 2.0**-1030, 1.7e308, 3.0 * 2.0**-901]
    vals = np.array(edges + [-v for v in edges])

    def oracle(v):  # frexp: v = f * 2**e with 0.5 <= |f| < 1, so the exponent is e - 1
        return 0 if v == 0.0 else int(abs(math.frexp(v)[1] - 1) > 900)

    want = sum(oracle(float(v)) for v in vals)
    assert want == 12  # each sign: 2**901, 0.999*2**-900, 2**-1022, 5e-324, 2**-1030, 1.7e308
    for threads in (1, 2):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        for cols in (1, 7, 26):
            C = np.resize(vals, (3, cols))
            assert gemm_fused.c_bad(C) == sum(oracle(float(v)) for v in C.ravel())
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
