"""The input rule of accumulation: values converted to float64 exactly, or refused.

:func:`exact_float64` converts any accepted input exactly (or raises a clear error);
:func:`check_inputs` checks converted inputs against a model (its input formats, and the
26-bit limit of exact float64 products).
"""

from __future__ import annotations

import math

import ml_dtypes  # a dependency of fpsim (already loaded by numpy's extended types)
import numpy as np

from ..rounding import quantize

__all__ = ["check_inputs", "exact_float64"]


#: float64 holds every integer of magnitude below 2**53 (and larger ones with enough
#: trailing zero bits); the exactness check below is what decides, this is a fast path.
_EXACT_INT = 2**53

_INPUT_RULE = ("accepted: float16/bfloat16/float32/float64 arrays (any byte order), ml_dtypes' "
               "8/6/4-bit floats, integer arrays and Python ints whose values float64 holds "
               "exactly, longdouble arrays whose values float64 holds exactly")


def _is_ml_float(dt) -> bool:
    """An ml_dtypes float type (float8/6/4, e8m0, bfloat16): every value is exact in float32."""
    if not dt.type.__module__.startswith("ml_dtypes"):
        return False
    try:
        ml_dtypes.finfo(dt)
    except (ValueError, TypeError):
        return False  # ml_dtypes' int2/int4/uint4 (not floats)
    return True


def _from_ints(x, what):
    """float64 copy of an integer array, refusing any value float64 does not hold exactly."""
    f = x.astype(np.float64)
    if x.dtype.itemsize >= 8 and x.size:
        big = np.abs(f) >= _EXACT_INT  # 2**53 + 1 rounds to 2**53: check it too
        if big.any():
            # converting back checks the round trip; 2**63 / 2**64 (rounded up from the
            # largest int64/uint64 values) are outside the integer type, hence never exact
            top = 2.0 ** (8 * x.dtype.itemsize - (1 if x.dtype.kind == "i" else 0))
            fb = f[big]
            ok = (fb != top) & (fb >= -top)
            back = np.where(ok, fb, 0).astype(x.dtype)
            bad_in_big = ~ok | (back != x[big])
            if bad_in_big.any():
                v = int(x[big][bad_in_big][0])
                raise ValueError(f"{what} holds the integer {v}, which float64 cannot hold "
                                 f"exactly (nearest: {int(float(v))}); accumulation works on "
                                 "float64 values and refuses to round inputs silently. "
                                 "Round or scale the inputs first")
    return f


def _from_py_int(v, what):
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f) or int(f) != v:
        raise ValueError(f"{what} holds the integer {v}, which float64 cannot hold exactly; "
                         "accumulation refuses to round inputs silently")
    return f


def exact_float64(x, what="x"):
    """``x`` as a float64 array, converted *exactly* - or a clear error (never rounded).

    The input rule of :func:`dot`, :func:`matmul`, :func:`sum` and the analysis metrics
    (the same as :func:`fpsim.quantize`'s for integers): a value is accepted when float64
    holds it exactly and refused with a ValueError naming ``what`` otherwise; unsupported
    kinds (bool, complex, object, strings, masked arrays) raise TypeError. Shapes are kept.

    >>> import numpy as np, fpsim
    >>> fpsim.accum.exact_float64(np.array([2**53, -3], dtype=np.int64)).tolist()
    [9007199254740992.0, -3.0]
    >>> try:
    ...     fpsim.accum.exact_float64(np.array([2**53 + 1]), "A")
    ... except ValueError as e:
    ...     print(str(e)[:54])
    A holds the integer 9007199254740993, which float64 ca
    """
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{what}: bool is not a number to accumulate ({_INPUT_RULE})")
    if isinstance(x, complex) or isinstance(x, np.complexfloating):
        raise TypeError(f"{what}: complex input is not supported; accumulate the real and "
                        "imaginary parts separately")
    if isinstance(x, int):
        return np.asarray(_from_py_int(x, what))
    if isinstance(x, float):
        return np.asarray(x, dtype=np.float64)
    if isinstance(x, (list, tuple)):
        arr = np.asarray(x)
        if arr.dtype == object:  # Python ints beyond int64, or mixed objects
            flat = arr.reshape(-1)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
                raise TypeError(f"{what}: a sequence of {sorted({type(v).__name__ for v in flat})} "
                                f"is not supported ({_INPUT_RULE})")
            return np.array([_from_py_int(v, what) if isinstance(v, int) else v for v in flat],
                            dtype=np.float64).reshape(arr.shape)
        x = arr
    elif isinstance(x, np.generic):
        x = np.asarray(x)
    if not isinstance(x, np.ndarray):
        if type(x).__module__.startswith("torch"):
            raise TypeError(f"{what}: torch tensors go through fpsim.torch (the core takes numpy)")
        raise TypeError(f"{what}: expected a numpy float array, got {type(x).__name__} "
                        f"({_INPUT_RULE})")
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{what}: masked arrays are not accepted (the mask would be ignored); "
                        "pass x.filled(value) or x.compressed()")
    x = x.view(np.ndarray) if type(x) is not np.ndarray else x
    dt = x.dtype
    if dt.kind == "b":
        raise TypeError(f"{what}: bool arrays are not numbers to accumulate; convert with "
                        f".astype(np.float64) if that is meant ({_INPUT_RULE})")
    if dt.kind in "iu":
        return _from_ints(x, what)
    if dt.kind == "c":
        raise TypeError(f"{what}: complex dtype {dt} is not supported; accumulate the real "
                        "and imaginary parts separately")
    if dt.kind == "f" and dt.itemsize > 8:  # longdouble / float128: exact values only
        with np.errstate(over="ignore"):
            f = x.astype(np.float64)
        bad = (f.astype(dt) != x) & ~np.isnan(x)
        if bad.any():
            v = x[bad].flat[0]
            raise ValueError(f"{what} holds {v!r} ({dt}), which float64 cannot hold exactly; "
                             "accumulation works on float64 values and refuses to round "
                             "inputs silently. Convert explicitly (x.astype(np.float64)) if "
                             "that rounding is intended")
        return f
    if (dt.kind == "f" and dt.itemsize in (2, 4, 8)) or _is_ml_float(dt):
        return x.astype(np.float64)  # exact: every value of these types is a float64 value
    raise TypeError(f"{what}: dtype {dt} is not supported ({_INPUT_RULE})")


def check_inputs(model, arrays, multiplied=True):
    """Refuse NaN into NaN-less input formats, values outside the model's input format(s)
    and, for exact products, inputs of more than 26 significant bits.

    ``arrays`` is ``[(name, float64 array), ...]`` matching ``model.input_formats``; for
    terms that are summed, not multiplied (``multiplied=False``), only the input format
    ``model.in_fmt`` applies to the one array.

    >>> import numpy as np, fpsim
    >>> try:
    ...     check_inputs(fpsim.accum.Exact("fp32"), [("A", np.array([0.1])), ("B", np.ones(1))])
    ... except ValueError as e:
    ...     print(str(e)[:40])
    A has values with more than 26 significa
    """
    fmts = model.input_formats if multiplied else (model.in_fmt,)
    narrow = multiplied and model._multiplier()._narrow_inputs
    for (what, x), fin in zip(arrays, fmts):
        if x.size == 0:
            continue
        if fin is not None:
            nan = np.isnan(x)
            if nan.any() and not fin.has_nan:
                raise ValueError(f"{what} holds NaN but the model's input format {fin.name} has "
                                 "no NaN")
            q = quantize(np.where(nan, 0.0, x), fin, nan="zero" if not fin.has_nan else None)
            bad = (q != np.where(nan, 0.0, x)) & ~nan
            if bad.any():
                v = x[bad].flat[0]
                raise ValueError(f"{what} holds {v!r}, which is not a value of the model's input "
                                 f"format {fin.name}; round the inputs first with "
                                 f"fpsim.quantize(x, {fin.name!r})")
        if narrow:
            _check_narrow(what, x)


def _check_narrow(what, x):
    """Exact products in float64 need <= 26 significant bits per input. A value whose low
    27 fraction bits are zero has at most 26 (normal or subnormal): one cheap pass over the
    bits, in slices (no temporary the size of x), and the exact test only for the values it
    flags."""
    flat = x.reshape(-1)
    wide = []
    for s0 in range(0, flat.size, 1 << 16):
        part = flat[s0:s0 + (1 << 16)]
        low = (part.view(np.uint64) & np.uint64(2**27 - 1)) != 0
        if low.any():
            wide.append(part[low & np.isfinite(part)])
    if not wide:
        return
    finite = np.concatenate(wide)
    if finite.size:
        m, _ = np.frexp(finite)
        if np.any(m * 2.0**26 != np.round(m * 2.0**26)):
            raise ValueError(f"{what} has values with more than 26 significant bits: "
                             "products are formed exactly in float64, which needs "
                             "inputs of at most 26 bits (fp32 and narrower); round "
                             "the inputs first (fpsim.quantize)")
