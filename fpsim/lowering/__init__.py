"""Lowering: from a format and rounding options to kernel parameters (internal API).

The one place other fpsim modules get the machinery that turns ``(format, options)`` into
what a kernel reads: the float carriers (:data:`DTYPES`, :data:`F64`, :data:`BF16`), option
resolution (:class:`RoundingSpec`, :func:`options`), kernel parameter records
(:func:`round_params`, :func:`code_params`, :func:`decode_params`), seed handling
(:func:`seed`), the input rule every entry point shares (:func:`real_input`,
:func:`as_input`, :func:`exact_float64`) and the exact cast of results back to the caller's
dtype (:func:`cast_back`). Names here carry no underscore because they are fpsim's internal
API: modules of fpsim use them; users need not. Three modules: ``params`` (carriers, specs,
kernel records), ``inputs`` (the input rule) and ``drivers`` (the array loops around the
rounding kernels: :func:`round_grid`, :func:`round_table`).

Lowering reads formats only through their attributes (``man_bits``, ``encoding``,
``fixed_point``...) and imports no format class: :mod:`fpsim.formats` sits above it.

>>> from fpsim import lowering, as_format
>>> spec = lowering.options(as_format("e4m3"), "rne", None, None, None, False, None)
>>> spec.mode, spec.overflow
(<Rounding.RNE: 'rne'>, <Overflow.SATURATE: 'saturate'>)
>>> p = lowering.round_params(as_format("e4m3"), lowering.F64, spec)
>>> p.M, p.emin
(3, -6)
"""

from __future__ import annotations

from ..options import enum_value
from .drivers import TABLE_CHUNK, nonpositive_to_nan, round_grid, round_table
from .inputs import (INPUT_RULE, as_codes, as_input, check_code_range, exact_float64, real_input,
                     uint_dtype)
from .params import (DTYPES, F64, MODE_CODE, NAN_CODE, OVF_CODE, PARALLEL_THRESHOLD, DType,
                     RoundingSpec, bf16_dtype, cast_back, code_params, decode_params, exact_in,
                     grid_limits, ml_dtypes_module, nan_input_error, options, round_params, seed)

__all__ = ["DType", "DTYPES", "F64", "BF16", "RoundingSpec", "enum_value", "options",
           "round_params", "code_params", "decode_params", "grid_limits", "exact_in", "seed",
           "cast_back", "as_input", "real_input", "exact_float64", "nan_input_error",
           "INPUT_RULE", "MODE_CODE", "OVF_CODE", "NAN_CODE", "PARALLEL_THRESHOLD",
           "round_grid", "round_table", "nonpositive_to_nan", "TABLE_CHUNK", "as_codes",
           "check_code_range", "uint_dtype", "bf16_dtype", "ml_dtypes_module"]


def __getattr__(name):
    # BF16 is computed on first use (ml_dtypes is not imported by `import fpsim`)
    if name == "BF16":
        return bf16_dtype()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
