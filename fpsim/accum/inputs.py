"""The input rule of accumulation: values converted to float64 exactly, or refused.

:func:`exact_float64` converts any accepted input exactly (or raises a clear error);
:func:`check_inputs` checks converted inputs against a model (its input formats, and the
26-bit limit of exact float64 products); :class:`Rounded` carries values that are values of
a format by construction, so that the check need not test them again.
"""

from __future__ import annotations

import numpy as np

from .. import lowering as _L
from ..formats import FloatFormat, as_format
from ..options import Rounding
from ..rounding import quantize

__all__ = ["Rounded", "check_inputs", "exact_float64"]


class Rounded:
    """``x`` rounded into ``fmt`` by :func:`fpsim.quantize`: float64 values that are values
    of ``fmt`` *by construction*, so that :func:`fpsim.matmul` / :func:`fpsim.dot` skip the
    membership test of their input rule when ``fmt`` is the model's input format (the test
    would quantize and compare them again: a pass over every operand of every GEMM).

    Only the options that keep every result a value of ``fmt`` are taken: ``rounding`` (any
    mode), ``nan`` (as fpsim.quantize) and ``seed`` (stochastic rounding). ``values`` is the
    float64 array; ``r[index]`` is the Rounded of a part (still values of ``fmt``).

    >>> import numpy as np, fpsim
    >>> r = fpsim.accum.Rounded(np.array([[0.1, 3.0]]), "bf16")
    >>> r.values.tolist(), r.fmt.name
    ([[0.10009765625, 3.0]], 'bf16')
    >>> m = fpsim.hardware.tensor_core("H100", "bf16")
    >>> fpsim.matmul(r, fpsim.accum.Rounded(np.ones((2, 1)), "bf16"), model=m).tolist()
    [[3.10009765625]]
    """

    __slots__ = ("values", "fmt")

    def __init__(self, x, fmt, *, rounding="rne", nan=None, seed=None):
        fmt = as_format(fmt)
        if seed is not None and Rounding(rounding) is not Rounding.STOCHASTIC:
            raise ValueError(f"seed= is for rounding='stochastic', not {rounding!r}")
        self.values = np.asarray(quantize(exact_float64(x), fmt, rounding=rounding, nan=nan,
                                          seed=seed), dtype=np.float64)
        self.fmt = fmt

    @classmethod
    def _trusted(cls, values, fmt):
        """A part of a Rounded: its values are already values of ``fmt``."""
        r = object.__new__(cls)
        r.values, r.fmt = values, fmt
        return r

    def __getitem__(self, index):
        return Rounded._trusted(self.values[index], self.fmt)

    @property
    def shape(self):
        return self.values.shape

    def __repr__(self):
        return f"Rounded({self.fmt.name}, shape={self.values.shape})"


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
    return _L.exact_float64(x, what)


def check_inputs(model, arrays, multiplied=True):
    """Refuse NaN into NaN-less input formats, values outside the model's input format(s)
    and, for exact products, inputs of more than 26 significant bits.

    ``arrays`` is ``[(name, float64 array), ...]`` matching ``model.input_formats``; for
    terms that are summed, not multiplied (``multiplied=False``), only the input format
    ``model.in_fmt`` applies to the one array. An array given as a :class:`Rounded` of the
    input format is a value of it by construction and is not tested again.

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
        proof = None
        if isinstance(x, Rounded):
            proof, x = x.fmt, x.values
        if x.size == 0:
            continue
        if proof is not None and (proof == fin or fin is None):
            if isinstance(proof, FloatFormat) and proof.man_bits <= 25:
                continue  # values of fin (or of a float format of <= 26 significant bits)
            if proof == fin:
                fin = None  # its values; the 26-bit test below still applies
        if fin is not None:
            nan = np.isnan(x)
            has_nan = bool(nan.any())
            if has_nan and not fin.has_nan:
                raise ValueError(f"{what} holds NaN but the model's input format {fin.name} has "
                                 "no NaN")
            x0 = np.where(nan, 0.0, x) if has_nan else x  # NaN is a value of fin here
            q = quantize(x0, fin, nan="zero" if not fin.has_nan else None)
            bad = q != x0
            if bad.any():
                v = x[bad].flat[0]
                raise ValueError(f"{what} holds {v!r}, which is not a value of the model's input "
                                 f"format {fin.name}; round the inputs first with "
                                 f"fpsim.quantize(x, {fin.name!r})")
            if isinstance(fin, FloatFormat) and fin.man_bits <= 25:
                continue  # its values have at most 26 significant bits
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
