"""PyTorch bridge: run unmodified ``torch.nn.Module`` s under emulated hardware (SPEC §5).

``import fpsim`` never imports torch; ``import fpsim.torch`` does.

>>> import torch, fpsim.torch as ft
>>> ft.quantize(torch.tensor([0.1]), "bf16")
tensor([0.1001])
"""

from . import profiles
from .deployment import Deployment
from .recipes import NVFP4Recipe
from .convert import EmulatedModule, LowPrecisionOptimizer, convert
from .gemm import gemm
from . import mode
from .mode import (EmulationMode, OperandMismatchError, Report, UnsupportedOpError, coverage_table,
                   emulate, supported_ops)
from .policy import Policy, Scaled, as_policy
from .quantize import BACKWARD_MODES, IMPLS, is_block_format, quantize
from .tiny import TinyGPT

__all__ = ["quantize", "BACKWARD_MODES", "IMPLS", "is_block_format", "Policy", "Scaled",
           "as_policy", "profiles", "emulate", "EmulationMode", "UnsupportedOpError",
           "UNSUPPORTED", "supported_ops", "coverage_table", "Report", "OperandMismatchError", "gemm",
           "convert", "EmulatedModule", "LowPrecisionOptimizer", "TinyGPT", "Deployment",
           "NVFP4Recipe"]


def __getattr__(name):
    # UNSUPPORTED (the contract's pass-through ops) is built on first use: enumerating
    # torch.overrides at import would slow down ``import fpsim.torch``
    if name == "UNSUPPORTED":
        return mode.UNSUPPORTED
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
