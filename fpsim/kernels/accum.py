"""Numba kernels of the accumulation models (SPEC §4).

Every kernel works on *exact* terms held in float64: products of inputs with at most 26
significant bits are exact in float64, and a rounded/L-Mul product is a float64 value too.
One rounded addition ``round(s + t)`` is ``two_sum`` (exact ``hi + lo``), round-to-odd into
float64 and one :func:`round_bits` into the accumulator format: correctly rounded in every
mode for accumulators of at most 51 significant bits (Boldo & Melquiond 2008).

Kernels parallelise over independent dot products only (``prange`` over rows), so results
are identical for any thread count.
"""

import numpy as np
from numba import njit, prange

from .eft import bits_f64, f64_bits, to_odd_bits, two_sum
from ._rng import random_bits
from .float_round import round_bits

from ._modes import (EXACT, FUSED, KAHAN, MUL_EXACT, MUL_ROUND, NATIVE, NUMPY,  # noqa: F401
                     PAIR, SEQ)


@njit(cache=True, inline="always")
def _odd_sum_bits(a, b):
    """float64 bits of round-to-odd(a + b) (inf/NaN handled like IEEE addition)."""
    hi, lo = two_sum(a, b)
    if hi - hi != 0.0:  # inf or NaN: lo is meaningless
        return f64_bits(hi)
    return to_odd_bits(hi, lo)


@njit(cache=True)
def radd(a, b, p):
    """round(a + b) into the format described by float64-domain RoundParams ``p``."""
    o, e = round_bits(_odd_sum_bits(a, b), p, np.uint64(0))
    return bits_f64(o), e


@njit(cache=True)
def rnd1(x, p):
    """round(x) for one float64 ``x``."""
    o, e = round_bits(f64_bits(x), p, np.uint64(0))
    return bits_f64(o), e


@njit(cache=True, inline="always")
def pow2(e):
    """2.0**e for -1022 <= e <= 1023 without ldexp (bit construction); 0/inf outside."""
    if e < -1022:
        if e < -1074:
            return 0.0
        return bits_f64(np.uint64(1) << np.uint64(e + 1074))
    if e > 1023:
        return np.inf
    return bits_f64(np.uint64(e + 1023) << np.uint64(52))


# ---------------------------------------------------------------------------------------
# Leaves
# ---------------------------------------------------------------------------------------

@njit(cache=True)
def _seq_row(t, c, p):
    s = c
    err = 0
    for k in range(t.size):
        s, e = radd(s, t[k], p)
        err += e
    return s, err


@njit(cache=True)
def _native_row(t, c):
    s = c
    for k in range(t.size):
        s = s + t[k]
    return s


@njit(cache=True)
def _kahan_row(t, c, p):
    s = c
    comp = 0.0
    err = 0
    for k in range(t.size):
        y, e1 = radd(t[k], -comp, p)
        u, e2 = radd(s, y, p)
        v, e3 = radd(u, -s, p)
        comp, e4 = radd(v, -y, p)
        s = u
        err += e1 + e2 + e3 + e4
    return s, err


# Kulisch accumulator: 32-bit digits in int64 limbs, value = sum limb[i] * 2**(32 i + _EBASE)
_EBASE = -1120
_NL = 70


@njit(cache=True, inline="always")
def _kul_add(limbs, x):
    b = f64_bits(x)
    neg = (b >> np.uint64(63)) != np.uint64(0)
    ef = np.int64((b >> np.uint64(52)) & np.uint64(0x7FF))
    sig = np.int64(b & np.uint64(0xFFFFFFFFFFFFF))
    if ef > 0:
        sig |= np.int64(1) << 52
    if sig == 0:
        return
    e = max(ef, 1) - 1075
    pos = e - _EBASE
    li = pos >> 5
    off = pos & 31
    m32 = (np.int64(1) << 32) - 1
    p0 = (sig & ((np.int64(1) << (32 - off)) - 1)) << off
    rest = sig >> (32 - off)
    p1 = rest & m32
    p2 = rest >> 32
    if neg:
        limbs[li] -= p0
        limbs[li + 1] -= p1
        limbs[li + 2] -= p2
    else:
        limbs[li] += p0
        limbs[li + 1] += p1
        limbs[li + 2] += p2


@njit(cache=True)
def _kul_norm(limbs):
    for i in range(_NL - 1):
        cy = limbs[i] >> 32
        limbs[i] -= cy << 32
        limbs[i + 1] += cy


@njit(cache=True)
def _kul_odd(limbs):
    """float64 round-to-odd of the accumulator value (normalises in place)."""
    _kul_norm(limbs)
    neg = limbs[_NL - 1] < 0
    if neg:
        for i in range(_NL):
            limbs[i] = -limbs[i]
        _kul_norm(limbs)
    h = _NL - 1
    while h >= 0 and limbs[h] == 0:
        h -= 1
    if h < 0:
        return 0.0
    if h == 0:
        return (-1.0 if neg else 1.0) * np.float64(limbs[0]) * pow2(_EBASE)
    # a 62-bit window from the top limbs; everything below it is the sticky information
    mant = np.uint64((limbs[h] << 32) | limbs[h - 1])
    t = 63
    while (mant >> np.uint64(t)) == np.uint64(0):
        t -= 1
    sticky = False
    low = h - 1  # lowest limb index consumed (fully)
    sfill = 0
    if t < 61 and h >= 2:
        sfill = 61 - t  # < 32
        nxt = np.uint64(limbs[h - 2])
        mant = (mant << np.uint64(sfill)) | (nxt >> np.uint64(32 - sfill))
        if (nxt & ((np.uint64(1) << np.uint64(32 - sfill)) - np.uint64(1))) != np.uint64(0):
            sticky = True
        low = h - 2
        t = 61
    for i in range(low):
        if limbs[i] != 0:
            sticky = True
    shift = t - 52
    if shift > 0:
        if (mant & ((np.uint64(1) << np.uint64(shift)) - np.uint64(1))) != np.uint64(0):
            sticky = True
        mant = mant >> np.uint64(shift)
    else:
        shift = 0
    if sticky:
        mant |= np.uint64(1)
    shift -= sfill
    e = 32 * (h - 1) + _EBASE + shift
    v = np.float64(mant)
    if e < -1022:  # two steps keep every intermediate exact (mant has 53 bits)
        v = v * pow2(e + 600) * pow2(-600)
    elif e > 1023:
        v = v * pow2(e - 600) * pow2(600)
    else:
        v = v * pow2(e)
    return -v if neg else v


@njit(cache=True)
def _exact_row(t, c, p, limbs):
    limbs[:] = 0
    special = 0.0
    has_special = False
    if c - c == 0.0:
        _kul_add(limbs, c)
    else:
        special = c
        has_special = True
    for k in range(t.size):
        x = t[k]
        if x - x != 0.0:
            special = special + x if has_special else x
            has_special = True
        else:
            _kul_add(limbs, x)
    if has_special:
        return rnd1(special, p)
    v = _kul_odd(limbs)
    if v == 0.0:  # exact zero: +0 unless every term is -0 (IEEE sum of signed zeros)
        allneg = np.signbit(c)
        for k in range(t.size):
            if not np.signbit(t[k]) or t[k] != 0.0:
                allneg = False
        return rnd1(-0.0 if allneg else 0.0, p)
    return rnd1(v, p)


@njit(cache=True)
def _np_block(t, lo, n, p):
    """numpy's ``pairwise_sum`` leaf for n <= 128 (numpy/_core/src/umath/loops_utils.h.src):
    n < 8: a plain loop from 0.; else 8 running sums, combined as a tree, then the rest."""
    err = 0
    if n < 8:
        res = 0.0
        for i in range(n):
            res, e = radd(res, t[lo + i], p)
            err += e
        return res, err
    r = np.empty(8)
    for j in range(8):
        r[j] = t[lo + j]
    i = 8
    while i < n - (n % 8):
        for j in range(8):
            r[j], e = radd(r[j], t[lo + i + j], p)
            err += e
        i += 8
    a, e1 = radd(r[0], r[1], p)
    b, e2 = radd(r[2], r[3], p)
    cc, e3 = radd(r[4], r[5], p)
    d, e4 = radd(r[6], r[7], p)
    ab, e5 = radd(a, b, p)
    cd, e6 = radd(cc, d, p)
    res, e7 = radd(ab, cd, p)
    err += e1 + e2 + e3 + e4 + e5 + e6 + e7
    while i < n:
        res, e = radd(res, t[lo + i], p)
        err += e
        i += 1
    return res, err


@njit(cache=True)
def tree_sum(t, p, numpy_order):
    """Sum of t (len >= 1) over a binary tree, every node rounded with p.

    ``numpy_order=False``: recursive halves (left half ``n // 2``) down to single terms.
    ``numpy_order=True``: numpy's split ``n2 = n // 2 - (n // 2) % 8`` down to blocks of at
    most 128 summed by :func:`_np_block`. Iterative post-order walk (numba's cache does not
    support recursive functions).
    """
    nlo = np.empty(256, dtype=np.int64)
    nhi = np.empty(256, dtype=np.int64)
    nst = np.empty(256, dtype=np.int64)
    vals = np.empty(256, dtype=np.float64)
    top = 0
    nv = 0
    err = 0
    nlo[0] = 0
    nhi[0] = t.size
    nst[0] = 0
    top = 1
    while top > 0:
        top -= 1
        lo = nlo[top]
        hi = nhi[top]
        st = nst[top]
        n = hi - lo
        if st == 0 and (n == 1 and not numpy_order):
            vals[nv] = t[lo]
            nv += 1
            continue
        if st == 0 and numpy_order and n <= 128:
            v, e = _np_block(t, lo, n, p)
            err += e
            vals[nv] = v
            nv += 1
            continue
        if st == 0:
            if numpy_order:
                mid = n // 2
                mid = lo + mid - mid % 8
            else:
                mid = lo + n // 2
            nlo[top] = lo
            nhi[top] = hi
            nst[top] = 1
            nlo[top + 1] = mid
            nhi[top + 1] = hi
            nst[top + 1] = 0
            nlo[top + 2] = lo
            nhi[top + 2] = mid
            nst[top + 2] = 0
            top += 3
            continue
        b = vals[nv - 1]
        a = vals[nv - 2]
        v, e = radd(a, b, p)
        err += e
        vals[nv - 2] = v
        nv -= 1
    return vals[0], err


@njit(cache=True, inline="always")
def _exp_of(x):
    """Exponent of the leading bit of a nonzero finite float64 (normal or subnormal)."""
    b = f64_bits(x)
    ef = np.int64((b >> np.uint64(52)) & np.uint64(0x7FF))
    if ef > 0:
        return ef - 1023
    sig = np.int64(b & np.uint64(0xFFFFFFFFFFFFF))
    t = 51
    while (sig >> t) == 0:
        t -= 1
    return t - 1074


@njit(cache=True, inline="always")
def _scaled_q(S, q):
    """float64(S) * 2**q for an int64 sum S of units 2**q (in two steps when 2**q alone
    would leave float64's normal range)."""
    v = np.float64(S)
    if q < -1022 or q > 1023:
        return v * pow2(q + 600) * pow2(-600) if q < 0 else v * pow2(q - 600) * pow2(600)
    return v * pow2(q)


@njit(cache=True, inline="always")
def _trunc_q(x, q):
    """sign(x) * floor(|x| / 2**q) as int64 (|x| / 2**q < 2**62 assumed)."""
    b = f64_bits(x)
    ef = np.int64((b >> np.uint64(52)) & np.uint64(0x7FF))
    sig = np.int64(b & np.uint64(0xFFFFFFFFFFFFF))
    if ef > 0:
        sig |= np.int64(1) << 52
    el = max(ef, 1) - 1075  # x = sig * 2**el
    sh = q - el
    if sh <= 0:
        m = sig << (-sh)
    elif sh < 63:
        m = sig >> sh
    else:
        m = np.int64(0)
    return -m if x < 0.0 else m


@njit(cache=True)
def fused_block(ar, br, lo, hi, c, neab, emin_a, emin_b, p, ovf_lim):
    """One block of the tensor-core multi-term fused adder: ``d = sum(ar*br) + c``.

    Khattak & Mikaitis (2025) semantics: zero products drop out; a product's exponent is
    ``ea + eb`` (input exponents clamped at the input format's emin) and its significand
    ``sa * sb`` lies in [0, 4) (``emin_a``/``emin_b``: the operand formats' smallest normal
    exponents, which differ for mixed operands); one extra alignment bit is granted when the largest such
    product significand is >= 2 and its exponent is not below c's; products with
    significand >= 2 are normalised (exponent + 1); every term (c included) is truncated
    toward zero to multiples of ``2**(E - 23 - neab')``, ``E`` the largest exponent; the
    integers are summed exactly and the sum rounded once with ``p`` (an overflow of the
    truncating mode gives inf, as on the GPU).
    """
    emaxp = -100000
    for k in range(lo, hi):
        a = ar[k]
        b = br[k]
        if a == 0.0 or b == 0.0:
            continue
        ep = max(_exp_of(a), emin_a) + max(_exp_of(b), emin_b)
        emaxp = max(emaxp, ep)
    has_c = c != 0.0
    if emaxp == -100000 and not has_c:
        return rnd1(0.0, p)
    # c is a value of the output format: a subnormal c counts with that format's smallest
    # normal exponent (p.emin: -126 for fp32, -14 for fp16), as in MMA-Sim's models
    ec = max(_exp_of(c), p.emin) if has_c else -100000
    # extra bit and the largest (normalised) exponent
    big = False
    E = ec
    for k in range(lo, hi):
        a = ar[k]
        b = br[k]
        if a == 0.0 or b == 0.0:
            continue
        ep = max(_exp_of(a), emin_a) + max(_exp_of(b), emin_b)
        ne = max(_exp_of(a * b), ep)  # ep + 1 when the significand product is >= 2
        if ep == emaxp and ne > ep:
            big = True
        E = max(E, ne)
    extra = 1 if (big and (not has_c or emaxp >= ec)) else 0
    q = E - 23 - neab - extra
    S = np.int64(0)
    if has_c:
        S += _trunc_q(c, q)
    for k in range(lo, hi):
        a = ar[k]
        b = br[k]
        if a == 0.0 or b == 0.0:
            continue
        S += _trunc_q(a * b, q)
    if S == 0:
        return rnd1(0.0, p)
    v = _scaled_q(S, q)
    if abs(v) >= ovf_lim:
        return (-np.inf if v < 0.0 else np.inf), 0
    r, e = rnd1(v, p)
    # a nonzero sum that rounds to zero gives +0, as MMA-Sim's bit-accurate models do
    return (0.0 if r == 0.0 else r), e


@njit(cache=True)
def fused_row(ar, br, c, n, neab, emin_a, emin_b, p, ovf_lim):
    """A dot product as blocks of n chained through the accumulator (c <- d).

    Specials are resolved block by block, as the hardware does (and MMA-Sim models): a
    block whose accumulator or products hold inf or NaN gives their IEEE sum (NaN for any
    NaN or inf - inf), so an accumulator that overflowed to inf in one block meets the
    next block's infinite products."""
    K = ar.size
    s = c
    err = 0
    for lo in range(0, K, n):
        hi = min(K, lo + n)
        special = s - s != 0.0
        for k in range(lo, hi):
            if (ar[k] * br[k]) - (ar[k] * br[k]) != 0.0:
                special = True
        if special:
            t = s
            for k in range(lo, hi):
                t = t + ar[k] * br[k]
            s, e = rnd1(t, p)
        else:
            s, e = fused_block(ar, br, lo, hi, s, neab, emin_a, emin_b, p, ovf_lim)
        err += e
    return s, err


@njit(cache=True, parallel=True)
def leaf(T, TB, c, out, kind, p, n, neab, emin_a, emin_b, ovf_lim):
    """Apply one leaf model to every row of the term matrix ``T`` (R, K) with start ``c``.

    FUSED reads the factors: ``T`` holds the left and ``TB`` the right factors."""
    R = T.shape[0]
    errs = np.zeros(R, dtype=np.int64)
    for r in prange(R):
        t = T[r]
        e = 0
        if kind == SEQ:
            s, e = _seq_row(t, c[r], p)
        elif kind == NATIVE:
            s = _native_row(t, c[r])
        elif kind == PAIR:
            if t.size == 0:
                s = c[r]
            else:
                tr, e1 = tree_sum(t, p, False)
                s, e = radd(c[r], tr, p)
                e += e1
        elif kind == KAHAN:
            s, e = _kahan_row(t, c[r], p)
        elif kind == EXACT:
            limbs = np.zeros(_NL, dtype=np.int64)
            s, e = _exact_row(t, c[r], p, limbs)
        elif kind == FUSED:
            s, e = fused_row(t, TB[r], c[r], n, neab, emin_a, emin_b, p, ovf_lim)
        else:  # NUMPY: out = c; out += pairwise_sum(terms)
            if t.size == 0:
                s = c[r]
            else:
                tr, e1 = tree_sum(t, p, True)
                s, e = radd(c[r], tr, p)
                e += e1
        out[r] = s
        errs[r] = e
    return errs.sum()


@njit(cache=True, parallel=True)
def seq_stochastic(T, c, out, p, seed, row0):
    """Sequential with stochastic rounding: ``s = round_sr(s + T[r, k])`` for every row.

    Each addition draws its bits from the counter ``(row0 + r) * K + k`` of the stream
    ``seed``, so results do not depend on the thread count or on how rows are chunked.
    The exact sum is rounded to odd in float64 first: its discarded bits keep the sticky
    information, so the probability of rounding up is the exact one to within 2**-52.
    """
    R, K = T.shape
    errs = np.zeros(R, dtype=np.int64)
    for r in prange(R):
        s = c[r]
        e_r = 0
        base = np.uint64(row0 + r) * np.uint64(K)
        for k in range(K):
            o, e = round_bits(_odd_sum_bits(s, T[r, k]), p, random_bits(seed, base + np.uint64(k)))
            s = bits_f64(o)
            e_r += e
        out[r] = s
        errs[r] = e_r
    return errs.sum()


@njit(cache=True, parallel=True)
def round_array(x, out, p):
    """Round every element of x with p; returns #NaN errors."""
    err = 0
    for i in prange(x.size):
        v, e = rnd1(x[i], p)
        out[i] = v
        err += e
    return err


@njit(cache=True, parallel=True)
def add_arrays(x, y, out, p):
    """out = round(x + y) elementwise; returns #NaN errors."""
    err = 0
    for i in prange(x.size):
        v, e = radd(x[i], y[i], p)
        out[i] = v
        err += e
    return err


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


@njit(cache=True)
def _clamped_exps(X, emin_in, out):
    """Exponent of each nonzero element, clamped below at the input format's emin."""
    flat = X.reshape(-1)
    o = out.reshape(-1)
    for t in range(flat.size):
        x = flat[t]
        # zeros get a huge negative exponent so that they never set a block's maximum
        o[t] = max(_exp_of(x), emin_in) if x != 0.0 and x - x == 0.0 else -(1 << 32)


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


# ---------------------------------------------------------------------------------------
# Block-scaled fused dot-add (Blackwell kind::mxf8f6f4 / mxf4 / mxf4nvf4)
# ---------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _scaled_step(s, T, X, lo, hi, F, e_zero, p, ovf_lim):
    """One block-scaled instruction: terms T[lo:hi] (alignment exponents X) and c = s."""
    special = s - s != 0.0
    for k in range(lo, hi):
        if T[k] - T[k] != 0.0:
            special = True
    if special:
        t = s
        for k in range(lo, hi):
            t = t + T[k]
        return rnd1(t, p)
    E = e_zero if s == 0.0 else max(_exp_of(s), p.emin)
    for k in range(lo, hi):
        E = max(E, X[k])
    q = E - F
    S = np.int64(0)
    if s != 0.0:
        S += _trunc_q(s, q)
    for k in range(lo, hi):
        if T[k] != 0.0:
            S += _trunc_q(T[k], q)
    if S == 0:
        return 0.0, 0
    v = _scaled_q(S, q)
    if abs(v) >= ovf_lim:
        return (-np.inf if v < 0.0 else np.inf), 0
    r, e = rnd1(v, p)
    return (0.0 if r == 0.0 else r), e  # a sum that rounds to zero gives +0


@njit(cache=True, parallel=True)
def rows_scaled_fused(T, X, c, out, per, F, e_zero, p, ovf_lim):
    """Chained fused dot-adds of pre-scaled terms: ``T`` (R, n) holds each row's exact
    terms (scaled products, or scaled sums of a group of products), ``X`` their alignment
    exponents (computed from the operands and scales, not from the values: the hardware
    aligns a group sum at its scale's exponent; zero terms carry ``e_zero``), ``per`` terms
    per instruction, chained through the accumulator (c <- d).

    Per instruction: ``E = max(X, exponent of c)`` (c clamped at ``p.emin``; a zero c
    counts as ``e_zero``); every term and c truncated toward zero at ``2**(E - F)``; the
    integers summed exactly and rounded once with ``p`` (an overflow of the truncating mode
    gives inf). An instruction whose terms or c hold inf or NaN gives their IEEE sum.
    """
    R, n = T.shape
    errs = np.zeros(R, dtype=np.int64)
    for r in prange(R):
        s = c[r]
        e_r = 0
        for lo in range(0, n, per):
            s, e = _scaled_step(s, T[r], X[r], lo, min(n, lo + per), F, e_zero, p, ovf_lim)
            e_r += e
        out[r] = s
        errs[r] = e_r
    return errs.sum()


@njit(cache=True, parallel=True)
def gemm_scaled(A, BT, SA, SBT, C, D, L, block, group, F, e_zero, emin_a, emin_b, emin_s, p,
                ovf_lim):
    """D = A @ BT.T + C with block scales SA (M, K/block), SBT (N, K/block): the terms of
    :func:`rows_scaled_fused` formed on the fly (no product matrix in memory). K is a
    multiple of L."""
    M, K = A.shape
    N = BT.shape[0]
    per = L // group
    errs = np.zeros(M * N, dtype=np.int64)
    for idx in prange(M * N):
        i = idx // N
        j = idx % N
        T = np.empty(per)
        X = np.empty(per, dtype=np.int64)
        s = C[i, j]
        e_r = 0
        for lo in range(0, K, L):
            for g in range(per):
                k0 = lo + g * group
                sa = SA[i, k0 // block]
                sb = SBT[j, k0 // block]
                t = 0.0
                nz = False
                for k in range(k0, k0 + group):
                    pr = A[i, k] * BT[j, k]
                    t += pr
                    nz |= pr != 0.0
                t = t * sa * sb
                T[g] = t
                if group == 1:
                    X[g] = e_zero if t == 0.0 else (
                        _norm_exp(A[i, k0], emin_a) + _norm_exp(BT[j, k0], emin_b)
                        + _norm_exp(sa, emin_s) + _norm_exp(sb, emin_s))
                elif not nz or sa == 0.0 or sb == 0.0:
                    X[g] = e_zero
                else:
                    X[g] = _norm_exp(sa, emin_s) + _norm_exp(sb, emin_s)
            s, e = _scaled_step(s, T, X, 0, per, F, e_zero, p, ovf_lim)
            e_r += e
        D[i, j] = s
        errs[idx] = e_r
    return errs.sum()


# ---------------------------------------------------------------------------------------
# AMD matrix cores (CDNA1-3 v_mfma; MMA-Sim's models, Xie et al. 2025)
# ---------------------------------------------------------------------------------------

MFMA_EXACT = 0  # CDNA1: exact sum of L products and c, rounded to nearest fp32
MFMA_FTZ = 1    # CDNA2: fp32 products and pairwise fp32 additions, subnormals flushed
MFMA_TR = 2     # CDNA3: products fused (F bits, truncated), then c added (floor at F2)
MFMA_GTR = 3    # CDNA3 FP8: odd and even products fused apart, then as MFMA_TR


@njit(cache=True, inline="always")
def _norm_exp(x, emin):
    """The exponent MMA-Sim gives a finite x: its leading bit's, clamped at emin (zero: emin)."""
    return emin if x == 0.0 else max(_exp_of(x), emin)


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
            e = max(e, _norm_exp(ar[k], emin_a) + _norm_exp(br[k], emin_b))
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
    ec = _norm_exp(c, -126)
    em = max(ed, ec)
    D = np.floor(sd * pow2(ed - F - (em - F2 - 1))) if ed != -999 else 0.0
    Cc = np.floor(c * pow2(F - em))
    if variant == MFMA_GTR and ec < em - F - 1:
        Cc = 0.0
    v = (D + Cc * pow2(F2 + 1 - F)) * pow2(em - F2 - 1)
    if v == 0.0:
        return 0.0
    ev = max(_exp_of(v), -126)
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
            limbs = np.zeros(_NL, dtype=np.int64)
            for lo in range(0, K, L):
                hi = min(K, lo + L)
                s, e = _exact_row(ar[lo:hi] * br[lo:hi], s, p, limbs)
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
