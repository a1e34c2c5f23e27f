"""Counter-based random bits: element ``i`` of a call seeded ``seed`` always draws the same
64 bits, whatever the number of threads (SplitMix64 finaliser of ``seed + i * golden``)."""

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, inline="always")
def random_bits(seed, i):
    """64 uniformly distributed bits for element ``i`` of a stream ``seed`` (both uint64)."""
    z = seed + np.uint64(i + 1) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))
