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
``Blocked``       split-K: chunks of k by ``inner`` (from 0), partials + c by ``outer``
``Promoted``      FP8 recipe: ``every`` products in ``inner``, then into an fp32 ``outer``
``Permuted``      an explicit order, an explicit tree, or a seeded random order
``NumpyOrder``    the order ``np.sum`` uses for float32 on this machine (bit for bit)
``Integer``       integer accumulator with wrap-around or saturation
================= =======================================================================

Products (the ``multiply=`` option): ``"exact"`` (default where it makes sense), a format
name or :class:`RoundedProduct` (rounded once into that format), or :class:`LMulProduct`.
Exact products need inputs of at most 26 significant bits (exact in float64).

Inputs are converted to float64 *exactly* or refused: float16/bfloat16/float32/float64 and
ml_dtypes' 8/6/4-bit float arrays are accepted; integer and longdouble inputs are accepted
when float64 holds every value exactly (else ValueError); bool, complex, object and masked
arrays raise TypeError.

Accumulators: any float format of at most 51 significant bits in every rounding mode
(correctly rounded via two_sum + round-to-odd), fp64 with round-to-nearest-even, and
integer/fixed-point formats (with ``overflow="wrap"`` or ``"saturate"``).

>>> import numpy as np, fpsim
>>> x = np.array([1.0, 2.0**-24, 2.0**-24])
>>> float(fpsim.sum(x, model=fpsim.accum.Sequential("fp32")))
1.0
>>> float(fpsim.sum(x, model=fpsim.accum.Exact("fp32")))
1.0000001192092896
"""

from __future__ import annotations

import builtins
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Union

import numpy as np

from . import lowering as _L
from . import rounding as _R
from .formats import FixedFormat, FloatFormat, Format, as_format
from .kernels import _modes as _C
from .kernels._lazy import lazy_module

_K = lazy_module('accum')  # numba is imported on first use, not by `import fpsim`
_G = lazy_module('gemm')  # register-blocked GEMM kernels (same bits, BLAS-like speed)

__all__ = [
    "BlockScaledFused",
    "Blocked",
    "Exact",
    "ExactProduct",
    "FusedBlock",
    "Integer",
    "Kahan",
    "LMulProduct",
    "MFMA",
    "Model",
    "NumpyOrder",
    "Pairwise",
    "Permuted",
    "Promoted",
    "RoundedProduct",
    "Sequential",
    "dot",
    "exact_float64",
    "matmul",
    "plot_error_growth",
    "sum",
]

_FP32 = as_format("fp32")

#: Products are materialised in chunks of at most this many terms (generic path).
_CHUNK_TERMS = 1 << 22


# ---------------------------------------------------------------------------------------
# Multipliers
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExactProduct:
    """Products are exact (needs inputs of at most 26 significant bits).

    >>> import fpsim
    >>> fpsim.accum.ExactProduct()
    ExactProduct()
    """


@dataclass(frozen=True)
class RoundedProduct:
    """Every product is rounded once into ``fmt`` with ``rounding``.

    >>> import fpsim
    >>> fpsim.accum.RoundedProduct("bf16").fmt.name
    'bf16'
    """

    fmt: Format
    rounding: str = "rne"

    def __post_init__(self):
        object.__setattr__(self, "fmt", _acc_format(self.fmt, "RoundedProduct.fmt"))
        object.__setattr__(self, "rounding", _mode(self.rounding))


@dataclass(frozen=True)
class LMulProduct:
    """L-Mul products (Luo & Sun 2024) of ``man_bits``-bit operands (see :func:`fpsim.lmul`).

    The L-Mul value is kept exactly (float64). Needs :mod:`fpsim.arith`.

    >>> import fpsim
    >>> fpsim.accum.LMulProduct(3)
    LMulProduct(man_bits=3, semantics='int', fmt=None)
    """

    man_bits: int
    semantics: str = "int"
    fmt: Format | None = None

    def __post_init__(self):
        if self.semantics not in ("int", "formula"):
            raise ValueError(f"semantics={self.semantics!r}: allowed 'int' or 'formula'")
        if self.fmt is not None:
            object.__setattr__(self, "fmt", as_format(self.fmt))


Multiplier = Union[ExactProduct, RoundedProduct, LMulProduct]


def _as_multiplier(m, default=None):
    if m is None:
        return default if default is not None else ExactProduct()
    if isinstance(m, (ExactProduct, RoundedProduct, LMulProduct)):
        return m
    if isinstance(m, str) and m.lower() == "exact":
        return ExactProduct()
    if isinstance(m, str) and m.lower().startswith("lmul"):
        raise ValueError("use multiply=fpsim.accum.LMulProduct(man_bits) for L-Mul products")
    if isinstance(m, (str, Format)):
        return RoundedProduct(m)
    raise TypeError(f"multiply={m!r}: allowed 'exact', a format (name) or an "
                    "ExactProduct/RoundedProduct/LMulProduct")


# ---------------------------------------------------------------------------------------
# Option checks
# ---------------------------------------------------------------------------------------

def _mode(rounding, stochastic=False) -> str:
    r = _L.enum_value(_R.Rounding, rounding, "rounding")
    if r is _R.Rounding.STOCHASTIC and not stochastic:
        raise ValueError("stochastic rounding inside accumulation models is supported by "
                         "Sequential (also as the inner/outer model of Blocked and Permuted); "
                         "here choose 'rne', 'rna', 'rtz', 'rup', 'rdn' or 'rto'")
    return r.value


def _acc_format(fmt, what) -> Format:
    f = as_format(fmt)
    if not isinstance(f, (FloatFormat, FixedFormat)):
        raise ValueError(f"{what}={f.name}: accumulators must be float, integer or fixed-point "
                         "formats (codebook/dINT formats are storage formats)")
    return f


def _precision(f: Format) -> int:
    return f.man_bits + 1 if isinstance(f, FloatFormat) else f.bits


def _params(fmt: Format, rounding: str, overflow=None):
    """Kernel RoundParams (float64 domain)."""
    mode = _R.Rounding(rounding)
    ovf = _L.enum_value(_R.Overflow, overflow if overflow is not None else fmt.default_overflow,
                   "overflow")
    if ovf is _R.Overflow.WRAP and not isinstance(fmt, FixedFormat):
        raise ValueError("overflow='wrap' is only for integer and fixed-point accumulators")
    if ovf is _R.Overflow.INF and not fmt.has_inf:
        raise ValueError(f"overflow='inf' needs a format with infinities; {fmt.name} has none")
    if ovf is _R.Overflow.NAN and not fmt.has_nan:
        raise ValueError(f"overflow='nan' needs a format with NaN; {fmt.name} has none")
    nanp = _R.NaNPolicy.PROPAGATE if fmt.has_nan else _R.NaNPolicy.RAISE
    subn = bool(getattr(fmt, "subnormals", True))
    p = _L.round_params(fmt, _L.F64, mode, ovf, nanp, subn, False, 0)
    if p is None:
        raise ValueError(f"{fmt.name} cannot be used as an accumulator (its range does not fit "
                         "float64)")
    return p


def _leaf_kind(fmt: Format, rounding: str, kind: int) -> int:
    """Check the accumulator is supported; fp64 round-to-nearest-even runs natively."""
    if isinstance(fmt, FloatFormat) and fmt.man_bits > 50:
        is_f64 = (fmt.exp_bits == 11 and fmt.man_bits == 52 and fmt.family == "ieee"
                  and fmt.subnormals)
        if kind == _C.SEQ and is_f64 and rounding == "rne":
            return _C.NATIVE
        if kind == _C.EXACT and is_f64 and rounding == "rne":
            return _C.EXACT64
        raise ValueError(f"accumulator {fmt.name} has {fmt.man_bits + 1} significant bits: "
                         "supported are formats of at most 51 bits in every mode, and fp64 "
                         "with Sequential(rounding='rne') or Exact(rounding='rne')")
    if isinstance(fmt, FixedFormat) and fmt.bits > 52:
        raise ValueError(f"integer/fixed accumulator {fmt.name}: at most 52 bits are supported "
                         "(values are carried in float64)")
    return kind


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------

class Model:
    """Base class of accumulation models (for ``isinstance`` checks).

    Every model has ``out_fmt`` (the format of the result) and ``in_fmt`` (the input format
    it was built for, or None when any input of at most 26 significant bits is accepted).
    """

    in_fmt: Format | None = None

    @property
    def input_formats(self):
        """(A's format, B's format): both ``in_fmt`` except for mixed-operand models."""
        return self.in_fmt, self.in_fmt

    @property
    def out_fmt(self) -> Format:  # pragma: no cover - overridden
        raise NotImplementedError

    def _multiplier(self) -> Multiplier:  # pragma: no cover - overridden
        raise NotImplementedError


def _fmt_field(obj, name="fmt"):
    object.__setattr__(obj, name, _acc_format(getattr(obj, name), f"{type(obj).__name__}.{name}"))


@dataclass(frozen=True)
class Sequential(Model):
    """Recursive summation ``s = c; for k: s = round(s + p_k)`` in ``fmt``.

    ``fma=False`` (default): every product is first rounded into ``fmt`` (a float32 loop
    ``s += a * b``); ``fma=True``: the exact product is added with one rounding.
    ``multiply`` overrides the product (``"exact"``, a format, or an L-Mul multiplier).

    ``rounding="stochastic"`` rounds every *addition* stochastically (up with probability
    equal to the discarded fraction of a quantum), from the stream ``seed`` (an int; ``None``
    draws a fresh one per call). Addition ``k`` of output row ``r`` always uses the same
    random bits, whatever the thread count. Products (``fma=False``) are rounded to nearest.

    >>> import numpy as np, fpsim
    >>> m = fpsim.accum.Sequential("bf16")
    >>> float(fpsim.sum(np.array([1.0] + [2.0**-9] * 4), model=m))
    1.0
    >>> sr = fpsim.accum.Sequential("bf16", rounding="stochastic", seed=0)
    >>> x = np.array([1.0] + [2.0**-9] * 1000)
    >>> abs(float(fpsim.sum(x, model=sr)) - (1 + 1000 * 2.0**-9)) < 0.1   # no stagnation
    True
    """

    fmt: Format = "fp32"
    rounding: str = "rne"
    fma: bool = False
    multiply: Multiplier | None = None
    overflow: str | None = None
    seed: int | None = None

    def __post_init__(self):
        _fmt_field(self)
        object.__setattr__(self, "rounding", _mode(self.rounding, stochastic=True))
        if self.seed is not None and (isinstance(self.seed, bool)
                                      or not isinstance(self.seed, (int, np.integer))):
            raise TypeError(f"Sequential.seed must be an int or None, got {self.seed!r}")
        if self.seed is not None and self.rounding != "stochastic":
            raise ValueError("Sequential.seed only applies to rounding='stochastic'")
        if not isinstance(self.fma, bool):
            raise TypeError(f"fma must be True or False, got {self.fma!r}")
        if self.multiply is not None:
            object.__setattr__(self, "multiply", _as_multiplier(self.multiply))
        _params(self.fmt, self.rounding, self.overflow)
        _leaf_kind(self.fmt, self.rounding, _C.SEQ)

    @property
    def out_fmt(self):
        return self.fmt

    def _multiplier(self):
        if self.multiply is not None:
            return self.multiply
        if self.fma or isinstance(self.fmt, FixedFormat):
            return ExactProduct()
        return RoundedProduct(self.fmt, "rne" if self.rounding == "stochastic" else self.rounding)


@dataclass(frozen=True)
class _Simple(Model):
    fmt: Format = "fp32"
    rounding: str = "rne"
    multiply: Multiplier | None = None

    _KIND = _C.SEQ

    def __post_init__(self):
        _fmt_field(self)
        object.__setattr__(self, "rounding", _mode(self.rounding))
        object.__setattr__(self, "multiply", _as_multiplier(self.multiply))
        _params(self.fmt, self.rounding)
        _leaf_kind(self.fmt, self.rounding, self._KIND)

    @property
    def out_fmt(self):
        return self.fmt

    def _multiplier(self):
        return self.multiply


@dataclass(frozen=True)
class Pairwise(_Simple):
    """Pairwise (recursive halves) summation; every partial sum rounded into ``fmt``.

    The tree splits ``[lo, hi)`` at ``lo + (hi - lo) // 2``; ``d = round(c + tree)``.

    >>> import numpy as np, fpsim
    >>> x = np.array([1.0, 0.0, 2.0**-24, 2.0**-24])
    >>> float(fpsim.sum(x, model=fpsim.accum.Pairwise("fp32")))
    1.0000001192092896
    """

    _KIND = _C.PAIR


@dataclass(frozen=True)
class Kahan(_Simple):
    """Kahan compensated summation with every operation rounded into ``fmt``.

    >>> import numpy as np, fpsim
    >>> x = np.array([1.0] + [2.0**-24] * 4)
    >>> float(fpsim.sum(x, model=fpsim.accum.Kahan("fp32")))
    1.000000238418579
    """

    _KIND = _C.KAHAN


@dataclass(frozen=True)
class Exact(_Simple):
    """Exact (Kulisch) accumulation of c and every product, rounded once into ``fmt``.

    >>> import numpy as np, fpsim
    >>> x = np.array([1.0, 2.0**-30, -1.0])
    >>> float(fpsim.sum(x, model=fpsim.accum.Exact("bf16")))
    9.313225746154785e-10

    ``Exact("fp64")`` (round-to-nearest-even only) is the exact reference: the exact sum
    rounded once to float64, where plain float64 summation loses the small terms:

    >>> y = np.array([1.0, 2.0**-60, 2.0**-60, -1.0])
    >>> float(fpsim.sum(y, model=fpsim.accum.Exact("fp64"))), float(np.sum(y))
    (1.734723475976807e-18, 0.0)
    """

    _KIND = _C.EXACT


@dataclass(frozen=True)
class NumpyOrder(Model):
    """The order of ``np.sum``/``np.add.reduce`` on float32 data, reproduced bit for bit.

    What numpy does (``numpy/_core/src/umath/loops_utils.h.src``, checked on this machine
    for many lengths and axes): reducing along the *last, contiguous* axis, the output starts
    at 0 and receives ``pairwise_sum`` of the whole row: blocks of at most 128 elements are
    summed with 8 running sums (``r[j] += x[i + j]``), combined as
    ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))`` and the tail added one by one
    (fewer than 8 elements: a plain loop); longer rows split at
    ``n2 = n // 2 - (n // 2) % 8`` recursively. Reducing along any other axis of a
    C-contiguous array is a plain sequential loop (numpy adds whole rows elementwise).
    Every addition is rounded into ``fmt`` (float32: RNE). :func:`fpsim.sum` picks the right
    order from ``axis``; in :func:`fpsim.dot`/:func:`fpsim.matmul` the products (rounded
    into ``fmt`` by default, like ``a * b`` in float32) are summed in the pairwise order.

    ``np.dot``/``np.matmul`` of float32 call BLAS (here OpenBLAS, SIMD kernels with
    several partial sums whose layout depends on the CPU and the blocking): that order is
    not reproduced.

    >>> import numpy as np, fpsim
    >>> x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    >>> bool(fpsim.sum(x, model=fpsim.accum.NumpyOrder()) == np.sum(x))
    True
    """

    fmt: Format = "fp32"
    rounding: str = "rne"
    multiply: Multiplier | None = None

    def __post_init__(self):
        _fmt_field(self)
        object.__setattr__(self, "rounding", _mode(self.rounding))
        if self.multiply is not None:
            object.__setattr__(self, "multiply", _as_multiplier(self.multiply))
        _params(self.fmt, self.rounding)
        _leaf_kind(self.fmt, self.rounding, _C.NUMPY)

    @property
    def out_fmt(self):
        return self.fmt

    def _multiplier(self):
        return self.multiply if self.multiply is not None else RoundedProduct(self.fmt, self.rounding)


@dataclass(frozen=True)
class Integer(Model):
    """Integer accumulator (``fmt`` an integer or fixed-point format, at most 52 bits).

    ``overflow="wrap"`` (two's complement, as int32 hardware) or ``"saturate"`` (clamped
    after every addition). Products are exact.

    >>> import numpy as np, fpsim
    >>> x = np.array([100.0, 100.0, -50.0])
    >>> float(fpsim.sum(x, model=fpsim.accum.Integer("int8")))
    -106.0
    >>> float(fpsim.sum(x, model=fpsim.accum.Integer("int8", overflow="saturate")))
    77.0
    """

    fmt: Format = "int32"
    overflow: str = "wrap"

    def __post_init__(self):
        f = as_format(self.fmt)
        if not isinstance(f, FixedFormat):
            raise ValueError(f"Integer needs an integer or fixed-point format, got {f.name}")
        object.__setattr__(self, "fmt", f)
        if self.overflow not in ("wrap", "saturate"):
            raise ValueError(f"overflow={self.overflow!r}: allowed 'wrap' or 'saturate'")
        _params(f, "rne", self.overflow)
        _leaf_kind(f, "rne", _C.SEQ)

    @property
    def out_fmt(self):
        return self.fmt

    def _multiplier(self):
        return ExactProduct()


def _set_input_formats(model, who, examples):
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


@dataclass(frozen=True)
class FusedBlock(Model):
    """Tensor-core multi-term fused adder (Fasi et al. 2021; Khattak & Mikaitis 2025).

    For each block of ``n`` products plus the running accumulator c: products are exact;
    a product's exponent is ``ea + eb`` (input exponents clamped at ``in_fmt``'s emin) with
    significand ``sa * sb`` in [0, 4); one extra alignment bit is granted when the largest
    product significand (among the products of largest exponent) is >= 2 and that exponent
    is not below c's; products whose significand is >= 2 are normalised; every term (c
    included) is truncated toward zero at ``2**(E - 23 - neab')``, E the largest exponent
    (no sticky bit); the integers are summed exactly, normalised once and rounded into
    ``out_fmt`` with ``rounding`` (``"rtz"``: truncation, where an overflow gives inf as on
    the GPU); the blocks are chained (c <- d). With ``neab < 0`` (FP8 on Ada) the result
    keeps only ``man_bits + neab`` mantissa bits when ``rounding="rtz"``. c is a value of
    the output format: a subnormal c counts with that format's smallest normal exponent. A
    block whose c or products hold inf or NaN gives their IEEE sum (so an accumulator that
    overflowed to inf meets the next block's infinite products); a nonzero sum that rounds
    to zero gives +0. These details follow MMA-Sim's bit-accurate models (checked against
    them on random inputs, ``tests/test_mmasim.py``).

    >>> import numpy as np, fpsim
    >>> m = fpsim.accum.FusedBlock(4, 0, in_fmt="fp16")      # V100-like
    >>> # no guard digits: 1 + 2**-24 + 2**-24 is truncated at 2**-23 per term
    >>> a = np.array([1.0, 2.0**-12, 2.0**-12, 0.0]); b = np.array([1.0, 2.0**-12, 2.0**-12, 0.0])
    >>> float(fpsim.dot(a, b, model=m))
    1.0
    """

    n: int = 8
    neab: int = 1
    out_fmt_: Format = "fp32"
    rounding: str = "rtz"
    in_fmt: Format | None = None
    name: str = ""
    in_fmt_b: Format | None = None

    def __post_init__(self):
        for nm in ("n", "neab"):
            v = getattr(self, nm)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"FusedBlock.{nm} must be an int, got {v!r}")
        if self.n < 1:
            raise ValueError(f"FusedBlock.n={self.n}: the block size must be >= 1")
        if not -20 <= self.neab <= 8:
            raise ValueError(f"FusedBlock.neab={self.neab}: allowed -20..8 extra alignment bits")
        f = as_format(self.out_fmt_)
        if not (isinstance(f, FloatFormat) and f.family == "ieee" and f.man_bits <= 23
                and f.exp_bits <= 8):
            raise ValueError(f"FusedBlock output {f.name}: allowed IEEE-style float formats with "
                             "at most fp32's range and precision (fp32, fp16, bf16, ...)")
        object.__setattr__(self, "out_fmt_", f)
        object.__setattr__(self, "rounding", _mode(self.rounding))
        if isinstance(self.in_fmt, (tuple, list)):  # (A's format, B's format)
            if len(self.in_fmt) != 2 or self.in_fmt_b is not None:
                raise ValueError("FusedBlock in_fmt: one format, or a pair (A's format, B's "
                                 f"format), got {self.in_fmt!r}")
            object.__setattr__(self, "in_fmt_b", self.in_fmt[1])
            object.__setattr__(self, "in_fmt", self.in_fmt[0])
        if self.in_fmt_b is not None and self.in_fmt is None:
            raise ValueError("FusedBlock: in_fmt_b needs in_fmt (A's format) too")
        _set_input_formats(self, "FusedBlock", "e4m3, e5m2, e2m1, ...")
        if 23 + self.neab + (self.n.bit_length() + 3) > 60:
            raise ValueError("FusedBlock: n too large for the 64-bit aligned sum")

    @property
    def out_fmt(self):
        return self.out_fmt_

    def _multiplier(self):
        return ExactProduct()

    def _kernel_args(self):
        f = self.out_fmt_
        m_eff = f.man_bits + min(self.neab, 0) if self.rounding == "rtz" else f.man_bits
        m_eff = max(m_eff, 0)
        fe = FloatFormat(f.exp_bits, m_eff, subnormals=f.subnormals)
        p = _params(fe, self.rounding, "inf")
        emin_a, emin_b = (f.emin if f is not None else -126 for f in self.input_formats)
        ovf_lim = 2.0 ** (f.emax + 1) if self.rounding == "rtz" else math.inf
        return int(self.n), int(self.neab), int(emin_a), int(emin_b), p, float(ovf_lim)

    @property
    def input_formats(self):
        """(A's format, B's format); both ``in_fmt`` unless ``in_fmt_b`` is set."""
        return self.in_fmt, (self.in_fmt_b if self.in_fmt_b is not None else self.in_fmt)

    def _rtz_args(self):
        """(mask of dropped float64 fraction bits, smallest normal) for truncating output."""
        if self.rounding != "rtz":
            return 0, 0.0
        f = self.out_fmt_
        m_eff = max(f.man_bits + min(self.neab, 0), 0)
        return (1 << (52 - m_eff)) - 1, float(f.min_normal)

    def __repr__(self):
        if self.name:
            return f"FusedBlock<{self.name}>(n={self.n}, neab={self.neab}, out={self.out_fmt_.name}, rounding={self.rounding!r})"
        fi = None if self.in_fmt is None else self.in_fmt.name
        if self.in_fmt_b is not None:
            fi = (fi, self.in_fmt_b.name)
        return (f"FusedBlock(n={self.n}, neab={self.neab}, out_fmt={self.out_fmt_.name!r}, "
                f"rounding={self.rounding!r}, in_fmt={fi!r})")


def _fusedblock_init(self, n=8, neab=1, out_fmt="fp32", rounding="rtz", in_fmt=None, name="",
                     in_fmt_b=None):
    object.__setattr__(self, "in_fmt_b", in_fmt_b)
    object.__setattr__(self, "n", n)
    object.__setattr__(self, "neab", neab)
    object.__setattr__(self, "out_fmt_", out_fmt)
    object.__setattr__(self, "rounding", rounding)
    object.__setattr__(self, "in_fmt", in_fmt)
    object.__setattr__(self, "name", name)
    self.__post_init__()


# public keyword is ``out_fmt`` (the field is ``out_fmt_`` because ``out_fmt`` is the
# property every model shares)
FusedBlock.__init__ = _fusedblock_init


class _Fp32Engine(Model):
    """What the instruction-level engines share: fp32 output, exact products, (A, B) formats."""

    @property
    def out_fmt(self):
        return _FP32

    @property
    def input_formats(self):
        return self.in_fmt, (self.in_fmt_b if self.in_fmt_b is not None else self.in_fmt)

    def _multiplier(self):
        return ExactProduct()


@dataclass(frozen=True)
class BlockScaledFused(_Fp32Engine):
    """Block-scaled tensor-core dot-add (Blackwell ``kind::mxf8f6f4``, ``kind::mxf4``,
    ``kind::mxf4nvf4``; the model of MMA-Sim, Xie et al. 2025, checked bit for bit in
    ``tests/test_mmasim.py``).

    The operands come with one scale per ``block`` consecutive elements along K
    (``a_scale``/``b_scale`` of :func:`dot` and :func:`matmul`), values of ``scale_fmt``
    (``e8m0``: UE8M0 powers of two, NaN for code 0xFF; ``ue4m3``). Each instruction takes
    ``L`` products and the accumulator c:

    * ``group == 1`` (kind::mxf8f6f4): each product is scaled by its two block scales and
      joins the fused sum with exponent ``ea + eb + log2(sa) + log2(sb)`` (operand exponents
      clamped at their formats' smallest normal exponent);
    * ``group == 16`` (kind::mxf4, mxf4nvf4): each group of 16 products is summed exactly,
      the group sum scaled, and aligned at the exponent of its scales' product
      (``floor(log2 sa) + floor(log2 sb)``), whatever the magnitude of the sum.

    Zero terms (a zero product, an all-zero group, a zero scale, a zero c) count with
    exponent ``e_zero``; every term is truncated toward zero at ``2**(E - F)``, E the
    largest exponent; the sum is rounded once toward zero into fp32 (an overflow gives
    inf); instructions chain through c. An instruction holding inf or NaN (a NaN scale
    included) gives their IEEE sum. :func:`fpsim.hardware.mma` builds these models from
    PTX names.

    >>> import numpy as np, fpsim
    >>> m = fpsim.hardware.mma("Blackwell", "tcgen05.mma.m128n256k32.kind::mxf8f6f4.block32.f32.e4m3.e4m3.ue8m0")
    >>> a = np.ones(32); b = np.full(32, 0.5)
    >>> float(fpsim.dot(a, b, 1.0, model=m, a_scale=[2.0**-4], b_scale=[1.0]))
    2.0
    """

    L: int = 32
    F: int = 25
    block: int = 32
    group: int = 1
    e_zero: int = -133
    in_fmt: Format = "e4m3"
    in_fmt_b: Format | None = None
    scale_fmt: Format = "e8m0"
    name: str = ""

    def __post_init__(self):
        for nm in ("L", "F", "block", "group", "e_zero"):
            v = getattr(self, nm)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"BlockScaledFused.{nm} must be an int, got {v!r}")
        if self.group not in (1, 16) or self.block % self.group or self.L % self.block:
            raise ValueError(f"BlockScaledFused: group={self.group}, block={self.block}, "
                             f"L={self.L}: allowed group 1 or 16 dividing the block, and a "
                             "block dividing L")
        if not 0 < self.F <= 40:
            raise ValueError(f"BlockScaledFused.F={self.F}: allowed 1..40 fraction bits")
        for nm in ("in_fmt", "in_fmt_b", "scale_fmt"):
            if getattr(self, nm) is not None:
                object.__setattr__(self, nm, as_format(getattr(self, nm)))
        for f in (self.in_fmt, self.in_fmt_b):
            if f is not None and not (isinstance(f, FloatFormat) and f.bits <= 8):
                raise ValueError(f"BlockScaledFused input {f.name}: allowed 8/6/4-bit floats "
                                 "(e4m3, e5m2, e3m2, e2m3, e2m1)")
        sf = self.scale_fmt
        if not (isinstance(sf, FloatFormat) and not sf.signed and sf.bits <= 8):
            raise ValueError(f"BlockScaledFused scale format {sf.name}: allowed e8m0 (UE8M0) "
                             "and ue4m3")
        if self.in_fmt_b is not None and self.in_fmt_b == self.in_fmt:
            object.__setattr__(self, "in_fmt_b", None)

    def __repr__(self):
        return (f"BlockScaledFused<{self.name}>" if self.name else "BlockScaledFused") + (
            f"(L={self.L}, F={self.F}, block={self.block}, group={self.group}, "
            f"scale={self.scale_fmt.name})")


@dataclass(frozen=True)
class MFMA(_Fp32Engine):
    """AMD matrix-core dot-add (CDNA1-3 ``v_mfma_*``; the models of MMA-Sim, Xie et al.
    2025, checked bit for bit in ``tests/test_mmasim.py``). Blocks of ``L`` products and the
    accumulator c are chained (c <- d); the result is fp32. ``variant``:

    * ``"exact"`` (CDNA1 fp16/bf16): the exact sum of the block and c, rounded to nearest;
    * ``"ftz"`` (CDNA2 fp16/bf16): fp32 products added pairwise in fp32 (``L`` = 2 or 4
      products per step, then into c), every step rounding to nearest; subnormal inputs and
      c flush to +0, subnormal products and sums to a zero of their sign;
    * ``"tr"`` (CDNA3 fp16/bf16/xf32): the products fused with ``F`` fraction bits below the
      largest product exponent (truncated; an fp32 product overflow is inf), then c added:
      the fused sum floored at ``F2 + 1`` bits and c at ``F`` bits below the larger
      exponent, the sum floored to ``F2`` bits below its leading one and rounded to nearest
      fp32;
    * ``"gtr"`` (CDNA3 FP8, fnuz operands): the even and the odd products fused apart as in
      ``"tr"``, their sums floored at ``F`` bits below the larger and added, then c as in
      ``"tr"`` (a c more than ``F + 1`` binades below is dropped).

    An input or product inf/NaN gives the IEEE sum of the block. :func:`fpsim.hardware.mma`
    builds these from AMD ISA names (``v_mfma_f32_32x32x8_bf16``).

    >>> import numpy as np, fpsim
    >>> m = fpsim.hardware.mma("CDNA3", "v_mfma_f32_16x16x16_f16")
    >>> m.variant, m.L, m.F, m.F2
    ('tr', 8, 24, 31)
    >>> # 1 + 2**-25: the product 2**-25 lies below the 24 bits kept after alignment
    >>> float(fpsim.dot(np.array([1.0, 2.0**-12]), np.array([1.0, 2.0**-13]), 0.0, model=m))
    1.0
    """

    variant: str = "tr"
    L: int = 8
    F: int = 24
    F2: int = 31
    in_fmt: Format = "fp16"
    in_fmt_b: Format | None = None
    name: str = ""

    _VARIANTS = {"exact": 0, "ftz": 1, "tr": 2, "gtr": 3}  # kernels.accum.MFMA_*

    def __post_init__(self):
        if self.variant not in self._VARIANTS:
            raise ValueError(f"MFMA.variant={self.variant!r}: allowed {', '.join(self._VARIANTS)}")
        for nm in ("L", "F", "F2"):
            v = getattr(self, nm)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (nm == "L"):
                raise TypeError(f"MFMA.{nm} must be a {'positive' if nm == 'L' else 'non-negative'} "
                                f"int, got {v!r}")
        if self.variant == "ftz" and self.L not in (2, 4):
            raise ValueError(f"MFMA(variant='ftz'): L={self.L}, allowed 2 or 4 products per step")
        if self.variant == "gtr" and self.L % 2:
            raise ValueError(f"MFMA(variant='gtr'): L={self.L} must be even (odd/even halves)")
        if not (self.F <= 40 and self.F2 <= 40):
            raise ValueError(f"MFMA: F={self.F}, F2={self.F2}: allowed at most 40 bits")
        _set_input_formats(self, "MFMA", "e4m3fnuz, e5m2fnuz")

    def __repr__(self):
        return (f"MFMA<{self.name}>" if self.name else "MFMA") + (
            f"(variant={self.variant!r}, L={self.L}, F={self.F}, F2={self.F2})")


def _eval_mfma(model, TA, TB, c):
    fa, fb = model.input_formats
    R = TA.shape[0]
    out = np.empty(R)
    err = _K.mfma_rows(np.ascontiguousarray(TA), np.ascontiguousarray(TB),
                       np.ascontiguousarray(c, dtype=np.float64), out,
                       model._VARIANTS[model.variant], int(model.L), int(model.F),
                       int(model.F2), int(fa.emin), int(fb.emin), float(fa.min_normal),
                       _params(_FP32, "rne"))
    _raise_nan(err, _FP32)
    return out


def _log2_clamped(x, emin):
    """floor(log2 |x|) clamped at ``emin`` (x finite; zeros give emin)."""
    _, e = np.frexp(np.where(np.isfinite(x), x, 1.0))
    return np.maximum(e.astype(np.int64) - 1, emin)


def _check_scales(model, s, what, shape):
    """``s`` as float64 of ``shape``: values of the model's scale format (or a ValueError)."""
    if s is None:
        raise ValueError(f"{model!r} is block-scaled: pass a_scale= and b_scale=, one "
                         f"{model.scale_fmt.name} scale per {model.block} elements along K")
    v = exact_float64(s, what)
    try:
        v = np.ascontiguousarray(np.broadcast_to(v, shape), dtype=np.float64)
    except ValueError:
        raise ValueError(f"{what} has shape {v.shape}; expected {shape} (one scale per "
                         f"{model.block} consecutive elements along K)") from None
    sf = model.scale_fmt
    nan = np.isnan(v)
    fin = np.where(nan, 1.0, v)
    bad = (fin < 0) | (fin == 0 if not sf.has_zero else False) | ~np.isfinite(fin)
    bad |= _R.quantize(np.abs(fin), sf) != np.abs(fin)
    if bad.any():
        raise ValueError(f"{what} holds {float(fin[bad].flat[0])!r}, which is not a scale of "
                         f"format {sf.name} "
                         + ("(powers of two 2**-127 .. 2**127, or NaN)" if sf.name == "e8m0"
                            else f"(values of {sf.name}: 0 .. {sf.max}, or NaN)"))
    return v


def _scaled_terms(model, A, B, SA, SB):
    """Terms and alignment exponents of block-scaled rows: A, B (R, K); SA, SB (R, K/block)."""
    R, K = A.shape
    ea_min, eb_min = (f.emin for f in model.input_formats)
    se = model.scale_fmt.emin
    with np.errstate(invalid="ignore", over="ignore"):
        P = A * B
        if model.group == 1:
            sa = np.repeat(SA, model.block, axis=1)
            sb = np.repeat(SB, model.block, axis=1)
            T = P * sa * sb
            X = (_log2_clamped(A, ea_min) + _log2_clamped(B, eb_min)
                 + _log2_clamped(sa, se) + _log2_clamped(sb, se))
            X[T == 0.0] = model.e_zero
            return T, X
        g = model.group
        Pg = P.reshape(R, K // g, g)
        zero = (Pg == 0.0).all(axis=2)
        sa = np.repeat(SA, model.block // g, axis=1)
        sb = np.repeat(SB, model.block // g, axis=1)
        T = Pg.sum(axis=2) * sa * sb  # group sums are exact (at most 16 small products)
        X = _log2_clamped(sa, se) + _log2_clamped(sb, se)
        X[zero | (sa == 0.0) | (sb == 0.0)] = model.e_zero
        return T, X


def _scaled_rows(model, A, B, SA, SB, c):
    """d = block-scaled dot products of the rows of A, B (R, K) with scales SA, SB."""
    R, K = A.shape
    pad = -K % model.L  # a K that is not a whole number of instructions: zeros, as padded
    if pad:
        z = np.zeros((R, pad))
        A, B = np.concatenate([A, z], 1), np.concatenate([B, z], 1)
        one = np.ones((R, pad // model.block))
        SA, SB = np.concatenate([SA, one], 1), np.concatenate([SB, one], 1)
    T, X = _scaled_terms(model, A, B, SA, SB)
    per = model.L // model.group
    out = np.empty(R)
    p = _params(_FP32, "rtz", "inf")
    err = _K.rows_scaled_fused(np.ascontiguousarray(T), np.ascontiguousarray(X),
                               np.ascontiguousarray(c, dtype=np.float64), out, per,
                               int(model.F), int(model.e_zero), p, 2.0 ** 128)
    _raise_nan(err, _FP32)
    return out


def _scale_shape(model, K, what):
    if K % model.block:
        raise ValueError(f"{what}: K={K} is not a multiple of the scale block {model.block} "
                         "(pad the operands with zeros to a whole number of blocks)")
    return K // model.block


@dataclass(frozen=True)
class Blocked(Model):
    """Split-K: chunks of ``k`` terms each summed by ``inner`` (from 0), then the partial
    sums and c combined by ``outer`` (default: ``inner``).

    >>> import numpy as np, fpsim
    >>> m = fpsim.accum.Blocked(2, fpsim.accum.Sequential("bf16"), fpsim.accum.Exact("fp32"))
    >>> float(fpsim.sum(np.array([1.0, 2.0**-9, 1.0, 2.0**-9]), model=m))
    2.0
    """

    k: int
    inner: Model
    outer: Model | None = None

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise ValueError(f"Blocked.k={self.k!r}: the chunk length must be an int >= 1")
        for nm in ("inner", "outer"):
            v = getattr(self, nm)
            if v is not None and not isinstance(v, Model):
                raise TypeError(f"Blocked.{nm} must be an accumulation model, got {v!r}")  # noqa: TRY004
        if self.outer is None:
            object.__setattr__(self, "outer", self.inner)
        _check_chain(self.inner, self.outer)

    @property
    def out_fmt(self):
        return self.outer.out_fmt

    @property
    def in_fmt(self):
        return self.inner.in_fmt

    @property
    def input_formats(self):
        return self.inner.input_formats

    def _multiplier(self):
        return self.inner._multiplier()


def _check_chain(inner, outer):
    fi, fo = inner.out_fmt, outer.out_fmt
    if isinstance(fi, FloatFormat) and isinstance(fo, FloatFormat):
        if fi.man_bits > fo.man_bits or fi.exp_bits > fo.exp_bits:
            raise ValueError(f"the inner accumulator {fi.name} is wider than the outer {fo.name}: "
                             "partial sums would be rounded again; use an outer format at least "
                             "as wide")
    elif isinstance(fi, FixedFormat) != isinstance(fo, FixedFormat):
        raise ValueError(f"cannot combine an {fi.name} inner accumulator with an {fo.name} outer one")


@dataclass(frozen=True)
class Promoted(Blocked):
    """FP8 GEMM recipe (DeepSeek-V3): accumulate ``every`` products in the limited-precision
    ``inner`` model, then add each partial sum into an fp32 ``outer`` accumulator.

    >>> import fpsim
    >>> m = fpsim.accum.Promoted(fpsim.hardware.tensor_core("H100", "e4m3"), every=128)
    >>> m.k, m.outer.fmt.name, m.outer.fma
    (128, 'fp32', True)
    """

    def __init__(self, inner: Model, every: int = 128, outer: Model | None = None):
        if outer is None:
            outer = Sequential("fp32", fma=True)
        object.__setattr__(self, "k", every)
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "outer", outer)
        self.__post_init__()

    @property
    def every(self):
        return self.k


@dataclass(frozen=True)
class Permuted(Model):
    """Sum in another order: ``order`` a permutation of ``range(K)`` (summed by ``inner``),
    or a tree of nested tuples of indices (every node rounded into ``inner``'s format and
    rounding, children left to right, ``d = round(c + tree)``), or ``seed`` for a random
    permutation (the same for every dot product of one call).

    >>> import numpy as np, fpsim
    >>> x = np.array([1.0, 2.0**-24, 2.0**-24])
    >>> seq = fpsim.accum.Sequential("fp32")
    >>> float(fpsim.sum(x, model=fpsim.accum.Permuted(seq, order=[1, 2, 0])))
    1.0000001192092896
    >>> float(fpsim.sum(x, model=fpsim.accum.Permuted(seq, order=((0, 1), 2))))
    1.0
    """

    inner: Model
    order: tuple | None = None
    seed: int | None = None

    def __post_init__(self):
        if not isinstance(self.inner, Model):
            raise TypeError(f"Permuted.inner must be an accumulation model, got {self.inner!r}")
        if (self.order is None) == (self.seed is None):
            raise ValueError("Permuted needs exactly one of order= (a permutation or a tree) "
                             "and seed=")
        if self.order is not None:
            object.__setattr__(self, "order", _freeze(self.order))
            if self._is_tree() and not isinstance(self.inner, (Sequential, _Simple, NumpyOrder)):
                raise ValueError("a tree order needs a leaf inner model with fmt/rounding "
                                 "(Sequential, Pairwise, Kahan, Exact)")
            if self._is_tree() and self.inner.rounding == "stochastic":
                raise ValueError("a tree order rounds its nodes to nearest or directed only; "
                                 "stochastic rounding needs a permutation order (or seed=)")

    def _is_tree(self):
        return self.order is not None and any(isinstance(o, tuple) for o in self.order)

    @property
    def out_fmt(self):
        return self.inner.out_fmt

    @property
    def in_fmt(self):
        return self.inner.in_fmt

    @property
    def input_formats(self):
        return self.inner.input_formats

    def _multiplier(self):
        return self.inner._multiplier()

    def _perm(self, K):
        if self.seed is not None:
            return np.random.default_rng(self.seed).permutation(K)
        perm = np.asarray(self.order, dtype=np.int64)
        if perm.shape != (K,) or not np.array_equal(np.sort(perm), np.arange(K)):
            raise ValueError(f"Permuted.order must be a permutation of range({K}) for K={K}")
        return perm


def _freeze(o):
    if isinstance(o, (list, tuple)):
        return tuple(_freeze(x) for x in o)
    if isinstance(o, np.ndarray):
        return tuple(_freeze(x) for x in o.tolist())
    if isinstance(o, (int, np.integer)) and not isinstance(o, bool):
        return int(o)
    raise TypeError(f"order entries must be ints or nested tuples of ints, got {o!r}")


# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------

#: Use the fast tensor-core kernels for finite inputs (tests switch this off to compare
#: them with the general kernel).
_FUSED_FAST = True


def _clamped(X, emin_in):
    E = np.empty(X.shape, dtype=np.int64)
    _K.clamped_exps(np.ascontiguousarray(X), emin_in, E)
    return E


def _raise_nan(err, fmt):
    if err:
        raise ValueError(f"the accumulator format {fmt.name} has no NaN but the computation "
                         f"produced {err} NaN value(s) (NaN inputs or inf - inf)")


def _leaf_args(model):
    if isinstance(model, Sequential):
        return _leaf_kind(model.fmt, model.rounding, _C.SEQ), _params(model.fmt, model.rounding, model.overflow)
    if isinstance(model, Integer):
        return _C.SEQ, _params(model.fmt, "rne", model.overflow)
    if isinstance(model, NumpyOrder):
        return _C.NUMPY, _params(model.fmt, model.rounding)
    if isinstance(model, _Simple):
        return _leaf_kind(model.fmt, model.rounding, model._KIND), _params(model.fmt, model.rounding)
    raise TypeError(f"{model!r} is not a leaf model")  # pragma: no cover


def kernel_params(obj):
    """The rounding parameters the kernels use for ``obj``, for other implementations of the
    same arithmetic (the torch path, :mod:`fpsim.torch.accum`): one source of truth.

    A leaf model (Sequential, Pairwise, Kahan, Exact, NumpyOrder, Integer) gives
    ``(kind, RoundParams)``; a :class:`RoundedProduct` its RoundParams; a :class:`FusedBlock`
    the tuple ``(n, neab, emin_a, emin_b, RoundParams, ovf_lim, rtz_mask, min_normal)``
    (the last two: the truncating shortcut of the fast kernels, 0 without truncation).

    >>> import fpsim
    >>> kind, p = kernel_params(fpsim.accum.Sequential("bf16"))
    >>> p.M, p.emin
    (7, -126)
    >>> kernel_params(fpsim.hardware.tensor_core("H100", "bf16"))[:4]
    (16, 2, -126, -126)
    """
    if isinstance(obj, FusedBlock):
        return obj._kernel_args() + obj._rtz_args()
    if isinstance(obj, RoundedProduct):
        return _params(obj.fmt, obj.rounding)
    return _leaf_args(obj)


_DUMMY_P = None


def _dummy_params():
    global _DUMMY_P
    if _DUMMY_P is None:
        _DUMMY_P = _params(_FP32, "rne")
    return _DUMMY_P


def _eval(model, T, TA, TB, c, numpy_axis_last=True, row0=0, salt=0):
    """Apply ``model`` to the term rows ``T`` (R, K) starting from ``c`` (R,).

    ``TA``/``TB`` are the factors (needed by FusedBlock), or None when the terms are sums.
    ``row0`` (the global index of row 0) and ``salt`` (which sub-sum of a composite model
    this is) place stochastic rounding's random bits: distinct for every addition, the same
    however rows are chunked.
    """
    R, K = T.shape
    if isinstance(model, BlockScaledFused):
        raise TypeError(f"{model!r} needs its block scales: use it directly in fpsim.dot or "
                        "fpsim.matmul with a_scale=/b_scale= (it cannot be nested in another "
                        "model or used by fpsim.sum)")
    if isinstance(model, MFMA):
        return _eval_mfma(model, TA if TA is not None else T,
                          TB if TB is not None else np.ones_like(T), c)
    if isinstance(model, FusedBlock):
        n, neab, emin_a, emin_b, p, lim = model._kernel_args()
        A = np.ascontiguousarray(TA if TA is not None else T)
        B = np.ascontiguousarray(TB if TB is not None else np.ones_like(T))
        c = np.ascontiguousarray(c, dtype=np.float64)
        out = np.empty(R)
        if _FUSED_FAST and np.isfinite(A).all() and np.isfinite(B).all() and np.isfinite(c).all():
            err = _K.rows_fused_fast(A, B, _clamped(A, emin_a), _clamped(B, emin_b), c, out,
                                     n, neab, p, lim, *model._rtz_args())
        else:
            err = _K.leaf(A, B, c, out, _C.FUSED, p, n, neab, emin_a, emin_b, lim)
        _raise_nan(err, model.out_fmt)
        return out
    if isinstance(model, Permuted):
        if model._is_tree():
            return _eval_tree(model, T, c)
        perm = model._perm(K)
        sub = (lambda X: None if X is None else X[:, perm])
        return _eval(model.inner, T[:, perm], sub(TA), sub(TB), c, row0=row0, salt=salt)
    if isinstance(model, Blocked):
        k = model.k
        nfull, rem = divmod(K, k)
        parts = []
        z = np.zeros(R * nfull)
        if nfull:
            sl = slice(0, nfull * k)
            rs = (lambda X: None if X is None else np.ascontiguousarray(X[:, sl]).reshape(R * nfull, k))
            parts.append(_eval(model.inner, rs(T), rs(TA), rs(TB), z, row0=row0 * nfull,
                               salt=4 * salt + 1).reshape(R, nfull))
        if rem:
            sl = slice(nfull * k, K)
            rs = (lambda X: None if X is None else np.ascontiguousarray(X[:, sl]))
            parts.append(_eval(model.inner, rs(T), rs(TA), rs(TB), np.zeros(R), row0=row0,
                               salt=4 * salt + 2).reshape(R, 1))
        P = np.concatenate(parts, axis=1) if parts else np.zeros((R, 0))
        return _eval(model.outer, P, None, None, c, row0=row0, salt=4 * salt + 3)
    kind, p = _leaf_args(model)
    if isinstance(model, Sequential) and model.rounding == "stochastic":
        out = np.empty(R)
        err = _K.seq_stochastic(np.ascontiguousarray(T), np.ascontiguousarray(c, dtype=np.float64),
                                out, p, _sr_stream(model.seed, salt), np.int64(row0))
        _raise_nan(err, model.out_fmt)
        return out
    if kind == _C.EXACT64:
        return _exact_f64_rows(np.asarray(T, dtype=np.float64), np.asarray(c, dtype=np.float64))
    if kind == _C.NUMPY and not numpy_axis_last:
        kind = _C.SEQ
    out = np.empty(R)
    T = np.ascontiguousarray(T)
    err = _K.leaf(T, T, c, out, kind, p, 1, 0, 0, 0, 0.0)
    _raise_nan(err, model.out_fmt)
    return out


def _exact_f64_rows(T, c):
    """``Exact("fp64")``: each row's exact sum (with its ``c``) rounded once to fp64, RNE.

    The kernels' exact accumulator rounds to odd at 53 bits first, which is only correct for
    narrower targets; here :func:`math.fsum` (exact partials, one correct rounding) does it,
    with the exact rational sum where its partials overflow. IEEE specials: NaN if any term
    is NaN or infinities of both signs meet, else the infinity; an exact zero is +0 as in
    the other exact accumulators.
    """
    out = np.empty(T.shape[0])
    for r in range(T.shape[0]):
        terms = [float(c[r])] + T[r].tolist()
        if not all(map(math.isfinite, terms)):
            pos = any(t == math.inf for t in terms)
            neg = any(t == -math.inf for t in terms)
            out[r] = math.nan if (any(map(math.isnan, terms)) or (pos and neg)) else (
                math.inf if pos else -math.inf)
            continue
        try:
            s = math.fsum(terms)
        except OverflowError:  # partials beyond float64: the exact rational decides
            q = builtins.sum(map(Fraction, terms))
            try:
                s = float(q)
            except OverflowError:
                s = math.inf if q > 0 else -math.inf
        out[r] = s + 0.0  # -0 -> +0
    return out


def _sr_stream(seed, salt) -> np.uint64:
    """The random stream of one stochastic leaf: the model's seed mixed with the salt of its
    place in a composite model (a fresh seed per call when ``seed`` is None)."""
    base = int(_L.seed(seed, _R.Rounding.STOCHASTIC))
    return np.uint64((base + salt * 0xD1B54A32D192ED03) % 2**64)


def _eval_tree(model, T, c):
    inner = model.inner
    p = _params(inner.fmt, inner.rounding)
    seen = []

    def walk(node):
        if isinstance(node, int):
            seen.append(node)
            return np.ascontiguousarray(T[:, node])
        vals = [walk(ch) for ch in node]
        if not vals:
            raise ValueError("Permuted tree: empty node")
        acc = vals[0]
        for v in vals[1:]:
            out = np.empty_like(acc)
            _raise_nan(_K.add_arrays(acc, v, out, p), inner.fmt)
            acc = out
        if len(vals) == 1:  # a single child is still rounded into the format
            out = np.empty_like(acc)
            _raise_nan(_K.round_array(acc, out, p), inner.fmt)
            acc = out
        return acc

    tree = walk(model.order)
    K = T.shape[1]
    if sorted(seen) != list(range(K)):
        raise ValueError(f"Permuted tree must use every index 0..{K - 1} exactly once")
    out = np.empty_like(tree)
    _raise_nan(_K.add_arrays(np.ascontiguousarray(c, dtype=np.float64), tree, out, p), inner.fmt)
    return out


# ---------------------------------------------------------------------------------------
# Inputs and products
# ---------------------------------------------------------------------------------------

def _check_model(model):
    if not isinstance(model, Model):
        raise TypeError(f"model= must be an accumulation model from fpsim.accum or "
                        f"fpsim.hardware.tensor_core(...), got {model!r}")


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
        import ml_dtypes
        ml_dtypes.finfo(dt)
    except (ImportError, ValueError, TypeError):
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


_as_float = exact_float64


def _check_inputs(model, arrays):
    """NaN into NaN-less formats, values outside the model's input format(s), wide inputs."""
    fmts = model.input_formats
    mult = model._multiplier()
    for (what, x), fin in zip(arrays, fmts):
        if x.size == 0:
            continue
        if fin is not None:
            nan = np.isnan(x)
            if nan.any() and not fin.has_nan:
                raise ValueError(f"{what} holds NaN but the model's input format {fin.name} has "
                                 "no NaN")
            q = _R.quantize(np.where(nan, 0.0, x), fin, nan="zero" if not fin.has_nan else None)
            bad = (q != np.where(nan, 0.0, x)) & ~nan
            if bad.any():
                v = x[bad].flat[0]
                raise ValueError(f"{what} holds {v!r}, which is not a value of the model's input "
                                 f"format {fin.name}; round the inputs first with "
                                 f"fpsim.quantize(x, {fin.name!r})")
        if isinstance(mult, (ExactProduct, RoundedProduct)) or isinstance(model, FusedBlock):
            # exact products in float64 need <= 26 significant bits per input. A value
            # whose low 27 fraction bits are zero has at most 26 (normal or subnormal):
            # one cheap pass over the bits, in slices (no temporary the size of x), and
            # the exact test only for the values it flags
            flat = x.reshape(-1)
            wide = []
            for s0 in range(0, flat.size, 1 << 16):
                part = flat[s0:s0 + (1 << 16)]
                low = (part.view(np.uint64) & np.uint64(2**27 - 1)) != 0
                if low.any():
                    wide.append(part[low & np.isfinite(part)])
            if not wide:
                continue
            finite = np.concatenate(wide)
            if finite.size:
                m, _ = np.frexp(finite)
                if np.any(m * 2.0**26 != np.round(m * 2.0**26)):
                    raise ValueError(f"{what} has values with more than 26 significant bits: "
                                     "products are formed exactly in float64, which needs "
                                     "inputs of at most 26 bits (fp32 and narrower); round "
                                     "the inputs first (fpsim.quantize)")


def _multiply(mult, A, B):
    """Products of equally shaped float64 arrays."""
    if isinstance(mult, ExactProduct):
        with np.errstate(invalid="ignore", over="ignore"):
            return A * B
    out = np.empty(np.broadcast_shapes(A.shape, B.shape))
    if isinstance(mult, RoundedProduct):
        with np.errstate(invalid="ignore", over="ignore"):
            P = np.ascontiguousarray(np.broadcast_to(A * B, out.shape))
        # A*B is exact for inputs of <= 26 bits; wider inputs are checked by _check_inputs
        flat = P.reshape(-1)
        o = np.empty_like(flat)
        _raise_nan(_K.round_array(flat, o, _params(mult.fmt, mult.rounding)), mult.fmt)
        return o.reshape(P.shape)
    if isinstance(mult, LMulProduct):
        try:
            from . import arith as _arith
        except ImportError as e:  # pragma: no cover - arith is part of the package
            raise ValueError("L-Mul products need fpsim.arith (not available)") from e
        fmt = mult.fmt if mult.fmt is not None else FloatFormat(8, mult.man_bits)
        return np.asarray(_arith.lmul(A, B, mult.man_bits, semantics=mult.semantics, fmt=fmt,
                                      out_fmt="fp64"), dtype=np.float64)
    raise TypeError(f"unknown multiplier {mult!r}")  # pragma: no cover


def _c_rows(C, shape, what="C"):
    if C is None:
        return np.zeros(shape)
    c = _as_float(C, what)
    try:
        return np.ascontiguousarray(np.broadcast_to(c, shape), dtype=np.float64)
    except ValueError:
        raise ValueError(f"{what} with shape {c.shape} does not broadcast to the result shape "
                         f"{shape}") from None


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------

def dot(A, B, C=None, *, model, a_scale=None, b_scale=None):
    """Batched dot products over the last axis: ``D[...] = sum_k A[..., k] B[..., k] + C[...]``.

    ``A`` and ``B`` broadcast against each other; ``C`` (optional) broadcasts to the result.
    Values must already be in the model's input format (when it has one); the result holds
    values of ``model.out_fmt`` as float64. Block-scaled models (:class:`BlockScaledFused`)
    take ``a_scale`` shaped ``A.shape[:-1] + (K // block,)`` and ``b_scale`` likewise: one
    scale per ``block`` consecutive elements along K, as the hardware consumes them.

    >>> import numpy as np, fpsim
    >>> a = np.array([1.0, 2.0**-12, 2.0**-12]); b = np.array([1.0, 2.0**-12, 2.0**-12])
    >>> float(fpsim.dot(a, b, model=fpsim.accum.Sequential("fp32", fma=True)))
    1.0
    >>> float(fpsim.dot(a, b, model=fpsim.accum.Exact("fp32")))
    1.0000001192092896
    """
    _check_model(model)
    A = _as_float(A, "A")
    B = _as_float(B, "B")
    if A.ndim == 0 or B.ndim == 0:
        raise ValueError("dot needs arrays with at least one axis (the summed last axis)")
    if A.shape[-1] != B.shape[-1]:
        raise ValueError(f"dot: the last axes differ: A has {A.shape[-1]} and B has "
                         f"{B.shape[-1]} elements (shapes {A.shape} and {B.shape})")
    try:
        shp = np.broadcast_shapes(A.shape[:-1], B.shape[:-1])
    except ValueError:
        raise ValueError(f"dot: batch shapes {A.shape[:-1]} and {B.shape[:-1]} do not "
                         "broadcast") from None
    K = A.shape[-1]
    c = _c_rows(C, shp).reshape(-1)
    _check_inputs(model, [("A", A), ("B", B)])
    R = math.prod(shp)
    A2 = np.ascontiguousarray(np.broadcast_to(A, shp + (K,))).reshape(R, K)
    B2 = np.ascontiguousarray(np.broadcast_to(B, shp + (K,))).reshape(R, K)
    if isinstance(model, BlockScaledFused):
        nb = _scale_shape(model, K, "dot")
        SA = _check_scales(model, a_scale, "a_scale", A.shape[:-1] + (nb,))
        SB = _check_scales(model, b_scale, "b_scale", B.shape[:-1] + (nb,))
        SA = np.broadcast_to(SA, shp + (nb,)).reshape(R, nb)
        SB = np.broadcast_to(SB, shp + (nb,)).reshape(R, nb)
        return _scaled_rows(model, A2, B2, SA, SB, c).reshape(shp)
    _no_scales(model, a_scale, b_scale)
    T = _multiply(model._multiplier(), A2, B2)
    return _eval(model, T, A2, B2, c).reshape(shp)


def sum(x, *, model, axis=-1):
    """Sum ``x`` along ``axis`` with an accumulation model (no products).

    With :class:`NumpyOrder` the order depends on the axis exactly as in numpy (pairwise
    along the last axis of a C-contiguous array, sequential along the others);
    ``axis=None`` sums the flattened array.

    >>> import numpy as np, fpsim
    >>> x = np.array([[1.0, 2.0**-24, 2.0**-24], [3.0, 0.0, 1.0]])
    >>> fpsim.sum(x, model=fpsim.accum.Sequential("fp32")).tolist()
    [1.0, 4.0]

    Integer (and longdouble) inputs are taken exactly or refused, never rounded:

    >>> float(fpsim.sum(np.array([2**53, 1]), model=fpsim.accum.Exact("fp32")))
    9007199254740992.0
    >>> try:
    ...     fpsim.sum(np.array([2**60 + 1, -2**60]), model=fpsim.accum.Exact("fp32"))
    ... except ValueError as e:
    ...     print(str(e)[:61])
    x holds the integer 1152921504606846977, which float64 cannot
    """
    _check_model(model)
    x = _as_float(x, "x")
    if axis is None:
        x = x.reshape(-1)
        axis = 0
    if x.ndim == 0:
        raise ValueError("sum needs an array with at least one axis")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis={axis!r} is not valid for an array with {x.ndim} dimension(s)")
    axis = int(axis) % x.ndim
    last = axis == x.ndim - 1
    xm = np.moveaxis(x, axis, -1)
    shp = xm.shape[:-1]
    K = xm.shape[-1]
    _check_inputs(_SumView(model), [("x", x)])
    T = np.ascontiguousarray(xm).reshape(math.prod(shp), K)
    c = np.zeros(T.shape[0])
    if isinstance(model, FusedBlock):
        return _eval(model, T, T, np.ones_like(T), c).reshape(shp)
    return _eval(model, T, None, None, c, numpy_axis_last=last).reshape(shp)


class _SumView(Model):
    """Input checks for sum: only the input format matters (terms are not multiplied)."""

    def __init__(self, m):
        self.in_fmt = m.in_fmt

    def _multiplier(self):
        return None  # plain terms are not multiplied: no width restriction


def matmul(A, B, C=None, *, model, a_scale=None, b_scale=None):
    """``D = A @ B + C`` with every output element a dot product evaluated by ``model``.

    ``A`` (..., M, K) and ``B`` (..., K, N) with broadcast batch dimensions; ``C``
    (optional) broadcasts to (..., M, N). Inputs must hold values of the model's input
    format; the result is float64 holding values of ``model.out_fmt``. Sequential fp32
    round-to-nearest-even and tensor-core models run fused kernels without materialising
    the products; other models process the products in chunks. Block-scaled models
    (:class:`BlockScaledFused`) take ``a_scale`` (..., M, K // block) and ``b_scale``
    (..., K // block, N): one scale per K-block of each row of A and column of B.

    >>> import numpy as np, fpsim
    >>> A = np.array([[1.0, 2.0**-12], [0.5, 0.25]]); B = np.array([[1.0], [2.0**-12]])
    >>> fpsim.matmul(A, B, model=fpsim.accum.Sequential("fp32", fma=True)).ravel().tolist()
    [1.0, 0.50006103515625]

    ml_dtypes' FP8/FP6/FP4 arrays are read exactly, as :func:`fpsim.quantize` reads them:

    >>> import ml_dtypes
    >>> A8 = np.array([[1.5, -2.0]]).astype(ml_dtypes.float8_e4m3fn)
    >>> fpsim.matmul(A8, A8.T, model=fpsim.accum.Exact("fp32")).tolist()
    [[6.25]]
    """
    _check_model(model)
    A = _as_float(A, "A")
    B = _as_float(B, "B")
    if A.ndim < 2 or B.ndim < 2:
        raise ValueError(f"matmul needs A (..., M, K) and B (..., K, N) with at least 2 "
                         f"dimensions; got shapes {A.shape} and {B.shape} (use fpsim.dot for "
                         "vectors)")
    if A.shape[-1] != B.shape[-2]:
        raise ValueError(f"matmul: A has K={A.shape[-1]} columns but B has {B.shape[-2]} rows "
                         f"(shapes {A.shape} and {B.shape})")
    try:
        batch = np.broadcast_shapes(A.shape[:-2], B.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch shapes {A.shape[:-2]} and {B.shape[:-2]} do not "
                         "broadcast") from None
    M, K, N = A.shape[-2], A.shape[-1], B.shape[-1]
    Cb = _c_rows(C, batch + (M, N))
    _check_inputs(model, [("A", A), ("B", B)])
    if isinstance(model, BlockScaledFused):
        return _scaled_matmul(model, A, B, Cb, a_scale, b_scale, batch)
    _no_scales(model, a_scale, b_scale)
    nb = math.prod(batch)
    Ab = np.broadcast_to(A, batch + (M, K)).reshape(nb, M, K)
    Bb = np.broadcast_to(B, batch + (K, N)).reshape(nb, K, N)
    Cb = Cb.reshape(nb, M, N)
    D = np.empty((Ab.shape[0], M, N))
    for t in range(Ab.shape[0]):
        D[t] = _matmul2(model, np.ascontiguousarray(Ab[t]), np.ascontiguousarray(Bb[t]),
                        np.ascontiguousarray(Cb[t]), row0=t * M * N)
    return D.reshape(batch + (M, N))


def _no_scales(model, a_scale, b_scale):
    if a_scale is not None or b_scale is not None:
        raise ValueError(f"a_scale/b_scale are for block-scaled models (BlockScaledFused, "
                         f"fpsim.hardware.mma of a kind::mx* instruction); {model!r} takes none")


def _scaled_matmul(model, A, B, Cb, a_scale, b_scale, batch):
    M, K, N = A.shape[-2], A.shape[-1], B.shape[-1]
    kb = _scale_shape(model, K, "matmul")
    SA = _check_scales(model, a_scale, "a_scale", A.shape[:-1] + (kb,))
    SB = _check_scales(model, b_scale, "b_scale", B.shape[:-2] + (kb, N))
    nb = math.prod(batch)
    Ab = np.broadcast_to(A, batch + (M, K)).reshape(nb, M, K)
    Bb = np.broadcast_to(B, batch + (K, N)).reshape(nb, K, N)
    SAb = np.broadcast_to(SA, batch + (M, kb)).reshape(nb, M, kb)
    SBb = np.broadcast_to(SB, batch + (kb, N)).reshape(nb, kb, N)
    Cb = Cb.reshape(nb, M, N)
    D = np.empty((nb, M, N))
    pad = -K % model.L  # zeros up to a whole number of instructions, as in _scaled_rows
    ea, eb = (int(f.emin) for f in model.input_formats)
    p = _params(_FP32, "rtz", "inf")
    for t in range(nb):
        A2, BT = Ab[t], Bb[t].T
        SA2, SBT = SAb[t], SBb[t].T
        if pad:
            A2 = np.concatenate([A2, np.zeros((M, pad))], 1)
            BT = np.concatenate([BT, np.zeros((N, pad))], 1)
            SA2 = np.concatenate([SA2, np.ones((M, pad // model.block))], 1)
            SBT = np.concatenate([SBT, np.ones((N, pad // model.block))], 1)
        c = np.ascontiguousarray
        err = _K.gemm_scaled(c(A2), c(BT), c(SA2), c(SBT), c(Cb[t]), D[t], int(model.L),
                             int(model.block), int(model.group), int(model.F), int(model.e_zero),
                             ea, eb, int(model.scale_fmt.emin), p, 2.0 ** 128)
        _raise_nan(err, _FP32)
    return D.reshape(batch + (M, N))


def _fast_seq32(model):
    if not isinstance(model, Sequential):
        return None
    f = model.fmt
    if not (isinstance(f, FloatFormat) and f == _FP32 and model.rounding == "rne"
            and model.overflow in (None, "inf")):
        return None
    mult = model._multiplier()
    if isinstance(mult, ExactProduct):
        return True
    if isinstance(mult, RoundedProduct) and mult.fmt == _FP32 and mult.rounding == "rne":
        return False
    return None


def _fused_chain(model):
    """(inner FusedBlock, every, outer RoundParams) when ``model`` is a split-K / promoted
    chain that :func:`fpsim.kernels.gemm.fused_f64` runs: FusedBlock chunks added into a
    deterministic Sequential accumulator, with blocks whose truncated terms sum exactly in
    float64 (always so for the GPU presets); else None."""
    if not (isinstance(model, Blocked) and isinstance(model.inner, FusedBlock)
            and isinstance(model.outer, Sequential) and model.outer.rounding != "stochastic"):
        return None
    inner = model.inner
    if (inner.n + 1).bit_length() + 25 + inner.neab > 53:
        return None
    kind, po = _leaf_args(model.outer)
    if kind != _C.SEQ:  # fp64 outer (native addition): the general path
        return None
    return inner, int(model.k), po


def _matmul2(model, A, B, C, row0=0):
    M, K = A.shape
    N = B.shape[1]
    D = np.empty((M, N))
    fma = _fast_seq32(model)
    if fma is not None:
        # float32 data: native float32 arithmetic is the model (returns 1 for other data)
        if _G.seq_f32(A, B, C, D, fma) != 0:
            _K.gemm_seq_f32(A, np.ascontiguousarray(B), C, D, fma)
        return D
    chain = _fused_chain(model)
    if chain is not None and _FUSED_FAST and np.isfinite(A).all() and np.isfinite(B).all():
        inner, every, po = chain
        n, neab, emin_a, emin_b, p, lim = inner._kernel_args()
        err = _G.fused_f64(A, B, _clamped(A, emin_a), _clamped(B, emin_b), C, D, n, every,
                           neab, p, lim, *inner._rtz_args(), po)
        _raise_nan(err, model.out_fmt)
        return D
    BT = np.ascontiguousarray(B.T)
    if (isinstance(model, FusedBlock) and _FUSED_FAST and np.isfinite(A).all()
            and np.isfinite(B).all() and np.isfinite(C).all()):
        n, neab, emin_a, emin_b, p, lim = model._kernel_args()
        EA, EB = _clamped(A, emin_a), _clamped(B, emin_b)
        err = _K.gemm_fused_vec(A, np.ascontiguousarray(B), EA, EB, C, D, n, neab, p, lim,
                                *model._rtz_args())
        _raise_nan(err, model.out_fmt)
        return D
    # everything else (and NaN/inf inputs on tensor cores): products in chunks of rows
    mult = model._multiplier()
    rows = max(1, _CHUNK_TERMS // max(K, 1))
    Dflat = D.reshape(-1)
    Cflat = C.reshape(-1)
    for r0 in range(0, M * N, rows):
        r1 = min(M * N, r0 + rows)
        idx = np.arange(r0, r1)
        A2 = A[idx // N]
        B2 = BT[idx % N]
        T = _multiply(mult, A2, B2)
        Dflat[r0:r1] = _eval(model, T, A2, B2, np.ascontiguousarray(Cflat[r0:r1]),
                             row0=row0 + r0)
    return D


# ---------------------------------------------------------------------------------------
# Error growth figure
# ---------------------------------------------------------------------------------------

def _default_models():
    from . import hardware
    return {
        "Sequential fp32": Sequential("fp32", fma=True),
        "Pairwise fp32": Pairwise("fp32"),
        "Kahan fp32": Kahan("fp32"),
        "Blocked(32) fp32": Blocked(32, Sequential("fp32", fma=True)),
        "Exact fp32": Exact("fp32"),
        "A100 tensor core (bf16)": hardware.tensor_core("A100", "bf16"),
        "Sequential bf16": Sequential("bf16", fma=True),
        "Ada FP8 (e4m3)": hardware.tensor_core("Ada", "e4m3"),
        "Ada FP8, promoted every 128": Promoted(hardware.tensor_core("Ada", "e4m3"), every=128),
    }


def error_growth(models=None, Ks=(32, 128, 512, 2048, 8192), trials=32, seed=0,
                 in_fmt="bf16"):
    """Mean relative error of length-K dot products per model (data for the figure).

    Inputs: uniform [0, 1) rounded into ``in_fmt`` (positive terms, so errors accumulate);
    the reference is the exact dot product (exact Kulisch sum in float64 precision, which
    is far more accurate than any model here). Returns ``{name: array of errors}``.

    >>> import fpsim
    >>> e = fpsim.accum.error_growth({"seq": fpsim.accum.Sequential("fp32")}, Ks=(8,), trials=2)
    >>> e["seq"].shape
    (1,)
    """
    models = _default_models() if models is None else models
    rng = np.random.default_rng(seed)
    ref_model = Exact(FloatFormat(11, 50))
    out = {name: [] for name in models}
    for K in Ks:
        a = _R.quantize(rng.random((trials, K)), in_fmt)
        b = _R.quantize(rng.random((trials, K)), in_fmt)
        ref = dot(a, b, model=ref_model)
        for name, m in models.items():
            fin = m.in_fmt
            aa, bb = (a, b) if fin is None else (_R.quantize(a, fin), _R.quantize(b, fin))
            r = ref if fin is None else dot(aa, bb, model=ref_model)
            d = dot(aa, bb, model=m)
            out[name].append(float(np.mean(np.abs(d - r) / np.abs(r))))
    return {k: np.array(v) for k, v in out.items()}


def plot_error_growth(models=None, Ks=(32, 128, 512, 2048, 8192), trials=32, seed=0,
                      in_fmt="bf16"):
    """A matplotlib Figure: relative error of a length-K dot product against K, per model.

    >>> import fpsim
    >>> fig = fpsim.accum.plot_error_growth({"seq": fpsim.accum.Sequential("fp32")}, Ks=(8, 16), trials=2)
    >>> type(fig).__name__
    'Figure'
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    errs = error_growth(models, Ks, trials, seed, in_fmt)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for name, e in errs.items():
        ax.loglog(Ks, np.where(e > 0, e, np.nan), marker="o", label=name)  # 0: exact
    u = 2.0**-24
    ax.loglog(Ks, [K * u for K in Ks], "k--", lw=0.8, label="K·u (fp32 bound scale)")
    ax.set_xlabel("dot-product length K")
    ax.set_ylabel("mean relative error")
    ax.set_title(f"Error growth of accumulation models ({in_fmt} inputs in [0, 1))")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
