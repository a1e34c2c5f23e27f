"""Integers and fixed point: :class:`FixedFormat`, :class:`IntFormat` (two's complement).

>>> import fpsim
>>> fpsim.parse("fixed8f4").max, fpsim.parse("int4").min
(7.9375, -8.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import lowering as _L
from .base import GridFormat, check_flag, pow2

__all__ = ["FixedFormat", "IntFormat"]

_MAX_INT_BITS = 53  # float64 carries every such integer exactly


@dataclass(frozen=True)
class FixedFormat(GridFormat):
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
    fixed_point = True

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
        return self.int_max * pow2(-self.frac_bits)

    @property
    def min(self) -> float:
        """Most negative value (0 if unsigned).

        >>> import fpsim
        >>> fpsim.FixedFormat(8, 4).min
        -8.0
        """
        return self.int_min * pow2(-self.frac_bits)

    @property
    def min_normal(self) -> float:
        """The quantum ``2**-frac_bits`` (also ``min_subnormal`` and ``eps``).

        >>> import fpsim
        >>> fpsim.FixedFormat(8, 4).min_normal
        0.0625
        """
        return pow2(-self.frac_bits)

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


    # -- the format protocol (see fpsim.formats.Format) ----------------------------------
    def _encode(self, arr, spec, seed):
        bits, dt = self._round(arr, spec, seed)
        vals = bits.reshape(-1).view(dt.dtype)
        out = np.empty(vals.size, dtype=_L.uint_dtype(self.bits))
        for b in range(0, vals.size, _L.TABLE_CHUNK):  # small temporaries, whatever the size
            # two's complement of k = value * 2**frac_bits (exact)
            k = vals[b:b + _L.TABLE_CHUNK].astype(np.float64) * pow2(self.frac_bits)
            out[b:b + _L.TABLE_CHUNK] = k.astype(np.int64) & (2**self.bits - 1)
        return out.reshape(arr.shape)

    def _decode(self, c, odt):
        _L.check_code_range(c, self.bits, f"the {self.bits}-bit format {self.name}")
        k = c.reshape(-1).astype(np.int64)
        if self.signed:
            k[k >= 2 ** (self.bits - 1)] -= 2**self.bits
        if self.narrow and np.any(k == -(2 ** (self.bits - 1))):
            raise ValueError(f"code {2 ** (self.bits - 1)} is not used by the narrow format {self.name}")
        out = (k.astype(np.float64) * pow2(-self.frac_bits)).reshape(c.shape)
        return _L.cast_back(out, odt, self)

    def _code_table(self):
        codes = np.arange(2**self.bits, dtype=np.uint64)
        if not self.narrow:
            return self._decode(codes, np.dtype(np.float64))
        t = np.full(codes.size, np.nan)  # the code of -2**(N-1) is unused: NaN in the table
        used = codes != 2 ** (self.bits - 1)
        t[used] = self._decode(codes[used], np.dtype(np.float64))
        return t

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
