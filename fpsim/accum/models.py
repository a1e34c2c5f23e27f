"""The model protocol (:class:`Model`) and the one-accumulator models.

A model evaluates itself; :func:`fpsim.dot`, :func:`fpsim.matmul` and :func:`fpsim.sum`
only prepare rows and call these methods:

* ``_multiplier()``: how its products are formed (:mod:`fpsim.accum.products`);
* ``_evaluate(T, TA, TB, c, row0, salt, axis_last)``: the accumulation of the term rows
  ``T`` (R, K) from ``c`` (R,). ``TA``/``TB`` are the factors of the terms (a fused adder
  reads them) or None when the terms are plain sums; ``row0`` (the global index of row 0)
  and ``salt`` (which sub-sum of a composite model this is) place stochastic rounding's
  random bits, the same however rows are chunked; ``axis_last`` is False when
  :func:`fpsim.sum` reduces another axis than the last (numpy's order depends on it);
* ``_matmul(A, B, C, row0)``: one 2-D product ``A @ B + C`` (default: the products in
  chunks of rows through ``_evaluate``; models with a fused GEMM kernel override it);
* ``_dot``/``_gemm``: the batched entry points (block-scaled models take their scales
  there);
* ``_kernel_params()``: the rounding parameters of the kernels (:func:`fpsim.accum.kernel_params`).

A one-accumulator model (Sequential, Pairwise, Kahan, Exact, NumpyOrder, Integer) only
says which kernel leaf and which rounding parameters it uses (``_leaf_args()``).
"""

from __future__ import annotations

import builtins
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .. import lowering as _L
from ..block.descriptor import BlockCodes
from ..formats import FixedFormat, FloatFormat, Format, as_format
from ..rounding import Rounding
from ._common import FP32, acc_format, dot_rows, leaf_kind, mode, params, raise_nan
from ._common import C as _C, G as _G, K as _K
from .products import ExactProduct, FusedProduct, Multiplier, RoundedProduct, as_multiplier

__all__ = ["Exact", "Integer", "Kahan", "Model", "NumpyOrder", "Pairwise", "Sequential"]

#: Products are materialised in chunks of at most this many terms (generic path).
_CHUNK_TERMS = 1 << 22


class Model:
    """Base class of accumulation models (for ``isinstance`` checks).

    Every model has ``out_fmt`` (the format of the result) and ``in_fmt`` (the input format
    it was built for, or None when any input of at most 26 significant bits is accepted).

    >>> import fpsim
    >>> isinstance(fpsim.accum.Sequential("bf16"), fpsim.accum.Model)
    True
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

    def _evaluate(self, T, TA, TB, c, row0=0, salt=0, axis_last=True):  # pragma: no cover
        raise NotImplementedError

    def _kernel_params(self):
        raise TypeError(f"{self!r} is not a leaf model: kernel parameters exist for "
                        "Sequential, Pairwise, Kahan, Exact, NumpyOrder, Integer, "
                        "RoundedProduct and FusedBlock")

    def _node_params(self):
        """RoundParams of one node of a summation tree (:class:`Permuted`), or None."""
        return None

    def _coded(self, A, B, a_scale, b_scale, k_axes):
        """Operands given as block codes (``fpsim.encode`` of a block format) as values and
        scales: ``(A, B, a_scale, b_scale)``. Only block-scaled models take codes."""
        if isinstance(A, BlockCodes) or isinstance(B, BlockCodes):
            raise TypeError(f"block-encoded operands (BlockCodes from fpsim.encode) go with a "
                            f"block-scaled model (BlockScaledFused, fpsim.hardware.mma of a "
                            f"kind::mx* instruction); {self!r} takes values: decode them first "
                            "(fpsim.decode(codes, fmt))")
        return A, B, a_scale, b_scale

    def _no_scales(self, a_scale, b_scale):
        if a_scale is not None or b_scale is not None:
            raise ValueError(f"a_scale/b_scale are for block-scaled models (BlockScaledFused, "
                             f"fpsim.hardware.mma of a kind::mx* instruction); {self!r} takes none")

    def _dot(self, A, B, c, shp, a_scale, b_scale):
        """Dot products of A, B (..., K) broadcast to the batch shape ``shp``: (R,) values."""
        self._no_scales(a_scale, b_scale)
        A2, B2 = dot_rows(A, B, shp)
        return self._evaluate(self._multiplier()._products(A2, B2), A2, B2, c)

    def _gemm(self, A, B, Cb, batch, a_scale, b_scale):
        """``A @ B + Cb`` with broadcast ``batch`` dimensions: (*batch, M, N) values."""
        self._no_scales(a_scale, b_scale)
        M, K, N = A.shape[-2], A.shape[-1], B.shape[-1]
        nb = math.prod(batch)
        Ab = np.broadcast_to(A, batch + (M, K)).reshape(nb, M, K)
        Bb = np.broadcast_to(B, batch + (K, N)).reshape(nb, K, N)
        Cb = Cb.reshape(nb, M, N)
        D = np.empty((nb, M, N))
        for t in range(nb):
            D[t] = self._matmul(np.ascontiguousarray(Ab[t]), np.ascontiguousarray(Bb[t]),
                                np.ascontiguousarray(Cb[t]), row0=t * M * N)
        return D.reshape(batch + (M, N))

    def _matmul(self, A, B, C, row0=0):
        """``A @ B + C_`` (2-D): the products in chunks of output rows, then ``_evaluate``."""
        M, K = A.shape
        N = B.shape[1]
        D = np.empty((M, N))
        BT = np.ascontiguousarray(B.T)
        mult = self._multiplier()
        rows = max(1, _CHUNK_TERMS // max(K, 1))
        Dflat = D.reshape(-1)
        Cflat = C.reshape(-1)
        for r0 in range(0, M * N, rows):
            r1 = min(M * N, r0 + rows)
            idx = np.arange(r0, r1)
            A2 = A[idx // N]
            B2 = BT[idx % N]
            Dflat[r0:r1] = self._evaluate(mult._products(A2, B2), A2, B2,
                                          np.ascontiguousarray(Cflat[r0:r1]), row0=row0 + r0)
        return D


def _fmt_field(obj, name="fmt"):
    object.__setattr__(obj, name, acc_format(getattr(obj, name), f"{type(obj).__name__}.{name}"))


class _Leaf(Model):
    """A model with one accumulator run by one kernel leaf (``_leaf_args()``)."""

    @property
    def out_fmt(self):
        return self.fmt

    def _leaf_args(self):  # pragma: no cover - overridden
        """(leaf kind, RoundParams) of the kernel leaf."""
        raise NotImplementedError

    def _kernel_params(self):
        return self._leaf_args()

    def _node_params(self):
        return params(self.fmt, self.rounding)

    def _evaluate(self, T, TA, TB, c, row0=0, salt=0, axis_last=True):
        kind, p = self._leaf_args()
        if kind == _C.EXACT64:
            return _exact_f64_rows(np.asarray(T, dtype=np.float64), np.asarray(c, dtype=np.float64))
        if kind == _C.NUMPY and not axis_last:
            kind = _C.SEQ  # numpy adds whole rows elementwise along the other axes
        out = np.empty(T.shape[0])
        T = np.ascontiguousarray(T)
        raise_nan(_K.leaf(T, T, c, out, kind, p, 1, 0, 0, 0, 0.0), self.out_fmt)
        return out


@dataclass(frozen=True)
class Sequential(_Leaf):
    """Recursive summation ``s = c; for k: s = round(s + p_k)`` in ``fmt``.

    ``fma=False`` (default): every product is first rounded into ``fmt`` (a float32 loop
    ``s += a * b``); ``fma=True``: the exact product is added with one rounding.
    ``multiply`` overrides the product (``"exact"``, a format, or an L-Mul multiplier).
    ``Sequential("fp64", fma=True)`` is a chain of IEEE fp64 fused multiply-adds
    ``s = fma(a_k, b_k, s)`` and takes any float64 inputs (:class:`FusedProduct`; NVIDIA's
    fp64 ``mma`` and AMD's fp64 ``v_mfma`` run it, :func:`fpsim.hardware.mma`).

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
        object.__setattr__(self, "rounding", mode(self.rounding, stochastic=True))
        if self.seed is not None and (isinstance(self.seed, bool)
                                      or not isinstance(self.seed, (int, np.integer))):
            raise TypeError(f"Sequential.seed must be an int or None, got {self.seed!r}")
        if self.seed is not None and self.rounding != "stochastic":
            raise ValueError("Sequential.seed only applies to rounding='stochastic'")
        if not isinstance(self.fma, bool):
            raise TypeError(f"fma must be True or False, got {self.fma!r}")
        if self.multiply is not None:
            object.__setattr__(self, "multiply", as_multiplier(self.multiply))
        params(self.fmt, self.rounding, self.overflow)
        ovf = getattr(self.overflow, "value", self.overflow)
        if self._fp64() and ovf not in (None, "inf"):
            raise ValueError(f"Sequential({self.fmt.name}) adds in native float64 (an overflow "
                             f"is inf): overflow={ovf!r} is not supported there; allowed None "
                             "or 'inf'")

    def _multiplier(self):
        if self.multiply is not None:
            return self.multiply
        if self.fma and self._fp64():
            return FusedProduct()
        if self.fma or isinstance(self.fmt, FixedFormat):
            return ExactProduct()
        return RoundedProduct(self.fmt, "rne" if self.rounding == "stochastic" else self.rounding)

    def _leaf_args(self):
        return (leaf_kind(self.fmt, self.rounding, _C.SEQ),
                params(self.fmt, self.rounding, self.overflow))

    def _fp64(self):
        return leaf_kind(self.fmt, self.rounding, _C.SEQ) == _C.NATIVE

    def _evaluate(self, T, TA, TB, c, row0=0, salt=0, axis_last=True):
        if TA is not None and isinstance(self._multiplier(), FusedProduct):
            # fp64 FMA chain: the products exist only inside each fma (read the factors)
            TB = TB if TB is not None else np.ones_like(TA)
            out = np.empty(TA.shape[0])
            _K.fma64_rows(np.ascontiguousarray(TA, dtype=np.float64),
                          np.ascontiguousarray(TB, dtype=np.float64),
                          np.ascontiguousarray(c, dtype=np.float64), out)
            return out
        if self.rounding != "stochastic":
            return super()._evaluate(T, TA, TB, c, row0, salt, axis_last)
        _, p = self._leaf_args()
        out = np.empty(T.shape[0])
        err = _K.seq_stochastic(np.ascontiguousarray(T), np.ascontiguousarray(c, dtype=np.float64),
                               out, p, _sr_stream(self.seed, salt), np.int64(row0))
        raise_nan(err, self.out_fmt)
        return out

    def _matmul(self, A, B, C, row0=0):
        if isinstance(self._multiplier(), FusedProduct):  # fp64 FMA chains: one kernel
            D = np.empty((A.shape[0], B.shape[1]))
            _K.gemm_fma64(A, np.ascontiguousarray(B), C, D)
            return D
        fma = self._fast_f32()
        if fma is None:
            return super()._matmul(A, B, C, row0)
        D = np.empty((A.shape[0], B.shape[1]))
        # float32 data: native float32 arithmetic is the model (returns 1 for other data)
        if _G.seq_f32(A, B, C, D, fma) != 0:
            _K.gemm_seq_f32(A, np.ascontiguousarray(B), C, D, fma)
        return D

    def _fast_f32(self):
        """True (FMA) / False (rounded products) when this is the fp32 RNE loop the native
        float32 GEMM kernels run, else None."""
        f = self.fmt
        if not (isinstance(f, FloatFormat) and f == FP32 and self.rounding == "rne"
                and self.overflow in (None, "inf")):
            return None
        mult = self._multiplier()
        if isinstance(mult, ExactProduct):
            return True
        if isinstance(mult, RoundedProduct) and mult.fmt == FP32 and mult.rounding == "rne":
            return False
        return None


def _sr_stream(seed, salt) -> np.uint64:
    """The random stream of one stochastic leaf: the model's seed mixed with the salt of its
    place in a composite model (a fresh seed per call when ``seed`` is None)."""
    base = int(_L.seed(seed, Rounding.STOCHASTIC))
    return np.uint64((base + salt * 0xD1B54A32D192ED03) % 2**64)


@dataclass(frozen=True)
class _Simple(_Leaf):
    fmt: Format = "fp32"
    rounding: str = "rne"
    multiply: Multiplier | None = None

    _KIND = _C.SEQ

    def __post_init__(self):
        _fmt_field(self)
        object.__setattr__(self, "rounding", mode(self.rounding))
        object.__setattr__(self, "multiply", as_multiplier(self.multiply))
        params(self.fmt, self.rounding)
        leaf_kind(self.fmt, self.rounding, self._KIND)

    def _multiplier(self):
        return self.multiply

    def _leaf_args(self):
        return leaf_kind(self.fmt, self.rounding, self._KIND), params(self.fmt, self.rounding)


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


@dataclass(frozen=True)
class NumpyOrder(_Leaf):
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
        object.__setattr__(self, "rounding", mode(self.rounding))
        if self.multiply is not None:
            object.__setattr__(self, "multiply", as_multiplier(self.multiply))
        params(self.fmt, self.rounding)
        leaf_kind(self.fmt, self.rounding, _C.NUMPY)

    def _multiplier(self):
        return self.multiply if self.multiply is not None else RoundedProduct(self.fmt, self.rounding)

    def _leaf_args(self):
        return _C.NUMPY, params(self.fmt, self.rounding)


@dataclass(frozen=True)
class Integer(_Leaf):
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
        params(f, "rne", self.overflow)
        leaf_kind(f, "rne", _C.SEQ)

    def _multiplier(self):
        return ExactProduct()

    def _leaf_args(self):
        return _C.SEQ, params(self.fmt, "rne", self.overflow)

    def _node_params(self):
        return None  # a tree of integer additions is not offered (no rounding to choose)
