"""Block-scaled formats (SPEC §1.5): OCP MX v1.0, NVFP4, and any element/scale pairing.

A :class:`BlockFormat` cuts a tensor into blocks of ``block`` consecutive elements along
``axis``; each block stores one scale (in the ``scale`` format) and its elements (in the
``elem`` format). A value decodes as ``element * scale`` (times an optional per-tensor scale),
exactly.

How the scale of a block is chosen (``scale_rounding``), with ``amax`` the block's largest
magnitude and ``emax_elem = floor(log2(elem.max))``:

============ ============================================================================
``floor``    OCP MX v1.0 §6.3: ``2**(floor(log2 amax) - emax_elem)``; the default for E8M0
``ceil``     torchao ``CEIL``: ``2**(ceil(log2 amax) - emax_elem)``
``even``     torchao ``EVEN``: ``amax`` first rounded to the element's precision (its
             fraction bits, ties away), then ``floor``: amax never rounds past ±max
``rceil``    torchao ``RCEIL`` / cuBLAS MX recipe: ``2**ceil(log2(amax / elem.max))``,
             the smallest power of two with which no element overflows
``rne`` ...  ``amax / elem.max`` rounded once into the scale format with that rounding
             mode (``rne``, ``rna``, ``rtz``, ``rup``, ``rdn``): NVFP4's E4M3 scales
============ ============================================================================

Power-of-two scales are clamped to the scale format's range (E8M0: ``2**-127 .. 2**127``).
Blocks whose amax is 0 get the smallest scale (E8M0 code 0; a zero scale for formats with a
zero). A block holding a NaN **or an infinity** gets a NaN scale (E8M0 code 0xFF) and decodes
to all NaN: ``log2(inf)`` has no E8M0 code (this follows torchao; gfloat instead clamps the
scale to ``2**127`` and saturates). Elements are rounded with any rounding mode (stochastic
included) and *saturate*: normals clamp to ``±elem.max`` as the MX spec asks.

The last block along the axis may be shorter when ``block`` does not divide the axis length
(``partial=True``, the default); its scale uses its own elements only. ``partial=False``
refuses such shapes.
"""

from __future__ import annotations

import functools
import math
import warnings
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import lowering as _L
from . import rounding as _r
from .formats import (FixedFormat, FloatFormat, Format, as_format, check_flag, parse,
                      read_int_option, register_name)
from .kernels import _modes as _C
from .kernels._lazy import kernel, lazy_module

# Kernels load on first use so that `import fpsim` does not import numba.
_k = lazy_module("block_round")
_fast_params = kernel("fast_round", "fast_params")
_rne32_params = kernel("fast_round", "rne32_params")
codes_from_bits = kernel("float_round", "codes_from_bits")

__all__ = ["BlockFormat", "BlockCodes", "MX_FORMATS", "SCALE_ROUNDINGS", "pack", "unpack",
           "plot_block_error"]

#: Power-of-two scale rules and value rules accepted as ``scale_rounding``.
POW2_RULES = {"floor": _C.RULE_FLOOR, "ceil": _C.RULE_CEIL, "even": _C.RULE_EVEN,
              "rceil": _C.RULE_RCEIL}
VALUE_RULES = ("rne", "rna", "rtz", "rup", "rdn")
SCALE_ROUNDINGS = tuple(POW2_RULES) + VALUE_RULES

#: Named presets: name -> (element, block, scale, scale_rounding, tensor scale).
_PRESETS = {
    "mxfp8_e4m3": ("e4m3", 32, "e8m0", "floor", None),
    "mxfp8_e5m2": ("e5m2", 32, "e8m0", "floor", None),
    "mxfp6_e2m3": ("e2m3", 32, "e8m0", "floor", None),
    "mxfp6_e3m2": ("e3m2", 32, "e8m0", "floor", None),
    "mxfp4": ("e2m1", 32, "e8m0", "floor", None),
    "mxint8": ("fixed8f6", 32, "e8m0", "floor", None),
    "nvfp4": ("e2m1", 16, "e4m3", "rne", "fp32"),
}
_PRESET_SYNONYMS = {"mxfp4_e2m1": "mxfp4", "mxfp8e4m3": "mxfp8_e4m3", "mxfp8e5m2": "mxfp8_e5m2",
                    "mxfp6e2m3": "mxfp6_e2m3", "mxfp6e3m2": "mxfp6_e3m2"}
#: The OCP MX v1.0 concrete formats.
MX_FORMATS = ("mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp4", "mxint8")


def _is_table(f: Format) -> bool:
    """dINT and codebook formats: values from a table, not a grid (see _run_table)."""
    return not isinstance(f, (FloatFormat, FixedFormat))


def _sig_bits(v: float) -> int:
    """Significant bits of a normal float64 value."""
    frac = int(np.float64(v).view(np.int64)) & ((1 << 52) - 1)
    return 53 - ((frac & -frac).bit_length() - 1) if frac else 1


def _precision(f: Format) -> int:
    """Significant bits of a format's values (the widest value of a table format)."""
    if isinstance(f, FloatFormat):
        return f.man_bits + 1
    if _is_table(f):
        return max([_sig_bits(v) for v in f.values() if v != 0], default=1)
    return f.bits - (1 if f.signed else 0)


class BlockCodes(tuple):
    """``(element codes, scale codes)`` of a block-encoded array, as :func:`fpsim.encode`
    returns it. ``tensor_scale`` holds the per-tensor scale code (NVFP4) or ``None``;
    ``axis`` the blocked axis. Unpacks like a pair.

    >>> import numpy as np, fpsim
    >>> e, s = fpsim.encode(np.array([1.0, -3.0, 0.5, 6.0]), "mxfp4")
    >>> e.tolist(), s.tolist()
    ([2, 13, 1, 7], [127])
    """

    def __new__(cls, elements, scales, tensor_scale=None, axis=-1):
        self = super().__new__(cls, (elements, scales))
        self.tensor_scale = tensor_scale
        self.axis = axis
        return self

    @property
    def elements(self) -> np.ndarray:
        return self[0]

    @property
    def scales(self) -> np.ndarray:
        return self[1]


@dataclass(frozen=True, repr=False)
class BlockFormat(Format):
    """Elements of ``elem`` sharing one ``scale``-format scale per ``block`` elements.

    Parameters
    ----------
    elem : Format or str
        Element format: a float ``eXmY``, an integer/fixed-point format, or a table format
        with negative and positive values (dINT, codebooks such as ``nf4``).
    block : int
        Elements per block along ``axis`` (OCP MX: 32; NVFP4: 16).
    scale : Format or str
        Scale format: ``e8m0`` (MX) or any float (``e4m3``, ``bf16``, ``fp32``...).
    axis : int
        Default blocked axis (``fpsim.quantize(..., axis=)`` overrides it).
    scale_rounding : str, optional
        How the block scale is chosen, one of :data:`SCALE_ROUNDINGS` (see the module doc);
        default ``"floor"`` for E8M0 scales and ``"rne"`` otherwise.
    tensor_scale : Format or str, optional
        Format of an extra per-tensor scale ``amax / (elem.max * scale.max)`` (NVFP4: fp32).
    partial : bool
        Allow a shorter last block when ``block`` does not divide the axis length.

    Examples
    --------
    >>> import numpy as np, fpsim
    >>> f = fpsim.BlockFormat("e2m1", 32, "e8m0")
    >>> f.name, f.bits, f == fpsim.parse("mxfp4")
    ('mxfp4', 4.25, True)
    >>> fpsim.parse("nvfp4")
    BlockFormat('e2m1', 16, 'e4m3', tensor_scale='fp32')
    >>> fpsim.quantize(np.array([0.3, 1.0, 2.9, -7.0], dtype=np.float32), "mxfp4")
    array([ 0.5,  1. ,  3. , -6. ], dtype=float32)
    """

    elem: Format
    block: int = 32
    scale: Format = "e8m0"
    axis: int = field(default=-1, kw_only=True)
    scale_rounding: Optional[str] = field(default=None, kw_only=True)
    tensor_scale: Optional[Format] = field(default=None, kw_only=True)
    partial: bool = field(default=True, kw_only=True)

    def __post_init__(self):
        elem = _as_fmt(self.elem, "elem")
        scale = _as_fmt(self.scale, "scale")
        if _is_table(elem):
            if not (elem.max > 0 and np.any(elem.values() < 0)):
                raise TypeError(f"block elements must hold positive and negative values; "
                                f"{elem.name} does not")
        elif not isinstance(elem, (FloatFormat, FixedFormat)) or not elem.signed:
            raise TypeError(f"block elements must be a signed float, integer/fixed-point, dINT "
                            f"or codebook format, got {elem.name}")
        if not isinstance(scale, FloatFormat):
            raise TypeError(f"the block scale must be a float format (e8m0, e4m3, bf16, fp32, ...), "
                            f"got {scale.name}")
        blk = self.block
        if isinstance(blk, bool) or not isinstance(blk, (int, np.integer)) or blk < 1:
            raise ValueError(f"block={blk!r}: must be a positive int (OCP MX uses 32, NVFP4 16)")
        if isinstance(self.axis, bool) or not isinstance(self.axis, (int, np.integer)):
            raise TypeError(f"axis must be an int, got {type(self.axis).__name__}")
        rule = self.scale_rounding
        if rule is None:
            rule = "floor" if scale.family == "e8m0" else "rne"
        rule = str(rule).lower()
        if rule not in SCALE_ROUNDINGS:
            raise ValueError(f"scale_rounding={self.scale_rounding!r} is not allowed; choose one of "
                             f"{', '.join(repr(r) for r in SCALE_ROUNDINGS)}")
        ts = self.tensor_scale
        if ts is not None:
            ts = _as_fmt(ts, "tensor_scale")
            if not isinstance(ts, FloatFormat):
                raise TypeError(f"tensor_scale must be a float format such as fp32, got {ts.name}")
        prec = _precision(elem) + _scale_extra_bits(scale, rule) + (
            _precision(ts) if ts is not None else 0)
        if prec > 53:
            raise ValueError(f"{elem.name} elements times {scale.name} scales need {prec} bits; "
                             "decoding must be exact in float64 (53 bits)")
        for nm, v in (("elem", elem), ("scale", scale), ("block", int(blk)), ("axis", int(self.axis)),
                      ("scale_rounding", rule), ("tensor_scale", ts),
                      ("partial", check_flag(self.partial, "partial"))):
            object.__setattr__(self, nm, v)

    # -- description ---------------------------------------------------------------------
    kind = "block"

    @property
    def bits(self) -> float:
        """Storage bits per element, the block scale amortised (MXFP4: 4.25)."""
        return self.elem.bits + self.scale.bits / self.block

    @property
    def elem_bits(self) -> int:
        return self.elem.bits

    @property
    def scale_bits(self) -> int:
        return self.scale.bits

    @property
    def emax_elem(self) -> int:
        """``floor(log2(elem.max))``: E4M3 8, E5M2 15, E3M2 4, E2M3 2, E2M1 2, INT8 0."""
        return math.floor(math.log2(self.elem.max))

    @property
    def max(self) -> float:
        """Largest magnitude a block can hold (``elem.max * scale.max``, before any tensor scale)."""
        return self.elem.max * self.scale.max

    @property
    def min_subnormal(self) -> float:
        """Smallest positive value (``elem.min_subnormal`` times the smallest scale)."""
        return self.elem.min_subnormal * self.scale.min_subnormal

    @property
    def eps(self) -> float:
        return self.elem.eps

    has_inf = False
    has_zero = True
    default_overflow = "saturate"

    @property
    def has_nan(self) -> bool:
        return self.scale.has_nan

    @property
    def has_negzero(self) -> bool:
        return self.elem.has_negzero

    @property
    def subnormals(self) -> bool:
        return self.elem.subnormals

    def values(self):
        raise TypeError(f"{self.name} is a block format: its values depend on the block scale; "
                        f"see .elem.values() and .scale.values()")

    code_table = values

    @property
    def name(self) -> str:
        """Canonical name; ``fpsim.parse(fmt.name) == fmt``."""
        base, default_rule = None, "floor" if self.scale.family == "e8m0" else "rne"
        for pname, (e, k, s, r, t) in _PRESETS.items():
            if (parse(e), k, parse(s)) == (self.elem, self.block, self.scale) and (
                    (t is None and self.tensor_scale is None)
                    or (t is not None and parse(t) == self.tensor_scale)):
                base, default_rule = pname, r
                break
        opts = []
        if base is None:
            opts = [self.elem.name, str(self.block), self.scale.name]
            if self.tensor_scale is not None:
                opts.append(f"tensor={self.tensor_scale.name}")
            base = "block"
        if self.scale_rounding != default_rule:
            opts.append(f"scale_rounding={self.scale_rounding}")
        if self.axis != -1:
            opts.append(f"axis={self.axis}")
        if not self.partial:
            opts.append("partial=false")
        return base + (f"[{','.join(opts)}]" if opts else "")

    def __repr__(self) -> str:
        args = [repr(self.elem.name), str(self.block), repr(self.scale.name)]
        if self.axis != -1:
            args.append(f"axis={self.axis}")
        if self.scale_rounding != ("floor" if self.scale.family == "e8m0" else "rne"):
            args.append(f"scale_rounding={self.scale_rounding!r}")
        if self.tensor_scale is not None:
            args.append(f"tensor_scale={self.tensor_scale.name!r}")
        if not self.partial:
            args.append("partial=False")
        return f"BlockFormat({', '.join(args)})"

    def replace(self, **changes) -> "BlockFormat":
        """Copy with some fields changed.

        >>> import fpsim
        >>> fpsim.parse("mxfp4").replace(scale_rounding="rceil").name
        'mxfp4[scale_rounding=rceil]'
        """
        d = dict(elem=self.elem, block=self.block, scale=self.scale, axis=self.axis,
                 scale_rounding=self.scale_rounding, tensor_scale=self.tensor_scale,
                 partial=self.partial)
        if "scale" in changes and "scale_rounding" not in changes:
            d["scale_rounding"] = None
        d.update(changes)
        return BlockFormat(**d)

    # -- behaviour (reached through fpsim.quantize / encode / decode) ----------------------
    def _quantize(self, x, *, axis=None, rounding="rne", overflow=None, subnormals=None,
                  daz=False, nan=None, seed=None, srbits=None):
        _check_elem_opts(overflow, nan, daz, subnormals)
        arr, restore, shape, dt = _block_input(x)
        res = _run(self, arr, self.axis if axis is None else axis, rounding, subnormals, seed,
                   srbits, want_codes=False)
        out = _to_dtype(res[0], self, dt)
        _check_range(out, arr, res[1], self)
        return restore(out.reshape(shape))

    def _encode(self, x, *, axis=None, rounding="rne", overflow=None, subnormals=None,
                daz=False, nan=None, seed=None, srbits=None):
        _check_elem_opts(overflow, nan, daz, subnormals)
        arr, _, shape, _ = _block_input(x)
        ax = self.axis if axis is None else axis
        ecodes, scales, g = _run(self, arr, ax, rounding, subnormals, seed, srbits, want_codes=True)
        ecodes = ecodes.reshape(shape)
        scodes = _r.encode(scales, self.scale)
        tcode = None if g is None else _r.encode(np.array([g]), self.tensor_scale)[0]
        return BlockCodes(ecodes, scodes, tcode, _norm_axis(ax, len(shape)))

    def _decode(self, codes, *, dtype=np.float64, axis=None):
        if not isinstance(codes, (tuple, list)) or len(codes) != 2:
            raise TypeError(f"decoding {self.name} needs (element codes, scale codes) as returned "
                            f"by fpsim.encode, got {type(codes).__name__}")
        ecodes, scodes = np.asarray(codes[0]), np.asarray(codes[1])
        if axis is None:
            axis = getattr(codes, "axis", self.axis)
        shape = ecodes.shape if ecodes.ndim else (1,)
        ax = _norm_axis(axis, len(shape))
        A, L, B = _layout(shape, ax)
        nb = -(-L // self.block)
        sshape = shape[:ax] + (nb,) + shape[ax + 1:]
        if scodes.shape != sshape:
            raise ValueError(f"scale codes have shape {scodes.shape}; {self.name} along axis {ax} of "
                             f"element codes {shape} needs {sshape}")
        ev = _r.decode(ecodes.reshape(shape), self.elem).reshape(A, L, B)
        sv = _r.decode(scodes, self.scale).reshape(A, nb, B)
        if self.tensor_scale is not None:
            t = getattr(codes, "tensor_scale", None)
            if t is None:
                raise ValueError(f"{self.name} has a per-tensor scale: pass the BlockCodes that "
                                 "fpsim.encode returned (its .tensor_scale)")
            sv = sv * _r.decode(np.asarray(t), self.tensor_scale)
        full = np.repeat(sv, self.block, axis=1)[:, :L, :]
        with np.errstate(invalid="ignore"):
            out = (ev * full).reshape(ecodes.shape)
        if np.dtype(dtype) != np.float64:
            out = _L.cast_back(out, np.dtype(dtype), self)
        return out[()] if ecodes.ndim == 0 and not isinstance(codes[0], np.ndarray) else out


def _as_fmt(f, what):
    try:
        return as_format(f)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{what}: {e}") from None


def _scale_extra_bits(scale: FloatFormat, rule: str) -> int:
    """Bits a scale adds to the product element * scale (0 for powers of two)."""
    if rule in POW2_RULES or scale.man_bits == 0:
        return 0
    return scale.man_bits + 1


def _check_elem_opts(overflow, nan, daz, subnormals=None):
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


def _block_input(x):
    """(float32/float64 array, restore, shape, the input's dtype)."""
    arr, restore = _L.as_input(x)
    shape, dt = arr.shape, arr.dtype
    if arr.dtype not in (np.float32, np.float64):  # float16 / bfloat16: exact in float32
        arr = arr.astype(np.float32)
    return arr, restore, shape, dt


def _to_dtype(vals, fmt, dt):
    """Cast results back to the input's dtype where the format allows it (exactly)."""
    want = out_dtype(fmt, dt)
    return vals if vals.dtype == want else _L.cast_back(vals, want, fmt)


@functools.lru_cache(maxsize=256)
def _abs_extreme(elem) -> float:
    """Largest element magnitude, the negative side included (MXINT8 holds -2 but max 1.98)."""
    if isinstance(elem, FloatFormat) or elem.bits > 16:
        return float(elem.max) * (1.0 + 2.0**-10)
    return float(np.max(np.abs(elem.values())))


def _check_range(out, arr, scales, fmt):
    """Warn when a quantized value exceeds the range of a float32/float16 result.

    Near the input dtype's largest number a block's value can round past it: scales rounded
    up (ceil, even, rceil, value rules), or an element whose negative range is wider than its
    positive one (MXINT8's -2 times OCP's 2**127). Checked only when the largest scale times
    the largest element magnitude could pass the dtype's maximum (a cheap test on the scales).
    """
    if out.dtype == np.float64 or not np.size(scales):
        return
    sc = np.asarray(scales, dtype=np.float64).reshape(-1)
    smax = float(np.fmax.reduce(sc))  # scales are >= 0; fmax skips NaN
    try:
        dmax = float(np.finfo(out.dtype).max)
    except ValueError:  # bfloat16
        import ml_dtypes
        dmax = float(ml_dtypes.finfo(out.dtype).max)
    if fmt.tensor_scale is None and smax * _abs_extreme(fmt.elem) <= dmax:
        return
    _warn_range(out, arr)


def _warn_range(out, arr):
    """Say so instead of returning a silent inf (see _check_range)."""
    n = int(np.count_nonzero(np.isinf(out.reshape(-1)) & np.isfinite(arr.reshape(-1))))
    if n:
        warnings.warn(f"{n} quantized value(s) exceed the range of {out.dtype} and became inf; "
                      "pass a float64 array to keep them", RuntimeWarning, stacklevel=4)


def _norm_axis(axis, ndim):
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int, got {type(axis).__name__}")
    nd = max(ndim, 1)
    if not -nd <= axis < nd:
        raise ValueError(f"axis={axis} is out of range for a {ndim}-D array (allowed {-nd}..{nd - 1})")
    return int(axis) % nd


def _layout(shape, ax):
    A = int(np.prod(shape[:ax], dtype=np.int64))
    return A, int(shape[ax]), int(np.prod(shape[ax + 1:], dtype=np.int64))


def out_dtype(fmt: BlockFormat, dtype) -> np.dtype:
    """dtype that holds every decoded value exactly: the input's, else float64.

    >>> import numpy as np, fpsim
    >>> fpsim.block.out_dtype(fpsim.parse("mxfp8_e4m3"), np.float32), fpsim.block.out_dtype(fpsim.parse("nvfp4"), np.float32)
    (dtype('float32'), dtype('float64'))
    """
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return dtype
    prec = _precision(fmt.elem) + _scale_extra_bits(fmt.scale, fmt.scale_rounding) + (
        _precision(fmt.tensor_scale) if fmt.tensor_scale is not None else 0)
    return dtype if prec <= _L.DTYPES[dtype].M + 1 else np.dtype(np.float64)


# Smallest element value for float32 lanes: a scaled element below float32's normal range
# (2**-126), which float32 may round, is then far below half of it and rounds to 0 either way.
_F32_LANES_MIN_ELEM = 2.0 ** -100


def _params(fmt: BlockFormat, rounding, subnormals, srbits, g=1.0, clip=1.0, rule=None,
            want_codes=False, dtype=np.float64):
    """(BlockParams, element RoundParams, FastParams, Rne32Params, scale RoundParams, mode)."""
    elem, scale = fmt.elem, fmt.scale
    nan = "propagate" if elem.has_nan else "raise"
    table = _is_table(elem)
    if table:  # elements are rounded by fpsim.quantize in _run_table: options checked there
        eopts = (_L.enum_value(_r.Rounding, rounding, "rounding"),)
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
             _precision(elem) - 1 if table else elem.bits - 2)
    # the branch-free twin of round_bits (same results) where it covers the options
    fp = None if table else _fast_params(ep)
    q = _k.BlockParams(rule=rule, emax_elem=emax, mbits=mbits, max_frac=max_frac, smin=smin,
                       smax=smax, zero_scale=zero_scale, div=float(elem.max * g), clip=float(clip),
                       g=float(g), elem_nan=np.nan if elem.has_nan else 0.0,
                       want_codes=int(want_codes), fast=int(fp is not None), f32=0)
    if table:
        return q, None, None, None, sp, eopts[0]
    if fp is None:  # a placeholder of the right type (unused)
        fp = _fast_params(_L.round_params(elem, _L.F64, *_L.options(
            elem, "rne", "saturate", nan, subnormals, False, None)))
    # float32 lanes (block_round._f32_ok): float32 in and out, rne, a float32 fast path
    p32 = None
    if (np.dtype(dtype) == np.float32 and not want_codes and eopts[0] is _r.Rounding.RNE
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


def _tensor_scale(fmt: BlockFormat, arr) -> float:
    """Per-tensor scale ``amax / (elem.max * scale.max)`` rounded into ``fmt.tensor_scale``."""
    flat = arr.reshape(-1)
    amax = 0.0
    for i in range(0, flat.size, BLOCK_CHUNK):  # in pieces: no |x| copy of the whole array
        a = np.abs(flat[i:i + BLOCK_CHUNK])
        amax = max(amax, float(np.max(a, where=np.isfinite(a), initial=0.0)))
    if amax == 0.0:
        return 1.0
    ts = fmt.tensor_scale
    q = _k.BlockParams(rule=_C.RULE_VALUE, emax_elem=0, mbits=0, max_frac=0, smin=0, smax=0,
                       zero_scale=1.0, div=fmt.elem.max * fmt.scale.max, clip=1.0, g=1.0,
                       elem_nan=0.0, want_codes=0, fast=0, f32=0)
    sp = _L.round_params(ts, _L.F64, *_L.options(ts, "rne", "saturate", "propagate", None,
                                                    False, None))
    out = np.empty(1)
    _k.scales_from_amax(np.array([amax]), np.zeros(1, np.int64), q, sp, out)
    g = float(out[0])
    return g if g > 0 else ts.min_subnormal


def _run(fmt: BlockFormat, arr, axis, rounding, subnormals, seed, srbits, want_codes,
         given=None, gstride=(0, 0, 0), rule=None, clip=1.0, block=None, g=None):
    """Quantize ``arr``; returns (values, scales) or (element codes, scales, tensor scale)."""
    shape = arr.shape if arr.ndim else (1,)
    ax = _norm_axis(axis, len(shape))
    A, L, B = _layout(shape, ax)
    k = fmt.block if block is None else block
    if not fmt.partial and L % k:
        raise ValueError(f"{fmt.name}: block={k} does not divide the length {L} of axis {ax} "
                         "(partial=False); pad the array or allow a partial last block")
    arr = np.ascontiguousarray(arr)  # (a copy only for a strided view) the pieces are views
    if g is None:
        g = _tensor_scale(fmt, arr) if fmt.tensor_scale is not None else 1.0
    table = _is_table(fmt.elem)
    odt = out_dtype(fmt, arr.dtype)
    if table:
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


def _run_grid(fmt, arr, layout, k, rounding, subnormals, seed, srbits, want_codes, given,
              gstride, rule, clip, g, odt, dest=None):
    """:func:`_run` for float and integer/fixed-point elements, one kernel call: (values in
    ``odt`` or element float64 bits, flat scales). ``dest``: a flat contiguous ``odt`` array
    the values are written to (a piece of the result)."""
    A, L, B = layout
    q, ep, fp, p32, sp, mode = _params(fmt, rounding, subnormals, srbits, g=g, clip=clip,
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
            err = _k.block_round_rows(x, out, ebits, scales, given, gstr, A, L, k, q, ep, fp, p32,
                                      sp, sd)
        else:
            err = _k.block_round_cols(x, out, ebits, scales, given, gstr, A, L, B, k, q, ep, fp,
                                      p32, sp, sd)
        if err:
            raise ValueError(f"{fmt.elem.name} has no NaN but {err} NaN input(s) met a given scale")
    return (ebits if want_codes else out), scales


#: Elements per piece of a block format with table elements (whole blocks): bounds the float64
#: temporaries of :func:`_run_table`.
TABLE_BLOCK_CHUNK = 1 << 16
#: Elements per piece of the other block formats when they make codes or a wider result.
BLOCK_CHUNK = 1 << 17


def _run_chunked(fmt, arr, layout, k, rounding, want_codes, one, chunk, given, gstride, odt):
    """``one`` (:func:`_run_grid` or :func:`_run_table`) on pieces of whole blocks (rows of A,
    runs of blocks along the axis, or columns of one block when a block row is wider than a
    piece), so that temporaries stay small: every block is computed from its own elements (or
    its given scale), so the pieces give the same bits as one call. Element codes are made
    piece by piece. Stochastic rounding, whose random stream follows the element index of the
    whole array, runs in one piece (``chunk=None``: one piece too)."""
    A, L, B = layout
    nb = -(-L // k) if L else 0
    n = A * L * B
    cdt = _r.code_dtype(fmt.elem)
    sr = _L.enum_value(_r.Rounding, rounding, "rounding") is _r.Rounding.STOCHASTIC
    x3 = arr.reshape(A, L, B)
    if chunk is None or n <= chunk or sr:
        v, s = one(x3, layout, given)
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
                lay = (a1 - a0, l1 - l0, b1 - b0)
                dest = vals[a0:a1, l0:l1, b0:b1]
                if want_codes or not dest.flags.c_contiguous:
                    dest = None
                else:  # the values go straight into the result (grid elements)
                    dest = dest.reshape(-1)
                v, s = one(piece, lay, gv, dest)
                if want_codes:
                    v = _elem_codes(v, fmt.elem)
                elif v.dtype != odt:
                    v = _L.cast_back(v, odt, fmt)
                if v is not dest:
                    vals[a0:a1, l0:l1, b0:b1] = v.reshape(lay)
                sval[a0:a1, j0:j1, b0:b1] = s.reshape(a1 - a0, j1 - j0, b1 - b0)
    return vals.reshape(-1), sval


def _run_table(fmt, arr, layout, k, rounding, seed, srbits, want_codes, given, gstride, rule,
               clip, g):
    """:func:`_run` for table elements (dINT, codebooks such as NF4), with numpy and
    :func:`fpsim.quantize`: the same block scales (kernel ``scales_from_amax``), then each
    element ``x / scale`` rounded to the table. A power-of-two scale divides exactly; any
    other is the quotient rounded to odd in float64 (``block_round.div_odd``), which the table
    rounding then rounds correctly for tables whose midpoints fit in 52 bits (dINT, NF4's
    float32 values) — so the element is the exact quotient rounded once."""
    A, L, B = layout
    nb = -(-L // k) if L else 0
    x = np.asarray(arr, dtype=np.float64).reshape(A, L, B)
    q, _, _, _, sp, _ = _params(fmt, rounding, None, srbits, g=g, clip=clip, rule=rule,
                                want_codes=want_codes)
    if given is None:
        xp = np.pad(x, ((0, 0), (0, nb * k - L), (0, 0))) if nb * k != L else x
        a = np.abs(xp.reshape(A, nb, k, B))
        fin = np.isfinite(a)
        bad = (~fin.all(axis=2)).astype(np.int64)
        amax = np.where(fin, a, 0.0).max(axis=2, initial=0.0)
        sval = np.empty(A * nb * B)
        if sval.size:
            _k.scales_from_amax(np.ascontiguousarray(amax).reshape(-1), bad.reshape(-1), q, sp,
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
        _k.div_odd(xs, ts, yv)
    y[ok] = yv
    ev = np.asarray(_r.quantize(y, fmt.elem, rounding=rounding, seed=seed, srbits=srbits),
                    dtype=np.float64)
    if want_codes:
        ev = np.where(nan_blk, np.nan if fmt.elem.has_nan else 0.0, ev)
        return np.ascontiguousarray(ev).reshape(-1).view(np.uint64), sval.reshape(-1)
    with np.errstate(invalid="ignore"):
        out = np.where(nan_blk, np.nan, ev * np.where(ok, tot, 0.0))
    return out.reshape(-1), sval.reshape(-1)


def _elem_codes(ebits, elem):
    """Codes of element values given as float64 bit patterns."""
    if _is_table(elem):
        return _r.encode(ebits.view(np.float64), elem)
    cdt = _r.code_dtype(elem)
    if isinstance(elem, FixedFormat):
        k = (ebits.view(np.float64) * math.ldexp(1.0, elem.frac_bits)).astype(np.int64)
        return (k & (2**elem.bits - 1)).astype(cdt)
    out = np.empty(ebits.size, dtype=np.int64)
    codes_from_bits(ebits, out, _L.code_params(elem, _L.F64))
    return out.astype(cdt)


# ---------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------

_NAME_RE = re.compile(r"^([a-z0-9_]+)(?:\[(.*)\])?$")


def _parse_block(key: str) -> BlockFormat:
    m = _NAME_RE.match(key)
    if not m:
        raise ValueError(f"cannot read the block format name {key!r}")
    base, inner = m.group(1), m.group(2)
    base = _PRESET_SYNONYMS.get(base, base)
    parts = [p.strip() for p in inner.split(",")] if inner else []
    kw = {}
    if base == "block":
        if len(parts) < 3 or any("=" in p for p in parts[:3]):
            raise ValueError(f"{key!r}: write block[ELEM,BLOCK,SCALE,option=value,...], "
                             "e.g. block[e2m1,16,e4m3,tensor=fp32]")
        e, k, s = parts[:3]
        k = read_int_option(key, "block size", k)
        parts = parts[3:]
    elif base in _PRESETS:
        e, k, s, r, t = _PRESETS[base]
        kw = {"scale_rounding": r, "tensor_scale": t}
    else:
        raise ValueError(f"unknown block format {key!r}; known: {', '.join(_PRESETS)} or block[...]")
    for p in parts:
        name, _, val = p.partition("=")
        if name == "axis":
            kw["axis"] = read_int_option(key, name, val.replace("_", "-"))
        elif name == "scale_rounding":
            kw["scale_rounding"] = val
        elif name == "tensor":
            kw["tensor_scale"] = val
        elif name == "partial":
            if val not in ("true", "false"):
                raise ValueError(f"{key!r}: partial={val!r} is not allowed; write partial=true or "
                                 "partial=false")
            kw["partial"] = val == "true"
        else:
            raise ValueError(f"{key!r}: unknown option {name!r} (allowed: axis, scale_rounding, "
                             "tensor, partial)")
    return BlockFormat(e, k, s, **kw)


for _n in list(_PRESETS) + list(_PRESET_SYNONYMS) + ["block["]:
    register_name(_n, _parse_block)


# ---------------------------------------------------------------------------------------
# Packing
# ---------------------------------------------------------------------------------------

def _bits_of(bits_or_fmt) -> int:
    if isinstance(bits_or_fmt, (int, np.integer)) and not isinstance(bits_or_fmt, (bool, np.bool_)):
        b = int(bits_or_fmt)
    elif not isinstance(bits_or_fmt, (str, Format)):
        raise TypeError(f"bits={bits_or_fmt!r}: pass an int 1..8 or a format (e.g. 4 or 'e2m1')")
    else:
        f = as_format(bits_or_fmt)
        b = f.elem.bits if isinstance(f, BlockFormat) else f.bits
    if not 1 <= b <= 8:
        raise ValueError(f"pack/unpack handle codes of 1..8 bits, got {b}")
    return b


def pack(codes, bits) -> np.ndarray:
    """Pack codes of ``bits`` bits (or of a format's element width) densely into bytes.

    The codes are taken in C order; code ``i`` occupies bits ``i*bits ..`` counting from the
    least significant bit of byte 0 (two FP4/INT4 codes per byte: the first in the low nibble).

    >>> import numpy as np, fpsim
    >>> fpsim.pack(np.array([1, 2, 15], dtype=np.uint8), 4).tolist()
    [33, 15]
    >>> fpsim.unpack(fpsim.pack(np.array([1, 2, 15], dtype=np.uint8), "e2m1"), "e2m1", 3).tolist()
    [1, 2, 15]
    """
    b = _bits_of(bits)
    c = _r.as_codes(codes)
    _r.check_code_range(c, b, f"{b}-bit codes")  # on the values as given, before any cast
    c = c.reshape(-1).astype(np.uint8)
    if b == 8:
        return c.copy()
    if b == 4:  # fast path: two codes per byte
        if c.size % 2:
            c = np.concatenate([c, np.zeros(1, np.uint8)])
        return (c[0::2] | (c[1::2] << 4)).astype(np.uint8)
    bitsarr = ((c[:, None] >> np.arange(b, dtype=np.uint8)) & 1).astype(np.uint8)
    return np.packbits(bitsarr.reshape(-1), bitorder="little")


def _shape_of(shape) -> tuple:
    """A shape of non-negative ints (no -1: the number of codes is not in the bytes)."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) else shape
    try:
        dims = tuple(dims)
    except TypeError:
        raise TypeError(f"shape={shape!r}: pass an int or a tuple of ints") from None
    for d in dims:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"shape={shape!r}: every dimension must be an int, got {d!r}")
        if d < 0:
            raise ValueError(f"shape={shape!r}: dimensions must be >= 0 (the number of codes "
                             "cannot be inferred from the bytes: give the full shape)")
    return tuple(int(d) for d in dims)


def unpack(packed, bits, shape) -> np.ndarray:
    """Inverse of :func:`pack`: the ``uint8`` codes, reshaped to ``shape``.

    >>> import numpy as np, fpsim
    >>> fpsim.unpack(np.array([33, 15], dtype=np.uint8), 4, (3,)).tolist()
    [1, 2, 15]
    """
    b = _bits_of(bits)
    if isinstance(packed, np.ma.MaskedArray):
        raise TypeError("packed is a masked array: fpsim would drop its mask; pass a plain array")
    p = np.asarray(packed)
    if p.dtype != np.uint8:
        raise TypeError(f"packed data must be uint8, got {p.dtype}")
    shape = _shape_of(shape)
    n = int(np.prod(shape, dtype=np.int64))
    need = -(-n * b // 8)
    if p.size < need:
        raise ValueError(f"{p.size} bytes hold fewer than {n} codes of {b} bits (need {need})")
    p = p.reshape(-1)
    if b == 8:
        return p[:n].copy().reshape(shape)
    if b == 4:
        out = np.empty(2 * need, np.uint8)
        out[0::2] = p[:need] & 15
        out[1::2] = p[:need] >> 4
        return out[:n].reshape(shape)
    bitsarr = np.unpackbits(p[:need], bitorder="little", count=n * b).reshape(n, b)
    return (bitsarr << np.arange(b, dtype=np.uint8)).sum(axis=1, dtype=np.uint8).reshape(shape)


# ---------------------------------------------------------------------------------------
# Plot
# ---------------------------------------------------------------------------------------

def block_errors(x, fmt, *, axis=None, rounding="rne") -> np.ndarray:
    """Relative RMS error of every block: ``||q - x|| / ||x||`` per block (NaN for zero blocks).

    Returns an array shaped like the scale codes.

    >>> import numpy as np, fpsim
    >>> x = np.linspace(-1, 1, 64)
    >>> fpsim.block.block_errors(x, "mxfp8_e4m3").shape
    (2,)
    """
    fmt = as_format(fmt)
    if not isinstance(fmt, BlockFormat):
        raise TypeError(f"block_errors needs a block format, got {fmt.name}")
    x = np.asarray(x, dtype=np.float64)
    ax = _norm_axis(fmt.axis if axis is None else axis, x.ndim)
    qx = fmt._quantize(x, axis=ax, rounding=rounding)
    shape = x.shape
    A, L, B = _layout(shape, ax)
    nb = -(-L // fmt.block)
    pad = nb * fmt.block - L
    d2 = np.pad(((qx - x) ** 2).reshape(A, L, B), ((0, 0), (0, pad), (0, 0)))
    x2 = np.pad((x ** 2).reshape(A, L, B), ((0, 0), (0, pad), (0, 0)))
    num = d2.reshape(A, nb, fmt.block, B).sum(axis=2)
    den = x2.reshape(A, nb, fmt.block, B).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.sqrt(num / den)
    return r.reshape(shape[:ax] + (nb,) + shape[ax + 1:])


def plot_block_error(x, formats=("mxfp4", "mxfp6_e2m3", "mxfp8_e4m3"), *, axis=None,
                     rounding="rne", title=None):
    """A matplotlib Figure of the relative RMS error of each block of ``x`` for ``formats``.

    One line per format (and per fibre along the blocked axis of a multi-dimensional ``x``),
    the block's position on the x axis. The figure is independent of pyplot; save it with
    ``fig.savefig("err.png")``.

    >>> import numpy as np, fpsim
    >>> fig = fpsim.block.plot_block_error(np.random.default_rng(0).standard_normal(256), ["mxfp4"])
    >>> type(fig).__name__
    'Figure'
    """
    from matplotlib.figure import Figure

    if isinstance(formats, (str, Format)):
        formats = [formats]
    formats = [as_format(f).name for f in formats]
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    ax = fig.subplots()
    for f in formats:
        f = as_format(f)
        e = block_errors(x, f, axis=axis, rounding=rounding)
        e = np.moveaxis(e, f.axis if axis is None else axis, -1).reshape(-1, e.shape[
            f.axis if axis is None else axis])
        pos = np.arange(e.shape[1]) * f.block  # blocks of different sizes share the x axis
        for r, row in enumerate(e):
            ax.plot(pos, row, ".-", ms=3, lw=0.8, color=f"C{formats.index(f.name) if f.name in formats else 0}",
                    label=f"{f.name} (median {np.nanmedian(e):.3g})" if r == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("position of the block's first element along the axis")
    ax.set_ylabel("relative RMS error of the block")
    ax.set_title(title or "Per-block quantization error")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig
