"""Ops run at the policy's compute precision under :func:`fpsim.torch.emulate`: softmax,
normalisations, reductions and losses (inputs and outputs rounded to the compute format).

Each handler takes ``(mode, func, args, kwargs)``; :mod:`fpsim.torch.handlers` maps torch
functions to them.
"""

from __future__ import annotations

import torch

from .ops_common import arg, op_name
from .quantize import quantize

__all__ = ["cq", "cq_all", "softmax_core", "softmax", "first_in_compute",
           "all_in_compute"]


def cq(x, pol):
    """Round into the compute precision (straight-through)."""
    if pol.compute is None or not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return x
    return quantize(x, pol.compute, rounding=pol.rounding)


def cq_all(y, pol):
    if isinstance(y, (tuple, list)):
        return type(y)(cq(t, pol) for t in y)
    return cq(y, pol)


def softmax_core(x, dim, pol, log=False, dtype=None):
    x = cq(x, pol)
    if dtype is not None:
        x = x.to(dtype)
    y = torch.log_softmax(x, dim) if log else torch.softmax(x, dim)
    return cq(y, pol)


def softmax(mode, func, args, kwargs):
    x = arg(args, kwargs, 0, "input")
    dim = arg(args, kwargs, 1, "dim")
    if mode.policy.compute is None or not x.is_floating_point() or dim is None:
        return func(*args, **kwargs)
    if isinstance(dim, str):
        return mode.unsupported(func, args, kwargs, f"{op_name(func)} with a named dim")
    dtype = kwargs.get("dtype", arg(args, kwargs, 3 if "functional" in op_name(func) else 2, "dtype")
                       if len(args) > 2 and not isinstance(args[2], int) else kwargs.get("dtype"))
    return softmax_core(x, dim, mode.policy, log="log_softmax" in op_name(func), dtype=dtype)


def first_in_compute(mode, func, args, kwargs):
    """Norms and reductions: the input (first argument only: running statistics of batch
    norm are updated in place and must stay the caller's tensors) and the results are
    rounded into the compute precision, fp32 arithmetic in between."""
    pol = mode.policy
    if kwargs.get("out") is not None:
        return mode.unsupported(func, args, kwargs, f"{op_name(func)}(out=...)")
    norm = getattr(pol.accum, "norm", None)  # a Deployment's norm kernel (row-count split)
    if norm is not None:
        y = norm(func, args, kwargs)
        if y is not NotImplemented:
            return y
    if pol.compute is None:
        return func(*args, **kwargs)
    if args:
        args = (cq(args[0], pol),) + tuple(args[1:])
    elif "input" in kwargs:
        kwargs = dict(kwargs, input=cq(kwargs["input"], pol))
    return cq_all(func(*args, **kwargs), pol)


def all_in_compute(mode, func, args, kwargs):
    """Losses and similarities: every floating tensor argument and the result are rounded
    into the compute precision."""
    pol = mode.policy
    if pol.compute is None:
        return func(*args, **kwargs)
    args = tuple(cq(a, pol) for a in args)
    kwargs = {k: cq(v, pol) for k, v in kwargs.items()}
    return cq_all(func(*args, **kwargs), pol)
