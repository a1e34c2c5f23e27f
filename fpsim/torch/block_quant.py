"""Block quantization (``fpsim.encode(x, fmt, axis=...)`` of a block format) in torch tensor
ops on the tensor's device: the twin of :mod:`fpsim.kernels.block_round` for float elements
(MXFP8/MXFP6/MXFP4, NVFP4 and other :class:`fpsim.BlockFormat`s of float elements), in the
deterministic rounding modes, bit for bit.

Per block of ``block`` consecutive elements along ``axis`` (the last one may be shorter): the
largest finite magnitude (amax) and whether the block holds inf/NaN; the block's scale by the
format's rule (power-of-two rules from the bits of amax: OCP's ``floor``, ``ceil``, ``even``,
``rceil``; value rules: ``amax / (elem.max * tensor scale)`` rounded to odd in float64, then
once into the scale format); every element divided by the total scale (an exact multiply for
a normal power of two, else a round-to-odd division) and rounded once with the kernel's
RoundParams (:func:`fpsim.torch.quantize.round_bits`). A block with inf/NaN gets a NaN scale
and the element format's NaN (0 without one); a zero scale gives zero elements. NVFP4's fp32
tensor scale comes from the tensor's amax (one scalar, rounded by :func:`fpsim.encode`).

The GEMM bridge (:func:`fpsim.torch.gemm.block_scaled_matmul`) uses :func:`block_operand`
when the torch accumulation path runs (:func:`fpsim.torch.accum.backend`), so block-scaled
GEMMs of CUDA tensors never leave the device; :func:`supports` says which formats and modes.

>>> import torch, fpsim
>>> from fpsim.torch.block_quant import block_operand
>>> e, s, g = block_operand(torch.tensor([[1.0, -3.0, 0.5, 7.0]]), fpsim.parse("mxfp4"))
>>> e[:, :4].tolist(), tuple(e.shape), s.tolist(), g   # padded with zeros to a whole block
([[1.0, -3.0, 0.5, 6.0]], (1, 32), [[1.0]], None)
"""

from __future__ import annotations

import numpy as np
import torch

from ..block import BlockFormat
from ..block import engine as _EN
from ..block.rules import POW2_RULES
from ..formats import FloatFormat
from ..rounding import decode, encode
from .accum_lanes import exp_of, f64, pow2_normal, round_into

__all__ = ["block_operand", "supports", "ROUNDINGS"]

#: Element rounding modes written here (stochastic rounding stays on the CPU kernels).
ROUNDINGS = ("rne", "rna", "rtz", "rup", "rdn", "rto")
_SPLIT = 134217729.0  # 2**27 + 1, Dekker's splitter (as fpsim.kernels.eft)
_F64_MAX = float(np.finfo(np.float64).max)
_FMASK = (1 << 52) - 1


def supports(fmt, rounding="rne") -> bool:
    """Whether :func:`block_operand` quantizes into ``fmt`` with ``rounding`` (else the CPU
    kernels do): block formats of float elements, deterministic modes.

    >>> import fpsim
    >>> supports(fpsim.parse("nvfp4")), supports(fpsim.parse("mxint8")), supports("e4m3")
    (True, False, False)
    """
    return (isinstance(fmt, BlockFormat) and isinstance(fmt.elem, FloatFormat)
            and rounding in ROUNDINGS)


def _div_odd(a, d):
    """float64 round-to-odd of a / d (d > 0 finite), as the kernel's _div_odd_bits."""
    q = a / d
    p = q * d  # Dekker's two_prod(q, d): p + e == q * d exactly
    t = _SPLIT * q
    qh = t - (t - q)
    ql = q - qh
    t = _SPLIT * d
    dh = t - (t - d)
    dl = d - dh
    e = ((qh * dh - p) + qh * dl + ql * dh) + ql * dl
    r = (a - p) - e  # the exact remainder
    b = q.view(torch.int64)
    step = torch.where((q > 0) != (r > 0), -1, 1)
    fix = (r != 0) & ((b & 1) == 0) & (q != 0)
    plain = torch.isnan(q) | (q == 0) | (q.abs() > _F64_MAX)
    return f64(torch.where(fix & ~plain, b + step, b))


def _scale(amax, bad, q, sp, sfmt):
    """The block scale from amax (the kernel's block_scale)."""
    a = amax * q.clip if q.clip != 1.0 else amax
    if q.rule not in POW2_RULES.values():  # a value rule
        s = round_into(_div_odd(a, torch.full_like(a, q.div)), sp, sfmt)
    else:
        pos = a > 0
        aa = torch.where(pos, a, torch.ones_like(a))
        fl = exp_of(aa)
        m = torch.frexp(aa)[0]
        f = (m * 2.0**53).to(torch.int64) - (1 << 52)  # the normalised 52-bit fraction
        if q.rule == POW2_RULES["floor"]:
            e = fl - q.emax_elem
        elif q.rule == POW2_RULES["ceil"]:
            e = fl - q.emax_elem + (f != 0).to(torch.int64)
        elif q.rule == POW2_RULES["even"]:
            e = fl - q.emax_elem + ((f + (1 << (51 - q.mbits))) >> 52)
        else:  # RCEIL: the smallest s with max_elem * 2**s >= a
            e = fl - q.emax_elem + (f > q.max_frac).to(torch.int64)
        s = pow2_normal(torch.clamp(e, q.smin, q.smax))
    s = torch.where(amax == 0, torch.full_like(s, q.zero_scale), s)
    return torch.where(bad, torch.full_like(s, float("nan")), s)


def _tiled(v, tile, reduce):
    """``reduce`` of (lines, blocks) ``v`` over groups of ``tile`` lines, repeated per line."""
    R = v.shape[0]
    pad = -R % tile
    if pad:
        v = torch.cat([v, v.new_zeros((pad, *v.shape[1:]))], 0)
    t = reduce(v.unflatten(0, (-1, tile)), dim=1, keepdim=True)
    return t.expand(-1, tile, *v.shape[1:]).flatten(0, 1)[:R]


def block_operand(x, fmt, axis=-1, rounding="rne", tile=1):
    """``x`` encoded into the block format ``fmt`` along ``axis`` on its device: (element
    values padded with zeros to whole blocks along ``axis``, block scales, the tensor scale
    as a float or None), float64 tensors equal to ``fpsim.decode`` of what
    ``fpsim.encode(x, fmt, axis=axis, rounding=rounding)`` gives, bit for bit.

    ``tile > 1`` (2D block scaling, a matrix ``x``): each scale comes from the amax of a
    ``tile x block`` tile (``tile`` consecutive lines across ``axis``), so every line of a
    tile shares it; the scales keep one row per line (the GEMM's per-block layout).

    >>> import torch, fpsim
    >>> x = torch.tensor([[1.0] * 16, [12.0] * 16])
    >>> nv = fpsim.parse("nvfp4")
    >>> block_operand(x, nv)[0][0, 0].item(), block_operand(x, nv, tile=2)[0][0, 0].item()
    (6.0, 0.5)
    """
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1 or (tile > 1 and x.dim() != 2):
        raise ValueError(f"block_operand: tile={tile!r} must be an int >= 1 (> 1 only for a "
                         f"matrix, got {x.dim()} dims)")
    if not supports(fmt, rounding):
        raise ValueError(f"block_operand: {getattr(fmt, 'name', fmt)!r} with rounding="
                         f"{rounding!r} is not written in torch ops (block formats of float "
                         f"elements, rounding {', '.join(ROUNDINGS)}); use fpsim.encode")
    x = x.detach().to(torch.float64)
    g = 1.0
    ts = None
    if fmt.tensor_scale is not None:  # one scalar: fpsim.encode rounds it from the amax
        fin = torch.isfinite(x)
        amax = float(torch.where(fin, x.abs(), torch.zeros_like(x)).amax()) if x.numel() else 0.0
        probe = np.zeros(fmt.block)
        probe[0] = amax
        codes = encode(probe, fmt, axis=-1)
        g = ts = float(decode(np.array([codes.tensor_scale]), fmt.tensor_scale)[0])
    q, ep, _, _, sp, _ = _EN.params(fmt, rounding, None, None, g=g, want_codes=True)
    xm = x.movedim(axis, -1)
    L, k = xm.shape[-1], fmt.block
    nb = -(-L // k)
    if nb * k != L:
        xm = torch.cat([xm, xm.new_zeros((*xm.shape[:-1], nb * k - L))], -1)
    xb = xm.unflatten(-1, (nb, k))
    fin = torch.isfinite(xb)
    bad = ~fin.all(-1)
    amax = torch.where(fin, xb.abs(), torch.zeros_like(xb)).amax(-1)
    if tile > 1:  # 2D: the amax (and inf/NaN) of each tile x block tile, for all its lines
        amax, bad = _tiled(amax, tile, torch.amax), _tiled(bad, tile, torch.any)
    sval = _scale(amax, bad, q, sp, fmt.scale)
    tot = (sval * q.g).unsqueeze(-1)
    tb = tot.view(torch.int64)
    ef = tb >> 52
    pow2 = (tot > 0) & ((tb & _FMASK) == 0) & (ef > 1) & (ef < 2046)  # NaN: not > 0
    live = (tot > 0) & ~bad.unsqueeze(-1)  # NaN blocks and zero scales take fixed codes
    safe = torch.where(live, tot, torch.ones_like(tot))
    y = torch.where(pow2, xb * torch.where(pow2, 1.0 / safe, 1.0), _div_odd(xb, safe))
    y = torch.where(live, y, torch.zeros_like(y))
    e = torch.where(live, round_into(y, ep, fmt.elem), 0.0)
    e = torch.where(bad.unsqueeze(-1), q.elem_nan, e).flatten(-2)  # the format's NaN, or 0
    if nb * k != L:  # the padding is zeros, whatever its block holds
        e = torch.cat([e[..., :L], e.new_zeros((*e.shape[:-1], nb * k - L))], -1)
    return (e.movedim(-1, axis).contiguous(), sval.movedim(-1, axis).contiguous(), ts)
