"""Binary floating-point formats: :class:`FloatFormat` and :func:`p3109` (SPEC §1.1).

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

Each family is resolved once, when a format is built, into its :class:`~fpsim.formats.Encoding`
record (``fmt.encoding``); the rules about special values read that record.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Union

import numpy as np

from .. import lowering as _L
from ..kernels._lazy import kernel
from .base import DEFAULT_FAMILY, FAMILIES, GridFormat, check_flag, encoding, pow2

__all__ = ["FloatFormat", "p3109", "FLOAT_ALIASES", "SYNONYMS"]

_codes_from_bits = kernel("float_round", "codes_from_bits")
_decode_codes = kernel("float_round", "decode_codes")

# Every value must be exactly representable in float64, the carrier type.
_F64_MIN_EXP = -1074  # exponent of the smallest float64 subnormal
_F64_MAX_EXP = 1023  # exponent of the largest float64 binade

_POW2 = np.array([math.ldexp(1.0, k) for k in range(-1074, 1024)], dtype=np.float64)

#: Canonical short names of well-known floats: name -> (E, M, family, bias, signed).
FLOAT_ALIASES: dict[str, tuple] = {
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
#: Alternative spellings accepted by parse (never produced as a canonical name).
SYNONYMS = {
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
class FloatFormat(GridFormat):
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
        Special-value family, one of :data:`FAMILIES`; resolved at construction into the
        record ``fmt.encoding`` (:class:`~fpsim.formats.Encoding`), which every rule about
        special values reads (``fmt.family`` stays the name).
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
    family: str = DEFAULT_FAMILY
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
        enc = encoding(self.family, self.signed)
        object.__setattr__(self, "encoding", enc)  # resolved once: every special-value rule reads it
        if enc.sign == "signed" and not self.signed:
            raise ValueError(f"family {enc.family!r} needs a sign bit (its NaN is the negative-zero code)")
        if enc.all_normal and (M != 0 or self.signed):
            raise ValueError(f"family {enc.family!r} is for unsigned formats with man_bits=0 "
                             "(power-of-two scales)")
        if E < enc.min_exp_bits:
            raise ValueError(f"family {enc.family!r} needs exp_bits >= {enc.min_exp_bits} (the top "
                             "exponent is reserved for inf/NaN)")
        if self.bias is None:
            object.__setattr__(self, "bias", self._default_bias())
        elif isinstance(self.bias, bool) or not isinstance(self.bias, (int, np.integer)):
            raise TypeError(f"bias must be an int or None, got {type(self.bias).__name__}")
        object.__setattr__(self, "bias", int(self.bias))
        object.__setattr__(self, "exp_bits", int(E))
        object.__setattr__(self, "man_bits", int(M))
        object.__setattr__(self, "subnormals", check_flag(self.subnormals, "subnormals"))
        object.__setattr__(self, "signed", check_flag(self.signed, "signed"))
        if self.max_code_mag < 1:
            raise ValueError(f"{self!r} has no positive finite value")
        # All values must be float64 numbers (exactly).
        lo = self.emin - M
        hi = self._decode_mag_exponent(self.max_code_mag)
        if lo < _F64_MIN_EXP or hi > _F64_MAX_EXP:
            raise ValueError(
                f"bias={self.bias} puts the range of e{E}m{M} outside float64 "
                f"(smallest value 2^{lo}, largest binade 2^{hi}); float64 is the carrier type"
            )

    # -- structure ------------------------------------------------------------------------
    def _default_bias(self) -> int:
        # fnuz and P3109 (bias 2^(K-P-1) signed, 2^(K-P) unsigned, K-P = E or E-1): 2^(E-1)
        return 2 ** (self.exp_bits - 1) - 1 + self.encoding.bias_shift

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
        return -self.bias if self.encoding.all_normal else 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest finite number.

        >>> import fpsim
        >>> fpsim.parse("e4m3").emax, fpsim.parse("e5m2").emax
        (8, 15)
        """
        return self._decode_mag_exponent(self.max_code_mag)

    @property
    def has_inf(self) -> bool:
        """Whether the format has infinities.

        >>> import fpsim
        >>> fpsim.parse("e5m2").has_inf, fpsim.parse("e4m3").has_inf
        (True, False)
        """
        return self.encoding.has_inf

    @property
    def has_nan(self) -> bool:
        """Whether the format has a NaN code.

        >>> import fpsim
        >>> fpsim.parse("e4m3").has_nan, fpsim.parse("e2m1").has_nan
        (True, False)
        """
        nan = self.encoding.nan
        return nan != "none" and (nan != "mantissa" or self.man_bits > 0)

    @property
    def has_negzero(self) -> bool:
        """Whether -0 has its own code (not in ``fnuz``, P3109 or unsigned formats).

        >>> import fpsim
        >>> fpsim.parse("e4m3").has_negzero, fpsim.parse("e4m3fnuz").has_negzero
        (True, False)
        """
        return self.signed and self.encoding.negzero

    @property
    def has_zero(self) -> bool:
        """Whether zero is a value (E8M0 has none).

        >>> import fpsim
        >>> fpsim.parse("e4m3").has_zero, fpsim.parse("e8m0").has_zero
        (True, False)
        """
        return self.encoding.zero

    @property
    def max_code_mag(self) -> int:
        """Magnitude code (code without the sign bit) of the largest finite value.

        >>> import fpsim
        >>> fpsim.parse("e4m3").max_code_mag, fpsim.parse("e5m2").max_code_mag
        (126, 123)
        """
        return 2 ** (self.exp_bits + self.man_bits) - 1 - self.encoding.reserved_top(self.man_bits)

    def _decode_mag_exponent(self, c: int) -> int:
        ef = c >> self.man_bits
        if ef == 0 and not self.encoding.all_normal:  # subnormal binade
            return self.emin
        return ef - self.bias

    def _decode_mag(self, c: int) -> Fraction:
        """Exact value of a magnitude code (no sign, finite codes only)."""
        M = self.man_bits
        ef, mant = c >> M, c & (2**M - 1)
        if ef == 0 and not self.encoding.all_normal:
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
        return float(self._decode_mag(self.max_code_mag))

    @property
    def min_normal(self) -> float:
        """Smallest positive normal value.

        >>> import fpsim
        >>> fpsim.parse("e4m3").min_normal
        0.015625
        """
        return pow2(self.emin)

    @property
    def min_subnormal(self) -> float:
        """Smallest positive value (equals ``min_normal`` without subnormals).

        >>> import fpsim
        >>> fpsim.parse("e4m3").min_subnormal, fpsim.parse("e4m3_ftz").min_subnormal
        (0.001953125, 0.015625)
        """
        if self.subnormals and self.man_bits > 0 and not self.encoding.all_normal:
            return pow2(self.emin - self.man_bits)
        return self.min_normal

    @property
    def eps(self) -> float:
        """Gap between 1 and the next larger value (``2**-man_bits``).

        >>> import fpsim
        >>> fpsim.parse("e4m3").eps, fpsim.parse("bf16").eps
        (0.125, 0.0078125)
        """
        return pow2(-self.man_bits)

    @property
    def default_overflow(self) -> str:
        """Overflow policy used when ``quantize`` is given ``overflow=None``.

        ``ieee``/``p3109``: ``"inf"``; ``fn``, ``finite``, ``p3109_finite``: ``"saturate"``
        (as torch's float8 cast and the OCP MX spec); ``fnuz`` and ``e8m0``: ``"nan"``.

        >>> import fpsim
        >>> [fpsim.parse(n).default_overflow for n in ("e5m2", "e4m3", "e4m3fnuz")]
        ['inf', 'saturate', 'nan']
        """
        return self.encoding.default_overflow

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
        if self.family != DEFAULT_FAMILY:
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


    # -- the format protocol (see fpsim.formats.Format) ----------------------------------
    def _round(self, arr, spec, seed):
        bits, dt = _L.round_grid(arr, self, spec, seed)
        if self.encoding.all_normal:  # positive powers of two only: x <= 0 has no value
            _L.nonpositive_to_nan(arr, bits, dt)
        return bits, dt

    def _encode(self, arr, spec, seed):
        bits, dt = self._round(arr, spec, seed)
        out = np.empty(bits.size, dtype=_L.uint_dtype(self.bits))  # written in place
        _codes_from_bits(bits.reshape(-1), out, _L.code_params(self, dt))
        return out.reshape(arr.shape)

    def _decode(self, c, odt):
        if _direct_decode(self, c.dtype, odt):
            # fast path: unsigned codes that cannot be out of range, and an output type that
            # holds every value exactly: no int64 copy, no range scan, no cast-back check
            out = np.empty(c.size, dtype=odt)
            _decode_codes(c.reshape(-1), out, _L.decode_params(self), _POW2)
            return self._flush_subnormal_codes(out).reshape(c.shape)
        _L.check_code_range(c, self.bits, f"the {self.bits}-bit format {self.name}")
        out = np.empty(c.size, dtype=np.float64)
        _decode_codes(c.reshape(-1).astype(np.int64), out, _L.decode_params(self), _POW2)
        out = self._flush_subnormal_codes(out).reshape(c.shape)
        return _L.cast_back(out, odt, self)

    def _flush_subnormal_codes(self, out):
        """A format without subnormals (``subnormals=False``, ``_ftz`` names) has no value for
        a code whose exponent field is 0 and fraction is not: it reads as a zero of that
        sign, as flush-to-zero hardware reads it (encode never makes such a code). E8M0 has
        no subnormals to flush (its exponent field 0 is 2**-127)."""
        if self.subnormals or self.man_bits == 0 or self.encoding.all_normal:
            return out
        sub = (np.abs(out) < self.min_normal) & (out != 0)
        if sub.any():
            out[sub] = np.copysign(0.0, out[sub])
        return out


@lru_cache(maxsize=256)
def _direct_decode(fmt: FloatFormat, code_dt: np.dtype, out_dt: np.dtype) -> bool:
    """Whether decode can write ``out_dt`` values straight from ``code_dt`` codes."""
    if code_dt.kind != "u" or np.iinfo(code_dt).max >= 2**fmt.bits:
        return False  # codes may be out of range: decode checks them
    if out_dt == np.float64:
        return True
    if out_dt != np.float32:
        return False
    dt = _L.DTYPES[out_dt]
    M, _, mx, mxneg, minsub, minnorm = _L.grid_limits(fmt)
    return M <= dt.M and all(_L.exact_in(v, dt) for v in (mx, mxneg, minsub, minnorm))


def _float_name(f: FloatFormat) -> str:
    base = f.replace(subnormals=True) if not f.subnormals else f
    suffix = "" if f.subnormals else "_ftz"
    for alias, (E, M, fam, bias, signed) in FLOAT_ALIASES.items():
        if (E, M, fam, signed) == (f.exp_bits, f.man_bits, f.family, f.signed) and (
            base.bias == FloatFormat(E, M, family=fam, signed=signed).bias
        ):
            return alias + suffix
    if f.encoding.p3109:
        P = f.man_bits + 1
        K = f.bits
        if f.bias == FloatFormat(f.exp_bits, f.man_bits, family=f.family, signed=f.signed)._default_bias() and (
            _p3109_bias(K, P, f.signed) == f.bias
        ):
            tag = ("s" if f.signed else "u") + ("e" if f.has_inf else "f")
            return f"p3109_k{K}p{P}" + ("" if tag == "se" else tag) + suffix
    name = f"{'' if f.signed or f.encoding.sign == 'unsigned' else 'u'}e{f.exp_bits}m{f.man_bits}"
    default_bias = FloatFormat(f.exp_bits, f.man_bits, family=f.family, signed=f.signed)._default_bias()
    if f.bias != default_bias:
        name += f"b{f.bias}"
    fam = f.family
    bare_is_alias = f"e{f.exp_bits}m{f.man_bits}" in FLOAT_ALIASES
    if fam != DEFAULT_FAMILY or bare_is_alias or f.bias != default_bias:
        name += fam if fam != DEFAULT_FAMILY or bare_is_alias else ""
    if name in SYNONYMS and f.bias == default_bias:  # e.g. 'e2m1fn' reads as ml_dtypes' e2m1
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
