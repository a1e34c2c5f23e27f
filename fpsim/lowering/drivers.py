"""Array drivers of the rounding kernels: the grid path (float, integer, fixed point) and the
table path (codebooks, dINT) that element formats' ``_quantize``/``_encode`` call.

>>> import numpy as np
>>> from fpsim import lowering, parse
>>> f = parse("e4m3")
>>> bits, dt = lowering.round_grid(np.array([0.3, 500.0]), f, lowering.RoundingSpec.resolve(f), None)
>>> bits.view(dt.dtype).tolist()
[0.3125, 448.0]
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..kernels._lazy import kernel
from ..options import Rounding
from .params import (DTYPES, F64, MODE_CODE, NAN_CODE, PARALLEL_THRESHOLD, cast_back,
                     nan_input_error, round_params, seed)

__all__ = ["round_grid", "round_table", "nonpositive_to_nan", "TABLE_CHUNK"]

# Each name is called exactly like the kernel module's object it stands for (loaded on use).
_quantize_parallel = kernel("float_round", "quantize_parallel")
_quantize_serial = kernel("float_round", "quantize_serial")
_table_parallel = kernel("table_round", "table_parallel")
_table_serial = kernel("table_round", "table_serial")
_fast_params = kernel("fast_round", "fast_params")
_rne32_params = kernel("fast_round", "rne32_params")
_fast_parallel = kernel("fast_round", "fast_parallel")
_fast_serial = kernel("fast_round", "fast_serial")
_rne32_parallel = kernel("fast_round", "rne32_parallel")
_rne32_serial = kernel("fast_round", "rne32_serial")

_FAST_MODES = frozenset((Rounding.RNE, Rounding.RNA, Rounding.RTZ, Rounding.RUP, Rounding.RDN))


def round_grid(arr, fmt, spec, sd):
    """Round a contiguous carrier array into the grid format ``fmt``; returns ``(bits, dt)``:
    the rounded bit patterns (``arr``'s shape) and the carrier :class:`DType` they use
    (``arr``'s, or float64 when the format's limits need it). ``sd``: the seed argument."""
    dt = DTYPES[arr.dtype]
    p = round_params(fmt, dt, spec)
    if p is None:  # the format's limits need float64
        dt = F64
        arr = arr.astype(np.float64)
        p = round_params(fmt, dt, spec)
    xb = arr.reshape(-1).view(dt.uint)
    ob = np.empty_like(xb)
    big = xb.size >= PARALLEL_THRESHOLD
    # Fast paths (kernels/fast_round.py): same results as the general kernel for the
    # common cases, branch-free so they vectorise; None when a case is not covered.
    fp = _fast_params(p) if spec.mode in _FAST_MODES else None
    if fp is None:
        kern = _quantize_parallel if big else _quantize_serial
        err = kern(xb, ob, p, seed(sd, spec.mode))
    elif spec.mode is Rounding.RNE and dt.M == 23 and _rne32_params(p) is not None:
        kern = _rne32_parallel if big else _rne32_serial
        err = kern(xb.view(np.float32), ob.view(np.float32), _rne32_params(p))
    else:
        kern = _fast_parallel if big else _fast_serial
        err = kern(xb, ob, fp)
    if err:
        raise ValueError(nan_input_error(fmt.name, err))
    return ob.reshape(arr.shape), dt


def nonpositive_to_nan(x, bits, dt):
    """Set ``bits`` (rounded from ``x``) to NaN where ``x <= 0``: for formats of positive
    values only (E8M0), which have no value for zero and negative inputs (-inf and tiny
    negatives included) under every overflow policy, as ml_dtypes' float8_e8m0fnu (the
    kernels round magnitudes: without this a tiny negative would come back as +2**-127,
    and -inf under 'saturate' as 0)."""
    bad = x.reshape(-1) <= 0  # False for NaN inputs, which the NaN policy has handled
    if bad.any():
        bits.reshape(-1)[bad] = np.array(np.nan, dtype=dt.dtype).view(dt.uint)
    return bits


@lru_cache(maxsize=128)
def _table_data(fmt):
    v = np.ascontiguousarray(fmt.sorted_values, dtype=np.float64)
    a, b = v[:-1], v[1:]
    # Near the float64 maximum a + b overflows: there, halve first (exact for such large
    # values) and TwoSum the halves; elsewhere TwoSum a + b and halve (exact away from
    # underflow). Either way mid_hi + mid_lo == (a + b) / 2 exactly.
    big = np.maximum(np.abs(a), np.abs(b)) >= 2.0**1000
    ah, bh = np.where(big, a / 2, a), np.where(big, b / 2, b)
    s = ah + bh
    bb = s - ah
    err = (ah - (s - bb)) + (bh - bb)  # TwoSum: s + err == ah + bh exactly
    mid_hi, mid_lo = np.where(big, s, s / 2), np.where(big, err, err / 2)
    odd = (np.asarray(fmt.sorted_codes) & 1).astype(np.int64)
    zero_idx = int(np.argmin(np.abs(v)))
    return v, mid_hi, mid_lo, odd, zero_idx


#: Table rounding works on chunks of this many elements, so that its temporaries (int64
#: indices, float64 values, the cast-back check) stay small: the peak memory is the output
#: plus a few MiB, whatever the input size (benchmarks/bench_memory.py).
TABLE_CHUNK = 1 << 16

_GOLDEN = 0x9E3779B97F4A7C15  # kernels/_rng.py: element i of stream s draws from s + (i+1)*golden


def round_table(arr, fmt, spec, sd, pick, out_dtype):
    """``pick[index]`` of every element of ``arr`` rounded to the table of ``fmt``, as an
    array of ``arr``'s shape and ``out_dtype``, computed chunk by chunk. ``pick`` maps the
    sorted-table index to the result (values or codes); a value ``out_dtype`` cannot hold
    raises (see cast_back). Stochastic rounding draws the same bits as one whole call: chunk
    ``[b, e)`` uses the stream shifted by ``b`` elements."""
    v, mid_hi, mid_lo, odd, zero_idx = _table_data(fmt)
    x = arr.reshape(-1)
    out = np.empty(x.size, dtype=out_dtype)
    s = int(seed(sd, spec.mode))
    idx = np.empty(min(x.size, TABLE_CHUNK), dtype=np.int64)
    for b in range(0, x.size, TABLE_CHUNK):
        xc = x[b:b + TABLE_CHUNK]
        if xc.dtype not in (np.float32, np.float64):
            xc = xc.astype(np.float32)  # float16/bfloat16: exact
        ic = idx[:xc.size]
        kern = _table_parallel if xc.size >= PARALLEL_THRESHOLD else _table_serial
        err = kern(xc, ic, v, mid_hi, mid_lo, odd, MODE_CODE[spec.mode], NAN_CODE[spec.nan],
                   zero_idx, np.uint64((s + b * _GOLDEN) % 2**64))
        if err:
            raise ValueError(nan_input_error(fmt.name, int(np.count_nonzero(np.isnan(x)))))
        out[b:b + xc.size] = cast_back(pick[ic], np.dtype(out_dtype), fmt)
    return out.reshape(arr.shape)
