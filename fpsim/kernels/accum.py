"""Numba kernels of the accumulation models (SPEC §4).

Every kernel works on *exact* terms held in float64: products of inputs with at most 26
significant bits are exact in float64, and a rounded/L-Mul product is a float64 value too.
One rounded addition ``round(s + t)`` is ``two_sum`` (exact ``hi + lo``), round-to-odd into
float64 and one :func:`round_bits` into the accumulator format: correctly rounded in every
mode for accumulators of at most 51 significant bits (Boldo & Melquiond 2008).

Kernels parallelise over independent dot products only (``prange`` over rows), so results
are identical for any thread count.

The kernels live in five modules by concept - :mod:`~fpsim.kernels.accum_leaves` (leaves,
one rounded addition, Kulisch, fused blocks), :mod:`~fpsim.kernels.accum_generic` (the generic fused dot-add),
:mod:`~fpsim.kernels.accum_gemm` (fast GEMMs,
fp64 FMA chains), :mod:`~fpsim.kernels.accum_scaled` (block-scaled MMA),
:mod:`~fpsim.kernels.accum_mfma` (AMD CDNA) -; this module is the one name the accumulation
layer loads them by.
"""

from ._modes import (EXACT, FUSED, KAHAN, MUL_EXACT, MUL_ROUND, NATIVE, NUMPY,  # noqa: F401
                     PAIR, SEQ)
from .accum_gemm import (clamped_exps, fma64_rows, gemm_fma64, gemm_fused_vec,  # noqa: F401
                         gemm_seq_f32, rows_fused_fast)
from .accum_generic import NO_EXP, gemm_generic, rows_generic  # noqa: F401
from .accum_leaves import (add_arrays, fused_block, fused_row, leaf, pow2, radd, rnd1,  # noqa: F401
                           round_array, seq_stochastic, tree_sum)
from .accum_mfma import (MFMA_EXACT, MFMA_FTZ, MFMA_GTR, MFMA_TR, mfma_rows)  # noqa: F401
from .accum_scaled import gemm_scaled, rows_scaled  # noqa: F401
