"""``with fpsim.torch.emulate(policy): ...`` — intercept torch ops and emulate them.

A :class:`torch.overrides.TorchFunctionMode` sees every torch function call made inside the
block. GEMM-like ops (linear, matmul/@, mm, bmm, addmm, baddbmm, addbmm, mv, addmv, dot,
inner, outer, addr, tensordot, multi_dot, einsum of any arity, bilinear, every convolution,
RNN/LSTM/GRU, scaled_dot_product_attention) go through :func:`fpsim.torch.gemm.gemm`;
softmax, normalisations, reductions and losses run at the policy's compute precision.
Python-level composites of ``torch.nn.functional`` (e.g. multi-head attention, the losses)
are run *inside* the mode so that their inner ops are emulated too. Which ops are covered is
the contract of :mod:`fpsim.torch.coverage`; ops it lists as pass-through raise under a
strict policy and run natively with one warning per op name otherwise.
"""

from __future__ import annotations

import difflib
import fnmatch
import warnings
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch.overrides import TorchFunctionMode

from . import coverage as _COV
from . import handlers as _HD
from .handlers import (COMPOSITES, OperandMismatchError, UnsupportedOpError, classify,
                       coverage_table, op_name, supported_ops)
from .policy import Policy, as_policy

__all__ = ["emulate", "EmulationMode", "UnsupportedOpError", "OperandMismatchError", "Report",
           "UNSUPPORTED", "supported_ops", "coverage_table"]


def __getattr__(name):
    if name == "UNSUPPORTED":  # the pass-through ops of the contract (functions), on demand
        return _HD.UNSUPPORTED
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# ---------------------------------------------------------------------------------------
# the mode
# ---------------------------------------------------------------------------------------

@dataclass
class Report:
    """What ran under an emulation: calls per op name, emulated and passed through.

    >>> r = Report(policy="bf16"); r.emulated["torch.matmul"] += 2
    >>> print(r)
    emulation report (policy 'bf16'): 2 emulated calls of 1 op, 0 pass-through
      emulated      torch.matmul  2
    """

    policy: str = ""
    emulated: Counter = field(default_factory=Counter)
    passthrough: Counter = field(default_factory=Counter)
    overrides_unmatched: list = field(default_factory=list)

    def as_dict(self) -> dict:
        """Plain-dict form (for JSON)."""
        return {"policy": self.policy, "emulated": dict(self.emulated),
                "passthrough": dict(self.passthrough),
                "overrides_unmatched": list(self.overrides_unmatched)}

    def __str__(self):
        ne, npt = sum(self.emulated.values()), sum(self.passthrough.values())
        lines = [f"emulation report (policy {self.policy!r}): {ne} emulated calls of "
                 f"{len(self.emulated)} op{'s' if len(self.emulated) != 1 else ''}, "
                 f"{npt} pass-through"]
        w = max([len(n) for n in list(self.emulated) + list(self.passthrough)] + [1])
        for n, c in sorted(self.emulated.items()):
            lines.append(f"  emulated      {n:<{w}}  {c}")
        for n, c in sorted(self.passthrough.items()):
            lines.append(f"  pass-through  {n:<{w}}  {c}")
        for p in self.overrides_unmatched:
            lines.append(f"  override pattern {p!r} matched no module")
        return "\n".join(lines)


# the composites and their dispatch-free copies, built once (Dynamo cannot iterate code objects)

_warned: set = set()


class EmulationMode(TorchFunctionMode):
    """The TorchFunctionMode behind :func:`emulate` (one per ``with`` block).

    ``report`` (optional) is a :class:`Report` to add this block's counts to.
    """

    def __init__(self, policy: Policy, model=None, report: Report | None = None):
        super().__init__()
        self.base = policy
        self.policy = policy
        self._names = {}
        self._all_names = []
        if policy.overrides and model is None:
            pats = ", ".join(repr(p) for p, _ in policy.overrides)
            raise ValueError(f"policy {policy.name!r} has per-module overrides ({pats}) but no "
                             "model= was given, so module names are unknown and the overrides "
                             "would be ignored: use emulate(policy, model=model) or "
                             "fpsim.torch.convert(model, policy)")
        if model is not None:
            self._names = {id(m): n for n, m in model.named_modules()}
            self._all_names = sorted({n for n in self._names.values() if n} |
                                     {type(m).__name__ for m in model.modules()})
        self._stack = []
        self._hooks = []
        self._matched = set()
        self._report = report if report is not None else Report(policy=policy.name)
        self._pt_calls = 0

    def report(self) -> Report:
        """Counts per op name of what ran emulated and what passed through (so far)."""
        return self._report

    # module tracking for per-module overrides
    def _pre(self, module, inputs):
        # the innermost module matching an override pattern sets the policy; modules that
        # match nothing inherit their parent's
        name = self._names.get(id(module), "")
        self._stack.append(self.policy)
        hit = self.base.match(name, type(module).__name__)
        if hit is not None:
            self._matched.add(hit[0])
            self.policy = hit[1]

    def _post(self, module, inputs, output):
        if self._stack:
            self.policy = self._stack.pop()

    def __enter__(self):
        # composites re-enter the mode (``with self`` in __torch_function__): only the
        # outermost entry installs the module hooks, only its exit removes them and checks
        # the overrides (a nested exit used to remove the hooks mid-forward)
        self._depth = getattr(self, "_depth", 0) + 1
        if self.base.overrides and self._depth == 1:
            from torch.nn.modules import module as _m
            self._hooks = [_m.register_module_forward_pre_hook(self._pre),
                           _m.register_module_forward_hook(self._post, always_call=True)]
        return super().__enter__()

    def __exit__(self, *exc):
        self._depth -= 1
        out = super().__exit__(*exc)
        if self._depth == 0:
            for h in self._hooks:
                h.remove()
            self._hooks = []
            if self.base.overrides and exc[0] is None:
                self._check_overrides()
        return out

    def _check_overrides(self):
        for pat, _ in self.base.overrides:
            if pat in self._matched:
                continue
            if pat not in self._report.overrides_unmatched:
                self._report.overrides_unmatched.append(pat)
            close = difflib.get_close_matches(pat, self._all_names, n=3, cutoff=0.4)
            static = any(fnmatch.fnmatchcase(n, pat) for n in self._all_names)
            msg = (f"override pattern {pat!r} of policy {self.base.name!r} matched no module "
                   + ("that ran in this block" if static else "of the model")
                   + (f"; closest module names: {', '.join(close)}" if close else
                      f"; module names look like: {', '.join(self._all_names[:5])}"))
            if self.base.strict:
                raise ValueError(msg)
            key = ("override", pat, self.base.name)
            if key not in _warned:
                _warned.add(key)
                warnings.warn("fpsim.torch: " + msg + " (warned once)", RuntimeWarning, stacklevel=3)

    def unsupported(self, func, args, kwargs, what=None):
        """Run ``func`` natively (warn once per op name and policy) or raise if strict."""
        what = what or op_name(func)
        self._pt_calls += 1
        self._report.passthrough[what] += 1
        reason = classify(func)
        reason = "" if reason in (None, "emulated", "composite") else f" ({reason})"
        if self.policy.strict:
            raise UnsupportedOpError(
                f"{what} is not emulated by fpsim{reason}; policy {self.policy.name!r} is "
                "strict. fpsim.torch.coverage_table() lists what is emulated; use a lenient "
                "policy (strict=False) to run it natively in fp32")
        key = (what, self.policy.name)
        if key not in _warned:
            _warned.add(key)
            warnings.warn(f"fpsim.torch: {what} is not emulated under {self.policy.name!r}{reason}; "
                          "it runs natively in fp32 (warned once per op and policy)",
                          RuntimeWarning, stacklevel=3)
        with torch._C.DisableTorchFunction():
            return func(*args, **kwargs)

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        h = _HD.HANDLERS.get(func)  # module attribute: tests may swap the table
        if h is not None:
            n0 = self._pt_calls
            out = h(self, func, args, kwargs)
            if self._pt_calls == n0:
                self._report.emulated[op_name(func)] += 1
            return out
        inner = COMPOSITES.get(func)  # a dict lookup, not is_composite: torch.compile can trace it
        if inner is not None:
            with self:
                return inner(*args, **kwargs)
        if _passthrough(func):
            return self.unsupported(func, args, kwargs)
        return func(*args, **kwargs)


_pt_cache: dict = {}


def _passthrough(func) -> bool:
    """Whether ``func`` is a pass-through op of the contract (cached per function)."""
    try:
        v = _pt_cache.get(func)
    except TypeError:  # unhashable callables are not torch ops of the rule
        return False
    if v is None:
        n = op_name(func)
        v = _pt_cache[func] = n in _COV.PASSTHROUGH or _COV.matches_rule(n)
    return v


def emulate(policy="fp32", *, model=None, strict=None, report=None):
    """Context manager: run torch code inside under ``policy`` (a Policy or profile name).

    ``model`` gives qualified module names for the policy's per-module overrides (required
    when the policy has overrides); ``strict`` overrides the policy's strictness; ``report``
    (a :class:`Report`) accumulates the op counts of several blocks. After the block,
    ``mode.report()`` says what ran emulated and what passed through.

    >>> import torch, fpsim.torch as ft
    >>> lin = torch.nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = lin.weight.copy_(torch.tensor([[1.0, 1.0]]))
    >>> x = torch.tensor([[1.0, 0.001]])
    >>> with ft.emulate("bf16") as mode:
    ...     y = lin(x)
    >>> y.item()  # bf16 inputs: 0.001 -> 0.0010004; fp32 sum 1.0010004, bf16 output
    1.0
    >>> dict(mode.report().emulated)
    {'torch.nn.functional.linear': 1}
    """
    pol = as_policy(policy, model)
    if strict is not None:
        pol = pol.replace(strict=bool(strict))
    return EmulationMode(pol, model=model, report=report)
