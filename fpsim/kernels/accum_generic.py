"""The generic fused dot-add kernel (:class:`fpsim.accum.FusedDotAdd`; see
:mod:`fpsim.kernels.accum`).

Written directly from the model's field definitions with exact integer arithmetic: every
term is a float64 value that is exact (a product of two inputs of at most 26 significant
bits, times power-of-two scales, or an exact group sum of such products); alignment is an
integer shift of its significand, the sum an int64, the one rounding :func:`rnd1` of a
float64 that holds the integer sum exactly or rounded to odd (so the final rounding into a
format of at most 51 bits is correct in every mode). Slower than the specialised kernels,
but one rule for all of them.
"""

import numpy as np
from numba import njit, prange

from .accum_leaves import exp_of, pow2, rnd1
from .eft import f64_bits

#: Sentinel exponent of a term that is zero (it then takes ``zero_exp`` or drops out).
NO_EXP = -(1 << 40)


@njit(cache=True, inline="always")
def _clamp_exp(x, emin):
    """Exponent of the leading bit of a nonzero finite x, clamped at emin."""
    return max(exp_of(x), emin)


@njit(cache=True, inline="always")
def _aligned(x, u, sticky):
    """sign(x) * |x| truncated toward zero to a multiple of 2**u, as an int64 count of
    2**u; with ``sticky`` one more bit below (units of 2**(u-1)), set when any bit of |x|
    below 2**u is nonzero."""
    b = f64_bits(x)
    ef = np.int64((b >> np.uint64(52)) & np.uint64(0x7FF))
    sig = np.int64(b & np.uint64(0xFFFFFFFFFFFFF))
    if ef > 0:
        sig |= np.int64(1) << 52
    el = max(ef, 1) - 1075  # |x| = sig * 2**el
    sh = u - el
    rem = False
    if sh <= 0:
        m = sig << (-sh)
    elif sh < 63:
        m = sig >> sh
        rem = (sig & ((np.int64(1) << sh) - 1)) != 0
    else:
        m = np.int64(0)
        rem = sig != 0
    if sticky:
        m = 2 * m + (1 if rem else 0)
    return -m if x < 0.0 else m


@njit(cache=True, inline="always")
def _int_value(S, u):
    """float64 of S * 2**u: exact when |S| < 2**53, else rounded to odd (the sticky
    information kept in the last bit, so one later rounding to <= 51 bits is correct)."""
    neg = S < 0
    m = -S if neg else S
    sh = 0
    while m >= (np.int64(1) << 53):
        m = (m >> 1) | (m & 1)  # keeps the OR of the dropped bits in bit 0
        sh += 1
    v = np.float64(m)
    e = u + sh
    if e < -1022 or e > 1023:
        v = v * pow2(e + 600) * pow2(-600) if e < 0 else v * pow2(e - 600) * pow2(600)
    else:
        v = v * pow2(e)
    return -v if neg else v


@njit(cache=True)
def generic_step(s, T, X, n, F, sticky, has_zero_exp, zero_exp, min_align, c_floor, p,
                 ovf_lim, min_normal_out, ftz_out):
    """One fused dot-add: the n exact terms T[:n] (alignment exponents X[:n], NO_EXP for a
    zero term) and c = s into one rounded value.

    ``E`` is the largest of: c's exponent (its leading bit's, clamped at ``c_floor``), the
    terms' exponents, ``zero_exp`` for every zero term and a zero c (when
    ``has_zero_exp``), ``min_align``; every term and c truncated toward zero at
    ``2**(E - F)`` (with ``sticky`` one more sticky bit each); the integers summed exactly
    and rounded once with ``p`` (``|sum| >= ovf_lim`` gives inf). Terms or c holding inf or
    NaN give their IEEE sum; a zero sum, or one that rounds to zero, gives +0; with
    ``ftz_out`` a result below ``min_normal_out`` flushes to +0.
    """
    special = s - s != 0.0
    for k in range(n):
        if T[k] - T[k] != 0.0:
            special = True
    if special:
        t = s
        for k in range(n):
            t = t + T[k]
        return rnd1(t, p)
    E = min_align
    if s != 0.0:
        E = max(E, _clamp_exp(s, c_floor))
    elif has_zero_exp:
        E = max(E, zero_exp)
    for k in range(n):
        if X[k] != NO_EXP:
            E = max(E, X[k])
        elif has_zero_exp:
            E = max(E, zero_exp)
    if E == NO_EXP:  # no term and no c: every one is zero and drops out
        return 0.0, 0
    u = E - F - (1 if sticky else 0)
    S = np.int64(0)
    if s != 0.0:
        S += _aligned(s, E - F, sticky)
    for k in range(n):
        if T[k] != 0.0:
            S += _aligned(T[k], E - F, sticky)
    if S == 0:
        return 0.0, 0
    v = _int_value(S, u)
    if abs(v) >= ovf_lim:
        return (-np.inf if v < 0.0 else np.inf), 0
    r, e = rnd1(v, p)
    if r == 0.0 or (ftz_out and abs(r) < min_normal_out):
        return 0.0, e
    return r, e


@njit(cache=True)
def generic_dot(ar, br, sar, sbr, s, L, block, group, F, sticky, normalize, has_zero_exp,
                zero_exp, min_align, c_floor0, c_floor, emin_a, emin_b, emin_s, ftz_a, ftz_b,
                p, ovf_lim, min_normal_out, ftz_out, T, X):
    """One chained dot-add of the rows ``ar``, ``br`` from c = ``s``: instructions of L
    products (the last one shorter when L does not divide K), each formed into terms (one
    per ``group`` products; a group's products summed exactly) and :func:`generic_step`.

    ``block`` > 0: one scale per ``block`` elements in ``sar``/``sbr`` multiplies the terms,
    and a term's exponent adds the scales' exponents (clamped at ``emin_s``); a group of
    more than one product aligns at its scales' exponent alone. A product's exponent is
    ``ea + eb`` (clamped at ``emin_a``/``emin_b``), or with ``normalize`` the exponent of
    its leading bit. Inputs below ``ftz_a``/``ftz_b`` in magnitude flush to +0. The first
    instruction clamps c's exponent at ``c_floor0``, later ones at ``c_floor``.
    """
    K = ar.size
    e_r = 0
    first = True
    for lo in range(0, K, L):
        hi = min(K, lo + L)
        n = 0
        for g0 in range(lo, hi, group):
            sa = 1.0
            sb = 1.0
            if block > 0:
                sa = sar[g0 // block]
                sb = sbr[g0 // block]
            t = 0.0
            nz = False
            ex = NO_EXP
            for k in range(g0, min(hi, g0 + group)):
                a = 0.0 if abs(ar[k]) < ftz_a else ar[k]
                b = 0.0 if abs(br[k]) < ftz_b else br[k]
                pr = a * b
                t += pr  # exact: groups of > 1 product are of 4-bit elements (checked)
                if pr != 0.0 and pr - pr == 0.0:
                    nz = True
                    if normalize:
                        ex = exp_of(pr)
                    else:
                        ex = _clamp_exp(a, emin_a) + _clamp_exp(b, emin_b)
            t = t * sa * sb
            if block > 0 and t - t == 0.0 and nz and sa != 0.0 and sb != 0.0:
                es = _clamp_exp(sa, emin_s) + _clamp_exp(sb, emin_s)
                ex = es if group > 1 else ex + es
            elif group > 1 or t == 0.0 or not nz:
                ex = NO_EXP
            T[n] = t
            X[n] = ex
            n += 1
        s, e = generic_step(s, T, X, n, F, sticky, has_zero_exp, zero_exp, min_align,
                            c_floor0 if first else c_floor, p, ovf_lim, min_normal_out,
                            ftz_out)
        first = False
        e_r += e
    return s, e_r


@njit(cache=True, parallel=True)
def rows_generic(A, B, SA, SB, c, out, L, block, group, F, sticky, normalize, has_zero_exp,
                 zero_exp, min_align, c_floor0, c_floor, emin_a, emin_b, emin_s, ftz_a, ftz_b,
                 p, ovf_lim, min_normal_out, ftz_out):
    """``out[r]``: :func:`generic_dot` of A[r], B[r] (R, K) with scales SA[r], SB[r] from
    c[r]. Returns the number of NaN results the output format cannot hold."""
    R = A.shape[0]
    errs = np.zeros(R, dtype=np.int64)
    for r in prange(R):
        T = np.empty(L)
        X = np.empty(L, dtype=np.int64)
        out[r], errs[r] = generic_dot(A[r], B[r], SA[r], SB[r], c[r], L, block, group, F,
                                      sticky, normalize, has_zero_exp, zero_exp, min_align,
                                      c_floor0, c_floor, emin_a, emin_b, emin_s, ftz_a, ftz_b,
                                      p, ovf_lim, min_normal_out, ftz_out, T, X)
    return errs.sum()


@njit(cache=True, parallel=True)
def gemm_generic(A, BT, SA, SBT, C, D, L, block, group, F, sticky, normalize, has_zero_exp,
                 zero_exp, min_align, c_floor0, c_floor, emin_a, emin_b, emin_s, ftz_a, ftz_b,
                 p, ovf_lim, min_normal_out, ftz_out):
    """D = A @ BT.T + C, every output one :func:`generic_dot` (parallel over outputs)."""
    M = A.shape[0]
    N = BT.shape[0]
    errs = np.zeros(M * N, dtype=np.int64)
    for idx in prange(M * N):
        i = idx // N
        j = idx % N
        T = np.empty(L)
        X = np.empty(L, dtype=np.int64)
        D[i, j], errs[idx] = generic_dot(A[i], BT[j], SA[i], SBT[j], C[i, j], L, block, group,
                                         F, sticky, normalize, has_zero_exp, zero_exp,
                                         min_align, c_floor0, c_floor, emin_a, emin_b, emin_s,
                                         ftz_a, ftz_b, p, ovf_lim, min_normal_out, ftz_out,
                                         T, X)
    return errs.sum()
