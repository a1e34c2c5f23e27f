"""Table formats: :class:`CodebookFormat` (any sorted set of values, NF4) and
:class:`DIntFormat` (dINT).

>>> import fpsim
>>> fpsim.parse("nf4").bits, fpsim.parse("dint4").special
(4, 0.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Union

import numpy as np

from .. import lowering as _L
from .base import ElementFormat

__all__ = ["TableFormat", "CodebookFormat", "DIntFormat", "NF4_VALUES", "CODEBOOKS"]

#: NF4 (QLoRA, Dettmers et al. 2023): the 16 float32 values of the normal-float codebook.
NF4_VALUES = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)
#: The built-in codebooks by name.
CODEBOOKS = {"nf4": NF4_VALUES}


class TableFormat(ElementFormat):
    """A format given by a value per code (codebooks, dINT): rounding searches the sorted
    values (``fpsim.kernels.table_round``).

    >>> import fpsim
    >>> fpsim.parse("dint4").table, fpsim.parse("nf4").max
    (True, 1.0)
    """

    table = True

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
        """The values, ascending (a copy of ``sorted_values``).

        >>> import fpsim
        >>> fpsim.parse("dint4").values()[:3].tolist()
        [-6.0, -5.0, -4.0]
        """
        return self.sorted_values.copy()

    # -- the format protocol (see fpsim.formats.Format) ----------------------------------
    def _quantize(self, arr, spec, seed):
        return _L.round_table(arr, self, spec, seed, self.sorted_values, arr.dtype)

    def _encode(self, arr, spec, seed):
        return _L.round_table(arr, self, spec, seed, self.sorted_codes,
                                    _L.uint_dtype(self.bits))

    def _decode(self, c, odt):
        _L.check_code_range(c, self.bits, f"the {self.bits}-bit format {self.name}")
        c64 = c.reshape(-1).astype(np.int64)
        out = self.code_values[c64]
        if np.any(np.isnan(out)):  # codebooks of fewer than 2**bits values
            bad = c64[np.isnan(out)][0]
            raise ValueError(f"code {bad} is not used by {self.name} ({self.sorted_values.size} values)")
        return _L.cast_back(out.reshape(c.shape), odt, self)

    def _code_table(self):
        return self.code_values.copy()


@dataclass(frozen=True)
class CodebookFormat(TableFormat):
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
        for nm, vals in CODEBOOKS.items():
            if tuple(np.sort(np.array(vals, dtype=np.float64)).tolist()) == self.values_:
                return nm
        return "codebook[" + ",".join(repr(v) for v in self.values_) + "]"

    def __repr__(self) -> str:
        lab = f", name={self.label!r}" if self.label else ""
        return f"CodebookFormat({list(self.values_)!r}{lab})"


@dataclass(frozen=True)
class DIntFormat(TableFormat):
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
