"""Scale rules and precisions of block formats (fpsim-internal).

What the parts of a block format imply, shared by the descriptor (validation, names), the
engine (kernel parameters) and :mod:`fpsim.scaling`: the scale rules (:data:`POW2_RULES`,
:data:`VALUE_RULES`, :data:`SCALE_ROUNDINGS`, :func:`default_scale_rounding`), the
significant bits of element and scale values (:func:`precision`, :func:`scale_extra_bits`)
and the dtype that holds a block's decoded values exactly (:func:`out_dtype`). Names carry
no underscore because they are fpsim's internal API; users need not call them.

A new power-of-two scale rule is one entry of :data:`POW2_RULES` (its code in
``kernels/_modes.py`` and its branch in ``kernels/block_round.block_scale``); a new
value rule (a rounding mode of the scale format) one entry of :data:`VALUE_RULES`.

>>> from fpsim.block import rules
>>> rules.SCALE_ROUNDINGS
('floor', 'ceil', 'even', 'rceil', 'rne', 'rna', 'rtz', 'rup', 'rdn')
"""

from __future__ import annotations

import numpy as np

from .. import lowering as _L
from ..formats import FixedFormat, FloatFormat, Format
from ..kernels import _modes as _C

__all__ = ["POW2_RULES", "VALUE_RULES", "SCALE_ROUNDINGS", "default_scale_rounding", "is_table",
           "precision", "scale_extra_bits", "out_dtype"]

#: Power-of-two scale rules (name -> kernel rule code) accepted as ``scale_rounding``.
POW2_RULES = {"floor": _C.RULE_FLOOR, "ceil": _C.RULE_CEIL, "even": _C.RULE_EVEN,
              "rceil": _C.RULE_RCEIL}
#: Value rules: ``amax / elem.max`` rounded once into the scale format with this mode.
VALUE_RULES = ("rne", "rna", "rtz", "rup", "rdn")
#: Every ``scale_rounding`` a block or scaled format accepts.
SCALE_ROUNDINGS = tuple(POW2_RULES) + VALUE_RULES


def default_scale_rounding(scale: FloatFormat) -> str:
    """The scale rule used when none is given: OCP's ``floor`` for E8M0, else ``rne``.

    >>> import fpsim
    >>> default_scale_rounding(fpsim.parse("e8m0")), default_scale_rounding(fpsim.parse("e4m3"))
    ('floor', 'rne')
    """
    return "floor" if scale.encoding.all_normal else "rne"


def is_table(f: Format) -> bool:
    """dINT and codebook elements: values from a table, not a grid (the engine's numpy path).

    >>> import fpsim
    >>> is_table(fpsim.parse("nf4")), is_table(fpsim.parse("e2m1"))
    (True, False)
    """
    return not isinstance(f, (FloatFormat, FixedFormat))


def _sig_bits(v: float) -> int:
    """Significant bits of a normal float64 value."""
    frac = int(np.float64(v).view(np.int64)) & ((1 << 52) - 1)
    return 53 - ((frac & -frac).bit_length() - 1) if frac else 1


def precision(f: Format) -> int:
    """Significant bits of a format's values (the widest value of a table format).

    >>> import fpsim
    >>> precision(fpsim.parse("e4m3")), precision(fpsim.parse("int8"))
    (4, 7)
    """
    if isinstance(f, FloatFormat):
        return f.man_bits + 1
    if is_table(f):
        return max([_sig_bits(v) for v in f.values() if v != 0], default=1)
    return f.bits - (1 if f.signed else 0)


def scale_extra_bits(scale: FloatFormat, rule: str) -> int:
    """Bits a scale adds to the product element * scale (0 for powers of two).

    >>> import fpsim
    >>> scale_extra_bits(fpsim.parse("e8m0"), "floor"), scale_extra_bits(fpsim.parse("e4m3"), "rne")
    (0, 4)
    """
    if rule in POW2_RULES or scale.man_bits == 0:
        return 0
    return scale.man_bits + 1


def out_dtype(fmt, dtype) -> np.dtype:
    """dtype that holds every decoded value of block format ``fmt`` exactly: the input's,
    else float64.

    >>> import numpy as np, fpsim
    >>> out_dtype(fpsim.parse("mxfp8_e4m3"), np.float32), out_dtype(fpsim.parse("nvfp4"), np.float32)
    (dtype('float32'), dtype('float64'))
    """
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return dtype
    prec = precision(fmt.elem) + scale_extra_bits(fmt.scale, fmt.scale_rounding) + (
        precision(fmt.tensor_scale) if fmt.tensor_scale is not None else 0)
    return dtype if prec <= _L.DTYPES[dtype].M + 1 else np.dtype(np.float64)
