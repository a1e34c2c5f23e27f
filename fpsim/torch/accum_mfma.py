"""AMD matrix cores (:class:`fpsim.accum.MFMA`, CDNA1-3 ``v_mfma``) in torch tensor ops: the
twin of the kernel ``mfma_rows`` (:mod:`fpsim.kernels.accum_mfma`), vectorised over all output
lanes with a Python loop over the blocks of ``L`` products (chained through c), bit for bit:

* ``"exact"``: the exact sum of each block and c in a Kulisch accumulator of 32-bit digits
  (int64 limbs spanning the block's exponents), round-to-odd into float64, then one
  round-to-nearest into fp32;
* ``"ftz"``: float32 products and pairwise float32 additions with subnormal flushing;
* ``"tr"``/``"gtr"``: the truncated fused sums (integer-valued float64 lanes) and the floors
  of the kernel, operation for operation.

:func:`mfma` is called by :func:`fpsim.torch.accum.matmul` (the entry point) with a term
source (factors of the products per block).

>>> import torch, fpsim
>>> from fpsim.torch import accum as ta
>>> m = fpsim.hardware.mma("CDNA3", "v_mfma_f32_16x16x16_f16")
>>> A = torch.tensor([[1.0, 2.0**-12]]); B = torch.tensor([[1.0], [2.0**-13]])
>>> ta.matmul(A, B, model=m).item()   # 2**-25 lies below the 24 bits kept
1.0
"""

from __future__ import annotations

import torch

from ..formats import as_format
from .accum_lanes import exp_of, fp32_params, norm_exp, pow2, round_into

__all__ = ["mfma"]

_FP32_MIN_NORMAL = 1.1754943508222875e-38
_NONE = -999  # the kernel's exponent of a block without nonzero products
_FP32 = as_format("fp32")


def mfma(model, src, c):
    """``model`` (an :class:`fpsim.accum.MFMA`) over the products of ``src`` from c: float64
    lanes of fp32 values. ``src.factors(lo, hi)`` gives the factors of products lo..hi-1
    (shapes broadcasting to ``(hi - lo, *lanes)``)."""
    fa, fb = model.input_formats
    K, L = src.K, model.L
    if model.variant == "ftz":
        return _ftz(src, c, L, float(fa.min_normal))
    s = c
    p = fp32_params("rne")
    for lo in range(0, K, L):
        a, b = src.factors(lo, min(K, lo + L))
        if model.variant == "exact":
            s = _exact_block(a * b, s, p)
        else:
            s = _tr_block(a, b, s, model.variant == "tr", model.F, model.F2, fa.emin, fb.emin)
    return s


# ---------------------------------------------------------------------------------------
# CDNA2: fp32 products, pairwise fp32 additions, subnormals flushed
# ---------------------------------------------------------------------------------------

def _ftz32(x):
    """fp32 lanes with subnormal values flushed to a zero of their sign."""
    return torch.where(x.abs() < _FP32_MIN_NORMAL, x * 0.0, x)


def _ftz(src, c, L, emin_ftz):
    acc = torch.where(c.abs() < _FP32_MIN_NORMAL, torch.zeros_like(c), c).to(torch.float32)
    for lo in range(0, src.K, L):
        hi = min(src.K, lo + L)
        a, b = src.factors(lo, hi)
        # inputs below the input format's normal range flush to +0 (the kernel's rule)
        a = torch.where(a.abs() < emin_ftz, torch.zeros_like(a), a).to(torch.float32)
        b = torch.where(b.abs() < emin_ftz, torch.zeros_like(b), b).to(torch.float32)
        t = None
        for h in range(0, hi - lo, 2):
            x = _ftz32(a[h] * b[h])
            if h + 1 < hi - lo:
                x = _ftz32(x + _ftz32(a[h + 1] * b[h + 1]))
            t = x if t is None else _ftz32(t + x)
        acc = _ftz32(acc + t)
    return acc.to(torch.float64)


# ---------------------------------------------------------------------------------------
# CDNA3: truncated fused sums (tr; gtr: even and odd products apart)
# ---------------------------------------------------------------------------------------

def _fused_trunc(a, b, P, emin_a, emin_b, F):
    """The kernel's _fused_trunc over the products P (n, lanes) of factors a, b: (integer
    sum of the products truncated at 2**(e - F), e), e = _NONE without nonzero products."""
    if P.shape[0] == 0:  # no products (the odd half of a block of one)
        z = P.new_zeros(P.shape[1:])
        return z, torch.full(z.shape, _NONE, dtype=torch.int64, device=z.device)
    nz = (a != 0) & (b != 0)
    EP = torch.where(nz, norm_exp(a, emin_a) + norm_exp(b, emin_b), _NONE)
    e = EP.amax(0)
    sc = pow2(F - torch.where(e == _NONE, 0, e))
    S = torch.where(P != 0, torch.trunc(P * sc), torch.zeros_like(P)).sum(0)  # exact integers
    return S, e


def _tr_block(a, b, c, tr, F, F2, emin_a, emin_b):
    P = a * b
    fin = torch.isfinite(P)
    if tr:  # an fp32 product overflow is inf (the special path's sum sees it so)
        ovf = fin & (P != 0) & (P.abs() >= 2.0**128)
        P_sp = torch.where(ovf, P * float("inf"), P)
        special = ~torch.isfinite(c) | (~fin | ovf).any(0)
    else:
        P_sp = P
        special = ~torch.isfinite(c) | (~fin).any(0)
    t = c
    for x in P_sp:  # the IEEE sum of the block (its value where it holds inf/NaN)
        t = t + x
    P = torch.where(fin, P, torch.zeros_like(P))
    if tr:
        sd, ed = _fused_trunc(a, b, P, emin_a, emin_b, F)
    else:
        s0, e0 = _fused_trunc(a[0::2], b[0::2], P[0::2], emin_a, emin_b, F)
        s1, e1 = _fused_trunc(a[1::2], b[1::2], P[1::2], emin_a, emin_b, F)
        ed = torch.maximum(e0, e1)
        sd = torch.zeros_like(c)
        for s_, e_ in ((s0, e0), (s1, e1)):
            ok = e_ != _NONE
            sd = sd + torch.where(ok, torch.floor(s_ * pow2(torch.where(ok, e_ - ed, 0))), 0.0)
    cf = torch.where(special, torch.zeros_like(c), c)
    ec = norm_exp(cf, -126)
    em = torch.maximum(ed, ec)
    has = ed != _NONE
    D = torch.where(has, torch.floor(sd * pow2(torch.where(has, ed - F - (em - F2 - 1), 0))), 0.0)
    Cc = torch.floor(cf * pow2(F - em))
    if not tr:  # gtr: a c more than F + 1 binades below is dropped
        Cc = torch.where(ec < em - F - 1, torch.zeros_like(Cc), Cc)
    v = (D + Cc * pow2(torch.full_like(em, F2 + 1 - F))) * pow2(em - F2 - 1)
    ev = torch.clamp(exp_of(torch.where(v == 0, torch.ones_like(v), v)), min=-126)
    v = torch.floor(v * pow2(F2 - ev)) * pow2(ev - F2)
    r = torch.where(v == 0, torch.zeros_like(v), v.to(torch.float32).to(torch.float64))
    return torch.where(special, t, r)


# ---------------------------------------------------------------------------------------
# CDNA1: exact sum of the block and c (Kulisch accumulator), rounded to nearest fp32
# ---------------------------------------------------------------------------------------

_W = 32
_M32 = (1 << 32) - 1


def _carry(limbs):
    """Digits 0..n-2 into [0, 2**32) by carrying up (the top limb keeps the sign)."""
    for j in range(limbs.shape[0] - 1):
        cy = limbs[j] >> _W
        limbs[j] -= cy << _W
        limbs[j + 1] += cy
    return limbs


def _odd64(limbs, base):
    """float64 round-to-odd of sum(limbs[j] * 2**(32 j + base)) (limbs (n, lanes) int64),
    scaled as the kernel's _kul_odd does (two steps below float64's normal range)."""
    _carry(limbs)
    neg = limbs[-1] < 0
    limbs = torch.where(neg, -limbs, limbs)
    _carry(limbs)
    n = limbs.shape[0]
    nz = limbs != 0
    idx = torch.arange(n, device=limbs.device).view(-1, *([1] * (limbs.dim() - 1)))
    h = torch.where(nz, idx, -1).amax(0)  # top nonzero digit (-1: the sum is zero)

    def digit(j):
        return torch.where(j >= 0, limbs.gather(0, j.clamp(min=0).unsqueeze(0))[0], 0)
    L2, L1, L0 = digit(h), digit(h - 1), digit(h - 2)
    below = torch.cumsum(nz.to(torch.int64), 0)  # nonzero digits up to each index
    sticky = torch.where(h >= 3, below.gather(0, (h - 3).clamp(min=0).unsqueeze(0))[0] > 0, False)
    # the top 62 bits (the leading one at bit 61) from the three top digits
    lz = torch.frexp(L2.to(torch.float64))[1].to(torch.int64)  # bit length of L2, 1..32
    s = 62 - lz  # 30..61
    wide = s >= 32
    r = torch.where(wide, 64 - s, 32 - s)  # bits dropped from L0 (wide) or from L1
    X = (L2 << s) | torch.where(wide, (L1 << (s - 32).clamp(min=0)) | (L0 >> r.clamp(max=62)),
                                L1 >> r)
    lost = torch.where(wide, L0 & ((1 << r.clamp(max=62)) - 1), (L1 & ((1 << r) - 1)) | L0)
    sticky = sticky | (lost != 0) | ((X & 511) != 0)
    m = (X >> 9) | sticky.to(torch.int64)
    e = base + _W * h - s + 9  # the unit of m
    v = m.to(torch.float64)
    low, high = e < -1022, e > 1023
    v = torch.where(low, v * pow2(e + 600) * pow2(torch.full_like(e, -600)),
                    torch.where(high, v * pow2(e - 600) * pow2(torch.full_like(e, 600)),
                                v * pow2(e)))
    v = torch.where(h < 0, torch.zeros_like(v), v)
    return torch.where(neg, -v, v)


def _exact_block(P, c, p):
    """round(c + sum of the products P (n, lanes)), exactly summed; inf/NaN: their IEEE sum."""
    P = P.expand(P.shape[0], *c.shape)
    T = torch.cat([c.unsqueeze(0), P])
    fin = torch.isfinite(T)
    special = ~fin.all(0)
    t = torch.zeros_like(c)  # the IEEE sum of the non-finite terms only (as the kernel)
    has = torch.zeros_like(special)
    for x, f in zip(T, fin):
        t = torch.where(f, t, torch.where(has, t + x, x))
        has = has | ~f
    T = torch.where(fin, T, torch.zeros_like(T))
    mant, ex = torch.frexp(T)
    M = (mant * 2.0**53).to(torch.int64)  # T = M * 2**(ex - 53), |M| < 2**53
    u = ex.to(torch.int64) - 53
    nzt = M != 0
    if bool(nzt.any()):
        base = int(u[nzt].min())
        top = int((u[nzt] + 53).max())
        n = (top - base) // _W + 4  # + carries of a few terms and the sign
        pos = torch.where(nzt, u - base, 0)
        li, off = pos // _W, pos % _W
        mag = M.abs()
        lo32, hi21 = mag & _M32, mag >> _W
        sh_lo, sh_hi = lo32 << off, hi21 << off
        sgn = torch.where(M < 0, -1, 1)
        pieces = torch.stack([sh_lo & _M32, (sh_lo >> _W) + (sh_hi & _M32), sh_hi >> _W]) * sgn
        index = torch.stack([li, li + 1, li + 2]).flatten(0, 1)
        limbs = torch.zeros((n, *c.shape), dtype=torch.int64, device=c.device)
        limbs.scatter_add_(0, index, pieces.flatten(0, 1))
        v = _odd64(limbs, base)
    else:
        v = torch.zeros_like(c)
    # an exact zero is -0 only when every term is -0 (the IEEE sum of signed zeros)
    allneg = ((T == 0) & torch.signbit(T)).all(0)
    v = torch.where(v == 0, torch.where(allneg, -0.0, 0.0), v)
    v = torch.where(special, t, v)
    return round_into(v, p, _FP32)
