"""Generic scaling: per-tensor, per-channel and per-group scales, and delayed scaling.

A :class:`ScaledFormat` stores elements of ``elem`` and one scale per tensor, per channel
(one index of ``axis``, all other axes reduced) or per group of ``group`` consecutive
elements along ``axis``. The scale of a set of values with largest magnitude ``amax`` is
``clip * amax / elem.max`` rounded once into the ``scale`` format (``scale_rounding``:
``rne`` default, or any mode of :data:`fpsim.block.SCALE_ROUNDINGS`, e.g. ``floor`` for
power-of-two scales); ``clip < 1`` trades clipping of outliers for resolution (values beyond
``clip * amax`` saturate). A set whose amax is 0 gets a zero scale and decodes to zeros; a
NaN or inf in it makes its scale NaN. ``clip * amax`` is evaluated in float64.

Elements are the exact quotient ``x / scale`` rounded once (any rounding mode) and
saturated; values decode as ``element * scale`` exactly (float64 when the input's dtype
cannot hold the products).

:class:`DelayedScaling` is the FP8 training recipe (Transformer Engine's *delayed scaling*):
the scale used for step ``t`` comes from the amax history of the previous steps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import numpy as np

from . import lowering as _L
from . import rounding as _R
from .block import engine as _EN
from .block.descriptor import BlockCodes, BlockFormat, ElementOnly
from .block.rules import default_scale_rounding
from .formats import Format, as_format, read_int_option, register_name
from .kernels import _modes as _C
from .kernels._lazy import lazy_module

_K = lazy_module("block_round")  # numba loads on first use

__all__ = ["ScaledFormat", "ScaledTensor", "scale_tensor", "DelayedScaling", "GRANULARITIES"]

#: Scale granularities of :class:`ScaledFormat`.
GRANULARITIES = ("tensor", "channel", "group")

_CHUNK = 4096  # per-tensor scaling: elements per parallel task


class ScaledTensor(NamedTuple):
    """Result of :func:`scale_tensor`: dequantized ``values`` and the ``scales`` used."""

    values: np.ndarray
    scales: np.ndarray


@dataclass(frozen=True, repr=False)
class ScaledFormat(Format):
    """Elements of ``elem`` with one ``scale``-format scale per tensor, channel or group.

    Parameters
    ----------
    elem : Format or str
        Element format (float, integer, dINT or codebook such as ``nf4``).
    granularity : str
        ``"tensor"``, ``"channel"`` (one scale per index of ``axis``) or ``"group"``
        (``group`` consecutive elements along ``axis``).
    scale : Format or str
        Scale format (``fp32``, ``bf16``, ``e8m0``, ``e4m3``...).
    axis : int
        Channel axis or grouped axis.
    group : int, optional
        Group size (``granularity="group"`` only).
    scale_rounding : str, optional
        ``rne`` (default for scales with a mantissa), ``floor`` (default for ``e8m0``), ...
    clip : float
        Clipping ratio in (0, 1]: the scale is taken from ``clip * amax``.

    A scaled format has no ``values()``: its values depend on the scales (see
    ``.elem.values()``).

    Examples
    --------
    >>> import numpy as np, fpsim
    >>> f = fpsim.ScaledFormat("int8", "channel", axis=0)
    >>> f.name
    'scaled[int8,channel,fp32,axis=0]'
    >>> x = np.array([[1.0, -0.5], [100.0, 3.0]])
    >>> fpsim.quantize(x, f)  # row 0: scale fp32(1/127), row 1: fp32(100/127)
    array([[ 1.        , -0.50393701],
           [99.99999774,  3.14960623]])
    """

    elem: Format
    granularity: str = "tensor"
    scale: Format = "fp32"
    axis: int = field(default=-1, kw_only=True)
    group: Optional[int] = field(default=None, kw_only=True)
    scale_rounding: Optional[str] = field(default=None, kw_only=True)
    clip: float = field(default=1.0, kw_only=True)

    def __post_init__(self):
        gran = str(self.granularity).lower()
        if gran not in GRANULARITIES:
            raise ValueError(f"granularity={self.granularity!r}: choose one of {', '.join(GRANULARITIES)}")
        grp = self.group
        if gran == "group":
            if isinstance(grp, bool) or not isinstance(grp, (int, np.integer)) or grp < 1:
                raise ValueError(f"granularity='group' needs group=<positive int>, got {grp!r}")
            grp = int(grp)
        elif grp is not None:
            raise ValueError(f"group={grp!r} only applies to granularity='group'")
        clip = float(self.clip)
        if not 0.0 < clip <= 1.0:
            raise ValueError(f"clip={self.clip!r}: the clipping ratio must lie in (0, 1]")
        # the block descriptor does the validation of elem/scale/rounding/axis
        bf = BlockFormat(self.elem, grp or 1, self.scale, axis=self.axis,
                         scale_rounding=self.scale_rounding)
        for nm, v in (("elem", bf.elem), ("granularity", gran), ("scale", bf.scale),
                      ("axis", bf.axis), ("group", grp), ("scale_rounding", bf.scale_rounding),
                      ("clip", clip)):
            object.__setattr__(self, nm, v)

    kind = "scaled"
    blocked = True  # quantize/encode/decode take the raw input and axis (fpsim.formats.Format)
    values = ElementOnly()
    code_table = ElementOnly()
    has_inf = False
    has_zero = True
    default_overflow = "saturate"

    @property
    def _block(self) -> BlockFormat:
        return BlockFormat(self.elem, self.group or 1, self.scale, axis=self.axis,
                           scale_rounding=self.scale_rounding)

    @property
    def bits(self) -> int:
        """Element bits (the scales are not amortised: their count depends on the shape)."""
        return self.elem.bits

    @property
    def max(self) -> float:
        return self.elem.max * self.scale.max

    @property
    def eps(self) -> float:
        return self.elem.eps

    @property
    def has_nan(self) -> bool:
        return self.scale.has_nan

    @property
    def name(self) -> str:
        opts = [self.elem.name, self.granularity, self.scale.name]
        if self.group is not None:
            opts.append(f"group={self.group}")
        if self.granularity != "tensor" and self.axis != -1:
            opts.append(f"axis={self.axis}")
        if self.scale_rounding != default_scale_rounding(self.scale):
            opts.append(f"scale_rounding={self.scale_rounding}")
        if self.clip != 1.0:
            opts.append(f"clip={self.clip!r}")
        return "scaled[" + ",".join(opts) + "]"

    def __repr__(self) -> str:
        args = [repr(self.elem.name), repr(self.granularity), repr(self.scale.name)]
        if self.axis != -1:
            args.append(f"axis={self.axis}")
        if self.group is not None:
            args.append(f"group={self.group}")
        if self.scale_rounding != default_scale_rounding(self.scale):
            args.append(f"scale_rounding={self.scale_rounding!r}")
        if self.clip != 1.0:
            args.append(f"clip={self.clip!r}")
        return f"ScaledFormat({', '.join(args)})"

    # -- behaviour -------------------------------------------------------------------------
    def _quantize(self, x, *, axis=None, rounding="rne", overflow=None, subnormals=None,
                  daz=False, nan=None, seed=None, srbits=None):
        _EN.check_elem_opts(overflow, nan, daz, subnormals)
        return scale_tensor(x, self, axis=axis, rounding=rounding, subnormals=subnormals,
                            seed=seed, srbits=srbits).values

    def _encode(self, x, *, axis=None, rounding="rne", overflow=None, subnormals=None,
                daz=False, nan=None, seed=None, srbits=None):
        _EN.check_elem_opts(overflow, nan, daz, subnormals)
        ecodes, scales, shape, ax = _apply(x, self, axis, None, None, rounding, subnormals, seed,
                                           srbits, want_codes=True)
        ecodes = ecodes.reshape(shape)
        scodes = _R.encode(scales, self.scale).reshape(np.shape(scales))  # keep 0-d
        return BlockCodes(ecodes, scodes, None, ax, self)

    def _decode(self, codes, *, dtype=np.float64, axis=None):
        if not isinstance(codes, (tuple, list)) or len(codes) != 2:
            raise TypeError(f"decoding {self.name} needs (element codes, scale codes) as returned "
                            f"by fpsim.encode, got {type(codes).__name__}")
        ecodes = np.asarray(codes[0])
        if axis is None:
            axis = getattr(codes, "axis", self.axis)
        if self.granularity == "group":
            return _R.decode(codes, self._block, dtype=dtype, axis=axis)
        shape = ecodes.shape if ecodes.ndim else (1,)
        ax = _EN.norm_axis(axis, len(shape))
        sv = _R.decode(np.asarray(codes[1]), self.scale)
        want = () if self.granularity == "tensor" else (shape[ax],)
        if sv.shape != want:
            raise ValueError(f"scale codes have shape {sv.shape}; {self.name} on element codes "
                             f"{shape} needs {want}")
        if self.granularity == "channel":
            sv = sv.reshape((-1,) + (1,) * (len(shape) - ax - 1))
        ev = _R.decode(ecodes, self.elem)
        with np.errstate(invalid="ignore"):
            out = np.asarray(ev * sv).reshape(ecodes.shape)  # 0-d stays an array
        if np.dtype(dtype) != np.float64:
            out = _L.cast_back(out, np.dtype(dtype), self)
        return out[()] if ecodes.ndim == 0 and not isinstance(codes[0], np.ndarray) else out


def _amax(a, axes):
    """(amax, bad) over ``axes``: bad where a NaN or an inf was met."""
    m = np.max(np.abs(a), axis=axes) if a.size else np.zeros(())
    m = np.asarray(m, dtype=np.float64)
    bad = (~np.isfinite(m)).astype(np.int64)
    return np.where(bad == 1, 0.0, m), bad


def _scales_from(fmt: ScaledFormat, amax, bad):
    bf = fmt._block
    q, _, _, _, sp, _ = _EN.params(bf, "rne", None, None, clip=fmt.clip)
    if q.rule == _C.RULE_VALUE and q.zero_scale != 0.0:
        q = q._replace(zero_scale=0.0) if fmt.scale.has_zero else q
    out = np.empty(amax.size)
    _K.scales_from_amax(np.ascontiguousarray(amax, dtype=np.float64).reshape(-1),
                        np.ascontiguousarray(bad, dtype=np.int64).reshape(-1), q, sp, out)
    return out.reshape(np.shape(amax))


def _given(v, what, sshape, fmt, shape):
    """A given scale or amax as float64, broadcast to the scale shape (or a clear error)."""
    a, _ = _L.real_input(v, what)
    try:
        return np.broadcast_to(a.astype(np.float64), sshape)
    except ValueError:
        raise ValueError(f"{what} has shape {a.shape}; {fmt.name} on an array of shape {shape} "
                         f"needs one {what} per scale: shape {sshape} (or one that broadcasts "
                         "to it)") from None


def _apply(x, fmt: ScaledFormat, axis, scale, amax, rounding, subnormals, seed, srbits,
           want_codes):
    arr, _, shape, dt = _EN.block_input(x)
    nd = len(shape)
    ax = _EN.norm_axis(fmt.axis if axis is None else axis, nd)
    shp = shape if nd else (1,)
    arr = arr.reshape(shp)
    bf = fmt._block
    if fmt.granularity == "group" and scale is None and amax is None:
        res = _EN.run(bf, arr, ax, rounding, subnormals, seed, srbits, want_codes,
                         clip=fmt.clip)
        if want_codes:
            return res[0], res[1], shape, ax
        out = _EN.to_dtype(res[0], bf, dt)
        _EN.check_range(out, arr, res[1], bf)
        return out.reshape(shape), res[1], shape, ax
    # scales: given, from a given amax, or from the data
    if fmt.granularity == "tensor":
        sshape, red = (), None
    elif fmt.granularity == "channel":
        sshape, red = (shp[ax],), tuple(i for i in range(len(shp)) if i != ax)
    else:
        nb = -(-shp[ax] // fmt.group)
        sshape, red = shp[:ax] + (nb,) + shp[ax + 1:], None
    if scale is not None:
        s = _given(scale, "scale", sshape, fmt, shape)
        s = _R.quantize(np.ascontiguousarray(s), fmt.scale, overflow="saturate")
        if np.any(~(s >= 0) & ~np.isnan(s)):
            raise ValueError("scales must be >= 0")
    else:
        if amax is None:  # per tensor or channel (groups of the data's own amax ran above)
            a, bad = _amax(arr, red)
        else:
            a = _given(amax, "amax", sshape, fmt, shape)
            bad = (~np.isfinite(a)).astype(np.int64)
            a = np.where(bad == 1, 0.0, np.abs(a))
        s = _scales_from(fmt, a, bad)
    s = np.array(s, dtype=np.float64).reshape(sshape)  # keeps 0-d for per-tensor
    sflat = s.reshape(-1)
    G = _C.RULE_GIVEN
    if fmt.granularity == "tensor":
        flat = arr.reshape(-1)
        res = _EN.run(bf, flat, 0, rounding, subnormals, seed, srbits, want_codes,
                         given=sflat, gstride=(0, 0, 0), rule=G, block=_CHUNK)
    elif fmt.granularity == "channel":
        P = int(np.prod(shp[:ax], dtype=np.int64))
        C, Q = shp[ax], int(np.prod(shp[ax + 1:], dtype=np.int64))
        if Q == 1:  # channel is the last axis: blocks of rows, scale indexed by b
            res = _EN.run(bf, arr.reshape(P, C), 0, rounding, subnormals, seed, srbits,
                             want_codes, given=sflat, gstride=(0, 0, 1), rule=G, block=64)
        else:
            res = _EN.run(bf, arr.reshape(P, C, Q), 1, rounding, subnormals, seed, srbits,
                             want_codes, given=sflat, gstride=(0, 1, 0), rule=G, block=1)
    else:
        B = int(np.prod(shp[ax + 1:], dtype=np.int64))
        nb = sshape[ax]
        res = _EN.run(bf, arr, ax, rounding, subnormals, seed, srbits, want_codes,
                         given=sflat, gstride=(nb * B, B, 1), rule=G)
    if want_codes:
        return res[0], s, shape, ax
    out = _EN.to_dtype(res[0], bf, dt)
    _EN.check_range(out, arr, s, bf)
    return out.reshape(shape), s, shape, ax


def scale_tensor(x, fmt, *, scale=None, amax=None, axis=None, rounding="rne", subnormals=None,
                 seed=None, srbits=None) -> ScaledTensor:
    """Quantize ``x`` with the scales of ``fmt`` (computed, given, or from a given ``amax``).

    ``scale`` (the decode scale, broadcast to the scale shape and rounded into ``fmt.scale``)
    or ``amax`` (e.g. from a history) replace the data's own amax.

    >>> import numpy as np, fpsim
    >>> x = np.array([0.5, -1.0, 3.0])
    >>> fpsim.scale_tensor(x, fpsim.ScaledFormat("int8"), scale=0.03125).values.tolist()
    [0.5, -1.0, 3.0]
    >>> r = fpsim.scale_tensor(x, fpsim.ScaledFormat("e4m3", scale="e8m0"))  # power-of-two scale
    >>> r.values.tolist(), float(r.scales)
    ([0.5, -1.0, 3.0], 0.0078125)
    """
    fmt = as_format(fmt)
    if isinstance(fmt, BlockFormat):
        fmt = ScaledFormat(fmt.elem, "group", fmt.scale, axis=fmt.axis, group=fmt.block,
                           scale_rounding=fmt.scale_rounding)
    if not isinstance(fmt, ScaledFormat):
        raise TypeError(f"scale_tensor needs a ScaledFormat or BlockFormat, got {fmt.name}")
    if scale is not None and amax is not None:
        raise ValueError("give either scale= or amax=, not both")
    vals, s, shape, _ = _apply(x, fmt, axis, scale, amax, rounding, subnormals, seed, srbits,
                               want_codes=False)
    if np.ndim(x) == 0 and not isinstance(x, np.ndarray):  # a 0-d array stays an array
        vals = vals.reshape(())[()]
    return ScaledTensor(vals, s)


_NAME_RE = re.compile(r"^scaled\[(.*)\]$")


def _parse_scaled(key: str) -> ScaledFormat:
    m = _NAME_RE.match(key)
    parts = [p.strip() for p in m.group(1).split(",")] if m else []
    if len(parts) < 3 or any("=" in p for p in parts[:3]):
        raise ValueError(f"{key!r}: write scaled[ELEM,tensor|channel|group,SCALE,option=value,...]")
    kw = {}
    for p in parts[3:]:
        name, _, val = p.partition("=")
        if name == "axis":
            kw["axis"] = read_int_option(key, name, val.replace("_", "-"))
        elif name == "group":
            kw["group"] = read_int_option(key, name, val)
        elif name == "scale_rounding":
            kw["scale_rounding"] = val
        elif name == "clip":
            try:
                kw["clip"] = float(val)
            except ValueError:
                raise ValueError(f"{key!r}: clip={val!r} is not a number (write e.g. "
                                 "clip=0.9)") from None
        else:
            raise ValueError(f"{key!r}: unknown option {name!r} (allowed: axis, group, "
                             "scale_rounding, clip)")
    return ScaledFormat(parts[0], parts[1], parts[2], **kw)


register_name("scaled[", _parse_scaled)


class DelayedScaling:
    """Per-tensor FP8 scaling from an amax history (Transformer Engine's delayed scaling).

    Each call quantizes ``x`` with the *current* scale, then records ``max|x|`` in the
    history and recomputes the scale as ``amax_h * 2**margin / elem.max`` (rounded into
    ``scale``), where ``amax_h`` is the history's maximum (``algo="max"``) or its latest
    entry (``"most_recent"``). The first call uses scale 1.0; an amax of 0 or a non-finite
    one keeps the previous scale. fpsim stores the *decode* scale (TE stores its
    reciprocal and multiplies in fp32 before the cast; fpsim divides exactly).

    >>> import numpy as np, fpsim
    >>> ds = fpsim.DelayedScaling("e4m3", history=4)
    >>> ds(np.array([1000.0])).tolist(), ds.scale        # step 0: scale 1 -> saturates
    ([448.0], 2.232142925262451)
    >>> ds(np.array([1000.0])).tolist()                  # step 1: scale from step 0's amax
    [1000.0000305175781]
    """

    def __init__(self, elem="e4m3", *, history: int = 16, algo: str = "max", margin: int = 0,
                 scale="fp32"):
        if isinstance(history, bool) or not isinstance(history, (int, np.integer)) or history < 1:
            raise ValueError(f"history={history!r}: must be a positive int")
        if algo not in ("max", "most_recent"):
            raise ValueError(f"algo={algo!r}: choose 'max' or 'most_recent'")
        if isinstance(margin, bool) or not isinstance(margin, (int, np.integer)):
            raise TypeError(f"margin must be an int, got {type(margin).__name__}")
        self.fmt = ScaledFormat(elem, "tensor", scale)
        self.algo, self.margin = algo, int(margin)
        self.amax_history = np.zeros(int(history))
        self.scale = 1.0
        self.steps = 0

    def __repr__(self) -> str:
        return (f"DelayedScaling({self.fmt.elem.name!r}, history={self.amax_history.size}, "
                f"algo={self.algo!r}, margin={self.margin}, scale={self.fmt.scale.name!r})")

    def __call__(self, x, *, rounding="rne", seed=None):
        """Quantize ``x`` with the current scale and update the history (see the class doc)."""
        return self.quantize(x, rounding=rounding, seed=seed)

    def quantize(self, x, *, rounding="rne", seed=None, update=True):
        """Quantize ``x`` (a numpy array) with the current scale; then, unless
        ``update=False`` (evaluation), record its amax with :meth:`update`.

        >>> import numpy as np, fpsim
        >>> ds = fpsim.DelayedScaling("e4m3", history=2)
        >>> ds.quantize(np.array([3.3]), update=False).tolist(), ds.steps
        ([3.25], 0)
        """
        vals = scale_tensor(x, self.fmt, scale=self.scale, rounding=rounding, seed=seed).values
        if update:
            a = np.abs(np.asarray(x, dtype=np.float64))
            self.update(float(np.max(a)) if a.size else 0.0)
        return vals

    def update(self, amax):
        """Record one step's ``amax`` (a non-negative real number; inf/NaN are recorded and
        keep the previous scale) without quantizing: for amaxes measured elsewhere (a torch
        tensor's ``.abs().max().item()``, another process). Returns the new scale.

        >>> import fpsim
        >>> ds = fpsim.DelayedScaling("e4m3", history=2)
        >>> ds.update(896.0), ds.update(10.0), ds.amax_history.tolist()
        (2.0, 2.0, [10.0, 896.0])
        """
        if isinstance(amax, (bool, np.bool_)) or not isinstance(amax, (int, float, np.integer,
                                                                         np.floating)):
            raise TypeError(f"amax must be a real number, got {type(amax).__name__}")
        amax = float(amax)
        if amax < 0:
            raise ValueError(f"amax={amax!r}: an amax is a magnitude (>= 0)")
        self.amax_history = np.roll(self.amax_history, 1)
        self.amax_history[0] = amax
        self.steps += 1
        h = self.amax_history[: min(self.steps, self.amax_history.size)]
        ah = float(np.max(h)) if self.algo == "max" else float(h[0])
        if np.isfinite(ah) and ah > 0:
            s = _scales_from(self.fmt, np.array([ah * 2.0**self.margin]), np.zeros(1, np.int64))
            self.scale = float(s[0])
        return self.scale

    def state_dict(self) -> dict:
        """The state to save and restore: ``{"amax_history", "scale", "steps"}`` (copies).

        >>> import fpsim
        >>> ds = fpsim.DelayedScaling("e4m3", history=2); _ = ds.update(896.0)
        >>> ds2 = fpsim.DelayedScaling("e4m3", history=2); ds2.load_state_dict(ds.state_dict())
        >>> ds2.scale, ds2.steps
        (2.0, 1)
        """
        return {"amax_history": self.amax_history.copy(), "scale": self.scale,
                "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (its history length must match ``history``)."""
        h = np.array(state["amax_history"], dtype=np.float64).reshape(-1)
        if h.size != self.amax_history.size:
            raise ValueError(f"amax_history has {h.size} entries; this DelayedScaling keeps "
                             f"{self.amax_history.size}")
        scale, steps = float(state["scale"]), int(state["steps"])
        if not (scale > 0 and np.isfinite(scale)) or steps < 0:
            raise ValueError(f"scale={scale!r}, steps={steps!r}: need a positive finite scale "
                             "and steps >= 0")
        self.amax_history, self.scale, self.steps = h, scale, steps

    def reset(self) -> None:
        """Forget the history: scale 1.0, as before the first step."""
        self.amax_history = np.zeros(self.amax_history.size)
        self.scale, self.steps = 1.0, 0
