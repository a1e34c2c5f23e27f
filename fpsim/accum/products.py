"""Multipliers: how the products of a dot product are formed (the ``multiply=`` option).

Each multiplier forms its products itself (``_products(A, B)``); ``_narrow_inputs`` says
whether its products are exact float64 products, which needs inputs of at most 26
significant bits (checked by :func:`fpsim.accum.inputs.check_inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from .. import arith as _AR
from ..formats import FloatFormat, Format, as_format
from ._common import K as _K, acc_format, mode, params, raise_nan

__all__ = ["ExactProduct", "FusedProduct", "LMulProduct", "Multiplier", "RoundedProduct",
           "as_multiplier"]


@dataclass(frozen=True)
class ExactProduct:
    """Products are exact (needs inputs of at most 26 significant bits).

    >>> import fpsim
    >>> fpsim.accum.ExactProduct()
    ExactProduct()
    """

    _narrow_inputs = True

    def _products(self, A, B):
        with np.errstate(invalid="ignore", over="ignore"):
            return A * B


@dataclass(frozen=True)
class FusedProduct:
    """The exact product inside a fused multiply-add into an fp64 accumulator
    (``Sequential("fp64", fma=True)``): never rounded, never held on its own - the
    accumulator reads the factors (float64 cannot hold the product of two float64 values),
    so inputs may be any float64 values. It is the multiplier of that model only (not an
    option of ``multiply=``).

    >>> import fpsim
    >>> fpsim.accum.Sequential("fp64", fma=True)._multiplier()
    FusedProduct()
    """

    _narrow_inputs = False

    def _products(self, A, B):
        # float64's rounding of each product: what a model summing given terms would see;
        # the fp64 FMA leaf reads the factors instead (Sequential._evaluate)
        with np.errstate(invalid="ignore", over="ignore", under="ignore"):
            return A * B


@dataclass(frozen=True)
class RoundedProduct:
    """Every product is rounded once into ``fmt`` with ``rounding``.

    >>> import fpsim
    >>> fpsim.accum.RoundedProduct("bf16").fmt.name
    'bf16'
    """

    fmt: Format
    rounding: str = "rne"

    _narrow_inputs = True

    def __post_init__(self):
        object.__setattr__(self, "fmt", acc_format(self.fmt, "RoundedProduct.fmt"))
        object.__setattr__(self, "rounding", mode(self.rounding))

    def _kernel_params(self):
        return params(self.fmt, self.rounding)

    def _products(self, A, B):
        shape = np.broadcast_shapes(A.shape, B.shape)
        with np.errstate(invalid="ignore", over="ignore"):
            P = np.ascontiguousarray(np.broadcast_to(A * B, shape))
        # A*B is exact for inputs of <= 26 bits (wider inputs are refused before), so one
        # rounding of it is the correctly rounded product
        flat = P.reshape(-1)
        o = np.empty_like(flat)
        raise_nan(_K.round_array(flat, o, self._kernel_params()), self.fmt)
        return o.reshape(P.shape)


@dataclass(frozen=True)
class LMulProduct:
    """L-Mul products (Luo & Sun 2024) of ``man_bits``-bit operands (see :func:`fpsim.lmul`).

    The L-Mul value is kept exactly (float64).

    >>> import fpsim
    >>> fpsim.accum.LMulProduct(3)
    LMulProduct(man_bits=3, semantics='int', fmt=None)
    """

    man_bits: int
    semantics: str = "int"
    fmt: Format | None = None

    _narrow_inputs = False  # L-Mul never multiplies the significands

    def __post_init__(self):
        if self.semantics not in ("int", "formula"):
            raise ValueError(f"semantics={self.semantics!r}: allowed 'int' or 'formula'")
        if self.fmt is not None:
            object.__setattr__(self, "fmt", as_format(self.fmt))

    def _products(self, A, B):
        fmt = self.fmt if self.fmt is not None else FloatFormat(8, self.man_bits)
        return np.asarray(_AR.lmul(A, B, self.man_bits, semantics=self.semantics, fmt=fmt,
                                     out_fmt="fp64"), dtype=np.float64)


Multiplier = Union[ExactProduct, RoundedProduct, LMulProduct]


def as_multiplier(m, default=None):
    """The multiplier a ``multiply=`` option names (None: ``default``, else exact products).

    >>> as_multiplier("bf16")
    RoundedProduct(fmt=FloatFormat(8, 7), rounding='rne')
    """
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
