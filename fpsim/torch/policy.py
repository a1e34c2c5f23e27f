"""What to emulate: :class:`Policy` (formats per tensor role, accumulation model, compute
precision, per-module overrides), :class:`Scaled` (amax-scaled element formats) and the
registry of named policies (profiles) that :func:`as_policy` and string overrides resolve.

The registry lives here, below the catalogue that fills it (:mod:`fpsim.torch.profiles`
registers its profiles on import, users with ``profiles.register``), so that resolving a
name needs no import of the catalogue.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any

import torch

from ..formats import as_format
from ..rounding import ROUNDING_MODES
from ..scaling import ScaledFormat

__all__ = ["Policy", "Scaled", "ROLES", "SCALE_GRANULARITIES", "as_policy", "named",
           "named_policies", "register_named"]

#: Tensor roles a policy gives formats to.
ROLES = ("weight", "activation", "gradient", "output")
#: Granularities of :class:`Scaled`.
SCALE_GRANULARITIES = ("tensor", "row")


class Scaled(ScaledFormat):
    """An element format with an fp32 amax scale, as FP8/INT GEMM recipes use: the torch
    spelling of :class:`fpsim.ScaledFormat` ``(fmt, "tensor" | "channel", "fp32")``.

    ``per="tensor"``: one scale for the whole GEMM operand (``ScaledFormat(fmt, "tensor")``);
    ``per="row"``: one scale per row of the operand's non-reduction dimension (per token for
    activations, per output channel for weights: ``ScaledFormat(fmt, "channel", axis=-2)``
    on the (rows, K) operand). The scale is ``amax / fmt.max`` in fp32 (rounded up to a
    power of two if ``pow2``: ``scale_rounding="ceil"``). In a GEMM the torch bridge runs on
    the element values (the operand divided by its scale in fp32, then rounded into ``fmt``)
    and multiplies the fp32 result by the two operands' scales, as the epilogue of a scaled
    GEMM does. A ``Scaled`` equals only a ``Scaled`` (a plain ``ScaledFormat`` in a policy is
    quantized and dequantized in place, without the epilogue).

    >>> s = Scaled("e4m3")
    >>> s, s.name, s.fmt.name, s.per
    (Scaled('e4m3', per='tensor'), 'scaled[e4m3,tensor,fp32]', 'e4m3', 'tensor')
    >>> import fpsim
    >>> isinstance(s, fpsim.ScaledFormat), s == Scaled("e4m3", per="tensor")
    (True, True)
    """

    def __init__(self, fmt: Any, per: str = "tensor", pow2: bool = False):
        if per not in SCALE_GRANULARITIES:
            raise ValueError(f"Scaled(per={per!r}) is not allowed; choose one of {SCALE_GRANULARITIES}")
        if pow2 not in (True, False):
            raise TypeError(f"Scaled(pow2={pow2!r}): pass True or False")
        row = per == "row"
        super().__init__(fmt, "channel" if row else "tensor", "fp32", axis=-2 if row else -1,
                         scale_rounding="ceil" if pow2 else None)

    @property
    def fmt(self):
        """The element format."""
        return self.elem

    @property
    def per(self) -> str:
        """``"tensor"`` or ``"row"``."""
        return "tensor" if self.granularity == "tensor" else "row"

    @property
    def pow2(self) -> bool:
        """Whether the scale is rounded up to a power of two."""
        return self.scale_rounding == "ceil"

    def __repr__(self):
        extra = ", pow2=True" if self.pow2 else ""
        return f"Scaled({self.fmt.name!r}, per={self.per!r}{extra})"

    __str__ = __repr__


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
        return named(value)
    raise TypeError(f"an override must be a Policy, a profile name or a dict of fields, got {value!r}")


# ---------------------------------------------------------------------------------------
# named policies (profiles)
# ---------------------------------------------------------------------------------------

_NAMED: dict = {}  # lower-case name -> zero-argument factory returning a Policy
_BUILT: dict = {}  # name -> its Policy (built once)


def register_named(name: str, factory) -> None:
    """Register ``factory`` (no arguments, returns a :class:`Policy`) under ``name``; an
    existing name is replaced. :func:`fpsim.torch.profiles.register` is the checked
    front end users call.

    >>> register_named("my_bf16", lambda: Policy(weight="bf16", name="my_bf16"))
    >>> named("MY_BF16").weight.name
    'bf16'
    """
    key = str(name).lower()
    _NAMED[key] = factory
    _BUILT.pop(key, None)


def named_policies() -> list:
    """The registered names, in registration order.

    >>> named_policies()[:2]
    ['fp32', 'tf32']
    """
    return list(_NAMED)


def named(name: str) -> Policy:
    """The policy registered under ``name`` (case-insensitive); an unknown name raises
    ``ValueError`` with the closest names.

    >>> named("bf16").activation.name
    'bf16'
    """
    key = str(name).lower()
    if key not in _NAMED:
        close = difflib.get_close_matches(key, list(_NAMED), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else \
            "fpsim.torch.profiles.names() lists them"
        raise ValueError(f"unknown profile {name!r}; {hint}")
    if key not in _BUILT:
        _BUILT[key] = _NAMED[key]()
    return _BUILT[key]


def as_policy(p, model=None) -> Policy:
    """A :class:`Policy` from a policy, a profile name, None (the fp32 profile) or an object
    with a ``policy(model)`` method, such as a :class:`~fpsim.torch.Deployment` (whose
    tensor-parallel layers are found in ``model``).

    >>> as_policy("bf16").name
    'bf16'
    """
    if isinstance(p, Policy):
        return p
    if p is None:
        return named("fp32")
    if isinstance(p, str):
        return named(p)
    make = getattr(type(p), "policy", None)
    if callable(make):  # a Deployment builds its policy for the model it runs
        return p.policy(model)
    raise TypeError(f"expected a fpsim.torch.Policy or a profile name (or a fpsim.torch.Deployment), got {type(p).__name__}")
