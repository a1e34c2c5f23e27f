"""Persistent emulation: :func:`convert` wraps a model; :class:`LowPrecisionOptimizer` keeps
master weights and optimizer state in low precision with stochastic rounding.
"""

from __future__ import annotations

import zlib

import torch

from ..formats import as_format
from .mode import Report, emulate
from .policy import as_policy
from .quantize import quantize

__all__ = ["convert", "EmulatedModule", "LowPrecisionOptimizer"]


_PREFIX = "module."


def _strip_prefix(module, state_dict, prefix, local_metadata):
    """state_dict hook: the wrapped model's keys, without this wrapper's ``module.`` level,
    so a converted model's checkpoint loads into the plain model and back (issue 15)."""
    inner = prefix + _PREFIX
    for k in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + k[len(inner):]] = state_dict.pop(k)
    meta = getattr(state_dict, "_metadata", None)
    if meta is not None:
        for k in [k for k in meta if k == inner[:-1] or k.startswith(inner)]:
            meta[prefix + k[len(inner):] if k != inner[:-1] else prefix[:-1]] = meta.pop(k)


def _add_prefix(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
    """load_state_dict pre-hook: accept plain keys (as :func:`_strip_prefix` writes them)
    and the older ``module.``-prefixed ones."""
    inner = prefix + _PREFIX
    for k in [k for k in state_dict if k.startswith(prefix) and not k.startswith(inner)]:
        state_dict[inner + k[len(prefix):]] = state_dict.pop(k)


class EmulatedModule(torch.nn.Module):
    """A model whose every call runs under :func:`emulate` (see :func:`convert`).

    ``state_dict()`` has the wrapped model's keys (no ``module.`` prefix); :meth:`report`
    counts what ran emulated and what passed through over all calls so far.
    """

    def __init__(self, module: torch.nn.Module, policy):
        super().__init__()
        self.module = module
        self.policy = as_policy(policy, module)
        self._report = Report(policy=self.policy.name)
        self._register_state_dict_hook(_strip_prefix)
        self._register_load_state_dict_pre_hook(_add_prefix, with_module=True)

    def forward(self, *args, **kwargs):
        with emulate(self.policy, model=self.module, report=self._report):
            return self.module(*args, **kwargs)

    def report(self) -> Report:
        """Op counts (emulated / pass-through) of every call of this model so far.

        >>> import torch, fpsim.torch as ft
        >>> net = ft.convert(torch.nn.Linear(4, 2), "bf16"); _ = net(torch.ones(1, 4))
        >>> dict(net.report().emulated)
        {'torch.nn.functional.linear': 1}
        """
        return self._report

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("module"), name)

    def extra_repr(self) -> str:
        return f"policy={self.policy.name!r}"


def convert(model: torch.nn.Module, policy) -> EmulatedModule:
    """Wrap ``model`` so that every forward (and the backward GEMMs) run under ``policy``.

    Per-module overrides of the policy match the model's qualified module names. Other
    attributes (``generate``, ``config``, ...) are forwarded to the wrapped model, and its
    parameters are shared, not copied.

    >>> import torch, fpsim.torch as ft
    >>> net = ft.convert(torch.nn.Linear(4, 2), "bf16")
    >>> net(torch.ones(1, 4)).shape
    torch.Size([1, 2])
    >>> list(net.state_dict())  # the wrapped model's keys
    ['weight', 'bias']
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"convert takes a torch.nn.Module, got {type(model).__name__}")
    return EmulatedModule(model, policy)


class LowPrecisionOptimizer:
    """Wrap a torch optimizer: after each step, round the parameters (master weights) and
    the optimizer state into low-precision formats, by default with stochastic rounding.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
    weight_fmt : format or None
        Format of the stored (master) weights, e.g. ``"bf16"``; ``None`` keeps fp32.
    state_fmt : format or None
        Format of every floating optimizer state tensor (Adam moments, momentum).
    rounding : str
        ``"stochastic"`` (default: unbiased small updates survive) or any rounding mode.
    seed : int
        Stochastic rounding stream; runs with the same seed are identical.

    Examples
    --------
    >>> import torch, fpsim.torch as ft
    >>> p = torch.nn.Parameter(torch.ones(3))
    >>> opt = ft.LowPrecisionOptimizer(torch.optim.SGD([p], lr=1e-4), "bf16", rounding="rne")
    >>> p.grad = torch.ones(3); opt.step(); p.data   # 1 - 1e-4 rounds back to 1 in bf16
    tensor([1., 1., 1.])
    """

    def __init__(self, optimizer, weight_fmt="bf16", state_fmt=None, *, rounding="stochastic",
                 seed=0):
        self.optimizer = optimizer
        self.weight_fmt = None if weight_fmt is None else as_format(weight_fmt)
        self.state_fmt = None if state_fmt is None else as_format(state_fmt)
        self.rounding = rounding
        self.seed = int(seed)
        self._step = 0

    def _round(self, t, fmt, k):
        seed = (self.seed * 1_000_003 + self._step * 7919 + k) % 2**63
        with torch._C.DisableTorchFunction():
            return quantize(t.detach(), fmt, rounding=self.rounding, seed=seed)

    @torch.no_grad()
    def step(self, closure=None):
        """Optimizer step, then rounding of weights and state."""
        loss = self.optimizer.step(closure)
        k = 0
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                k += 1
                if self.weight_fmt is not None and p.is_floating_point():
                    p.copy_(self._round(p, self.weight_fmt, 2 * k))
                if self.state_fmt is not None:
                    for name, s in self.optimizer.state.get(p, {}).items():
                        if isinstance(s, torch.Tensor) and s.is_floating_point() and s.dim() > 0:
                            s.copy_(self._round(s, self.state_fmt, 2 * k + 1 + zlib.crc32(str(name).encode()) % 1000))
        self._step += 1
        return loss

    def zero_grad(self, set_to_none: bool = True):
        """Same as the wrapped optimizer's."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @property
    def state(self):
        return self.optimizer.state
