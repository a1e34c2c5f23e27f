"""Torch twin of the general rounding kernel :func:`fpsim.kernels.float_round.round_bits`.

The same bit manipulation on int64 tensors (one lane per element, any device), fed with the
very same :class:`~fpsim.kernels.float_round.RoundParams`: every data-dependent ``return``
of the Numba kernel is a ``torch.where`` here, every test of a parameter a Python ``if``.
The overflow rule is the plain :func:`fpsim.kernels._modes.overflow_action` the Numba
kernels inline, and stochastic rounding draws the counter-based stream of
:func:`fpsim.kernels._rng.random_bits` (:func:`random_bits`), so both kernels give identical
bits in every mode. The one case it refuses is ``overflow="wrap"`` meeting a value beyond
the format (a ValueError: the Numba kernel wraps).

It lives beside the Numba kernel so that a change of one shows in the other; only
:mod:`fpsim.torch` imports it (the core never imports torch; tests/test_kernel_contract.py
checks both that and that every RoundParams field is read here).
"""

from __future__ import annotations

import torch

from ._modes import (NAN_ERROR, NAN_MAX, NAN_ZERO, RDN, RNA, RNE, RTO, RTZ, RUP, SR, TO_INF,
                     TO_NAN, TO_WRAP, overflow_action)

_U64 = 1 << 64
_I64_MIN = -(1 << 63)


def _i64(u: int) -> int:
    """The int64 with the same bits as the uint64 ``u``."""
    u %= _U64
    return u - _U64 if u >= 1 << 63 else u


def _srl(z, k: int):
    """Logical right shift of int64 lanes holding uint64 bits."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def random_bits(seed: int, n: int, device):
    """Torch twin of :func:`fpsim.kernels._rng.random_bits` for ``i = 0..n-1`` (int64
    lanes holding the uint64 bits).

    >>> random_bits(0, 2, "cpu").tolist() == random_bits(0, 3, "cpu")[:2].tolist()
    True
    """
    i = torch.arange(1, n + 1, dtype=torch.int64, device=device)
    z = i * _i64(0x9E3779B97F4A7C15) + _i64(seed)  # wraps modulo 2**64 like uint64
    z = (z ^ _srl(z, 30)) * _i64(0xBF58476D1CE4E5B9)
    z = (z ^ _srl(z, 27)) * _i64(0x94D049BB133111EB)
    return z ^ _srl(z, 31)


def _increment(p, sign, rem, half, odd, rnd, shift):
    """Vector twin of ``float_round._increment`` (returns int64 0/1)."""
    m = p.mode
    nz = rem != 0
    if m == RNE:
        inc = (rem > half) | ((rem == half) & (odd == 1))
    elif m == RNA:
        inc = rem >= half
    elif m == RTZ:
        inc = torch.zeros_like(nz)
    elif m == RUP:
        inc = sign == 0
    elif m == RDN:
        inc = sign == 1
    elif m == RTO:
        inc = odd == 0
    else:  # stochastic
        r = _srl(rnd, 1) & ((torch.ones_like(shift) << shift) - 1)
        if p.srbits > 0:
            t = torch.clamp(shift - p.srbits, min=0)
            inc = (r >> t) < (rem >> t)
        else:
            inc = r < rem
    return (inc & nz).to(torch.int64)


def round_bits(b, p, rnd=None):
    """Round int64 bit patterns ``b`` (the input layout of the kernel RoundParams ``p``) on
    the tensor's device, bit for bit like :func:`fpsim.kernels.float_round.round_bits`.

    Returns ``(bits, 0)``, or ``(None, count)`` when ``p`` raises on NaN and ``count`` NaN
    inputs were found. ``rnd``: int64 random bits per lane (stochastic rounding only).

    >>> import torch, fpsim
    >>> from fpsim.accum import kernel_params
    >>> _, p = kernel_params(fpsim.accum.Sequential("bf16"))     # float64 in, bf16 grid
    >>> b = torch.tensor([1.0 + 2.0**-9, 3.0], dtype=torch.float64).view(torch.int64)
    >>> round_bits(b, p)[0].view(torch.float64).tolist()
    [1.0, 3.0]
    """
    ss, in_M = p.sign_shift, p.in_M
    fmask = (1 << in_M) - 1
    sign = (b >> ss) & 1
    mag = b & ((1 << ss) - 1)
    ef = mag >> in_M
    inf_mag = p.in_expmax << in_M
    nan_mag = inf_mag | (1 << (in_M - 1))
    sbit = _I64_MIN if ss == 63 else (1 << ss)
    special = ef == p.in_expmax
    is_nan = special & ((mag & fmask) != 0)
    is_inf = special & ~is_nan
    if p.nan_action == NAN_ERROR and bool(is_nan.any()):
        return None, int(is_nan.sum())
    unsigned = 1 if p.maxneg == 0 else 0  # no negative values

    def rule(infinite):  # the overflow rule per lane (mode and policy: the same for all)
        return torch.where(sign == 1, overflow_action(p.ovf, p.mode, 1, unsigned, infinite),
                           overflow_action(p.ovf, p.mode, 0, unsigned, infinite))

    if p.daz == 1:
        mag = torch.where(mag < p.minnorm, torch.zeros_like(mag), mag)
    ex = torch.clamp(ef, min=1) - p.in_bias
    shift = in_M - p.M + torch.clamp(p.emin - ex, min=0)
    sig = (mag & fmask) | ((ef > 0).to(torch.int64) << in_M)
    if p.emin < 1 - p.in_bias:
        # an input subnormal in its own type can be normal in the target: its true exponent
        # (floor(log2(sig)) via frexp, exact for sig < 2**53) sets the quantum
        top = torch.frexp(sig.to(torch.float64))[1].to(torch.int64) - 1
        sub = (ef == 0) & (ex > p.emin)
        shift = torch.where(sub, in_M - p.M + torch.clamp(ex - in_M + top, min=p.emin) - ex, shift)

    # 1 <= shift <= in_M: round to a multiple of 2**shift input ulps
    sh = torch.clamp(shift, 1, in_M)
    rem = mag & ((torch.ones_like(sh) << sh) - 1)
    inc = _increment(p, sign, rem, torch.ones_like(sh) << (sh - 1), (sig >> sh) & 1, rnd, sh)
    mid = ((mag >> sh) + inc) << sh
    # shift > in_M: below the smallest subnormal, 0 or minsub
    shl = torch.clamp(shift, 1, 62)
    reml = sig
    if p.mode == SR:  # P(up) = sig / 2**shift with 62 random bits, as the kernel does
        reml = torch.where(shift > 62, sig >> torch.clamp(shift - 62, 0, 62), sig)
    incl = _increment(p, sign, reml, torch.ones_like(shl) << (shl - 1), torch.zeros_like(sig), rnd, shl)
    low = incl * p.minsub
    magr = torch.where(shift <= 0, mag, torch.where(shift <= in_M, mid, low))

    lim = torch.where(sign == 1, p.maxneg, p.maxpos)
    over = magr > lim
    act = rule(0)
    if bool((over & (act == TO_WRAP)).any()):
        raise ValueError("overflow='wrap' is not available on the pure-torch path; use a CPU "
                         "tensor (impl='numba') or overflow='saturate'")
    to_nan = over & (act == TO_NAN)
    to_inf = over & (act == TO_INF)
    magr = torch.where(over, lim, magr)  # saturation (inf and NaN are selected below)
    if p.ftz == 1:
        magr = torch.where(magr < p.minnorm, torch.zeros_like(magr), magr)
    res = (sign * sbit) | magr
    z = magr == 0
    if p.no_zero == 1:  # E8M0 (unsigned, no zero): the smallest value, positive
        res = torch.where(z, torch.full_like(res, p.minsub), res)
    elif p.no_negzero == 1:
        res = torch.where(z, torch.zeros_like(res), res)
    res = torch.where(to_inf, (sign * sbit) | inf_mag, res)
    res = torch.where(to_nan, (sign * sbit) | nan_mag, res)

    # zero inputs (after DAZ)
    zin = mag == 0
    if p.no_zero == 1:
        zval = torch.full_like(b, nan_mag)
    elif p.no_negzero == 1:
        zval = torch.zeros_like(b)
    else:
        zval = sign * sbit
    res = torch.where(zin, zval, res)

    # +-inf inputs: exact, so only the overflow policy matters
    act = rule(1)
    beyond = torch.where(act == TO_NAN, nan_mag, lim)
    inf_val = torch.where(act == TO_INF, b, (sign * sbit) | beyond)
    if unsigned == 1:  # no -inf, no negatives: NaN or +0
        inf_val = torch.where(sign == 1, torch.where(act == TO_NAN, nan_mag, 0), inf_val)
    res = torch.where(is_inf, inf_val, res)

    # NaN inputs
    if p.nan_action == NAN_ZERO:
        nan_val = torch.zeros_like(b)
    elif p.nan_action == NAN_MAX:
        nan_val = torch.full_like(b, p.maxpos)
    else:
        nan_val = b
    return torch.where(is_nan, nan_val, res), 0
