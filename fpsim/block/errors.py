"""Per-block quantization error: :func:`block_errors` (its figure is
:func:`fpsim.analysis.plot_block_error`).

>>> import numpy as np, fpsim
>>> float(fpsim.block.block_errors(np.ones(32), "mxfp4")[0])
0.0
"""

from __future__ import annotations

import numpy as np

from ..formats import as_format
from ..rounding import quantize
from .descriptor import BlockFormat
from .engine import layout, norm_axis

__all__ = ["block_errors"]


def block_errors(x, fmt, *, axis=None, rounding="rne") -> np.ndarray:
    """Relative RMS error of every block: ``||q - x|| / ||x||`` per block (NaN for zero blocks).

    Returns an array shaped like the scale codes.

    >>> import numpy as np, fpsim
    >>> x = np.linspace(-1, 1, 64)
    >>> fpsim.block.block_errors(x, "mxfp8_e4m3").shape
    (2,)
    """
    fmt = as_format(fmt)
    if not isinstance(fmt, BlockFormat):
        raise TypeError(f"block_errors needs a block format, got {fmt.name}")
    x = np.asarray(x, dtype=np.float64)
    ax = norm_axis(fmt.axis if axis is None else axis, x.ndim)
    qx = quantize(x, fmt, axis=ax, rounding=rounding)
    shape = x.shape
    A, L, B = layout(shape, ax)
    nb = -(-L // fmt.block)
    pad = nb * fmt.block - L
    d2 = np.pad(((qx - x) ** 2).reshape(A, L, B), ((0, 0), (0, pad), (0, 0)))
    x2 = np.pad((x ** 2).reshape(A, L, B), ((0, 0), (0, pad), (0, 0)))
    num = d2.reshape(A, nb, fmt.block, B).sum(axis=2)
    den = x2.reshape(A, nb, fmt.block, B).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.sqrt(num / den)
    return r.reshape(shape[:ax] + (nb,) + shape[ax + 1:])
