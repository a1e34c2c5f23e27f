"""The input rule every entry point shares (see :func:`real_input`).

quantize, encode, the arithmetic and the accumulation models all read their inputs here, so
that one input is accepted (or refused, with the same message) by all of them.

>>> from fpsim.lowering import inputs
>>> inputs.real_input(2)[0]
array(2.)
"""

from __future__ import annotations

import math

import numpy as np

from .params import DTYPES, ml_dtypes_module

__all__ = ["INPUT_RULE", "real_input", "exact_float64", "as_input", "as_codes", "check_code_range",
           "uint_dtype"]

#: What the input rule accepts, for error messages.
INPUT_RULE = ("accepted: float16/bfloat16/float32/float64 arrays (any byte order), ml_dtypes' "
              "8/6/4-bit floats, integer arrays and Python ints whose values float64 holds "
              "exactly, longdouble arrays whose values float64 holds exactly")


def _int_error(what, v) -> ValueError:
    try:
        near = f" (nearest: {int(float(v))})"
    except OverflowError:
        near = " (beyond the float64 range)"
    shown = str(v) if abs(v) < 10**30 else f"{str(v)[:12]}... ({len(str(abs(v)))} digits)"
    return ValueError(
        f"{what} holds the integer {shown}, which is not exactly representable in float64"
        f"{near}; fpsim takes an integer only when float64 holds it exactly (every |n| <= "
        "2**53 does), so that it is never rounded twice. Round it first (float(n), or "
        "x.astype(np.float64)) if that rounding is intended")


def _int_value(v, what) -> float:
    """float64 of a Python (or numpy) int, which must be exactly representable."""
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f) or int(f) != int(v):
        raise _int_error(what, int(v))
    return f


def _from_ints(x, what):
    """float64 copy of an integer array, refusing any value float64 does not hold exactly."""
    f = x.astype(np.float64)
    if x.dtype.itemsize >= 8 and x.size:
        big = np.abs(f) >= 2.0**53  # 2**53 + 1 rounds to 2**53: check it too
        if big.any():
            # converting back checks the round trip; 2**63 / 2**64 (rounded up from the
            # largest int64/uint64 values) are outside the integer type, hence never exact
            top = 2.0 ** (8 * x.dtype.itemsize - (1 if x.dtype.kind == "i" else 0))
            fb = f[big]
            ok = (fb != top) & (fb >= -top)
            bad = ~ok | (np.where(ok, fb, 0).astype(x.dtype) != x[big])
            if bad.any():
                raise _int_error(what, int(x[big][bad][0]))
    return f


def _from_longdouble(x, what):
    """float64 copy of a longdouble array whose values float64 holds, else ValueError."""
    with np.errstate(over="ignore"):
        f = x.astype(np.float64)
    bad = (f.astype(x.dtype) != x) & ~np.isnan(x)
    if bad.any():
        raise ValueError(f"{what} holds {x[bad].flat[0]!r} ({x.dtype}), which float64 cannot "
                         "hold exactly; fpsim works on float64 values and refuses to round "
                         "inputs silently. Convert explicitly (x.astype(np.float64)) if that "
                         "rounding is intended")
    return f


def _is_ml_float(dt) -> bool:
    """An ml_dtypes float type (float8/6/4, e8m0): every value is exact in float32."""
    if not dt.type.__module__.startswith("ml_dtypes"):
        return False
    try:
        ml_dtypes_module().finfo(dt)  # imported already: dt is one of its types
    except (ValueError, TypeError):
        return False  # ml_dtypes' int2/int4/uint4 (not floats)
    return True


def _dtype_error(what, dt) -> TypeError:
    allowed = ("float16, bfloat16 (ml_dtypes), float32, float64 (any byte order); ml_dtypes' "
               "8-bit and smaller floats are read as float32; integer and longdouble arrays "
               "whose values float64 holds exactly")
    if dt.kind == "b":
        return TypeError(f"{what}: bool arrays are not accepted: fpsim rounds real numbers; "
                         f"convert with .astype(np.float64) first (allowed dtypes: {allowed})")
    return TypeError(f"{what}: dtype {dt} is not supported; allowed: {allowed}")


def _carrier_array(arr, what):
    """The rule for numpy arrays: a carrier dtype as it is, the other accepted kinds
    converted exactly (or refused)."""
    dt = arr.dtype
    if dt in DTYPES:
        return arr
    if dt.kind == "f" and not dt.isnative:
        return _carrier_array(arr.astype(dt.newbyteorder("=")), what)
    if dt.kind in "iu":  # integers are numbers: exact in float64, or refused
        return _from_ints(arr, what)
    if dt.kind == "f" and dt.itemsize > 8:  # longdouble / float128: exact values only
        return _from_longdouble(arr, what)
    if _is_ml_float(dt):
        return arr.astype(np.float32)
    raise _dtype_error(what, dt)


def _check_leaves(x, what):
    """Refuse bools, complex and non-numbers in a (nested) list, and ints that float64 cannot
    hold exactly (numpy would convert either without a word)."""
    try:
        leaves = np.asarray(x, dtype=object).reshape(-1)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what}: cannot read the sequence as an array: {e}") from None
    for v in leaves:
        if isinstance(v, (bool, np.bool_)):
            raise TypeError(f"{what}: the sequence holds a bool ({v!r}); fpsim takes real numbers")
        if isinstance(v, (int, np.integer)):
            _int_value(v, what)
        elif isinstance(v, (complex, np.complexfloating)):
            raise TypeError(f"{what}: the sequence holds a complex number; round the real and "
                            "imaginary parts separately")
        elif not isinstance(v, (float, np.floating)):
            raise TypeError(f"{what}: the sequence holds a {type(v).__name__} ({v!r}), which is "
                            f"not supported: fpsim takes real numbers ({INPUT_RULE})")


def real_input(x, what="x"):
    """``(array, kind)`` of an input number or array, by the one rule every entry point shares.

    ``kind`` is ``"python"`` (a Python float or int: give a float back), ``"numpy"`` (a
    numpy scalar: give a numpy scalar back) or ``"array"`` (an array of the input's shape,
    0-d included; lists and tuples too). The array has a carrier dtype of :data:`DTYPES`
    (float16, bfloat16, float32, float64). The rule:

    * float16/bfloat16/float32/float64 arrays and scalars, any byte order: as they are;
      ml_dtypes' 8/6/4-bit floats: as float32 (exact);
    * integers - Python ints, alone or in lists, numpy integer scalars and arrays - are
      taken as float64 when float64 holds every value exactly, and refused with
      ``ValueError`` otherwise (never rounded to float64 first);
    * longdouble arrays: as float64 when float64 holds every value, else ``ValueError``;
    * bools (alone, in lists, bool arrays), complex, strings, objects and masked arrays
      (the mask would be lost): ``TypeError``.

    >>> import numpy as np
    >>> from fpsim.lowering import real_input
    >>> real_input(3)[0], real_input(np.array(2.5))[0].shape, real_input([1, 2.5])[1]
    (array(3.), (), 'array')
    >>> real_input(np.array([1, 2]))[0]
    array([1., 2.])
    """
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{what} is a masked array: fpsim would drop its mask; pass "
                        "x.filled(value) or x.compressed() (a plain array)")
    if isinstance(x, (np.ndarray, np.generic)):
        if isinstance(x, np.bool_):
            raise TypeError(f"{what} is a bool: fpsim takes real numbers, not bool")
        arr = _carrier_array(np.asarray(x), what)  # a subclass (np.matrix...) as a plain array
        return arr, ("array" if isinstance(x, np.ndarray) else "numpy")
    if isinstance(x, bool):
        raise TypeError(f"{what} is a bool: fpsim takes real numbers, not bool")
    if isinstance(x, int):
        return np.array(_int_value(x, what)), "python"
    if isinstance(x, float):
        return np.array(x), "python"
    if isinstance(x, complex):
        raise TypeError(f"{what}: complex input is not supported: round the real and imaginary "
                        "parts separately")
    if isinstance(x, (list, tuple)):
        _check_leaves(x, what)
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{what}: cannot read the sequence as an array: {e}") from None
        if arr.dtype.kind in "iuO":  # ints (checked exact above), or big ones numpy kept as objects
            arr = np.array([float(v) for v in arr.reshape(-1)],
                           dtype=np.float64).reshape(arr.shape)
        return _carrier_array(arr, what), "array"
    if type(x).__module__.startswith("torch"):
        raise TypeError(f"{what}: torch tensors go through fpsim.torch.quantize (or fpsim.torch's "
                        "accumulation; the core has no torch dependency); pass a numpy array "
                        "to the core")
    raise TypeError(f"{what}: cannot quantize a {type(x).__name__}; pass a numpy float array or "
                    "a Python number")


def exact_float64(x, what="x") -> np.ndarray:
    """``x`` as a new float64 array (shape kept), converted *exactly* by :func:`real_input`'s
    rule - or a clear error (never rounded).

    >>> import numpy as np
    >>> from fpsim.lowering import exact_float64
    >>> exact_float64(np.array([2**53, -3], dtype=np.int64)).tolist()
    [9007199254740992.0, -3.0]
    >>> try:
    ...     exact_float64(np.array([2**53 + 1]), "A")
    ... except ValueError as e:
    ...     print(str(e)[:54])
    A holds the integer 9007199254740993, which is not exa
    """
    # always a new array, as accum's callers have had (they may write into it)
    return np.array(real_input(x, what)[0], dtype=np.float64)


def as_input(x):
    """``(contiguous carrier array, restore)`` of an input: ``restore(result)`` gives the
    result the input's kind (a Python float, a numpy scalar or the array).

    >>> from fpsim import lowering
    >>> arr, restore = lowering.as_input(1.5)
    >>> arr, restore(arr * 2)
    (array(1.5), 3.0)
    """
    arr, kind = real_input(x)
    flat = np.ascontiguousarray(arr).reshape(arr.shape)  # ascontiguousarray makes 0-d arrays 1-d
    if kind == "python":  # a Python float back (encode: a numpy integer code)
        return flat, (lambda r: _py_scalar(np.asarray(r).reshape(())[()]))
    if kind == "numpy":
        return flat, (lambda r: np.asarray(r).reshape(())[()])
    return flat, (lambda r: r)


def _py_scalar(v):
    return float(v) if isinstance(v, np.floating) else v


# ---------------------------------------------------------------------------------------
# Codes (decode's input keeps its own rule: integers)
# ---------------------------------------------------------------------------------------

def as_codes(codes, what="codes") -> np.ndarray:
    """Integer array of bit codes (any integer dtype; masked arrays and bools refused).

    >>> from fpsim.rounding import as_codes
    >>> as_codes([1, 2]).dtype.kind, as_codes(7).shape
    ('i', ())
    """
    if isinstance(codes, np.ma.MaskedArray):
        raise TypeError(f"{what} is a masked array: fpsim would drop its mask; pass a plain "
                        "integer array")
    if isinstance(codes, (bool, np.bool_)):
        raise TypeError(f"{what} is a bool; codes are integers")
    try:
        c = np.asarray(codes)
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"{what}: cannot read as an integer array: {e}") from None
    if c.dtype.kind not in "ui":
        raise TypeError(f"{what} must be an integer array, got dtype {c.dtype}")
    return c


def check_code_range(c: np.ndarray, bits: int, name: str) -> None:
    """ValueError naming the first code outside ``0 .. 2**bits - 1`` as given (never wrapped
    or truncated first); ``name`` says whose codes they are (``"the 8-bit format e4m3"``).

    >>> import numpy as np
    >>> from fpsim.rounding import check_code_range
    >>> check_code_range(np.array([-1, 3], np.int8), 4, "4-bit codes")
    Traceback (most recent call last):
    ...
    ValueError: code -1 is outside 0..15 of 4-bit codes
    """
    if not c.size:
        return
    lo, hi = int(c.min()), int(c.max())  # Python ints: a uint64 code is never negative
    if lo >= 0 and hi < 2**bits:
        return
    flat = c.reshape(-1)
    bad = flat[(flat < 0) | (flat > 2**bits - 1)][0] if lo < 0 else flat[flat > 2**bits - 1][0]
    raise ValueError(f"code {int(bad)} is outside 0..{2**bits - 1} of {name}")


def uint_dtype(bits: int) -> np.dtype:
    """Smallest unsigned integer dtype of at least ``bits`` bits (codes of a format).

    >>> from fpsim.lowering import uint_dtype
    >>> uint_dtype(8), uint_dtype(19)
    (dtype('uint8'), dtype('uint32'))
    """
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        if bits <= 8 * np.dtype(dt).itemsize:
            return np.dtype(dt)
    raise ValueError(f"{bits}-bit codes do not fit in 64 bits")
