"""A slow, obviously-correct reference for rounding, encoding and decoding (exact rationals).

Written from SPEC §1–2 alone, with :class:`fractions.Fraction`: it shares no code with
``fpsim.rounding`` or ``fpsim.kernels`` (it only reads the *fields* of a format object:
exp_bits, man_bits, bias, family, signed, subnormals, bits, frac_bits, narrow, special,
values_).  It is the oracle for what no library implements (round-to-odd, integers, fixed
point, dINT, codebooks, FTZ/DAZ, E8M0, unsigned formats) and a third opinion elsewhere.

Semantics (SPEC §2, the readings fpsim documents):

* A finite input is rounded once on the format's grid *with unbounded exponent range*
  (quantum ``2**(max(e, emin) - M)``); then overflow (``|r| > max``) applies the policy:
  ``saturate`` → ±max, ``nan`` → NaN, ``inf`` → ±inf for rne/rna/stochastic and for
  rup (+) / rdn (−), else ±max; ``wrap`` (integers) → modulo ``2**bits``.
* Ties to even look at the parity of the integral significand ``r / quantum``.  With one
  bit of precision (M = 0) every normal significand is 1, so a tie between two powers of
  two goes to the larger magnitude (IEEE 754's rule when both candidates are odd; MPFR and
  ml_dtypes' E8M0 do the same).
* FTZ (``subnormals=False``): round on the full grid, then a nonzero result below the
  smallest normal becomes a (signed) zero.  DAZ: inputs below the smallest normal read as 0.
* Unsigned formats: a negative input whose rounded magnitude is nonzero overflows
  (saturate → 0; inf/nan → NaN); −inf → 0 under saturate, else NaN.
* No-zero formats (E8M0): a zero or negative input (−inf, tiny negatives) is NaN under
  every overflow policy (as ml_dtypes), a positive result that rounds to 0 is the smallest
  value.  Formats without −0 give +0.
* NaN input: ``propagate`` → NaN, ``zero`` → +0, ``max`` → +max, ``raise`` → ValueError.
* Table formats (dINT, codebooks): saturate at the ends; rtz picks the neighbour nearer to
  zero; nearest ties go to the even code (rne) or the larger magnitude (rna); rto to the
  odd code.
"""

from __future__ import annotations

import bisect
import functools
import math
from fractions import Fraction

NAN = float("nan")
INF = float("inf")
MODES = ("rne", "rna", "rtz", "rup", "rdn", "rto")


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------

def kind(fmt) -> str:
    """'float', 'fixed' (integers too) or 'table' (dINT, codebooks), from the class name."""
    n = type(fmt).__name__
    if n == "FloatFormat":
        return "float"
    if n in ("IntFormat", "FixedFormat"):
        return "fixed"
    return "table"


def exact(x) -> Fraction:
    """Exact rational value of a finite float / int / Fraction."""
    return x if isinstance(x, Fraction) else Fraction(x)


def floor_log2(a: Fraction) -> int:
    """floor(log2(a)) for a > 0, exactly."""
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    assert Fraction(2) ** e <= a < Fraction(2) ** (e + 1)
    return e


def to_float(q: Fraction, sign_negative: bool = False) -> float:
    """Exact conversion to float (asserts exactness); signed zero if ``sign_negative``."""
    if q == 0:
        return -0.0 if sign_negative else 0.0
    f = q.numerator / q.denominator if abs(q.numerator) < 2**1000 else float(q)
    # true division of ints is correctly rounded; check it is exact
    assert Fraction(f) == q, (q, f)
    return f


def _p2(e: int) -> Fraction:
    return Fraction(2) ** e


# ---------------------------------------------------------------------------------------
# Format description derived from the SPEC (independent of fpsim's own properties)
# ---------------------------------------------------------------------------------------

def float_layout(fmt):
    """(E, M, bias, emin, signed, family, max_mag_code, inf_mag_code or None)."""
    E, M, bias, fam, signed = fmt.exp_bits, fmt.man_bits, fmt.bias, fmt.family, fmt.signed
    top = 2 ** (E + M) - 1  # all-ones magnitude code
    inf_code = None
    if fam == "ieee":
        maxc = ((2**E - 1) << M) - 1
        inf_code = (2**E - 1) << M
    elif fam in ("fn", "e8m0"):
        maxc = top - 1  # all ones is NaN
    elif fam in ("fnuz", "finite"):
        maxc = top
    elif fam == "p3109":
        if signed:
            maxc, inf_code = top - 1, top
        else:
            maxc, inf_code = top - 2, top - 1  # top is NaN
    elif fam == "p3109_finite":
        maxc = top if signed else top - 1
    else:  # pragma: no cover
        raise AssertionError(fam)
    emin = -bias if fam == "e8m0" else 1 - bias
    return E, M, bias, emin, signed, fam, maxc, inf_code


def float_mag_value(fmt, c: int) -> Fraction:
    """Exact value of a finite magnitude code of a float format (SPEC §1.1 formulas)."""
    E, M, bias, emin, *_ = float_layout(fmt)
    ef, f = c >> M, c & (2**M - 1)
    if ef == 0 and fmt.family != "e8m0":
        return Fraction(f) * _p2(1 - bias - M)  # subnormal
    return Fraction(2**M + f) * _p2(ef - bias - M)


@functools.lru_cache(maxsize=None)
def limits(fmt):
    """Exact (max positive, max negative magnitude, min normal, quantum exponent info)."""
    k = kind(fmt)
    if k == "float":
        E, M, bias, emin, signed, fam, maxc, _ = float_layout(fmt)
        mx = float_mag_value(fmt, maxc)
        return mx, (mx if signed else Fraction(0)), _p2(emin)
    if k == "fixed":
        q = _p2(-fmt.frac_bits)
        if fmt.signed:
            hi = 2 ** (fmt.bits - 1) - 1
            lo = hi if fmt.narrow else hi + 1
        else:
            hi, lo = 2**fmt.bits - 1, 0
        return hi * q, lo * q, q
    vals = table_values(fmt)
    return vals[-1], -vals[0], min(v for v in vals if v > 0)


def has_negzero(fmt) -> bool:
    return kind(fmt) == "float" and fmt.signed and fmt.family in ("ieee", "fn", "finite")


def has_nan(fmt) -> bool:
    if kind(fmt) != "float":
        return False
    if fmt.family == "ieee":
        return fmt.man_bits > 0
    return fmt.family != "finite"


def has_inf(fmt) -> bool:
    return kind(fmt) == "float" and fmt.family in ("ieee", "p3109")


def default_overflow(fmt) -> str:
    if kind(fmt) != "float":
        return "saturate"
    return {"ieee": "inf", "p3109": "inf", "fnuz": "nan", "e8m0": "nan"}.get(fmt.family, "saturate")


# ---------------------------------------------------------------------------------------
# decode / encode
# ---------------------------------------------------------------------------------------

def decode(code: int, fmt) -> float:
    """Value of one code (float; NaN for NaN codes). Raises ValueError for unused codes."""
    code = int(code)
    if not 0 <= code < 2**fmt.bits:
        raise ValueError("code out of range")
    k = kind(fmt)
    if k == "fixed":
        n = code
        if fmt.signed and code >= 2 ** (fmt.bits - 1):
            n = code - 2**fmt.bits
            if fmt.narrow and n == -(2 ** (fmt.bits - 1)):
                raise ValueError("unused code of a narrow format")
        return to_float(n * _p2(-fmt.frac_bits))
    if k == "table":
        if type(fmt).__name__ == "DIntFormat":
            half = 2 ** (fmt.bits - 1)
            s, m = code // half, code % half
            mag = Fraction(0) if m == 0 else (Fraction(fmt.special) if m == 1 else Fraction(m - 1))
            return -to_float(mag) if s else to_float(mag)
        vals = sorted(fmt.values_)
        if code >= len(vals):
            raise ValueError("unused codebook code")
        return float(vals[code])
    E, M, bias, emin, signed, fam, maxc, inf_code = float_layout(fmt)
    s = (code >> (fmt.bits - 1)) if signed else 0
    mag = code & (2 ** (E + M) - 1)
    if fam in ("fnuz", "p3109", "p3109_finite") and signed and s == 1 and mag == 0:
        return NAN
    if mag > maxc:
        if inf_code is not None and mag == inf_code:
            return -INF if s else INF
        return NAN
    # (2**M + f) * 2**(ef - bias - M), or f * 2**(1 - bias - M) for subnormals: integers
    # times powers of two inside float64's range, so ldexp is exact
    ef, f = mag >> M, mag & (2**M - 1)
    if ef == 0 and f != 0 and fam != "e8m0" and not getattr(fmt, "subnormals", True):
        return -0.0 if s else 0.0  # no subnormals: a subnormal code reads as a signed zero
    if ef == 0 and fam != "e8m0":
        v = math.ldexp(f, 1 - bias - M)
    else:
        v = math.ldexp(2**M + f, ef - bias - M)
    return -v if s else v


def encode(value: float, fmt) -> int:
    """Code of a value of the format (finite, ±inf or NaN) — the inverse of decode.

    NaN: the family's NaN code (its sign and payload are conventions; callers compare by
    decoding).  -0 gets its own code only where the format has one.
    """
    k = kind(fmt)
    if k == "fixed":
        n = exact(value) / _p2(-fmt.frac_bits)
        assert n.denominator == 1
        return int(n) % 2**fmt.bits
    if k == "table":
        for c in range(2**fmt.bits):
            try:
                d = decode(c, fmt)
            except ValueError:
                continue
            if d == value:
                return c
        raise ValueError(f"{value} not in the table")
    E, M, bias, emin, signed, fam, maxc, inf_code = float_layout(fmt)
    sshift = fmt.bits - 1
    if math.isnan(value):
        for c in range(2 ** fmt.bits - 1, -1, -1) if fmt.bits <= 16 else ():
            if math.isnan(decode(c, fmt)):
                return c
        return (2 ** (E + M) - 1)  # ieee wide formats: some NaN code
    neg = math.copysign(1.0, value) < 0 and signed
    sbit = (1 << sshift) if neg and (value != 0 or has_negzero(fmt)) else 0
    if math.isinf(value):
        assert inf_code is not None
        return sbit | inf_code
    a = abs(exact(value))
    if a == 0:
        return sbit
    e = floor_log2(a)
    if e < emin and fam != "e8m0":
        f = a / _p2(emin - M)
        assert f.denominator == 1 and f < 2**M
        return sbit | int(f)
    f = a / _p2(e - M) - 2**M
    assert f.denominator == 1, (value, fmt)
    code = sbit | ((e + bias) << M) | int(f)
    assert (code & (2 ** (E + M) - 1)) <= maxc
    return code


@functools.lru_cache(maxsize=None)
def table_values(fmt) -> list:
    """Sorted distinct finite values (Fractions) of a table format."""
    vals = set()
    for c in range(2**fmt.bits):
        try:
            v = decode(c, fmt)
        except ValueError:
            continue
        vals.add(Fraction(v))
    return sorted(vals)


def table_code_of(fmt, v: Fraction) -> int:
    """Code of a table value (+0 uses code 0)."""
    return _table_codes(fmt)[v]


@functools.lru_cache(maxsize=None)
def _table_codes(fmt) -> dict:
    out = {}
    for c in range(2**fmt.bits):
        try:
            out.setdefault(Fraction(decode(c, fmt)), c)
        except ValueError:
            continue
    return out


# ---------------------------------------------------------------------------------------
# rounding
# ---------------------------------------------------------------------------------------

def _round_int(t: Fraction, mode: str, negative: bool, u=None, srbits=None) -> int:
    """Round a nonnegative rational magnitude ``t`` to an integer.

    ``u`` (stochastic): a Fraction in [0, 1): round up iff u < discarded fraction
    (truncated to ``srbits`` bits if given).
    """
    n = t.numerator // t.denominator
    r = t - n
    if r == 0:
        return n
    if mode == "rne":
        return n + 1 if (r > Fraction(1, 2) or (r == Fraction(1, 2) and n % 2 == 1)) else n
    if mode == "rna":
        return n + 1 if r >= Fraction(1, 2) else n
    if mode == "rtz":
        return n
    if mode == "rup":
        return n if negative else n + 1
    if mode == "rdn":
        return n + 1 if negative else n
    if mode == "rto":
        return n if n % 2 == 1 else n + 1
    if mode == "stochastic":
        if srbits is not None:
            r = Fraction(math.floor(r * 2**srbits), 2**srbits)
        return n + 1 if u < r else n
    raise ValueError(mode)


def prob_up(x, fmt, subnormals=None) -> Fraction:
    """Exact probability that stochastic rounding of finite ``x`` rounds up in magnitude."""
    q = exact(x)
    a = abs(q)
    if a == 0:
        return Fraction(0)
    E = _quantum_exp(fmt, a)
    t = a / _p2(E)
    return t - (t.numerator // t.denominator)


def _quantum_exp(fmt, a: Fraction) -> int:
    if kind(fmt) == "fixed":
        return -fmt.frac_bits
    E, M, bias, emin, *_ = float_layout(fmt)
    return max(floor_log2(a), emin) - M


def neighbours(x, fmt):
    """(lower, upper) neighbours of finite ``x`` on the format's unbounded grid (Fractions)."""
    q = exact(x)
    if kind(fmt) == "table":
        vals = table_values(fmt)
        lo = max((v for v in vals if v <= q), default=None)
        hi = min((v for v in vals if v >= q), default=None)
        return lo, hi
    a = abs(q)
    if a == 0:
        return q, q
    Q = _p2(_quantum_exp(fmt, a))
    t = a / Q
    n = t.numerator // t.denominator
    lo, hi = n * Q, (n + (0 if t == n else 1)) * Q
    return (lo, hi) if q > 0 else (-hi, -lo)


def round_value(x, fmt, mode="rne", overflow=None, subnormals=None, daz=False, nan=None,
                u=None, srbits=None) -> float:
    """``quantize`` of one value by the SPEC, exactly.  ``x``: float, int or Fraction.

    Returns a Python float (NaN/±inf/−0 included).  Raises ValueError where quantize must.
    """
    k = kind(fmt)
    ovf = overflow if overflow is not None else default_overflow(fmt)
    fnan = has_nan(fmt)
    if nan is None:
        nan = "propagate" if fnan else "raise"
    mx, mxneg, minnorm = limits(fmt)
    signed_fmt = mxneg > 0 or (k == "table" and table_values(fmt)[0] < 0)
    if isinstance(x, float) and math.isnan(x):
        if nan == "raise":
            raise ValueError("NaN input into a format without NaN")
        if nan == "zero":
            return 0.0
        if nan == "max":
            return to_float(mx)
        return NAN
    if k == "table":
        return _round_table(x, fmt, mode, u)
    if subnormals is None:
        subnormals = getattr(fmt, "subnormals", True)
    no_zero = k == "float" and fmt.family == "e8m0"
    negz = has_negzero(fmt)
    if no_zero and (x <= 0):  # E8M0: zero and negatives have no value (ml_dtypes: NaN)
        return NAN
    if isinstance(x, float) and math.isinf(x):
        neg = x < 0
        if neg and not signed_fmt:
            return 0.0 if ovf in ("saturate", "wrap") else NAN
        if ovf == "inf":
            return x
        if ovf == "nan":
            return NAN
        return -to_float(mxneg) if neg else to_float(mx)
    q = exact(x)
    neg = q < 0 or (isinstance(x, float) and math.copysign(1.0, x) < 0)
    a = abs(q)
    if daz and a < minnorm:
        a = Fraction(0)
    if a == 0:
        if no_zero:
            return NAN
        return -0.0 if (neg and negz) else 0.0
    Eq = _quantum_exp(fmt, a)
    n = _round_int(a / _p2(Eq), mode, neg, u, srbits)
    r = n * _p2(Eq)
    lim = mxneg if neg else mx
    if r > lim:
        if ovf == "wrap":
            kk = (-n if neg else n) % 2**fmt.bits
            if fmt.signed and kk >= 2 ** (fmt.bits - 1):
                kk -= 2**fmt.bits
            return to_float(kk * _p2(Eq))
        if ovf == "nan" or (ovf == "inf" and neg and not signed_fmt):
            return NAN
        if ovf == "inf" and (mode in ("rne", "rna", "stochastic") or (mode == "rup" and not neg)
                             or (mode == "rdn" and neg)):
            return -INF if neg else INF
        r = lim
    if not subnormals and r < minnorm:
        r = Fraction(0)
    if r == 0:
        if no_zero:
            return to_float(minnorm)  # E8M0: the smallest value (positive)
        return -0.0 if (neg and negz) else 0.0
    return -to_float(r) if neg else to_float(r)


def _round_table(x, fmt, mode, u=None) -> float:
    vals = table_values(fmt)
    if isinstance(x, float) and math.isinf(x):
        return to_float(vals[0] if x < 0 else vals[-1])
    q = exact(x)
    if q <= vals[0]:
        return to_float(vals[0])
    if q >= vals[-1]:
        return to_float(vals[-1])
    i = bisect.bisect_left(vals, q)  # vals[i-1] < q <= vals[i]
    hi = vals[i]
    lo = hi if hi == q else vals[i - 1]
    if lo == hi:
        return to_float(lo)
    if mode == "rdn":
        pick = lo
    elif mode == "rup":
        pick = hi
    elif mode == "rtz":
        pick = lo if lo >= 0 else (hi if hi <= 0 else (lo if -lo < hi else hi))
    elif mode == "rto":
        pick = lo if table_code_of(fmt, lo) % 2 == 1 else hi
    elif mode in ("rne", "rna"):
        dl, dh = q - lo, hi - q
        if dl != dh:
            pick = lo if dl < dh else hi
        elif mode == "rna":
            pick = hi if abs(hi) >= abs(lo) else lo
        else:
            cl, ch = table_code_of(fmt, lo) % 2, table_code_of(fmt, hi) % 2
            assert cl != ch, "tie between two codes of equal parity"
            pick = lo if cl == 0 else hi
    elif mode == "stochastic":
        pick = hi if u < (q - lo) / (hi - lo) else lo
    else:
        raise ValueError(mode)
    return to_float(pick)


def same(a: float, b: float) -> bool:
    """Equal as floats, NaN == NaN, and the sign of zero must match."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


# ---------------------------------------------------------------------------------------
# array conveniences for the tests
# ---------------------------------------------------------------------------------------

def round_array(xs, fmt, **kw):
    """float64 array of :func:`round_value` over the float values of ``xs``."""
    import numpy as np

    flat = np.asarray(xs).astype(np.float64).reshape(-1)
    return np.array([round_value(float(v), fmt, **kw) for v in flat], dtype=np.float64)


def bits_equal(a, b):
    """Boolean mask: same float64 value incl. the sign of zero; NaN matches NaN."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    return both_nan | ((a == b) & (np.signbit(a) == np.signbit(b)))


def assert_same(got, want, inputs=None, what=""):
    """Assert two float arrays are bit-equal (NaN == NaN); report the first mismatches."""
    import numpy as np

    got = np.asarray(got, dtype=np.float64).reshape(-1)
    want = np.asarray(want, dtype=np.float64).reshape(-1)
    ok = bits_equal(got, want)
    if not ok.all():
        idx = np.flatnonzero(~ok)[:8]
        rows = []
        for i in idx:
            xin = "" if inputs is None else f"x={np.asarray(inputs).reshape(-1)[i]!r} "
            rows.append(f"  {xin}got={got[i]!r} want={want[i]!r}")
        raise AssertionError(f"{what}: {int((~ok).sum())} of {ok.size} differ\n" + "\n".join(rows))
