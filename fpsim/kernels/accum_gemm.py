"""Fast GEMM kernels of the accumulation models: no product matrix in memory (see
:mod:`fpsim.kernels.accum`); and the fp64 FMA chains (rows and GEMM), whose products exist
only inside each fused multiply-add."""

import numpy as np
from numba import njit, prange

from .accum_leaves import exp_of, pow2, rnd1
from .eft import bits_f64, f64_bits, fma64


# ---------------------------------------------------------------------------------------
# Fast GEMM kernels (no product matrix in memory)
# ---------------------------------------------------------------------------------------

@njit(cache=True, parallel=True)
def gemm_seq_f32(A, B, C, D, fma):
    """Sequential fp32 round-to-nearest-even accumulation, vectorised across the columns
    of the output: D[i, :] = C[i, :]; for k: D[i, j] = fp32(D[i, j] + A[i, k] * B[k, j]).

    ``fma=False`` rounds each product to fp32 first. Addition: two_sum, round-to-odd into
    float64 (branch-free on the bit pattern), then the native (RNE) conversion to float32:
    correctly rounded. Inputs must have at most 26 significant bits (exact products).
    """
    M, K = A.shape
    N = B.shape[1]
    for i in prange(M):
        s = np.empty(N, dtype=np.float64)
        for j in range(N):
            s[j] = C[i, j]
        for k in range(K):
            a = A[i, k]
            Bk = B[k]
            for j in range(N):
                pr = a * Bk[j]
                if not fma:
                    pr = np.float64(np.float32(pr))
                x = s[j]
                h = x + pr
                bb = h - x
                lo = (x - (h - bb)) + (pr - bb)
                # round to odd: an inexact result with an even last bit steps one ulp
                # toward lo (up in magnitude when lo has h's sign)
                hh = np.int64(f64_bits(h))
                # (an infinite h has a NaN lo: it must stay inf, not step into a NaN pattern)
                inexact_even = (lo != 0.0) & ((hh & 1) == 0) & (h - h == 0.0)
                step = np.int64(1) if (lo > 0.0) == (hh >= 0) else np.int64(-1)
                hh = hh + (step if inexact_even else np.int64(0))
                s[j] = np.float64(np.float32(bits_f64(np.uint64(hh))))
        for j in range(N):
            D[i, j] = s[j]
    return 0


@njit(cache=True, parallel=True)
def fma64_rows(A, B, c, out):
    """fp64 FMA chains: ``s = c[r]; for k: s = fl64(A[r, k] * B[r, k] + s)``, one rounding
    per step (round to nearest even; IEEE inf/NaN), for any float64 factors."""
    for r in prange(A.shape[0]):
        s = c[r]
        for k in range(A.shape[1]):
            s = fma64(A[r, k], B[r, k], s)
        out[r] = s
    return 0


@njit(cache=True, parallel=True)
def gemm_fma64(A, B, C, D):
    """fp64 FMA chains (``Sequential("fp64", fma=True)``), vectorised across the columns of
    the output: D[i, :] = C[i, :]; for k: D[i, j] = fl64(A[i, k] * B[k, j] + D[i, j]), one
    rounding per step. The K loop of every element runs in order; rows run in parallel."""
    M, K = A.shape
    N = B.shape[1]
    for i in prange(M):
        s = np.empty(N, dtype=np.float64)
        for j in range(N):
            s[j] = C[i, j]
        for k in range(K):
            a = A[i, k]
            Bk = B[k]
            for j in range(N):
                s[j] = fma64(a, Bk[j], s[j])
        for j in range(N):
            D[i, j] = s[j]
    return 0


@njit(cache=True)
def clamped_exps(X, emin_in, out):
    """Exponent of each nonzero element, clamped below at the input format's emin."""
    flat = X.reshape(-1)
    o = out.reshape(-1)
    for t in range(flat.size):
        x = flat[t]
        # zeros get a huge negative exponent so that they never set a block's maximum
        o[t] = max(exp_of(x), emin_in) if x != 0.0 and x - x == 0.0 else -(1 << 32)


@njit(cache=True, inline="always")
def _fast_row(ar, br, ea, eb, c, pr, n, neab, p, ovf_lim, rtz_mask, min_normal):
    """One dot product on the tensor-core model for finite inputs (see :func:`fused_block`).

    Products of inputs in formats up to fp32 are normal float64 numbers, so exponents come
    from the bit pattern and the truncation ``floor(|x| / 2**q)`` is one multiplication by
    ``2**-q`` and a truncating conversion to int64. ``rtz_mask`` (nonzero for truncating
    output) clears the dropped float64 fraction bits of a normal result directly.
    ``ea``/``eb``: input exponents clamped at the input emin (zeros: a huge negative value).
    """
    K = ar.size
    expmask = np.uint64(0x7FF)
    keep = ~np.uint64(rtz_mask)
    err = 0
    for lo in range(0, K, n):
        hi = min(K, lo + n)
        # key = 2 * (ea + eb) + (significand product >= 2): its maximum gives the largest
        # unnormalised product exponent and whether the extra alignment bit applies
        maxkey = np.int64(-(1 << 40))
        E = np.int64(-100000)
        for k in range(lo, hi):
            v = ar[k] * br[k]
            pr[k - lo] = v
            ep = ea[k] + eb[k]
            ne = np.int64((f64_bits(v) >> np.uint64(52)) & expmask) - 1023
            key = 2 * ep + (1 if ne > ep else 0)
            maxkey = max(maxkey, key)
            E = max(E, max(ne, ep))
        emaxp = maxkey >> 1
        big = (maxkey & 1) == 1
        allzero = maxkey < -(1 << 30)
        if allzero:
            E = -100000
        if c != 0.0:
            ec = max(np.int64((f64_bits(c) >> np.uint64(52)) & expmask) - 1023, p.emin)
            E = max(E, ec)
            if emaxp < ec:
                big = False
        elif allzero:
            c, e1 = rnd1(0.0, p)
            err += e1
            continue
        if c - c != 0.0:  # an earlier block overflowed to inf: finite products keep it
            continue
        q = E - 23 - neab - (1 if big else 0)
        sc = pow2(-q)
        S = np.int64(c * sc)
        for k in range(hi - lo):
            S += np.int64(pr[k] * sc)
        v = np.float64(S) * pow2(q)
        av = abs(v)
        if rtz_mask != 0 and av >= min_normal and av < ovf_lim:
            c = bits_f64(f64_bits(v) & keep)
        elif S == 0:
            c, e1 = rnd1(0.0, p)
            err += e1
        elif av >= ovf_lim:
            c = -np.inf if v < 0.0 else np.inf
        else:
            c, e1 = rnd1(v, p)
            err += e1
            if c == 0.0:  # a nonzero sum that rounds to zero: +0 (see fused_block)
                c = 0.0
    return c, err


@njit(cache=True, parallel=True)
def gemm_fused_vec(A, B, EA, EB, C, D, n, neab, p, ovf_lim, rtz_mask, min_normal):
    """Tensor-core GEMM for finite inputs, vectorised across the columns of D.

    Same arithmetic as :func:`_fast_row` (bit-identical), but every block is processed for
    a whole row of outputs at once so the per-product work runs in SIMD lanes. ``B`` is
    (K, N) and ``EB`` its clamped exponents.
    """
    M, K = A.shape
    N = B.shape[1]
    expmask = np.uint64(0x7FF)
    keep = ~np.uint64(rtz_mask)
    err = 0
    for i in prange(M):
        c = np.empty(N, dtype=np.float64)
        for j in range(N):
            c[j] = C[i, j]
        pr = np.empty((n, N), dtype=np.float64)
        maxkey = np.empty(N, dtype=np.int64)
        E = np.empty(N, dtype=np.int64)
        S = np.empty(N, dtype=np.int64)
        was_inf = np.empty(N, dtype=np.bool_)
        q = np.empty(N, dtype=np.int64)
        sc = np.empty(N, dtype=np.float64)
        e = 0
        for lo in range(0, K, n):
            hi = min(K, lo + n)
            for j in range(N):
                maxkey[j] = -(1 << 40)
                E[j] = -100000
            for k in range(lo, hi):
                a = A[i, k]
                eak = EA[i, k]
                Bk = B[k]
                EBk = EB[k]
                prk = pr[k - lo]
                for j in range(N):
                    v = a * Bk[j]
                    prk[j] = v
                    ep = eak + EBk[j]
                    ne = np.int64((f64_bits(v) >> np.uint64(52)) & expmask) - 1023
                    key = 2 * ep + (1 if ne > ep else 0)
                    maxkey[j] = max(maxkey[j], key)
                    E[j] = max(E[j], max(ne, ep))
            for j in range(N):
                mk = maxkey[j]
                allzero = mk < -(1 << 30)
                ej = np.int64(-100000) if allzero else E[j]
                big = (mk & 1) == 1
                cj = c[j]
                ec = max(np.int64((f64_bits(cj) >> np.uint64(52)) & expmask) - 1023, p.emin)
                if cj != 0.0:
                    ej = max(ej, ec)
                    if (mk >> 1) < ec:
                        big = False
                if ej < -2000:  # nothing but zeros: S = 0, any q will do
                    ej = 0
                qq = ej - 23 - neab - (1 if big else 0)
                q[j] = qq
                scj = bits_f64(np.uint64(1023 - qq) << np.uint64(52))  # 2**-qq
                sc[j] = scj
                # an earlier block overflowed to inf: finite products keep it (int64(inf)
                # would be undefined)
                was_inf[j] = cj - cj != 0.0
                S[j] = 0 if was_inf[j] else np.int64(cj * scj)
            for k in range(hi - lo):
                prk = pr[k]
                for j in range(N):
                    S[j] += np.int64(prk[j] * sc[j])
            for j in range(N):
                v = np.float64(S[j]) * bits_f64(np.uint64(1023 + q[j]) << np.uint64(52))
                av = abs(v)
                if was_inf[j]:
                    pass
                elif rtz_mask != 0 and av >= min_normal and av < ovf_lim:
                    c[j] = bits_f64(f64_bits(v) & keep)
                elif av >= ovf_lim:
                    c[j] = -np.inf if v < 0.0 else np.inf
                else:
                    r, e1 = rnd1(v, p)  # also S == 0: +0 as the GPU model
                    c[j] = 0.0 if r == 0.0 else r  # and +0 when a nonzero sum rounds to 0
                    e += e1
        for j in range(N):
            D[i, j] = c[j]
        err += e
    return err


@njit(cache=True, parallel=True)
def rows_fused_fast(A, B, EA, EB, c, out, n, neab, p, ovf_lim, rtz_mask, min_normal):
    """Tensor-core dot products of row pairs, finite inputs: out[r] = _fast_row(A[r], B[r], c[r])."""
    err = 0
    for r in prange(A.shape[0]):
        pr = np.empty(n, dtype=np.float64)
        d, e1 = _fast_row(A[r], B[r], EA[r], EB[r], c[r], pr, n, neab, p, ovf_lim, rtz_mask,
                          min_normal)
        out[r] = d
        err += e1
    return err
