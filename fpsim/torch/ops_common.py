"""What the op handlers of :func:`fpsim.torch.emulate` share: their errors, the op-name
lookup and the argument reader."""

from __future__ import annotations

import torch

from . import coverage as _COV

__all__ = ["UnsupportedOpError", "OperandMismatchError", "op_name", "arg"]


class UnsupportedOpError(NotImplementedError):
    """An op with arithmetic fpsim cannot emulate ran under a strict policy."""


class OperandMismatchError(RuntimeError):
    """GEMM operands of different dtypes (eager torch raises a RuntimeError too; a TypeError
    would be swallowed by ``Tensor.__matmul__`` into a meaningless "unsupported operand")."""


# torch.compile: a constant at trace time, not traced string operations
op_name = torch.compiler.assume_constant_result(_COV.op_name)


def arg(args, kwargs, i, name, default=None):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)
