"""Emulated GEMM ``a @ b`` (forward and backward) under a :class:`~fpsim.torch.Policy`.

Operands are rounded into their role's format along the reduction axis (K), then either

* ``accum="native"``: multiplied by torch's own fp32 matmul; autograd differentiates that
  (straight-through rounding), and the output gradient is rounded into the gradient format
  on its way into the backward GEMMs;
* an accumulation model: :func:`fpsim.matmul` evaluates every dot product bit-exactly on the
  CPU kernels (tensors on another device: :mod:`fpsim.torch.accum` on that device, the same
  bits), in a custom autograd function whose backward GEMMs (``g @ bᵀ`` and
  ``aᵀ @ g``) run through the backward model on gradient-format operands;
* a block-scaled model (:class:`fpsim.accum.BlockScaledFused`, e.g.
  ``fpsim.hardware.tensor_core("B200", "nvfp4")``): operands in block formats are encoded
  along K and the tensor core gets their element values and block scales
  (``fpsim.matmul(..., a_scale=, b_scale=)``); a per-tensor scale (NVFP4's fp32 one) is
  applied to the fp32 result, as the epilogue of the GEMM does.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .. import accum as _A
from ..block import BlockFormat
from ..options import Rounding
from ..rounding import decode, encode
from . import _ops
from . import accum as _TA
from . import block_quant as _BQ
from .policy import Scaled
from .quantize import is_block_format, quantize

__all__ = ["gemm", "round_output", "grad_round", "prepare", "block_scaled_matmul"]

_HALF = (torch.float16, torch.bfloat16)


def _amax_scale(x, spec: Scaled, axis_k: int):
    """fp32 scale so that amax maps to the element format's max (per tensor or per row)."""
    # max(-min, max): the largest magnitude in one pass without an |x| temporary (exact;
    # NaN propagates as through abs().amax())
    mn, mx = (torch.aminmax(x.detach()) if spec.per == "tensor"
              else torch.aminmax(x.detach(), dim=axis_k, keepdim=True))
    amax = torch.maximum(-mn, mx)
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
            else quantize(xs.detach(), fmt.fmt, rounding=rounding, axis=axis_k, backward="none")
        return q, s
    if ste:
        return quantize(x, fmt, rounding=rounding, axis=axis_k), None
    return quantize(x.detach(), fmt, rounding=rounding, axis=axis_k, backward="none"), None


def dequant(q, s):
    """Element values times their scale (the value the operand stands for)."""
    return q if s is None else q * s.to(q.dtype)


def _scale_out(out, sa, sb, inplace=False):
    """``out * sa * sb`` (in that order; ``inplace``: into ``out``, a fresh tensor of its
    caller that nothing else holds)."""
    if sa is not None:
        sa = sa.to(out.dtype)  # (.., M, 1) or scalar
        out = out.mul_(sa) if inplace and sa.dim() <= out.dim() else out * sa
    if sb is not None:
        sb = sb.to(out.dtype)  # (.., 1, N) or scalar
        out = out.mul_(sb) if inplace and sb.dim() <= out.dim() else out * sb
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

def model_matmul(qa, qb, model):
    """``fpsim.matmul`` on two torch tensors of element values; returns fp32 (or fp64).

    Tensors off the CPU stay on their device (:mod:`fpsim.torch.accum`, same bits);
    ``$FPSIM_TORCH_ACCUM`` chooses otherwise (:func:`fpsim.torch.accum.backend`)."""
    out_dt = torch.float64 if qa.dtype == torch.float64 else torch.float32
    if _TA.backend(qa.device, model) == "torch":
        return _TA.matmul(qa, qb, model=model).to(out_dt)
    batch = torch.broadcast_shapes(qa.shape[:-2], qb.shape[:-2])
    A = qa.detach().to("cpu", torch.float64).expand(*batch, *qa.shape[-2:]).contiguous().numpy()
    B = qb.detach().to("cpu", torch.float64).expand(*batch, *qb.shape[-2:]).contiguous().numpy()
    D = _promoted_fast(A, B, model)
    if D is None:
        D = np.asarray(_A.matmul(A, B, model=model), dtype=np.float64)
    return torch.from_numpy(D).to(qa.device, out_dt)


def _promoted_fast(A, B, model):
    """Promoted(inner, every, outer=fp32 RNE sequential) as chunked inner GEMMs whose fp32
    partial sums are added in float32 (one RNE rounding each, the outer model exactly), as
    a float32 array; None when ``model`` is not of that form. Equal to fpsim.matmul bit for bit (tested)."""
    if type(model) is not _A.Promoted:
        return None
    outer = model.outer
    if not (isinstance(outer, _A.Sequential) and outer.fmt.name == "fp32" and outer.rounding == "rne"
            and outer.fma and outer.multiply is None and outer.overflow in (None, "inf")
            and model.inner.out_fmt.name == "fp32"):
        return None
    K, k = A.shape[-1], model.every
    D = None
    with np.errstate(over="ignore", invalid="ignore"):
        for j in range(0, K, k):
            part = np.asarray(_A.matmul(A[..., j:j + k], B[..., j:j + k, :], model=model.inner))
            if D is None:  # the cast is exact: the inner result is an fp32 value
                D = part.astype(np.float32)
            else:  # float32 addition, in place (part cast to float32 first, exactly)
                np.add(D, part, out=D, dtype=np.float32, casting="unsafe")
    return D


# block-scaled tensor cores: element values and block scales, not dequantized values
_SCALE_TYPES = {"e8m0": "e8m0", "e4m3": "ue4m3fn"}  # block format scale -> model scale


def _block_operand(x, fmt, rounding, axis_k, model, device=False):
    """Element values, block scales and per-tensor scale (or None) of ``x`` encoded into the
    block format ``fmt`` along ``axis_k`` (-1: A, -2: B), as float64 numpy arrays (``device``:
    float64 tensors on x's device, encoded there where :mod:`fpsim.torch.block_quant` covers
    the format); K is padded with zero elements to a multiple of the block (the scales of a
    shorter last block come from its own elements either way)."""
    if not (isinstance(fmt, BlockFormat) and fmt.block == model.block
            and _SCALE_TYPES.get(fmt.scale.name) == model.scale_fmt.name):
        raise ValueError(f"{model!r} takes operands in block formats of {model.block} elements "
                         f"with {model.scale_fmt.name} scales; the policy gives "
                         f"{getattr(fmt, 'name', fmt)}")
    if device and _BQ.supports(fmt, rounding):
        return _BQ.block_operand(x, fmt, axis_k, rounding)
    if device:  # the encoding on the CPU kernels, the GEMM on the device
        e, s, ts = _block_operand(x, fmt, rounding, axis_k, model)
        return torch.from_numpy(e).to(x.device), torch.from_numpy(s).to(x.device), ts
    X = x.detach().to("cpu", torch.float64).numpy()
    codes = encode(X, fmt, axis=axis_k, rounding=rounding)
    elems = decode(codes.elements, fmt.elem)
    scales = decode(codes.scales, fmt.scale)
    pad = -X.shape[axis_k] % fmt.block
    if pad:
        width = [(0, 0)] * X.ndim
        width[axis_k] = (0, pad)
        elems = np.pad(elems, width)
    ts = None if codes.tensor_scale is None else float(decode(np.array([codes.tensor_scale]),
                                                              fmt.tensor_scale)[0])
    return elems, scales, ts


def _for_operands(model, fa, fb):
    """``model`` for operands of element formats (fa, fb): a mixed-format block-scaled or
    AMD model whose two formats come in the other order is used swapped (the instructions
    take both orders: kind::mxf8f6f4 any pair, CDNA3 ``_fp8_bf8`` and ``_bf8_fp8``)."""
    if not isinstance(model, (_A.BlockScaledFused, _A.MFMA)) or fa is None or fb is None:
        return model
    fa, fb = (getattr(f, "fmt", f) for f in (fa, fb))  # a Scaled: its element format
    have = tuple(model.input_formats)
    if (fa, fb) == have or (fb, fa) != have:
        return model  # the model's own input check reports any other mismatch
    return dataclasses.replace(model, in_fmt=fa, in_fmt_b=fb,
                               name=f"{model.name} (operands swapped)")


def block_scaled_matmul(a, b, fa, fb, model, rounding="rne", rounding_b=None):
    """``a @ b`` on a block-scaled tensor core ``model`` for operands in the block formats
    ``fa``/``fb`` (blocked along K): ``fpsim.matmul(elements, ..., a_scale=, b_scale=)``
    times the per-tensor scales (NVFP4), an fp32 tensor on ``a``'s device. ``b`` is rounded
    with ``rounding_b`` (default: ``rounding``). Where :func:`fpsim.torch.accum.backend` says
    ``"torch"`` (tensors off the CPU) the encoding (:mod:`fpsim.torch.block_quant`: float
    elements, deterministic modes; else the CPU kernels) and the GEMM
    (:mod:`fpsim.torch.accum_scaled`) run on the tensors' device.

    >>> import torch, fpsim
    >>> m = fpsim.hardware.tensor_core("B200", "mxfp8")
    >>> a = torch.tensor([[1.0, 2.0, 3.0]]); b = torch.tensor([[1.0], [0.5], [0.25]])
    >>> mx = fpsim.parse("mxfp8_e4m3")
    >>> block_scaled_matmul(a, b, mx, mx, m)
    tensor([[2.7500]])
    """
    dev = _TA.backend(a.device, model) == "torch"  # encoding and GEMM on a's device
    ea, sa, ga = _block_operand(a, fa, rounding, -1, model, dev)
    eb, sb, gb = _block_operand(b, fb, rounding if rounding_b is None else rounding_b, -2, model,
                                dev)
    m = _for_operands(model, fa.elem, fb.elem)
    if dev:
        out = _TA.matmul(ea, eb, model=m, a_scale=sa, b_scale=sb).to(torch.float32)
    else:
        D = np.asarray(_A.matmul(ea, eb, model=m, a_scale=sa, b_scale=sb), np.float32)
        out = torch.from_numpy(D).to(a.device)
    return _scale_out(out, None if ga is None else torch.tensor(ga, dtype=torch.float32),
                      None if gb is None else torch.tensor(gb, dtype=torch.float32))


def _direct(fmt, rounding):
    """Whether an operand format rounds straight into float64 on the CPU kernels
    (:func:`_cpu_operand`): no format, a plain format or a per-tensor/row scaled one, with a
    deterministic rounding (stochastic rounding keeps its tensor-shaped random stream)."""
    if Rounding(getattr(rounding, "value", rounding)) is Rounding.STOCHASTIC:
        return False
    return fmt is None or not is_block_format(fmt.fmt if isinstance(fmt, Scaled) else fmt)


def _cpu_operand(x, fmt, rounding, axis_k, batch):
    """``x`` (broadcast to ``batch``) for the CPU kernels: float64 values rounded into
    ``fmt`` as a :class:`fpsim.accum.Rounded` (so fpsim.matmul need not test them again),
    and its scale or None. The same values as :func:`prepare` then a float64 copy: rounding
    a value does not depend on its carrier (float32 or float64 holds it exactly), and a
    scaled operand is divided by its scale in x's dtype first, as there."""
    s = None
    if isinstance(fmt, Scaled):
        s = _amax_scale(x, fmt, axis_k)
        x, fmt = x.detach() / s.to(x.dtype), fmt.fmt
    X = x.detach().expand(*batch, *x.shape[-2:]).to(
        "cpu", torch.float64, memory_format=torch.contiguous_format).numpy()  # one pass
    return (X if fmt is None else _A.Rounded(X, fmt, rounding=rounding)), s


def _model_forward(a, b, pol, ra, rb):
    fa, fb = pol.role_fmt(ra, pol.accum), pol.role_fmt(rb, pol.accum)
    if isinstance(pol.accum, _A.BlockScaledFused):
        return block_scaled_matmul(a, b, fa, fb, pol.accum, pol.rounding).to(a.dtype)
    if (_TA.backend(a.device, pol.accum) != "torch" and _direct(fa, pol.rounding)
            and _direct(fb, pol.rounding)):
        batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        A, sa = _cpu_operand(a, fa, pol.rounding, -1, batch)
        B, sb = _cpu_operand(b, fb, pol.rounding, -2, batch)
        D = _promoted_fast(A, B, pol.accum)
        if D is None:
            D = np.asarray(_A.matmul(A, B, model=pol.accum), dtype=np.float64)
        out_dt = torch.float64 if a.dtype == torch.float64 else torch.float32
        out = torch.from_numpy(D).to(a.device, out_dt)  # D is this call's own array
        return _scale_out(out, sa, sb, inplace=True).to(a.dtype)
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
    if isinstance(m, _A.BlockScaledFused):
        ga = block_scaled_matmul(g, b.transpose(-1, -2), pol.role_fmt("gradient", m),
                                 pol.role_fmt(rb, m), m, pol.grad_rounding,
                                 pol.rounding).to(a.dtype)
        return ga.sum_to_size(a.shape) if ga.shape != a.shape else ga
    fg, fbt = pol.role_fmt("gradient", m), pol.role_fmt(rb, m)
    qg, sg = prepare(g, fg, pol.grad_rounding, -1, ste=False)
    qbt, sbt = prepare(b.transpose(-1, -2), fbt, pol.rounding, -2, ste=False)
    ga = _scale_out(_run(qg, qbt, _for_operands(m, fg, fbt)), sg, sbt).to(a.dtype)
    return ga.sum_to_size(a.shape) if ga.shape != a.shape else ga


def _grad_b(g, a, b, pol, ra):
    """dB = Aᵀ @ G (reduction over M) through the backward model."""
    m = _backward_model(pol, a.transpose(-1, -2), g)
    if isinstance(m, _A.BlockScaledFused):
        gb = block_scaled_matmul(a.transpose(-1, -2), g, pol.role_fmt(ra, m),
                                 pol.role_fmt("gradient", m), m, pol.rounding,
                                 pol.grad_rounding).to(b.dtype)
        return gb.sum_to_size(b.shape) if gb.shape != b.shape else gb
    fat, fg = pol.role_fmt(ra, m), pol.role_fmt("gradient", m)
    qat, sat = prepare(a.transpose(-1, -2), fat, pol.rounding, -1, ste=False)
    qg, sg = prepare(g, fg, pol.grad_rounding, -2, ste=False)
    gb = _scale_out(_run(qat, qg, _for_operands(m, fat, fg)), sat, sg).to(b.dtype)
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
