"""Rounding into any format: :func:`quantize`, :func:`encode`, :func:`decode` (SPEC §2).

Rounding modes (every one a named value of :class:`Rounding`):

========== =========================================================================
``rne``    to nearest, ties to even (the default)
``rna``    to nearest, ties away from zero
``rtz``    toward zero (truncation)
``rup``    toward +inf
``rdn``    toward -inf
``rto``    to odd: an inexact result gets an odd last bit (exact for later rounding)
``stochastic`` up (in magnitude) with probability equal to the discarded fraction
========== =========================================================================

Overflow policies (:class:`Overflow`): ``saturate`` (finite overflow and ±inf → ±max),
``inf`` (IEEE: per rounding mode, e.g. ``rtz`` gives ±max, ``rne`` gives ±inf), ``nan``
(non-saturating OCP: overflow → NaN), ``wrap`` (integers: modulo 2**N).  ``None`` picks the
family's standard behaviour (:attr:`FloatFormat.default_overflow`).

NaN inputs (:class:`NaNPolicy`): ``propagate`` (formats with NaN), ``raise`` (default for
formats without NaN), ``zero``, ``max``.

Every result equals the exact input rounded *once* into the format: no double rounding.
"""

from __future__ import annotations

import numpy as np

from . import lowering as _L
from .formats import as_format
from .lowering import PARALLEL_THRESHOLD, TABLE_CHUNK, as_codes, check_code_range, real_input
from .options import ROUNDING_MODES, NaNPolicy, Overflow, Rounding

__all__ = ["Rounding", "Overflow", "NaNPolicy", "quantize", "encode", "decode", "ROUNDING_MODES",
           "code_dtype", "PARALLEL_THRESHOLD", "TABLE_CHUNK", "as_codes", "check_code_range",
           "real_input"]


def quantize(x, fmt, *, rounding="rne", overflow=None, subnormals=None, daz=False, nan=None,
             seed=None, srbits=None, axis=None):
    """Round ``x`` once into ``fmt``; the result has the input's shape and dtype.

    Parameters
    ----------
    x : array_like
        numpy float16/bfloat16/float32/float64 array or scalar (any byte order), a Python
        float or int, a (nested) list of them; ml_dtypes' 8/6/4-bit float arrays are read
        as float32; integer and longdouble arrays as float64 when float64 holds every value
        exactly (else ValueError). See :func:`fpsim.lowering.real_input`: the one input
        rule of every entry point.
    fmt : Format or str
        Target format (see :func:`fpsim.parse`).
    rounding : str
        One of :data:`ROUNDING_MODES` (default ``"rne"``).
    overflow : str, optional
        ``"saturate"``, ``"inf"``, ``"nan"`` or ``"wrap"``; ``None`` = the family default.
    subnormals : bool, optional
        ``False`` flushes subnormal results to zero (FTZ); ``None`` = the format's setting.
    daz : bool
        Denormals-are-zero: inputs below the format's smallest normal count as zero.
    nan : str, optional
        NaN inputs: ``"propagate"``, ``"raise"``, ``"zero"`` or ``"max"``.
    seed : int or numpy.random.Generator, optional
        Stochastic rounding stream; a given seed gives the same bits for any thread count.
    srbits : int, optional
        Random bits used by stochastic rounding (default: exact probabilities).
    axis : int, optional
        Block/scaled formats only (``"mxfp4"``, :class:`fpsim.BlockFormat`...): the blocked
        axis (default: the format's own ``axis``). See :mod:`fpsim.block`.

    Returns
    -------
    numpy array (or scalar) of the input's dtype (float64 for integer and longdouble
    inputs, float32 for ml_dtypes' small floats) holding values of ``fmt``. If a value
    of ``fmt`` the result needs cannot be held by that dtype, ``ValueError`` asks for a
    float64 input instead of returning a wrong number.

    Examples
    --------
    >>> import numpy as np, fpsim
    >>> fpsim.quantize(np.array([0.3, 500.0, 1e-4], dtype=np.float32), "e4m3")
    array([3.125e-01, 4.480e+02, 0.000e+00], dtype=float32)
    >>> fpsim.quantize(2.5, "int8"), fpsim.quantize(2.5, "int8", rounding="rna")
    (2.0, 3.0)
    >>> fpsim.quantize(1000.0, "e5m2", rounding="rtz"), fpsim.quantize(1e6, "e5m2")
    (896.0, inf)
    """
    fmt = as_format(fmt)
    if fmt.blocked:  # block/scaled formats (fpsim.block) do their own blocking
        return fmt._quantize(x, axis=axis, rounding=rounding, overflow=overflow,
                             subnormals=subnormals, daz=daz, nan=nan, seed=seed, srbits=srbits)
    _no_axis(axis, fmt)
    arr, restore = _L.as_input(x)
    spec = _L.RoundingSpec.resolve(fmt, rounding, overflow, nan, subnormals, daz, srbits)
    return restore(fmt._quantize(arr, spec, seed))


def _no_axis(axis, fmt):
    if axis is not None:
        raise ValueError(f"axis={axis!r} only applies to block/scaled formats (e.g. 'mxfp4'); "
                         f"{fmt.name} is an element format")


def code_dtype(fmt) -> np.dtype:
    """Smallest unsigned integer dtype that holds every code of ``fmt``.

    >>> import fpsim
    >>> fpsim.code_dtype("e4m3"), fpsim.code_dtype("bf16"), fpsim.code_dtype("tf32")
    (dtype('uint8'), dtype('uint16'), dtype('uint32'))
    """
    return _L.uint_dtype(as_format(fmt).bits)


def encode(x, fmt, *, rounding="rne", overflow=None, subnormals=None, daz=False, nan=None,
           seed=None, srbits=None, axis=None):
    """Round ``x`` into ``fmt`` and return the bit codes (see :func:`code_dtype`).

    Takes the same options as :func:`quantize`. Float codes are sign | exponent | mantissa;
    integers are two's complement in ``bits`` bits; codebooks use the index of the value.

    >>> import numpy as np, fpsim
    >>> fpsim.encode(np.array([1.0, -2.0, 448.0]), "e4m3")
    array([ 56, 192, 126], dtype=uint8)
    >>> fpsim.encode(np.array([-1.0, 3.0]), "int4")
    array([15,  3], dtype=uint8)
    """
    fmt = as_format(fmt)
    if fmt.blocked:  # block/scaled formats: (element codes, scale codes)
        return fmt._encode(x, axis=axis, rounding=rounding, overflow=overflow,
                           subnormals=subnormals, daz=daz, nan=nan, seed=seed, srbits=srbits)
    _no_axis(axis, fmt)
    arr, restore = _L.as_input(x)
    spec = _L.RoundingSpec.resolve(fmt, rounding, overflow, nan, subnormals, daz, srbits)
    return restore(fmt._encode(arr, spec, seed))


def decode(codes, fmt, *, dtype=np.float64, axis=None):
    """Values of the bit codes ``codes`` of ``fmt`` (inverse of :func:`encode`).

    ``dtype`` is the output float type; a value it cannot hold exactly raises ValueError.

    >>> import numpy as np, fpsim
    >>> fpsim.decode(np.array([56, 192, 126, 127], dtype=np.uint8), "e4m3")
    array([  1.,  -2., 448.,  nan])
    """
    fmt = as_format(fmt)
    if fmt.blocked:  # block/scaled formats take (element codes, scale codes)
        return fmt._decode(codes, dtype=dtype, axis=axis)
    _no_axis(axis, fmt)
    c = as_codes(codes)
    scalar = c.ndim == 0 and not isinstance(codes, np.ndarray)  # a 0-d array stays an array
    out = fmt._decode(c, _out_dtype(dtype))
    return out[()] if scalar else out


def _out_dtype(dtype) -> np.dtype:
    """The output dtype of decode: a carrier float dtype (lowering.DTYPES)."""
    try:  # the name "bfloat16" works before ml_dtypes is imported (fpsim imports it lazily)
        odt = _L.BF16 if isinstance(dtype, str) and dtype == "bfloat16" else np.dtype(dtype)
    except TypeError:
        odt = None
    if odt is None or odt not in _L.DTYPES:
        shown = odt.name if odt is not None else repr(dtype)
        raise TypeError(f"dtype={shown} is not allowed as the output dtype of decode (allowed "
                        "dtypes: float16, bfloat16 (ml_dtypes), float32, float64, native byte "
                        "order)")
    return odt
