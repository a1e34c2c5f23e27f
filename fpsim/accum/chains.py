"""Models built from other models: split-K (:class:`Blocked`), the FP8 promotion recipe
(:class:`Promoted`) and other summation orders (:class:`Permuted`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..formats import FixedFormat, FloatFormat
from ._common import C as _C, K as _K
from ._common import raise_nan
from .fused import FusedBlock
from .models import Model, Sequential
from .products import FusedProduct

__all__ = ["Blocked", "Permuted", "Promoted"]


class _OverInner(Model):
    """A model built on ``self.inner``: its inputs, products and (unless overridden) output
    are the inner model's."""

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


@dataclass(frozen=True)
class Blocked(_OverInner):
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

    def _evaluate(self, T, TA, TB, c, row0=0, salt=0, axis_last=True):
        R, K = T.shape
        k = self.k
        nfull, rem = divmod(K, k)
        parts = []
        # each sub-sum gets its own salt, so stochastic leaves never share random bits
        if nfull:
            sl = slice(0, nfull * k)
            rs = (lambda X: None if X is None else np.ascontiguousarray(X[:, sl]).reshape(R * nfull, k))
            parts.append(self.inner._evaluate(rs(T), rs(TA), rs(TB), np.zeros(R * nfull),
                                              row0=row0 * nfull, salt=4 * salt + 1).reshape(R, nfull))
        if rem:
            sl = slice(nfull * k, K)
            rs = (lambda X: None if X is None else np.ascontiguousarray(X[:, sl]))
            parts.append(self.inner._evaluate(rs(T), rs(TA), rs(TB), np.zeros(R), row0=row0,
                                              salt=4 * salt + 2).reshape(R, 1))
        P = np.concatenate(parts, axis=1) if parts else np.zeros((R, 0))
        return self.outer._evaluate(P, None, None, c, row0=row0, salt=4 * salt + 3)

    def _matmul(self, A, B, C, row0=0):
        # FusedBlock chunks added into a deterministic Sequential accumulator: one kernel
        if (isinstance(self.inner, FusedBlock) and isinstance(self.outer, Sequential)
                and self.outer.rounding != "stochastic"):
            kind, po = self.outer._leaf_args()
            if kind == _C.SEQ:  # (an fp64 outer adds natively: the general path)
                D = self.inner._matmul_split_k(A, B, C, int(self.k), po, self.out_fmt)
                if D is not None:
                    return D
        return super()._matmul(A, B, C, row0)


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
class Permuted(_OverInner):
    """Sum in another order: ``order`` a permutation of ``range(K)`` (summed by ``inner``),
    or a tree of nested tuples of indices (every node rounded into ``inner``'s format and
    rounding, children left to right, ``d = round(c + tree)``), or ``seed`` for a random
    permutation (the same for every dot product of one call).

    ``period``: ``order`` is a permutation of ``range(period)`` applied to every chunk of
    ``period`` terms (the order *inside* each instruction of a chained matrix engine, the
    same for every K); a last partial chunk is padded with zero terms first, as the
    hardware pads K to a whole instruction.

    >>> import numpy as np, fpsim
    >>> x = np.array([1.0, 2.0**-24, 2.0**-24])
    >>> seq = fpsim.accum.Sequential("fp32")
    >>> float(fpsim.sum(x, model=fpsim.accum.Permuted(seq, order=[1, 2, 0])))
    1.0000001192092896
    >>> float(fpsim.sum(x, model=fpsim.accum.Permuted(seq, order=((0, 1), 2))))
    1.0
    >>> float(fpsim.sum(x, model=fpsim.accum.Permuted(seq, order=[1, 0], period=2)))  # 2**-24, 1, 0, 2**-24
    1.0
    """

    inner: Model
    order: tuple | None = None
    seed: int | None = None
    period: int | None = None

    def __post_init__(self):
        if not isinstance(self.inner, Model):
            raise TypeError(f"Permuted.inner must be an accumulation model, got {self.inner!r}")
        if (self.order is None) == (self.seed is None):
            raise ValueError("Permuted needs exactly one of order= (a permutation or a tree) "
                             "and seed=")
        if self.order is not None:
            object.__setattr__(self, "order", _freeze(self.order))
            if self._is_tree() and self.inner._node_params() is None:
                raise ValueError("a tree order needs a leaf inner model with fmt/rounding "
                                 "(Sequential, Pairwise, Kahan, Exact)")
            if self._is_tree() and isinstance(self.inner._multiplier(), FusedProduct):
                raise ValueError("a tree order adds products held on their own; "
                                 "Sequential('fp64', fma=True) forms them inside its fused "
                                 "multiply-adds: use a permutation order, or "
                                 "Sequential('fp64', multiply='exact') for inputs of at most "
                                 "26 significant bits")
            if self._is_tree() and self.inner.rounding == "stochastic":
                raise ValueError("a tree order rounds its nodes to nearest or directed only; "
                                 "stochastic rounding needs a permutation order (or seed=)")
        if self.period is not None:
            p = self.period
            if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 1:
                raise ValueError(f"Permuted.period={p!r}: allowed a positive int (or None)")
            if self.order is None or self._is_tree():
                raise ValueError("Permuted.period needs order= as a permutation of "
                                 "range(period) (not a seed or a tree)")
            object.__setattr__(self, "period", int(p))
            self._perm(int(p))  # checks the order against the period now

    def _is_tree(self):
        return self.order is not None and any(isinstance(o, tuple) for o in self.order)

    def _perm(self, K):
        if self.period is not None and K != self.period:  # tile the order (K padded first)
            base = self._perm(self.period)
            return (np.arange(0, K, self.period)[:, None] + base[None, :]).reshape(-1)
        if self.seed is not None:
            return np.random.default_rng(self.seed).permutation(K)
        perm = np.asarray(self.order, dtype=np.int64)
        if perm.shape != (K,) or not np.array_equal(np.sort(perm), np.arange(K)):
            raise ValueError(f"Permuted.order must be a permutation of range({K}) for K={K}")
        return perm

    def _evaluate(self, T, TA, TB, c, row0=0, salt=0, axis_last=True):
        if self._is_tree():
            return self._evaluate_tree(T, c)
        K = T.shape[1]
        if self.period is not None and K % self.period:  # zero terms up to a whole chunk
            pad = (lambda X: None if X is None else np.concatenate(
                [X, np.zeros((X.shape[0], self.period - K % self.period), X.dtype)], axis=1))
            T, TA, TB = pad(T), pad(TA), pad(TB)
        perm = self._perm(T.shape[1])
        sub = (lambda X: None if X is None else X[:, perm])
        return self.inner._evaluate(T[:, perm], sub(TA), sub(TB), c, row0=row0, salt=salt)

    def _evaluate_tree(self, T, c):
        p = self.inner._node_params()
        fmt = self.inner.out_fmt
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
                raise_nan(_K.add_arrays(acc, v, out, p), fmt)
                acc = out
            if len(vals) == 1:  # a single child is still rounded into the format
                out = np.empty_like(acc)
                raise_nan(_K.round_array(acc, out, p), fmt)
                acc = out
            return acc

        tree = walk(self.order)
        K = T.shape[1]
        if sorted(seen) != list(range(K)):
            raise ValueError(f"Permuted tree must use every index 0..{K - 1} exactly once")
        out = np.empty_like(tree)
        raise_nan(_K.add_arrays(np.ascontiguousarray(c, dtype=np.float64), tree, out, p), fmt)
        return out


def _freeze(o):
    if isinstance(o, (list, tuple)):
        return tuple(_freeze(x) for x in o)
    if isinstance(o, np.ndarray):
        return tuple(_freeze(x) for x in o.tolist())
    if isinstance(o, (int, np.integer)) and not isinstance(o, bool):
        return int(o)
    raise TypeError(f"order entries must be ints or nested tuples of ints, got {o!r}")
