"""Number-format descriptors: small, frozen, hashable dataclasses.

Every format answers the same questions (``bits``, ``max``, ``min_normal``,
``min_subnormal``, ``eps``, ``values()``, ``name``) and is read back from its name
by :func:`parse`.  Formats hold no behaviour beyond describing themselves: rounding
lives in :mod:`fpsim.rounding`, the loops in :mod:`fpsim.kernels`.

Families of floating-point special values (SPEC §1.1):

=============  ==========  ====================================  ==============
family         infinities  NaN codes                             negative zero
=============  ==========  ====================================  ==============
``ieee``       yes         top exponent, mantissa != 0           yes
``fn``         no          only S.11..1.11..1                    yes
``fnuz``       no          only the negative-zero code 1.00..0   no
``finite``     no          none                                  yes
``e8m0``       no          all-ones code; exponent field 0 is    no zero at all
                           a normal value
``p3109``      yes         the negative-zero code (signed) or    no
                           the top code (unsigned)
``p3109_finite`` no        as ``p3109``                          no
=============  ==========  ====================================  ==============
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Union

import numpy as np

__all__ = [
    "Format",
    "FloatFormat",
    "IntFormat",
    "FixedFormat",
    "DIntFormat",
    "CodebookFormat",
    "FAMILIES",
    "parse",
    "as_format",
    "list_formats",
    "p3109",
]

#: The special-value families a :class:`FloatFormat` may have.
FAMILIES = ("ieee", "fn", "fnuz", "finite", "e8m0", "p3109", "p3109_finite")

#: Formats wider than this have no ``values()`` table (it would not fit in memory).
MAX_TABLE_BITS = 16

# Every value must be exactly representable in float64, the carrier type.
_F64_MIN_EXP = -1074  # exponent of the smallest float64 subnormal
_F64_MAX_EXP = 1023  # exponent of the largest float64 binade


def _pow2(e: int) -> float:
    return math.ldexp(1.0, e)


def check_flag(value, name: str) -> bool:
    """``value`` if it is a real bool (``True``/``False`` or a numpy bool), else ``TypeError``.

    Flags are never read by truthiness: ``"False"``, ``"no"`` or ``0`` would silently mean
    the opposite of what was written, or something else.

    >>> from fpsim.formats import check_flag
    >>> check_flag(False, "subnormals")
    False
    >>> check_flag("no", "signed")
    Traceback (most recent call last):
    ...
    TypeError: signed='no' is not a bool; pass True or False
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name}={value!r} is not a bool; pass True or False")


class Format:
    """Base class of all formats (for ``isinstance`` checks and shared helpers).

    >>> import fpsim
    >>> all(isinstance(fpsim.parse(n), fpsim.Format) for n in ("e4m3", "int8", "nf4"))
    True
    """

    bits: int

    # -- shared derived API -------------------------------------------------------------
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
        if getattr(self, "subnormals", True) is False:  # FTZ: subnormal codes are never produced
            v = v[(v == 0) | (np.abs(v) >= self.min_normal)]
        return np.unique(v) + 0.0  # sorts, merges +0/-0 (and makes the zero +0)

    def code_table(self) -> np.ndarray:
        """float64 value of every code ``0 .. 2**bits - 1`` (NaN for NaN codes).

        >>> import fpsim
        >>> fpsim.parse("e2m1").code_table()[:4].tolist()
        [0.0, 0.5, 1.0, 1.5]
        """
        if self.bits > MAX_TABLE_BITS:
            raise ValueError(f"{self.name}: code tables exist only for formats of at most 16 bits")
        return _code_table(self)

    def __str__(self) -> str:
        return self.name


def _code_table(fmt: "Format") -> np.ndarray:
    # Imported here: rounding imports formats, not the other way round.
    from .rounding import decode

    codes = np.arange(2**fmt.bits, dtype=np.uint64)
    if getattr(fmt, "narrow", False):  # the code of -2**(N-1) is unused: NaN in the table
        t = np.full(codes.size, np.nan)
        used = codes != 2 ** (fmt.bits - 1)
        t[used] = decode(codes[used], fmt)
    else:
        t = decode(codes, fmt)
    t.setflags(write=False)
    return t


# ---------------------------------------------------------------------------------------
# Floating point
# ---------------------------------------------------------------------------------------

# Canonical short names of well-known floats: name -> (E, M, family, bias, signed)
_FLOAT_ALIASES: dict[str, tuple] = {
    "fp64": (11, 52, "ieee", None, True),
    "fp32": (8, 23, "ieee", None, True),
    "tf32": (8, 10, "ieee", None, True),
    "bf16": (8, 7, "ieee", None, True),
    "fp16": (5, 10, "ieee", None, True),
    "e5m2": (5, 2, "ieee", None, True),
    "e4m3": (4, 3, "fn", None, True),
    "e3m4": (3, 4, "ieee", None, True),
    "e2m3": (2, 3, "finite", None, True),
    "e3m2": (3, 2, "finite", None, True),
    "e2m1": (2, 1, "finite", None, True),
    "e8m0": (8, 0, "e8m0", None, False),
}
# Alternative spellings accepted by parse (never produced as a canonical name).
_SYNONYMS = {
    "float64": "fp64", "binary64": "fp64", "double": "fp64",
    "float32": "fp32", "binary32": "fp32", "single": "fp32",
    "float16": "fp16", "binary16": "fp16", "half": "fp16",
    "bfloat16": "bf16", "tensorfloat32": "tf32",
    "e4m3fn": "e4m3", "fp8_e4m3": "e4m3", "fp8_e5m2": "e5m2", "float8_e4m3fn": "e4m3",
    "float8_e5m2": "e5m2", "float8_e4m3fnuz": "e4m3fnuz", "float8_e5m2fnuz": "e5m2fnuz",
    "float8_e4m3b11fnuz": "e4m3b11fnuz", "float8_e3m4": "e3m4",
    "fp6_e2m3": "e2m3", "fp6_e3m2": "e3m2", "fp4": "e2m1", "fp4_e2m1": "e2m1",
    "e2m3fn": "e2m3", "e3m2fn": "e3m2", "e2m1fn": "e2m1", "float4_e2m1fn": "e2m1",
    "float6_e2m3fn": "e2m3", "float6_e3m2fn": "e3m2", "e8m0fnu": "e8m0",
    "float8_e8m0fnu": "e8m0", "ue8m0": "e8m0",
}


@dataclass(frozen=True)
class FloatFormat(Format):
    """A binary floating-point format ``eXmY`` (SPEC §1.1).

    Parameters
    ----------
    exp_bits : int
        Exponent bits, 1..11.
    man_bits : int
        Stored mantissa (fraction) bits, 0..52.
    bias : int, optional
        Exponent bias. Default ``2**(E-1)-1`` (``2**(E-1)`` for ``fnuz``; ``2**(E-1)``
        of the P3109 width rule for ``p3109``).
    family : str
        Special-value family, one of :data:`FAMILIES`.
    subnormals : bool
        ``False`` flushes subnormal results to zero (FTZ).
    signed : bool
        ``False`` drops the sign bit (e.g. E8M0, unsigned P3109).

    Examples
    --------
    >>> import fpsim
    >>> f = fpsim.FloatFormat(4, 3, family="fn")
    >>> f.name, f.max, f.min_subnormal
    ('e4m3', 448.0, 0.001953125)
    >>> fpsim.parse(f.name) == f
    True
    """

    exp_bits: int
    man_bits: int
    bias: Union[int, None] = None
    family: str = "ieee"
    subnormals: bool = True
    signed: bool = True

    def __post_init__(self):
        check_flag(self.subnormals, "subnormals")
        check_flag(self.signed, "signed")
        E, M = self.exp_bits, self.man_bits
        for nm, v in (("exp_bits", E), ("man_bits", M)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{nm} must be an int, got {type(v).__name__}")
        if not 1 <= E <= 11:
            raise ValueError(
                f"exp_bits={E} is not allowed: floats need 1 <= exp_bits <= 11 "
                "(float64 is the carrier type)"
            )
        if not 0 <= M <= 52:
            raise ValueError(
                f"man_bits={M} is not allowed: floats need 0 <= man_bits <= 52 "
                "(float64 is the carrier type)"
            )
        if self.family not in FAMILIES:
            close = difflib.get_close_matches(str(self.family), FAMILIES, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"family={self.family!r} is unknown; allowed: {', '.join(FAMILIES)}.{hint}")
        if self.family == "fnuz" and not self.signed:
            raise ValueError("family 'fnuz' needs a sign bit (its NaN is the negative-zero code)")
        if self.family == "e8m0" and (M != 0 or self.signed):
            raise ValueError("family 'e8m0' is for unsigned formats with man_bits=0 (power-of-two scales)")
        if self.family == "ieee" and E < 2:
            raise ValueError("family 'ieee' needs exp_bits >= 2 (the top exponent is reserved for inf/NaN)")
        if self.bias is None:
            object.__setattr__(self, "bias", self._default_bias())
        elif isinstance(self.bias, bool) or not isinstance(self.bias, (int, np.integer)):
            raise TypeError(f"bias must be an int or None, got {type(self.bias).__name__}")
        object.__setattr__(self, "bias", int(self.bias))
        object.__setattr__(self, "exp_bits", int(E))
        object.__setattr__(self, "man_bits", int(M))
        object.__setattr__(self, "subnormals", check_flag(self.subnormals, "subnormals"))
        object.__setattr__(self, "signed", check_flag(self.signed, "signed"))
        if self._max_code_mag() < 1 or (self.family == "e8m0" and self._max_code_mag() < 0):
            raise ValueError(f"{self!r} has no positive finite value")
        # All values must be float64 numbers (exactly).
        lo = self.emin - M
        hi = self._decode_mag_exponent(self._max_code_mag())
        if lo < _F64_MIN_EXP or hi > _F64_MAX_EXP:
            raise ValueError(
                f"bias={self.bias} puts the range of e{E}m{M} outside float64 "
                f"(smallest value 2^{lo}, largest binade 2^{hi}); float64 is the carrier type"
            )

    # -- structure ------------------------------------------------------------------------
    def _default_bias(self) -> int:
        E = self.exp_bits
        if self.family == "fnuz":
            return 2 ** (E - 1)
        if self.family in ("p3109", "p3109_finite"):
            # P3109: bias 2^(K-P-1) signed, 2^(K-P) unsigned, K-P = E (signed) or E-1.
            return 2 ** (E - 1)
        return 2 ** (E - 1) - 1

    @property
    def bits(self) -> int:
        """Width of a code: sign (if signed) + exponent + mantissa bits.

        >>> import fpsim
        >>> fpsim.parse("e4m3").bits, fpsim.parse("bf16").bits
        (8, 16)
        """
        return int(self.signed) + self.exp_bits + self.man_bits

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number.

        >>> import fpsim
        >>> fpsim.parse("e4m3").emin, fpsim.parse("e5m2").emin
        (-6, -14)
        """
        return -self.bias if self.family == "e8m0" else 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest finite number.

        >>> import fpsim
        >>> fpsim.parse("e4m3").emax, fpsim.parse("e5m2").emax
        (8, 15)
        """
        return self._decode_mag_exponent(self._max_code_mag())

    @property
    def has_inf(self) -> bool:
        """Whether the format has infinities.

        >>> import fpsim
        >>> fpsim.parse("e5m2").has_inf, fpsim.parse("e4m3").has_inf
        (True, False)
        """
        return self.family in ("ieee", "p3109")

    @property
    def has_nan(self) -> bool:
        """Whether the format has a NaN code.

        >>> import fpsim
        >>> fpsim.parse("e4m3").has_nan, fpsim.parse("e2m1").has_nan
        (True, False)
        """
        if self.family == "ieee":
            return self.man_bits > 0
        return self.family not in ("finite",)

    @property
    def has_negzero(self) -> bool:
        """Whether -0 has its own code (not in ``fnuz``, P3109 or unsigned formats).

        >>> import fpsim
        >>> fpsim.parse("e4m3").has_negzero, fpsim.parse("e4m3fnuz").has_negzero
        (True, False)
        """
        return self.signed and self.family in ("ieee", "fn", "finite")

    @property
    def has_zero(self) -> bool:
        """Whether zero is a value (E8M0 has none).

        >>> import fpsim
        >>> fpsim.parse("e4m3").has_zero, fpsim.parse("e8m0").has_zero
        (True, False)
        """
        return self.family != "e8m0"

    def _reserved_top(self) -> int:
        """How many of the top magnitude codes are not finite numbers."""
        f = self.family
        if f == "ieee":
            return 2**self.man_bits
        if f in ("fn", "e8m0"):
            return 1
        if f == "p3109":
            return 1 if self.signed else 2  # +inf (and NaN for unsigned)
        if f == "p3109_finite":
            return 0 if self.signed else 1
        return 0

    def _max_code_mag(self) -> int:
        return 2 ** (self.exp_bits + self.man_bits) - 1 - self._reserved_top()

    def _decode_mag_exponent(self, c: int) -> int:
        ef = c >> self.man_bits
        if ef == 0 and self.family != "e8m0":
            return self.emin
        return ef - self.bias if self.family != "e8m0" else ef - self.bias

    def _decode_mag(self, c: int) -> Fraction:
        """Exact value of a magnitude code (no sign, finite codes only)."""
        M = self.man_bits
        ef, mant = c >> M, c & (2**M - 1)
        if ef == 0 and self.family != "e8m0":
            return Fraction(mant) * Fraction(2) ** (self.emin - M)
        return Fraction(2**M + mant) * Fraction(2) ** (ef - self.bias - M)

    # -- public properties ------------------------------------------------------------------
    @property
    def max(self) -> float:
        """Largest finite value.

        >>> import fpsim
        >>> fpsim.parse("e4m3").max, fpsim.parse("e5m2").max
        (448.0, 57344.0)
        """
        return float(self._decode_mag(self._max_code_mag()))

    @property
    def min_normal(self) -> float:
        """Smallest positive normal value.

        >>> import fpsim
        >>> fpsim.parse("e4m3").min_normal
        0.015625
        """
        return _pow2(self.emin)

    @property
    def min_subnormal(self) -> float:
        """Smallest positive value (equals ``min_normal`` without subnormals).

        >>> import fpsim
        >>> fpsim.parse("e4m3").min_subnormal, fpsim.parse("e4m3_ftz").min_subnormal
        (0.001953125, 0.015625)
        """
        if self.subnormals and self.man_bits > 0 and self.family != "e8m0":
            return _pow2(self.emin - self.man_bits)
        return self.min_normal

    @property
    def eps(self) -> float:
        """Gap between 1 and the next larger value (``2**-man_bits``).

        >>> import fpsim
        >>> fpsim.parse("e4m3").eps, fpsim.parse("bf16").eps
        (0.125, 0.0078125)
        """
        return _pow2(-self.man_bits)

    @property
    def default_overflow(self) -> str:
        """Overflow policy used when ``quantize`` is given ``overflow=None``.

        ``ieee``/``p3109``: ``"inf"``; ``fn``, ``finite``, ``p3109_finite``: ``"saturate"``
        (as torch's float8 cast and the OCP MX spec); ``fnuz`` and ``e8m0``: ``"nan"``.

        >>> import fpsim
        >>> [fpsim.parse(n).default_overflow for n in ("e5m2", "e4m3", "e4m3fnuz")]
        ['inf', 'saturate', 'nan']
        """
        return {"ieee": "inf", "p3109": "inf", "fnuz": "nan", "e8m0": "nan"}.get(self.family, "saturate")

    @property
    def kind(self) -> str:
        """``"float"`` (``"int"``, ``"fixed"``, ``"codebook"``, ``"dint"`` for the others).

        >>> import fpsim
        >>> fpsim.parse("e4m3").kind, fpsim.parse("int8").kind
        ('float', 'int')
        """
        return "float"

    @property
    def name(self) -> str:
        """Canonical name; ``fpsim.parse(fmt.name) == fmt``.

        >>> import fpsim
        >>> fpsim.FloatFormat(4, 3, family="fnuz").name, fpsim.FloatFormat(5, 2).name
        ('e4m3fnuz', 'e5m2')
        """
        return _float_name(self)

    def __repr__(self) -> str:
        args = [str(self.exp_bits), str(self.man_bits)]
        if self.bias != self._default_bias():
            args.append(f"bias={self.bias}")
        if self.family != "ieee":
            args.append(f"family={self.family!r}")
        if not self.subnormals:
            args.append("subnormals=False")
        if not self.signed:
            args.append("signed=False")
        return f"FloatFormat({', '.join(args)})"

    def replace(self, **changes) -> "FloatFormat":
        """Copy with some fields changed.

        >>> import fpsim
        >>> fpsim.parse("fp16").replace(subnormals=False).name
        'fp16_ftz'
        """
        d = dict(exp_bits=self.exp_bits, man_bits=self.man_bits, bias=self.bias,
                 family=self.family, subnormals=self.subnormals, signed=self.signed)
        if "exp_bits" in changes or "family" in changes:
            d["bias"] = None
        d.update(changes)
        return FloatFormat(**d)


def _float_name(f: FloatFormat) -> str:
    base = f.replace(subnormals=True) if not f.subnormals else f
    suffix = "" if f.subnormals else "_ftz"
    for alias, (E, M, fam, bias, signed) in _FLOAT_ALIASES.items():
        if (E, M, fam, signed) == (f.exp_bits, f.man_bits, f.family, f.signed) and (
            base.bias == FloatFormat(E, M, family=fam, signed=signed).bias
        ):
            return alias + suffix
    if f.family in ("p3109", "p3109_finite"):
        P = f.man_bits + 1
        K = f.bits
        if f.bias == FloatFormat(f.exp_bits, f.man_bits, family=f.family, signed=f.signed)._default_bias() and (
            _p3109_bias(K, P, f.signed) == f.bias
        ):
            tag = ("s" if f.signed else "u") + ("e" if f.family == "p3109" else "f")
            return f"p3109_k{K}p{P}" + ("" if tag == "se" else tag) + suffix
    name = f"{'' if f.signed or f.family == 'e8m0' else 'u'}e{f.exp_bits}m{f.man_bits}"
    default_bias = FloatFormat(f.exp_bits, f.man_bits, family=f.family, signed=f.signed)._default_bias()
    if f.bias != default_bias:
        name += f"b{f.bias}"
    fam = f.family
    bare_is_alias = f"e{f.exp_bits}m{f.man_bits}" in _FLOAT_ALIASES
    if fam != "ieee" or bare_is_alias or f.bias != default_bias:
        name += fam if fam != "ieee" or bare_is_alias else ""
    if name in _SYNONYMS and f.bias == default_bias:  # e.g. 'e2m1fn' reads as ml_dtypes' e2m1
        name = name.replace(f"m{f.man_bits}", f"m{f.man_bits}b{f.bias}", 1)
    return name + suffix


def _p3109_bias(K: int, P: int, signed: bool) -> int:
    return 2 ** (K - P - 1) if signed else 2 ** (K - P)


def p3109(k: int, precision: int, *, signed: bool = True, domain: str = "extended") -> FloatFormat:
    """IEEE P3109 binary format ``binary{k}p{precision}`` (SPEC §1.1).

    Bias ``2**(k-p-1)`` (``2**(k-p)`` unsigned), one NaN at the negative-zero code
    (the top code if unsigned), and ±inf at the top codes in the ``"extended"`` domain.

    >>> import fpsim
    >>> f = fpsim.p3109(8, 3)
    >>> f.name, f.max
    ('p3109_k8p3', 49152.0)
    """
    if domain not in ("extended", "finite"):
        raise ValueError(f"domain={domain!r}: allowed 'extended' or 'finite'")
    if not (isinstance(k, int) and isinstance(precision, int)) or k < 2 or not 1 <= precision <= k:
        raise ValueError(f"P3109 needs integers k >= 2 and 1 <= precision <= k, got k={k}, precision={precision}")
    E = k - precision + (0 if signed else 1)
    if E < 1:
        raise ValueError(f"p3109 k={k} precision={precision} leaves no exponent bits")
    fam = "p3109" if domain == "extended" else "p3109_finite"
    return FloatFormat(E, precision - 1, bias=_p3109_bias(k, precision, signed), family=fam, signed=signed)


# ---------------------------------------------------------------------------------------
# Integers and fixed point
# ---------------------------------------------------------------------------------------

_MAX_INT_BITS = 53  # float64 carries every such integer exactly


@dataclass(frozen=True)
class FixedFormat(Format):
    """Fixed point: ``bits``-bit two's complement integers ``k`` scaled by ``2**-frac_bits``.

    >>> import fpsim
    >>> f = fpsim.FixedFormat(8, 4)
    >>> f.name, f.max, f.min_subnormal
    ('fixed8f4', 7.9375, 0.0625)
    """

    bits: int
    frac_bits: int
    signed: bool = True
    narrow: bool = False

    def __post_init__(self):
        _check_int_params(self.bits, self.signed, self.narrow)
        if isinstance(self.frac_bits, bool) or not isinstance(self.frac_bits, (int, np.integer)):
            raise TypeError(f"frac_bits must be an int, got {type(self.frac_bits).__name__}")
        if not -900 <= self.frac_bits <= 900:
            raise ValueError(f"frac_bits={self.frac_bits} must lie in -900..900 (float64 range)")
        object.__setattr__(self, "frac_bits", int(self.frac_bits))
        object.__setattr__(self, "bits", int(self.bits))
        object.__setattr__(self, "signed", bool(self.signed))
        object.__setattr__(self, "narrow", bool(self.narrow))

    kind = "fixed"

    @property
    def int_max(self) -> int:
        """Largest integer ``k`` (the value is ``k * 2**-frac_bits``).

        >>> import fpsim
        >>> fpsim.FixedFormat(8, 4).int_max
        127
        """
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def int_min(self) -> int:
        """Smallest integer ``k`` (0 if unsigned, ``-(2**(N-1) - 1)`` if narrow).

        >>> import fpsim
        >>> fpsim.FixedFormat(8, 4).int_min, fpsim.IntFormat(8, narrow=True).int_min
        (-128, -127)
        """
        if not self.signed:
            return 0
        return -(2 ** (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def max(self) -> float:
        """Largest value.

        >>> import fpsim
        >>> fpsim.FixedFormat(8, 4).max
        7.9375
        """
        return self.int_max * _pow2(-self.frac_bits)

    @property
    def min(self) -> float:
        """Most negative value (0 if unsigned).

        >>> import fpsim
        >>> fpsim.FixedFormat(8, 4).min
        -8.0
        """
        return self.int_min * _pow2(-self.frac_bits)

    @property
    def min_normal(self) -> float:
        """The quantum ``2**-frac_bits`` (also ``min_subnormal`` and ``eps``).

        >>> import fpsim
        >>> fpsim.FixedFormat(8, 4).min_normal
        0.0625
        """
        return _pow2(-self.frac_bits)

    min_subnormal = min_normal
    eps = min_normal

    @property
    def has_nan(self) -> bool:
        """Integers and fixed point have no NaN (nor inf, nor -0).

        >>> import fpsim
        >>> fpsim.parse("int8").has_nan
        False
        """
        return False

    has_inf = has_negzero = has_nan
    has_zero = True
    subnormals = True
    default_overflow = "saturate"

    @property
    def name(self) -> str:
        """Canonical name ``[u]fixed{N}f{F}[_narrow]``.

        >>> import fpsim
        >>> fpsim.FixedFormat(8, 4).name
        'fixed8f4'
        """
        n = f"{'' if self.signed else 'u'}fixed{self.bits}f{self.frac_bits}"
        return n + ("_narrow" if self.narrow else "")

    def __repr__(self) -> str:
        extra = ("" if self.signed else ", signed=False") + (", narrow=True" if self.narrow else "")
        return f"FixedFormat({self.bits}, {self.frac_bits}{extra})"


def _check_int_params(bits, signed, narrow):
    check_flag(signed, "signed")
    check_flag(narrow, "narrow")
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"bits must be an int, got {type(bits).__name__}")
    lo = 2 if signed else 1
    if not lo <= bits <= _MAX_INT_BITS:
        raise ValueError(
            f"bits={bits} is not allowed: {'signed' if signed else 'unsigned'} integers need "
            f"{lo} <= bits <= {_MAX_INT_BITS} (exact in float64)"
        )
    if narrow and not signed:
        raise ValueError("narrow=True only applies to signed integers")


@dataclass(frozen=True)
class IntFormat(FixedFormat):
    """Integer format ``intN`` / ``uintN`` (two's complement; ``narrow`` drops -2**(N-1)).

    >>> import fpsim
    >>> fpsim.IntFormat(4).values().tolist()[:3], fpsim.parse("int4").max
    ([-8.0, -7.0, -6.0], 7.0)
    """

    frac_bits: int = 0

    def __init__(self, bits: int, *, signed: bool = True, narrow: bool = False):
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "frac_bits", 0)
        object.__setattr__(self, "signed", signed)
        object.__setattr__(self, "narrow", narrow)
        self.__post_init__()

    kind = "int"

    @property
    def name(self) -> str:
        """Canonical name ``[u]int{N}[_narrow]``.

        >>> import fpsim
        >>> fpsim.IntFormat(4, signed=False).name, fpsim.IntFormat(8, narrow=True).name
        ('uint4', 'int8_narrow')
        """
        return f"{'' if self.signed else 'u'}int{self.bits}" + ("_narrow" if self.narrow else "")

    def __repr__(self) -> str:
        extra = ("" if self.signed else ", signed=False") + (", narrow=True" if self.narrow else "")
        return f"IntFormat({self.bits}{extra})"


# ---------------------------------------------------------------------------------------
# Table formats: codebooks and dINT
# ---------------------------------------------------------------------------------------

#: NF4 (QLoRA, Dettmers et al. 2023): the 16 float32 values of the normal-float codebook.
NF4_VALUES = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)
_CODEBOOKS = {"nf4": NF4_VALUES}


class _TableFormat(Format):
    """A format given by a value per code (codebooks, dINT)."""

    @property
    def max(self) -> float:
        return float(self.sorted_values[-1])

    @property
    def min_subnormal(self) -> float:
        v = self.sorted_values
        pos = v[v > 0]
        return float(pos[0]) if pos.size else float("nan")

    min_normal = min_subnormal

    @property
    def eps(self) -> float:
        v = self.sorted_values
        if 1.0 in v:
            i = int(np.searchsorted(v, 1.0))
            if i + 1 < v.size:
                return float(v[i + 1] - 1.0)
        return float("nan")

    has_inf = has_nan = has_negzero = False
    subnormals = True
    default_overflow = "saturate"

    @property
    def has_zero(self) -> bool:
        return bool(np.any(self.sorted_values == 0))

    def values(self) -> np.ndarray:
        return self.sorted_values.copy()


@dataclass(frozen=True)
class CodebookFormat(_TableFormat):
    """A lookup-table format: any sorted set of at most ``2**bits`` finite values.

    Code ``i`` is the ``i``-th smallest value. Round-to-nearest ties go to the even code.

    >>> import fpsim
    >>> cb = fpsim.CodebookFormat([-1.0, -0.5, 0.0, 0.5, 1.0])
    >>> cb.bits, cb.name
    (3, 'codebook[-1.0,-0.5,0.0,0.5,1.0]')
    >>> fpsim.parse("nf4").max
    1.0
    """

    values_: tuple
    label: Union[str, None] = field(default=None, compare=False)

    def __init__(self, values, name: Union[str, None] = None):
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise TypeError(f"codebook values must be real numbers: {e}") from None
        if arr.ndim != 1 or arr.size < 2:
            raise ValueError("a codebook needs a 1-D sequence of at least 2 values")
        if not np.all(np.isfinite(arr)):
            raise ValueError("codebook values must be finite (no NaN or inf)")
        s = np.sort(arr)
        if np.any(np.diff(s) == 0):
            dup = s[:-1][np.diff(s) == 0]
            raise ValueError(f"codebook values must be distinct; duplicated: {sorted(set(dup.tolist()))}")
        object.__setattr__(self, "values_", tuple(float(v) + 0.0 for v in s))
        object.__setattr__(self, "label", name)

    kind = "codebook"

    @property
    def bits(self) -> int:
        """Bits of a code: enough for every value.

        >>> import fpsim
        >>> fpsim.CodebookFormat([-1.0, -0.5, 0.0, 0.5, 1.0]).bits
        3
        """
        return max(1, math.ceil(math.log2(len(self.values_))))

    @cached_property
    def sorted_values(self) -> np.ndarray:
        """The values, ascending (read-only float64 array).

        >>> import fpsim
        >>> fpsim.CodebookFormat([1.0, -1.0, 0.0]).sorted_values.tolist()
        [-1.0, 0.0, 1.0]
        """
        a = np.array(self.values_, dtype=np.float64)
        a.setflags(write=False)
        return a

    @cached_property
    def code_values(self) -> np.ndarray:
        """Value of each code (codes beyond the table are invalid → NaN).

        >>> import fpsim
        >>> fpsim.CodebookFormat([-1.0, 0.0, 1.0]).code_values.tolist()
        [-1.0, 0.0, 1.0, nan]
        """
        t = np.full(2**self.bits, np.nan)
        t[: len(self.values_)] = self.values_
        t.setflags(write=False)
        return t

    @cached_property
    def sorted_codes(self) -> np.ndarray:
        """The code of each sorted value (code ``i`` is the ``i``-th smallest value).

        >>> import fpsim
        >>> fpsim.CodebookFormat([-1.0, 0.0, 1.0]).sorted_codes.tolist()
        [0, 1, 2]
        """
        return np.arange(len(self.values_), dtype=np.int64)

    @property
    def name(self) -> str:
        """``nf4`` etc. for the built-in codebooks, else ``codebook[v0,v1,...]``.

        >>> import fpsim
        >>> fpsim.CodebookFormat([-1.0, 0.0, 1.0]).name, fpsim.parse("nf4").name
        ('codebook[-1.0,0.0,1.0]', 'nf4')
        """
        for nm, vals in _CODEBOOKS.items():
            if tuple(np.sort(np.array(vals, dtype=np.float64)).tolist()) == self.values_:
                return nm
        return "codebook[" + ",".join(repr(v) for v in self.values_) + "]"

    def __repr__(self) -> str:
        lab = f", name={self.label!r}" if self.label else ""
        return f"CodebookFormat({list(self.values_)!r}{lab})"


@dataclass(frozen=True)
class DIntFormat(_TableFormat):
    """dINT: sign-magnitude integer whose smallest magnitude is a special value ``s``.

    SPEC §1.3 (reading): magnitude code 0 → 0, 1 → ``special``, k ≥ 2 → k − 1.
    So ``dint4`` = {0, ±s, ±1, …, ±6}. The code map follows that reading of the EMNLP 2023
    paper (its exact table was not available); ``special`` is a parameter.

    >>> import fpsim
    >>> fpsim.DIntFormat(4).values().tolist()
    [-6.0, -5.0, -4.0, -3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    """

    bits: int = 4
    special: float = 0.5

    def __post_init__(self):
        if isinstance(self.bits, bool) or not isinstance(self.bits, (int, np.integer)):
            raise TypeError("bits must be an int")
        if not 2 <= self.bits <= 16:
            raise ValueError(f"dINT bits={self.bits}: allowed 2..16")
        if not (isinstance(self.special, (int, float, np.floating)) and 0 < float(self.special) < 1):
            raise ValueError(f"dINT special={self.special!r}: must satisfy 0 < special < 1")
        object.__setattr__(self, "special", float(self.special))
        object.__setattr__(self, "bits", int(self.bits))

    kind = "dint"

    @cached_property
    def code_values(self) -> np.ndarray:
        """Value of each code: sign-magnitude, magnitude code 1 is ``special``.

        >>> import fpsim
        >>> fpsim.DIntFormat(3).code_values.tolist()
        [0.0, 0.5, 1.0, 2.0, -0.0, -0.5, -1.0, -2.0]
        """
        n = 2 ** (self.bits - 1)
        mag = np.arange(n, dtype=np.float64) - 1.0
        mag[0], mag[1] = 0.0, self.special
        t = np.concatenate([mag, -mag])
        t[n] = -0.0
        t.setflags(write=False)
        return t

    @cached_property
    def sorted_values(self) -> np.ndarray:
        """The distinct values, ascending (one zero).

        >>> import fpsim
        >>> fpsim.DIntFormat(3).sorted_values.tolist()
        [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0]
        """
        a = np.unique(self.code_values) + 0.0
        a.setflags(write=False)
        return a

    @cached_property
    def sorted_codes(self) -> np.ndarray:
        """The code of each sorted value (+0 uses code 0).

        >>> import fpsim
        >>> fpsim.DIntFormat(3).sorted_codes.tolist()
        [7, 6, 5, 0, 1, 2, 3]
        """
        n = 2 ** (self.bits - 1)
        codes = np.empty(self.sorted_values.size, dtype=np.int64)
        for i, v in enumerate(self.sorted_values):
            codes[i] = int(np.flatnonzero(self.code_values == v)[0])
        assert codes[np.searchsorted(self.sorted_values, 0.0)] == 0 and n > 0
        return codes

    @property
    def name(self) -> str:
        """Canonical name ``dint{N}`` (``dint{N}s{special}`` if special != 0.5).

        >>> import fpsim
        >>> fpsim.DIntFormat(4).name, fpsim.DIntFormat(4, 0.25).name
        ('dint4', 'dint4s0.25')
        """
        return f"dint{self.bits}" + ("" if self.special == 0.5 else f"s{self.special!r}")

    def __repr__(self) -> str:
        return f"DIntFormat({self.bits}" + ("" if self.special == 0.5 else f", special={self.special!r}") + ")"


# ---------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------

_FLOAT_RE = re.compile(r"^(u)?e(\d+)m(\d+)(?:b(-?\d+))?(ieee|fnuz|fn|finite|e8m0|p3109_finite|p3109)?(_ftz)?$")
_P3109_RE = re.compile(r"^p3109_k(\d+)p(\d+)(se|sf|ue|uf)?(_ftz)?$")
_INT_RE = re.compile(r"^(u)?int(\d+)(_narrow)?$")
_FIXED_RE = re.compile(r"^(u)?fixed(\d+)f(-?\d+)(_narrow)?$")
_DINT_RE = re.compile(r"^dint(\d+)(?:s([0-9.eE+-]+))?$")
_CODEBOOK_RE = re.compile(r"^codebook\[(.*)\]$")

_EXTRA_NAMES = ("e4m3fnuz", "e5m2fnuz", "e4m3b11fnuz", "int8", "int4", "uint8", "uint4", "dint4", "nf4",
                "p3109_k8p3", "p3109_k8p4")


def list_formats() -> list:
    """Canonical names of the well-known formats (what ``fpsim formats`` prints).

    >>> import fpsim
    >>> "e4m3" in fpsim.list_formats()
    True
    """
    return list(_FLOAT_ALIASES) + list(_EXTRA_NAMES)


_PARSE_CACHE: dict = {}

#: Names defined by higher layers (``fpsim.block`` registers ``mxfp4``, ``nvfp4``...):
#: prefix -> factory(lower-case name) -> Format. formats.py imports none of those layers.
_NAME_HOOKS: dict = {}


def read_int_option(name: str, option: str, text: str) -> int:
    """The int written for ``option`` in the format name ``name``, or a ValueError naming both.

    >>> from fpsim.formats import read_int_option
    >>> read_int_option("mxfp4[axis=0]", "axis", "0")
    0
    >>> read_int_option("mxfp4[axis=foo]", "axis", "foo")
    Traceback (most recent call last):
    ...
    ValueError: 'mxfp4[axis=foo]': axis='foo' is not an int (write e.g. axis=0)
    """
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name!r}: {option}={text!r} is not an int (write e.g. "
                         f"{option.replace(' ', '_')}=0)") from None


def register_name(prefix: str, factory) -> None:
    """Let :func:`parse` read names starting with ``prefix`` through ``factory(name)``.

    >>> import fpsim
    >>> "mxfp4" in fpsim.formats._NAME_HOOKS  # registered by fpsim.block
    True
    """
    _NAME_HOOKS[prefix.lower()] = factory


def parse(name: str) -> Format:
    """Read a format from its name (``parse(fmt.name) == fmt`` for every format).

    Accepts the names of :func:`list_formats`, ``e{E}m{M}`` with an optional bias
    ``b{bias}``, family suffix (``fn``, ``fnuz``, ``finite``, ``ieee``, ``p3109``...),
    ``u`` prefix (unsigned) and ``_ftz`` suffix (no subnormals);
    ``p3109_k{K}p{P}[se|sf|ue|uf]``; ``int{N}``, ``uint{N}``, ``int{N}_narrow``;
    ``fixed{N}f{F}``; ``dint{N}``; ``nf4``; ``codebook[v0,v1,...]``. Case-insensitive.

    >>> import fpsim
    >>> fpsim.parse("e4m3fnuz")
    FloatFormat(4, 3, family='fnuz')
    >>> fpsim.parse("e5m2b11")
    FloatFormat(5, 2, bias=11)
    """
    if isinstance(name, Format):
        return name
    if not isinstance(name, str):
        raise TypeError(f"a format name must be a str, got {type(name).__name__}")
    key = re.sub(r"-(?![0-9.])", "_", name.strip().lower())  # keep minus signs of numbers
    hit = _PARSE_CACHE.get(key)
    if hit is not None:
        return hit
    fmt = _parse_uncached(key, name)
    if len(_PARSE_CACHE) < 4096:
        _PARSE_CACHE[key] = fmt
    return fmt


def _parse_uncached(key: str, original: str) -> Format:
    key = _SYNONYMS.get(key, key)
    for prefix, factory in _NAME_HOOKS.items():
        if key.startswith(prefix):
            return factory(key)
    ftz = key.endswith("_ftz") and not key.startswith(("int", "uint", "fixed", "ufixed"))
    base = key[:-4] if ftz else key
    if base in _FLOAT_ALIASES:
        E, M, fam, bias, signed = _FLOAT_ALIASES[base]
        return FloatFormat(E, M, bias=bias, family=fam, signed=signed, subnormals=not ftz)
    if base in _CODEBOOKS and not ftz:
        return CodebookFormat(_CODEBOOKS[base])
    m = _FLOAT_RE.match(key)
    if m:
        u, E, M, bias, fam, ftz_s = m.groups()
        E, M = int(E), int(M)
        bare = f"e{E}m{M}"
        if fam is None:
            fam = _FLOAT_ALIASES[bare][2] if bare in _FLOAT_ALIASES and bias is None else "ieee"
            if bare in _FLOAT_ALIASES and bias is not None:
                fam = _FLOAT_ALIASES[bare][2]
        signed = not u and fam != "e8m0"
        return FloatFormat(E, M, bias=None if bias is None else int(bias), family=fam,
                           signed=signed, subnormals=ftz_s is None)
    m = _P3109_RE.match(key)
    if m:
        K, P, tag, ftz_s = m.groups()
        tag = tag or "se"
        f = p3109(int(K), int(P), signed=tag[0] == "s", domain="extended" if tag[1] == "e" else "finite")
        return f.replace(subnormals=False) if ftz_s else f
    m = _INT_RE.match(key)
    if m:
        return IntFormat(int(m.group(2)), signed=not m.group(1), narrow=bool(m.group(3)))
    m = _FIXED_RE.match(key)
    if m:
        return FixedFormat(int(m.group(2)), int(m.group(3)), signed=not m.group(1), narrow=bool(m.group(4)))
    m = _DINT_RE.match(key)
    if m:
        try:
            special = float(m.group(2)) if m.group(2) else 0.5
        except ValueError:
            raise ValueError(f"{original!r}: the dINT special value {m.group(2)!r} is not a number "
                             "(write e.g. dint4s0.25)") from None
        return DIntFormat(int(m.group(1)), special)
    m = _CODEBOOK_RE.match(key)
    if m:
        try:
            vals = [float(v) for v in m.group(1).split(",")]
        except ValueError:
            raise ValueError(f"cannot read the codebook values in {original!r}") from None
        return CodebookFormat(vals)
    known = list_formats() + list(_SYNONYMS) + list(_NAME_HOOKS)
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"unknown format name {original!r}.{hint} Known names: {', '.join(list_formats())}; "
        "or e{E}m{M}[b{bias}][fn|fnuz|finite], p3109_k{K}p{P}, int{N}, fixed{N}f{F}, dint{N}."
    )


def as_format(fmt) -> Format:
    """Accept a :class:`Format` or a name.

    >>> import fpsim
    >>> fpsim.as_format("bf16") == fpsim.FloatFormat(8, 7)
    True
    """
    if isinstance(fmt, Format):
        return fmt
    if isinstance(fmt, str):
        return parse(fmt)
    raise TypeError(f"expected a Format or a format name, got {type(fmt).__name__}")
