"""Branch-free fast path of :func:`fpsim.kernels.float_round.round_bits`.

Same arithmetic, same results, for the common cases only: deterministic modes
``rne rna rtz rup rdn``, signed grid formats that have a zero, overflow ``saturate``,
``inf`` or ``nan``. Everything the general kernel does with an early ``return`` is written
here as a *select* on precomputed per-sign constants (:class:`FastParams`, built by
:func:`fast_params` from the general kernel's parameters), so the loop body has no
data-dependent branch and LLVM vectorises it (it runs at memory speed; the general kernel
is ~20x slower).

The rounding of the finite part, for ``shift = in_M - M + max(0, emin - ex)``:

* ``shift <= in_M``: the magnitude bits are truncated to a multiple of ``2**shift`` and
  incremented by one quantum (``1 << shift``) when the discarded part ``rem`` says so
  (a carry into the exponent field is the correct next binade);
* ``shift > in_M`` (below the smallest subnormal): the result is 0 or ``minsub``; the
  increment decision compares the significand ``sig`` with ``2**(shift - 1)`` (clamping
  ``shift`` to ``in_M + 2`` changes no decision since ``sig < 2**(in_M + 1)``).

The increment is ``rem != 0 and rem + A > T`` with ``A = ka + ko * odd`` and ``T`` half a
quantum (nearest modes) or, for directed modes, 0 (round away) / a full quantum (never):
RNE ``A = odd``, RNA ``A = 1``, RTZ/RUP/RDN ``A = 0``.

For float32 input and ``rne`` there is a second, cheaper path (:func:`rne32_parallel`):
all in 32-bit lanes, the rounding itself done by the FPU. With ``C = 2**(q + 23)``, where
``2**q`` is the target quantum at ``|x|`` (``q = max(e, emin) - M``), ``|x| < C`` so
``fl(|x| + C)`` has ulp ``2**q`` and is ``C + RNE(|x|)`` (one rounding, ties to even since
``C / 2**q`` is even), and ``fl(|x| + C) - C`` is exact. ``|x|`` is first clamped to
``2**(emax + 1)`` (which still overflows) so that ``C`` stays finite. :func:`rne32_params`
says when the conditions hold (``M < 23``; ``C`` a normal float32 for every ``|x|``).
Formats with float32's exponent range (bf16, tf32: ``emin = -126``, where ``C`` would
overflow) have a constant shift ``23 - M`` instead, and round with the integer identity
``(bits + 2**(shift-1) - 1 + odd) & ~(2**shift - 1)`` in the same kernel.

Both paths are checked bit for bit against the general kernel over strided float32 bit
patterns for every mode and family (see ``tests/test_fast_path.py``), and against ml_dtypes.
"""

from functools import lru_cache
from typing import NamedTuple

import numpy as np
from numba import njit, prange  # noqa: F401 - prange: the twins' parallel loop

from ._modes import (NAN_ERROR, NAN_MAX, NAN_ZERO, OVF_WRAP, RDN, RNA, RNE, RTZ, RUP, TO_INF,
                     TO_NAN, overflow_action)
from ._twins import twins
from .float_round import FIXED_EMIN


class FastParams(NamedTuple):
    """Constants of the fast kernel (int64; magnitudes are input-domain bit patterns)."""

    in_M: int  # input mantissa bits
    in_bias: int  # input exponent bias
    in_expmax: int  # input all-ones exponent field
    sign_shift: int  # position of the input's sign bit
    M: int  # target mantissa bits (FIXED_EMIN + frac for fixed point)
    emin: int  # target smallest normal exponent
    lim_pos: int  # largest positive magnitude
    lim_neg: int  # largest negative magnitude
    minsub: int  # smallest positive magnitude (result of rounding a tiny value up)
    ka: int  # increment test: rem + ka + ko * odd > T
    ko: int
    nearest: int  # 1: T = half a quantum; 0: directed, see never_pos / never_neg
    never_pos: int  # directed modes: 1 if positive values never round up in magnitude
    never_neg: int  # ... negative values
    ovf_pos: int  # magnitude a positive finite overflow becomes (max, inf or NaN)
    ovf_neg: int  # ... a negative one
    inf_pos: int  # magnitude +inf becomes
    inf_neg: int  # magnitude -inf becomes
    nan_keep: int  # 1: a NaN input is returned unchanged (propagate)
    nan_out: int  # otherwise: the output bits of a NaN input
    nan_err: int  # 1: count NaN inputs (the caller raises)
    ftz_lim: int  # results below this magnitude flush to zero (0: no FTZ)
    daz_lim: int  # inputs below this magnitude read as zero (0: no DAZ)
    negzero: int  # 1: the format has -0


@njit(cache=True, inline="always")
def _fast_one(b, p):
    one = np.int64(1)
    ss = p.sign_shift
    in_M = p.in_M
    fmask = (one << in_M) - 1
    sign = (b >> ss) & 1
    mag = b & ((one << ss) - 1)
    special = (mag >> in_M) == p.in_expmax
    isnan = special and (mag & fmask) != 0
    mag = mag if mag >= p.daz_lim else 0
    ef = mag >> in_M
    ex = max(ef, 1) - p.in_bias
    shift = in_M - p.M + max(0, p.emin - ex)
    tiny = shift > in_M
    sh = min(max(shift, 0), in_M + 2)
    full = one << sh
    sig = (mag & fmask) | ((one if ef > 0 else 0) << in_M)
    q = mag >> sh
    rem = sig if tiny else mag & (full - 1)
    odd = 0 if tiny else (sig >> sh) & 1  # parity of the significand, not of mag (sh == in_M)
    never = p.never_neg if sign == 1 else p.never_pos
    t = (full >> 1) if p.nearest == 1 else (full if never == 1 else 0)
    inc = rem != 0 and rem + p.ka + p.ko * odd > t
    base = 0 if tiny else q << sh
    step = p.minsub if tiny else full
    magr = base + (step if inc else 0)
    lim = p.lim_neg if sign == 1 else p.lim_pos
    if magr > lim:
        magr = p.ovf_neg if sign == 1 else p.ovf_pos
    if magr < p.ftz_lim:
        magr = 0
    if special:
        magr = p.inf_neg if sign == 1 else p.inf_pos
    out = ((sign if (magr != 0 or p.negzero == 1) else 0) << ss) | magr
    if isnan:
        out = b if p.nan_keep == 1 else p.nan_out
    return out, (1 if isnan else 0) * p.nan_err


def _fast_elem(i, xb, ob, p):
    """Round element ``i`` of the bit array ``xb`` into ``ob``; returns 1 for a NaN error."""
    o, e = _fast_one(np.int64(xb[i]), p)
    ob[i] = o
    return e


# fast_serial(xb, ob, p) / fast_parallel(...): returns #NaN errors
fast_serial, fast_parallel = twins("fast", _fast_elem, over="xb")


# ---------------------------------------------------------------------------------------
# Parameters, derived from the general kernel's RoundParams (so both paths share one source)
# ---------------------------------------------------------------------------------------

_FAST_MODES = (RNE, RNA, RTZ, RUP, RDN)


@lru_cache(maxsize=512)
def fast_params(p):
    """:class:`FastParams` equivalent to ``RoundParams`` ``p``, or None if not covered.

    Not covered (the general kernel runs): stochastic and round-to-odd, wrap-around,
    unsigned formats, formats without zero (E8M0), and inputs that are subnormal in their
    own type but may be normal in the target (target emin below the input type's).
    """
    if (p.mode not in _FAST_MODES or p.ovf == OVF_WRAP or p.maxneg == 0 or p.no_zero == 1
            or p.emin < 1 - p.in_bias):
        return None
    inf_mag = p.in_expmax << p.in_M
    nan_mag = inf_mag | (1 << (p.in_M - 1))

    def lim(sign):
        return p.maxneg if sign else p.maxpos

    def beyond(sign, infinite):  # what overflows / an infinite input become (see round_bits)
        act = overflow_action(p.ovf, p.mode, sign, int(p.maxneg == 0), infinite)
        return {TO_NAN: nan_mag, TO_INF: inf_mag}.get(act, lim(sign))

    near = p.mode in (RNE, RNA)
    return FastParams(
        in_M=p.in_M, in_bias=p.in_bias, in_expmax=p.in_expmax, sign_shift=p.sign_shift,
        M=p.M, emin=p.emin, lim_pos=p.maxpos, lim_neg=p.maxneg, minsub=p.minsub,
        ka=int(p.mode == RNA), ko=int(p.mode == RNE), nearest=int(near),
        never_pos=int(p.mode in (RTZ, RDN)), never_neg=int(p.mode in (RTZ, RUP)),
        ovf_pos=beyond(0, 0), ovf_neg=beyond(1, 0), inf_pos=beyond(0, 1),
        inf_neg=beyond(1, 1),
        nan_keep=int(p.nan_action not in (NAN_ZERO, NAN_MAX)),
        nan_out={NAN_ZERO: 0, NAN_MAX: p.maxpos}.get(p.nan_action, 0),
        nan_err=int(p.nan_action == NAN_ERROR), ftz_lim=p.minnorm if p.ftz else 0,
        daz_lim=p.minnorm if p.daz else 0, negzero=1 - p.no_negzero)


# ---------------------------------------------------------------------------------------
# float32, round to nearest even: the FPU does the rounding
# ---------------------------------------------------------------------------------------

class Rne32Params(NamedTuple):
    """Constants of :func:`rne32_parallel`, typed 32-bit so the loop runs 16 lanes wide."""

    expmask: np.uint32  # float32 exponent field
    dC: np.int32  # C bits = max(exponent bits of |x| + dC, cmin)
    cmin: np.int32
    clamp: np.float32  # 2**(emax + 1): |x| beyond it overflows anyway
    lim_pos: np.float32
    lim_neg: np.float32
    ovf_pos: np.float32
    ovf_neg: np.float32
    inf_pos: np.float32
    inf_neg: np.float32
    ftz: np.float32
    daz: np.float32
    posz: np.int32  # 1: the format has no -0
    nan_keep: np.int32
    nan_out: np.float32
    nan_err: np.int32
    const_shift: np.int32  # 1: integer rounding with a constant shift (bf16, tf32)
    half_m1: np.uint32  # ... 2**(shift-1) - 1
    sh: np.uint32  # ... shift
    keep: np.uint32  # ... ~(2**shift - 1)


def _f32(bits):
    return np.uint32(bits).view(np.float32)


@lru_cache(maxsize=512)
def rne32_params(p):
    """:class:`Rne32Params` for float32-input ``RoundParams`` ``p`` in mode rne, or None."""
    fp = fast_params(p)
    if fp is None or p.mode != RNE or (p.in_M, p.in_bias) != (23, 127):
        return None
    if min(p.maxpos, p.maxneg) < (1 << 23):  # the largest value must be a float32 normal
        return None
    emax = max(p.maxpos, p.maxneg) >> 23
    emax -= 127  # binade of the largest magnitude
    cexp_max = max(emax + 1, p.emin) - p.M + 23  # exponent of C for the largest |x|
    cexp_min = p.emin - p.M + 23  # ... for the smallest
    const = p.emin == -126 and 0 < 23 - p.M <= 23  # float32's exponent range: fixed shift
    if const:
        cexp_min = 0  # C unused
    elif p.emin == FIXED_EMIN:  # fixed point: one quantum; need |x| <= 2**(emax+1) <= C
        if emax + 1 > cexp_min or cexp_max > 127 or cexp_min < -126:
            return None
    elif p.M >= 23 or cexp_max > 127 or cexp_min < -126:
        return None
    sh = 23 - p.M if const else 1
    return Rne32Params(
        expmask=np.uint32(0x7F800000), dC=np.int32(max((23 - p.M) << 23, -(1 << 30))),
        cmin=np.int32((cexp_min + 127) << 23),
        clamp=np.float32(np.inf if const else 2.0 ** (emax + 1)),
        lim_pos=_f32(fp.lim_pos), lim_neg=_f32(fp.lim_neg), ovf_pos=_f32(fp.ovf_pos),
        ovf_neg=_f32(fp.ovf_neg), inf_pos=_f32(fp.inf_pos), inf_neg=_f32(fp.inf_neg),
        ftz=_f32(fp.ftz_lim), daz=_f32(fp.daz_lim), posz=np.int32(1 - fp.negzero),
        nan_keep=np.int32(fp.nan_keep), nan_out=_f32(fp.nan_out), nan_err=np.int32(fp.nan_err),
        const_shift=np.int32(const), half_m1=np.uint32((1 << (sh - 1)) - 1), sh=np.uint32(sh),
        keep=np.uint32((0xFFFFFFFF >> sh) << sh))


@njit(cache=True, inline="always")
def _rne32_one(x, p):
    a = abs(x)
    a = a if a >= p.daz else np.float32(0)
    if p.const_shift == 1:  # (loop-invariant branch)
        mb = np.float32(a).view(np.uint32)
        rb = np.uint32((mb + p.half_m1 + ((mb >> p.sh) & np.uint32(1))) & p.keep)
        r = rb.view(np.float32)  # a carry into the exponent field is the next binade (or inf)
    else:
        ac = min(a, p.clamp)
        eb = np.int32(np.float32(ac).view(np.uint32) & p.expmask)
        c = np.int32(max(np.int32(eb + p.dC), p.cmin)).view(np.float32)
        r = (ac + c) - c  # the rounding (must not be reassociated: no fastmath here)
    neg = x < 0
    if r > (p.lim_neg if neg else p.lim_pos):
        r = p.ovf_neg if neg else p.ovf_pos
    if r < p.ftz:
        r = np.float32(0)
    if a == np.inf:
        r = p.inf_neg if neg else p.inf_pos
    out = r if (r == 0 and p.posz == 1) else np.copysign(r, x)
    isnan = x != x
    if isnan:
        out = x if p.nan_keep == 1 else p.nan_out
    return out, (1 if isnan else 0) * p.nan_err


def _rne32_elem(i, x, o, p):
    """Round element ``i`` of the float32 array ``x`` into ``o``; returns 1 for a NaN error."""
    v, e = _rne32_one(x[i], p)
    o[i] = v
    return e


# rne32_serial(x, o, p) / rne32_parallel(...): float32 ``x`` rounded into ``o`` (rne), #NaN errors
rne32_serial, rne32_parallel = twins("rne32", _rne32_elem, over="x")
