"""Leaves and shared helpers of the accumulation kernels (see :mod:`fpsim.kernels.accum`):
one rounded addition, the per-row sums of every leaf kind, the Kulisch exact accumulator,
the fused (tensor-core) block sum."""

import numpy as np
from numba import njit, prange

from .eft import bits_f64, f64_bits, pow2, to_odd_bits, two_sum
from ._rng import random_bits
from .float_round import round_bits

from ._modes import (EXACT, FUSED, KAHAN, NATIVE,  # noqa: F401
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
KULISCH_LIMBS = 70


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
    for i in range(KULISCH_LIMBS - 1):
        cy = limbs[i] >> 32
        limbs[i] -= cy << 32
        limbs[i + 1] += cy


@njit(cache=True)
def _kul_odd(limbs):
    """float64 round-to-odd of the accumulator value (normalises in place)."""
    _kul_norm(limbs)
    neg = limbs[KULISCH_LIMBS - 1] < 0
    if neg:
        for i in range(KULISCH_LIMBS):
            limbs[i] = -limbs[i]
        _kul_norm(limbs)
    h = KULISCH_LIMBS - 1
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
def exact_row(t, c, p, limbs):
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
def exp_of(x):
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
def scaled_q(S, q):
    """float64(S) * 2**q for an int64 sum S of units 2**q (in two steps when 2**q alone
    would leave float64's normal range)."""
    v = np.float64(S)
    if q < -1022 or q > 1023:
        return v * pow2(q + 600) * pow2(-600) if q < 0 else v * pow2(q - 600) * pow2(600)
    return v * pow2(q)


@njit(cache=True, inline="always")
def trunc_q(x, q):
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
        ep = max(exp_of(a), emin_a) + max(exp_of(b), emin_b)
        emaxp = max(emaxp, ep)
    has_c = c != 0.0
    if emaxp == -100000 and not has_c:
        return rnd1(0.0, p)
    # c is a value of the output format: a subnormal c counts with that format's smallest
    # normal exponent (p.emin: -126 for fp32, -14 for fp16), as in MMA-Sim's models
    ec = max(exp_of(c), p.emin) if has_c else -100000
    # extra bit and the largest (normalised) exponent
    big = False
    E = ec
    for k in range(lo, hi):
        a = ar[k]
        b = br[k]
        if a == 0.0 or b == 0.0:
            continue
        ep = max(exp_of(a), emin_a) + max(exp_of(b), emin_b)
        ne = max(exp_of(a * b), ep)  # ep + 1 when the significand product is >= 2
        if ep == emaxp and ne > ep:
            big = True
        E = max(E, ne)
    extra = 1 if (big and (not has_c or emaxp >= ec)) else 0
    q = E - 23 - neab - extra
    S = np.int64(0)
    if has_c:
        S += trunc_q(c, q)
    for k in range(lo, hi):
        a = ar[k]
        b = br[k]
        if a == 0.0 or b == 0.0:
            continue
        S += trunc_q(a * b, q)
    if S == 0:
        return rnd1(0.0, p)
    v = scaled_q(S, q)
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
            limbs = np.zeros(KULISCH_LIMBS, dtype=np.int64)
            s, e = exact_row(t, c[r], p, limbs)
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
