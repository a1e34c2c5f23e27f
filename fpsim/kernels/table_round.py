"""Rounding into an arbitrary sorted value table (codebooks such as NF4, dINT).

Returns the *index* of the chosen table entry; callers map it to a value or a code.
Midpoints between neighbours are given exactly as double-doubles ``mid_hi + mid_lo`` so
round-to-nearest decisions are exact for every float64 input.
"""

import numpy as np
from numba import njit, prange  # noqa: F401 - prange: the twins' parallel loop

from ._modes import NAN_ERROR, NAN_MAX, NAN_ZERO, RDN, RNA, RNE, RTO, RTZ, RUP
from ._rng import random_bits
from ._twins import twins


@njit(cache=True, inline="always")
def _round_index(x, v, mid_hi, mid_lo, odd, mode, rnd):
    n = v.size
    if x <= v[0]:
        return 0
    if x >= v[n - 1]:
        return n - 1
    hi = np.searchsorted(v, x)  # v[hi-1] < x <= v[hi]
    if v[hi] == x:
        return hi
    lo = hi - 1
    if mode == RDN:
        return lo
    if mode == RUP:
        return hi
    if mode == RTZ:
        if v[lo] >= 0:
            return lo
        if v[hi] <= 0:
            return hi
        return lo if -v[lo] < v[hi] else hi  # the bracket straddles zero
    if mode == RTO:
        return lo if odd[lo] == 1 else hi
    if mode == RNE or mode == RNA:
        # compare x with the exact midpoint mid_hi[lo] + mid_lo[lo]
        d = x - mid_hi[lo]  # exact when it matters (Sterbenz), see module doc
        if d > mid_lo[lo]:
            return hi
        if d < mid_lo[lo]:
            return lo
        if mode == RNA:
            return hi if abs(v[hi]) >= abs(v[lo]) else lo
        return hi if odd[lo] == 1 else lo
    # stochastic: up with probability (x - lo) / (hi - lo)
    u = np.float64(rnd >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    return hi if u * (v[hi] - v[lo]) < (x - v[lo]) else lo


def _one(i, x, idx, v, mid_hi, mid_lo, odd, mode, nan_action, nan_index, seed):
    """Index into ``v`` of the rounded ``x[i]`` (NaN inputs per ``nan_action``) into
    ``idx[i]``; returns 1 for a NaN error."""
    xi = np.float64(x[i])
    e = 0
    if xi != xi:
        if nan_action == NAN_ZERO:
            idx[i] = nan_index
        elif nan_action == NAN_MAX:
            idx[i] = v.size - 1
        else:
            idx[i] = -1
        e = 1 if nan_action == NAN_ERROR else 0
    else:
        idx[i] = _round_index(xi, v, mid_hi, mid_lo, odd, mode, random_bits(seed, i))
    return e


# table_serial(x, idx, v, mid_hi, mid_lo, odd, mode, nan_action, nan_index, seed) and
# table_parallel(...): index into v of each rounded x; returns #errors
table_serial, table_parallel = twins("table", _one, over="x")
