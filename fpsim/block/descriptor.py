"""Block format descriptors: :class:`BlockFormat`, :class:`BlockCodes`, the named presets
(OCP MX v1.0 and NVFP4) and the name grammar ``block[ELEM,BLOCK,SCALE,option=value,...]``.

A new preset (an MX variant, say) is one entry of ``_PRESETS`` (and any other spellings in
``_PRESET_SYNONYMS``): :func:`fpsim.parse` then reads the name and ``BlockFormat.name``
gives it back.

>>> import fpsim
>>> fpsim.parse("block[e2m1,16,e4m3,tensor=fp32]") == fpsim.parse("nvfp4")
True
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .. import lowering as _L
from .. import rounding as _R
from ..formats import (FixedFormat, FloatFormat, Format, as_format, check_flag, parse,
                       read_int_option, register_name)
from . import engine as _EN
from .rules import SCALE_ROUNDINGS, default_scale_rounding, is_table, precision, scale_extra_bits

__all__ = ["BlockFormat", "BlockCodes", "MX_FORMATS", "ElementOnly"]

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


class ElementOnly:
    """A class attribute that reads as absent: hides a method that only element formats
    have (``values``, ``code_table``) but that the base :class:`~fpsim.Format` may still
    define, so that ``hasattr(fmt, "values")`` is False for block and scaled formats (their
    values depend on the scale). fpsim-internal; used by :mod:`fpsim.scaling` too.

    >>> import fpsim
    >>> hasattr(fpsim.parse("mxfp4"), "values"), hasattr(fpsim.parse("mxfp4").elem, "values")
    (False, True)
    """

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        who = owner.__name__ if obj is None else obj.name
        raise AttributeError(f"{who} has no {self.name}: the values of a {owner.kind} format "
                             f"depend on its scales; see .elem.{self.name}() and .scale.values()")


class BlockCodes(tuple):
    """``(element codes, scale codes)`` of a block-encoded array, as :func:`fpsim.encode`
    returns it. ``tensor_scale`` holds the per-tensor scale code (NVFP4) or ``None``;
    ``axis`` the blocked axis; ``fmt`` the format that encoded it (``None`` when built by
    hand). Unpacks like a pair. Block-scaled matrix-engine models take these codes directly
    as operands of :func:`fpsim.dot` and :func:`fpsim.matmul`.

    >>> import numpy as np, fpsim
    >>> e, s = fpsim.encode(np.array([1.0, -3.0, 0.5, 6.0]), "mxfp4")
    >>> e.tolist(), s.tolist()
    ([2, 13, 1, 7], [127])
    """

    def __new__(cls, elements, scales, tensor_scale=None, axis=-1, fmt=None):
        self = super().__new__(cls, (elements, scales))
        self.tensor_scale = tensor_scale
        self.axis = axis
        self.fmt = fmt
        return self

    @property
    def elements(self) -> np.ndarray:
        return self[0]

    @property
    def scales(self) -> np.ndarray:
        return self[1]


def _as_fmt(f, what):
    try:
        return as_format(f)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{what}: {e}") from None


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

    A block format has no ``values()``: its values depend on the block scale (see
    ``.elem.values()`` and ``.scale.values()``).

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
        if is_table(elem):
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
            rule = default_scale_rounding(scale)
        rule = str(rule).lower()
        if rule not in SCALE_ROUNDINGS:
            raise ValueError(f"scale_rounding={self.scale_rounding!r} is not allowed; choose one of "
                             f"{', '.join(repr(r) for r in SCALE_ROUNDINGS)}")
        ts = self.tensor_scale
        if ts is not None:
            ts = _as_fmt(ts, "tensor_scale")
            if not isinstance(ts, FloatFormat):
                raise TypeError(f"tensor_scale must be a float format such as fp32, got {ts.name}")
        prec = precision(elem) + scale_extra_bits(scale, rule) + (
            precision(ts) if ts is not None else 0)
        if prec > 53:
            raise ValueError(f"{elem.name} elements times {scale.name} scales need {prec} bits; "
                             "decoding must be exact in float64 (53 bits)")
        for nm, v in (("elem", elem), ("scale", scale), ("block", int(blk)), ("axis", int(self.axis)),
                      ("scale_rounding", rule), ("tensor_scale", ts),
                      ("partial", check_flag(self.partial, "partial"))):
            object.__setattr__(self, nm, v)

    # -- description ---------------------------------------------------------------------
    kind = "block"
    blocked = True  # quantize/encode/decode take the raw input and axis (fpsim.formats.Format)
    values = ElementOnly()
    code_table = ElementOnly()

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

    @property
    def name(self) -> str:
        """Canonical name; ``fpsim.parse(fmt.name) == fmt``."""
        base, default_rule = None, default_scale_rounding(self.scale)
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
        if self.scale_rounding != default_scale_rounding(self.scale):
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
        _EN.check_elem_opts(overflow, nan, daz, subnormals)
        arr, restore, shape, dt = _EN.block_input(x)
        res = _EN.run(self, arr, self.axis if axis is None else axis, rounding, subnormals,
                         seed, srbits, want_codes=False)
        out = _EN.to_dtype(res[0], self, dt)
        _EN.check_range(out, arr, res[1], self)
        return restore(out.reshape(shape))

    def _encode(self, x, *, axis=None, rounding="rne", overflow=None, subnormals=None,
                daz=False, nan=None, seed=None, srbits=None):
        _EN.check_elem_opts(overflow, nan, daz, subnormals)
        arr, _, shape, _ = _EN.block_input(x)
        ax = self.axis if axis is None else axis
        ecodes, scales, g = _EN.run(self, arr, ax, rounding, subnormals, seed, srbits,
                                       want_codes=True)
        ecodes = ecodes.reshape(shape)
        scodes = _R.encode(scales, self.scale)
        tcode = None if g is None else _R.encode(np.array([g]), self.tensor_scale)[0]
        return BlockCodes(ecodes, scodes, tcode, _EN.norm_axis(ax, len(shape)), self)

    def _decode(self, codes, *, dtype=np.float64, axis=None):
        if not isinstance(codes, (tuple, list)) or len(codes) != 2:
            raise TypeError(f"decoding {self.name} needs (element codes, scale codes) as returned "
                            f"by fpsim.encode, got {type(codes).__name__}")
        ecodes, scodes = np.asarray(codes[0]), np.asarray(codes[1])
        if axis is None:
            axis = getattr(codes, "axis", self.axis)
        shape = ecodes.shape if ecodes.ndim else (1,)
        ax = _EN.norm_axis(axis, len(shape))
        A, L, B = _EN.layout(shape, ax)
        nb = -(-L // self.block)
        sshape = shape[:ax] + (nb,) + shape[ax + 1:]
        if scodes.shape != sshape:
            raise ValueError(f"scale codes have shape {scodes.shape}; {self.name} along axis {ax} of "
                             f"element codes {shape} needs {sshape}")
        ev = _R.decode(ecodes.reshape(shape), self.elem).reshape(A, L, B)
        sv = _R.decode(scodes, self.scale).reshape(A, nb, B)
        if self.tensor_scale is not None:
            t = getattr(codes, "tensor_scale", None)
            if t is None:
                raise ValueError(f"{self.name} has a per-tensor scale: pass the BlockCodes that "
                                 "fpsim.encode returned (its .tensor_scale)")
            sv = sv * _R.decode(np.asarray(t), self.tensor_scale)
        full = np.repeat(sv, self.block, axis=1)[:, :L, :]
        with np.errstate(invalid="ignore"):
            out = (ev * full).reshape(ecodes.shape)
        if np.dtype(dtype) != np.float64:
            out = _L.cast_back(out, np.dtype(dtype), self)
        return out[()] if ecodes.ndim == 0 and not isinstance(codes[0], np.ndarray) else out


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
