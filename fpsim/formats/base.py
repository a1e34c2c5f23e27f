"""The format protocol (:class:`Format`), element formats and the special-value records.

>>> import fpsim
>>> fpsim.parse("e4m3").encoding.nan, fpsim.parse("e5m2").encoding.inf
('all_ones', 'binade')
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import lowering as _L
from ..options import check_flag  # noqa: F401 - re-exported by fpsim.formats

__all__ = ["Format", "ElementFormat", "GridFormat", "Encoding", "encoding", "FAMILIES",
           "DEFAULT_FAMILY", "MAX_TABLE_BITS", "check_flag", "pow2"]

#: Formats wider than this have no ``values()`` table (it would not fit in memory).
MAX_TABLE_BITS = 16


def pow2(e: int) -> float:
    """``2.0**e`` exactly (``math.ldexp``).

    >>> from fpsim.formats.base import pow2
    >>> pow2(-3)
    0.125
    """
    return math.ldexp(1.0, e)


class Format:
    """Base class of all formats: the protocol :mod:`fpsim.rounding` calls.

    **Element formats** (float, integer, fixed point, codebook, dINT) implement::

        _quantize(arr, spec, seed) -> values: arr's shape and dtype
        _encode(arr, spec, seed)   -> codes: arr's shape, dtype _L.uint_dtype(bits)
        _decode(codes, dtype)      -> values: codes' shape, float dtype ``dtype``

    ``arr`` is a contiguous array of a carrier dtype (:data:`fpsim.lowering.DTYPES`: the
    input rule has been applied), ``spec`` a resolved :class:`fpsim.lowering.RoundingSpec`,
    ``seed`` the caller's seed argument, ``codes`` an integer array that may hold codes out
    of range (``_decode`` checks them). :func:`fpsim.quantize` is then: coerce the input,
    resolve the spec, ``fmt._quantize(...)``, give the result the input's kind.

    **Blocked formats** (``blocked = True``: :class:`fpsim.BlockFormat`,
    :class:`fpsim.ScaledFormat`) take the caller's input and options as they are:
    ``_quantize(x, *, axis, rounding, overflow, ...)`` and the like, since a block scale
    is chosen before the elements are rounded.

    Capability flags (class attributes) tell callers what a format is without
    ``isinstance`` chains: ``blocked`` (see above), ``table`` (values from a lookup table:
    codebooks, dINT; no arithmetic rounds into them), ``fixed_point`` (two's complement
    integers scaled by ``2**-frac_bits``: ``overflow="wrap"`` applies).

    >>> import fpsim
    >>> all(isinstance(fpsim.parse(n), fpsim.Format) for n in ("e4m3", "int8", "nf4"))
    True
    >>> [fpsim.parse(n).fixed_point for n in ("e4m3", "int8")], fpsim.parse("nf4").table
    ([False, True], True)
    """

    bits: int
    blocked = False
    table = False
    fixed_point = False

    def __str__(self) -> str:
        return self.name


class ElementFormat(Format):
    """A format whose every code stands for one value by itself: ``values()`` and
    ``code_table()`` exist (for at most 16 bits).

    >>> import fpsim
    >>> isinstance(fpsim.parse("int4"), fpsim.formats.ElementFormat)
    True
    """

    def values(self) -> np.ndarray:
        """All finite values of the format, ascending, as float64 (one zero).

        Only for formats of at most 16 bits.

        >>> import fpsim
        >>> fpsim.parse("e2m1").values().tolist()
        [-6.0, -4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
        """
        if self.bits > MAX_TABLE_BITS:
            raise ValueError(
                f"{self.name} has {self.bits} bits; values() is only available for formats "
                f"of at most {MAX_TABLE_BITS} bits"
            )
        table = self.code_table()
        v = table[np.isfinite(table)]
        if self.subnormals is False:  # FTZ: subnormal codes are never produced
            v = v[(v == 0) | (np.abs(v) >= self.min_normal)]
        return np.unique(v) + 0.0  # sorts, merges +0/-0 (and makes the zero +0)

    def code_table(self) -> np.ndarray:
        """float64 value of every code ``0 .. 2**bits - 1`` (NaN for NaN or unused codes).

        >>> import fpsim
        >>> fpsim.parse("e2m1").code_table()[:4].tolist()
        [0.0, 0.5, 1.0, 1.5]
        """
        if self.bits > MAX_TABLE_BITS:
            raise ValueError(f"{self.name}: code tables exist only for formats of at most 16 bits")
        t = self._code_table()
        t.setflags(write=False)
        return t

    def _code_table(self) -> np.ndarray:
        return self._decode(np.arange(2**self.bits, dtype=np.uint64), np.dtype(np.float64))


class GridFormat(ElementFormat):
    """An element format on a binary grid (float, integer, fixed point): the rounding
    kernels of ``fpsim.kernels.float_round`` round into it, so can the arithmetic.

    >>> import fpsim
    >>> isinstance(fpsim.parse("fixed8f4"), fpsim.formats.GridFormat)
    True
    """

    def _round(self, arr, spec, seed):
        """(rounded bit patterns, carrier) of ``arr`` (see lowering.round_grid)."""
        return _L.round_grid(arr, self, spec, seed)

    def _quantize(self, arr, spec, seed):
        bits, dt = self._round(arr, spec, seed)
        out = bits.view(dt.dtype)
        return out if dt.dtype == arr.dtype else _L.cast_back(out, arr.dtype, self)


# ---------------------------------------------------------------------------------------
# Special-value families
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Encoding:
    """How a float format's codes hold its special values: resolved once from its
    ``family`` and sign (:func:`encoding`); every rule about specials reads this record.

    Fields: ``family`` (the name), ``inf`` (``"none"``; ``"binade"``: top exponent,
    mantissa 0, as IEEE; ``"top"``: the top magnitude code that is not the NaN), ``nan``
    (``"none"``; ``"mantissa"``: top exponent, mantissa != 0; ``"all_ones"``: only
    S.11..1; ``"negzero"``: the negative-zero code 1.00..0; ``"top_code"``: the all-ones
    code of an unsigned format), ``negzero`` (-0 has a code, when signed), ``zero``,
    ``all_normal`` (E8M0: exponent field 0 is a normal value; no subnormals, no zero,
    positive values only), ``sign`` (``"any"``, ``"signed"`` or ``"unsigned"``: the sign
    bits the family allows), ``default_overflow``, ``bias_shift`` (the default bias is
    ``2**(E-1) - 1 + bias_shift``), ``min_exp_bits`` and ``p3109`` (named
    ``p3109_k{K}p{P}``).

    >>> from fpsim.formats import encoding
    >>> e = encoding("fnuz", signed=True)
    >>> e.nan, e.negzero, e.default_overflow, e.reserved_top(3)
    ('negzero', False, 'nan', 0)
    """

    family: str
    inf: str
    nan: str
    negzero: bool
    zero: bool
    all_normal: bool
    sign: str
    default_overflow: str
    bias_shift: int
    min_exp_bits: int
    p3109: bool

    @property
    def has_inf(self) -> bool:
        """Whether the family has infinities.

        >>> from fpsim.formats import encoding
        >>> encoding("ieee", True).has_inf, encoding("fn", True).has_inf
        (True, False)
        """
        return self.inf != "none"

    @property
    def ieee_like(self) -> bool:
        """IEEE 754 specials: ±inf in the top binade, NaN with a nonzero mantissa, -0.

        >>> from fpsim.formats import encoding
        >>> encoding("ieee", True).ieee_like, encoding("fn", True).ieee_like
        (True, False)
        """
        return self.inf == "binade" and self.nan == "mantissa" and self.negzero

    def reserved_top(self, man_bits: int) -> int:
        """How many of the top magnitude codes are not finite numbers.

        >>> from fpsim.formats import encoding
        >>> encoding("ieee", True).reserved_top(2), encoding("p3109", False).reserved_top(2)
        (4, 2)
        """
        if self.inf == "binade":
            return 2**man_bits
        return int(self.inf == "top") + int(self.nan in ("all_ones", "top_code"))


# family -> (inf, NaN when signed, NaN when unsigned, negzero, zero, all_normal, sign,
#            default overflow, bias shift, min exp bits, p3109)
_FAMILY_TABLE = {
    "ieee": ("binade", "mantissa", "mantissa", True, True, False, "any", "inf", 0, 2, False),
    "fn": ("none", "all_ones", "all_ones", True, True, False, "any", "saturate", 0, 1, False),
    "fnuz": ("none", "negzero", "negzero", False, True, False, "signed", "nan", 1, 1, False),
    "finite": ("none", "none", "none", True, True, False, "any", "saturate", 0, 1, False),
    "e8m0": ("none", "top_code", "top_code", False, False, True, "unsigned", "nan", 0, 1, False),
    "p3109": ("top", "negzero", "top_code", False, True, False, "any", "inf", 1, 1, True),
    "p3109_finite": ("none", "negzero", "top_code", False, True, False, "any", "saturate", 1, 1,
                     True),
}

#: The special-value families a :class:`FloatFormat` may have.
FAMILIES = tuple(_FAMILY_TABLE)
#: The family of a float written without a family suffix (``e5m2``, ``FloatFormat(5, 2)``).
DEFAULT_FAMILY = "ieee"

_ENCODINGS = {
    (fam, signed): Encoding(fam, inf, nan_s if signed else nan_u, negz, zero, alln, sign, ovf,
                            shift, emin_bits, p3)
    for fam, (inf, nan_s, nan_u, negz, zero, alln, sign, ovf, shift, emin_bits, p3)
    in _FAMILY_TABLE.items() for signed in (True, False)
}


def encoding(family: str, signed: bool) -> Encoding:
    """The :class:`Encoding` of ``family`` (one of :data:`FAMILIES`) with or without a sign.

    >>> from fpsim.formats import encoding
    >>> encoding("p3109", signed=True).nan, encoding("p3109", signed=False).nan
    ('negzero', 'top_code')
    """
    return _ENCODINGS[family, bool(signed)]
