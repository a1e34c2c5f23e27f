"""Rounding into any format: :func:`quantize`, :func:`encode`, :func:`decode` (SPEC §2).

Rounding modes (every one a named value of :class:`Rounding`):

========== =========================================================================
``rne``    to nearest, ties to even (the default)
``rna``    to nearest, ties away from zero
``rtz``    toward zero (truncation)
``rup``    toward +inf
``rdn``    toward -inf
``rto``    to odd: an inexact result gets an odd last bit (exact for later rounding)
``stochastic`` up (in magnitude) with probability equal to the discarded fraction
========== =========================================================================

Overflow policies (:class:`Overflow`): ``saturate`` (finite overflow and ±inf → ±max),
``inf`` (IEEE: per rounding mode, e.g. ``rtz`` gives ±max, ``rne`` gives ±inf), ``nan``
(non-saturating OCP: overflow → NaN), ``wrap`` (integers: modulo 2**N).  ``None`` picks the
family's standard behaviour (:attr:`FloatFormat.default_overflow`).

NaN inputs (:class:`NaNPolicy`): ``propagate`` (formats with NaN), ``raise`` (default for
formats without NaN), ``zero``, ``max``.

Every result equals the exact input rounded *once* into the format: no double rounding.
"""

from __future__ import annotations

import enum
import math
import secrets
from functools import lru_cache

import numpy as np

from .formats import (CodebookFormat, DIntFormat, FixedFormat, FloatFormat, Format, IntFormat,
                      as_format, check_flag)
from .kernels import _modes as K
from .kernels._lazy import kernel

# The Numba kernels load on first use (importing numba takes 0.2-0.5 s; `import fpsim`
# stays fast). Each name is called exactly like the kernel module's object it stands for.
CodeParams = kernel("float_round", "CodeParams")
DecodeParams = kernel("float_round", "DecodeParams")
RoundParams = kernel("float_round", "RoundParams")
codes_from_bits = kernel("float_round", "codes_from_bits")
decode_codes = kernel("float_round", "decode_codes")
quantize_parallel = kernel("float_round", "quantize_parallel")
quantize_serial = kernel("float_round", "quantize_serial")
table_parallel = kernel("table_round", "table_parallel")
table_serial = kernel("table_round", "table_serial")
_fast_params = kernel("fast_round", "fast_params")
_rne32_params = kernel("fast_round", "rne32_params")
_fast_parallel = kernel("fast_round", "fast_parallel")
_fast_serial = kernel("fast_round", "fast_serial")
_rne32_parallel = kernel("fast_round", "rne32_parallel")
_rne32_serial = kernel("fast_round", "rne32_serial")
_FIXED_EMIN = kernel("float_round", "FIXED_EMIN")

__all__ = ["Rounding", "Overflow", "NaNPolicy", "quantize", "encode", "decode", "ROUNDING_MODES",
           "code_dtype"]


class Rounding(str, enum.Enum):
    """Rounding modes. Pass the member or its string value (``"rne"``).

    >>> import fpsim
    >>> fpsim.Rounding("rne") is fpsim.Rounding.RNE, fpsim.ROUNDING_MODES[:3]
    (True, ('rne', 'rna', 'rtz'))
    """

    RNE = "rne"  #: to nearest, ties to even
    RNA = "rna"  #: to nearest, ties away from zero
    RTZ = "rtz"  #: toward zero
    RUP = "rup"  #: toward +infinity
    RDN = "rdn"  #: toward -infinity
    RTO = "rto"  #: to odd
    STOCHASTIC = "stochastic"  #: stochastic rounding


class Overflow(str, enum.Enum):
    """What a value beyond the largest finite number becomes.

    >>> import fpsim
    >>> fpsim.quantize(1e6, "e5m2", overflow=fpsim.Overflow.SATURATE)
    57344.0
    """

    SATURATE = "saturate"  #: ±max (±inf too)
    INF = "inf"  #: IEEE: ±inf or ±max depending on the rounding direction
    NAN = "nan"  #: NaN (non-saturating OCP E4M3 / ml_dtypes behaviour)
    WRAP = "wrap"  #: integers and fixed point: modulo 2**bits


class NaNPolicy(str, enum.Enum):
    """What a NaN input becomes.

    >>> import fpsim
    >>> fpsim.quantize(float("nan"), "e2m1", nan=fpsim.NaNPolicy.MAX)
    6.0
    """

    PROPAGATE = "propagate"  #: stays NaN (formats that have a NaN)
    RAISE = "raise"  #: ValueError (default for formats without NaN)
    ZERO = "zero"  #: +0 (what ml_dtypes does for its NaN-less types, up to the sign)
    MAX = "max"  #: +max


ROUNDING_MODES = tuple(r.value for r in Rounding)

_MODE_CODE = {Rounding.RNE: K.RNE, Rounding.RNA: K.RNA, Rounding.RTZ: K.RTZ, Rounding.RUP: K.RUP,
              Rounding.RDN: K.RDN, Rounding.RTO: K.RTO, Rounding.STOCHASTIC: K.SR}
_OVF_CODE = {Overflow.SATURATE: K.OVF_SATURATE, Overflow.INF: K.OVF_INF, Overflow.NAN: K.OVF_NAN,
             Overflow.WRAP: K.OVF_WRAP}
_NAN_CODE = {NaNPolicy.PROPAGATE: K.NAN_PROPAGATE, NaNPolicy.RAISE: K.NAN_ERROR,
             NaNPolicy.ZERO: K.NAN_ZERO, NaNPolicy.MAX: K.NAN_MAX}

#: Arrays at least this long use the parallel kernels.
PARALLEL_THRESHOLD = 1 << 15

_FAST_MODES = frozenset((Rounding.RNE, Rounding.RNA, Rounding.RTZ, Rounding.RUP, Rounding.RDN))


def _enum(cls, value, what):
    if isinstance(value, cls):
        return value
    try:
        return cls(str(value).lower())
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in cls)
        raise ValueError(f"{what}={value!r} is not allowed; choose one of {allowed}") from None


# ---------------------------------------------------------------------------------------
# Input types
# ---------------------------------------------------------------------------------------

class _DType:
    """Bit layout of a supported input dtype."""

    def __init__(self, dtype, uint, M, E):
        self.dtype, self.uint, self.M, self.E = np.dtype(dtype), np.dtype(uint), M, E
        self.bias = 2 ** (E - 1) - 1
        self.expmax = 2**E - 1
        self.sign_shift = M + E


def _bfloat16():
    try:
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    except ImportError:  # pragma: no cover - ml_dtypes is optional
        return None


_DTYPES = {
    np.dtype(np.float64): _DType(np.float64, np.uint64, 52, 11),
    np.dtype(np.float32): _DType(np.float32, np.uint32, 23, 8),
    np.dtype(np.float16): _DType(np.float16, np.uint16, 10, 5),
}
_BF16 = _bfloat16()
if _BF16 is not None:
    _DTYPES[_BF16] = _DType(_BF16, np.uint16, 7, 8)
_F64 = _DTYPES[np.dtype(np.float64)]


def _native(arr):
    """Accept two more kinds of float arrays by an exact conversion: non-native byte order
    (to native), and ml_dtypes' 8/6/4-bit floats (to float32, which holds all their values)."""
    dt = arr.dtype
    if dt.kind == "f" and not dt.isnative:
        return arr.astype(dt.newbyteorder("="))
    if dt not in _DTYPES and dt.itemsize == 1 and dt.type.__module__.startswith("ml_dtypes"):
        try:
            import ml_dtypes
            ml_dtypes.finfo(dt)  # a float type (not int4/uint4)
        except (ImportError, ValueError, TypeError):
            return arr
        return arr.astype(np.float32)
    return arr


def _int_value(v, what) -> float:
    """float64 of a Python int, which must be exactly representable (the int rule)."""
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if f != v:  # int/float comparison is exact in Python
        shown = str(v) if abs(v) < 10**30 else f"{str(v)[:12]}... ({len(str(abs(v)))} digits)"
        raise ValueError(
            f"{what}: the int {shown} is not exactly representable in float64; fpsim takes an int "
            "only when float64 holds it exactly (every |n| <= 2**53 does), so that it is never "
            "rounded twice. Pass float(n) to round it to float64 first")
    return f


def _check_leaves(x, what):
    """Refuse bools, complex and non-numbers in a (nested) list, and ints that float64 cannot
    hold exactly (numpy would convert either without a word)."""
    try:
        leaves = np.asarray(x, dtype=object).reshape(-1)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what}: cannot read the sequence as an array: {e}") from None
    for v in leaves:
        if isinstance(v, (bool, np.bool_)):
            raise TypeError(f"{what}: the sequence holds a bool ({v!r}); fpsim takes real numbers")
        if isinstance(v, int):
            _int_value(v, what)
        elif isinstance(v, (complex, np.complexfloating)):
            raise TypeError(f"{what}: the sequence holds a complex number; round the real and "
                            "imaginary parts separately")
        elif not isinstance(v, (float, np.floating)):
            raise TypeError(f"{what}: the sequence holds a {type(v).__name__} ({v!r}); fpsim "
                            "takes real numbers (Python floats/ints, numpy floats)")


def real_input(x, what="x"):
    """``(array, kind)`` of an input number or array, by the rules every entry point shares.

    ``kind`` is ``"python"`` (a Python float or int: give a float back), ``"numpy"`` (a
    numpy scalar: give a numpy scalar back) or ``"array"`` (an array of the input's shape,
    0-d included; lists and tuples too). The array has a dtype of ``_DTYPES`` (float16,
    bfloat16, float32, float64; non-native byte order and ml_dtypes' small floats are
    converted exactly). Rules:

    * Python ints, alone or in lists, are taken exactly when float64 holds them exactly and
      refused with ``ValueError`` otherwise (never rounded to float64 first);
    * numpy integer and bool arrays/scalars, bools, complex, strings: ``TypeError``;
    * masked arrays: ``TypeError`` (the mask would be lost).

    >>> import numpy as np
    >>> from fpsim.rounding import real_input
    >>> real_input(3)[0], real_input(np.array(2.5))[0].shape, real_input([1, 2.5])[1]
    (array(3.), (), 'array')
    """
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{what} is a masked array: fpsim would drop its mask; pass "
                        "x.filled(value) or x.compressed() (a plain array)")
    if isinstance(x, np.ndarray):
        arr = _native(np.asarray(x))  # a subclass (np.matrix...) as a plain array
        if arr.dtype not in _DTYPES:
            raise TypeError(f"{what}: " + _dtype_error(arr.dtype))
        return arr, "array"
    if isinstance(x, np.generic):
        arr = _native(np.asarray(x))
        if arr.dtype not in _DTYPES:
            raise TypeError(f"{what}: " + _dtype_error(arr.dtype))
        return arr, "numpy"
    if isinstance(x, bool):
        raise TypeError(f"{what} is a bool: fpsim takes real numbers, not bool")
    if isinstance(x, int):
        return np.array(_int_value(x, what)), "python"
    if isinstance(x, float):
        return np.array(x), "python"
    if isinstance(x, complex):
        raise TypeError(f"{what}: complex input is not supported: round the real and imaginary "
                        "parts separately")
    if isinstance(x, (list, tuple)):
        _check_leaves(x, what)
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{what}: cannot read the sequence as an array: {e}") from None
        if arr.dtype.kind in "iuO":  # ints (checked exact above), or big ones numpy kept as objects
            arr = np.array([float(v) for v in arr.reshape(-1)],
                           dtype=np.float64).reshape(arr.shape)
        arr = _native(arr)
        if arr.dtype not in _DTYPES:
            raise TypeError(f"{what}: " + _dtype_error(arr.dtype))
        return arr, "array"
    if type(x).__module__.startswith("torch"):
        raise TypeError(f"{what}: torch tensors go through fpsim.torch.quantize (the core has "
                        "no torch dependency); pass a numpy array to the core")
    raise TypeError(f"{what}: cannot quantize a {type(x).__name__}; pass a numpy float array or "
                    "a Python number")


def _as_input(x):
    """Return (contiguous float array, restore function) for any accepted input."""
    arr, kind = real_input(x)
    shape = arr.shape
    flat = np.ascontiguousarray(arr).reshape(shape)  # ascontiguousarray makes 0-d arrays 1-d
    if kind == "python":  # a Python float back (encode: a numpy integer code)
        return flat, (lambda r: _py_scalar(np.asarray(r).reshape(())[()]))
    if kind == "numpy":
        return flat, (lambda r: np.asarray(r).reshape(())[()])
    return flat, (lambda r: r)


def _py_scalar(v):
    return float(v) if isinstance(v, np.floating) else v


def _dtype_error(dt) -> str:
    allowed = ("float16, bfloat16 (ml_dtypes), float32, float64 (any byte order); ml_dtypes' "
               "8-bit and smaller floats are read as float32")
    if np.dtype(dt).kind in "iub":
        return (f"{dt} arrays are not accepted: fpsim rounds real numbers; convert with "
                f".astype(np.float64) first (allowed dtypes: {allowed})")
    return f"dtype {dt} is not supported; allowed: {allowed}"


def _exact_in(value: float, dt: _DType) -> bool:
    with np.errstate(over="ignore"):
        return bool(np.array(value, dtype=np.float64).astype(dt.dtype).astype(np.float64) == value)


def _mag_bits(value: float, dt: _DType) -> int:
    return int(np.array(abs(value), dtype=dt.dtype).view(dt.uint))


# ---------------------------------------------------------------------------------------
# Option handling
# ---------------------------------------------------------------------------------------

def _options(fmt: Format, rounding, overflow, nan, subnormals, daz, srbits):
    mode = _enum(Rounding, rounding, "rounding")
    ovf = _enum(Overflow, overflow if overflow is not None else fmt.default_overflow, "overflow")
    if ovf is Overflow.INF and not fmt.has_inf:
        raise ValueError(f"overflow='inf' needs a format with infinities; {fmt.name} has none "
                         "(use 'saturate'" + (" or 'nan')" if fmt.has_nan else ")"))
    if ovf is Overflow.NAN and not fmt.has_nan:
        raise ValueError(f"overflow='nan' needs a format with NaN; {fmt.name} has none (use 'saturate')")
    if ovf is Overflow.WRAP and not isinstance(fmt, FixedFormat):
        raise ValueError("overflow='wrap' is only for integer and fixed-point formats")
    if ovf is Overflow.WRAP and fmt.narrow:
        raise ValueError("overflow='wrap' needs the full two's complement range (narrow=False)")
    if nan is None:
        nanp = NaNPolicy.PROPAGATE if fmt.has_nan else NaNPolicy.RAISE
    else:
        nanp = _enum(NaNPolicy, nan, "nan")
        if nanp is NaNPolicy.ZERO and not fmt.has_zero:
            raise ValueError(f"nan='zero' needs a format with a zero; {fmt.name} has none "
                             "(choose 'propagate', 'raise' or 'max')")
        if nanp is NaNPolicy.PROPAGATE and not fmt.has_nan:
            raise ValueError(f"nan='propagate' needs a format with NaN; {fmt.name} has none "
                             "(choose 'raise', 'zero' or 'max')")
    if subnormals is None:
        subn = bool(getattr(fmt, "subnormals", True))
    else:
        subn = check_flag(subnormals, "subnormals")
    daz = check_flag(daz, "daz")
    if srbits is not None:
        if mode is not Rounding.STOCHASTIC:
            raise ValueError("srbits only applies to rounding='stochastic'")
        if isinstance(srbits, bool) or not isinstance(srbits, (int, np.integer)) or not 1 <= srbits <= 62:
            raise ValueError(f"srbits={srbits!r}: allowed an int 1..62, or None for exact")
    return mode, ovf, nanp, subn, bool(daz), int(srbits or 0)


def _seed(seed, mode) -> np.uint64:
    if mode is not Rounding.STOCHASTIC:
        return np.uint64(0)
    if seed is None:
        return np.uint64(secrets.randbits(64))
    if isinstance(seed, np.random.Generator):
        return np.uint64(seed.integers(0, 2**63, dtype=np.int64))
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return np.uint64(int(seed) % 2**64)
    raise TypeError(f"seed must be an int, a numpy Generator or None, got {type(seed).__name__}")


# ---------------------------------------------------------------------------------------
# Grid (float / fixed) formats
# ---------------------------------------------------------------------------------------

def _grid_limits(fmt):
    """(M, emin, max positive, max negative magnitude, smallest rounded-up value, min normal)."""
    if isinstance(fmt, FloatFormat):
        minsub = fmt.replace(subnormals=True).min_subnormal
        return (fmt.man_bits, fmt.emin, fmt.max, fmt.max if fmt.signed else 0.0, minsub,
                fmt.min_normal)
    q = math.ldexp(1.0, -fmt.frac_bits)
    emin = _FIXED_EMIN.resolve()
    return (emin + fmt.frac_bits, emin, fmt.max, -fmt.min, q, q)


@lru_cache(maxsize=512)
def _round_params(fmt, dt: _DType, mode, ovf, nanp, subn, daz, srbits):
    """Kernel parameters, or None if the format's limits are not exact in ``dt``."""
    M, emin, mx, mxneg, minsub, minnorm = _grid_limits(fmt)
    if ovf is Overflow.WRAP and dt is not _F64:
        return None
    if not all(_exact_in(v, dt) for v in (mx, mxneg, minsub, minnorm)):
        return None
    is_fixed = isinstance(fmt, FixedFormat)
    return RoundParams(
        in_M=dt.M, in_bias=dt.bias, in_expmax=dt.expmax, sign_shift=dt.sign_shift,
        M=M, emin=emin, maxpos=_mag_bits(mx, dt), maxneg=_mag_bits(mxneg, dt),
        minsub=_mag_bits(minsub, dt), minnorm=_mag_bits(minnorm, dt),
        mode=_MODE_CODE[mode], ovf=_OVF_CODE[ovf], nan_action=_NAN_CODE[nanp],
        ftz=int(not subn), daz=int(daz), no_negzero=int(not fmt.has_negzero),
        no_zero=int(not fmt.has_zero), srbits=srbits,
        wrap_bits=fmt.bits if is_fixed else 0, frac_bits=fmt.frac_bits if is_fixed else 0,
        signed_int=int(fmt.signed) if is_fixed else 0,
    )


def _round_grid(arr, fmt, opts, seed):
    """Round a contiguous float array; returns (bits array, dtype layout used)."""
    mode = opts[0]
    dt = _DTYPES[arr.dtype]
    p = _round_params(fmt, dt, *opts)
    if p is None:  # the format's limits need float64
        dt = _F64
        arr = arr.astype(np.float64)
        p = _round_params(fmt, dt, *opts)
    xb = arr.reshape(-1).view(dt.uint)
    ob = np.empty_like(xb)
    big = xb.size >= PARALLEL_THRESHOLD
    # Fast paths (kernels/fast_round.py): same results as the general kernel for the
    # common cases, branch-free so they vectorise; None when a case is not covered.
    fp = _fast_params(p) if mode in _FAST_MODES else None
    if fp is None:
        kern = quantize_parallel if big else quantize_serial
        err = kern(xb, ob, p, _seed(seed, mode))
    elif mode is Rounding.RNE and dt.M == 23 and _rne32_params(p) is not None:
        kern = _rne32_parallel if big else _rne32_serial
        err = kern(xb.view(np.float32), ob.view(np.float32), _rne32_params(p))
    else:
        kern = _fast_parallel if big else _fast_serial
        err = kern(xb, ob, fp)
    if err:
        raise ValueError(f"{fmt.name} has no NaN but the input holds {err} NaN value(s); pass "
                         "nan='zero' or nan='max' to map them, or clean the input")
    if isinstance(fmt, FloatFormat) and fmt.family == "e8m0":
        _e8m0_nonpositive(arr.reshape(-1), ob, dt)
    return ob.reshape(arr.shape), dt


def _e8m0_nonpositive(x, ob, dt):
    """E8M0 holds positive powers of two only (no sign, no zero): zero and negative inputs,
    -inf and tiny negatives included, have no E8M0 value and become NaN under every overflow
    policy, as in ml_dtypes' float8_e8m0fnu (the kernels round magnitudes: without this a
    tiny negative would come back as +2**-127, and -inf under 'saturate' as 0)."""
    bad = x <= 0  # False for NaN inputs, which the NaN policy has handled
    if bad.any():
        ob[bad] = np.array(np.nan, dtype=dt.dtype).view(dt.uint)


# ---------------------------------------------------------------------------------------
# Table formats
# ---------------------------------------------------------------------------------------

@lru_cache(maxsize=128)
def _table_data(fmt):
    v = np.ascontiguousarray(fmt.sorted_values, dtype=np.float64)
    a, b = v[:-1], v[1:]
    # Near the float64 maximum a + b overflows: there, halve first (exact for such large
    # values) and TwoSum the halves; elsewhere TwoSum a + b and halve (exact away from
    # underflow). Either way mid_hi + mid_lo == (a + b) / 2 exactly.
    big = np.maximum(np.abs(a), np.abs(b)) >= 2.0**1000
    ah, bh = np.where(big, a / 2, a), np.where(big, b / 2, b)
    s = ah + bh
    bb = s - ah
    err = (ah - (s - bb)) + (bh - bb)  # TwoSum: s + err == ah + bh exactly
    mid_hi, mid_lo = np.where(big, s, s / 2), np.where(big, err, err / 2)
    odd = (np.asarray(fmt.sorted_codes) & 1).astype(np.int64)
    zero_idx = int(np.argmin(np.abs(v)))
    return v, mid_hi, mid_lo, odd, zero_idx


#: Table rounding works on chunks of this many elements, so that its temporaries (int64
#: indices, float64 values, the cast-back check) stay small: the peak memory is the output
#: plus a few MiB, whatever the input size (benchmarks/bench_memory.py).
TABLE_CHUNK = 1 << 16

_GOLDEN = 0x9E3779B97F4A7C15  # kernels/_rng.py: element i of stream s draws from s + (i+1)*golden


def _round_table(arr, fmt, opts, seed, pick, out_dtype):
    """``pick[index]`` of every element of ``arr`` rounded to the table of ``fmt``, as an
    array of ``arr``'s shape and ``out_dtype``, computed chunk by chunk. ``pick`` maps the
    sorted-table index to the result (values or codes); a value ``out_dtype`` cannot hold
    raises (see _cast_back). Stochastic rounding draws the same bits as one whole call: chunk
    ``[b, e)`` uses the stream shifted by ``b`` elements."""
    mode, ovf, nanp = opts[0], opts[1], opts[2]
    if mode is Rounding.RTO and not isinstance(fmt, (CodebookFormat, DIntFormat)):
        raise ValueError("rto is not defined here")
    v, mid_hi, mid_lo, odd, zero_idx = _table_data(fmt)
    x = arr.reshape(-1)
    out = np.empty(x.size, dtype=out_dtype)
    sd = int(_seed(seed, mode))
    idx = np.empty(min(x.size, TABLE_CHUNK), dtype=np.int64)
    for b in range(0, x.size, TABLE_CHUNK):
        xc = x[b:b + TABLE_CHUNK]
        if xc.dtype not in (np.float32, np.float64):
            xc = xc.astype(np.float32)  # float16/bfloat16: exact
        ic = idx[:xc.size]
        kern = table_parallel if xc.size >= PARALLEL_THRESHOLD else table_serial
        err = kern(xc, ic, v, mid_hi, mid_lo, odd, _MODE_CODE[mode], _NAN_CODE[nanp], zero_idx,
                   np.uint64((sd + b * _GOLDEN) % 2**64))
        if err:
            n = int(np.count_nonzero(np.isnan(x)))
            raise ValueError(f"{fmt.name} has no NaN but the input holds {n} NaN value(s); pass "
                             "nan='zero' or nan='max' to map them, or clean the input")
        out[b:b + xc.size] = _cast_back(pick[ic], np.dtype(out_dtype), fmt)
    return out.reshape(arr.shape)


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------

def quantize(x, fmt, *, rounding="rne", overflow=None, subnormals=None, daz=False, nan=None,
             seed=None, srbits=None, axis=None):
    """Round ``x`` once into ``fmt``; the result has the input's shape and dtype.

    Parameters
    ----------
    x : array_like
        numpy float16/bfloat16/float32/float64 array or scalar (any byte order), or a
        Python float; ml_dtypes' 8/6/4-bit float arrays are read as float32.
    fmt : Format or str
        Target format (see :func:`fpsim.parse`).
    rounding : str
        One of :data:`ROUNDING_MODES` (default ``"rne"``).
    overflow : str, optional
        ``"saturate"``, ``"inf"``, ``"nan"`` or ``"wrap"``; ``None`` = the family default.
    subnormals : bool, optional
        ``False`` flushes subnormal results to zero (FTZ); ``None`` = the format's setting.
    daz : bool
        Denormals-are-zero: inputs below the format's smallest normal count as zero.
    nan : str, optional
        NaN inputs: ``"propagate"``, ``"raise"``, ``"zero"`` or ``"max"``.
    seed : int or numpy.random.Generator, optional
        Stochastic rounding stream; a given seed gives the same bits for any thread count.
    srbits : int, optional
        Random bits used by stochastic rounding (default: exact probabilities).
    axis : int, optional
        Block/scaled formats only (``"mxfp4"``, :class:`fpsim.BlockFormat`...): the blocked
        axis (default: the format's own ``axis``). See :mod:`fpsim.block`.

    Returns
    -------
    numpy array (or scalar) of the input's dtype holding values of ``fmt``. If a value
    of ``fmt`` the result needs cannot be held by that dtype, ``ValueError`` asks for a
    float64 input instead of returning a wrong number.

    Examples
    --------
    >>> import numpy as np, fpsim
    >>> fpsim.quantize(np.array([0.3, 500.0, 1e-4], dtype=np.float32), "e4m3")
    array([3.125e-01, 4.480e+02, 0.000e+00], dtype=float32)
    >>> fpsim.quantize(2.5, "int8"), fpsim.quantize(2.5, "int8", rounding="rna")
    (2.0, 3.0)
    >>> fpsim.quantize(1000.0, "e5m2", rounding="rtz"), fpsim.quantize(1e6, "e5m2")
    (896.0, inf)
    """
    fmt = as_format(fmt)
    if hasattr(fmt, "_quantize"):  # block/scaled formats (fpsim.block) do their own blocking
        return fmt._quantize(x, axis=axis, rounding=rounding, overflow=overflow,
                             subnormals=subnormals, daz=daz, nan=nan, seed=seed, srbits=srbits)
    _no_axis(axis, fmt)
    arr, restore = _as_input(x)
    opts = _options(fmt, rounding, overflow, nan, subnormals, daz, srbits)
    if isinstance(fmt, (CodebookFormat, DIntFormat)):
        return restore(_round_table(arr, fmt, opts, seed, fmt.sorted_values, arr.dtype))
    bits, dt = _round_grid(arr, fmt, opts, seed)
    out = bits.view(dt.dtype)
    if dt.dtype != arr.dtype:
        out = _cast_back(out, arr.dtype, fmt)
    return restore(out)


def _cast_back(vals: np.ndarray, dtype, fmt) -> np.ndarray:
    if vals.dtype == dtype:
        return vals
    with np.errstate(over="ignore", invalid="ignore"):
        out = vals.astype(dtype)
        back = out.astype(np.float64)
    v64 = vals.astype(np.float64)
    bad = ~((back == v64) | (np.isnan(back) & np.isnan(v64)))
    if np.any(bad):
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        raise ValueError(f"the {fmt.name} value {float(v64.reshape(-1)[i])!r} is not representable in "
                         f"{np.dtype(dtype).name}; pass a float64 array to get it")
    return out


def _no_axis(axis, fmt):
    if axis is not None:
        raise ValueError(f"axis={axis!r} only applies to block/scaled formats (e.g. 'mxfp4'); "
                         f"{fmt.name} is an element format")


def code_dtype(fmt) -> np.dtype:
    """Smallest unsigned integer dtype that holds every code of ``fmt``.

    >>> import fpsim
    >>> fpsim.code_dtype("e4m3"), fpsim.code_dtype("bf16"), fpsim.code_dtype("tf32")
    (dtype('uint8'), dtype('uint16'), dtype('uint32'))
    """
    b = as_format(fmt).bits
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        if b <= 8 * np.dtype(dt).itemsize:
            return np.dtype(dt)
    raise AssertionError("formats have at most 64 bits")


@lru_cache(maxsize=256)
def _code_params(fmt: FloatFormat, dt: _DType) -> CodeParams:
    M, bits = fmt.man_bits, fmt.bits
    fam = fmt.family
    top = 2 ** (fmt.exp_bits + M) - 1  # all-ones magnitude code
    if fam == "ieee":
        nan_code, keep = ((2**fmt.exp_bits - 1) << M) | (1 << max(M - 1, 0)), 1
        inf_code = (2**fmt.exp_bits - 1) << M
    elif fam == "fn":
        nan_code, keep, inf_code = top, 1, -1
    elif fam == "fnuz" or (fam.startswith("p3109") and fmt.signed):
        nan_code, keep = 1 << (bits - 1), 0
        inf_code = top if fam == "p3109" else -1
    elif fam == "e8m0" or fam.startswith("p3109"):  # unsigned: NaN is the top code
        nan_code, keep = 2**bits - 1, 0
        inf_code = 2**bits - 2 if fam == "p3109" else -1
    else:  # finite: no NaN can reach here (quantize raised)
        nan_code, keep, inf_code = 0, 0, -1
    return CodeParams(in_M=dt.M, in_bias=dt.bias, in_expmax=dt.expmax, sign_shift=dt.sign_shift,
                      M=M, emin=fmt.emin, bias=fmt.bias,
                      code_sign_shift=bits - 1 if fmt.signed else -1, nan_code=nan_code,
                      nan_keeps_sign=keep, inf_code=inf_code,
                      negzero_is_code=int(fmt.has_negzero))


def encode(x, fmt, *, rounding="rne", overflow=None, subnormals=None, daz=False, nan=None,
           seed=None, srbits=None, axis=None):
    """Round ``x`` into ``fmt`` and return the bit codes (see :func:`code_dtype`).

    Takes the same options as :func:`quantize`. Float codes are sign | exponent | mantissa;
    integers are two's complement in ``bits`` bits; codebooks use the index of the value.

    >>> import numpy as np, fpsim
    >>> fpsim.encode(np.array([1.0, -2.0, 448.0]), "e4m3")
    array([ 56, 192, 126], dtype=uint8)
    >>> fpsim.encode(np.array([-1.0, 3.0]), "int4")
    array([15,  3], dtype=uint8)
    """
    fmt = as_format(fmt)
    if hasattr(fmt, "_encode"):  # block/scaled formats: (element codes, scale codes)
        return fmt._encode(x, axis=axis, rounding=rounding, overflow=overflow,
                           subnormals=subnormals, daz=daz, nan=nan, seed=seed, srbits=srbits)
    _no_axis(axis, fmt)
    arr, restore = _as_input(x)
    opts = _options(fmt, rounding, overflow, nan, subnormals, daz, srbits)
    cdt = code_dtype(fmt)
    if isinstance(fmt, (CodebookFormat, DIntFormat)):
        return restore(_round_table(arr, fmt, opts, seed, fmt.sorted_codes, cdt))
    bits, dt = _round_grid(arr, fmt, opts, seed)
    if isinstance(fmt, FixedFormat):  # two's complement of k = value * 2**frac_bits (exact)
        vals = bits.reshape(-1).view(dt.dtype)
        out = np.empty(vals.size, dtype=cdt)
        for b in range(0, vals.size, TABLE_CHUNK):  # small temporaries, whatever the size
            k = (vals[b:b + TABLE_CHUNK].astype(np.float64) * math.ldexp(1.0, fmt.frac_bits))
            out[b:b + TABLE_CHUNK] = k.astype(np.int64) & (2**fmt.bits - 1)
        return restore(out.reshape(arr.shape))
    out = np.empty(bits.size, dtype=cdt)  # the kernel writes the codes in place: no astype copy
    codes_from_bits(bits.reshape(-1), out, _code_params(fmt, dt))
    return restore(out.reshape(arr.shape))


_POW2 = np.array([math.ldexp(1.0, k) for k in range(-1074, 1024)], dtype=np.float64)


@lru_cache(maxsize=256)
def _decode_params(fmt: FloatFormat) -> DecodeParams:
    top = 2 ** (fmt.exp_bits + fmt.man_bits) - 1
    inf = -1
    if fmt.family == "ieee":
        inf = (2**fmt.exp_bits - 1) << fmt.man_bits
    elif fmt.family == "p3109":
        inf = top if fmt.signed else top - 1
    return DecodeParams(M=fmt.man_bits, bias=fmt.bias, emin=fmt.emin, e8m0=int(fmt.family == "e8m0"),
                        code_sign_shift=fmt.bits - 1 if fmt.signed else -1,
                        max_code_mag=fmt._max_code_mag(), inf_code=inf,
                        negzero_nan=int(fmt.family == "fnuz" or (fmt.family.startswith("p3109") and fmt.signed)),
                        bits=fmt.bits)


@lru_cache(maxsize=256)
def _direct_decode(fmt: FloatFormat, code_dt: np.dtype, out_dt: np.dtype) -> bool:
    """Whether decode can write ``out_dt`` values straight from ``code_dt`` codes."""
    if code_dt.kind != "u" or np.iinfo(code_dt).max >= 2**fmt.bits:
        return False  # codes may be out of range: decode checks them
    if out_dt == np.float64:
        return True
    if out_dt != np.float32:
        return False
    dt = _DTYPES[out_dt]
    M, _, mx, mxneg, minsub, minnorm = _grid_limits(fmt)
    return M <= dt.M and all(_exact_in(v, dt) for v in (mx, mxneg, minsub, minnorm))


def decode(codes, fmt, *, dtype=np.float64, axis=None):
    """Values of the bit codes ``codes`` of ``fmt`` (inverse of :func:`encode`).

    ``dtype`` is the output float type; a value it cannot hold exactly raises ValueError.

    >>> import numpy as np, fpsim
    >>> fpsim.decode(np.array([56, 192, 126, 127], dtype=np.uint8), "e4m3")
    array([  1.,  -2., 448.,  nan])
    """
    fmt = as_format(fmt)
    if hasattr(fmt, "_decode"):  # block/scaled formats take (element codes, scale codes)
        return fmt._decode(codes, dtype=dtype, axis=axis)
    _no_axis(axis, fmt)
    c = as_codes(codes)
    scalar = c.ndim == 0 and not isinstance(codes, np.ndarray)  # a 0-d array stays an array
    odt = _out_dtype(dtype)
    if isinstance(fmt, FloatFormat) and _direct_decode(fmt, c.dtype, odt):
        # fast path: unsigned codes that cannot be out of range, and an output type that
        # holds every value of fmt exactly: no int64 copy, no range scan, no cast-back check
        out = np.empty(c.size, dtype=odt)
        decode_codes(c.reshape(-1), out, _decode_params(fmt), _POW2)
        out = _flush_subnormal_codes(out, fmt).reshape(c.shape)
        return out[()] if scalar else out
    check_code_range(c, fmt.bits, f"the {fmt.bits}-bit format {fmt.name}")
    c64 = c.reshape(-1).astype(np.int64)
    if isinstance(fmt, FloatFormat):
        out = np.empty(c64.size, dtype=np.float64)
        decode_codes(c64, out, _decode_params(fmt), _POW2)
        out = _flush_subnormal_codes(out, fmt)
    elif isinstance(fmt, FixedFormat):
        k = c64.copy()
        if fmt.signed:
            k[k >= 2 ** (fmt.bits - 1)] -= 2**fmt.bits
        if fmt.narrow and np.any(k == -(2 ** (fmt.bits - 1))):
            raise ValueError(f"code {2 ** (fmt.bits - 1)} is not used by the narrow format {fmt.name}")
        out = k.astype(np.float64) * math.ldexp(1.0, -fmt.frac_bits)
    else:
        out = fmt.code_values[c64]
        if isinstance(fmt, CodebookFormat) and np.any(np.isnan(out)):
            bad = c64[np.isnan(out)][0]
            raise ValueError(f"code {bad} is not used by {fmt.name} ({len(fmt.values_)} values)")
    out = out.reshape(c.shape)
    if odt != np.float64:
        out = _cast_back(out, odt, fmt)
    return out[()] if scalar else out


def _flush_subnormal_codes(out, fmt):
    """A format without subnormals (``subnormals=False``, ``_ftz`` names) has no value for a
    code whose exponent field is 0 and fraction is not: it reads as a zero of that sign, as
    flush-to-zero hardware reads it (encode never makes such a code). E8M0 has no
    subnormals to flush (its exponent field 0 is 2**-127)."""
    if fmt.subnormals or fmt.man_bits == 0 or fmt.family == "e8m0":
        return out
    sub = (np.abs(out) < fmt.min_normal) & (out != 0)
    if sub.any():
        out[sub] = np.copysign(0.0, out[sub])
    return out


def as_codes(codes, what="codes") -> np.ndarray:
    """Integer array of bit codes (any integer dtype; masked arrays and bools refused).

    >>> from fpsim.rounding import as_codes
    >>> as_codes([1, 2]).dtype.kind, as_codes(7).shape
    ('i', ())
    """
    if isinstance(codes, np.ma.MaskedArray):
        raise TypeError(f"{what} is a masked array: fpsim would drop its mask; pass a plain "
                        "integer array")
    if isinstance(codes, (bool, np.bool_)):
        raise TypeError(f"{what} is a bool; codes are integers")
    try:
        c = np.asarray(codes)
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"{what}: cannot read as an integer array: {e}") from None
    if c.dtype.kind not in "ui":
        raise TypeError(f"{what} must be an integer array, got dtype {c.dtype}")
    return c


def check_code_range(c: np.ndarray, bits: int, name: str) -> None:
    """ValueError naming the first code outside ``0 .. 2**bits - 1`` as given (never wrapped
    or truncated first); ``name`` says whose codes they are (``"the 8-bit format e4m3"``).

    >>> import numpy as np
    >>> from fpsim.rounding import check_code_range
    >>> check_code_range(np.array([-1, 3], np.int8), 4, "4-bit codes")
    Traceback (most recent call last):
    ...
    ValueError: code -1 is outside 0..15 of 4-bit codes
    """
    if not c.size:
        return
    lo, hi = int(c.min()), int(c.max())  # Python ints: a uint64 code is never negative
    if lo >= 0 and hi < 2**bits:
        return
    flat = c.reshape(-1)
    bad = flat[(flat < 0) | (flat > 2**bits - 1)][0] if lo < 0 else flat[flat > 2**bits - 1][0]
    raise ValueError(f"code {int(bad)} is outside 0..{2**bits - 1} of {name}")


def _out_dtype(dtype) -> np.dtype:
    """The output dtype of decode: a float dtype of _DTYPES."""
    try:
        odt = np.dtype(dtype)
    except TypeError:
        odt = None
    if odt is None or odt not in _DTYPES:
        shown = odt.name if odt is not None else repr(dtype)
        raise TypeError(f"dtype={shown} is not allowed as the output dtype of decode (allowed "
                        "dtypes: float16, bfloat16 (ml_dtypes), float32, float64, native byte "
                        "order)")
    return odt
