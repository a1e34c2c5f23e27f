"""Correctly rounded scalar arithmetic (njit primitives) and their array drivers.

Every primitive returns the float64 value of the *exact* real result rounded **once** into
the target format described by ``p``, a :class:`~fpsim.kernels.float_round.RoundParams` built
for the float64 layout, e.g.::

    from fpsim import lowering as L
    opts = L.options(fmt, "rne", None, None, None, False, None)   # mode, ovf, nan, subn, daz, srbits
    p = L.round_params(fmt, L.F64, *opts)

(``daz`` must be False: arithmetic rounds *results*; denormals-are-zero on operands is the
caller's business). ``rnd`` is a uint64 of random bits, used only by stochastic rounding
(draw it with :func:`fpsim.kernels._rng.random_bits(seed, i)` so results do not depend on
the thread count). Operands are float64 and are taken as exact reals.

Public primitives (all ``@njit(cache=True)``, importable by other kernels)::

    round_dd(hi, lo, p, rnd) -> float64       round(hi + lo), any float64 pair (finite sum)
    round_scaled(hi, lo, E, p, rnd) -> float64 round((hi + lo) * 2**E); needs hi == fl(hi + lo)
    add_round(a, b, p, rnd) -> float64        round(a + b)
    sub_round(a, b, p, rnd) -> float64        round(a - b)
    mul_round(a, b, p, rnd) -> float64        round(a * b)
    div_round(a, b, p, rnd) -> float64        round(a / b)
    fma_round(a, b, c, p, rnd) -> float64     round(a * b + c)   (one rounding)
    sqrt_round(a, p, rnd) -> float64          round(sqrt(a))

NaN results are returned as NaN when the format has a NaN or ``p.nan_action`` is ``raise``
(the caller counts them and raises); ``nan="zero"``/``"max"`` map them like ``quantize``.

How the exact result is rounded (no double rounding, every format with at most 53
significant bits, every mode): the exact value is held as an unevaluated pair ``hi + lo``
with ``hi = fl(hi + lo)`` (TwoSum / Dekker's TwoProd on operands scaled to [1, 2) so that
nothing under- or overflows; quotient and square root as ``q + r/b`` from their exactly
representable remainders) times a power of two ``2**E``. :func:`round_scaled` then reads the
result's binade from ``hi``, truncates its 53-bit significand at the target's quantum (integer
shift) and decides the increment from the discarded integer bits plus the exact fraction that
``lo`` contributes (its sign, its comparison with half an ulp, and for stochastic rounding its
leading bits). The rounded value is re-encoded as a float64 and passed through
:func:`~fpsim.kernels.float_round.round_bits` (where it is already on the grid) only to apply the
format's overflow / flush-to-zero / signed-zero policies exactly as :func:`fpsim.quantize` does.
Fast path: for targets of at most 51 significant bits (``p.M <= 50``), non-stochastic modes and
a pair that scales exactly into float64's normal range, :func:`round_scaled` instead rounds the
float64 round-to-odd of the exact value (:func:`~fpsim.kernels.eft.to_odd_bits`) once with
``round_bits`` (Boldo & Melquiond 2008).

Stochastic rounding rounds the magnitude up with probability ``ceil(frac * 2**62) / 2**62``
(``frac``: the exact discarded fraction of a quantum) or, with ``srbits = b``,
``floor(frac * 2**b) / 2**b``. For ``div`` and ``sqrt`` the fraction comes from the quotient to
about 106 bits (the direction and ties are exact).
"""

import math

import numpy as np
from numba import njit, prange

from ._modes import NAN_ERROR, OVF_WRAP, RDN, RNA, RNE, RTO, RUP, SR, TO_INF, TO_NAN, TO_WRAP
from ._rng import random_bits
from ._twins import twins
from .eft import bits_f64, f64_bits, pow2, to_odd_bits, two_prod, two_sum
from .float_round import overflow_action, round_bits

FMASK = np.int64((1 << 52) - 1)
_HIDDEN = np.int64(1 << 52)
SIGN = np.uint64(1 << 63)
MAGMASK = np.uint64((1 << 63) - 1)
INF_BITS = np.int64(0x7FF << 52)
NAN_BITS = np.int64((0x7FF << 52) | (1 << 51))
_MINNORM = 2.2250738585072014e-308  # smallest normal float64

# operation codes of the array drivers
from ._modes import OP_ADD, OP_DIV, OP_FMA, OP_MUL, OP_SQRT, OP_SUB  # noqa: E402,F401


# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _scale(x, k):
    """x * 2**k, exact whenever the result is a normal float64 (two steps for big k)."""
    while k > 1000:
        x = x * pow2(1000)
        k -= 1000
    while k < -1000:
        x = x * pow2(-1000)
        k += 1000
    return x * pow2(k)


@njit(cache=True, inline="always")
def frexp1(x):
    """(m, e) with |m| in [1, 2) and x == m * 2**e, for finite nonzero x (exact)."""
    b = np.int64(f64_bits(x) & MAGMASK)
    ef = b >> 52
    e = np.int64(0)
    if ef == 0:  # subnormal: normalise exactly by 2**64 first
        x = x * 18446744073709551616.0
        b = np.int64(f64_bits(x) & MAGMASK)
        ef = b >> 52
        e = np.int64(-64)
    e += ef - 1023
    sb = f64_bits(x) & SIGN
    m = bits_f64(sb | np.uint64((np.int64(1023) << 52) | (b & FMASK)))
    return m, e


@njit(cache=True)
def _overflow_value(sign, p, rnd):
    """Result for an exact value beyond every float64 (hence beyond the format's range)."""
    act = overflow_action(p.ovf, p.mode, sign, 1 if p.maxneg == 0 else 0, 0)
    if act == TO_WRAP:  # a multiple of a huge power of two: 0 modulo 2**bits
        return 0.0
    if act == TO_NAN:
        return np.nan
    if act == TO_INF:
        v = np.inf
    else:
        v = bits_f64(np.uint64(p.maxneg if sign == 1 else p.maxpos))
    if sign == 1:
        v = -v
    return finish(f64_bits(v), p, rnd)  # unsigned formats etc.: same policy as quantize


@njit(cache=True)
def finish(b, p, rnd):
    """Apply the format's policies to float64 bits already on the target grid."""
    o, _ = round_bits(b, p, rnd)
    return bits_f64(o)


@njit(cache=True, inline="always")
def _zero_sum_sign(mode):
    """Sign bit of an exact zero sum of operands of opposite signs (IEEE 754 §6.3)."""
    return np.uint64(1) if mode == RDN else np.uint64(0)


@njit(cache=True, inline="always")
def _fx_floor(s, lo_mag_bits, u, d):
    """floor(f * 2**d) and whether it is exact, for the fraction f of one float64 ulp 2**u.

    f = |lo| / 2**u (s = +1) or 1 - |lo| / 2**u (s = -1); 0 <= d <= 62.
    """
    lef = lo_mag_bits >> 52
    lsig = (lo_mag_bits & FMASK) | (_HIDDEN if lef > 0 else np.int64(0))
    le = max(lef, np.int64(1)) - 1075
    a = le + d - u
    if a >= 0:
        fl = lsig << a
        ex = True
    elif a > -63:
        fl = lsig >> (-a)
        ex = (lsig & ((np.int64(1) << (-a)) - 1)) == 0
    else:
        fl = np.int64(0)
        ex = False
    if s > 0:
        return fl, ex
    # (1 - phi) * 2**d = 2**d - phi * 2**d
    ce = fl if ex else fl + 1
    return (np.int64(1) << d) - ce, ex


@njit(cache=True, inline="always")
def _frac_floor(R, shift, s, lo_mag_bits, u, j):
    """floor((R + f) * 2**(j - shift)) and exactness, R < 2**shift integer, f in [0, 1)."""
    if j >= shift:
        d = j - shift
        if s == 0:
            return R << d, True
        fl, ex = _fx_floor(s, lo_mag_bits, u, d)
        return (R << d) + fl, ex
    d = shift - j
    if d >= 63:
        return np.int64(0), (R == 0 and s == 0)
    return R >> d, ((R & ((np.int64(1) << d) - 1)) == 0 and s == 0)


# ---------------------------------------------------------------------------------------
# the rounding core
# ---------------------------------------------------------------------------------------

@njit(cache=True)
def _core(hi, lo, E, p, rnd):
    """Round ``(hi + lo) * 2**E`` into ``p`` (see :func:`round_scaled`); returns
    (needs_wrap, value): needs_wrap is True when a wrap-around integer/fixed format meets a
    value of 2**53 quanta or more (reduced first by :func:`_wrap_reduce`)."""
    if lo == 0.0 and E == 0:
        return False, finish(f64_bits(hi), p, rnd)
    hb = f64_bits(hi)
    sign = np.int64(hb >> np.uint64(63))
    hmag = np.int64(hb & MAGMASK)
    if hmag == 0:
        return False, finish(hb, p, rnd)
    lob = f64_bits(lo)
    lmag = np.int64(lob & MAGMASK)
    if lmag == 0:
        s = 0
        vlow = hmag
    elif np.int64(lob >> np.uint64(63)) == sign:
        s = 1
        vlow = hmag
    else:  # the exact value lies just below |hi|: work from the float below it
        s = -1
        vlow = hmag - 1
    ef = vlow >> 52
    if ef == 0:  # subnormal hi with an exact lo == 0 and E != 0: normalise
        x, e0 = frexp1(bits_f64(np.uint64(vlow)))
        vlow = np.int64(f64_bits(x) & MAGMASK)
        ef = vlow >> 52
        E = E + e0 - (ef - 1023)
    sig = (vlow & FMASK) | _HIDDEN
    u = ef - 1075  # exponent of one ulp of vlow's binade, in the scaled domain
    ev = ef - 1023 + E  # true exponent of the result's binade
    shift = 52 - p.M + max(np.int64(0), p.emin - ev)

    if shift < 0:
        # target grid finer than float64 here: only integer/fixed formats far beyond range
        if p.ovf != OVF_WRAP:
            return False, _overflow_value(sign, p, rnd)
        return True, 0.0

    # integer part T (in quanta) and the discarded bits R (in ulps), plus the fraction f
    if shift < 63:
        T = sig >> shift
        R = sig & ((np.int64(1) << shift) - 1)
    else:
        T = np.int64(0)
        R = sig
    inexact = R != 0 or s != 0
    mode = p.mode
    inc = np.int64(0)
    if inexact:
        if mode == RNE or mode == RNA:
            if shift == 0:  # compare f with 1/2 exactly: |lo| against 2**(u-1)
                k = u - 1 + 1023
                halfb = (k << 52) if k > 0 else (np.int64(1) << (u - 1 + 1074))
                c = 1 if lmag > halfb else (0 if lmag == halfb else -1)
                gt = c > 0 if s > 0 else c < 0
                tie = c == 0
            elif shift < 64:
                half = np.int64(1) << (shift - 1) if shift < 63 else np.int64(0)
                if shift >= 63:  # R + f < 2**54 <= half
                    gt = False
                    tie = False
                elif s == 0:
                    gt = R > half
                    tie = R == half
                else:
                    gt = R >= half
                    tie = False
            else:
                gt = False
                tie = False
            if gt:
                inc = 1
            elif tie:
                inc = 1 if (mode == RNA or (T & 1) == 1) else 0
        elif mode == RUP:
            inc = 1 - sign
        elif mode == RDN:
            inc = sign
        elif mode == RTO:
            inc = 1 - (T & 1)
        elif mode == SR:
            if p.srbits > 0:
                b = p.srbits
                fl, _ = _frac_floor(R, shift, s, lmag, u, b)
                inc = 1 if np.int64(rnd >> np.uint64(64 - b)) < fl else 0
            else:
                fl, ex = _frac_floor(R, shift, s, lmag, u, 62)
                ce = fl if ex else fl + 1
                inc = 1 if np.int64(rnd >> np.uint64(2)) < ce else 0
        # RTZ: inc = 0

    # re-encode (T + inc) * 2**(ev - 52 + shift) as float64 bits
    if shift > 52:
        if inc == 0:
            mb = np.int64(0)
        else:
            mb = p.minsub
    else:
        rs = (T + inc) << shift  # in [2**52, 2**53]
        e2 = ev
        if rs == (np.int64(1) << 53):
            rs = _HIDDEN
            e2 += 1
        if e2 > 1023:
            return False, _overflow_value(sign, p, rnd)
        if e2 >= -1022:
            mb = ((e2 + 1023) << 52) | (rs - _HIDDEN)
        else:
            sh = -1022 - e2
            mb = rs >> sh if sh < 63 else np.int64(0)
    if mb == 0 and p.no_zero == 1:
        mb = p.minsub  # E8M0-like formats: underflow gives the smallest value
    return False, finish((np.uint64(sign) << np.uint64(63)) | np.uint64(mb), p, rnd)


@njit(cache=True, inline="always")
def _fmod_pow2(x, W):
    """fmod(x, W) for a power of two W, exactly (x at or above 2**53 W is a multiple of W)."""
    q = x / W
    if not (abs(q) < 9007199254740992.0):
        return 0.0
    return x - np.trunc(q) * W


@njit(cache=True)
def _wrap_reduce(hi, lo, E, p):
    """Wrap-around integers/fixed point for |value| >= 2**53 quanta: an exact pair congruent
    to (hi + lo) * 2**E modulo W = 2**bits quanta, of the same sign (so that rtz/rna see the
    same side), |pair| < 3 W. Parts beyond float64 are multiples of W (they drop out)."""
    W = _scale(1.0, p.wrap_bits - p.frac_bits)
    hs = _scale(hi, E)
    ls = _scale(lo, E)
    hw = _fmod_pow2(hs, W)
    lw = _fmod_pow2(ls, W)
    v = hw + lw  # its sign only
    if v != 0.0 and (v < 0.0) != (hi < 0.0):
        hw = hw + (-2.0 * W if hi < 0.0 else 2.0 * W)
    return two_sum(hw, lw)


@njit(cache=True)
def round_scaled(hi, lo, E, p, rnd):
    """Correctly round the exact value ``(hi + lo) * 2**E`` into the format ``p``.

    Preconditions: ``hi`` finite and ``hi == fl(hi + lo)`` (round-to-nearest, as TwoSum /
    TwoProd return it); if ``lo != 0`` then ``hi`` is a normal float64. ``E`` any int64
    (results beyond float64 overflow/underflow by the format's policies).
    """
    if p.M <= 50 and p.mode != SR and -1000 <= E <= 1000:
        # Fast path (Boldo & Melquiond): round-to-odd of the exact value onto float64's 53 bits
        # keeps every rounding decision of a target with <= 51 bits, so one round_bits of it is
        # the correct rounding. Only where the scaled pair is exact (normal, finite).
        s2 = pow2(E)
        h2 = hi * s2
        l2 = lo * s2
        if _MINNORM <= abs(h2) < np.inf and (lo == 0.0 or abs(l2) >= _MINNORM):
            return finish(to_odd_bits(h2, l2), p, rnd)
    w, v = _core(hi, lo, E, p, rnd)
    if w:
        h, l = _wrap_reduce(hi, lo, E, p)
        w, v = _core(h, l, 0, p, rnd)
    return v


@njit(cache=True)
def round_dd(hi, lo, p, rnd):
    """Correctly round the exact sum ``hi + lo`` of two float64 numbers into ``p``.

    Any pair is accepted (it is renormalised with TwoSum); NaN/inf follow IEEE addition.
    A finite pair whose sum overflows float64 overflows the format. An exact zero sum of
    nonzero terms is +0 (-0 when rounding down), as IEEE addition.
    """
    return add_round(hi, lo, p, rnd)


# ---------------------------------------------------------------------------------------
# operations
# ---------------------------------------------------------------------------------------

@njit(cache=True)
def add_round(a, b, p, rnd):
    """round(a + b) into ``p`` (IEEE 754 addition with a single rounding)."""
    if not (np.isfinite(a) and np.isfinite(b)):
        return finish(f64_bits(a + b), p, rnd)  # inf - inf = NaN, NaN propagates
    h, l = two_sum(a, b)
    if h == 0.0:
        if a == 0.0 and b == 0.0:
            sa = f64_bits(a) >> np.uint64(63)
            sb = f64_bits(b) >> np.uint64(63)
            sz = sa if sa == sb else _zero_sum_sign(p.mode)
        else:
            sz = _zero_sum_sign(p.mode)
        return finish(sz << np.uint64(63), p, rnd)
    if not np.isfinite(h):  # the float64 sum overflowed: redo halved (exact, no underflow)
        h, l = two_sum(a * 0.5, b * 0.5)
        return round_scaled(h, l, 1, p, rnd)
    return round_scaled(h, l, 0, p, rnd)


@njit(cache=True)
def sub_round(a, b, p, rnd):
    """round(a - b) into ``p``."""
    return add_round(a, -b, p, rnd)


@njit(cache=True)
def mul_round(a, b, p, rnd):
    """round(a * b) into ``p``; exact for every float64 pair (no intermediate under/overflow)."""
    if not (np.isfinite(a) and np.isfinite(b)) or a == 0.0 or b == 0.0:
        return finish(f64_bits(a * b), p, rnd)  # signed zeros, 0*inf = NaN, inf, NaN
    ma, ea = frexp1(a)
    mb, eb = frexp1(b)
    h, l = two_prod(ma, mb)  # exact: |ma|, |mb| in [1, 2)
    return round_scaled(h, l, ea + eb, p, rnd)


@njit(cache=True, inline="always")
def _clamp_tail(h, t):
    """Keep |t| strictly below half the float64 gap from h toward t (the exact tail of a
    correctly rounded quotient/root is never a tie, its float estimate may be)."""
    hb = np.int64(f64_bits(h) & MAGMASK)
    same = (t > 0.0) == (h > 0.0)
    nb = hb + 1 if same else hb - 1
    gap = bits_f64(np.uint64(nb)) - bits_f64(np.uint64(hb))
    half = abs(gap) * 0.5
    if abs(t) >= half:
        tb = np.int64(f64_bits(half)) - 1
        v = bits_f64(np.uint64(tb))
        return v if t > 0.0 else -v
    return t


@njit(cache=True)
def div_round(a, b, p, rnd):
    """round(a / b) into ``p`` (x/0 = ±inf, 0/0 = NaN, inf/inf = NaN)."""
    if not (np.isfinite(a) and np.isfinite(b)) or a == 0.0 or b == 0.0:
        if b == 0.0 and not np.isnan(a) and a != 0.0:
            sg = (f64_bits(a) ^ f64_bits(b)) & SIGN
            return finish(sg | np.uint64(INF_BITS), p, rnd)
        if b == 0.0:
            return finish(np.uint64(NAN_BITS), p, rnd)
        return finish(f64_bits(a / b), p, rnd)
    ma, ea = frexp1(a)
    mb, eb = frexp1(b)
    q = ma / mb
    ph, pl = two_prod(q, mb)
    r = (ma - ph) - pl  # exact remainder ma - q*mb (representable for a rounded quotient)
    if r == 0.0:
        return round_scaled(q, 0.0, ea - eb, p, rnd)
    t = _clamp_tail(q, r / mb)
    return round_scaled(q, t, ea - eb, p, rnd)


@njit(cache=True)
def sqrt_round(a, p, rnd):
    """round(sqrt(a)) into ``p`` (sqrt(-0) = -0, sqrt(x<0) = NaN, sqrt(inf) = inf)."""
    if a == 0.0 or not np.isfinite(a) or a < 0.0:
        if a < 0.0:
            return finish(np.uint64(NAN_BITS), p, rnd)
        return finish(f64_bits(a), p, rnd)
    m, e = frexp1(a)
    if e & 1:
        m = m * 2.0
        e -= 1
    s = math.sqrt(m)  # m in [1, 4): s in [1, 2)
    ph, pl = two_prod(s, s)
    r = (m - ph) - pl  # exact: the remainder of a correctly rounded root is representable
    if r == 0.0:
        return round_scaled(s, 0.0, e // 2, p, rnd)
    t = _clamp_tail(s, r / (2.0 * s))
    return round_scaled(s, t, e // 2, p, rnd)


@njit(cache=True)
def fma_round(a, b, c, p, rnd):
    """round(a * b + c) into ``p`` with a single rounding (IEEE fusedMultiplyAdd)."""
    if not (np.isfinite(a) and np.isfinite(b) and np.isfinite(c)):
        if np.isnan(a) or np.isnan(b) or np.isnan(c):
            return finish(np.uint64(NAN_BITS), p, rnd)
        if np.isfinite(a) and np.isfinite(b):  # the exact product is finite: c decides
            return finish(f64_bits(c), p, rnd)
        return finish(f64_bits(a * b + c), p, rnd)  # inf*x, 0*inf = NaN, inf - inf = NaN
    if a == 0.0 or b == 0.0:  # the product is an exact (signed) zero
        return add_round(a * b, c, p, rnd)
    if c == 0.0:
        return mul_round(a, b, p, rnd)
    ma, ea = frexp1(a)
    mb, eb = frexp1(b)
    ph, pl = two_prod(ma, mb)  # |ph| in [1, 4)
    E = ea + eb
    mc, ec = frexp1(c)
    d = ec - E
    if d < -1000:  # c only decides the sticky bit below the product
        cs = -pow2(-1000) if c < 0.0 else pow2(-1000)
    elif d > 1000:  # the product only decides the sticky bit below c
        E = ec
        ps = -pow2(-1000) if ph < 0.0 else pow2(-1000)
        return round_scaled(mc, ps, E, p, rnd)
    else:
        cs = _scale(mc, d)
    # exact three-term sum ph + pl + cs -> (h, tail) with the tail's sticky kept (to odd)
    s1, e1 = two_sum(ph, cs)
    s2, e2 = two_sum(e1, pl)
    h, t = two_sum(s1, s2)
    t2, e3 = two_sum(t, e2)
    tb = f64_bits(t2)
    if e3 != 0.0 and (tb & np.uint64(1)) == np.uint64(0) and t2 != 0.0:
        tb = tb - np.uint64(1) if (t2 > 0.0) != (e3 > 0.0) else tb + np.uint64(1)
    tail = bits_f64(tb) if t2 != 0.0 else e3
    h, l = two_sum(h, tail)
    if h == 0.0:
        return finish(_zero_sum_sign(p.mode) << np.uint64(63), p, rnd)
    return round_scaled(h, l, E, p, rnd)


# ---------------------------------------------------------------------------------------
# array drivers
# ---------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _apply(op, a, b, c, p, rnd):
    if op == OP_ADD:
        return add_round(a, b, p, rnd)
    if op == OP_SUB:
        return add_round(a, -b, p, rnd)
    if op == OP_MUL:
        return mul_round(a, b, p, rnd)
    if op == OP_DIV:
        return div_round(a, b, p, rnd)
    if op == OP_FMA:
        return fma_round(a, b, c, p, rnd)
    return sqrt_round(a, p, rnd)


def _arith_one(i, op, a, b, c, out, p, seed):
    """out[i] = op(a[i], b[i], c[i]) rounded into ``p``; returns 1 for a NaN result that a
    NaN-less format must refuse."""
    rnd = random_bits(seed, i) if p.mode == SR else np.uint64(0)
    v = _apply(op, a[i], b[i], c[i], p, rnd)
    out[i] = v
    return 1 if np.isnan(v) and p.nan_action == NAN_ERROR else 0


# arith_serial(op, a, b, c, out, p, seed) / arith_parallel(...): out[i] = op(a[i], b[i], c[i])
# rounded into p; returns #NaN results a NaN-less format must refuse. a, b, c, out: contiguous
# 1-D float64 of equal length.
arith_serial, arith_parallel = twins("arith", _arith_one, over="out")
