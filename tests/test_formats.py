"""Exhaustive checks of every code of every format of at most 16 bits.

For each format: decode(code) agrees with the exact reference (tests/reference.py, written
from SPEC §1 alone), with ml_dtypes and with gfloat where they have the format; encode of a
decoded value gives the code back; values() is sorted, unique and equals the reference set;
max / min_normal / min_subnormal / has_* agree; parse(name) and repr round-trip.
"""

import functools
import math

import ml_dtypes
import numpy as np
import pytest

import fpsim
import reference as ref
from fpsim import CodebookFormat, DIntFormat, FixedFormat, FloatFormat, IntFormat


def _float_spread():
    out = []
    for fam in ("ieee", "fn", "fnuz", "finite"):
        for E in range(1, 6):
            for M in range(0, 5):
                for signed in (True, False):
                    try:
                        out.append(FloatFormat(E, M, family=fam, signed=signed))
                    except ValueError:
                        pass  # e.g. ieee with E=1, unsigned fnuz, no finite value
    # non-default biases, wider formats, FTZ, E8M0-like
    out += [FloatFormat(4, 3, bias=5, family="fn"), FloatFormat(5, 2, bias=11),
            FloatFormat(3, 2, bias=-2, family="finite"), FloatFormat(4, 3, bias=11, family="fnuz"),
            FloatFormat(2, 1, bias=0, family="finite", signed=False), 
            FloatFormat(4, 11, bias=3), FloatFormat(3, 9, family="finite"),
            FloatFormat(5, 2, subnormals=False), FloatFormat(4, 3, family="fn", subnormals=False),
            FloatFormat(6, 0, family="e8m0", signed=False), FloatFormat(8, 0, bias=100, family="e8m0", signed=False),
            FloatFormat(10, 5, family="finite"), FloatFormat(11, 4)]
    return out


def _p3109_all():
    out = []
    for k in range(3, 9):
        for p in range(1, k + 1):
            for signed in (True, False):
                for dom in ("extended", "finite"):
                    try:
                        out.append(fpsim.p3109(k, p, signed=signed, domain=dom))
                    except ValueError:
                        assert signed and p == k  # no exponent bit left
    return out


def _ints():
    out = [IntFormat(n) for n in range(2, 17)] + [IntFormat(n, signed=False) for n in range(1, 17)]
    out += [IntFormat(n, narrow=True) for n in (2, 3, 4, 8, 16)]
    out += [FixedFormat(8, 4), FixedFormat(8, -2), FixedFormat(12, 10, signed=False),
            FixedFormat(6, 3, narrow=True), FixedFormat(16, 15)]
    return out


def _tables():
    out = [DIntFormat(n) for n in range(2, 9)] + [DIntFormat(4, 0.25), DIntFormat(6, 0.75)]
    out += [fpsim.parse("nf4"), CodebookFormat([-1.0, -0.5, 0.0, 0.5, 1.0]),
            CodebookFormat([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4]), CodebookFormat([-3.0, 2.0])]
    return out


ALIASES = [fpsim.parse(n) for n in fpsim.list_formats()]
SMALL = [f for f in ALIASES if f.bits <= 16] + _float_spread() + _p3109_all() + _ints() + _tables()
# dedupe, keep order
SMALL = list(dict.fromkeys(SMALL))


@functools.lru_cache(maxsize=None)
def _ref_table(fmt):
    """(valid codes, reference values) of every code of ``fmt``."""
    codes, vals = [], []
    for c in range(2**fmt.bits):
        try:
            v = ref.decode(c, fmt)
        except ValueError:  # unused code (narrow integers, short codebooks)
            continue
        codes.append(c)
        vals.append(v)
    return np.array(codes, dtype=np.int64), np.array(vals, dtype=np.float64)


@pytest.mark.parametrize("fmt", SMALL, ids=lambda f: f.name)
def test_every_code(fmt):
    codes, want = _ref_table(fmt)
    got = fpsim.decode(codes.astype(fpsim.code_dtype(fmt)), fmt)
    ref.assert_same(got, want, codes, f"decode {fmt.name}")

    # encode(decode(code)) gives the code back (NaN codes: a NaN code; -0 where the format
    # has -0, else the +0 code).  FTZ formats decode their subnormal codes as a zero of
    # their sign (tests/reference.py): those give the zero code back.
    nanmask = np.isnan(got)
    enc = fpsim.encode(got, fmt).astype(np.int64)
    want_codes = codes.copy()
    zero = got == 0
    if zero.any():
        want_codes[zero] = [ref.encode(float(g), fmt) for g in got[zero]]
    np.testing.assert_array_equal(enc[~nanmask], want_codes[~nanmask], err_msg=f"encode {fmt.name}")
    # the reference encoder agrees (on a sample: it is slow)
    sample = np.flatnonzero(~nanmask)
    sample = sample[:: max(1, sample.size // 300)]
    assert [ref.encode(float(got[i]), fmt) for i in sample] == enc[sample].tolist()
    if nanmask.any():
        assert np.isnan(fpsim.decode(enc[nanmask].astype(np.uint64), fmt)).all()
        assert ref.has_nan(fmt)
    # decode(encode(v)) == v exactly (incl. the sign of zero where the format keeps it)
    back = fpsim.decode(enc.astype(np.uint64), fmt)
    want_back = got.copy()
    if not ref.has_negzero(fmt):
        want_back[want_back == 0] = 0.0
    ref.assert_same(back, want_back, codes, f"decode(encode) {fmt.name}")
    # quantize of an exact value is the value itself in every rounding mode
    fin = np.isfinite(got)
    for mode in ref.MODES:
        q = fpsim.quantize(got[fin], fmt, rounding=mode)
        ref.assert_same(q, want_back[fin], got[fin], f"{mode} exact")


@pytest.mark.parametrize("fmt", SMALL, ids=lambda f: f.name)
def test_values_and_limits(fmt):
    codes, dec = _ref_table(fmt)
    fin = dec[np.isfinite(dec)]
    if getattr(fmt, "subnormals", True) is False:  # FTZ: subnormal codes are never produced
        fin = fin[(fin == 0) | (np.abs(fin) >= ref.limits(fmt)[2])]
    want = np.array(sorted(set((fin + 0.0).tolist())))
    vals = fmt.values()
    assert np.all(np.diff(vals) > 0), "values() must be strictly increasing"
    np.testing.assert_array_equal(vals, want)
    mx, mxneg, minnorm = ref.limits(fmt)
    assert fmt.max == float(mx) == want.max()
    pos = want[want > 0]
    assert fmt.min_subnormal == pos.min() or (math.isnan(fmt.min_subnormal) and pos.size == 0)
    if ref.kind(fmt) != "table":
        assert fmt.min_normal == float(minnorm)
    assert fmt.has_nan == ref.has_nan(fmt) == bool(np.isnan(dec).any())
    assert fmt.has_inf == ref.has_inf(fmt) == bool(np.isinf(dec).any())
    assert fmt.has_negzero == ref.has_negzero(fmt)
    assert fmt.has_zero == bool((want == 0).any())
    assert fmt.bits == math.ceil(math.log2(codes.max() + 1)) or ref.kind(fmt) == "table"


@pytest.mark.parametrize("fmt", SMALL + [fpsim.parse(n) for n in ("fp32", "tf32", "fp64")]
                         + [FloatFormat(8, 23, family="fn"), FloatFormat(11, 40, bias=1030),
                            FloatFormat(10, 52, family="finite", signed=False)],
                         ids=lambda f: f.name)
def test_name_and_repr_round_trip(fmt):
    assert fpsim.parse(fmt.name) == fmt
    assert fpsim.parse(fmt.name.upper()) == fmt
    ns = {n: getattr(fpsim, n) for n in ("FloatFormat", "IntFormat", "FixedFormat", "DIntFormat",
                                         "CodebookFormat")}
    assert eval(repr(fmt), ns) == fmt


def test_aliases_are_what_their_names_say():
    p = fpsim.parse
    assert (p("fp32").max, p("fp16").max, p("bf16").max) == (
        float(np.finfo(np.float32).max), 65504.0, float(ml_dtypes.finfo(ml_dtypes.bfloat16).max))
    assert p("e4m3").max == 448 and p("e5m2").max == 57344 and p("e2m1").max == 6
    assert p("e3m2").max == 28 and p("e2m3").max == 7.5 and p("e4m3fnuz").max == 240
    assert p("e5m2fnuz").max == 57344 and p("e8m0").max == 2.0**127 and p("e8m0").min_subnormal == 2.0**-127
    assert p("tf32").min_subnormal == 2.0**-136 and p("fp64").min_subnormal == 5e-324
    assert p("int8").values()[0] == -128 and p("uint8").max == 255


# --- ml_dtypes and gfloat as decode oracles -----------------------------------------------

ML = {"e4m3": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2,
      "e4m3fnuz": ml_dtypes.float8_e4m3fnuz, "e5m2fnuz": ml_dtypes.float8_e5m2fnuz,
      "e4m3b11fnuz": ml_dtypes.float8_e4m3b11fnuz, "e3m4": ml_dtypes.float8_e3m4,
      "e4m3ieee": ml_dtypes.float8_e4m3, "e8m0": ml_dtypes.float8_e8m0fnu,
      "e2m3": ml_dtypes.float6_e2m3fn, "e3m2": ml_dtypes.float6_e3m2fn, "e2m1": ml_dtypes.float4_e2m1fn,
      "bf16": ml_dtypes.bfloat16, "fp16": np.float16}


@pytest.mark.parametrize("name", list(ML))
def test_decode_matches_ml_dtypes(name):
    fmt = fpsim.parse(name)
    dt = np.dtype(ML[name])
    codes = np.arange(2**fmt.bits, dtype=np.uint16 if dt.itemsize == 2 else np.uint8)
    want = codes.view(dt).astype(np.float64)
    ref.assert_same(fpsim.decode(codes, fmt), want, codes, name)
    # decode into the narrow float types themselves
    if dt.itemsize == 2:
        for out in (np.float32, np.float16, ml_dtypes.bfloat16):
            try:
                got = fpsim.decode(codes, fmt, dtype=out)
            except ValueError:
                assert np.dtype(out) != dt
                continue
            ref.assert_same(got.astype(np.float64), want, codes, f"{name}->{np.dtype(out).name}")


def _gfloat_pairs():
    from gfloat import Domain, Signedness
    from gfloat import formats as gf

    pairs = [(gf.format_info_ocp_e5m2, "e5m2"), (gf.format_info_ocp_e4m3, "e4m3"),
             (gf.format_info_ocp_e2m3, "e2m3"), (gf.format_info_ocp_e3m2, "e3m2"),
             (gf.format_info_ocp_e2m1, "e2m1"), (gf.format_info_ocp_e8m0, "e8m0"),
             (gf.format_info_binary16, "fp16"), (gf.format_info_bfloat16, "bf16")]
    for k in range(3, 9):
        for p in range(1, k + 1):
            for s in (True, False):
                for dom in ("extended", "finite"):
                    if s and p == k:
                        continue
                    fi = gf.format_info_p3109(k, p, Signedness.Signed if s else Signedness.Unsigned,
                                              Domain.Extended if dom == "extended" else Domain.Finite)
                    pairs.append((fi, fpsim.p3109(k, p, signed=s, domain=dom)))
    return pairs


@pytest.mark.parametrize("fi,fmt", _gfloat_pairs(), ids=lambda v: getattr(v, "name", None))
def test_decode_matches_gfloat(fi, fmt):
    from gfloat import decode_ndarray

    fmt = fpsim.as_format(fmt)
    assert fi.bits == fmt.bits
    codes = np.arange(2**fmt.bits, dtype=np.uint64)
    want = decode_ndarray(fi, codes).astype(np.float64)
    got = fpsim.decode(codes, fmt)
    ref.assert_same(got, want, codes, fi.name)
    assert fmt.max == fi.max
    if fi.has_subnormals:  # gfloat leaves smallest_subnormal unimplemented otherwise (E8M0)
        assert fmt.min_subnormal == fi.smallest_subnormal
    if fmt.signed:
        assert -fmt.max == fi.min
