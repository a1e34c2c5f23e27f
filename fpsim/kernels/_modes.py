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
