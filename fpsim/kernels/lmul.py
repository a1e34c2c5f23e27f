"""L-Mul kernels (Luo & Sun 2024): the approximate multiplication of
:func:`fpsim.lmul`, each product rounded once into the output format by the exact-arithmetic
finish of :mod:`fpsim.kernels.arith`."""

import numpy as np
from numba import njit, prange

from ._modes import NAN_ERROR, SR
from ._rng import random_bits
from .arith import FMASK, INF_BITS, MAGMASK, NAN_BITS, SIGN, finish, frexp1, round_scaled
from .eft import f64_bits, two_sum


@njit(cache=True, inline="always")
def _split_m(x, m):
    """(sign, exponent e, mantissa field F) with |x| = (1 + F/2**m) * 2**e, x finite nonzero
    with at most m fraction bits after normalisation."""
    mx, e = frexp1(x)
    b = np.int64(f64_bits(mx) & MAGMASK)
    F = (b & FMASK) >> (52 - m)
    return np.int64(1) if x < 0.0 else np.int64(0), e, F


@njit(cache=True)
def lmul_scalar(x, y, m, l, int_semantics, p, rnd):
    """L-Mul of two float64 values holding m-bit-mantissa numbers, rounded into ``p``.

    ``(-1)**(sx^sy) * (1 + fx + fy + 2**-l) * 2**(ex+ey)`` where ``|x| = (1+fx) 2**ex``
    (subnormals are normalised first). ``int_semantics`` (bool): the integer addition of the
    bit patterns (minus bias, plus offset), where mantissa carries bump the exponent
    (``1 <= s = fx+fy+2**-l < 2`` gives ``s * 2**(ex+ey+1)``, ``s >= 2`` gives
    ``(s-1) * 2**(ex+ey+2)``); False: the literal formula. Zero times a finite value is
    a signed zero, 0*inf and NaN give NaN, inf times nonzero gives inf. ``0 <= l <= m <= 52``.
    """
    if np.isnan(x) or np.isnan(y):
        return finish(np.uint64(NAN_BITS), p, rnd)
    sg = (f64_bits(x) ^ f64_bits(y)) & SIGN
    if not (np.isfinite(x) and np.isfinite(y)):
        if x == 0.0 or y == 0.0:
            return finish(np.uint64(NAN_BITS), p, rnd)
        return finish(sg | np.uint64(INF_BITS), p, rnd)
    if x == 0.0 or y == 0.0:
        return finish(sg, p, rnd)
    sx, ex, fx = _split_m(x, m)
    sy, ey, fy = _split_m(y, m)
    S = fx + fy + (np.int64(1) << (m - l))
    E = ex + ey
    if int_semantics:
        k = S >> m
        S = S & ((np.int64(1) << m) - 1)
        E += k
    tot = (np.int64(1) << m) + S  # value tot * 2**(E - m), tot < 2**55
    hi = np.float64(tot & ~np.int64(1023))
    lo = np.float64(tot & np.int64(1023))
    h, t = two_sum(hi, lo)
    if sx != sy:
        h, t = -h, -t
    return round_scaled(h, t, E - m, p, rnd)


@njit(cache=True, parallel=True)
def lmul_kernel(x, y, out, m, l, int_semantics, p, seed):
    """Vectorised :func:`lmul_scalar`; returns #NaN results a NaN-less format must refuse."""
    bad = 0
    for i in prange(out.size):
        rnd = random_bits(seed, i) if p.mode == SR else np.uint64(0)
        v = lmul_scalar(x[i], y[i], m, l, int_semantics, p, rnd)
        out[i] = v
        if np.isnan(v) and p.nan_action == NAN_ERROR:
            bad += 1
    return bad
