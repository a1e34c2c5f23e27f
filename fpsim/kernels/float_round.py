"""Rounding into any grid of the form ``{k * 2**max(e, emin) - M}`` (floats, integers, fixed point).

One parameterised kernel family. It works on the *bit pattern* of the input (float16,
bfloat16, float32 or float64, described by ``in_man_bits``/``in_bias``) and writes the
rounded value as a bit pattern of the same type: no log2/ldexp per element.

The trick: for a finite input, the magnitude bits ``mag = exp_field << in_M | frac`` are
linear in the value within a binade and a carry out of the fraction increments the
exponent. Rounding to a multiple of ``2**shift`` units of the input's last place is
therefore ``((mag >> shift) + inc) << shift``, valid for ``shift <= in_M``. Inputs whose
magnitude is below the target's smallest subnormal (``shift > in_M``) round to 0 or to the
smallest subnormal. Ties look at the parity of the integral significand ``sig >> shift``.

Fixed point and integers are the same grid with a constant quantum: ``emin`` huge and
``M = emin + frac_bits``, so the quantum ``2**(max(e, emin) - M)`` is always ``2**-frac_bits``.
"""

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from . import _modes
from ._modes import (NAN_ERROR, NAN_MAX, NAN_ZERO, RDN, RNA, RNE, RTO, RTZ, RUP, SR, TO_INF,
                     TO_NAN, TO_WRAP)
from ._rng import random_bits
from ._twins import twins

#: ``emin`` used for fixed-point grids (bigger than any float64 exponent).
FIXED_EMIN = 4096


class RoundParams(NamedTuple):
    """Everything the kernel needs, as int64 (built by :mod:`fpsim.rounding`)."""

    in_M: int  # input mantissa bits (52, 23, 10, 7)
    in_bias: int  # input exponent bias
    in_expmax: int  # input all-ones exponent field (inf/NaN)
    sign_shift: int  # position of the input's sign bit
    M: int  # target precision (mantissa bits); FIXED_EMIN + frac for fixed point
    emin: int  # target smallest normal exponent; FIXED_EMIN for fixed point
    maxpos: int  # input-domain magnitude bits of the largest positive value
    maxneg: int  # ... of the largest negative magnitude (0 for unsigned formats)
    minsub: int  # ... of the smallest positive value reachable by rounding up from below
    minnorm: int  # ... of the smallest normal (for FTZ / DAZ)
    mode: int  # rounding mode code (see _modes)
    ovf: int  # overflow policy code
    nan_action: int  # what a NaN input becomes
    ftz: int  # 1: flush subnormal results to zero
    daz: int  # 1: read inputs below the smallest normal as zero
    no_negzero: int  # 1: -0 becomes +0 (fnuz, unsigned, integers)
    no_zero: int  # 1: the format has no zero (E8M0): zero input is NaN, underflow is min
    srbits: int  # stochastic rounding: random bits (0 = exact)
    wrap_bits: int  # integers: width N for wrap-around
    frac_bits: int  # integers/fixed: fraction bits for wrap-around
    signed_int: int  # integers: two's complement (1) or unsigned (0)


#: The overflow rule (:func:`fpsim.kernels._modes.overflow_action`), inlined into the kernels.
overflow_action = njit(cache=True, inline="always")(_modes.overflow_action)


@njit(cache=True, inline="always")
def _increment(mode, sign, rem, half, odd, rnd, shift, srbits):
    """Whether the truncated magnitude must go up by one quantum."""
    if rem == 0:
        return 0
    if mode == RNE:
        return 1 if (rem > half or (rem == half and odd == 1)) else 0
    if mode == RNA:
        return 1 if rem >= half else 0
    if mode == RTZ:
        return 0
    if mode == RUP:
        return 1 - sign
    if mode == RDN:
        return sign
    if mode == RTO:
        return 1 - odd
    # stochastic: up with probability rem / 2**shift (using srbits random bits if set)
    r = np.int64(rnd >> np.uint64(1)) & ((np.int64(1) << shift) - 1)
    if srbits > 0 and shift > srbits:
        t = shift - srbits
        return 1 if (r >> t) < (rem >> t) else 0
    return 1 if r < rem else 0


@njit(cache=True, inline="always")
def _wrap_bits64(sign, magr, p):
    """float64 bits of an integer/fixed result wrapped modulo 2**N (input is float64)."""
    ef = magr >> 52
    ex = max(ef, 1) - 1023
    sig = (magr & ((np.int64(1) << 52) - 1)) | ((1 if ef > 0 else 0) << 52)
    t = ex - 52 + p.frac_bits  # magnitude in quanta: sig * 2**t
    N = p.wrap_bits
    mask = np.uint64((np.uint64(1) << np.uint64(N)) - np.uint64(1))
    if t >= 64:
        k = np.uint64(0)
    elif t >= 0:
        k = (np.uint64(sig) << np.uint64(t)) & mask
    else:
        k = np.uint64(sig >> (-t)) & mask
    if sign == 1:
        k = (~k + np.uint64(1)) & mask
    kk = np.int64(k)
    if p.signed_int == 1 and kk >= (np.int64(1) << (N - 1)):
        kk -= np.int64(1) << N
    if kk == 0:
        return np.uint64(0)
    s = np.uint64(1) if kk < 0 else np.uint64(0)
    a = -kk if kk < 0 else kk
    top = 0
    while (a >> (top + 1)) != 0:
        top += 1
    frac = (a << (52 - top)) & ((np.int64(1) << 52) - 1)
    e = top - p.frac_bits + 1023
    return (s << np.uint64(63)) | np.uint64((e << 52) | frac)


@njit(cache=True, inline="always")
def _subnormal_exp(sig, ex, in_M):
    """Exponent floor(log2) of an input-subnormal value ``sig * 2**(ex - in_M)``, sig > 0."""
    top = 0
    while (sig >> (top + 1)) != 0:
        top += 1
    return ex - in_M + top


@njit(cache=True, inline="always")
def round_bits(b, p, rnd):
    """Round one input bit pattern ``b`` (uint64). Returns (output bits, error flag)."""
    ss = np.uint64(p.sign_shift)
    one = np.int64(1)
    sign = np.int64((b >> ss) & np.uint64(1))
    mag = np.int64(b & ((np.uint64(1) << ss) - np.uint64(1)))
    in_M = p.in_M
    fmask = (one << in_M) - 1
    ef = mag >> in_M
    inf_mag = np.int64(p.in_expmax) << in_M
    nan_mag = inf_mag | (one << (in_M - 1))
    special = ef == p.in_expmax
    if special and (mag & fmask) != 0:  # NaN
        if p.nan_action == NAN_ZERO:
            return np.uint64(0), 0
        if p.nan_action == NAN_MAX:
            return np.uint64(p.maxpos), 0
        return b, (1 if p.nan_action == NAN_ERROR else 0)
    magr = mag
    lim = mag
    if not special:
        if p.daz == 1 and mag < p.minnorm:
            mag = 0
        if mag == 0:
            if p.no_zero == 1:
                return np.uint64(nan_mag), 0
            if p.no_negzero == 1:
                return np.uint64(0), 0
            return np.uint64(sign) << ss, 0

        ex = max(ef, 1) - p.in_bias
        sig = (mag & fmask) | ((one if ef > 0 else 0) << in_M)
        # quantum exponent max(e, emin) - M, in units of the input's last place 2**(ex - in_M);
        # an input that is subnormal in its own type may be normal in the target (emin below
        # the input type's emin): then its true exponent e < ex sets the quantum.
        shift = in_M - p.M + max(0, p.emin - ex)
        if ef == 0 and p.emin < ex:
            shift = in_M - p.M + max(_subnormal_exp(sig, ex, in_M), p.emin) - ex
        if shift <= 0:
            magr = mag
        elif shift <= in_M:
            rem = mag & ((one << shift) - 1)
            inc = _increment(p.mode, sign, rem, one << (shift - 1), (sig >> shift) & 1, rnd, shift, p.srbits)
            magr = ((mag >> shift) + inc) << shift
        else:  # below the smallest subnormal: 0 or minsub
            sh = min(shift, 62)
            rem = sig
            if p.mode == SR and shift > 62:
                # stochastic: P(up) = sig / 2**shift, with 62 random bits (others only look at
                # rem != 0 and rem vs half, which the clamped shift keeps right)
                rem = sig >> min(shift - 62, 62)
            inc = _increment(p.mode, sign, rem, one << (sh - 1), 0, rnd, sh, p.srbits)
            magr = p.minsub if inc == 1 else 0
        lim = p.maxneg if sign == 1 else p.maxpos

    if special or magr > lim:
        # a value beyond the largest magnitude (+-inf inputs are such values): one inlined
        # copy of the overflow rule (each copy costs compile time), evaluated only here, off
        # the common path (evaluated for every element it cost 15-30% of the kernel's time)
        unsigned = 1 if p.maxneg == 0 else 0  # no negative values
        act = overflow_action(p.ovf, p.mode, sign, unsigned, 1 if special else 0)
        if special:  # +-inf: exact, so only the overflow policy matters
            if sign == 1 and unsigned == 1:  # no -inf, no negatives: NaN or +0
                return np.uint64(nan_mag if act == TO_NAN else 0), 0
            if act == TO_INF:
                return b, 0
            if act == TO_NAN:
                return (np.uint64(sign) << ss) | np.uint64(nan_mag), 0
            return (np.uint64(sign) << ss) | np.uint64(p.maxneg if sign == 1 else p.maxpos), 0
        if act == TO_WRAP:
            return _wrap_bits64(sign, magr, p), 0
        if act == TO_NAN:
            return (np.uint64(sign) << ss) | np.uint64(nan_mag), 0
        if act == TO_INF:
            return (np.uint64(sign) << ss) | np.uint64(inf_mag), 0
        magr = lim
    if p.ftz == 1 and magr < p.minnorm:
        magr = 0
    if magr == 0:
        if p.no_zero == 1:  # E8M0 (unsigned, no zero): the smallest value, positive
            return np.uint64(p.minsub), 0
        if p.no_negzero == 1:
            return np.uint64(0), 0
    return (np.uint64(sign) << ss) | np.uint64(magr), 0


def _quantize_one(i, xb, ob, p, seed):
    """Round element ``i`` of the bit array ``xb`` into ``ob``; returns 1 for a NaN error."""
    rnd = random_bits(seed, i) if p.mode == SR else np.uint64(0)
    o, e = round_bits(np.uint64(xb[i]), p, rnd)
    ob[i] = o
    return e


# quantize_serial(xb, ob, p, seed) / quantize_parallel(...): returns #NaN errors
quantize_serial, quantize_parallel = twins("quantize", _quantize_one, over="xb")


class CodeParams(NamedTuple):
    """Target layout for turning on-grid float bit patterns into codes."""

    in_M: int
    in_bias: int
    in_expmax: int
    sign_shift: int
    M: int
    emin: int
    bias: int
    code_sign_shift: int  # position of the sign bit in the code (-1 if unsigned)
    nan_code: int  # NaN code (magnitude part when nan_keeps_sign)
    nan_keeps_sign: int
    inf_code: int  # +inf code magnitude (-1 if no inf)
    negzero_is_code: int  # 1 if -0 has its own code


@njit(cache=True, parallel=True)  # prange below: element-wise, thread-count independent
def codes_from_bits(vb, out, p):
    """Codes of values already on the target grid (bit patterns ``vb`` in the input type)."""
    one = np.int64(1)
    ss = np.uint64(p.sign_shift)
    in_M = p.in_M
    fmask = (one << in_M) - 1
    mmask = (one << p.M) - 1
    for i in prange(vb.size):
        b = np.uint64(vb[i])
        sign = np.int64((b >> ss) & np.uint64(1))
        mag = np.int64(b & ((np.uint64(1) << ss) - np.uint64(1)))
        sbit = (sign << p.code_sign_shift) if p.code_sign_shift >= 0 else 0
        ef = mag >> in_M
        if ef == p.in_expmax:
            if (mag & fmask) != 0 or p.inf_code < 0:
                out[i] = (p.nan_code | sbit) if p.nan_keeps_sign == 1 else p.nan_code
            else:
                out[i] = p.inf_code | sbit
            continue
        if mag == 0:
            out[i] = sbit if p.negzero_is_code == 1 else 0
            continue
        ex = max(ef, 1) - p.in_bias
        sig = (mag & fmask) | ((one if ef > 0 else 0) << in_M)
        e = _subnormal_exp(sig, ex, in_M) if ef == 0 else ex  # true exponent
        if e >= p.emin:
            ef_t = e + p.bias
            d = in_M - p.M + e - ex
            mant = ((sig >> d) if d >= 0 else (sig << (-d))) & mmask
        else:
            ef_t = 0
            d = in_M - p.M + p.emin - ex
            mant = (sig >> d) if d >= 0 else (sig << (-d))
        out[i] = sbit | (ef_t << p.M) | mant


class DecodeParams(NamedTuple):
    M: int
    bias: int
    emin: int
    e8m0: int
    code_sign_shift: int  # -1 if unsigned
    max_code_mag: int
    inf_code: int  # -1 if none
    negzero_nan: int  # the negative-zero code is NaN (fnuz, P3109 signed)
    bits: int


@njit(cache=True, parallel=True)  # prange below: element-wise, thread-count independent
def decode_codes(codes, out, p, pow2):
    """float64 values of float codes; ``pow2[k + 1074] == 2.0**k``. Returns #invalid codes."""
    # Codes are read as uint64: a 64-bit format's negative values have codes >= 2**63, which
    # int64 arithmetic would see as negative (and 1 << 64 overflows).
    one = np.int64(1)
    u1 = np.uint64(1)
    mmask = (one << p.M) - 1
    magmask = (u1 << np.uint64(p.bits - (1 if p.code_sign_shift >= 0 else 0))) - u1
    full = p.bits >= 64
    lim = np.uint64(0) if full else u1 << np.uint64(p.bits)
    sh = np.uint64(max(p.code_sign_shift, 0))
    bad = 0
    for i in prange(codes.size):
        ci = codes[i]
        if ci < 0:
            out[i] = np.nan
            bad += 1
            continue
        c = np.uint64(ci)
        if not full and c >= lim:
            out[i] = np.nan
            bad += 1
            continue
        s = np.int64((c >> sh) & u1) if p.code_sign_shift >= 0 else np.int64(0)
        cm = np.int64(c & magmask)  # < 2**63: the sign bit is masked off
        if p.negzero_nan == 1 and s == 1 and cm == 0:
            out[i] = np.nan
            continue
        if cm > p.max_code_mag:
            if cm == p.inf_code:
                out[i] = -np.inf if s == 1 else np.inf
            else:
                out[i] = np.nan
            continue
        ef = cm >> p.M
        mant = cm & mmask
        if ef == 0 and p.e8m0 == 0:
            v = np.float64(mant) * pow2[p.emin - p.M + 1074]
        else:
            v = np.float64((one << p.M) + mant) * pow2[ef - p.bias - p.M + 1074]
        out[i] = -v if s == 1 else v
    return bad
