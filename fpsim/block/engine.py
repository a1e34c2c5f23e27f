"""The block engine: options lowered to kernel parameters, and the block kernels driven in
pieces (fpsim-internal).

Names without underscore are fpsim's internal API, used by :class:`fpsim.BlockFormat` and
:mod:`fpsim.scaling` (which runs its per-tensor, per-channel and per-group scales through
:func:`run` with given scales); users need not call them. :func:`run` quantizes an array
(values or element codes, and the block scales); :func:`params` builds the kernel records;
:func:`block_input`, :func:`check_elem_opts`, :func:`to_dtype` and :func:`check_range`
are the checks and casts around a run; :func:`norm_axis` and :func:`layout` describe the
blocked axis. :data:`TABLE_BLOCK_CHUNK` and :data:`BLOCK_CHUNK` bound the temporaries (set
them here: ``fpsim.block`` re-exports copies for reading).

>>> import numpy as np, fpsim
>>> from fpsim.block import engine
>>> vals, scales = engine.run(fpsim.parse("mxfp4"), np.array([1.0, -3.0, 0.5, 6.0]), -1, "rne",
...                           None, None, None, want_codes=False)
>>> vals.tolist(), scales.tolist()
([1.0, -3.0, 0.5, 6.0], [1.0])
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np

from .. import lowering as _L
from .. import rounding as _R
from ..formats import FixedFormat, FloatFormat, check_flag, parse
from ..kernels import _modes as _C
from ..kernels._lazy import kernel, lazy_module
from .rules import POW2_RULES, VALUE_RULES, is_table, out_dtype, precision

# Kernels load on first use so that `import fpsim` does not import numba.
_K = lazy_module("block_round")
_fast_params = kernel("fast_round", "fast_params")
_rne32_params = kernel("fast_round", "rne32_params")
_codes_from_bits = kernel("float_round", "codes_from_bits")

__all__ = ["run", "params", "block_input", "check_elem_opts", "to_dtype", "check_range",
           "norm_axis", "layout", "TABLE_BLOCK_CHUNK", "BLOCK_CHUNK"]

#: Elements per piece of a block format with table elements (whole blocks): bounds the float64
#: temporaries of the table path.
TABLE_BLOCK_CHUNK = 1 << 16
#: Elements per piece of the other block formats when they make codes or a wider result.
BLOCK_CHUNK = 1 << 17


# ---------------------------------------------------------------------------------------
# Checks and casts around a run
# ---------------------------------------------------------------------------------------

def check_elem_opts(overflow, nan, daz, subnormals=None):
    """Refuse the element options a block or scaled format does not take (clear errors).

    >>> check_elem_opts(None, None, False)
    >>> check_elem_opts("inf", None, False)
    Traceback (most recent call last):
    ...
    ValueError: overflow='inf': block elements always saturate (OCP MX clamps normals to ±max); leave overflow unset
    """
    daz = check_flag(daz, "daz")
    if subnormals is not None:
        check_flag(subnormals, "subnormals")
    if overflow not in (None, "saturate"):
        raise ValueError(f"overflow={overflow!r}: block elements always saturate (OCP MX clamps "
                         "normals to ±max); leave overflow unset")
    if nan is not None:
        raise ValueError("nan=... does not apply to block formats: a NaN makes its block's scale NaN")
    if daz:
        raise ValueError("daz=True is not supported for block formats")


def block_input(x):
    """(float32/float64 array, restore, shape, the input's dtype).

    >>> import numpy as np
    >>> arr, restore, shape, dt = block_input(np.zeros(3, np.float16))
    >>> arr.dtype, shape, dt
    (dtype('float32'), (3,), dtype('float16'))
    """
    arr, restore = _L.as_input(x)
    shape, dt = arr.shape, arr.dtype
    if arr.dtype not in (np.float32, np.float64):  # float16 / bfloat16: exact in float32
        arr = arr.astype(np.float32)
    return arr, restore, shape, dt


def to_dtype(vals, fmt, dt):
    """Cast results back to the input's dtype where the format allows it (exactly).

    >>> import numpy as np, fpsim
    >>> to_dtype(np.array([0.5]), fpsim.parse("mxfp4"), np.float32).dtype
    dtype('float32')
    """
    want = out_dtype(fmt, dt)
    return vals if vals.dtype == want else _L.cast_back(vals, want, fmt)


@functools.lru_cache(maxsize=256)
def _abs_extreme(elem) -> float:
    """Largest element magnitude, the negative side included (MXINT8 holds -2 but max 1.98)."""
    if isinstance(elem, FloatFormat) or elem.bits > 16:
        return float(elem.max) * (1.0 + 2.0**-10)
    return float(np.max(np.abs(elem.values())))


def check_range(out, arr, scales, fmt):
    """Warn when a quantized value exceeds the range of a float32/float16 result.

    Near the input dtype's largest number a block's value can round past it: scales rounded
    up (ceil, even, rceil, value rules), or an element whose negative range is wider than its
    positive one (MXINT8's -2 times OCP's 2**127). Checked only when the largest scale times
    the largest element magnitude could pass the dtype's maximum (a cheap test on the scales).

    >>> import numpy as np, fpsim
    >>> one = np.ones(2, np.float32)
    >>> check_range(one, one, np.ones(1), fpsim.parse("mxfp4"))  # in range: silent
    """
    if out.dtype == np.float64 or not np.size(scales):
        return
    sc = np.asarray(scales, dtype=np.float64).reshape(-1)
    smax = float(np.fmax.reduce(sc))  # scales are >= 0; fmax skips NaN
    c = _L.DTYPES[out.dtype]  # float32, float16 or bfloat16 (the input's dtype)
    dmax = math.ldexp(2.0 - 2.0**-c.M, c.bias)
    if fmt.tensor_scale is None and smax * _abs_extreme(fmt.elem) <= dmax:
        return
    _warn_range(out, arr)


def _warn_range(out, arr):
    """Say so instead of returning a silent inf (see check_range)."""
    n = int(np.count_nonzero(np.isinf(out.reshape(-1)) & np.isfinite(arr.reshape(-1))))
    if n:
        warnings.warn(f"{n} quantized value(s) exceed the range of {out.dtype} and became inf; "
                      "pass a float64 array to keep them", RuntimeWarning, stacklevel=4)


def norm_axis(axis, ndim):
    """``axis`` as an index in ``0 .. ndim-1`` (a 0-d array has one axis), or a clear error.

    >>> norm_axis(-1, 3), norm_axis(0, 0)
    (2, 0)
    """
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int, got {type(axis).__name__}")
    nd = max(ndim, 1)
    if not -nd <= axis < nd:
        raise ValueError(f"axis={axis} is out of range for a {ndim}-D array (allowed {-nd}..{nd - 1})")
    return int(axis) % nd


def layout(shape, ax):
    """``(A, L, B)``: the shape seen as A rows of L elements along the axis times B columns.

    >>> layout((2, 3, 4), 1)
    (2, 3, 4)
    """
    A = int(np.prod(shape[:ax], dtype=np.int64))
    return A, int(shape[ax]), int(np.prod(shape[ax + 1:], dtype=np.int64))


# ---------------------------------------------------------------------------------------
# Kernel parameters
# ---------------------------------------------------------------------------------------

# Smallest element value for float32 lanes: a scaled element below float32's normal range
# (2**-126), which float32 may round, is then far below half of it and rounds to 0 either way.
_F32_LANES_MIN_ELEM = 2.0 ** -100


def params(fmt, rounding, subnormals, srbits, g=1.0, clip=1.0, rule=None, want_codes=False,
           dtype=np.float64):
    """(BlockParams, element RoundParams, FastParams, Rne32Params, scale RoundParams, mode).

    ``rule`` overrides the format's scale rule (``RULE_GIVEN`` for given scales), ``g`` is
    the per-tensor scale, ``clip`` the clipping ratio of :mod:`fpsim.scaling`.

    >>> import fpsim
    >>> q = params(fpsim.parse("mxfp4"), "rne", None, None)[0]
    >>> q.emax_elem, q.smin, q.smax
    (2, -127, 127)
    """
    elem, scale = fmt.elem, fmt.scale
    nan = "propagate" if elem.has_nan else "raise"
    table = is_table(elem)
    if table:  # elements are rounded by fpsim.quantize in _run_table: options checked there
        eopts = (_L.enum_value(_R.Rounding, rounding, "rounding"),)
        ep = None
    else:
        eopts = _L.options(elem, rounding, "saturate", nan, subnormals, False, srbits)
        ep = _L.round_params(elem, _L.F64, *eopts)
    srule = fmt.scale_rounding
    smode = srule if srule in VALUE_RULES else "rne"
    sopts = _L.options(scale, smode, "saturate", "propagate" if scale.has_nan else "raise",
                       None, False, None)
    sp = _L.round_params(scale, _L.F64, *sopts)
    if rule is None:
        rule = POW2_RULES.get(srule, _C.RULE_VALUE)
    # power-of-two scales: exponent range of the scale format
    smin = round(math.log2(scale.min_subnormal))
    smax = scale.emax
    if scale.has_zero and rule == _C.RULE_VALUE:
        zero_scale = 0.0
    else:
        zero_scale = math.ldexp(1.0, smin)
    emax = math.floor(math.log2(elem.max))
    max_frac = int(np.array(elem.max).view(np.int64)) & ((1 << 52) - 1)
    mbits = (elem.man_bits if isinstance(elem, FloatFormat) else
             precision(elem) - 1 if table else elem.bits - 2)
    # the branch-free twin of round_bits (same results) where it covers the options
    fp = None if table else _fast_params(ep)
    q = _K.BlockParams(rule=rule, emax_elem=emax, mbits=mbits, max_frac=max_frac, smin=smin,
                       smax=smax, zero_scale=zero_scale, div=float(elem.max * g), clip=float(clip),
                       g=float(g), elem_nan=np.nan if elem.has_nan else 0.0,
                       want_codes=int(want_codes), fast=int(fp is not None), f32=0)
    if table:
        return q, None, None, None, sp, eopts[0]
    if fp is None:  # the kernel signature takes a FastParams: one of the right type (unused)
        fp = _fast_params(_L.round_params(elem, _L.F64, *_L.options(
            elem, "rne", "saturate", nan, subnormals, False, None)))
    # float32 lanes (block_round._f32_ok): float32 in and out, rne, a float32 fast path
    p32 = None
    if (np.dtype(dtype) == np.float32 and not want_codes and eopts[0] is _R.Rounding.RNE
            and elem.min_subnormal >= _F32_LANES_MIN_ELEM):
        p32 = _rne32_params(_L.round_params(elem, _L.DTYPES[np.dtype(np.float32)], *eopts))
    if p32 is not None:
        q = q._replace(f32=1)
    else:
        p32 = _p32_placeholder()
    return q, ep, fp, p32, sp, eopts[0]


@functools.lru_cache(maxsize=1)
def _p32_placeholder():
    """Rne32Params of the right type for calls that do not use float32 lanes (unused)."""
    e4m3 = parse("e4m3")
    return _rne32_params(_L.round_params(e4m3, _L.DTYPES[np.dtype(np.float32)], *_L.options(
        e4m3, "rne", "saturate", "propagate", None, False, None)))


def _tensor_scale(fmt, arr) -> float:
    """Per-tensor scale ``amax / (elem.max * scale.max)`` rounded into ``fmt.tensor_scale``."""
    flat = arr.reshape(-1)
    amax = 0.0
    for i in range(0, flat.size, BLOCK_CHUNK):  # in pieces: no |x| copy of the whole array
        a = np.abs(flat[i:i + BLOCK_CHUNK])
        amax = max(amax, float(np.max(a, where=np.isfinite(a), initial=0.0)))
    if amax == 0.0:
        return 1.0
    ts = fmt.tensor_scale
    q = _K.BlockParams(rule=_C.RULE_VALUE, emax_elem=0, mbits=0, max_frac=0, smin=0, smax=0,
                       zero_scale=1.0, div=fmt.elem.max * fmt.scale.max, clip=1.0, g=1.0,
                       elem_nan=0.0, want_codes=0, fast=0, f32=0)
    sp = _L.round_params(ts, _L.F64, *_L.options(ts, "rne", "saturate", "propagate", None,
                                                  False, None))
    out = np.empty(1)
    _K.scales_from_amax(np.array([amax]), np.zeros(1, np.int64), q, sp, out)
    g = float(out[0])
    return g if g > 0 else ts.min_subnormal


# ---------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------

def run(fmt, arr, axis, rounding, subnormals, seed, srbits, want_codes, given=None,
        gstride=(0, 0, 0), rule=None, clip=1.0, block=None, g=None):
    """Quantize ``arr``; returns (values, scales) or (element codes, scales, tensor scale).

    ``given``/``gstride``/``rule``/``block`` let :mod:`fpsim.scaling` pass its own scales
    (flat, indexed by ``(a, block, b)`` strides) and block length; ``g`` a per-tensor scale.
    See the module doc for an example.
    """
    shape = arr.shape if arr.ndim else (1,)
    ax = norm_axis(axis, len(shape))
    A, L, B = layout(shape, ax)
    k = fmt.block if block is None else block
    if not fmt.partial and L % k:
        raise ValueError(f"{fmt.name}: block={k} does not divide the length {L} of axis {ax} "
                         "(partial=False); pad the array or allow a partial last block")
    arr = np.ascontiguousarray(arr)  # (a copy only for a strided view) the pieces are views
    if g is None:
        g = _tensor_scale(fmt, arr) if fmt.tensor_scale is not None else 1.0
    odt = out_dtype(fmt, arr.dtype)
    if is_table(fmt.elem):
        def one(x, lay, gv, dest=None):
            return _run_table(fmt, x, lay, k, rounding, seed, srbits, want_codes, gv, gstride,
                              rule, clip, g)
        chunk = TABLE_BLOCK_CHUNK
    else:
        def one(x, lay, gv, dest=None):
            return _run_grid(fmt, x, lay, k, rounding, subnormals, seed, srbits, want_codes, gv,
                             gstride, rule, clip, g, odt, dest)
        # element values of a float32/float64 input are written in place: pieces only when
        # codes (float64 element bits) or a wider result (float64 copy of the input) are made
        chunk = BLOCK_CHUNK if want_codes or odt != arr.dtype else None
    vals, sval = _run_chunked(fmt, arr, (A, L, B), k, rounding, want_codes, one, chunk,
                              given, gstride, odt)
    sshape = shape[:ax] + (sval.shape[1],) + shape[ax + 1:]
    if want_codes:
        return vals, sval.reshape(sshape), (g if fmt.tensor_scale is not None else None)
    return vals, sval.reshape(sshape)


def _run_grid(fmt, arr, lay, k, rounding, subnormals, seed, srbits, want_codes, given,
              gstride, rule, clip, g, odt, dest=None):
    """:func:`run` for float and integer/fixed-point elements, one kernel call: (values in
    ``odt`` or element float64 bits, flat scales). ``dest``: a flat contiguous ``odt`` array
    the values are written to (a piece of the result)."""
    A, L, B = lay
    q, ep, fp, p32, sp, mode = params(fmt, rounding, subnormals, srbits, g=g, clip=clip,
                                      rule=rule, want_codes=want_codes,
                                      dtype=arr.dtype if want_codes else odt)
    x = np.ascontiguousarray(arr, dtype=arr.dtype if want_codes else odt).reshape(-1)
    n = x.size
    nb = -(-L // k) if L else 0
    scales = np.empty(A * nb * B)
    if want_codes:
        out, ebits = np.empty(1, x.dtype), np.empty(n, np.uint64)
    else:
        out, ebits = (np.empty(n, odt) if dest is None else dest), np.empty(1, np.uint64)
    if given is None:
        given = np.zeros(1)
    gstr = np.asarray(gstride, dtype=np.int64)
    sd = _L.seed(seed, mode)
    if n:
        if B == 1:
            err = _K.block_round_rows(x, out, ebits, scales, given, gstr, A, L, k, q, ep, fp, p32,
                                      sp, sd)
        else:
            err = _K.block_round_cols(x, out, ebits, scales, given, gstr, A, L, B, k, q, ep, fp,
                                      p32, sp, sd)
        if err:
            raise ValueError(f"{fmt.elem.name} has no NaN but {err} NaN input(s) met a given scale")
    return (ebits if want_codes else out), scales


def _run_chunked(fmt, arr, lay, k, rounding, want_codes, one, chunk, given, gstride, odt):
    """``one`` (:func:`_run_grid` or :func:`_run_table`) on pieces of whole blocks (rows of A,
    runs of blocks along the axis, or columns of one block when a block row is wider than a
    piece), so that temporaries stay small: every block is computed from its own elements (or
    its given scale), so the pieces give the same bits as one call. Element codes are made
    piece by piece. Stochastic rounding, whose random stream follows the element index of the
    whole array, runs in one piece (``chunk=None``: one piece too)."""
    A, L, B = lay
    nb = -(-L // k) if L else 0
    n = A * L * B
    cdt = _R.code_dtype(fmt.elem)
    sr = _L.enum_value(_R.Rounding, rounding, "rounding") is _R.Rounding.STOCHASTIC
    x3 = arr.reshape(A, L, B)
    if chunk is None or n <= chunk or sr:
        v, s = one(x3, lay, given)
        if want_codes:
            v = _elem_codes(v, fmt.elem)
        elif v.dtype != odt:
            v = _L.cast_back(v, odt, fmt)
        return v, s.reshape(A, nb, B)
    per_block = k * B
    if per_block <= chunk:
        bc = B
        nbc = max(1, min(nb, chunk // per_block))  # blocks per piece along the axis
        ac = max(1, chunk // (nbc * per_block))  # rows of A per piece
    else:  # one block row is wider than a piece: cut it along B
        bc, nbc, ac = max(1, chunk // k), 1, 1
    gs = np.asarray(gstride, dtype=np.int64)
    vals = np.empty((A, L, B), dtype=cdt if want_codes else odt)
    sval = np.empty((A, nb, B))
    for a0 in range(0, A, ac):
        a1 = min(A, a0 + ac)
        for j0 in range(0, nb, nbc):
            j1 = min(nb, j0 + nbc)
            l0, l1 = j0 * k, min(L, j1 * k)
            for b0 in range(0, B, bc):
                b1 = min(B, b0 + bc)
                piece = x3[a0:a1, l0:l1, b0:b1]
                gv = None if given is None else np.asarray(given)[
                    a0 * gs[0] + j0 * gs[1] + b0 * gs[2]:]
                play = (a1 - a0, l1 - l0, b1 - b0)
                dest = vals[a0:a1, l0:l1, b0:b1]
                if want_codes or not dest.flags.c_contiguous:
                    dest = None
                else:  # the values go straight into the result (grid elements)
                    dest = dest.reshape(-1)
                v, s = one(piece, play, gv, dest)
                if want_codes:
                    v = _elem_codes(v, fmt.elem)
                elif v.dtype != odt:
                    v = _L.cast_back(v, odt, fmt)
                if v is not dest:
                    vals[a0:a1, l0:l1, b0:b1] = v.reshape(play)
                sval[a0:a1, j0:j1, b0:b1] = s.reshape(a1 - a0, j1 - j0, b1 - b0)
    return vals.reshape(-1), sval


def _run_table(fmt, arr, lay, k, rounding, seed, srbits, want_codes, given, gstride, rule,
               clip, g):
    """:func:`run` for table elements (dINT, codebooks such as NF4), with numpy and
    :func:`fpsim.quantize`: the same block scales (kernel ``scales_from_amax``), then each
    element ``x / scale`` rounded to the table. A power-of-two scale divides exactly; any
    other is the quotient rounded to odd in float64 (``block_round.div_odd``), which the table
    rounding then rounds correctly for tables whose midpoints fit in 52 bits (dINT, NF4's
    float32 values) — so the element is the exact quotient rounded once."""
    A, L, B = lay
    nb = -(-L // k) if L else 0
    x = np.asarray(arr, dtype=np.float64).reshape(A, L, B)
    q, _, _, _, sp, _ = params(fmt, rounding, None, srbits, g=g, clip=clip, rule=rule,
                               want_codes=want_codes)
    if given is None:
        xp = np.pad(x, ((0, 0), (0, nb * k - L), (0, 0))) if nb * k != L else x
        a = np.abs(xp.reshape(A, nb, k, B))
        fin = np.isfinite(a)
        bad = (~fin.all(axis=2)).astype(np.int64)
        amax = np.where(fin, a, 0.0).max(axis=2, initial=0.0)
        sval = np.empty(A * nb * B)
        if sval.size:
            _K.scales_from_amax(np.ascontiguousarray(amax).reshape(-1), bad.reshape(-1), q, sp,
                                sval)
    else:
        gs = np.asarray(gstride, dtype=np.int64)
        idx = (np.arange(A)[:, None, None] * gs[0] + np.arange(nb)[None, :, None] * gs[1]
               + np.arange(B)[None, None, :] * gs[2])
        sval = np.asarray(given, dtype=np.float64)[idx].reshape(-1)
    sval = sval.reshape(A, nb, B)
    tot = np.repeat(sval * g, k, axis=1)[:, :L, :]
    nan_blk = np.isnan(tot)
    zero_blk = tot == 0.0
    ok = ~(nan_blk | zero_blk)
    y = np.zeros_like(x)
    xs, ts = np.ascontiguousarray(x[ok]), np.ascontiguousarray(tot[ok])
    yv = np.empty_like(xs)
    if xs.size:
        _K.div_odd(xs, ts, yv)
    y[ok] = yv
    ev = np.asarray(_R.quantize(y, fmt.elem, rounding=rounding, seed=seed, srbits=srbits),
                    dtype=np.float64)
    if want_codes:
        ev = np.where(nan_blk, np.nan if fmt.elem.has_nan else 0.0, ev)
        return np.ascontiguousarray(ev).reshape(-1).view(np.uint64), sval.reshape(-1)
    with np.errstate(invalid="ignore"):
        out = np.where(nan_blk, np.nan, ev * np.where(ok, tot, 0.0))
    return out.reshape(-1), sval.reshape(-1)


def _elem_codes(ebits, elem):
    """Codes of element values given as float64 bit patterns."""
    if is_table(elem):
        return _R.encode(ebits.view(np.float64), elem)
    cdt = _R.code_dtype(elem)
    if isinstance(elem, FixedFormat):
        kk = (ebits.view(np.float64) * math.ldexp(1.0, elem.frac_bits)).astype(np.int64)
        return (kk & (2**elem.bits - 1)).astype(cdt)
    out = np.empty(ebits.size, dtype=np.int64)
    _codes_from_bits(ebits, out, _L.code_params(elem, _L.F64))
    return out.astype(cdt)
