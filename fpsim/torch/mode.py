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
import math
import types
import warnings
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from . import coverage as _cov
from .conv import conv_gemm, conv_transpose_gemm
from .gemm import gemm, prepare, grad_round, round_output
from .policy import Policy, Scaled, as_policy
from .quantize import is_block_format, quantize
from .rnn import cell as _rnn_cell, recurrent as _recurrent

__all__ = ["emulate", "EmulationMode", "UnsupportedOpError", "OperandMismatchError", "Report",
           "UNSUPPORTED", "supported_ops", "coverage_table"]


class UnsupportedOpError(NotImplementedError):
    """An op with arithmetic fpsim cannot emulate ran under a strict policy."""


class OperandMismatchError(RuntimeError):
    """GEMM operands of different dtypes (eager torch raises a RuntimeError too; a TypeError
    would be swallowed by ``Tensor.__matmul__`` into a meaningless "unsupported operand")."""


# torch.compile: a constant at trace time, not traced string operations
_name = torch.compiler.assume_constant_result(_cov.op_name)


# ---------------------------------------------------------------------------------------
# handlers: (mode, func, args, kwargs) -> result, run with the mode popped
# ---------------------------------------------------------------------------------------

def _arg(args, kwargs, i, name, default=None):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _out(mode, y, pol):
    return round_output(y, pol.output, pol.rounding)


def _same_dtype(what, *ts):
    dts = {t.dtype for t in ts if isinstance(t, torch.Tensor)}
    if len(dts) > 1:
        a, b = (str(d).replace("torch.", "") for d in list(dict.fromkeys(t.dtype for t in ts))[:2])
        raise OperandMismatchError(
            f"{what}: expected both operands to have the same dtype, but got {a} != {b} "
            "(eager torch refuses this too); cast one of them: under emulation the formats "
            "come from the policy, not from the tensor dtype")


def _float_operands(*ts):
    return all(isinstance(t, torch.Tensor) for t in ts) and all(t.is_floating_point() for t in ts)


def _roles(b):
    """Parameters are weights; everything else an activation."""
    return ("activation", "weight" if isinstance(b, torch.nn.Parameter) else "activation")


def _mm(mode, a, b, what, rb=None):
    """Emulated ``a @ b`` (2-D or batched, no output rounding) with dtype checks."""
    _same_dtype(what, a, b)
    return gemm(a, b, mode.policy, roles=_roles(b if rb is None else rb), what=what)


def _linear(mode, func, args, kwargs):
    x, w = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "weight")
    bias = _arg(args, kwargs, 2, "bias")
    pol = mode.policy
    _same_dtype("linear", x, w)
    y = gemm(x, w.t(), pol, what="linear")
    if bias is not None:
        y = y + bias
    return _out(mode, y, pol)


def _vec_mm(mode, a, b, what, rb=None):
    """matmul semantics for 1-D operands (row / column vectors squeezed afterwards)."""
    sa = sb = False
    if a.dim() == 1:
        a, sa = a.unsqueeze(0), True
    if b.dim() == 1:
        b, sb = b.unsqueeze(-1), True
    y = _mm(mode, a, b, what, rb=rb)
    if sa:
        y = y.squeeze(-2)
    if sb:
        y = y.squeeze(-1)
    return y


def _matmul(mode, func, args, kwargs):
    a, b = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "other")
    if kwargs.get("out") is not None:
        return mode.unsupported(func, args, kwargs, f"{_name(func)}(out=...)")
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return mode.unsupported(func, args, kwargs, f"{_name(func)} of a non-tensor")
    _same_dtype(_name(func), a, b)
    if not _float_operands(a, b):  # integer GEMMs are exact in torch as in hardware
        return func(*args, **kwargs)
    return _out(mode, _vec_mm(mode, a, b, _name(func), rb=b), mode.policy)


def _bmm(mode, func, args, kwargs):
    a, b = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "mat2")
    if kwargs.get("out") is not None:
        return mode.unsupported(func, args, kwargs, f"{_name(func)}(out=...)")
    what = _name(func)
    nd = 3 if "bmm" in what else 2
    if a.dim() != b.dim() or a.dim() != nd:
        raise ValueError(f"{what}: expected {nd}-D operands, got "
                         f"shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return _out(mode, _mm(mode, a, b, what), mode.policy)


def _scale_add(y, inp, beta, alpha):
    """``beta * inp + alpha * y`` as torch's add*-ops define it (beta=0 ignores inp)."""
    if alpha != 1:
        y = y * alpha
    if beta != 0 and inp is not None:
        y = y + (inp if beta == 1 else inp * beta)
    return y


def _addmm_like(mode, func, args, kwargs):
    """addmm, baddbmm, addbmm, addmv, addr: ``beta * input + alpha * (product)``."""
    what = _name(func)
    short = what.rsplit(".", 1)[-1]
    names = {"addmm": ("mat1", "mat2"), "baddbmm": ("batch1", "batch2"),
             "addbmm": ("batch1", "batch2"), "addmv": ("mat", "vec"), "addr": ("vec1", "vec2")}[short]
    inp = _arg(args, kwargs, 0, "input")
    a, b = _arg(args, kwargs, 1, names[0]), _arg(args, kwargs, 2, names[1])
    beta, alpha = kwargs.get("beta", 1), kwargs.get("alpha", 1)
    if kwargs.get("out") is not None:
        return mode.unsupported(func, args, kwargs, f"{what}(out=...)")
    if short == "addbmm":  # sum over the batch: one GEMM reducing over batch x K
        bt, m, k = a.shape
        y = _mm(mode, a.permute(1, 0, 2).reshape(m, bt * k), b.reshape(bt * k, b.shape[-1]), what, rb=b)
    elif short == "addmv":
        y = _mm(mode, a, b.unsqueeze(-1), what, rb=b).squeeze(-1)
    elif short == "addr":
        y = _mm(mode, a.unsqueeze(-1), b.unsqueeze(0), what, rb=b)
    else:
        y = _mm(mode, a, b, what)
    return _out(mode, _scale_add(y, inp, beta, alpha), mode.policy)


def _vec_ops(mode, func, args, kwargs):
    """mv, dot, vdot, inner, outer/ger, linalg.vecdot."""
    what = _name(func)
    short = what.rsplit(".", 1)[-1]
    a = args[0] if args else kwargs.get("input", kwargs.get("x"))
    b = args[1] if len(args) > 1 else next((kwargs[k] for k in ("vec", "tensor", "other", "vec2", "y")
                                            if k in kwargs), None)
    if kwargs.get("out") is not None:
        return mode.unsupported(func, args, kwargs, f"{what}(out=...)")
    if not _float_operands(a, b):
        _same_dtype(what, a, b)
        return func(*args, **kwargs)
    if short in ("dot", "vdot"):
        if a.dim() != 1 or b.dim() != 1 or a.numel() != b.numel():
            raise ValueError(f"{what}: expected two 1-D tensors of the same length, got shapes "
                             f"{tuple(a.shape)} and {tuple(b.shape)}")
        y = _mm(mode, a.unsqueeze(0), b.unsqueeze(-1), what, rb=b).reshape(())
    elif short == "mv":
        y = _mm(mode, a, b.unsqueeze(-1), what, rb=b).squeeze(-1)
    elif short in ("outer", "ger"):
        y = _mm(mode, a.reshape(-1, 1), b.reshape(1, -1), what, rb=b)
    elif short == "inner":
        if a.dim() == 0 or b.dim() == 0:  # a scalar times a tensor: elementwise
            _same_dtype(what, a, b)
            return func(*args, **kwargs)
        y = _mm(mode, a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]).t(), what, rb=b)
        y = y.reshape(*a.shape[:-1], *b.shape[:-1])
    else:  # vecdot(x, y, dim=-1): a batched dot product along dim (real tensors)
        dim = kwargs.get("dim", -1)
        x, yv = torch.broadcast_tensors(a, b)
        x, yv = x.movedim(dim, -1).unsqueeze(-2), yv.movedim(dim, -1).unsqueeze(-1)
        y = _mm(mode, x.conj() if x.is_complex() else x, yv, what, rb=b).squeeze(-1).squeeze(-1)
    return _out(mode, y, mode.policy)


def _multi_dot(mode, func, args, kwargs):
    """multi_dot / chain_matmul: pairwise left to right (a fixed order, not torch's
    cost-optimal one); every intermediate product is a GEMM result in the output format."""
    what = _name(func)
    ts = args[0] if what.endswith("multi_dot") else args
    ts = list(ts if not (len(ts) == 1 and isinstance(ts[0], (list, tuple))) else ts[0])
    if kwargs.get("out") is not None or len(ts) < 2 or not _float_operands(*ts):
        return mode.unsupported(func, args, kwargs, f"{what} of {len(ts)} non-float/out= operand(s)")
    first_vec, last_vec = ts[0].dim() == 1, ts[-1].dim() == 1
    cur = ts[0].unsqueeze(0) if first_vec else ts[0]
    for i, t in enumerate(ts[1:], 1):
        cur = _out(mode, _mm(mode, cur, t.unsqueeze(-1) if (i == len(ts) - 1 and last_vec) else t,
                             what, rb=t), mode.policy)
    if last_vec:
        cur = cur.squeeze(-1)
    if first_vec:
        cur = cur.squeeze(0)
    return cur


def _tensordot(mode, func, args, kwargs):
    a, b = _arg(args, kwargs, 0, "a"), _arg(args, kwargs, 1, "b")
    dims = _arg(args, kwargs, 2, "dims", 2)
    if kwargs.get("out") is not None or not _float_operands(a, b):
        return mode.unsupported(func, args, kwargs, "tensordot(out=.../non-float)")
    if isinstance(dims, torch.Tensor):
        dims = dims.tolist()
    if isinstance(dims, int):
        da, db = list(range(a.dim() - dims, a.dim())), list(range(dims))
    else:
        da, db = ([d] if isinstance(d, int) else list(d) for d in dims)
    da, db = [d % a.dim() for d in da], [d % b.dim() for d in db]
    fa = [d for d in range(a.dim()) if d not in da]
    fb = [d for d in range(b.dim()) if d not in db]
    K = math.prod(a.shape[d] for d in da)
    A = a.permute(fa + da).reshape(-1, K)
    B = b.permute(db + fb).reshape(K, -1)
    y = _mm(mode, A, B, "torch.tensordot", rb=b)
    y = y.reshape(*[a.shape[d] for d in fa], *[b.shape[d] for d in fb])
    return _out(mode, y, mode.policy)


# ---- einsum of any arity ---------------------------------------------------------------

def _einsum_parse(eq, ops):
    """(letters per operand, output letters) with the ellipsis expanded into fresh letters."""
    eq = eq.replace(" ", "")
    if "->" in eq:
        lhs, out = eq.split("->")
    else:
        lhs, out = eq, None
    ins = lhs.split(",")
    if len(ins) != len(ops):
        raise ValueError(f"einsum {eq!r}: {len(ins)} operand subscripts for {len(ops)} tensors")
    used = set(eq)
    free = [c for c in "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkjihgfedcba" if c not in used]
    nell = max((o.dim() - (len(s) - 3) for s, o in zip(ins, ops) if "..." in s), default=0)
    ell = "".join(free[:nell])
    subs = []
    for s, o in zip(ins, ops):
        if "..." in s:
            k = o.dim() - (len(s) - 3)
            s = s.replace("...", ell[nell - k:] if k else "")
        if len(s) != o.dim():
            raise ValueError(f"einsum {eq!r}: subscripts {s!r} for a {o.dim()}-D operand")
        subs.append(s)
    if out is None:
        cnt = Counter("".join(subs))
        out = ell + "".join(sorted(c for c, n in cnt.items() if n == 1 and c not in ell))
    else:
        out = out.replace("...", ell)
    return subs, out


def _diag(t, s):
    """Take diagonals for letters repeated within one operand ('ii->i')."""
    while len(set(s)) != len(s):
        c = next(c for c in s if s.count(c) > 1)
        i = s.index(c)
        j = s.index(c, i + 1)
        t = torch.diagonal(t, 0, i, j)  # the diagonal goes last
        s = s[:i] + s[i + 1:j] + s[j + 1:] + c
    return t, s


def _pair(mode, A, sa, B, sb, keep, sizes, rb):
    """Contract two operands: letters in both and kept are batch, letters not kept (in one
    operand or both) are summed: one GEMM with K = their product (an operand lacking a
    summed letter is broadcast along it)."""
    bat = [c for c in sa if c in sb and c in keep]
    con = [c for c in dict.fromkeys(sa + sb) if c not in keep]
    fa = [c for c in sa if c not in sb and c in keep]
    fb = [c for c in sb if c not in sa and c in keep]

    def arrange(t, s, order):
        for c in order:
            if c not in s:
                t, s = t.unsqueeze(-1), s + c
        t = t.permute([s.index(c) for c in order])
        return t.expand(*[sizes[c] for c in order])

    A = arrange(A, sa, bat + fa + con)
    B = arrange(B, sb, bat + con + fb)
    nb = [sizes[c] for c in bat]
    M, N, K = (math.prod(sizes[c] for c in x) for x in (fa, fb, con))
    y = _mm(mode, A.reshape(*nb, M, K), B.reshape(*nb, K, N), "torch.einsum", rb=rb)
    return y.reshape(*nb, *[sizes[c] for c in fa + fb]), "".join(bat + fa + fb)


def _einsum(mode, func, args, kwargs):
    """einsum: repeated letters -> diagonals; one operand -> a sum at compute precision;
    several -> pairwise GEMMs left to right (operand 0 with 1, the result with 2, ...), each
    intermediate rounded to the output format like any GEMM result."""
    if not args or not isinstance(args[0], str):
        return mode.unsupported(func, args, kwargs, "einsum in sublist format")
    ops = args[1:]
    if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
        ops = tuple(ops[0])
    if not ops or not _float_operands(*ops):
        return mode.unsupported(func, args, kwargs, "einsum of non-float operands")
    _same_dtype("torch.einsum", *ops)
    subs, out = _einsum_parse(args[0], ops)
    sizes = {}
    for s, o in zip(subs, ops):
        for c, n in zip(s, o.shape):
            if sizes.get(c, 1) == 1:
                sizes[c] = n
    cur, sc = _diag(ops[0], subs[0])
    if len(ops) == 1:
        summed = [i for i, c in enumerate(sc) if c not in out]
        if summed:
            cur = _cq(torch.sum(_cq(cur, mode.policy), summed), mode.policy)
            sc = "".join(c for c in sc if c in out)
        return cur.permute([sc.index(c) for c in out])
    for j in range(1, len(ops)):
        t, st = _diag(ops[j], subs[j])
        keep = set(out).union(*subs[j + 1:])
        cur, sc = _pair(mode, cur, sc, t, st, keep, sizes, ops[j])
        if j < len(ops) - 1:
            cur = _out(mode, cur, mode.policy)
    return _out(mode, cur.permute([sc.index(c) for c in out]), mode.policy)


def _bilinear(mode, func, args, kwargs):
    """y = x1 A x2 + b as (x1 A) first, then the contraction with x2 (two GEMMs)."""
    x1, x2, w = (_arg(args, kwargs, i, n) for i, n in enumerate(("input1", "input2", "weight")))
    bias = _arg(args, kwargs, 3, "bias")
    _same_dtype("torch.bilinear", x1, x2, w)
    lead = x1.shape[:-1]
    a, b = x1.reshape(-1, x1.shape[-1]), x2.reshape(-1, x2.shape[-1])
    o, i, j = w.shape
    t = _mm(mode, a, w.permute(1, 0, 2).reshape(i, o * j), "torch.bilinear", rb=w)  # (n, o*j)
    t = _out(mode, t, mode.policy).reshape(-1, o, j)
    y = _mm(mode, t, b.unsqueeze(-1), "torch.bilinear").squeeze(-1)  # (n, o)
    if bias is not None:
        y = y + bias
    return _out(mode, y.reshape(*lead, o), mode.policy)


# ---- convolutions ----------------------------------------------------------------------

def _scaled_or_block(pol):
    return any(isinstance(f, Scaled) or is_block_format(f) for f in (pol.weight, pol.activation))


def _conv(mode, func, args, kwargs):
    """conv1d/2d/3d, conv_transpose1d/2d/3d and torch.convolution."""
    what = _name(func)
    short = what.rsplit(".", 1)[-1]
    x, w = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "weight")
    bias = _arg(args, kwargs, 2, "bias")
    if short == "convolution":  # (input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
        stride, padding, dilation, transposed, opad, groups = (args + (None,) * 9)[3:9]
        short = "conv_transpose" if transposed else "conv"
        nd = w.dim() - 2
        what = f"{short}{nd}d"
    else:
        nd = int(short[-2])
        transposed = short.startswith("conv_transpose")
        stride = _arg(args, kwargs, 3, "stride", 1)
        padding = _arg(args, kwargs, 4, "padding", 0)
        if transposed:
            opad = _arg(args, kwargs, 5, "output_padding", 0)
            groups = _arg(args, kwargs, 6, "groups", 1)
            dilation = _arg(args, kwargs, 7, "dilation", 1)
        else:
            dilation = _arg(args, kwargs, 5, "dilation", 1)
            groups = _arg(args, kwargs, 6, "groups", 1)
    _same_dtype(what, x, w)
    pol = mode.policy
    if not _float_operands(x, w):
        return func(*args, **kwargs)
    if pol.is_native and not _scaled_or_block(pol):
        # element formats round each value on its own: torch's conv on the rounded operands
        # is the same fp32 implicit GEMM, much faster
        qx, _ = prepare(x, pol.activation, pol.rounding, 1)
        qw, _ = prepare(w, pol.weight, pol.rounding, 1)
        if transposed:
            y = getattr(F, f"conv_transpose{nd}d")(qx, qw, None, stride, padding, opad, groups, dilation)
        else:
            y = getattr(F, f"conv{nd}d")(qx, qw, None, stride, padding, dilation, groups)
        y = grad_round(y, pol.gradient, pol.grad_rounding)
    elif transposed:
        y = conv_transpose_gemm(x, w, stride, padding, opad, groups, dilation, nd=nd, pol=pol, what=what)
    else:
        y = conv_gemm(x, w, stride, padding, dilation, groups, nd=nd, pol=pol, what=what)
    if bias is not None:
        y = y + bias.reshape(-1, *([1] * nd))
    return _out(mode, y, pol)


# ---- recurrent layers ------------------------------------------------------------------

def _rnn_linear(mode):
    def linear(x, w, b):
        y = _mm(mode, x, w.t(), "rnn", rb=w)
        if b is not None:
            y = y + b
        return _out(mode, y, mode.policy)
    return linear


def _rnn(mode, func, args, kwargs):
    kind = _name(func).rsplit(".", 1)[-1]
    if kwargs or len(args) != 9:
        return mode.unsupported(func, args, kwargs, f"torch.{kind} with keyword arguments")
    if isinstance(args[1], torch.Tensor) and args[1].dim() == 1 and args[1].dtype == torch.int64:
        return mode.unsupported(func, args, kwargs, f"torch.{kind} on a PackedSequence")
    x, hx, params, has_b, layers, drop, train, bidir, bfirst = args
    return _recurrent(kind, x, hx, list(params), has_b, layers, drop, train, bidir, bfirst,
                      _rnn_linear(mode))


def _rnn_cell_h(mode, func, args, kwargs):
    kind = _name(func).rsplit(".", 1)[-1].removesuffix("_cell")
    x, hx, w_ih, w_hh = (_arg(args, kwargs, i, n) for i, n in enumerate(("input", "hx", "w_ih", "w_hh")))
    b_ih, b_hh = _arg(args, kwargs, 4, "b_ih"), _arg(args, kwargs, 5, "b_hh")
    return _rnn_cell(kind, x, hx, w_ih, w_hh, b_ih, b_hh, _rnn_linear(mode))


# ---- attention -------------------------------------------------------------------------

def _sdpa(mode, func, args, kwargs):
    q, k, v = (_arg(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value")))
    mask = _arg(args, kwargs, 3, "attn_mask")
    p_drop = _arg(args, kwargs, 4, "dropout_p", 0.0)
    causal = _arg(args, kwargs, 5, "is_causal", False)
    scale = kwargs.get("scale")
    if kwargs.get("enable_gqa", False) and k.size(-3) != q.size(-3):
        rep = q.size(-3) // k.size(-3)
        k, v = k.repeat_interleave(rep, -3), v.repeat_interleave(rep, -3)
    pol = mode.policy
    L, S = q.size(-2), k.size(-2)
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    _same_dtype("scaled_dot_product_attention", q, k, v)
    s = gemm(q, k.transpose(-2, -1), pol, roles=("activation", "activation"), what="sdpa QKᵀ")
    s = s * scale
    if causal:
        keep = torch.ones(L, S, dtype=torch.bool, device=q.device).tril()
        s = s.masked_fill(~keep, float("-inf"))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask
    split_kv = getattr(pol.accum, "attention", None)
    if split_kv is not None and p_drop == 0.0:  # a Deployment's attention kernel (split-KV)
        return _out(mode, split_kv(s, v, pol), pol)
    p = _softmax_core(s, -1, pol)
    if p_drop > 0.0:
        p = F.dropout(p, p_drop, training=True)
    y = gemm(p.to(v.dtype), v, pol, roles=("activation", "activation"), what="sdpa PV")
    return _out(mode, y, pol)


# ---- compute precision: softmax, norms, reductions, losses -----------------------------

def _cq(x, pol):
    """Round into the compute precision (straight-through)."""
    if pol.compute is None or not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return x
    return quantize(x, pol.compute, rounding=pol.rounding)


def _cq_all(y, pol):
    if isinstance(y, (tuple, list)):
        return type(y)(_cq(t, pol) for t in y)
    return _cq(y, pol)


def _softmax_core(x, dim, pol, log=False, dtype=None):
    x = _cq(x, pol)
    if dtype is not None:
        x = x.to(dtype)
    y = torch.log_softmax(x, dim) if log else torch.softmax(x, dim)
    return _cq(y, pol)


def _softmax(mode, func, args, kwargs):
    x = _arg(args, kwargs, 0, "input")
    dim = _arg(args, kwargs, 1, "dim")
    if mode.policy.compute is None or not x.is_floating_point() or dim is None:
        return func(*args, **kwargs)
    if isinstance(dim, str):
        return mode.unsupported(func, args, kwargs, f"{_name(func)} with a named dim")
    dtype = kwargs.get("dtype", _arg(args, kwargs, 3 if "functional" in _name(func) else 2, "dtype")
                       if len(args) > 2 and not isinstance(args[2], int) else kwargs.get("dtype"))
    return _softmax_core(x, dim, mode.policy, log="log_softmax" in _name(func), dtype=dtype)


def _first_in_compute(mode, func, args, kwargs):
    """Norms and reductions: the input (first argument only: running statistics of batch
    norm are updated in place and must stay the caller's tensors) and the results are
    rounded into the compute precision, fp32 arithmetic in between."""
    pol = mode.policy
    if kwargs.get("out") is not None:
        return mode.unsupported(func, args, kwargs, f"{_name(func)}(out=...)")
    norm = getattr(pol.accum, "norm", None)  # a Deployment's norm kernel (row-count split)
    if norm is not None:
        y = norm(func, args, kwargs)
        if y is not NotImplemented:
            return y
    if pol.compute is None:
        return func(*args, **kwargs)
    if args:
        args = (_cq(args[0], pol),) + tuple(args[1:])
    elif "input" in kwargs:
        kwargs = dict(kwargs, input=_cq(kwargs["input"], pol))
    return _cq_all(func(*args, **kwargs), pol)


def _all_in_compute(mode, func, args, kwargs):
    """Losses and similarities: every floating tensor argument and the result are rounded
    into the compute precision."""
    pol = mode.policy
    if pol.compute is None:
        return func(*args, **kwargs)
    args = tuple(_cq(a, pol) for a in args)
    kwargs = {k: _cq(v, pol) for k, v in kwargs.items()}
    return _cq_all(func(*args, **kwargs), pol)


# ---------------------------------------------------------------------------------------
# the handler table (the emulated set of the coverage contract)
# ---------------------------------------------------------------------------------------

_T = torch.Tensor


def _fns(*names):
    """Resolve "torch.x" / "Tensor.x" / "F.x" / "linalg.x" / "nn.x" names that exist."""
    out = []
    for n in names:
        ns, _, attr = n.partition(".")
        obj = {"torch": torch, "Tensor": _T, "F": F, "linalg": torch.linalg,
               "nn": torch._C._nn, "special": torch.special}[ns]
        f = getattr(obj, attr, None)
        if f is not None:
            out.append(f)
    return out


_GROUPS = [
    (_linear, ["F.linear"]),
    (_matmul, ["torch.matmul", "Tensor.matmul", "Tensor.__matmul__", "linalg.matmul"]),
    (_bmm, ["torch.mm", "Tensor.mm", "torch.bmm", "Tensor.bmm"]),
    (_addmm_like, ["torch.addmm", "Tensor.addmm", "torch.baddbmm", "Tensor.baddbmm",
                   "torch.addbmm", "Tensor.addbmm", "torch.addmv", "Tensor.addmv",
                   "torch.addr", "Tensor.addr"]),
    (_vec_ops, ["torch.mv", "Tensor.mv", "torch.dot", "Tensor.dot", "torch.vdot", "Tensor.vdot",
                "torch.inner", "Tensor.inner", "torch.outer", "Tensor.outer", "torch.ger",
                "Tensor.ger", "linalg.vecdot"]),
    (_multi_dot, ["linalg.multi_dot", "torch.chain_matmul"]),
    (_tensordot, ["torch.tensordot"]),
    (_einsum, ["torch.einsum"]),
    (_bilinear, ["torch.bilinear"]),
    (_conv, ["torch.conv1d", "torch.conv2d", "torch.conv3d", "torch.conv_transpose1d",
             "torch.conv_transpose2d", "torch.conv_transpose3d", "torch.convolution"]),
    (_rnn, ["torch.lstm", "torch.gru", "torch.rnn_tanh", "torch.rnn_relu"]),
    (_rnn_cell_h, ["torch.lstm_cell", "torch.gru_cell", "torch.rnn_tanh_cell", "torch.rnn_relu_cell"]),
    (_sdpa, ["F.scaled_dot_product_attention"]),
    (_softmax, ["F.softmax", "torch.softmax", "Tensor.softmax", "F.log_softmax",
                "torch.log_softmax", "Tensor.log_softmax", "special.softmax", "special.log_softmax"]),
    (_first_in_compute, [
        "F.layer_norm", "torch.layer_norm", "F.rms_norm", "torch.rms_norm", "torch.batch_norm",
        "torch.instance_norm", "torch.group_norm", "torch.sum", "Tensor.sum", "Tensor.sum_to_size",
        "torch.mean", "Tensor.mean", "torch.nansum", "Tensor.nansum", "torch.nanmean",
        "Tensor.nanmean", "torch.prod", "Tensor.prod", "torch.cumsum", "Tensor.cumsum",
        "torch.cumprod", "Tensor.cumprod", "torch.logcumsumexp", "Tensor.logcumsumexp",
        "torch.var", "Tensor.var", "torch.std", "Tensor.std", "torch.var_mean", "torch.std_mean",
        "torch.logsumexp", "Tensor.logsumexp", "special.logsumexp", "torch.norm", "Tensor.norm",
        "torch.frobenius_norm", "linalg.vector_norm", "linalg.matrix_norm", "linalg.norm",
        "torch.renorm", "Tensor.renorm", "torch.trace", "Tensor.trace"]),
    (_all_in_compute, [
        "nn.cross_entropy_loss", "nn.nll_loss", "nn.nll_loss_nd", "nn.nll_loss2d", "nn.mse_loss",
        "nn.l1_loss", "nn.smooth_l1_loss", "nn.huber_loss", "nn.binary_cross_entropy",
        "nn.soft_margin_loss", "nn.multi_margin_loss", "nn.multilabel_margin_loss",
        "torch.binary_cross_entropy_with_logits", "torch.kl_div", "torch.poisson_nll_loss",
        "torch.cosine_embedding_loss", "torch.hinge_embedding_loss", "torch.margin_ranking_loss",
        "torch.triplet_margin_loss", "torch.cosine_similarity", "torch.pairwise_distance",
        "torch.pdist", "torch.cdist", "torch._cdist_forward"]),
]
_HANDLERS = {f: h for h, ns in _GROUPS for f in _fns(*ns)}
if hasattr(_T, "__rmatmul__"):
    _HANDLERS[_T.__rmatmul__] = lambda m, f, a, k: _matmul(m, torch.matmul, (a[1], a[0]), k)
# torch.norm/cdist/chain_matmul/tensordot/einsum are Python functions of torch.functional:
# handled above before they could run as composites


def _classify(func):
    """"emulated", "composite", a pass-through reason (str) or None (not in the rule)."""
    if func in _HANDLERS:
        return "emulated"
    if _is_composite(func):
        return "composite"
    n = _name(func)
    if n in _cov.PASSTHROUGH:
        return _cov.PASSTHROUGH[n]
    if _cov.matches_rule(n):
        return "not classified by the coverage contract (treated as pass-through)"
    return None


def coverage_table() -> list:
    """The contract for the installed torch: ``[(op name, status, reason)]``, status one of
    ``"emulated"``, ``"composite"``, ``"pass-through"``.

    >>> ("torch.conv3d", "emulated", "") in coverage_table()
    True
    """
    rows = []
    for n, f in sorted(_cov.candidates().items()):
        c = _classify(f)
        if c in ("emulated", "composite"):
            rows.append((n, c, ""))
        else:
            rows.append((n, "pass-through", c or ""))
    return rows


def __getattr__(name):
    if name == "UNSUPPORTED":  # the pass-through ops of the contract (functions), on demand
        return tuple(f for n, f in sorted(_cov.candidates().items())
                     if _classify(f) not in ("emulated", "composite"))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Python composites of torch.nn.functional that are run inside the mode (their own
# dispatch check switched off) so that the ops they call are emulated
_COMPOSITE_MODULES = ("torch.nn.functional", "torch.functional")
_composite_cache: dict = {}


def _no_tf(*_a, **_k):
    return False


def _inner(func):
    """A copy of the Python function ``func`` whose torch-function dispatch check is off."""
    f = _composite_cache.get(func)
    if f is None:
        g = dict(func.__globals__)
        for n in ("has_torch_function", "has_torch_function_unary", "has_torch_function_variadic"):
            if n in g:
                g[n] = _no_tf
        f = types.FunctionType(func.__code__, g, func.__name__, func.__defaults__, func.__closure__)
        f.__kwdefaults__ = func.__kwdefaults__
        _composite_cache[func] = f
    return f


def _is_composite(func) -> bool:
    """A Python function of torch.nn.functional / torch.functional that dispatches itself."""
    return (isinstance(func, types.FunctionType) and func.__module__ in _COMPOSITE_MODULES
            and any(n.startswith("has_torch_function") for n in func.__code__.co_names))


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
_COMPOSITES = {f: _inner(f) for m in (F, torch.functional) for f in vars(m).values() if _is_composite(f)}

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
        what = what or _name(func)
        self._pt_calls += 1
        self._report.passthrough[what] += 1
        reason = _classify(func)
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
        h = _HANDLERS.get(func)
        if h is not None:
            n0 = self._pt_calls
            out = h(self, func, args, kwargs)
            if self._pt_calls == n0:
                self._report.emulated[_name(func)] += 1
            return out
        inner = _COMPOSITES.get(func)  # a dict lookup, not _is_composite: torch.compile can trace it
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
        n = _name(func)
        v = _pt_cache[func] = n in _cov.PASSTHROUGH or _cov.matches_rule(n)
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


def supported_ops() -> list:
    """Names of the torch functions emulated under every profile (the contract's emulated set).

    >>> "torch.nn.functional.linear" in supported_ops()
    True
    """
    return sorted({_name(f) for f in _HANDLERS})
