"""Plumbing of the ``torch.ops.fpsim`` custom ops that make emulated models compile.

The Numba/numpy kernels are wrapped in :func:`torch.library.custom_op` s (defined next to
their implementations: ``fpsim::quantize`` in :mod:`fpsim.torch.quantize`, the model GEMM,
its backward and the gradient rounding in :mod:`fpsim.torch.gemm`), each with a fake
(shape-only) implementation and an autograd formula, so that ``torch.compile`` sees one
opaque node per kernel call and never traces into Numba or numpy. Eager code calls the same
ops, so eager and compiled runs execute the very same kernels on the very same operands.

A custom op only takes tensors and plain scalars/strings; formats, block formats, policies
and accumulation models travel as string keys of this module's registry. :func:`key` is
marked :func:`torch.compiler.assume_constant_result`: Dynamo evaluates it while tracing
and bakes the key into the graph (the object itself is a constant of the traced code).

>>> from fpsim.torch import _ops
>>> import fpsim
>>> k = _ops.key(fpsim.as_format("e4m3"))
>>> _ops.lookup(k) == fpsim.as_format("e4m3"), _ops.key(None), _ops.lookup("")
(True, '', None)
"""

from __future__ import annotations

import torch

__all__ = ["NAMESPACE", "key", "lookup", "int64_seed"]

#: The torch.library namespace of fpsim's ops (``torch.ops.fpsim.*``).
NAMESPACE = "fpsim"

_OBJECTS: dict = {}   # key -> object (kept alive, so an id-keyed entry is never reused)
_BY_VALUE: dict = {}  # hashable object -> key: equal objects (frozen dataclasses) share one
_BY_ID: dict = {}     # id(unhashable object) -> key


@torch.compiler.assume_constant_result
def key(obj) -> str:
    """The registry key of ``obj`` (``""`` for None); equal hashable objects share a key.

    Formats, policies and models are frozen dataclasses, so building a fresh but equal
    object on every call (``as_format("e4m3")``) does not grow the registry.

    >>> key(None)
    ''
    """
    if obj is None:
        return ""
    try:
        k = _BY_VALUE.get(obj)
        table, ident = _BY_VALUE, obj
    except (TypeError, ValueError):  # unhashable (a policy whose overrides hold dicts) or
        # an object whose == is elementwise
        k = _BY_ID.get(id(obj))
        table, ident = _BY_ID, id(obj)
    if k is None:
        k = f"{len(_OBJECTS)}:{type(obj).__name__}:{getattr(obj, 'name', '')}"
        _OBJECTS[k] = obj
        table[ident] = k
    return k


def lookup(k: str):
    """The object registered under ``k`` (None for ``""``).

    >>> lookup("")
    """
    if k == "":
        return None
    try:
        return _OBJECTS[k]
    except KeyError:
        raise ValueError(f"{k!r} is not a key of fpsim's op registry (keys come from "
                         "fpsim.torch._ops.key in this process)") from None


def int64_seed(seed):
    """An int seed as the int64 with the same low 64 bits (custom ops take int64 only);
    fpsim reduces seeds modulo 2**64, so the stream is unchanged.

    >>> int64_seed(2**64 - 1), int64_seed(5)
    (-1, 5)
    """
    s = int(seed) % (1 << 64)
    return s - (1 << 64) if s >= 1 << 63 else s
