"""Stochastic rounding statistics and hypothesis property tests over random formats."""

import math

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fpsim
import reference as ref
from fpsim import FloatFormat

# ---------------------------------------------------------------------------------------
# stochastic rounding
# ---------------------------------------------------------------------------------------


def test_sr_reproducible_by_seed():
    x = np.random.default_rng(0).normal(size=50_000).astype(np.float32)
    a = fpsim.quantize(x, "e4m3", rounding="stochastic", seed=123)
    b = fpsim.quantize(x, "e4m3", rounding="stochastic", seed=123)
    c = fpsim.quantize(x, "e4m3", rounding="stochastic", seed=124)
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.1  # a different stream
    g1 = fpsim.quantize(x, "e4m3", rounding="stochastic", seed=np.random.default_rng(5))
    g2 = fpsim.quantize(x, "e4m3", rounding="stochastic", seed=np.random.default_rng(5))
    np.testing.assert_array_equal(g1, g2)
    # every result is one of the two neighbours
    lo = fpsim.quantize(x, "e4m3", rounding="rdn")
    hi = fpsim.quantize(x, "e4m3", rounding="rup")
    assert np.all((a == lo) | (a == hi))


@pytest.mark.parametrize("fmt", ["e4m3", "bf16", "int8", "nf4"])
def test_sr_independent_of_thread_count(fmt):
    x = np.random.default_rng(1).normal(size=1 << 17) * 3
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = fpsim.quantize(x, fmt, rounding="stochastic", seed=7)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = fpsim.quantize(x, fmt, rounding="stochastic", seed=7)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one, two)
    # and equal to the serial kernel on a short prefix (the same counter-based stream)
    np.testing.assert_array_equal(fpsim.quantize(x[:1000], fmt, rounding="stochastic", seed=7), one[:1000])


def _freq_up(x, fmt, n, seed, **kw):
    xs = np.full(n, x)
    q = fpsim.quantize(xs, fmt, rounding="stochastic", seed=seed, **kw)
    lo = fpsim.quantize(x, fmt, rounding="rtz")
    return np.mean(q != lo), q


@pytest.mark.parametrize("fmt,x", [("e4m3", 1.0 + 0.3 / 8), ("e4m3", -3.1), ("e5m2", 1e-5),
                                   ("e4m3", 2.0**-10 * 0.37), ("bf16", 1.0 + 2.0**-9),
                                   ("int4", 2.71), ("fixed8f3", -0.3), ("nf4", 0.3), ("dint4", 0.8),
                                   ("e4m3", -1.5 * 2.0**-20)])  # far below the smallest subnormal
def test_sr_probability_and_unbiased(fmt, x):
    """P(round up in magnitude) equals the discarded fraction; the mean converges to x.

    5-sigma binomial bounds (a false alarm every ~2 million runs).  Round-to-nearest would
    fail the mean test: its bias |rne(x) - x| is far larger than the bound for these x.
    """
    f = fpsim.as_format(fmt)
    n = 1 << 18
    lo, hi = (float(v) for v in ref.neighbours(abs(x), f))
    p = (abs(x) - lo) / (hi - lo)
    assert math.isclose(p, float(ref.prob_up(abs(x), f)) if ref.kind(f) != "table" else p)
    freq, q = _freq_up(x, f, n, seed=99)
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(freq - p) < 5 * sd + 1e-12, (freq, p)
    mean_err = abs(np.mean(q) - x)
    bound = 5 * sd * (hi - lo)
    assert mean_err < bound
    assert abs(fpsim.quantize(x, f) - x) > bound  # RNE is biased beyond the bound


def test_sr_far_below_smallest_subnormal():
    # probability ~1e-27: never rounds up in 2**20 draws (it was 2**-10 with a clamped shift)
    q = fpsim.quantize(np.full(1 << 20, 1e-30), "e4m3", rounding="stochastic", seed=2)
    assert np.all(q == 0)


def test_sr_float32_input_tiny_fraction():
    # discarded fraction 2**-12 of an e4m3 quantum, exact with the default srbits
    x = np.float32(1.0 + 2.0**-15)
    freq, _ = _freq_up(x, "e4m3", 1 << 20, seed=1)
    p = 2.0**-12
    assert abs(freq - p) < 5 * math.sqrt(p / (1 << 20))


@pytest.mark.parametrize("srbits,frac,want", [(2, 0.3, 0.25), (2, 0.2, 0.0), (3, 0.3, 0.25),
                                             (4, 0.3, 0.25), (8, 0.3, 76 / 256), (1, 0.75, 0.5)])
def test_sr_srbits(srbits, frac, want):
    """With ``srbits`` random bits the probability is the fraction truncated to srbits bits."""
    x = 1.0 + frac / 8  # e4m3: quantum 1/8 at 1
    assert want == math.floor(frac * 2**srbits) / 2**srbits
    freq, _ = _freq_up(x, "e4m3", 1 << 18, seed=5, srbits=srbits)
    sd = math.sqrt(max(want * (1 - want), 1e-12) / (1 << 18))
    assert abs(freq - want) <= 5 * sd


# ---------------------------------------------------------------------------------------
# hypothesis: random formats
# ---------------------------------------------------------------------------------------

@st.composite
def float_formats(draw):
    fam = draw(st.sampled_from(["ieee", "fn", "fnuz", "finite", "p3109", "p3109_finite"]))
    E = draw(st.integers(1, 6))
    M = draw(st.integers(0, 7))
    signed = draw(st.booleans()) if fam != "fnuz" else True
    bias = draw(st.one_of(st.none(), st.integers(-8, 40)))
    subn = draw(st.booleans())
    try:
        return FloatFormat(E, M, bias=bias, family=fam, signed=signed, subnormals=subn)
    except ValueError:
        assume(False)


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _inputs(fmt, data, n=60):
    mx = fmt.max
    lo = -mx if fmt.signed else 0.0
    xs = data.draw(st.lists(st.floats(lo * 1.5 - 1, mx * 1.5 + 1, allow_nan=False), min_size=1, max_size=n))
    tiny = data.draw(st.lists(st.floats(-fmt.min_normal * 2, fmt.min_normal * 2, allow_nan=False),
                              max_size=20))
    return np.array(xs + tiny + [fmt.min_subnormal / 2, fmt.max], dtype=np.float64)


@SETTINGS
@given(float_formats(), st.data())
def test_monotone_idempotent(fmt, data):
    x = np.sort(_inputs(fmt, data))
    for mode in ref.MODES:
        q = fpsim.quantize(x, fmt, rounding=mode, overflow="saturate")
        assert np.all(np.diff(q) >= 0), (mode, x, q)
        ref.assert_same(fpsim.quantize(q, fmt, rounding=mode, overflow="saturate"), q, q, "idempotent")
        vals = fmt.values()
        assert np.all(np.isin(q, vals)), "results must be values of the format"


@SETTINGS
@given(float_formats(), st.data())
def test_neighbours_bracket_and_nearest(fmt, data):
    assume(fmt.subnormals)  # FTZ flushes *after* rounding, so rup of a tiny x can be 0
    x = _inputs(fmt, data)
    x = x[(x <= fmt.max) & (x >= (-fmt.max if fmt.signed else 0.0))]
    dn = fpsim.quantize(x, fmt, rounding="rdn", overflow="saturate")
    up = fpsim.quantize(x, fmt, rounding="rup", overflow="saturate")
    assert np.all(dn <= x) and np.all(x <= up)
    vals = fmt.values()
    assert np.all(np.isin(dn, vals)) and np.all(np.isin(up, vals))
    # adjacent: no value of the format strictly between them
    i_dn, i_up = np.searchsorted(vals, dn), np.searchsorted(vals, up)
    assert np.all(i_up - i_dn <= 1)
    for mode in ("rne", "rna"):
        q = fpsim.quantize(x, fmt, rounding=mode, overflow="saturate")
        assert np.all((q == dn) | (q == up))
        assert np.all(np.abs(q - x) <= np.minimum(x - dn, up - x))
    tz = fpsim.quantize(x, fmt, rounding="rtz", overflow="saturate")
    assert np.all(np.abs(tz) <= np.abs(x))
    # a third opinion: the exact reference on a few of them
    for v in x[:10]:
        assert ref.same(fpsim.quantize(float(v), fmt), ref.round_value(float(v), fmt, overflow="saturate")
                        if not fmt.has_inf else ref.round_value(float(v), fmt))


@SETTINGS
@given(float_formats())
def test_name_repr_round_trip(fmt):
    assert fpsim.parse(fmt.name) == fmt
    assert eval(repr(fmt), {"FloatFormat": FloatFormat}) == fmt


@SETTINGS
@given(st.integers(2, 16), st.integers(-20, 20), st.booleans(), st.data())
def test_fixed_properties(bits, frac, signed, data):
    fmt = fpsim.FixedFormat(bits, frac, signed=signed)
    assert fpsim.parse(fmt.name) == fmt
    x = np.sort(np.array(data.draw(st.lists(st.floats(fmt.min * 1.2 - 1, fmt.max * 1.2 + 1, allow_nan=False),
                                            min_size=1, max_size=40))))
    for mode in ref.MODES:
        q = fpsim.quantize(x, fmt, rounding=mode)
        assert np.all(np.diff(q) >= 0)
        k = q * 2.0**frac
        assert np.all(k == np.round(k)) and np.all((q <= fmt.max) & (q >= fmt.min))
        for v, got in zip(x[:5], q[:5]):
            assert ref.same(float(got) + 0.0, ref.round_value(float(v), fmt, mode=mode) + 0.0)
