"""Fuzzing of the accumulation API (dot/matmul/sum) and the analysis metrics (hypothesis).

Random dtypes (every numpy kind, longdouble, complex, ml_dtypes, bool, object), shapes
(0-d, empty, mismatched, strided, Fortran order, big-endian, read-only) and option values
of wrong types. The property: the call returns what an exact oracle says (a sum of
``fractions.Fraction`` values rounded by MPFR through gmpy2 - independent of fpsim - or
float64 arithmetic where that is exact), or it raises ValueError/TypeError whose message
names the offending argument. Never another exception, never a silent change of value,
shape or dtype.

Modest example counts by default; ``FPSIM_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_accum.py``
runs deeper (the same variable as tests/test_fuzz.py).
"""

from __future__ import annotations

import os
from fractions import Fraction

import gmpy2
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fpsim
import fpsim.analysis as fa
from fpsim import accum

EXAMPLES = int(os.environ.get("FPSIM_FUZZ_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
          np.float16, np.float32, np.float64, np.longdouble, np.complex64, np.complex128,
          np.bool_, object, ">f8", ">i4", "<U3",
          ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2,
          ml_dtypes.float6_e2m3fn, ml_dtypes.float4_e2m1fn, ml_dtypes.int4]

# MPFR contexts for the accumulator formats (binary32, bfloat16), subnormals included
CTX = {"fp32": gmpy2.ieee(32),
       "bf16": gmpy2.context(precision=8, emin=-132, emax=128, subnormalize=True)}


def _round(q: Fraction, fmt: str) -> float:
    """Round an exact rational once into fmt (RNE) with MPFR - no fpsim involved."""
    with gmpy2.context(CTX[fmt], round=gmpy2.RoundToNearest):
        return float(gmpy2.mpfr(gmpy2.mpq(q.numerator, q.denominator)))


@st.composite
def arrays(draw, min_dims=0, max_dims=2):
    """A random array: dtype, shape and memory layout (strided, Fortran, read-only, ...)."""
    dt = np.dtype(draw(st.sampled_from(DTYPES)))
    ndim = draw(st.integers(min_dims, max_dims))
    shape = tuple(draw(st.integers(0, 5)) for _ in range(ndim))
    n = int(np.prod(shape)) if shape else 1
    if dt.kind in "iu" and dt.type.__module__ == "numpy":
        info = np.iinfo(dt)
        big = draw(st.booleans())  # the full range: int64 values float64 cannot hold
        lo, hi = (int(info.min), int(info.max)) if big else (max(int(info.min), -16), 16)
        vals = draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))
        a = np.array(vals, dtype=dt).reshape(shape)
    elif dt == np.longdouble:
        vals = draw(st.lists(st.integers(-32, 32), min_size=n, max_size=n))
        a = (np.array(vals, dtype=dt) / 4).reshape(shape)
        if n and draw(st.booleans()):  # a value float64 cannot hold
            a.reshape(-1)[0] += np.longdouble(2) ** -60
    elif dt.kind == "c":
        vals = draw(st.lists(st.integers(-8, 8), min_size=n, max_size=n))
        a = (np.array(vals, dtype=dt) * (1 + 1j)).reshape(shape)
    elif dt.kind == "b":
        a = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=dt).reshape(shape)
    elif dt.kind == "O":
        a = np.array(draw(st.lists(st.integers(-4, 4), min_size=n, max_size=n)),
                     dtype=object).reshape(shape)
    elif dt.kind == "U":
        a = np.full(shape, "1.5", dtype=dt)
    elif dt == np.dtype(ml_dtypes.int4):
        a = np.array(draw(st.lists(st.integers(-8, 7), min_size=n, max_size=n))).astype(dt).reshape(shape)
    else:  # floats: quarter-integers in [-6, 6], exact in every float type drawn
        vals = draw(st.lists(st.integers(-12, 12), min_size=n, max_size=n))
        a = (np.array(vals, dtype=np.float64) / 2).astype(dt).reshape(shape)
    layout = draw(st.sampled_from(["c", "fortran", "strided", "readonly", "reversed"]))
    if layout == "fortran":
        a = np.asfortranarray(a)
    elif layout == "strided" and a.ndim:
        a = np.repeat(a, 2, axis=-1)[..., ::2]
    elif layout == "reversed" and a.ndim:
        a = a[..., ::-1]
    elif layout == "readonly":
        a.setflags(write=False)
    return a


def _exact(a):
    """The exact values of an array as Fractions, or the reason fpsim must refuse it:
    ("type", why) for kinds that are not numbers, ("value", why) for values float64 cannot
    hold."""
    dt = a.dtype
    if dt.kind in "bcOUV" and not (dt.kind == "V" and dt.type.__module__ == "ml_dtypes"
                                   and dt != np.dtype(ml_dtypes.int4)):
        return "type", dt.kind
    if dt == np.dtype(ml_dtypes.int4):
        return "type", "int4"
    if dt.kind in "iu":
        vals = [Fraction(int(v)) for v in a.reshape(-1)]
    elif dt == np.longdouble:
        # exact value of each longdouble: as_integer_ratio is exact
        vals = [Fraction(*v.as_integer_ratio()) for v in a.reshape(-1)]
    else:
        vals = [Fraction(float(v)) for v in a.astype(np.float64).reshape(-1)]
    for v in vals:
        if Fraction(float(v)) != v:
            return "value", v
    return "ok", vals


def _bits(q: Fraction) -> int:
    """Significant bits of a dyadic rational."""
    if q == 0:
        return 0
    n, d = abs(q.numerator), q.denominator
    while n % 2 == 0:
        n //= 2
    return n.bit_length()


MODELS = {"exact-fp32": (accum.Exact("fp32"), "exact", "fp32"),
          "exact-bf16": (accum.Exact("bf16"), "exact", "bf16"),
          "seq-fp32-fma": (accum.Sequential("fp32", fma=True), "seq", "fp32")}


def _oracle_sum(terms, kind, fmt):
    if kind == "exact":
        return _round(sum(terms, Fraction(0)), fmt)
    s = Fraction(0)
    for t in terms:
        s = Fraction(_round(s + t, fmt))
    return float(s)


def _expect_error(excinfo_type, msg, names):
    assert excinfo_type in (ValueError, TypeError), excinfo_type
    assert any(n in msg for n in names), msg


@SETTINGS
@given(x=arrays(), model=st.sampled_from(sorted(MODELS)), axis=st.sampled_from([-1, 0, None]))
def test_sum_is_exact_or_refused(x, model, axis):
    m, kind, fmt = MODELS[model]
    ex = _exact(x)
    try:
        got = fpsim.sum(x, model=m, axis=axis)
    except (ValueError, TypeError) as e:
        msg = str(e)
        if ex[0] == "type":
            assert type(e) is TypeError and msg.startswith("x"), msg
        elif ex[0] == "value":
            assert type(e) is ValueError and msg.startswith("x holds"), msg
        else:  # a valid array: only a shape problem may be refused, and it says so
            assert x.ndim == 0 and "at least one axis" in msg or "axis" in msg, msg
        return
    assert ex[0] == "ok", f"accepted a {x.dtype} input that must be refused: {ex}"
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    xf = np.array(ex[1], dtype=object).reshape(x.shape)
    if axis is None:
        xf = xf.reshape(-1)
        ax = 0
    else:
        ax = axis % xf.ndim
    moved = np.moveaxis(xf, ax, -1)
    assert got.shape == moved.shape[:-1]
    want = np.zeros(moved.shape[:-1])
    for idx in np.ndindex(moved.shape[:-1]):
        want[idx] = _oracle_sum(list(moved[idx]), kind, fmt)  # an empty sum is +0
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(a=arrays(1, 2), b=arrays(1, 2), model=st.sampled_from(sorted(MODELS)))
def test_dot_is_exact_or_refused(a, b, model):
    m, kind, fmt = MODELS[model]
    ea, eb = _exact(a), _exact(b)
    try:
        got = fpsim.dot(a, b, model=m)
    except (ValueError, TypeError) as e:
        msg = str(e)
        assert msg.startswith(("A", "B", "dot")), msg
        bad = {"A": ea, "B": eb}
        if msg.startswith(("A", "B")) and bad[msg[0]][0] == "ok":
            # accepted dtype and values: only the 26-bit product rule may refuse
            assert "26 significant bits" in msg and any(_bits(v) > 26 for v in bad[msg[0]][1]), msg
        elif not msg.startswith(("A", "B")):
            assert ea[0] == eb[0] == "ok"
            assert a.shape[-1] != b.shape[-1] or "broadcast" in msg, msg
        return
    assert ea[0] == "ok" and eb[0] == "ok", (a.dtype, b.dtype)
    assert a.shape[-1] == b.shape[-1]
    shp = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    assert got.shape == shp and got.dtype == np.float64
    A = np.broadcast_to(np.array(ea[1], dtype=object).reshape(a.shape), shp + a.shape[-1:])
    B = np.broadcast_to(np.array(eb[1], dtype=object).reshape(b.shape), shp + b.shape[-1:])
    want = np.zeros(shp)
    for idx in np.ndindex(shp):
        want[idx] = _oracle_sum([p * q for p, q in zip(A[idx], B[idx])], kind, fmt)
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(a=arrays(2, 2), b=arrays(2, 2))
def test_matmul_is_exact_or_refused(a, b):
    m = accum.Exact("fp32")
    ea, eb = _exact(a), _exact(b)
    try:
        got = fpsim.matmul(a, b, model=m)
    except (ValueError, TypeError) as e:
        msg = str(e)
        assert msg.startswith(("A", "B", "matmul")), msg
        if msg.startswith("matmul"):
            assert ea[0] == eb[0] == "ok" and a.shape[-1] != b.shape[-2], msg
        return
    assert ea[0] == "ok" and eb[0] == "ok"
    A = np.array(ea[1], dtype=object).reshape(a.shape)
    B = np.array(eb[1], dtype=object).reshape(b.shape)
    want = np.array([[_round(sum((A[i, k] * B[k, j] for k in range(a.shape[1])), Fraction(0)),
                             "fp32") for j in range(b.shape[1])] for i in range(a.shape[0])],
                    dtype=np.float64).reshape(a.shape[0], b.shape[1])
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)


WRONG = [("model", "fp32"), ("model", None), ("model", accum.Exact), ("axis", "0"),
         ("axis", 1.5), ("axis", True), ("axis", 7)]


@SETTINGS
@given(opt=st.sampled_from(WRONG))
def test_wrong_option_types_name_the_option(opt):
    name, value = opt
    kw = {"model": accum.Exact("fp32"), "axis": -1}
    kw[name] = value
    with pytest.raises((TypeError, ValueError), match=name):
        fpsim.sum(np.ones((2, 3)), **kw)


@pytest.mark.parametrize("make, name", [
    (lambda: accum.Sequential("fp32", fma="yes"), "fma"),
    (lambda: accum.Sequential("fp32", rounding=3), "rounding"),
    (lambda: accum.Sequential("bf16", rounding="stochastic", seed="1"), "seed"),
    (lambda: accum.Exact("fp32", multiply=3), "multiply"),
])
def test_wrong_model_options_name_the_option(make, name):
    with pytest.raises((TypeError, ValueError), match=name):
        make()


def test_c_of_wrong_shape_names_c():
    with pytest.raises(ValueError, match="C with shape"):
        fpsim.matmul(np.ones((2, 3)), np.ones((3, 2)), np.ones(5), model=accum.Exact("fp32"))


METRICS = ["abs_error", "rel_error", "sqnr", "bias"]


@SETTINGS
@given(x=arrays(1, 1), metric=st.sampled_from(METRICS))
def test_metrics_are_exact_or_refused(x, metric):
    ex = _exact(x)
    ref = np.arange(x.shape[0], dtype=np.float64) / 4 - 0.5
    try:
        got = getattr(fa, metric)(x, ref)
    except (ValueError, TypeError) as e:
        msg = str(e)
        if ex[0] == "type":
            assert type(e) is TypeError and msg.startswith("x"), msg
        elif ex[0] == "value":
            assert type(e) is ValueError and msg.startswith("x holds"), msg
        else:
            assert metric == "bias" and x.size == 0 and "empty" in msg, msg
        return
    assert ex[0] == "ok", f"{metric} accepted a {x.dtype} input that must be refused"
    xs = ex[1]
    rs = [Fraction(float(r)) for r in ref]
    d = [a - b for a, b in zip(xs, rs)]
    if metric == "abs_error":  # |x - ref| of float64 values: exactly rounded by numpy
        np.testing.assert_array_equal(got, np.array([float(abs(v)) for v in d]))
    elif metric == "rel_error":
        want = [float(abs(v) / abs(r)) if r else np.nan for v, r in zip(d, rs)]
        np.testing.assert_allclose(got, np.array(want, dtype=float), rtol=1e-15)
    elif metric == "bias":
        assert got == pytest.approx(float(sum(d) / len(d)), rel=1e-15, abs=1e-300)
    else:
        noise = sum(v * v for v in d)
        signal = sum(r * r for r in rs)
        if noise == 0:
            assert got == float("inf")
        elif signal == 0:
            assert got == float("-inf")
        else:
            assert got == pytest.approx(10 * np.log10(float(signal / noise)), rel=1e-12)
