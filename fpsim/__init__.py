"""fpsim: emulate any number format and the arithmetic of real hardware, bit for bit.

>>> import numpy as np, fpsim
>>> fpsim.quantize(np.float32(0.1), "bf16")
np.float32(0.100097656)

The public API, by layer (each layer imports only those above it in this list):

- option values (:mod:`fpsim.options`): :class:`Rounding`, :class:`Overflow`,
  :class:`NaNPolicy`
- :mod:`fpsim.lowering` (internal: resolved options, kernel parameters, the input rule)
- formats: :class:`FloatFormat`, :class:`IntFormat`, :class:`FixedFormat`,
  :class:`DIntFormat`, :class:`CodebookFormat`, :func:`p3109`, :func:`parse`
- rounding: :func:`quantize`, :func:`encode`, :func:`decode`
- block scaling (:mod:`fpsim.block`, :mod:`fpsim.scaling`), elementwise arithmetic and
  L-Mul (:mod:`fpsim.arith`), accumulation models and GEMM (:mod:`fpsim.accum`)
- hardware presets (:mod:`fpsim.hardware`)
- :mod:`fpsim.torch` (optional, import it explicitly), :mod:`fpsim.analysis`, the CLI.

Numba is imported on first use of a kernel, not by ``import fpsim``.
"""

from .formats import (FAMILIES, CodebookFormat, DIntFormat, FixedFormat, FloatFormat, Format,
                      IntFormat, as_format, list_formats, p3109, parse)
from .rounding import (ROUNDING_MODES, NaNPolicy, Overflow, Rounding, code_dtype, decode, encode,
                       quantize)

# Block/scaled formats register their names (mxfp4, nvfp4, block[...], scaled[...]) with parse.
from . import block, scaling  # noqa: E402,I001
from .block import BlockCodes, BlockFormat, pack, unpack  # noqa: E402
from .scaling import DelayedScaling, ScaledFormat, ScaledTensor, scale_tensor  # noqa: E402

from . import arith  # noqa: E402
from .arith import abs, add, div, fma, lmul, maximum, minimum, mul, neg, sqrt, sub  # noqa: E402,A004

from . import accum, hardware  # noqa: E402
from .accum import dot, matmul, sum  # noqa: E402,A004

# fpsim.warmup(...) compiles kernels ahead of time (the function; the module is fpsim.warmup too)
from .warmup import warmup  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    # formats
    "FAMILIES", "Format", "FloatFormat", "IntFormat", "FixedFormat", "DIntFormat", "CodebookFormat",
    "parse", "as_format", "list_formats", "p3109",
    # rounding
    "Rounding", "Overflow", "NaNPolicy", "ROUNDING_MODES",
    "quantize", "encode", "decode", "code_dtype",
    # block and scaled formats
    "block", "BlockFormat", "BlockCodes", "pack", "unpack",
    "scaling", "ScaledFormat", "ScaledTensor", "scale_tensor", "DelayedScaling",
    # elementwise arithmetic
    "arith", "add", "sub", "mul", "div", "fma", "sqrt", "neg", "abs", "minimum", "maximum", "lmul",
    # accumulation and hardware
    "accum", "hardware", "dot", "matmul", "sum",
    # compiling ahead of time
    "warmup",
]
