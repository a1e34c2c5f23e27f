"""Error-free transformations and round-to-odd: the shared building block for correctly
rounded arithmetic into formats of at most 25 significant bits.

``two_sum``/``two_prod`` give the exact result of a float64 ``+``/``*`` as ``hi + lo``.
``to_odd_bits`` turns ``hi + lo`` into the float64 *round-to-odd* of the exact value;
rounding that once more into any format with at most 51 significant bits (in any mode) is
the correct rounding of the exact value (Boldo & Melquiond 2008), so arithmetic can reuse
:func:`fpsim.kernels.float_round.round_bits` with float64-domain parameters.
``fma64`` is float64's own fused multiply-add (for fp64 accumulators, whose products
float64 cannot hold).
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_SPLIT = 134217729.0  # 2**27 + 1, Dekker's splitter for float64


@njit(cache=True, inline="always")
def two_sum(a, b):
    """(s, e) with s = fl(a + b) and s + e == a + b exactly (Knuth)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


@njit(cache=True, inline="always")
def two_prod(a, b):
    """(p, e) with p = fl(a * b) and p + e == a * b exactly (Dekker; no overflow/underflow)."""
    p = a * b
    t = _SPLIT * a
    ah = t - (t - a)
    al = a - ah
    t = _SPLIT * b
    bh = t - (t - b)
    bl = b - bh
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


@intrinsic
def _llvm_fma_f64(typingctx, a, b, c):
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        f64 = ir.DoubleType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f64, [f64] * 3),
                                            "llvm.fma.f64")
        return builder.call(fn, list(args))

    return sig, codegen


@njit(cache=True, inline="always")
def fma64(a, b, c):
    """fl64(a * b + c) with one rounding (IEEE fusedMultiplyAdd, round to nearest even).

    ``llvm.fma`` is correctly rounded on every target (the FMA instruction, or libm's
    ``fma`` where the CPU has none); float64 has no exact product to build it from.
    """
    return _llvm_fma_f64(np.float64(a), np.float64(b), np.float64(c))


@njit(cache=True, inline="always")
def f64_bits(x):
    """The uint64 bit pattern of a float64 scalar."""
    return np.float64(x).view(np.uint64)


@njit(cache=True, inline="always")
def bits_f64(b):
    """The float64 whose bit pattern is ``b`` (uint64)."""
    return np.uint64(b).view(np.float64)


@njit(cache=True, inline="always")
def pow2(e):
    """2.0**e from its bits (no ldexp): exact for -1074 <= e <= 1023, 0.0 below, inf above.

    The one 2**e of the kernels (block scales, arithmetic scaling, accumulation).
    """
    if e < -1022:
        if e < -1074:
            return 0.0
        return bits_f64(np.uint64(1) << np.uint64(e + 1074))
    if e > 1023:
        return np.inf
    return bits_f64(np.uint64(e + 1023) << np.uint64(52))


@njit(cache=True, inline="always")
def to_odd_bits(hi, lo):
    """float64 bits of round-to-odd(hi + lo), where ``hi = fl(hi + lo)`` (as from two_sum)."""
    b = f64_bits(hi)
    if lo == 0.0 or hi != hi or (b & np.uint64(1)) == np.uint64(1):
        return b
    # hi's last bit is even and the exact value lies beyond it toward lo: step one ulp
    # toward lo, which lands on the odd neighbour.
    toward_zero = (hi > 0.0) != (lo > 0.0)
    if hi == 0.0:  # cannot happen for a two_sum pair, kept for safety
        return f64_bits(lo)
    return b - np.uint64(1) if toward_zero else b + np.uint64(1)
