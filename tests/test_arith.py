"""Correctly rounded elementwise arithmetic (SPEC §3) against independent oracles.

* gmpy2/MPFR (SPEC §7 recipe): a context with precision M+1, emin/emax of the format and
  subnormalize=True, the MPFR operation on exact ``mpfr(x, 64)`` operands, for rne, rtz,
  rup, rdn.
* tests/reference.py (exact Fractions, written from the SPEC) for rna and rto, and for
  integer / fixed-point formats.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fpsim
from fpsim import arith as A

gmpy2 = pytest.importorskip("gmpy2")
import reference as ref

MPFR_MODES = {"rne": gmpy2.RoundToNearest, "rtz": gmpy2.RoundToZero, "rup": gmpy2.RoundUp,
              "rdn": gmpy2.RoundDown}
OPS = ("add", "sub", "mul", "div", "fma", "sqrt")

# from 1-bit-mantissa finite formats to float64, including the 51/52-bit wide paths
FORMATS = ["e2m1", "e3m2", "e4m3", "e5m2", "fp16", "bf16", "e3m4", "tf32", "fp32", "e6m40",
           "e11m10", "e8m51", "e11m51", "fp64"]


def _ctx(fmt, mode):
    M = fmt.man_bits
    return gmpy2.context(precision=M + 1, emin=fmt.emin - M + 1, emax=fmt.emax + 1,
                         subnormalize=True, round=MPFR_MODES[mode])


def _mpfr_op(ctx, op, a, b, c):
    x, y, z = (gmpy2.mpfr(float(v), 64) for v in (a, b, c))
    if op == "add":
        return ctx.add(x, y)
    if op == "sub":
        return ctx.sub(x, y)
    if op == "mul":
        return ctx.mul(x, y)
    if op == "div":
        return ctx.div(x, y)
    if op == "fma":
        return ctx.fma(x, y, z)
    return ctx.sqrt(x)


def _fpsim_op(op, a, b, c, fmt, **kw):
    if op in ("add", "sub", "mul", "div"):
        return getattr(A, op)(a, b, fmt, **kw)
    if op == "fma":
        return A.fma(a, b, c, fmt, **kw)
    return A.sqrt(np.abs(a), fmt, **kw)


def _exact(op, a, b, c):
    a, b, c = Fraction(float(a)), Fraction(float(b)), Fraction(float(c))
    return {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b,
            "div": lambda: a / b, "fma": lambda: a * b + c}[op]()


def _same(got, want):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return ref.bits_equal(got, want)


def _report(op, fmt, mode, ok, a, b, c, got, want):
    bad = np.flatnonzero(~ok)[:5]
    rows = [f"  {op}({a[i]!r}, {b[i]!r}, {c[i]!r}) -> {got[i]!r}, want {want[i]!r}" for i in bad]
    return f"{op} into {fmt.name} ({mode}): {(~ok).sum()} mismatches\n" + "\n".join(rows)


# ---------------------------------------------------------------------------------------
# operand generation: random values around the format's range plus hard cases
# ---------------------------------------------------------------------------------------

def _rand_vals(rng, fmt, n, lo_exp, hi_exp):
    """float64 values with random sign, exponent in [lo_exp, hi_exp] and 53 random bits;
    a third of them rounded into fmt (short significands: ties and exact results)."""
    e = np.clip(rng.integers(lo_exp, hi_exp + 1, n), -1074, 1023)
    m = 1.0 + rng.random(n)
    x = np.ldexp(m, e) * rng.choice([-1.0, 1.0], n)
    k = rng.random(n) < 0.35
    x[k] = fpsim.quantize(x[k], fmt.replace(subnormals=True), rounding="rtz", overflow="saturate") \
        if fmt.family != "e8m0" else x[k]
    return x


def _ulp(fmt, v):
    """Quantum of fmt at |v| (v nonzero, finite)."""
    e = max(math.frexp(abs(v))[1] - 1, fmt.emin)
    return math.ldexp(1.0, e - fmt.man_bits)


def _hard_pairs(fmt, rng):
    """(a, b, c) triples of hard cases for fmt."""
    M, mx, mn, ms = fmt.man_bits, fmt.max, fmt.min_normal, fmt.replace(subnormals=True).min_subnormal
    vals = fpsim.quantize(np.array([1.0, 1.5, 3.0, 0.75, mx / 2, mx, mn, mn * 1.5, ms, 3 * ms,
                                    mn - ms]), fmt)
    out = []
    for v in vals:
        if v == 0 or not np.isfinite(v):
            continue
        u = _ulp(fmt, v)
        for s in (1.0, -1.0):
            for b in (u / 2, -u / 2, u / 4, 3 * u / 4, u / 2 * (1 + 2.0**-40), u / 2 * (1 - 2.0**-40),
                      u * 2.0**-60, -u * 2.0**-60, u * 2.0**-300, -v, u, -u / 2 * 3):
                if b == 0 or not np.isfinite(b):
                    continue
                out.append((s * v, s * b, -s * v * 0.5))
    # products: ties and sticky in multiplication / fma cancellation
    for v in vals:
        if v == 0:
            continue
        for f in (1 + 2.0**-(M + 1), 1 - 2.0**-(M + 2), 1 + 2.0**-(M + 1) + 2.0**-(M + 30), 0.5, 3.0):
            out.append((v, f, -v * f))
    # results exactly at the subnormal boundary / half the smallest subnormal
    out += [(ms, 0.5, ms), (ms * 0.5, 1.0, 0.0), (mn, 1.0 - 2.0**-60, -ms), (ms * 1.5, 0.5, 0.0),
            (2.0**-600, 2.0**-600, ms), (2.0**-1074, 3.0, 2.0**-1074), (5e-324, 2.0**1000, -1.0),
            (mx, 2.0, -mx), (mx, mx, -1.0), (1.0, 2.0**-1074, 1.0)]
    arr = np.array(out, dtype=np.float64)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def _operands(fmt, op, n, seed):
    rng = np.random.default_rng(seed)
    lo_e = fmt.emin - fmt.man_bits - 3
    hi_e = fmt.emax + 1
    a = _rand_vals(rng, fmt, n, lo_e, hi_e)
    if op in ("add", "sub"):
        # the second operand near a (cancellation, ties) or far below (sticky only)
        d = rng.integers(-fmt.man_bits - 8, 3, n)
        b = _rand_vals(rng, fmt, n, lo_e, hi_e)
        near = rng.random(n) < 0.6
        b[near] = (np.ldexp(1.0 + rng.random(near.sum()), d[near] + np.frexp(a[near])[1])
                   * rng.choice([-1.0, 1.0], near.sum()))
        q = rng.random(n) < 0.15
        b[q] = -a[q] * (1 + 2.0**-(fmt.man_bits + 1)) if fmt.man_bits < 52 else -a[q]
        c = a
    elif op in ("mul", "div", "fma"):
        # target exponents inside the format's range (plus a bit of over/underflow)
        t = rng.integers(lo_e - 2, hi_e + 2, n)
        ea = np.frexp(a)[1]
        be = t - ea if op != "div" else ea - t
        b = _rand_vals(rng, fmt, n, 0, 0) * np.ldexp(1.0, np.clip(be, -1070, 1020))
        b[b == 0] = 1.0
        c = -(a * b) * (1 + rng.integers(-3, 4, n) * 2.0**-fmt.man_bits) if op == "fma" else a
        if op == "fma":
            far = rng.random(n) < 0.3
            c[far] = _rand_vals(rng, fmt, int(far.sum()), lo_e, hi_e)
            c[~np.isfinite(c)] = 1.0
    else:
        b = c = a
    ha, hb, hc = _hard_pairs(fmt, rng)
    if op == "div":
        hb = np.where(hb == 0, 1.0, hb)
        ha = ha * hb  # quotients near the hard values
        ok = np.isfinite(ha)
        ha, hb, hc = ha[ok], hb[ok], hc[ok]
    return np.concatenate([a, ha]), np.concatenate([b, hb]), np.concatenate([c, hc])


def _expected_mpfr(fmt, op, mode, a, b, c):
    ctx = _ctx(fmt, mode)
    want = np.array([float(_mpfr_op(ctx, op, x, y, z)) for x, y, z in zip(a, b, c)])
    if not fmt.has_inf:  # saturating families: MPFR's wider top binade / inf -> ±max
        big = np.abs(want) > fmt.max
        want[big] = np.copysign(fmt.max, want[big])
    return want


@pytest.mark.parametrize("name", FORMATS)
def test_ops_match_mpfr(name):
    """add/sub/mul/div/fma/sqrt in rne/rtz/rup/rdn equal MPFR bit for bit (zeros' signs too)."""
    fmt = fpsim.parse(name)
    n = 400
    for k, op in enumerate(OPS):
        a, b, c = _operands(fmt, op, n, seed=1000 * k + len(name))
        if op == "sqrt":
            a = np.abs(a)
        for mode in MPFR_MODES:
            want = _expected_mpfr(fmt, op, mode, a, b, c)
            kw = {} if fmt.has_inf else {"overflow": "saturate"}
            got = _fpsim_op(op, a, b, c, fmt, rounding=mode, **kw)
            ok = _same(got, want)
            assert ok.all(), _report(op, fmt, mode, ok, a, b, c, got, want)


@pytest.mark.parametrize("name", ["e2m1", "e4m3", "e5m2", "bf16", "fp32", "e8m51", "fp64"])
def test_rna_rto_match_fraction_reference(name):
    """rna and rto (no MPFR equivalent) against exact rational rounding (tests/reference.py)."""
    fmt = fpsim.parse(name)
    for k, op in enumerate(("add", "sub", "mul", "div", "fma")):
        a, b, c = _operands(fmt, op, 60, seed=77 + k)
        fin = np.isfinite(a) & np.isfinite(b) & np.isfinite(c)
        a, b, c = a[fin], b[fin], c[fin]
        ex = [_exact(op, x, y, z) for x, y, z in zip(a, b, c)]
        for mode in ("rna", "rto"):
            want = np.array([ref.round_value(q, fmt, mode=mode) if q != 0 else 0.0 for q in ex])
            got = _fpsim_op(op, a, b, c, fmt, rounding=mode)
            ok = _same(got, want) | (np.array(ex) == 0)  # zero signs: test_signed_zero_rules
            assert ok.all(), _report(op, fmt, mode, ok, a, b, c, got, want)


@pytest.mark.parametrize("name", ["e4m3", "fp32", "fp64"])
def test_sqrt_rna_rto(name):
    """sqrt never ties: rna == MPFR rne; rto is the odd one of MPFR's rtz / away results."""
    fmt = fpsim.parse(name)
    a = np.abs(_operands(fmt, "sqrt", 200, seed=5)[0])
    rne = _expected_mpfr(fmt, "sqrt", "rne", a, a, a)
    assert _same(A.sqrt(a, fmt, rounding="rna"), rne).all()
    ctx_z, ctx_a = _ctx(fmt, "rtz"), _ctx(fmt, "rtz")
    ctx_a.round = gmpy2.RoundAwayZero
    want = []
    for x in a:
        z = ctx_z.sqrt(gmpy2.mpfr(float(x), 64))
        w = ctx_a.sqrt(gmpy2.mpfr(float(x), 64))
        if z == w:
            want.append(float(z))
        else:
            code = ref.encode(float(z), fmt)
            want.append(float(z) if code & 1 else float(w))
    assert _same(A.sqrt(a, fmt, rounding="rto"), np.array(want)).all()


@pytest.mark.parametrize("fmt", [fpsim.IntFormat(8), fpsim.FixedFormat(12, 4)], ids=str)
@pytest.mark.parametrize("overflow", ["saturate", "wrap"])
def test_integer_and_fixed_targets(fmt, overflow):
    rng = np.random.default_rng(3)
    a = rng.normal(0, 60, 300)
    b = rng.normal(0, 60, 300)
    a[:20] = [2.0**60 + 0.5, -(2.0**60) - 3.5, 2.0**80, 1.5, 2.5, -2.5, 0.5, -0.5, 127.5, -128.5] * 2
    for op in ("add", "mul", "div"):
        for mode in ("rne", "rna", "rtz", "rup", "rdn", "rto"):
            got = getattr(A, op)(a, b, fmt, rounding=mode, overflow=overflow)
            ex = [_exact(op, x, y, 0.0) for x, y in zip(a, b)]
            want = np.array([ref.round_value(q, fmt, mode=mode, overflow=overflow) for q in ex])
            ok = _same(got, want)
            assert ok.all(), _report(op, fmt, mode, ok, a, b, a, got, want)


finite_f64 = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=150, deadline=None)
@given(a=finite_f64, b=finite_f64, c=finite_f64,
       name=st.sampled_from(["e4m3", "fp16", "bf16", "fp32", "fp64"]),
       mode=st.sampled_from(list(MPFR_MODES)))
def test_property_any_float64_operands(a, b, c, name, mode):
    """Arbitrary float64 operands (huge/tiny exponents, subnormals) against MPFR."""
    fmt = fpsim.parse(name)
    kw = {} if fmt.has_inf else {"overflow": "saturate"}
    for op in OPS:
        x = abs(a) if op == "sqrt" else a
        if op == "div" and b == 0:
            continue
        want = _expected_mpfr(fmt, op, mode, [x], [b], [c])
        got = _fpsim_op(op, np.array([x]), np.array([b]), np.array([c]), fmt, rounding=mode, **kw)
        assert _same(got, want).all(), (op, x, b, c, got, want)


# ---------------------------------------------------------------------------------------
# IEEE special cases
# ---------------------------------------------------------------------------------------

def _sb(x):
    return math.copysign(1.0, x)


@pytest.mark.parametrize("mode", ["rne", "rna", "rtz", "rup", "rdn", "rto", "stochastic"])
def test_signed_zero_rules(mode):
    kw = {"rounding": mode, "seed": 1}
    neg_zero_mode = mode == "rdn"
    r = A.add(np.array([1.5, 0.0, -0.0, -0.0, 2.0**-30]), np.array([-1.5, -0.0, 0.0, -0.0, -(2.0**-30)]), "bf16", **kw)
    assert [_sb(v) for v in r] == [(-1.0 if neg_zero_mode else 1.0)] * 3 + [-1.0] + [-1.0 if neg_zero_mode else 1.0]
    assert (r == 0).all()
    assert _sb(A.sub(0.0, 0.0, "fp16", **kw)) == (-1.0 if neg_zero_mode else 1.0)
    assert _sb(A.sub(-0.0, 0.0, "fp16", **kw)) == -1.0
    assert _sb(A.mul(-0.0, 3.0, "fp16", **kw)) == -1.0
    assert _sb(A.mul(-1e-300, 1e-300, "fp16", **kw)) == -1.0  # -0 or -min_subnormal
    assert _sb(A.fma(2.0, 3.0, -6.0, "fp16", **kw)) == (-1.0 if neg_zero_mode else 1.0)
    assert _sb(A.fma(-0.0, 3.0, -0.0, "fp16", **kw)) == -1.0
    assert _sb(A.fma(0.0, 3.0, -0.0, "fp16", **kw)) == (-1.0 if neg_zero_mode else 1.0)
    assert _sb(A.sqrt(-0.0, "fp16", **kw)) == -1.0
    assert _sb(A.div(-0.0, 5.0, "fp16", **kw)) == -1.0


def test_nan_inf_rules():
    inf, nan = math.inf, math.nan
    assert math.isnan(A.add(inf, -inf, "fp16"))
    assert A.add(inf, inf, "fp16") == inf and A.sub(-inf, inf, "fp16") == -inf
    assert math.isnan(A.mul(0.0, inf, "fp16")) and math.isnan(A.fma(0.0, inf, 1.0, "fp16"))
    assert math.isnan(A.fma(inf, 1.0, -inf, "fp16")) and A.fma(inf, 2.0, 1.0, "fp16") == inf
    assert A.div(1.0, 0.0, "fp16") == inf and A.div(-1.0, 0.0, "fp16") == -inf
    assert A.div(1.0, -0.0, "fp16") == -inf and A.div(inf, 0.0, "fp16") == inf
    assert math.isnan(A.div(0.0, 0.0, "fp16")) and math.isnan(A.div(inf, inf, "fp16"))
    assert math.isnan(A.sqrt(-1.0, "fp16")) and A.sqrt(inf, "fp16") == inf
    assert math.isnan(A.sqrt(-inf, "fp16"))
    for op in (A.add, A.mul, A.div):
        assert math.isnan(op(nan, 1.0, "bf16")) and math.isnan(op(1.0, nan, "bf16"))
    # formats without inf: ±inf saturates (e4m3 default) or is NaN (fnuz default)
    assert A.add(inf, 1.0, "e4m3") == 448.0 and math.isnan(A.add(inf, 1.0, "e4m3fnuz"))
    # huge exact results beyond float64 still overflow by the format's policy
    big = 1.7e308
    assert A.add(big, big, "fp64") == inf and A.add(big, big, "fp64", rounding="rtz") == np.finfo(float).max
    assert A.mul(big, big, "bf16", rounding="rdn") == fpsim.parse("bf16").max
    assert A.mul(-big, big, "e4m3") == -448.0


def test_nan_into_nanless_format():
    with pytest.raises(ValueError, match="no NaN"):
        A.sub(math.inf, math.inf, "e2m1")
    with pytest.raises(ValueError, match="no NaN"):
        A.sqrt(np.array([1.0, -1.0]), "e3m2")
    assert A.div(0.0, 0.0, "e2m1", nan="zero") == 0.0
    assert A.div(0.0, 0.0, "e2m1", nan="max") == 6.0


def test_bad_input():
    with pytest.raises(ValueError, match="broadcast"):
        A.add(np.zeros(3), np.zeros(4), "fp16")
    with pytest.raises(TypeError, match="bool arrays are not accepted"):
        A.mul(np.array([True]), 1.0, "fp16")
    with pytest.raises(ValueError, match="not exactly representable in float64"):
        A.mul(np.array([2**53 + 1]), 1.0, "fp64")
    # the one input rule (issue #13): exact integer arrays are numbers, as in quantize
    assert A.mul(np.arange(3), 1.0, "fp16").tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(TypeError, match="bool"):
        A.add(True, 1.0, "fp16")
    with pytest.raises(ValueError, match="rounding"):
        A.add(1.0, 1.0, "fp16", rounding="nearest")
    with pytest.raises(TypeError, match="table format"):
        A.add(1.0, 1.0, fpsim.DIntFormat(4))
    with pytest.raises(ValueError, match="srbits"):
        A.add(1.0, 1.0, "fp16", srbits=5)


def test_broadcasting_dtypes_and_scalars():
    a = np.arange(6, dtype=np.float32).reshape(2, 3) + 0.1
    b = np.array([1.0, 2.0, 3.0], dtype=np.float16)
    got = A.mul(a, b, "bf16")
    assert got.shape == (2, 3) and got.dtype == np.float64
    want = fpsim.quantize(a.astype(np.float64) * b.astype(np.float64), "bf16")  # exact product
    assert np.array_equal(got, want)
    assert isinstance(A.add(1.0, 2.0, "fp16"), float)


def test_neg_abs_min_max():
    x = np.array([0.3, -0.0, 0.0, -5.0, np.nan])
    assert _same(A.neg(x, "e4m3"), [-0.3125, 0.0, -0.0, 5.0, np.nan]).all()
    assert _same(A.abs(x, "e4m3"), [0.3125, 0.0, 0.0, 5.0, np.nan]).all()
    a = np.array([0.0, -0.0, 1.0, np.nan, 3.3])
    b = np.array([-0.0, 0.0, -1.0, 1.0, 3.2])
    assert _same(A.minimum(a, b, "fp16"), [-0.0, -0.0, -1.0, np.nan, fpsim.quantize(3.2, "fp16")]).all()
    assert _same(A.maximum(a, b, "fp16"), [0.0, 0.0, 1.0, np.nan, fpsim.quantize(3.3, "fp16")]).all()


def test_ftz_output():
    fmt = fpsim.parse("fp16")
    tiny = fmt.min_normal / 4
    assert A.add(tiny, 0.0, fmt) == tiny
    assert A.add(tiny, 0.0, fmt, subnormals=False) == 0.0


# ---------------------------------------------------------------------------------------
# stochastic rounding
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("op,args,fmt", [
    ("add", (1.0, 0.3 * 2.0**-7 + 2.0**-70), "bf16"),       # sticky far below the fraction
    ("mul", (1.0 + 2.0**-30, 1.0 + 2.0**-31), "fp32"),       # exact fraction 3/4 of an ulp... of 2^-23
    ("div", (1.0, 3.0), "e4m3"),
    ("fma", (1.0 + 2.0**-20, 1.0 - 2.0**-21, -0.3), "fp16"),
    ("sqrt", (2.0,), "e5m2"),
    ("add", (1.0, 2.0**-53 * 0.375), "fp64"),                 # wide format, fraction 3/4 ulp
])
def test_stochastic_unbiased(op, args, fmt):
    n = 40000
    arrs = [np.full(n, v) for v in args]
    got = getattr(A, op)(*arrs, fmt, rounding="stochastic", seed=123)
    lo = getattr(A, op)(*args, fmt, rounding="rtz")
    hi = getattr(A, op)(*args, fmt, rounding="rup")
    assert set(np.unique(got)) <= {lo, hi} and lo != hi
    if op == "sqrt":
        exact = Fraction(math.sqrt(2.0))  # only 53 bits, enough for the test's precision
    else:
        exact = _exact(op, *(list(args) + [0.0] * (3 - len(args))))
    p = float((exact - Fraction(lo)) / (Fraction(hi) - Fraction(lo)))
    frac_up = float(np.mean(got == hi))
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(frac_up - p) < 5 * sigma + 1e-12, (frac_up, p)


def test_stochastic_reproducible_and_thread_independent():
    rng = np.random.default_rng(9)
    n = 1 << 16  # large enough for the parallel kernel
    a, b = rng.normal(size=n), rng.normal(size=n)
    r1 = A.add(a, b, "e4m3", rounding="stochastic", seed=42)
    r2 = A.add(a, b, "e4m3", rounding="stochastic", seed=42)
    r3 = A.add(a, b, "e4m3", rounding="stochastic", seed=43)
    small = A.add(a[:1000], b[:1000], "e4m3", rounding="stochastic", seed=42)  # serial kernel
    assert np.array_equal(r1, r2) and not np.array_equal(r1, r3)
    assert np.array_equal(r1[:1000], small)
    lo = A.add(a, b, "e4m3", rounding="rdn")
    hi = A.add(a, b, "e4m3", rounding="rup")
    assert ((r1 == lo) | (r1 == hi)).all()


def test_stochastic_srbits():
    # with 2 random bits a fraction of 0.3 rounds up with probability floor(0.3*4)/4 = 1/4
    n = 40000
    got = A.add(np.full(n, 1.0), 0.3 * 2.0**-7, "bf16", rounding="stochastic", seed=5, srbits=2)
    frac = float(np.mean(got > 1.0))
    assert abs(frac - 0.25) < 5 * math.sqrt(0.25 * 0.75 / n)
