"""Blackwell block-scaled MMA (:class:`fpsim.accum.BlockScaledFused`: MXFP8/MXFP6/MXFP4/NVFP4
with UE8M0/UE4M3 block scales inside the instruction) in torch tensor ops: the twin of the
kernel ``gemm_scaled`` (:mod:`fpsim.kernels.accum_scaled`), vectorised over all output lanes
with a Python loop over the instructions of ``L`` products, bit for bit.

Per instruction: the products scaled by their two block scales (``group == 16``: the exact
sum of each group of 16 products, scaled), their alignment exponents X (operands and scales;
zero terms ``e_zero``), ``E = max(X, exponent of c)``, every term and c truncated toward zero
at ``2**(E - F)`` (float -> int64 conversion truncates), an exact int64 sum, one rounding
toward zero into fp32 (an overflow gives inf); an instruction holding inf/NaN (a NaN scale
too) gives the IEEE sum. K is padded with zero products (scales 1) to a whole number of
instructions, as :func:`fpsim.matmul` does.

:func:`check_scales` validates scale tensors on their device (the messages are the model's
own); :func:`scaled_gemm` is called by :func:`fpsim.torch.accum.matmul`, the entry point.

>>> import torch, fpsim
>>> from fpsim.torch import accum as ta
>>> m = fpsim.hardware.mma("Blackwell", "tcgen05.mma.m128n256k32.kind::mxf8f6f4.block32.f32.e4m3.e4m3.ue8m0")
>>> a = torch.ones(1, 32); b = torch.full((32, 1), 0.5)
>>> ta.matmul(a, b, torch.ones(1, 1), model=m, a_scale=torch.tensor([[2.0**-4]]),
...           b_scale=torch.ones(1, 1)).item()
2.0
"""

from __future__ import annotations

import math

import torch

from ..accum import exact_float64
from ..formats import as_format
from .accum_lanes import exp_of, fp32_params, norm_exp, pow2_normal, round_into
from .quantize import quantize

__all__ = ["check_scales", "scaled_gemm"]

#: Output lanes x products per chunk (float64 elements): bounds the memory of one instruction.
_CHUNK_ELEMS = 1 << 22
_FP32 = as_format("fp32")


def check_scales(model, s, what, shape, device):
    """``s`` as a float64 tensor on ``device`` broadcast to ``shape``: values of the model's
    scale format (or NaN); anything else raises the ValueError :func:`fpsim.matmul` raises
    (the model's own check reports it)."""
    if s is None:
        model._scales(None, what, shape)  # the model's message: the scales are required
    if isinstance(s, torch.Tensor):
        if s.device != device:
            raise ValueError(f"{what} is on {s.device} but the operands are on {device}: move "
                             "the scales to the operands' device")
        if not s.is_floating_point():
            raise TypeError(f"{what}: floating-point tensors only, got {s.dtype}")
        v = s.detach().to(torch.float64)
    else:
        v = torch.as_tensor(exact_float64(s, what), device=device)  # fpsim's input rule
    try:
        v = v.broadcast_to(shape)
    except RuntimeError:
        model._scales(v.cpu().numpy(), what, shape)  # raises the shape message
        raise
    sf = model.scale_fmt
    fin = torch.where(torch.isnan(v), torch.ones_like(v), v)
    bad = (fin < 0) | ~torch.isfinite(fin)
    if not sf.has_zero:
        bad |= fin == 0
    ok = torch.where(bad, torch.ones_like(fin), fin.abs())
    bad |= quantize(ok, sf, impl="torch", backward="none") != ok
    if bool(bad.any()):
        model._scales(v.cpu().numpy(), what, shape)  # raises the model's message
        raise ValueError(f"{what} holds values that are not scales of format {sf.name}")
    return v.contiguous()


def _pad(x, dim, n, value):
    if not n:
        return x
    shape = list(x.shape)
    shape[dim] = n
    return torch.cat([x, x.new_full(shape, value)], dim)


def scaled_gemm(model, A, B, C, SA, SB):
    """``A @ B + C`` under the block-scaled ``model``: A (..., M, K), B (..., K, N), C
    (..., M, N), block scales SA (..., M, K/block), SB (..., K/block, N), all float64 on one
    device with the batch dimensions expanded; K a multiple of the block. Float64 lanes of
    fp32 values."""
    K = A.shape[-1]
    pad = -K % model.L  # zero products (scales 1) up to a whole number of instructions
    A, B = _pad(A, -1, pad, 0.0), _pad(B, -2, pad, 0.0)
    SA, SB = _pad(SA, -1, pad // model.block, 1.0), _pad(SB, -2, pad // model.block, 1.0)
    M, N = A.shape[-2], B.shape[-1]
    D = torch.empty(C.shape, dtype=torch.float64, device=A.device)
    batch = math.prod(A.shape[:-2])
    rows = max(1, _CHUNK_ELEMS // (2 * model.L * max(1, N) * max(1, batch)))
    with torch.no_grad():
        for r0 in range(0, M, rows):
            r1 = min(M, r0 + rows)
            D[..., r0:r1, :] = _rows(model, A[..., r0:r1, :], B, C[..., r0:r1, :].contiguous(),
                                     SA[..., r0:r1, :], SB)
    return D


def _rows(model, A, B, s, SA, SB):
    ea, eb = (int(f.emin) for f in model.input_formats)
    es = int(model.scale_fmt.emin)
    L, g, blk = model.L, model.group, model.block
    p = fp32_params("rtz")
    for lo in range(0, A.shape[-1], L):
        a = A[..., lo:lo + L].movedim(-1, 0).unsqueeze(-1)  # (L, ..., M, 1)
        b = B[..., lo:lo + L, :].movedim(-2, 0).unsqueeze(-2)  # (L, ..., 1, N)
        blocks = torch.arange(lo, lo + L, g, device=A.device) // blk  # each term's scale block
        sa = SA.index_select(-1, blocks).movedim(-1, 0).unsqueeze(-1)  # (L/g, ..., M, 1)
        sb = SB.index_select(-2, blocks).movedim(-2, 0).unsqueeze(-2)  # (L/g, ..., 1, N)
        P = a * b
        if g == 1:
            T = P * sa * sb
            X = norm_exp(a, ea) + norm_exp(b, eb) + norm_exp(sa, es) + norm_exp(sb, es)
            X = torch.where(T == 0, model.e_zero, X)
        else:  # the exact sum of each group of g products, scaled; aligned at its scales
            Pg = P.unflatten(0, (L // g, g))
            T = Pg.sum(1) * sa * sb
            zero = (Pg == 0).all(1) | (sa == 0) | (sb == 0)
            X = torch.where(zero, model.e_zero, norm_exp(sa, es) + norm_exp(sb, es))
        s = _step(s, T, X, model.F, model.e_zero, p)
    return s


def _step(s, T, X, F, e_zero, p):
    """One instruction from c = s: terms T (n, lanes) with alignment exponents X."""
    fin = torch.isfinite(T)
    special = ~torch.isfinite(s) | ~fin.all(0)
    t = s + T.sum(0)  # inf/NaN lanes: their IEEE sum (finite terms cannot change it)
    T = torch.where(fin, T, torch.zeros_like(T))
    sf = torch.where(special, torch.zeros_like(s), s)
    has_c = sf != 0
    ec = torch.clamp(exp_of(torch.where(has_c, sf, torch.ones_like(sf))), min=p.emin)
    E = torch.maximum(torch.where(has_c, ec, e_zero), X.amax(0))
    q = torch.clamp(E - F, -1022, 1022)  # lanes with a nonzero term are inside already
    sc = pow2_normal(-q)
    S = ((sf * sc).to(torch.int64)  # truncation toward zero at 2**q
         + torch.where(T != 0, (T * sc).to(torch.int64), 0).sum(0))
    v = S.to(torch.float64) * pow2_normal(q)
    r = round_into(v, p, _FP32)
    r = torch.where(r == 0, torch.zeros_like(r), r)  # +0, also for S == 0
    r = torch.where(v.abs() >= 2.0**128, torch.copysign(torch.full_like(v, math.inf), v), r)
    return torch.where(special, round_into(t, p, _FP32), r)

