"""Lowering: from a format and rounding options to kernel parameters (internal API).

The one place other fpsim modules get the machinery that turns ``(format, options)`` into
what a kernel reads: the float carriers (:data:`DTYPES`, :data:`F64`, :data:`BF16`), option
resolution (:func:`options`), kernel parameter records (:func:`round_params`,
:func:`code_params`, :func:`decode_params`), seed handling (:func:`seed`), input coercion
(:func:`real_input`, :func:`as_input`) and the exact cast of results back to the caller's
dtype (:func:`cast_back`). Names here carry no underscore because they are fpsim's internal
API: modules of fpsim use them; users need not.

>>> from fpsim import lowering, as_format
>>> p = lowering.round_params(as_format("e4m3"), lowering.F64,
...                           *lowering.options(as_format("e4m3"), "rne", None, None, None, False, None))
>>> p.M, p.emin
(3, -6)
"""

from __future__ import annotations

# The implementations still live in rounding.py; this module is the interface the rest of
# fpsim uses, so that moving them (issue "spine") changes no caller.
from . import rounding as _impl

DType = _impl._DType
DTYPES = _impl._DTYPES
F64 = _impl._F64
BF16 = _impl._BF16
enum_value = _impl._enum
options = _impl._options
round_params = _impl._round_params
code_params = _impl._code_params
decode_params = _impl._decode_params
seed = _impl._seed
cast_back = _impl._cast_back
as_input = _impl._as_input
real_input = _impl.real_input

__all__ = ["DType", "DTYPES", "F64", "BF16", "enum_value", "options", "round_params",
           "code_params", "decode_params", "seed", "cast_back", "as_input", "real_input"]
