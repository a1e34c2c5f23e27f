"""Accumulation models for dot products, sums and GEMM (SPEC §4).

A *model* says how the products of a dot product are formed and added: the format and
rounding of the accumulator, the order of the additions and any fused multi-term hardware
adder. Every model is a small frozen dataclass and every model is bit-exact and
deterministic; pass one as ``model=`` to :func:`fpsim.dot`, :func:`fpsim.matmul` or
:func:`fpsim.sum`.

================= =======================================================================
model             arithmetic
================= =======================================================================
``Sequential``    ``s = c; s = round(s + p_k)`` for k = 0..K-1 (``fma=False`` rounds
                  every product into the accumulator format first); stochastic rounding
``Pairwise``      recursive halves (left half ``K // 2``), every partial sum rounded;
                  ``d = round(c + tree)``
``Kahan``         compensated summation, every operation rounded in the accumulator
``Exact``         exact (Kulisch) sum of c and all products, rounded once
``FusedBlock``    tensor-core multi-term fused adder (blocks of n, truncated alignment)
``FusedDotAdd``   the generic fused dot-add (every tensor-core knob a field; as_generic)
``Blocked``       split-K: chunks of k by ``inner`` (from 0), partials + c by ``outer``
``Promoted``      FP8 recipe: ``every`` products in ``inner``, then into an fp32 ``outer``
``Permuted``      an explicit order, an explicit tree, or a seeded random order
``NumpyOrder``    the order ``np.sum`` uses for float32 on this machine (bit for bit)
``Integer``       integer accumulator with wrap-around or saturation
================= =======================================================================

Products (the ``multiply=`` option): ``"exact"`` (default where it makes sense), a format
name or :class:`RoundedProduct` (rounded once into that format), or :class:`LMulProduct`.
Exact products need inputs of at most 26 significant bits (exact in float64), except in
``Sequential("fp64", fma=True)``: fp64 fused multiply-adds (:class:`FusedProduct`), any
float64 inputs.

Inputs are converted to float64 *exactly* or refused: float16/bfloat16/float32/float64 and
ml_dtypes' 8/6/4-bit float arrays are accepted; integer and longdouble inputs are accepted
when float64 holds every value exactly (else ValueError); bool, complex, object and masked
arrays raise TypeError.

Accumulators: any float format of at most 51 significant bits in every rounding mode
(correctly rounded via two_sum + round-to-odd), fp64 with round-to-nearest-even (native
float64 additions, or fused multiply-adds), and
integer/fixed-point formats (with ``overflow="wrap"`` or ``"saturate"``).

>>> import numpy as np, fpsim
>>> x = np.array([1.0, 2.0**-24, 2.0**-24])
>>> float(fpsim.sum(x, model=fpsim.accum.Sequential("fp32")))
1.0
>>> float(fpsim.sum(x, model=fpsim.accum.Exact("fp32")))
1.0000001192092896
"""

from __future__ import annotations

# the implementation, by concept (each module below ~500 lines; see docs/architecture.md)
from ..formats import as_format  # noqa: F401 - fpsim.accum.as_format is used (fpsim.torch.accum)
from .api import dot, kernel_params, matmul, sum  # noqa: A004
from .chains import Blocked, Permuted, Promoted
from .fused import FusedBlock
from .generic import FusedDotAdd, as_generic
from .growth import error_growth
from .inputs import Rounded, exact_float64
from .mma import MFMA, BlockScaledFused
from .models import Exact, Integer, Kahan, Model, NumpyOrder, Pairwise, Sequential
from .products import ExactProduct, FusedProduct, LMulProduct, Multiplier, RoundedProduct  # noqa: F401

__all__ = [
    "BlockScaledFused",
    "Blocked",
    "Exact",
    "ExactProduct",
    "FusedBlock",
    "FusedDotAdd",
    "FusedProduct",
    "Integer",
    "Kahan",
    "LMulProduct",
    "MFMA",
    "Model",
    "NumpyOrder",
    "Pairwise",
    "Permuted",
    "Promoted",
    "Rounded",
    "RoundedProduct",
    "Sequential",
    "dot",
    "error_growth",
    "exact_float64",
    "kernel_params",
    "matmul",
    "sum",
    "as_generic",
]
