"""Block-scaled fused dot-add kernels (Blackwell kind::mxf8f6f4 / mxf4 / mxf4nvf4; see
:mod:`fpsim.kernels.accum`)."""

import numpy as np
from numba import njit, prange

from .accum_leaves import exp_of, rnd1, scaled_q, trunc_q
from .accum_mfma import norm_exp


# ---------------------------------------------------------------------------------------
# Block-scaled fused dot-add (Blackwell kind::mxf8f6f4 / mxf4 / mxf4nvf4)
# ---------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _scaled_step(s, T, X, lo, hi, F, e_zero, p, ovf_lim):
    """One block-scaled instruction: terms T[lo:hi] (alignment exponents X) and c = s.

    The terms are exact (scaled products, or scaled sums of a group of products); their
    alignment exponents come from the operands and scales, not from the values (the
    hardware aligns a group sum at its scales' exponent; zero terms carry ``e_zero``).
    ``E = max(X, exponent of c)`` (c clamped at ``p.emin``; a zero c counts as ``e_zero``);
    every term and c truncated toward zero at ``2**(E - F)``; the integers summed exactly
    and rounded once with ``p`` (an overflow of the truncating mode gives inf). Terms or c
    holding inf or NaN give their IEEE sum.
    """
    special = s - s != 0.0
    for k in range(lo, hi):
        if T[k] - T[k] != 0.0:
            special = True
    if special:
        t = s
        for k in range(lo, hi):
            t = t + T[k]
        return rnd1(t, p)
    E = e_zero if s == 0.0 else max(exp_of(s), p.emin)
    for k in range(lo, hi):
        E = max(E, X[k])
    q = E - F
    S = np.int64(0)
    if s != 0.0:
        S += trunc_q(s, q)
    for k in range(lo, hi):
        if T[k] != 0.0:
            S += trunc_q(T[k], q)
    if S == 0:
        return 0.0, 0
    v = scaled_q(S, q)
    if abs(v) >= ovf_lim:
        return (-np.inf if v < 0.0 else np.inf), 0
    r, e = rnd1(v, p)
    return (0.0 if r == 0.0 else r), e  # a sum that rounds to zero gives +0


@njit(cache=True, inline="always")
def _scaled_dot(ar, br, sar, sbr, s, T, X, L, block, group, F, e_zero, emin_a, emin_b, emin_s,
                p, ovf_lim):
    """One chained block-scaled dot product of the rows ``ar``, ``br`` (K, a multiple of L)
    with their scales ``sar``, ``sbr`` (K/block) from c = ``s``: per instruction of L
    products, the L/group terms and their exponents formed into ``T``/``X``, then
    :func:`_scaled_step`."""
    K = ar.size
    per = L // group
    e_r = 0
    for lo in range(0, K, L):
        for g in range(per):
            k0 = lo + g * group
            sa = sar[k0 // block]
            sb = sbr[k0 // block]
            t = 0.0
            nz = False
            for k in range(k0, k0 + group):
                pr = ar[k] * br[k]
                t += pr  # exact: at most 16 products of 4-bit elements (group 16)
                nz |= pr != 0.0
            t = t * sa * sb
            T[g] = t
            if group == 1:
                X[g] = e_zero if t == 0.0 else (
                    norm_exp(ar[k0], emin_a) + norm_exp(br[k0], emin_b)
                    + norm_exp(sa, emin_s) + norm_exp(sb, emin_s))
            elif not nz or sa == 0.0 or sb == 0.0:
                X[g] = e_zero
            else:
                X[g] = norm_exp(sa, emin_s) + norm_exp(sb, emin_s)
        s, e = _scaled_step(s, T, X, 0, per, F, e_zero, p, ovf_lim)
        e_r += e
    return s, e_r


@njit(cache=True, parallel=True)
def gemm_scaled(A, BT, SA, SBT, C, D, L, block, group, F, e_zero, emin_a, emin_b, emin_s, p,
                ovf_lim):
    """D = A @ BT.T + C with block scales SA (M, K/block), SBT (N, K/block): every output
    one :func:`_scaled_dot` (no product matrix in memory). K is a multiple of L."""
    M = A.shape[0]
    N = BT.shape[0]
    per = L // group
    errs = np.zeros(M * N, dtype=np.int64)
    for idx in prange(M * N):
        i = idx // N
        j = idx % N
        T = np.empty(per)
        X = np.empty(per, dtype=np.int64)
        D[i, j], errs[idx] = _scaled_dot(A[i], BT[j], SA[i], SBT[j], C[i, j], T, X, L, block,
                                         group, F, e_zero, emin_a, emin_b, emin_s, p, ovf_lim)
    return errs.sum()


@njit(cache=True, parallel=True)
def rows_scaled(A, B, SA, SB, c, out, L, block, group, F, e_zero, emin_a, emin_b, emin_s, p,
                ovf_lim):
    """Block-scaled dot products of row pairs: ``out[r]`` is the chained dot product of
    A[r], B[r] (R, K; K a multiple of L) with scales SA[r], SB[r] (R, K/block) from c[r],
    the same arithmetic as :func:`gemm_scaled` (no term matrix in memory)."""
    R = A.shape[0]
    per = L // group
    errs = np.zeros(R, dtype=np.int64)
    for r in prange(R):
        T = np.empty(per)
        X = np.empty(per, dtype=np.int64)
        out[r], errs[r] = _scaled_dot(A[r], B[r], SA[r], SB[r], c[r], T, X, L, block, group,
                                      F, e_zero, emin_a, emin_b, emin_s, p, ovf_lim)
    return errs.sum()
