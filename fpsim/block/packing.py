"""Dense packing of narrow codes into bytes: :func:`pack` and :func:`unpack`.

>>> import numpy as np, fpsim
>>> fpsim.unpack(fpsim.pack(np.array([3, 1], dtype=np.uint8), "mxfp4"), 4, 2).tolist()
[3, 1]
"""

from __future__ import annotations

import numpy as np

from .. import rounding as _R
from ..formats import Format, as_format
from .descriptor import BlockFormat

__all__ = ["pack", "unpack"]


def _bits_of(bits_or_fmt) -> int:
    if isinstance(bits_or_fmt, (int, np.integer)) and not isinstance(bits_or_fmt, (bool, np.bool_)):
        b = int(bits_or_fmt)
    elif not isinstance(bits_or_fmt, (str, Format)):
        raise TypeError(f"bits={bits_or_fmt!r}: pass an int 1..8 or a format (e.g. 4 or 'e2m1')")
    else:
        f = as_format(bits_or_fmt)
        b = f.elem.bits if isinstance(f, BlockFormat) else f.bits
    if not 1 <= b <= 8:
        raise ValueError(f"pack/unpack handle codes of 1..8 bits, got {b}")
    return b


def pack(codes, bits) -> np.ndarray:
    """Pack codes of ``bits`` bits (or of a format's element width) densely into bytes.

    The codes are taken in C order; code ``i`` occupies bits ``i*bits ..`` counting from the
    least significant bit of byte 0 (two FP4/INT4 codes per byte: the first in the low nibble).

    >>> import numpy as np, fpsim
    >>> fpsim.pack(np.array([1, 2, 15], dtype=np.uint8), 4).tolist()
    [33, 15]
    >>> fpsim.unpack(fpsim.pack(np.array([1, 2, 15], dtype=np.uint8), "e2m1"), "e2m1", 3).tolist()
    [1, 2, 15]
    """
    b = _bits_of(bits)
    c = _R.as_codes(codes)
    _R.check_code_range(c, b, f"{b}-bit codes")  # on the values as given, before any cast
    c = c.reshape(-1).astype(np.uint8)
    if b == 8:
        return c.copy()
    if b == 4:  # fast path: two codes per byte
        if c.size % 2:
            c = np.concatenate([c, np.zeros(1, np.uint8)])
        return (c[0::2] | (c[1::2] << 4)).astype(np.uint8)
    bitsarr = ((c[:, None] >> np.arange(b, dtype=np.uint8)) & 1).astype(np.uint8)
    return np.packbits(bitsarr.reshape(-1), bitorder="little")


def _shape_of(shape) -> tuple:
    """A shape of non-negative ints (no -1: the number of codes is not in the bytes)."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) else shape
    try:
        dims = tuple(dims)
    except TypeError:
        raise TypeError(f"shape={shape!r}: pass an int or a tuple of ints") from None
    for d in dims:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"shape={shape!r}: every dimension must be an int, got {d!r}")
        if d < 0:
            raise ValueError(f"shape={shape!r}: dimensions must be >= 0 (the number of codes "
                             "cannot be inferred from the bytes: give the full shape)")
    return tuple(int(d) for d in dims)


def unpack(packed, bits, shape) -> np.ndarray:
    """Inverse of :func:`pack`: the ``uint8`` codes, reshaped to ``shape``.

    >>> import numpy as np, fpsim
    >>> fpsim.unpack(np.array([33, 15], dtype=np.uint8), 4, (3,)).tolist()
    [1, 2, 15]
    """
    b = _bits_of(bits)
    if isinstance(packed, np.ma.MaskedArray):
        raise TypeError("packed is a masked array: fpsim would drop its mask; pass a plain array")
    p = np.asarray(packed)
    if p.dtype != np.uint8:
        raise TypeError(f"packed data must be uint8, got {p.dtype}")
    shape = _shape_of(shape)
    n = int(np.prod(shape, dtype=np.int64))
    need = -(-n * b // 8)
    if p.size < need:
        raise ValueError(f"{p.size} bytes hold fewer than {n} codes of {b} bits (need {need})")
    p = p.reshape(-1)
    if b == 8:
        return p[:n].copy().reshape(shape)
    if b == 4:
        out = np.empty(2 * need, np.uint8)
        out[0::2] = p[:need] & 15
        out[1::2] = p[:need] >> 4
        return out[:n].reshape(shape)
    bitsarr = np.unpackbits(p[:need], bitorder="little", count=n * b).reshape(n, b)
    return (bitsarr << np.arange(b, dtype=np.uint8)).sum(axis=1, dtype=np.uint8).reshape(shape)
