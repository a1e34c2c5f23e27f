"""AMD matrix-core kernels (CDNA1-3 v_mfma; see :mod:`fpsim.kernels.accum`)."""

import numpy as np
from numba import njit, prange

from .accum_leaves import KULISCH_LIMBS, exact_row, exp_of, pow2


# ---------------------------------------------------------------------------------------
# AMD matrix cores (CDNA1-3 v_mfma; MMA-Sim's models, Xie et al. 2025)
# ---------------------------------------------------------------------------------------

MFMA_EXACT = 0  # CDNA1: exact sum of L products and c, rounded to nearest fp32
MFMA_FTZ = 1    # CDNA2: fp32 products and pairwise fp32 additions, subnormals flushed
MFMA_TR = 2     # CDNA3: products fused (F bits, truncated), then c added (floor at F2)
MFMA_GTR = 3    # CDNA3 FP8: odd and even products fused apart, then as MFMA_TR


@njit(cache=True, inline="always")
def norm_exp(x, emin):
    """The exponent MMA-Sim gives a finite x: its leading bit's, clamped at emin (zero: emin)."""
    return emin if x == 0.0 else max(exp_of(x), emin)


@njit(cache=True, inline="always")
def _ftz32(x):
    """fp32 value with subnormal results flushed to a zero of the same sign."""
    return np.float32(x * 0.0) if abs(x) < np.float32(1.1754943508222875e-38) else x


@njit(cache=True)
def _fused_trunc(ar, br, lo, hi, step, emin_a, emin_b, F):
    """Products lo, lo+step, ... < hi truncated at 2**(e - F), e their largest exponent:
    (integer sum, e); e = -999 when every product is zero."""
    e = -999
    for k in range(lo, hi, step):
        if ar[k] != 0.0 and br[k] != 0.0:
            e = max(e, norm_exp(ar[k], emin_a) + norm_exp(br[k], emin_b))
    S = 0.0
    if e == -999:
        return S, e
    for k in range(lo, hi, step):
        p = ar[k] * br[k]
        if p != 0.0:
            S += np.trunc(p * pow2(F - e))
    return S, e


@njit(cache=True)
def _tr_block(ar, br, lo, hi, c, variant, F, F2, emin_a, emin_b):
    """One CDNA3 block: the products' fused sum, then c, each floored, then 31 bits kept
    below the leading one and the result rounded to nearest fp32."""
    special = c - c != 0.0
    t = c
    for k in range(lo, hi):
        p = ar[k] * br[k]
        if p - p != 0.0:
            special = True
        elif variant == MFMA_TR and p != 0.0 and abs(p) >= 2.0 ** 128:
            p = p * np.inf  # an fp32 product overflow
            special = True
        t = t + p
    if special:
        return t
    if variant == MFMA_TR:
        sd, ed = _fused_trunc(ar, br, lo, hi, 1, emin_a, emin_b, F)
    else:
        s0, e0 = _fused_trunc(ar, br, lo, hi, 2, emin_a, emin_b, F)
        s1, e1 = _fused_trunc(ar, br, lo + 1, hi, 2, emin_a, emin_b, F)
        ed = max(e0, e1)
        sd = 0.0
        if e0 != -999:
            sd += np.floor(s0 * pow2(e0 - ed))
        if e1 != -999:
            sd += np.floor(s1 * pow2(e1 - ed))
    ec = norm_exp(c, -126)
    em = max(ed, ec)
    D = np.floor(sd * pow2(ed - F - (em - F2 - 1))) if ed != -999 else 0.0
    Cc = np.floor(c * pow2(F - em))
    if variant == MFMA_GTR and ec < em - F - 1:
        Cc = 0.0
    v = (D + Cc * pow2(F2 + 1 - F)) * pow2(em - F2 - 1)
    if v == 0.0:
        return 0.0
    ev = max(exp_of(v), -126)
    v = np.floor(v * pow2(F2 - ev)) * pow2(ev - F2)
    return np.float64(np.float32(v))


@njit(cache=True, parallel=True)
def mfma_rows(A, B, c, out, variant, L, F, F2, emin_a, emin_b, emin_ftz, p):
    """Chained v_mfma dot-adds of the rows of A, B (R, K), blocks of L products (c <- d)."""
    R, K = A.shape
    errs = np.zeros(R, dtype=np.int64)
    for r in prange(R):
        ar = A[r]
        br = B[r]
        s = c[r]
        e_r = 0
        if variant == MFMA_EXACT:
            limbs = np.zeros(KULISCH_LIMBS, dtype=np.int64)
            for lo in range(0, K, L):
                hi = min(K, lo + L)
                s, e = exact_row(ar[lo:hi] * br[lo:hi], s, p, limbs)
                e_r += e
        elif variant == MFMA_FTZ:
            # inputs below the input format's normal range flush to +0; products, sums and
            # c flush subnormal fp32 values (c to +0, the others keeping their sign)
            acc = np.float32(0.0) if abs(s) < 1.1754943508222875e-38 else np.float32(s)
            for lo in range(0, K, L):
                t = np.float32(0.0)
                for h in range(lo, min(K, lo + L), 2):
                    x = np.float32(0.0)
                    for k in range(h, min(K, h + 2)):
                        a = 0.0 if abs(ar[k]) < emin_ftz else ar[k]
                        b = 0.0 if abs(br[k]) < emin_ftz else br[k]
                        q = _ftz32(np.float32(a) * np.float32(b))
                        x = q if k == h else _ftz32(x + q)
                    t = x if h == lo else _ftz32(t + x)
                acc = _ftz32(acc + t)
            s = np.float64(acc)
        else:
            for lo in range(0, K, L):
                s = _tr_block(ar, br, lo, min(K, lo + L), s, variant, F, F2, emin_a, emin_b)
        out[r] = s
        errs[r] = e_r
    return errs.sum()
