"""The input rule of accumulation: values converted to float64 exactly, or refused.

:func:`exact_float64` converts any accepted input exactly (or raises a clear error);
:func:`check_inputs` checks converted inputs against a model (its input formats, and the
26-bit limit of exact float64 products).
"""

from __future__ import annotations

import numpy as np

from .. import lowering
from ..formats import FloatFormat
from ..rounding import quantize

__all__ = ["check_inputs", "exact_float64"]


def exact_float64(x, what="x"):
    """``x`` as a float64 array, converted *exactly* - or a clear error (never rounded).

    The input rule of :func:`dot`, :func:`matmul`, :func:`sum` and the analysis metrics -
    fpsim's one input rule (:func:`fpsim.lowering.exact_float64`): a value is accepted when float64
    holds it exactly and refused with a ValueError naming ``what`` otherwise; unsupported
    kinds (bool, complex, object, strings, masked arrays) raise TypeError. Shapes are kept.

    >>> import numpy as np, fpsim
    >>> fpsim.accum.exact_float64(np.array([2**53, -3], dtype=np.int64)).tolist()
    [9007199254740992.0, -3.0]
    >>> try:
    ...     fpsim.accum.exact_float64(np.array([2**53 + 1]), "A")
    ... except ValueError as e:
    ...     print(str(e)[:54])
    A holds the integer 9007199254740993, which is not exa
    """
    return lowering.exact_float64(x, what)


def check_inputs(model, arrays, multiplied=True):
    """Refuse NaN into NaN-less input formats, values outside the model's input format(s)
    and, for exact products, inputs of more than 26 significant bits.

    ``arrays`` is ``[(name, float64 array), ...]`` matching ``model.input_formats``; for
    terms that are summed, not multiplied (``multiplied=False``), only the input format
    ``model.in_fmt`` applies to the one array.

    >>> import numpy as np, fpsim
    >>> try:
    ...     check_inputs(fpsim.accum.Exact("fp32"), [("A", np.array([0.1])), ("B", np.ones(1))])
    ... except ValueError as e:
    ...     print(str(e)[:40])
    A has values with more than 26 significa
    """
    fmts = model.input_formats if multiplied else (model.in_fmt,)
    narrow = multiplied and model._multiplier()._narrow_inputs
    for (what, x), fin in zip(arrays, fmts):
        if x.size == 0:
            continue
        if fin is not None:
            nan = np.isnan(x)
            has_nan = bool(nan.any())
            if has_nan and not fin.has_nan:
                raise ValueError(f"{what} holds NaN but the model's input format {fin.name} has "
                                 "no NaN")
            xx = np.where(nan, 0.0, x) if has_nan else x  # (no copies in the common case)
            q = quantize(xx, fin, nan="zero" if not fin.has_nan else None)
            bad = q != xx
            if has_nan:
                bad &= ~nan
            if bad.any():
                v = x[bad].flat[0]
                raise ValueError(f"{what} holds {v!r}, which is not a value of the model's input "
                                 f"format {fin.name}; round the inputs first with "
                                 f"fpsim.quantize(x, {fin.name!r})")
            if isinstance(fin, FloatFormat) and fin.man_bits <= 25:
                continue  # its values have at most 26 significant bits: narrow already
        if narrow:
            _check_narrow(what, x)


def _check_narrow(what, x):
    """Exact products in float64 need <= 26 significant bits per input. A value whose low
    27 fraction bits are zero has at most 26 (normal or subnormal): one cheap pass over the
    bits, in slices (no temporary the size of x), and the exact test only for the values it
    flags."""
    flat = x.reshape(-1)
    wide = []
    for s0 in range(0, flat.size, 1 << 16):
        part = flat[s0:s0 + (1 << 16)]
        low = (part.view(np.uint64) & np.uint64(2**27 - 1)) != 0
        if low.any():
            wide.append(part[low & np.isfinite(part)])
    if not wide:
        return
    finite = np.concatenate(wide)
    if finite.size:
        m, _ = np.frexp(finite)
        if np.any(m * 2.0**26 != np.round(m * 2.0**26)):
            raise ValueError(f"{what} has values with more than 26 significant bits: "
                             "products are formed exactly in float64, which needs "
                             "inputs of at most 26 bits (fp32 and narrower); round "
                             "the inputs first (fpsim.quantize)")
