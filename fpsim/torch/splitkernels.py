"""Reductions split the way GPU kernels split them for small batches: split-KV attention
(flash-decoding) and row-sum-split LayerNorm / RMSNorm. :class:`fpsim.torch.Deployment`
picks the number of splits (``kv_splits``, ``norm_splits``); these functions compute with
it. The facts and assumptions of each rule are in :mod:`fpsim.torch.deployment`.
"""

from __future__ import annotations

import math

import torch

from .gemm import gemm

__all__ = ["split_kv_attention", "split_norm"]


def split_kv_attention(s, v, pol, n_splits: int, kv_block: int):
    """``softmax(s) @ v`` as a split-KV kernel: the keys cut into ``n_splits`` chunks (of
    whole ``kv_block`` s), each giving its row max ``m_j``, ``l_j = sum exp(s - m_j)`` and
    ``o_j = exp(s - m_j) @ v_j`` (a GEMM under ``pol``; P rounded like any GEMM operand),
    combined as ``sum exp(m_j - m) o_j / sum exp(m_j - m) l_j`` in fp32.

    >>> import torch, fpsim.torch as ft
    >>> s, v = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 8, 4)
    >>> y = split_kv_attention(s, v, ft.Policy(), n_splits=2, kv_block=4)
    >>> torch.allclose(y, torch.softmax(s, -1) @ v, atol=1e-6)
    True
    """
    S = s.shape[-1]
    step = kv_block * math.ceil(math.ceil(S / kv_block) / n_splits)
    s = s.float()
    ms, ls, os_ = [], [], []
    for j in range(0, S, step):
        sj = s[..., j:j + step]
        m = sj.amax(-1, keepdim=True)
        # a chunk fully masked for a row: its terms are exp(-inf) = 0, weight 0 below
        e = torch.exp(sj - torch.where(torch.isinf(m), torch.zeros_like(m), m))
        ms.append(m)
        ls.append(e.sum(-1, keepdim=True))
        os_.append(gemm(e.to(v.dtype), v[..., j:j + step, :], pol, roles=("activation", "activation"),
                        what="sdpa PV (split-KV)").float())
    mx = torch.stack(ms).amax(0)
    w = [torch.exp(m - mx) for m in ms]
    num = sum(wi * o for wi, o in zip(w, os_))
    den = sum(wi * li for wi, li in zip(w, ls))
    return (num / den).to(v.dtype)


def split_norm(func, args, kwargs, splits):
    """``layer_norm`` / ``rms_norm`` (``func`` and its torch arguments) over the last
    dimension with each row's sums split into ``splits(rows, d)`` chunks (each summed by
    torch in fp32, the chunk sums added in order); ``NotImplemented`` for other ops.

    >>> import torch, torch.nn.functional as F
    >>> x = torch.randn(2, 64)
    >>> y = split_norm(F.layer_norm, (x, (64,)), {}, lambda rows, d: 4)
    >>> torch.allclose(y, F.layer_norm(x, (64,)), atol=1e-5)
    True
    """
    name = getattr(func, "__name__", "")
    if name not in ("layer_norm", "rms_norm"):
        return NotImplemented
    x = args[0] if args else kwargs.get("input")
    shape = args[1] if len(args) > 1 else kwargs.get("normalized_shape")
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if len(shape) != 1 or not x.is_floating_point():
        return NotImplemented
    rest = list(args[2:]) + [None] * 3
    if name == "layer_norm":
        w, b, eps = (kwargs.get("weight", rest[0]), kwargs.get("bias", rest[1]),
                     kwargs.get("eps", rest[2] if rest[2] is not None else 1e-5))
    else:
        w, b = kwargs.get("weight", rest[0]), None
        eps = kwargs.get("eps", rest[1])
        eps = torch.finfo(torch.float32).eps if eps is None else eps
    d = x.shape[-1]
    n = splits(x.numel() // max(d, 1), d)
    step = math.ceil(d / n)
    xf = x.float()

    def rowsum(t):
        parts = [t[..., j:j + step].sum(-1, keepdim=True) for j in range(0, d, step)]
        s = parts[0]
        for p in parts[1:]:
            s = s + p
        return s
    if name == "layer_norm":
        mean = rowsum(xf) / d
        xc = xf - mean
        var = rowsum(xc * xc) / d
    else:
        xc, var = xf, rowsum(xf * xf) / d
    y = xc * torch.rsqrt(var + eps)
    if w is not None:
        y = y * w.float()
    if b is not None:
        y = y + b.float()
    return y.to(x.dtype)
