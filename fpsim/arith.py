"""Correctly rounded elementwise arithmetic into any format, and L-Mul (SPEC §3).

``add, sub, mul, div, fma, sqrt`` return the *exact* real result rounded **once** into
``fmt`` (IEEE 754 semantics), for every float format ``eXmY`` (E <= 11, M <= 52, any
family), integer and fixed-point formats, and every rounding mode of :mod:`fpsim.rounding`
including reproducible stochastic rounding. Operands are numpy float arrays or Python
numbers (broadcast together); their values need not belong to ``fmt``: they are exact
reals. Results are float64 arrays holding values of ``fmt`` (a Python float for scalar
operands).

Special cases follow IEEE 754: NaN propagates, ``inf - inf``, ``0 * inf``, ``0/0``,
``inf/inf`` and ``sqrt(x < 0)`` are NaN, ``x/0`` is ±inf, ``sqrt(-0) = -0``; an exact zero
sum of nonzero operands (or of ``+0`` and ``-0``) is ``+0``, ``-0`` when rounding down
(``rdn``), and ``(-0) + (-0) = -0``. A NaN result in a format without NaN raises
``ValueError`` unless ``nan="zero"``/``"max"`` maps it (as :func:`fpsim.quantize`).
Overflow, subnormal flushing and signed-zero rules are those of :func:`fpsim.quantize`.

The kernels work on error-free transformations (never a float64 result rounded again), see
:mod:`fpsim.kernels.arith`.
"""

from __future__ import annotations

import numpy as np

from . import lowering as _L
from .formats import FloatFormat, as_format
from .kernels import _modes as _C
from .kernels._lazy import lazy_module
from .options import Rounding, enum_value
from .rounding import quantize

_K = lazy_module('arith')  # numba is imported on first use, not by `import fpsim`
_KL = lazy_module('lmul')

__all__ = ["abs", "add", "div", "fma", "lmul", "maximum", "minimum", "mul", "neg", "sqrt", "sub"]


def _operand(x, name):
    """float64 array of an operand; (array, is_scalar). Inputs follow the one rule of
    :func:`fpsim.lowering.real_input`: integers (Python ints, integer arrays) exactly or
    refused, no bools, no masked arrays; a 0-d array gives a 0-d result, a Python or numpy
    scalar a float."""
    arr, kind = _L.real_input(x, name)
    return arr.astype(np.float64, copy=False), kind != "array"


def _params(fmt, rounding, overflow, nan, subnormals, srbits):
    fmt = as_format(fmt)
    if fmt.table:
        raise TypeError(f"{fmt.name} is a table format: arithmetic rounds into float, integer and "
                        "fixed-point formats; compute into fp32/fp64 and quantize() into it")
    if fmt.blocked:  # block/scaled formats (fpsim.block)
        raise TypeError(f"{fmt.name} is a {fmt.kind} format: arithmetic is defined for element "
                        "formats (float, integer, fixed point) whose values do not depend on a "
                        "block scale; compute into fp32/fp64 and quantize() into it")
    spec = _L.RoundingSpec.resolve(fmt, rounding, overflow, nan, subnormals, False, srbits)
    return fmt, spec, _L.round_params(fmt, _L.F64, spec)  # never None: float64 holds all


def _run(op, operands, fmt, rounding, overflow, nan, subnormals, seed, srbits):
    fmt, spec, p = _params(fmt, rounding, overflow, nan, subnormals, srbits)
    names = ("a", "b", "c")
    arrs, scal = [], True
    for nm, x in zip(names, operands):
        a, s = _operand(x, nm)
        arrs.append(a)
        scal = scal and s
    try:
        bc = np.broadcast_arrays(*[np.asarray(a) for a in arrs])
    except ValueError:
        shapes = ", ".join(str(np.shape(a)) for a in arrs)
        raise ValueError(f"operand shapes {shapes} do not broadcast together") from None
    shape = bc[0].shape
    flat = [np.ascontiguousarray(a, dtype=np.float64).reshape(-1) for a in bc]
    while len(flat) < 3:
        flat.append(flat[0])
    out = np.empty(flat[0].size, dtype=np.float64)
    kern = _K.arith_parallel if out.size >= _L.PARALLEL_THRESHOLD else _K.arith_serial
    bad = kern(op, flat[0], flat[1], flat[2], out, p, _L.seed(seed, spec.mode))
    if bad:
        raise ValueError(f"{fmt.name} has no NaN but {bad} result(s) are NaN (invalid operations "
                         "or NaN operands); pass nan='zero' or nan='max' to map them")
    out = out.reshape(shape)
    return float(out[()]) if scal else out


_COMMON_DOC = """
    fmt : Format or str
        Destination format (float, integer or fixed point).
    rounding : str
        ``"rne"`` (default), ``"rna"``, ``"rtz"``, ``"rup"``, ``"rdn"``, ``"rto"`` or
        ``"stochastic"``.
    overflow : str, optional
        ``"saturate"``, ``"inf"``, ``"nan"``, ``"wrap"``; ``None`` = the format's default.
    nan : str, optional
        NaN results: ``"propagate"`` (formats with NaN), ``"raise"``, ``"zero"``, ``"max"``.
    subnormals : bool, optional
        ``False`` flushes subnormal results to zero (after rounding).
    seed : int or numpy.random.Generator, optional
        Stochastic rounding stream (same bits for any thread count).
    srbits : int, optional
        Random bits of stochastic rounding (default: 62, practically exact).
"""


def add(a, b, fmt, *, rounding="rne", overflow=None, nan=None, subnormals=None, seed=None,
        srbits=None):
    """``a + b`` rounded once into ``fmt``.

    >>> import numpy as np, fpsim
    >>> fpsim.add(1.0, 2.0**-24, "fp32"), fpsim.add(1.0, 2.0**-24 + 2.0**-60, "fp32")
    (1.0, 1.0000001192092896)
    >>> fpsim.add(np.array([1.0, -3.0]), 3.0, "fp16", rounding="rdn")
    array([ 4., -0.])
    """
    return _run(_C.OP_ADD, (a, b), fmt, rounding, overflow, nan, subnormals, seed, srbits)


def sub(a, b, fmt, *, rounding="rne", overflow=None, nan=None, subnormals=None, seed=None,
        srbits=None):
    """``a - b`` rounded once into ``fmt``.

    >>> import fpsim
    >>> fpsim.sub(1.0, 2.0**-30, "bf16"), fpsim.sub(1.0, 2.0**-30, "bf16", rounding="rtz")
    (1.0, 0.99609375)
    """
    return _run(_C.OP_SUB, (a, b), fmt, rounding, overflow, nan, subnormals, seed, srbits)


def mul(a, b, fmt, *, rounding="rne", overflow=None, nan=None, subnormals=None, seed=None,
        srbits=None):
    """``a * b`` rounded once into ``fmt``.

    >>> import fpsim
    >>> fpsim.mul(1.5, 1.5, "e4m3"), fpsim.mul(20.0, 30.0, "e4m3"), fpsim.mul(20.0, 30.0, "e5m2")
    (2.25, 448.0, 640.0)
    """
    return _run(_C.OP_MUL, (a, b), fmt, rounding, overflow, nan, subnormals, seed, srbits)


def div(a, b, fmt, *, rounding="rne", overflow=None, nan=None, subnormals=None, seed=None,
        srbits=None):
    """``a / b`` rounded once into ``fmt`` (``x/0 = ±inf``, ``0/0 = NaN``).

    >>> import fpsim
    >>> fpsim.div(1.0, 3.0, "e5m2"), fpsim.div(1.0, 3.0, "e5m2", rounding="rup")
    (0.3125, 0.375)
    >>> fpsim.div(1.0, -0.0, "fp16")
    -inf
    """
    return _run(_C.OP_DIV, (a, b), fmt, rounding, overflow, nan, subnormals, seed, srbits)


def fma(a, b, c, fmt, *, rounding="rne", overflow=None, nan=None, subnormals=None, seed=None,
        srbits=None):
    """``a * b + c`` with a single rounding into ``fmt``.

    >>> import fpsim
    >>> x = 1.0 + 2.0**-12
    >>> fpsim.fma(x, x, -1.0, "fp32") == 2.0**-11 + 2.0**-24   # exact, no cancellation error
    True
    >>> fpsim.fma(x, x, -1.0, "fp16", rounding="rup") == 2.0**-11 + 2.0**-21
    True
    """
    return _run(_C.OP_FMA, (a, b, c), fmt, rounding, overflow, nan, subnormals, seed, srbits)


def sqrt(a, fmt, *, rounding="rne", overflow=None, nan=None, subnormals=None, seed=None,
         srbits=None):
    """Square root rounded once into ``fmt`` (``sqrt(-0) = -0``, ``sqrt(x<0) = NaN``).

    >>> import fpsim
    >>> fpsim.sqrt(2.0, "bf16"), fpsim.sqrt(2.0, "bf16", rounding="rup")
    (1.4140625, 1.421875)
    """
    return _run(_C.OP_SQRT, (a,), fmt, rounding, overflow, nan, subnormals, seed, srbits)


for _f in (add, sub, mul, div, fma, sqrt):
    _f.__doc__ = _f.__doc__.replace("\n\n    >>>", "\n\n    Parameters\n    ----------" + _COMMON_DOC
                                    + "\n    Examples\n    --------\n    >>>", 1)


def _quantize(x, fmt, **kw):
    a, s = _operand(x, "x")
    a = np.asarray(a, dtype=np.float64)
    out = quantize(a.reshape(-1), fmt, **kw).reshape(a.shape)
    return float(out[()]) if s else out


def neg(x, fmt, *, rounding="rne", overflow=None, nan=None, subnormals=None, seed=None,
        srbits=None):
    """``-x`` rounded into ``fmt`` (``neg(+0) = -0`` where the format has -0).

    >>> import fpsim
    >>> fpsim.neg(0.3, "e4m3"), fpsim.neg(0.0, "fp16")
    (-0.3125, -0.0)
    """
    a, _ = _operand(x, "x")
    return _quantize(-a, fmt, rounding=rounding, overflow=overflow,
                     nan=nan, subnormals=subnormals, seed=seed, srbits=srbits)


def abs(x, fmt, *, rounding="rne", overflow=None, nan=None, subnormals=None, seed=None,
        srbits=None):
    """``|x|`` rounded into ``fmt`` (``abs(-0) = +0``).

    >>> import fpsim
    >>> fpsim.abs(-0.3, "e4m3"), fpsim.abs(-0.0, "fp16")
    (0.3125, 0.0)
    """
    a, _ = _operand(x, "x")
    return _quantize(np.abs(a), fmt, rounding=rounding, overflow=overflow, nan=nan,
                     subnormals=subnormals, seed=seed, srbits=srbits)


def _minmax(a, b, fmt, want_min, kw):
    x, sx = _operand(a, "a")
    y, sy = _operand(b, "b")
    try:
        x, y = np.broadcast_arrays(np.asarray(x), np.asarray(y))
    except ValueError:
        raise ValueError(f"operand shapes {np.shape(x)}, {np.shape(y)} do not broadcast together") from None
    with np.errstate(invalid="ignore"):
        r = np.minimum(x, y) if want_min else np.maximum(x, y)
        # IEEE 754-2019 minimum/maximum: -0 < +0
        z = (x == 0) & (y == 0)
        neg0 = (np.signbit(x) | np.signbit(y)) if want_min else (np.signbit(x) & np.signbit(y))
        r = np.where(z, np.where(neg0, -0.0, 0.0), r)
    r = np.asarray(r, dtype=np.float64)
    out = _quantize(r.reshape(-1), fmt, **kw).reshape(r.shape)
    return float(out[()]) if (sx and sy) else out


def minimum(a, b, fmt, *, rounding="rne", overflow=None, nan=None, subnormals=None, seed=None,
            srbits=None):
    """IEEE 754-2019 ``minimum(a, b)`` (NaN propagates, -0 < +0) rounded into ``fmt``.

    >>> import fpsim
    >>> fpsim.minimum(0.0, -0.0, "fp16"), fpsim.minimum(0.3, 2.0, "e4m3")
    (-0.0, 0.3125)
    """
    return _minmax(a, b, fmt, True, {"rounding": rounding, "overflow": overflow, "nan": nan,
                                         "subnormals": subnormals, "seed": seed, "srbits": srbits})


def maximum(a, b, fmt, *, rounding="rne", overflow=None, nan=None, subnormals=None, seed=None,
            srbits=None):
    """IEEE 754-2019 ``maximum(a, b)`` (NaN propagates, -0 < +0) rounded into ``fmt``.

    >>> import fpsim
    >>> fpsim.maximum(0.0, -0.0, "fp16"), fpsim.maximum(-1.0, float("nan"), "fp16")
    (0.0, nan)
    """
    return _minmax(a, b, fmt, False, {"rounding": rounding, "overflow": overflow, "nan": nan,
                                          "subnormals": subnormals, "seed": seed, "srbits": srbits})


# ---------------------------------------------------------------------------------------
# L-Mul
# ---------------------------------------------------------------------------------------

LMUL_SEMANTICS = ("int", "formula")


def lmul_offset(man_bits: int) -> int:
    """The exponent ``l(m)`` of L-Mul's offset term ``2**-l(m)`` (Luo & Sun 2024).

    >>> import fpsim.arith as A
    >>> [A.lmul_offset(m) for m in (1, 2, 3, 4, 5, 23)]
    [1, 2, 3, 3, 4, 4]
    """
    m = int(man_bits)
    return m if m <= 3 else (3 if m == 4 else 4)


def lmul(x, y, man_bits, *, semantics="int", fmt=None, out_fmt=None, rounding="rne",
         overflow=None, nan=None, seed=None):
    """L-Mul ("Addition is All You Need", Luo & Sun 2024): multiplication by addition.

    ``L-Mul(x, y) = (-1)**(sx^sy) * (1 + fx + fy + 2**-l(m)) * 2**(ex + ey)`` for inputs
    ``|x| = (1 + fx) * 2**ex`` with ``m = man_bits`` mantissa bits,
    ``l(m) = m`` (m <= 3), ``3`` (m = 4), ``4`` (m > 4); see :func:`lmul_offset`.

    Parameters
    ----------
    x, y : array_like
        Operands (float arrays or numbers, broadcast together). They are first rounded into
        ``fmt`` with ``rounding`` (an operand already in ``fmt`` is unchanged).
    man_bits : int
        Mantissa bits ``m`` of the operands (0..52).
    semantics : str
        ``"int"`` (default): what the paper's hardware does, one integer addition of the
        (exponent|mantissa) bit fields minus the bias plus the offset; a mantissa carry
        increments the exponent, so when ``1 <= s = fx + fy + 2**-l < 2`` the result is
        ``s * 2**(ex+ey+1)`` (and, possible only for ``m >= 5``, ``s >= 2`` carries twice:
        ``(s - 1) * 2**(ex+ey+2)``).
        ``"formula"``: the literal formula (no carry; the significand may reach 3).
    fmt : Format or str, optional
        Operand format; must have ``man_bits`` mantissa bits. Default
        ``FloatFormat(8, man_bits)`` (ieee family: fp32's range; ``fp32`` for ``m = 23``).
        Subnormal operands are normalised (``(1 + fx) 2**ex`` with their exact value).
    out_fmt : Format or str, optional
        Result format (default ``fmt``). The exact L-Mul value is rounded once into it with
        ``rounding``; exponent overflow and underflow follow its policies. With
        ``semantics="int"`` and ``out_fmt = fmt`` the value is always on the grid, so only
        the range matters.
    rounding, overflow, nan, seed
        As :func:`fpsim.quantize` (used for the operands and the result).

    Notes
    -----
    Zero times a finite value is a signed zero; ``0 * inf`` and NaN give NaN; inf times
    nonzero gives inf (then ``out_fmt``'s overflow policy).

    Examples
    --------
    >>> import fpsim
    >>> fpsim.lmul(1.5, 1.5, 23), fpsim.lmul(1.5, 1.5, 23, semantics="formula")
    (2.125, 2.0625)
    >>> fpsim.lmul(3.0, -0.75, 23), fpsim.lmul(1.0, 1.0, 3, fmt="e4m3")
    (-2.125, 1.125)
    """
    if isinstance(man_bits, bool) or not isinstance(man_bits, (int, np.integer)) or not 0 <= man_bits <= 52:
        raise ValueError(f"man_bits={man_bits!r}: allowed an int 0..52")
    sem = str(semantics).lower()
    if sem not in LMUL_SEMANTICS:
        raise ValueError(f"semantics={semantics!r} is not allowed; choose 'int' or 'formula'")
    m = int(man_bits)
    in_fmt = FloatFormat(8, m) if fmt is None else as_format(fmt)
    if not isinstance(in_fmt, FloatFormat) or in_fmt.man_bits != m:
        raise ValueError(f"fmt={in_fmt.name} must be a float format with man_bits={m}")
    of = in_fmt if out_fmt is None else as_format(out_fmt)
    of, spec, p = _params(of, rounding, overflow, nan, None, None)
    a, sa = _operand(x, "x")
    b, sb = _operand(y, "y")
    try:
        a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
    except ValueError:
        raise ValueError(f"operand shapes {np.shape(a)}, {np.shape(b)} do not broadcast together") from None
    shape = a.shape
    qkw = {"rounding": rounding, "nan": nan}
    if seed is not None or enum_value(Rounding, rounding, "rounding") is Rounding.STOCHASTIC:
        rng = np.random.default_rng(seed)
        qa = quantize(np.ascontiguousarray(a, dtype=np.float64), in_fmt, seed=rng, **qkw)
        qb = quantize(np.ascontiguousarray(b, dtype=np.float64), in_fmt, seed=rng, **qkw)
        s = _L.seed(rng, spec.mode)
    else:
        qa = quantize(np.ascontiguousarray(a, dtype=np.float64), in_fmt, **qkw)
        qb = quantize(np.ascontiguousarray(b, dtype=np.float64), in_fmt, **qkw)
        s = np.uint64(0)
    qa, qb = qa.reshape(-1), qb.reshape(-1)
    out = np.empty(qa.size, dtype=np.float64)
    bad = _KL.lmul_kernel(qa, qb, out, m, lmul_offset(m), sem == "int", p, s)
    if bad:
        raise ValueError(f"{of.name} has no NaN but {bad} L-Mul result(s) are NaN; pass nan='zero' "
                         "or nan='max' to map them")
    out = out.reshape(shape)
    return float(out[()]) if (sa and sb) else out
