"""Differentiable rounding of torch tensors into any fpsim format.

Two implementations of the same bit manipulation (SPEC §2):

* ``"numba"`` — CPU tensors: :func:`torch.Tensor.numpy` shares the tensor's memory with a
  numpy array and :func:`fpsim.quantize` (the Numba kernels) rounds it; the result is wrapped
  back with :func:`torch.from_numpy` (no copy either way). bfloat16 travels as a uint16 view
  reinterpreted as ``ml_dtypes.bfloat16``.
* ``"torch"`` — any device: the torch twin of the rounding kernel
  (:func:`fpsim.kernels.float_round_torch.round_bits`, beside the Numba kernel), integer
  tensor ops on the bit pattern (int64 lanes) fed with the very same
  :class:`~fpsim.kernels.float_round.RoundParams`. Stochastic rounding uses the same
  counter-based random stream, so both paths give identical bits for every mode.

``impl="auto"`` picks ``"numba"`` on CPU and ``"torch"`` elsewhere.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .. import lowering as _L
from .. import rounding as _R
from ..formats import CodebookFormat, DIntFormat, FloatFormat, as_format
from ..kernels.float_round_torch import random_bits, round_bits
from . import _ops

__all__ = ["quantize", "BACKWARD_MODES", "IMPLS", "is_block_format"]

#: Gradient rules of :func:`quantize`.
BACKWARD_MODES = ("ste", "clip", "quantize", "none")
#: Implementations of :func:`quantize`.
IMPLS = ("auto", "numba", "torch")

_TORCH_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_NP_OF = {torch.float16: np.dtype(np.float16), torch.float32: np.dtype(np.float32),
          torch.float64: np.dtype(np.float64)}
# integer carrier of each float dtype's bit pattern
_INT_OF = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32,
           torch.float64: torch.int64}


def is_block_format(fmt) -> bool:
    """True for scaled/block formats (duck-typed: not a plain fpsim :class:`~fpsim.Format`).

    A block format is any object that :func:`fpsim.quantize` accepts together with an
    ``axis=`` argument (e.g. ``fpsim.BlockFormat``); plain formats and format names are not.

    >>> is_block_format("e4m3")
    False
    """
    if isinstance(fmt, str):
        try:
            fmt = as_format(fmt)
        except (ValueError, TypeError):
            return False
    return bool(getattr(fmt, "blocked", False))  # None (no format) and other objects: False


# ---------------------------------------------------------------------------------------
# numba path (CPU, zero copy)
# ---------------------------------------------------------------------------------------

def _to_numpy(t: torch.Tensor):
    """A numpy array sharing ``t``'s memory (t must be contiguous, on CPU)."""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(_L.BF16)
    return t.numpy()


def _from_numpy(a: np.ndarray, dtype) -> torch.Tensor:
    if dtype == torch.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _quantize_numba(t, fmt, opts):
    src = t.detach()
    if src.dim() >= 2 and not src.is_contiguous() and src.mT.is_contiguous():
        # a transposed matrix (a GEMM's ``w.t()``): rounding is elementwise, so round the
        # contiguous original and transpose the result back, instead of copying it first
        return _quantize_numba(src.mT, fmt, opts).mT
    if not src.is_contiguous():
        src = src.contiguous()
    arr = _to_numpy(src)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    out = _R.quantize(arr, fmt, **opts)
    return _from_numpy(np.asarray(out), t.dtype).reshape(t.shape)


def _quantize_block(t, fmt, opts, axis):
    src = t.detach()
    dev, dt = src.device, src.dtype
    arr = src.to("cpu", torch.float32 if dt in (torch.float16, torch.bfloat16) else dt).contiguous().numpy()
    try:
        out = _R.quantize(arr, fmt, axis=axis, **{k: v for k, v in opts.items() if v is not None})
    except TypeError as e:
        raise TypeError(f"fpsim.quantize does not take block format {fmt!r} with axis=: {e}") from None
    # reshape: np.ascontiguousarray makes a 0-d result 1-d (issue 16's D1 on the torch path)
    return torch.from_numpy(np.ascontiguousarray(out)).reshape(t.shape).to(dev, dt)


# ---------------------------------------------------------------------------------------
# pure-torch path (any device): the torch twin of the rounding kernel
# ---------------------------------------------------------------------------------------

def _bits_of(t):
    """int64 bit patterns of a float tensor (zero-extended for 16/32-bit types)."""
    it = _INT_OF[t.dtype]
    b = t.view(it).to(torch.int64)
    if it is not torch.int64:
        b = b & ((1 << (8 * t.element_size())) - 1)
    return b


def _float_of(bits, dtype):
    it = _INT_OF[dtype]
    if it is not torch.int64:
        w = 8 * torch.empty((), dtype=dtype).element_size()
        bits = torch.where(bits >= 1 << (w - 1), bits - (1 << w), bits)
    return bits.to(it).view(dtype)


def _layout(dtype):
    if dtype == torch.bfloat16:
        return _L.DTYPES[_L.BF16]
    return _L.DTYPES[_NP_OF[dtype]]


def _quantize_torch(t, fmt, opts):
    if isinstance(fmt, (CodebookFormat, DIntFormat)):
        return _quantize_table_torch(t, fmt, opts)
    o = _L.options(fmt, opts["rounding"], opts["overflow"], opts["nan"], opts["subnormals"],
                    opts["daz"], opts["srbits"])
    x = t.detach()
    dt = _layout(x.dtype)
    p = _L.round_params(fmt, dt, *o)
    carrier = x.dtype
    if p is None:  # the format's limits need a float64 carrier
        x = x.to(torch.float64)
        dt = _L.F64
        p = _L.round_params(fmt, dt, *o)
    b = _bits_of(x.contiguous()).reshape(-1)
    rnd = None
    if o[0] is _R.Rounding.STOCHASTIC:
        rnd = random_bits(int(_L.seed(opts["seed"], o[0])), b.numel(), b.device)
    r, err = round_bits(b, p, rnd)
    if r is None:
        raise ValueError(f"{fmt.name} has no NaN but the input holds {err} NaN value(s); pass "
                         "nan='zero' or nan='max' to map them, or clean the input")
    out = _float_of(r, x.dtype).reshape(t.shape)
    if isinstance(fmt, FloatFormat) and fmt.encoding.all_normal:
        # as the numpy path: zero and negative inputs (-inf, tiny negatives) have no E8M0
        # value and become NaN under every overflow policy (ml_dtypes does the same)
        out = torch.where(x.reshape(t.shape) <= 0, torch.full_like(out, float("nan")), out)
    if out.dtype != carrier:
        back = out.to(carrier)
        ok = (back.to(torch.float64) == out) | torch.isnan(out)
        if not bool(ok.all()):
            v = out[~ok].reshape(-1)[0].item()
            raise ValueError(f"the {fmt.name} value {v!r} is not representable in {carrier}; "
                             "pass a float64 tensor to get it")
        # NaN lanes: numpy keeps the sign and a propagated payload; torch's cast does not.
        nan = torch.isnan(out)
        if bool(nan.any()):
            xb = _bits_of(t.detach().contiguous()).reshape(t.shape)
            ob = _bits_of(back)
            lay = _layout(carrier)
            qnan = (lay.expmax << lay.M) | (1 << (lay.M - 1))
            sgn = (torch.signbit(out).to(torch.int64) << lay.sign_shift) | qnan
            if carrier == torch.bfloat16:  # ml_dtypes canonicalises NaN, keeping the sign
                keep = (torch.signbit(t).to(torch.int64) << lay.sign_shift) | qnan
            elif carrier == torch.float32:  # the float32 <-> float64 casts quieten
                keep = xb | (1 << (lay.M - 1))
            else:  # numpy's float16 casts keep the payload
                keep = xb
            ob = torch.where(nan, torch.where(torch.isnan(t), keep, sgn), ob)
            back = _float_of(ob.reshape(-1), carrier).reshape(t.shape)
        out = back
    return out


def _quantize_table_torch(t, fmt, opts):
    """Codebook/dINT formats off-CPU: round on the CPU kernels (documented copy)."""
    cpu = t.detach().to("cpu")
    return _quantize_numba(cpu, fmt, opts).to(t.device)


# ---------------------------------------------------------------------------------------
# autograd
# ---------------------------------------------------------------------------------------

def _forward(t, fmt, opts, impl, axis):
    _check_dtype(t)
    if is_block_format(fmt):
        return _quantize_block(t, fmt, opts, axis)
    if impl == "auto":
        impl = "numba" if t.device.type == "cpu" else "torch"
    if impl == "numba":
        if t.device.type != "cpu":
            raise ValueError(f"impl='numba' needs a CPU tensor, got one on {t.device}; use "
                             "impl='torch' (or 'auto') for other devices")
        return _quantize_numba(t, fmt, opts)
    return _quantize_torch(t, fmt, opts)


def _check_dtype(t):
    if t.dtype not in _TORCH_DTYPES:
        raise TypeError(f"fpsim.torch.quantize takes float16/bfloat16/float32/float64 tensors, "
                        f"got {t.dtype}; convert with .float() first")


def _layout_of(t):
    """Strides of the op's result: ``t``'s own when ``t`` is dense (a transposed weight stays
    transposed, no copy), else contiguous (what ``torch.empty_like`` gives, as the fake)."""
    return torch.empty_like(t, device="meta").stride()  # the meta device allocates nothing


def _fresh(out, t):
    """``out`` with the strides of :func:`_layout_of` and not sharing ``t``'s memory (a
    custom op may not alias its input; a format that holds every input value may hand the
    input back)."""
    if out.stride() != _layout_of(t):
        out = torch.empty_like(t).copy_(out)
    if out.untyped_storage().data_ptr() == t.untyped_storage().data_ptr():
        out = out.clone(memory_format=torch.preserve_format)
    return out


def _op_opts(rounding, overflow, subnormals, daz, nan, seed, seed_key, srbits):
    return dict(rounding=rounding, overflow=overflow, subnormals=subnormals, daz=daz, nan=nan,
                seed=seed if seed_key == "" else _ops.lookup(seed_key), srbits=srbits)


# One opaque op per kernel call (see fpsim.torch._ops): torch.compile never traces into the
# Numba kernels, and eager runs go through the same op, so both give the same bits.
@torch.library.custom_op(f"{_ops.NAMESPACE}::quantize", mutates_args=())
def _quantize_op(t: torch.Tensor, fmt: str, rounding: str, overflow: Optional[str],
                 subnormals: Optional[bool], daz: bool, nan: Optional[str], seed: Optional[int],
                 seed_key: str, srbits: Optional[int], axis: Optional[int], impl: str, backward: str,
                 grad_fmt: str, grad_rounding: str) -> torch.Tensor:
    opts = _op_opts(rounding, overflow, subnormals, daz, nan, seed, seed_key, srbits)
    return _fresh(_forward(t, _ops.lookup(fmt), opts, impl, axis), t)


@_quantize_op.register_fake
def _(t, fmt, rounding, overflow, subnormals, daz, nan, seed, seed_key, srbits, axis, impl,
      backward, grad_fmt, grad_rounding):
    return torch.empty_like(t)  # the strides _fresh gives


def _q_setup(ctx, inputs, output):
    t, fmt = inputs[0], inputs[1]
    ctx.inputs = inputs[1:]
    ctx.fmax = None
    if inputs[12] == "clip":
        ctx.save_for_backward(t)
        f = _ops.lookup(fmt)
        ctx.fmax = float("inf") if is_block_format(f) else as_format(f).max


def _q_backward(ctx, g):
    (fmt, rounding, overflow, subnormals, daz, nan, seed, seed_key, srbits, axis, impl, backward,
     grad_fmt, grad_rounding) = ctx.inputs
    none = (None,) * 14
    if backward == "none":
        return (None,) + none
    if backward == "clip":
        (t,) = ctx.saved_tensors
        g = g * (t.abs() <= ctx.fmax).to(g.dtype)
    elif backward == "quantize":
        g = _quantize_op(g.contiguous(), grad_fmt, grad_rounding, None, subnormals, daz, nan, seed,
                         seed_key, None, axis, impl, "none", grad_fmt, grad_rounding)
    return (g,) + none


_quantize_op.register_autograd(_q_backward, setup_context=_q_setup)


def quantize(t, fmt, *, rounding="rne", overflow=None, subnormals=None, daz=False, nan=None,
             seed=None, srbits=None, backward="ste", grad_fmt=None, grad_rounding="rne",
             axis=-1, impl="auto"):
    """Round a torch tensor into ``fmt`` (same shape, dtype and device), differentiably.

    Takes the options of :func:`fpsim.quantize`, plus:

    backward : str
        ``"ste"`` (default) straight-through: the gradient passes unchanged; ``"clip"``
        straight-through inside ``[-max, max]`` of ``fmt``, zero outside; ``"quantize"``
        rounds the gradient into ``grad_fmt`` (default ``fmt``) with ``grad_rounding``;
        ``"none"``: no gradient.
    axis : int
        Block axis when ``fmt`` is a scaled/block format (ignored otherwise).
    impl : str
        ``"auto"`` (Numba kernels on CPU, pure torch elsewhere), ``"numba"`` or ``"torch"``.
        Both give identical bits.

    >>> import torch, fpsim.torch as ft
    >>> ft.quantize(torch.tensor([0.3, 500.0, -1e-4]), "e4m3").tolist()
    [0.3125, 448.0, -0.0]
    >>> x = torch.tensor([1.1, 2.9], requires_grad=True)
    >>> ft.quantize(x, "int4").sum().backward(); x.grad
    tensor([1., 1.])
    >>> ft.quantize(torch.tensor([1.1, 2.9]), "e2m1", impl="torch")
    tensor([1., 3.])
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"fpsim.torch.quantize takes a torch.Tensor, got {type(t).__name__} "
                        "(use fpsim.quantize for numpy arrays)")
    if backward not in BACKWARD_MODES:
        raise ValueError(f"backward={backward!r} is not allowed; choose one of {BACKWARD_MODES}")
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r} is not allowed; choose one of {IMPLS}")
    _check_dtype(t)
    fk = _fmt_key(fmt)
    gk = fk if grad_fmt is None else _fmt_key(grad_fmt)
    seed_key = ""
    if seed is not None:
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            seed = _ops.int64_seed(seed)
        else:  # a numpy Generator (drawn from inside the op, once per call) or a bad value
            seed, seed_key = None, _ops.key(seed)
    rounding, overflow, nan, grad_rounding = (_plain(v, w) for v, w in (
        (rounding, "rounding"), (overflow, "overflow"), (nan, "nan"), (grad_rounding, "grad_rounding")))
    return _quantize_op(t, fk, rounding, overflow, None if subnormals is None else bool(subnormals),
                        bool(daz), nan, seed, seed_key, srbits, axis, impl, backward, gk,
                        grad_rounding)


def _plain(v, what):
    """An option as the plain string a custom op takes (enum members by value)."""
    v = getattr(v, "value", v)
    if v is not None and not isinstance(v, str):
        raise TypeError(f"{what}={v!r}: expected a string option (see fpsim.quantize)")
    return v


@torch.compiler.assume_constant_result
def _fmt_key(fmt) -> str:
    """Registry key of a format (name or object), resolved outside the traced graph."""
    if isinstance(fmt, str) or not is_block_format(fmt):
        fmt = as_format(fmt)
    return _ops.key(fmt)
