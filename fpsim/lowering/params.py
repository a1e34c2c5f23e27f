"""Carriers, rounding specs and kernel parameter records (see :mod:`fpsim.lowering`).

>>> from fpsim.lowering import params
>>> params.F64.M
52
"""

from __future__ import annotations

import importlib
import math
import secrets
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ..kernels._lazy import kernel
from ..options import (MODE_CODE, NAN_CODE, OVF_CODE, NaNPolicy, Overflow, Rounding, check_flag,
                       enum_value)

# The kernel records load with Numba on first use (`import fpsim` stays fast).
CodeParams = kernel("float_round", "CodeParams")
DecodeParams = kernel("float_round", "DecodeParams")
RoundParams = kernel("float_round", "RoundParams")
_FIXED_EMIN = kernel("float_round", "FIXED_EMIN")

__all__ = ["DType", "DTYPES", "F64", "BF16", "RoundingSpec", "options", "round_params",
           "code_params", "decode_params", "grid_limits", "exact_in", "seed", "cast_back",
           "nan_input_error", "MODE_CODE", "OVF_CODE", "NAN_CODE", "PARALLEL_THRESHOLD",
           "bf16_dtype", "ml_dtypes_module"]

#: Arrays at least this long use the parallel kernels.
PARALLEL_THRESHOLD = 1 << 15



# ---------------------------------------------------------------------------------------
# Float carriers
# ---------------------------------------------------------------------------------------

class DType:
    """Bit layout of a float dtype the kernels read and write (a *carrier*).

    >>> from fpsim import lowering
    >>> lowering.F64.M, lowering.F64.E, lowering.DTYPES[lowering.BF16].bias
    (52, 11, 127)
    """

    def __init__(self, dtype, uint, M, E):
        self.dtype, self.uint, self.M, self.E = np.dtype(dtype), np.dtype(uint), M, E
        self.bias = 2 ** (E - 1) - 1
        self.expmax = 2**E - 1
        self.sign_shift = M + E


def ml_dtypes_module():
    """The ``ml_dtypes`` module (a core dependency), imported on first need.

    Not at ``import fpsim``: importing ml_dtypes 0.7 costs about 0.6 CPU s, more than all
    the rest of ``import fpsim``; an array of one of its types only exists once the user
    imported it, and fpsim asks for it only to name bfloat16 itself (:data:`BF16`).

    >>> from fpsim import lowering
    >>> lowering.ml_dtypes_module().bfloat16.__name__
    'bfloat16'
    """
    return importlib.import_module("ml_dtypes")


@lru_cache(maxsize=None)
def bf16_dtype() -> np.dtype:
    """numpy dtype of bfloat16 (ml_dtypes'), also spelled :data:`BF16`."""
    return np.dtype(ml_dtypes_module().bfloat16)


def _is_bf16(dt) -> bool:
    return (isinstance(dt, np.dtype) and dt.name == "bfloat16"
            and dt.type.__module__.startswith("ml_dtypes"))


class _Carriers(dict):
    """numpy float dtype -> :class:`DType`; bfloat16 joins when first looked up (so that
    ml_dtypes need not be imported by ``import fpsim``: see :func:`ml_dtypes_module`)."""

    def _join(self, key) -> bool:
        if _is_bf16(key) and not dict.__contains__(self, key):
            self[key] = DType(key, np.uint16, 7, 8)
            return True
        return False

    def __missing__(self, key):
        if self._join(key):
            return dict.__getitem__(self, key)
        raise KeyError(key)

    def __contains__(self, key):
        return dict.__contains__(self, key) or self._join(key)


#: The carriers: numpy float dtype -> :class:`DType` (float64, float32, float16, bfloat16).
DTYPES = _Carriers({
    np.dtype(np.float64): DType(np.float64, np.uint64, 52, 11),
    np.dtype(np.float32): DType(np.float32, np.uint32, 23, 8),
    np.dtype(np.float16): DType(np.float16, np.uint16, 10, 5),
})
#: The float64 carrier (holds every value of every format).
F64 = DTYPES[np.dtype(np.float64)]


def exact_in(value: float, dt: DType) -> bool:
    """Whether the float64 ``value`` is a value of the carrier ``dt``.

    >>> from fpsim import lowering
    >>> lowering.exact_in(448.0, lowering.DTYPES[lowering.BF16]), lowering.exact_in(0.1, lowering.F64)
    (True, True)
    """
    with np.errstate(over="ignore"):
        return bool(np.array(value, dtype=np.float64).astype(dt.dtype).astype(np.float64) == value)


def _mag_bits(value: float, dt: DType) -> int:
    return int(np.array(abs(value), dtype=dt.dtype).view(dt.uint))


# ---------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------

class RoundingSpec(NamedTuple):
    """Resolved rounding options of one call: what every kernel-parameter function reads.

    A named tuple (frozen, hashable), so ``mode, ovf, nanp, subn, daz, srbits = spec`` and
    ``f(fmt, dt, *spec)`` keep working. Build it with :meth:`resolve` (or :func:`options`),
    which checks every option against the format.

    >>> import fpsim
    >>> from fpsim.lowering import RoundingSpec
    >>> s = RoundingSpec.resolve(fpsim.parse("int8"), rounding="rtz")
    >>> s.mode.value, s.overflow.value, s.nan.value, s.subnormals, s.daz, s.srbits
    ('rtz', 'saturate', 'raise', True, False, 0)
    """

    mode: Rounding
    overflow: Overflow
    nan: NaNPolicy
    subnormals: bool
    daz: bool
    srbits: int

    @classmethod
    def resolve(cls, fmt, rounding="rne", overflow=None, nan=None, subnormals=None, daz=False,
                srbits=None) -> "RoundingSpec":
        """Check the options against the format ``fmt`` and fill in its defaults.

        ``None`` means the format's own behaviour: ``fmt.default_overflow``, NaN kept
        (formats with NaN) or refused (formats without), ``fmt.subnormals``.

        >>> from fpsim import parse
        >>> from fpsim.lowering import RoundingSpec
        >>> RoundingSpec.resolve(parse("e5m2")).overflow.value
        'inf'
        >>> RoundingSpec.resolve(parse("e4m3"), overflow="inf")
        Traceback (most recent call last):
        ...
        ValueError: overflow='inf' needs a format with infinities; e4m3 has none (use 'saturate' or 'nan')
        """
        mode = enum_value(Rounding, rounding, "rounding")
        ovf = enum_value(Overflow, overflow if overflow is not None else fmt.default_overflow,
                         "overflow")
        if ovf is Overflow.INF and not fmt.has_inf:
            raise ValueError(f"overflow='inf' needs a format with infinities; {fmt.name} has none "
                             "(use 'saturate'" + (" or 'nan')" if fmt.has_nan else ")"))
        if ovf is Overflow.NAN and not fmt.has_nan:
            raise ValueError(f"overflow='nan' needs a format with NaN; {fmt.name} has none "
                             "(use 'saturate')")
        if ovf is Overflow.WRAP and not fmt.fixed_point:
            raise ValueError("overflow='wrap' is only for integer and fixed-point formats")
        if ovf is Overflow.WRAP and fmt.narrow:
            raise ValueError("overflow='wrap' needs the full two's complement range (narrow=False)")
        if nan is None:
            nanp = NaNPolicy.PROPAGATE if fmt.has_nan else NaNPolicy.RAISE
        else:
            nanp = enum_value(NaNPolicy, nan, "nan")
            if nanp is NaNPolicy.ZERO and not fmt.has_zero:
                raise ValueError(f"nan='zero' needs a format with a zero; {fmt.name} has none "
                                 "(choose 'propagate', 'raise' or 'max')")
            if nanp is NaNPolicy.PROPAGATE and not fmt.has_nan:
                raise ValueError(f"nan='propagate' needs a format with NaN; {fmt.name} has none "
                                 "(choose 'raise', 'zero' or 'max')")
        subn = fmt.subnormals if subnormals is None else check_flag(subnormals, "subnormals")
        daz = check_flag(daz, "daz")
        if srbits is not None:
            if mode is not Rounding.STOCHASTIC:
                raise ValueError("srbits only applies to rounding='stochastic'")
            if (isinstance(srbits, bool) or not isinstance(srbits, (int, np.integer))
                    or not 1 <= srbits <= 62):
                raise ValueError(f"srbits={srbits!r}: allowed an int 1..62, or None for exact")
        return cls(mode, ovf, nanp, bool(subn), bool(daz), int(srbits or 0))


def options(fmt, rounding, overflow, nan, subnormals, daz, srbits) -> RoundingSpec:
    """:meth:`RoundingSpec.resolve` with every option positional (the historic signature).

    >>> from fpsim import lowering, as_format
    >>> tuple(lowering.options(as_format("nf4"), "rne", None, None, None, False, None))[1:3]
    (<Overflow.SATURATE: 'saturate'>, <NaNPolicy.RAISE: 'raise'>)
    """
    return RoundingSpec.resolve(fmt, rounding, overflow, nan, subnormals, daz, srbits)


def seed(seed, mode) -> np.uint64:
    """The 64-bit stream of stochastic rounding (0 for the other modes).

    ``seed``: an int, a numpy Generator (one draw) or None (fresh entropy).

    >>> from fpsim import lowering
    >>> from fpsim.options import Rounding
    >>> int(lowering.seed(7, Rounding.STOCHASTIC)), int(lowering.seed(7, Rounding.RNE))
    (7, 0)
    """
    if mode is not Rounding.STOCHASTIC:
        return np.uint64(0)
    if seed is None:
        return np.uint64(secrets.randbits(64))
    if isinstance(seed, np.random.Generator):
        return np.uint64(seed.integers(0, 2**63, dtype=np.int64))
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return np.uint64(int(seed) % 2**64)
    raise TypeError(f"seed must be an int, a numpy Generator or None, got {type(seed).__name__}")


def nan_input_error(name: str, n: int) -> str:
    """The message of a NaN input into a format without NaN (every rounding path says it).

    >>> from fpsim import lowering
    >>> lowering.nan_input_error("e2m1", 2)[:45]
    'e2m1 has no NaN but the input holds 2 NaN val'
    """
    return (f"{name} has no NaN but the input holds {n} NaN value(s); pass nan='zero' or "
            "nan='max' to map them, or clean the input")


# ---------------------------------------------------------------------------------------
# Kernel parameters
# ---------------------------------------------------------------------------------------

def grid_limits(fmt):
    """``(M, emin, max, max negative magnitude, smallest rounded-up value, min normal)`` of a
    grid format (float, integer, fixed point), as the rounding kernel reads them.

    >>> from fpsim import lowering, as_format
    >>> lowering.grid_limits(as_format("e4m3"))
    (3, -6, 448.0, 448.0, 0.001953125, 0.015625)
    """
    if fmt.fixed_point:  # k * 2**-frac_bits: a float grid of fixed exponent
        q = math.ldexp(1.0, -fmt.frac_bits)
        emin = _FIXED_EMIN.resolve()
        return (emin + fmt.frac_bits, emin, fmt.max, -fmt.min, q, q)
    minsub = fmt.replace(subnormals=True).min_subnormal
    return (fmt.man_bits, fmt.emin, fmt.max, fmt.max if fmt.signed else 0.0, minsub,
            fmt.min_normal)


@lru_cache(maxsize=512)
def _round_params(fmt, dt: DType, spec: RoundingSpec):
    M, emin, mx, mxneg, minsub, minnorm = grid_limits(fmt)
    if spec.overflow is Overflow.WRAP and dt is not F64:
        return None
    if not all(exact_in(v, dt) for v in (mx, mxneg, minsub, minnorm)):
        return None
    fixed = fmt.fixed_point
    return RoundParams(
        in_M=dt.M, in_bias=dt.bias, in_expmax=dt.expmax, sign_shift=dt.sign_shift,
        M=M, emin=emin, maxpos=_mag_bits(mx, dt), maxneg=_mag_bits(mxneg, dt),
        minsub=_mag_bits(minsub, dt), minnorm=_mag_bits(minnorm, dt),
        mode=MODE_CODE[spec.mode], ovf=OVF_CODE[spec.overflow], nan_action=NAN_CODE[spec.nan],
        ftz=int(not spec.subnormals), daz=int(spec.daz), no_negzero=int(not fmt.has_negzero),
        no_zero=int(not fmt.has_zero), srbits=spec.srbits,
        wrap_bits=fmt.bits if fixed else 0, frac_bits=fmt.frac_bits if fixed else 0,
        signed_int=int(fmt.signed) if fixed else 0,
    )


def round_params(fmt, dt: DType, *spec):
    """Rounding-kernel parameters of a grid format on carrier ``dt``, or None when the
    format's limits are not values of ``dt`` (then round on :data:`F64`).

    ``spec`` is a :class:`RoundingSpec`; its six fields given one by one
    (``round_params(fmt, dt, *spec)``) are accepted too.

    >>> from fpsim import lowering, as_format
    >>> f = as_format("fp16")
    >>> s = lowering.RoundingSpec.resolve(f)
    >>> lowering.round_params(f, lowering.F64, s) == lowering.round_params(f, lowering.F64, *s)
    True
    >>> lowering.round_params(as_format("fp32"), lowering.DTYPES[lowering.BF16], s) is None
    True
    """
    if len(spec) == 1 and isinstance(spec[0], RoundingSpec):
        spec = spec[0]
    elif len(spec) == len(RoundingSpec._fields):
        spec = RoundingSpec(*spec)
    else:
        raise TypeError("round_params(fmt, dt, spec) takes a RoundingSpec (or its six fields)")
    return _round_params(fmt, dt, spec)


def _nan_code(fmt) -> tuple:
    """(NaN code, whether it keeps the input's sign) of a float format."""
    E, M, bits, where = fmt.exp_bits, fmt.man_bits, fmt.bits, fmt.encoding.nan
    if where == "mantissa" and M > 0:  # quiet NaN: top exponent, top mantissa bit
        return ((2**E - 1) << M) | (1 << (M - 1)), 1
    if where == "all_ones":
        return 2 ** (E + M) - 1, 1
    if where == "negzero":
        return 1 << (bits - 1), 0
    if where == "top_code":
        return 2**bits - 1, 0
    return 0, 0  # no NaN: no NaN can reach the kernel (quantize raised)


def _inf_code(fmt) -> int:
    """Magnitude code of +inf of a float format (-1: none)."""
    enc, E, M = fmt.encoding, fmt.exp_bits, fmt.man_bits
    if enc.inf == "binade":
        return (2**E - 1) << M
    if enc.inf == "top":  # the top magnitude code that is not the NaN
        return 2 ** (E + M) - (2 if enc.nan == "top_code" else 1)
    return -1


@lru_cache(maxsize=256)
def code_params(fmt, dt: DType):
    """Kernel parameters turning rounded ``dt`` bit patterns into codes of the float ``fmt``.

    >>> from fpsim import lowering, as_format
    >>> p = lowering.code_params(as_format("e4m3"), lowering.F64)
    >>> p.nan_code, p.inf_code
    (127, -1)
    """
    nan_code, keep = _nan_code(fmt)
    return CodeParams(in_M=dt.M, in_bias=dt.bias, in_expmax=dt.expmax, sign_shift=dt.sign_shift,
                      M=fmt.man_bits, emin=fmt.emin, bias=fmt.bias,
                      code_sign_shift=fmt.bits - 1 if fmt.signed else -1, nan_code=nan_code,
                      nan_keeps_sign=keep, inf_code=_inf_code(fmt),
                      negzero_is_code=int(fmt.has_negzero))


@lru_cache(maxsize=256)
def decode_params(fmt):
    """Kernel parameters of decoding codes of the float ``fmt``.

    >>> from fpsim import lowering, as_format
    >>> p = lowering.decode_params(as_format("e5m2"))
    >>> p.inf_code, p.max_code_mag
    (124, 123)
    """
    enc = fmt.encoding
    return DecodeParams(M=fmt.man_bits, bias=fmt.bias, emin=fmt.emin, e8m0=int(enc.all_normal),
                        code_sign_shift=fmt.bits - 1 if fmt.signed else -1,
                        max_code_mag=fmt.max_code_mag, inf_code=_inf_code(fmt),
                        negzero_nan=int(enc.nan == "negzero"), bits=fmt.bits)


def cast_back(vals: np.ndarray, dtype, fmt) -> np.ndarray:
    """``vals`` as ``dtype``, exactly, or a ValueError asking for a float64 input.

    >>> import numpy as np
    >>> from fpsim import lowering, as_format
    >>> lowering.cast_back(np.array([448.0]), np.float16, as_format("e4m3"))
    array([448.], dtype=float16)
    """
    if vals.dtype == dtype:
        return vals
    with np.errstate(over="ignore", invalid="ignore"):
        out = vals.astype(dtype)
        back = out.astype(np.float64)
    v64 = vals.astype(np.float64)
    bad = ~((back == v64) | (np.isnan(back) & np.isnan(v64)))
    if np.any(bad):
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        raise ValueError(f"the {fmt.name} value {float(v64.reshape(-1)[i])!r} is not "
                         f"representable in {np.dtype(dtype).name}; pass a float64 array to get it")
    return out



def __getattr__(name):
    # BF16 (bfloat16's numpy dtype) is computed on first use: see ml_dtypes_module
    if name == "BF16":
        return bf16_dtype()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
