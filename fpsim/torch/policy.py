"""What to emulate: :class:`Policy` (formats per tensor role, accumulation model, compute
precision, per-module overrides) and :class:`Scaled` (amax-scaled element formats).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass, field
from typing import Any

import torch

from ..formats import Format, as_format

__all__ = ["Policy", "Scaled", "ROLES", "SCALE_GRANULARITIES"]

#: Tensor roles a policy gives formats to.
ROLES = ("weight", "activation", "gradient", "output")
#: Granularities of :class:`Scaled`.
SCALE_GRANULARITIES = ("tensor", "row")


@dataclass(frozen=True)
class Scaled:
    """An element format with an fp32 amax scale, as FP8/INT GEMM recipes use.

    ``per="tensor"``: one scale for the whole GEMM operand; ``per="row"``: one scale per
    row of the operand's non-reduction dimension (per token for activations, per output
    channel for weights). The scale is ``amax / fmt.max`` (rounded up to a power of two if
    ``pow2``); the GEMM runs on the element values and multiplies its fp32 result by the
    two operands' scales, as the epilogue of a scaled GEMM does.

    >>> Scaled("e4m3")
    Scaled('e4m3', per='tensor')
    """

    fmt: Any
    per: str = "tensor"
    pow2: bool = False

    def __post_init__(self):
        if self.per not in SCALE_GRANULARITIES:
            raise ValueError(f"Scaled(per={self.per!r}) is not allowed; choose one of {SCALE_GRANULARITIES}")
        object.__setattr__(self, "fmt", as_format(self.fmt))

    def __repr__(self):
        extra = ", pow2=True" if self.pow2 else ""
        return f"Scaled({self.fmt.name!r}, per={self.per!r}{extra})"


def _check_fmt(value, what):
    """Resolve a role format: None, a name, a Format, a block format or a Scaled."""
    if value is None or isinstance(value, Scaled):
        return value
    try:
        return as_format(value)
    except (ValueError, TypeError) as e:
        if hasattr(value, "_quantize"):  # a block format object
            return value
        raise ValueError(f"Policy {what}={value!r} is not a format: {e}") from None


def _fmt_name(f):
    if f is None:
        return None
    if isinstance(f, Scaled):
        return repr(f)
    return getattr(f, "name", repr(f))


@torch.compiler.assume_constant_result  # torch.compile: a constant, not traced re/fnmatch code
def _fnmatch(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)


@dataclass(frozen=True)
class Policy:
    """Formats per tensor role, accumulation model and compute precision for emulation.

    Parameters
    ----------
    weight, activation : format, optional
        Formats the GEMM operands are rounded into (``None``: keep; with an accumulation
        model, ``None`` means the model's input format). Any fpsim format name or object,
        a block format (``"mxfp4"``) or a :class:`Scaled`.
    gradient : format, optional
        Format of the output gradients entering the backward GEMMs (e.g. ``"e5m2"``).
    output : format, optional
        Format GEMM/attention outputs are rounded into (after bias), e.g. ``"bf16"``.
    accum : "native" or accumulation model
        ``"native"``: quantize, then torch's own fp32 matmul (fast). Otherwise any object
        :func:`fpsim.matmul` takes as ``model=`` (``fpsim.accum`` models, tensor-core models
        from ``fpsim.hardware.tensor_core``): bit-exact, on the CPU kernels.
    backward_accum : optional
        Model of the backward GEMMs (default: ``accum``).
    compute : format, optional
        Precision of softmax, layer/RMS norm, sum and mean: inputs and outputs are rounded
        into it (the arithmetic in between is fp32).
    rounding, grad_rounding : str
        Rounding modes for forward tensors and for gradients.
    overrides : tuple of (pattern, Policy | profile name | dict)
        Per-module policies: ``pattern`` (fnmatch) is matched against the qualified module
        name (e.g. ``"lm_head"``, ``"encoder.layer.*.attention*"``) and the class name; the
        innermost matching module wins; a dict replaces fields of this policy.
    strict : bool
        Unsupported GEMM/reduction ops raise (``True``) or run natively with a one-time
        warning (``False``).
    name, description : str
        Labels (profiles fill them).

    Examples
    --------
    >>> p = Policy(weight="bf16", activation="bf16", overrides=(("lm_head", "fp32"),))
    >>> p.weight.name, p.resolve("lm_head").name, p.resolve("blocks.0.mlp").weight.name
    ('bf16', 'fp32', 'bf16')
    """

    weight: Any = None
    activation: Any = None
    gradient: Any = None
    output: Any = None
    accum: Any = "native"
    backward_accum: Any = None
    compute: Any = None
    rounding: str = "rne"
    grad_rounding: str = "rne"
    overrides: tuple = ()
    strict: bool = False
    name: str = "custom"
    description: str = field(default="", compare=False)

    def __post_init__(self):
        for role in ROLES + ("compute",):
            object.__setattr__(self, role, _check_fmt(getattr(self, role), role))
        if isinstance(self.accum, str) and self.accum != "native":
            raise ValueError(f"Policy accum={self.accum!r}: use 'native' or an accumulation model "
                             "object (fpsim.accum / fpsim.hardware.tensor_core)")
        from ..rounding import ROUNDING_MODES
        for what in ("rounding", "grad_rounding"):
            if getattr(self, what) not in ROUNDING_MODES:
                raise ValueError(f"Policy {what}={getattr(self, what)!r}; choose one of {ROUNDING_MODES}")
        ov = self.overrides
        if isinstance(ov, dict):
            ov = tuple(ov.items())
        for item in ov:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise TypeError(f"Policy overrides must be (pattern, policy) pairs, got {item!r}")
        object.__setattr__(self, "overrides", tuple(ov))

    # -----------------------------------------------------------------------------------
    def replace(self, **changes) -> "Policy":
        """A copy with some fields changed.

        >>> Policy(weight="bf16").replace(activation="fp16").activation.name
        'fp16'
        """
        return dataclasses.replace(self, **changes)

    @property
    def is_native(self) -> bool:
        """True when the forward GEMMs use torch's own matmul."""
        return isinstance(self.accum, str)

    @property
    def bwd_model(self):
        """Accumulation model of the backward GEMMs."""
        return self.accum if self.backward_accum is None else self.backward_accum

    def role_fmt(self, role: str, model=None):
        """Format of ``role`` (falling back to the model's input format for GEMM operands)."""
        f = getattr(self, role)
        if f is None and model is not None and not isinstance(model, str) and role != "output":
            f = getattr(model, "in_fmt", None)
        return f

    def resolve(self, *names: str) -> "Policy":
        """The policy for a module called ``names`` (qualified name, class name, ...).

        >>> Policy(overrides=(("*.head", {"weight": "e4m3"}),)).resolve("model.head").weight.name
        'e4m3'
        """
        hit = self.match(*names)
        return self if hit is None else hit[1]

    def match(self, *names: str):
        """``(pattern, policy)`` of the first override matching one of ``names``, or None.

        >>> Policy(overrides=(("*.head", "fp32"),)).match("model.head")[0]
        '*.head'
        """
        for pat, value in self.overrides:
            if any(n and _fnmatch(n, pat) for n in names):
                return pat, _override(self, value)
        return None

    def summary(self) -> str:
        """One line per setting, for docs and reports.

        >>> print(Policy(weight="bf16", name="w").summary().splitlines()[0])
        w: weight=bf16 activation=None gradient=None output=None accum=native compute=None
        """
        acc = "native" if self.is_native else _model_name(self.accum)
        s = (f"{self.name}: weight={_fmt_name(self.weight)} activation={_fmt_name(self.activation)} "
             f"gradient={_fmt_name(self.gradient)} output={_fmt_name(self.output)} accum={acc} "
             f"compute={_fmt_name(self.compute)}")
        if self.description:
            s += "\n  " + self.description
        return s


def _model_name(m):
    return getattr(m, "name", None) or repr(m)


def _override(base: Policy, value) -> Policy:
    if isinstance(value, Policy):
        return value
    if isinstance(value, dict):
        return base.replace(**value, overrides=())
    if isinstance(value, str):
        from .profiles import get
        return get(value)
    raise TypeError(f"an override must be a Policy, a profile name or a dict of fields, got {value!r}")


def as_policy(p, model=None) -> Policy:
    """A :class:`Policy` from a policy, a profile name, None (the fp32 profile) or a
    :class:`~fpsim.torch.Deployment` (whose tensor-parallel layers are found in ``model``).

    >>> as_policy("bf16").name
    'bf16'
    """
    if isinstance(p, Policy):
        return p
    from .profiles import get
    if p is None:
        return get("fp32")
    if isinstance(p, str):
        return get(p)
    from .deployment import Deployment
    if isinstance(p, Deployment):
        return p.policy(model)
    raise TypeError(f"expected a fpsim.torch.Policy or a profile name (or a fpsim.torch.Deployment), got {type(p).__name__}")


def _is_format(x) -> bool:
    return isinstance(x, Format)
