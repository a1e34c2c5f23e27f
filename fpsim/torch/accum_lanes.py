"""Elementwise float64 lane helpers of the torch accumulation path (:mod:`fpsim.torch.accum`,
:mod:`fpsim.torch.accum_scaled`, :mod:`fpsim.torch.accum_mfma`): torch twins of the scalar
helpers of the Numba kernels (``pow2``, ``exp_of``, ``norm_exp``, round-to-odd addition, one
rounding with kernel RoundParams), applied to whole tensors of lanes.

Internal to the torch bridge (public names because its modules share them).

>>> import torch
>>> from fpsim.torch.accum_lanes import exp_of, pow2
>>> exp_of(torch.tensor([1.0, 3.0, 2.0**-1074], dtype=torch.float64)).tolist()
[0, 1, -1074]
>>> pow2(torch.tensor([-1074, -1075, 1024])).tolist()
[5e-324, 0.0, inf]
"""

from __future__ import annotations

import torch

from .. import accum as _A
from .quantize import round_bits

__all__ = ["SENT", "exp_of", "f64", "fp32_params", "norm_exp", "odd_sum", "pow2", "pow2_normal",
           "round_into"]

SENT = -(1 << 32)  # exponent of a zero (or non-finite) factor: never a block's maximum


def fp32_params(rounding="rne"):
    """Kernel RoundParams of an fp32 result rounded with ``rounding`` (an overflow gives
    inf): the parameters the engines' kernels round with (from :func:`fpsim.accum.kernel_params`).

    >>> fp32_params("rtz").M
    23
    """
    return _A.kernel_params(_A.Sequential("fp32", rounding=rounding, overflow="inf"))[1]


def f64(bits):
    """int64 bit patterns viewed as float64."""
    return bits.view(torch.float64)


def round_into(x, p, fmt):
    """round(x) into the RoundParams ``p`` of ``fmt`` (float64 in, float64 values out)."""
    r, err = round_bits(x.contiguous().view(torch.int64), p)
    if r is None:
        raise ValueError(f"the accumulator format {fmt.name} has no NaN but the computation "
                         f"produced {err} NaN value(s) (NaN inputs or inf - inf)")
    return f64(r)


def odd_sum(a, b):
    """float64 round-to-odd of the exact a + b (two_sum; inf/NaN as IEEE addition)."""
    h = a + b
    bb = h - a
    lo = (a - (h - bb)) + (b - bb)
    hh = h.view(torch.int64)
    # an inexact result with an even last bit steps one ulp toward lo (the odd neighbour)
    step = torch.where((lo > 0) == (hh >= 0), 1, -1)
    fix = (lo != 0) & ((hh & 1) == 0) & torch.isfinite(h)
    return f64(torch.where(fix, hh + step, hh))


def pow2_normal(e):
    """2.0**e as float64 from the bit pattern (int64 tensor e, -1022 <= e <= 1023)."""
    return f64((e + 1023) << 52)


def pow2(e):
    """2.0**e for any int64 tensor e, as the kernels' ``pow2``: exact for -1074 <= e <= 1023
    (subnormals from their bit), 0.0 below, inf above."""
    e = torch.as_tensor(e, dtype=torch.int64)
    normal = pow2_normal(torch.clamp(e, -1022, 1023))
    sub = f64(torch.ones_like(e) << torch.clamp(e + 1074, 0, 51))
    r = torch.where(e < -1022, sub, normal)
    r = torch.where(e < -1074, torch.zeros_like(r), r)
    return torch.where(e > 1023, torch.full_like(r, float("inf")), r)


def exp_of(x):
    """Exponent of the leading bit of nonzero finite float64 lanes (subnormals too)."""
    return torch.frexp(x)[1].to(torch.int64) - 1


def norm_exp(x, emin):
    """The kernels' ``norm_exp``: the leading bit's exponent clamped at ``emin``; a zero
    gives ``emin`` (non-finite lanes give ``emin`` too: callers take them apart)."""
    ok = (x != 0) & torch.isfinite(x)
    e = torch.clamp(exp_of(torch.where(ok, x, torch.ones_like(x))), min=emin)
    return e.masked_fill(~ok, emin)
