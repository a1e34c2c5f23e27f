"""What the modules of :mod:`fpsim.accum` share: option checks, kernel parameters, errors.

Internal to the package (the names carry no underscore because the package's modules use
them; users need not).
"""

from __future__ import annotations

import math

import numpy as np

from .. import lowering as _L
from ..formats import FixedFormat, FloatFormat, Format, as_format
from ..kernels import _modes as C
from ..kernels._lazy import lazy_module
from ..rounding import NaNPolicy, Overflow, Rounding

K = lazy_module("accum")  # numba is imported on first use, not by `import fpsim`
G = lazy_module("gemm")  # register-blocked GEMM kernels (same bits, BLAS-like speed)
GF = lazy_module("gemm_fused")  # the packed tensor-core GEMM (FusedBlock and its chains)

FP32 = as_format("fp32")

__all__ = ["C", "FP32", "G", "GF", "K", "acc_format", "check_int", "dot_rows", "leaf_kind", "mode",
           "params", "raise_nan", "set_input_formats"]


def mode(rounding, stochastic=False) -> str:
    """The rounding mode's name; stochastic rounding only where ``stochastic`` allows it."""
    r = _L.enum_value(Rounding, rounding, "rounding")
    if r is Rounding.STOCHASTIC and not stochastic:
        raise ValueError("stochastic rounding inside accumulation models is supported by "
                         "Sequential (also as the inner/outer model of Blocked and Permuted); "
                         "here choose 'rne', 'rna', 'rtz', 'rup', 'rdn' or 'rto'")
    return r.value


def acc_format(fmt, what) -> Format:
    """``fmt`` as a Format that can hold an accumulator (float, integer or fixed-point)."""
    f = as_format(fmt)
    if not isinstance(f, (FloatFormat, FixedFormat)):
        raise ValueError(f"{what}={f.name}: accumulators must be float, integer or fixed-point "
                         "formats (codebook/dINT formats are storage formats)")
    return f


def check_int(obj, names):
    """Every field in ``names`` of ``obj`` is an int (a bool is not), or a TypeError."""
    for nm in names:
        v = getattr(obj, nm)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{type(obj).__name__}.{nm} must be an int, got {v!r}")


def params(fmt: Format, rounding: str, overflow=None):
    """Kernel RoundParams (float64 domain) of an accumulator ``fmt``."""
    rmode = Rounding(rounding)
    ovf = _L.enum_value(Overflow, overflow if overflow is not None else fmt.default_overflow,
                        "overflow")
    if ovf is Overflow.WRAP and not isinstance(fmt, FixedFormat):
        raise ValueError("overflow='wrap' is only for integer and fixed-point accumulators")
    if ovf is Overflow.INF and not fmt.has_inf:
        raise ValueError(f"overflow='inf' needs a format with infinities; {fmt.name} has none")
    if ovf is Overflow.NAN and not fmt.has_nan:
        raise ValueError(f"overflow='nan' needs a format with NaN; {fmt.name} has none")
    nanp = NaNPolicy.PROPAGATE if fmt.has_nan else NaNPolicy.RAISE
    subn = bool(getattr(fmt, "subnormals", True))
    p = _L.round_params(fmt, _L.F64, rmode, ovf, nanp, subn, False, 0)
    if p is None:
        raise ValueError(f"{fmt.name} cannot be used as an accumulator (its range does not fit "
                         "float64)")
    return p


def leaf_kind(fmt: Format, rounding: str, kind: int) -> int:
    """Check the accumulator is supported; fp64 round-to-nearest-even runs natively."""
    if isinstance(fmt, FloatFormat) and fmt.man_bits > 50:
        is_f64 = (fmt.exp_bits == 11 and fmt.man_bits == 52 and fmt.encoding.ieee_like
                  and fmt.subnormals)
        if kind == C.SEQ and is_f64 and rounding == "rne":
            return C.NATIVE
        if kind == C.EXACT and is_f64 and rounding == "rne":
            return C.EXACT64
        raise ValueError(f"accumulator {fmt.name} has {fmt.man_bits + 1} significant bits: "
                         "supported are formats of at most 51 bits in every mode, and fp64 "
                         "with Sequential(rounding='rne') or Exact(rounding='rne')")
    if isinstance(fmt, FixedFormat) and fmt.bits > 52:
        raise ValueError(f"integer/fixed accumulator {fmt.name}: at most 52 bits are supported "
                         "(values are carried in float64)")
    return kind


def raise_nan(err, fmt):
    """A kernel's NaN count ``err`` as a ValueError (the accumulator format has no NaN)."""
    if err:
        raise ValueError(f"the accumulator format {fmt.name} has no NaN but the computation "
                         f"produced {err} NaN value(s) (NaN inputs or inf - inf)")


def set_input_formats(model, who, examples):
    """Resolve ``in_fmt``/``in_fmt_b`` of an engine model: float formats of at most 10
    mantissa and 8 exponent bits; equal A and B formats collapse to the plain form."""
    for nm in ("in_fmt", "in_fmt_b"):
        if getattr(model, nm) is not None:
            f = as_format(getattr(model, nm))
            if not isinstance(f, FloatFormat) or f.man_bits > 10 or f.exp_bits > 8:
                raise ValueError(f"{who} input {f.name}: allowed float formats with at most "
                                 f"10 mantissa and 8 exponent bits (fp16, bf16, tf32, {examples})")
            object.__setattr__(model, nm, f)
    if model.in_fmt_b is not None and model.in_fmt_b == model.in_fmt:
        object.__setattr__(model, "in_fmt_b", None)  # one format: the plain form


def dot_rows(A, B, shp):
    """A and B (..., K) broadcast to the batch shape ``shp`` as contiguous (R, K) rows."""
    K_ = A.shape[-1]
    R = math.prod(shp)
    A2 = np.ascontiguousarray(np.broadcast_to(A, shp + (K_,))).reshape(R, K_)
    B2 = np.ascontiguousarray(np.broadcast_to(B, shp + (K_,))).reshape(R, K_)
    return A2, B2
