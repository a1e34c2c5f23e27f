"""Integer codes of rounding modes, overflow and NaN policies, as the kernels see them.

The public, named values live in :mod:`fpsim.rounding`; these are their compile-time
constants inside Numba code.
"""

# Rounding modes
RNE = 0  # to nearest, ties to even
RNA = 1  # to nearest, ties away from zero
RTZ = 2  # toward zero
RUP = 3  # toward +inf
RDN = 4  # toward -inf
RTO = 5  # to odd
SR = 6  # stochastic

# Overflow policies
OVF_SATURATE = 0
OVF_INF = 1
OVF_NAN = 2
OVF_WRAP = 3

# What a NaN input becomes
NAN_PROPAGATE = 0
NAN_ZERO = 1
NAN_MAX = 2
NAN_ERROR = 3
