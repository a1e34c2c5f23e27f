"""Integer codes of rounding modes, overflow and NaN policies, as the kernels see them.

The public, named values live in :mod:`fpsim.rounding`; these are their compile-time
constants inside Numba code. :func:`overflow_action` is the overflow rule all rounding
kernels share (plain Python here, so that the torch twin can use it without Numba).
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

# Accumulation leaf kinds (the arithmetic of one accumulation model over a row of terms)
SEQ = 0  # s = round(s + t_k), s starts at c
PAIR = 1  # recursive halves, each partial rounded; d = round(c + tree)
KAHAN = 2  # compensated summation, every operation rounded
EXACT = 3  # Kulisch accumulator, rounded once
FUSED = 4  # tensor-core multi-term fused adder, blocks of n chained through c
NUMPY = 5  # numpy's pairwise_sum order (8-way unrolled blocks of 128)
NATIVE = 6  # float64 accumulator, round-to-nearest-even: native float64 addition
EXACT64 = 7  # exact sum rounded once to fp64 (RNE): evaluated in Python (math.fsum), no kernel

# Accumulation multiplier kinds
MUL_EXACT = 0
MUL_ROUND = 1

# Elementwise operations of fpsim.kernels.arith
OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FMA, OP_SQRT = 0, 1, 2, 3, 4, 5

# Block-scale rules of fpsim.kernels.block_round
RULE_FLOOR = 0  # OCP MX: 2**(floor(log2 amax) - emax_elem)
RULE_CEIL = 1  # torchao CEIL: 2**(ceil(log2 amax) - emax_elem)
RULE_EVEN = 2  # torchao EVEN: amax rounded to the element precision first, then floor
RULE_RCEIL = 3  # torchao RCEIL / cuBLAS: 2**ceil(log2(amax / max_elem))
RULE_VALUE = 4  # amax / max_elem rounded into the scale format (NVFP4, fp32 scales)
RULE_GIVEN = 5  # scales supplied by the caller

# What a value beyond the format's largest magnitude becomes (see overflow_action)
TO_MAX = 0  # the largest magnitude of its sign (saturation)
TO_INF = 1
TO_NAN = 2
TO_WRAP = 3  # wrapped modulo 2**bits (integers, fixed point)


def overflow_action(ovf, mode, sign, unsigned, infinite):
    """What a value beyond the format's largest magnitude becomes under overflow policy
    ``ovf`` and rounding mode ``mode``: ``TO_MAX``, ``TO_INF``, ``TO_NAN`` or ``TO_WRAP``.

    The one overflow rule of every rounding kernel: the Numba kernels inline its njit copy
    (:data:`fpsim.kernels.float_round.overflow_action`), the fast-path parameter builders
    and the torch twin call this plain function (this module imports no Numba).
    ``sign`` is 1 for a negative value, ``unsigned`` 1 for a format without negative values
    (there a negative overflow under ``inf`` is NaN), ``infinite`` 1 for an infinite input:
    exact, so it stays infinite in every mode, and it cannot wrap (it saturates). A finite
    value under ``inf`` overflows to inf when rounding to nearest or stochastically, or
    away from zero; toward zero it stops at the largest magnitude (IEEE 754 §7.4).

    >>> [overflow_action(OVF_INF, m, 0, 0, 0) == TO_INF for m in (RNE, RTZ)]
    [True, False]
    """
    # bitwise & | on comparisons, not and/or: no short-circuit branches, so the kernels that
    # inline it stay small (Numba's compile time grows with their number of blocks)
    away = ((mode == RNE) | (mode == RNA) | (mode == SR) | ((mode == RUP) & (sign == 0))
            | ((mode == RDN) & (sign == 1)) | (infinite == 1))
    if ovf == OVF_WRAP:
        return TO_MAX if infinite == 1 else TO_WRAP
    if (ovf == OVF_NAN) | ((ovf == OVF_INF) & (sign == 1) & (unsigned == 1)):
        return TO_NAN
    return TO_INF if (ovf == OVF_INF) & away else TO_MAX
