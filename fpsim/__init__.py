"""fpsim: emulate any number format and the arithmetic of real hardware, bit for bit.

>>> import numpy as np, fpsim
>>> fpsim.quantize(np.float32(0.1), "bf16")
np.float32(0.100097656)
"""

from .formats import (FAMILIES, CodebookFormat, DIntFormat, FixedFormat, FloatFormat, Format,
                      IntFormat, as_format, list_formats, p3109, parse)
from .rounding import (ROUNDING_MODES, NaNPolicy, Overflow, Rounding, code_dtype, decode, encode,
                       quantize)

__version__ = "0.1.0"

__all__ = [
    "FAMILIES", "Format", "FloatFormat", "IntFormat", "FixedFormat", "DIntFormat", "CodebookFormat",
    "parse", "as_format", "list_formats", "p3109",
    "Rounding", "Overflow", "NaNPolicy", "ROUNDING_MODES",
    "quantize", "encode", "decode", "code_dtype",
]
