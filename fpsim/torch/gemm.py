"""Emulated GEMM ``a @ b`` (forward and backward) under a :class:`~fpsim.torch.Policy`.

Operands are rounded into their role's format along the reduction axis (K), then either

* ``accum="native"``: multiplied by torch's own fp32 matmul; autograd differentiates that
  (straight-through rounding), and the output gradient is rounded into the gradient format
  on its way into the backward GEMMs;
* an accumulation model: :func:`fpsim.matmul` evaluates every dot product bit-exactly on the
  CPU kernels (tensors on another device: :mod:`fpsim.torch.accum` on that device, the same
  bits), in a custom autograd function whose backward GEMMs (``g @ bᵀ`` and
  ``aᵀ @ g``) run through the backward model on gradient-format operands.
"""

from __future__ import annotations

import numpy as np
import torch

from . import _ops
from . import accum as _accum
from .policy import Scaled
from .quantize import _forward as _q_forward, is_block_format, quantize

__all__ = ["gemm", "round_output", "grad_round", "prepare"]

_HALF = (torch.float16, torch.bfloat16)


def _opts(rounding):
    return dict(rounding=rounding, overflow=None, subnormals=None, daz=False, nan=None,
                seed=None, srbits=None)


def _amax_scale(x, spec: Scaled, axis_k: int):
    """fp32 scale so that amax maps to the element format's max (per tensor or per row)."""
    if spec.per == "tensor":
        amax = x.detach().abs().amax()
    else:
        amax = x.detach().abs().amax(dim=axis_k, keepdim=True)
    fmax = float(spec.fmt.max)
    s = (amax.to(torch.float32) / fmax)
    s = torch.where(s > 0, s, torch.ones_like(s))
    if spec.pow2:
        s = torch.exp2(torch.ceil(torch.log2(s)))
    return s


def prepare(x, fmt, rounding, axis_k, *, ste=True):
    """Round a GEMM operand; returns (element values, scale or None).

    ``axis_k`` is the reduction axis of the operand (-1 for A, -2 for B). With ``ste`` the
    rounding is straight-through differentiable; scaled formats return the unscaled element
    values and the scale the GEMM output must be multiplied by.
    """
    if fmt is None:
        return x, None
    if isinstance(fmt, Scaled):
        s = _amax_scale(x, fmt, axis_k)
        xs = x / s.to(x.dtype)
        q = quantize(xs, fmt.fmt, rounding=rounding, nan="zero" if not fmt.fmt.has_nan else None) if ste \
            else _q_forward(xs.detach(), fmt.fmt, _opts(rounding), "auto", axis_k)
        return q, s
    if ste:
        return quantize(x, fmt, rounding=rounding, axis=axis_k), None
    return _q_forward(x.detach(), fmt, _opts(rounding), "auto", axis_k), None


def dequant(q, s):
    """Element values times their scale (the value the operand stands for)."""
    return q if s is None else q * s.to(q.dtype)


def _scale_out(out, sa, sb):
    if sa is not None:
        out = out * sa.to(out.dtype)  # (.., M, 1) or scalar
    if sb is not None:
        out = out * sb.to(out.dtype)  # (.., 1, N) or scalar
    return out


# identity forward, the incoming gradient rounded into ``fmt`` in backward: two ops, so that
# the rounding (Numba kernels) stays opaque to torch.compile in the backward graph too
@torch.library.custom_op(f"{_ops.NAMESPACE}::grad_round", mutates_args=())
def _grad_round_op(x: torch.Tensor, fmt: str, rounding: str, axis_k: int) -> torch.Tensor:
    return x.clone(memory_format=torch.contiguous_format)


@_grad_round_op.register_fake
def _(x, fmt, rounding, axis_k):
    return torch.empty(x.shape, dtype=x.dtype, device=x.device)


@torch.library.custom_op(f"{_ops.NAMESPACE}::round_grad", mutates_args=())
def _round_grad_op(g: torch.Tensor, fmt: str, rounding: str, axis_k: int) -> torch.Tensor:
    q, s = prepare(g.contiguous(), _ops.lookup(fmt), rounding, axis_k, ste=False)
    return dequant(q, s).to(g.dtype).contiguous()


@_round_grad_op.register_fake
def _(g, fmt, rounding, axis_k):
    return torch.empty(g.shape, dtype=g.dtype, device=g.device)


def _grad_round_setup(ctx, inputs, output):
    ctx.args = inputs[1:]


def _grad_round_backward(ctx, g):
    return (_round_grad_op(g, *ctx.args), None, None, None)


_grad_round_op.register_autograd(_grad_round_backward, setup_context=_grad_round_setup)


def grad_round(x, fmt, rounding="rne", axis_k=-1):
    """``x`` unchanged, but its gradient is rounded into ``fmt`` during backward.

    >>> import torch
    >>> x = torch.tensor([1.0], requires_grad=True)
    >>> (grad_round(x, "e4m3") * 0.3).sum().backward(); x.grad
    tensor([0.3125])
    """
    if fmt is None or not (torch.is_grad_enabled() and x.requires_grad):
        return x
    return _grad_round_op(x, _ops.key(fmt), rounding, int(axis_k))


def round_output(y, fmt, rounding="rne"):
    """Round a result into ``fmt`` (straight-through); scaled formats are dequantized."""
    if fmt is None:
        return y
    if isinstance(fmt, Scaled):
        q, s = prepare(y, fmt, rounding, -1)
        return dequant(q, s)
    return quantize(y, fmt, rounding=rounding, axis=-1)


# ---------------------------------------------------------------------------------------
# model (bit-exact) path
# ---------------------------------------------------------------------------------------

def _matmul_fn():
    import fpsim
    fn = getattr(fpsim, "matmul", None)
    if fn is None:
        try:
            from fpsim.accum import matmul as fn  # noqa: F401
        except ImportError:
            raise NotImplementedError("this policy uses an accumulation model, but fpsim.matmul "
                                      "is not available in this fpsim build; use accum='native'") from None
    return fn


def model_matmul(qa, qb, model):
    """``fpsim.matmul`` on two torch tensors of element values; returns fp32 (or fp64).

    Tensors off the CPU stay on their device (:mod:`fpsim.torch.accum`, same bits);
    ``$FPSIM_TORCH_ACCUM`` chooses otherwise (:func:`fpsim.torch.accum.backend`)."""
    out_dt = torch.float64 if qa.dtype == torch.float64 else torch.float32
    if _accum.backend(qa.device, model) == "torch":
        return _accum.matmul(qa, qb, model=model).to(out_dt)
    fn = _matmul_fn()
    batch = torch.broadcast_shapes(qa.shape[:-2], qb.shape[:-2])
    A = qa.detach().to("cpu", torch.float64).expand(*batch, *qa.shape[-2:]).contiguous().numpy()
    B = qb.detach().to("cpu", torch.float64).expand(*batch, *qb.shape[-2:]).contiguous().numpy()
    D = _promoted_fast(A, B, model)
    if D is None:
        D = np.asarray(fn(A, B, model=model), dtype=np.float64)
    return torch.from_numpy(D).to(qa.device, out_dt)


def _promoted_fast(A, B, model):
    """Promoted(inner, every, outer=fp32 RNE sequential) as chunked inner GEMMs whose fp32
    partial sums are added in float32 (one RNE rounding each, the outer model exactly);
    None when ``model`` is not of that form. Equal to fpsim.matmul bit for bit (tested)."""
    try:
        from fpsim.accum import Promoted, Sequential
    except ImportError:
        return None
    if not isinstance(model, Promoted) or type(model).__name__ != "Promoted":
        return None
    outer = model.outer
    if not (isinstance(outer, Sequential) and outer.fmt.name == "fp32" and outer.rounding == "rne"
            and outer.fma and outer.multiply is None and outer.overflow in (None, "inf")
            and model.inner.out_fmt.name == "fp32"):
        return None
    import fpsim
    K, k = A.shape[-1], model.every
    D = None
    with np.errstate(over="ignore", invalid="ignore"):
        for j in range(0, K, k):
            part = np.asarray(fpsim.matmul(A[..., j:j + k], B[..., j:j + k, :], model=model.inner))
            part = part.astype(np.float32)  # exact: the inner result is an fp32 value
            D = part if D is None else D + part
    return D.astype(np.float64)


def _model_forward(a, b, pol, ra, rb):
    fa, fb = pol.role_fmt(ra, pol.accum), pol.role_fmt(rb, pol.accum)
    qa, sa = prepare(a, fa, pol.rounding, -1, ste=False)
    qb, sb = prepare(b, fb, pol.rounding, -2, ste=False)
    return _scale_out(model_matmul(qa, qb, pol.accum), sa, sb).to(a.dtype)


def _backward_model(pol, x, y):
    """Model of the backward GEMM ``x @ y``: a Deployment's kernels pick it by that GEMM's
    own shape (``plan_backward``, fpsim.torch.deployment); else the policy's backward model."""
    plan = getattr(pol.bwd_model, "plan_backward", None)
    return pol.bwd_model if plan is None else plan(x, y)


def _grad_a(g, a, b, pol, rb):
    """dA = G @ Bᵀ (reduction over N) through the backward model."""
    m = _backward_model(pol, g, b.transpose(-1, -2))
    qg, sg = prepare(g, pol.role_fmt("gradient", m), pol.grad_rounding, -1, ste=False)
    qbt, sbt = prepare(b.transpose(-1, -2), pol.role_fmt(rb, m), pol.rounding, -2, ste=False)
    ga = _scale_out(_run(qg, qbt, m), sg, sbt).to(a.dtype)
    return ga.sum_to_size(a.shape) if ga.shape != a.shape else ga


def _grad_b(g, a, b, pol, ra):
    """dB = Aᵀ @ G (reduction over M) through the backward model."""
    m = _backward_model(pol, a.transpose(-1, -2), g)
    qat, sat = prepare(a.transpose(-1, -2), pol.role_fmt(ra, m), pol.rounding, -1, ste=False)
    qg, sg = prepare(g, pol.role_fmt("gradient", m), pol.grad_rounding, -2, ste=False)
    gb = _scale_out(_run(qat, qg, m), sat, sg).to(b.dtype)
    return gb.sum_to_size(b.shape) if gb.shape != b.shape else gb


# The bit-exact GEMM and its two backward GEMMs as opaque ops (see fpsim.torch._ops); the
# policy travels as a registry key
@torch.library.custom_op(f"{_ops.NAMESPACE}::model_gemm", mutates_args=())
def _model_gemm_op(a: torch.Tensor, b: torch.Tensor, pol: str, ra: str, rb: str) -> torch.Tensor:
    return _model_forward(a, b, _ops.lookup(pol), ra, rb).contiguous()


@_model_gemm_op.register_fake
def _(a, b, pol, ra, rb):
    shape = (*torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1])
    return a.new_empty(shape)


@torch.library.custom_op(f"{_ops.NAMESPACE}::model_gemm_grad_a", mutates_args=())
def _model_gemm_grad_a_op(g: torch.Tensor, a: torch.Tensor, b: torch.Tensor, pol: str,
                          rb: str) -> torch.Tensor:
    with torch._C.DisableTorchFunction():
        return _grad_a(g, a, b, _ops.lookup(pol), rb).contiguous()


@_model_gemm_grad_a_op.register_fake
def _(g, a, b, pol, rb):
    return a.new_empty(a.shape)


@torch.library.custom_op(f"{_ops.NAMESPACE}::model_gemm_grad_b", mutates_args=())
def _model_gemm_grad_b_op(g: torch.Tensor, a: torch.Tensor, b: torch.Tensor, pol: str,
                          ra: str) -> torch.Tensor:
    with torch._C.DisableTorchFunction():
        return _grad_b(g, a, b, _ops.lookup(pol), ra).contiguous()


@_model_gemm_grad_b_op.register_fake
def _(g, a, b, pol, ra):
    return b.new_empty(b.shape)


def _model_gemm_setup(ctx, inputs, output):
    a, b, pol, ra, rb = inputs
    ctx.save_for_backward(a, b)
    ctx.pol, ctx.ra, ctx.rb = pol, ra, rb


def _model_gemm_backward(ctx, g):
    a, b = ctx.saved_tensors
    ga = _model_gemm_grad_a_op(g, a, b, ctx.pol, ctx.rb) if ctx.needs_input_grad[0] else None
    gb = _model_gemm_grad_b_op(g, a, b, ctx.pol, ctx.ra) if ctx.needs_input_grad[1] else None
    return ga, gb, None, None, None


_model_gemm_op.register_autograd(_model_gemm_backward, setup_context=_model_gemm_setup)


def _run(qa, qb, model):
    if isinstance(model, str):  # native backward GEMM
        return torch.matmul(qa.to(torch.float32) if qa.dtype in _HALF else qa,
                            qb.to(torch.float32) if qb.dtype in _HALF else qb)
    return model_matmul(qa, qb, model)


# ---------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------

def _check(a, b, what):
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        raise TypeError(f"{what}: expected tensors, got {type(a).__name__} and {type(b).__name__}")
    if a.device != b.device:
        raise ValueError(f"{what}: operands are on different devices ({a.device} and {b.device}); "
                         "move them to one device first")
    if a.dtype != b.dtype:
        raise TypeError(f"{what}: operand dtypes differ ({a.dtype} and {b.dtype}); torch would "
                        "refuse this too: cast one of them (the emulated formats are set by the "
                        "policy, not by the tensor dtype)")
    if not a.is_floating_point():
        raise TypeError(f"{what}: emulation needs floating-point tensors, got {a.dtype}")


def gemm(a, b, pol, roles=("activation", "weight"), what="matmul"):
    """``a @ b`` for a (..., M, K) and b (..., K, N) (batch dims broadcast) under ``pol``.

    Returns the un-rounded accumulator output (fp32 values; the caller applies the bias and
    then :func:`round_output`). 16-bit tensors are carried in fp32 and cast back.

    >>> import torch
    >>> from fpsim.torch import Policy
    >>> a = torch.tensor([[1.0, 1e-3]]); b = torch.tensor([[1.0], [1.0]])
    >>> gemm(a, b, Policy(weight="bf16", activation="e5m2"))
    tensor([[1.0010]])
    """
    _check(a, b, what)
    plan = getattr(pol.accum, "plan_gemm", None)
    if plan is not None:  # a Deployment's kernels (fpsim.torch.deployment) pick the model per shape
        return plan(a, b, pol, roles, what)
    ra, rb = roles
    dtype = a.dtype
    if dtype in _HALF:
        a, b = a.float(), b.float()
    flat = None
    if b.dim() == 2 and a.dim() > 2:  # one GEMM over all rows, as hardware does
        flat = a.shape[:-1]
        a = a.reshape(-1, a.shape[-1])
    if pol.is_native:
        fa, fb = pol.role_fmt(ra), pol.role_fmt(rb)
        qa, sa = prepare(a, fa, pol.rounding, -1)
        qb, sb = prepare(b, fb, pol.rounding, -2)
        out = _scale_out(torch.matmul(qa, qb), sa, sb)
        # both backward GEMMs (G @ Bᵀ, Aᵀ @ G) then see the gradient in its format
        out = grad_round(out, pol.gradient, pol.grad_rounding)
    else:
        out = _model_gemm_op(a, b, _ops.key(pol), ra, rb)
    if flat is not None:
        out = out.reshape(*flat, out.shape[-1])
    return out.to(dtype) if dtype in _HALF else out
