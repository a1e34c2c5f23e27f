"""GEMM-like ops under :func:`fpsim.torch.emulate`, rewritten into
:func:`fpsim.torch.gemm.gemm` calls: linear, matmul/@, mm, bmm, addmm and friends, vector
products, multi_dot, tensordot, einsum of any arity, bilinear, every convolution,
RNN/LSTM/GRU and scaled_dot_product_attention.

Each handler takes ``(mode, func, args, kwargs)``; :mod:`fpsim.torch.handlers` maps torch
functions to them.
"""

from __future__ import annotations

import math
from collections import Counter

import torch
import torch.nn.functional as F

from .compute_ops import cq, softmax_core
from .conv import conv_gemm, conv_transpose_gemm
from .ops_common import OperandMismatchError, arg, op_name
from .gemm import gemm, prepare, grad_round, round_output
from .policy import Scaled
from .quantize import is_block_format
from .rnn import cell as _rnn_cell, recurrent as _recurrent

__all__ = ["linear", "matmul", "bmm", "addmm_like", "vec_ops", "multi_dot", "tensordot",
           "einsum", "bilinear", "conv", "rnn", "rnn_cell_h", "sdpa"]


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


def linear(mode, func, args, kwargs):
    x, w = arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "weight")
    bias = arg(args, kwargs, 2, "bias")
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


def matmul(mode, func, args, kwargs):
    a, b = arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "other")
    if kwargs.get("out") is not None:
        return mode.unsupported(func, args, kwargs, f"{op_name(func)}(out=...)")
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return mode.unsupported(func, args, kwargs, f"{op_name(func)} of a non-tensor")
    _same_dtype(op_name(func), a, b)
    if not _float_operands(a, b):  # integer GEMMs are exact in torch as in hardware
        return func(*args, **kwargs)
    return _out(mode, _vec_mm(mode, a, b, op_name(func), rb=b), mode.policy)


def bmm(mode, func, args, kwargs):
    a, b = arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "mat2")
    if kwargs.get("out") is not None:
        return mode.unsupported(func, args, kwargs, f"{op_name(func)}(out=...)")
    what = op_name(func)
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


def addmm_like(mode, func, args, kwargs):
    """addmm, baddbmm, addbmm, addmv, addr: ``beta * input + alpha * (product)``."""
    what = op_name(func)
    short = what.rsplit(".", 1)[-1]
    names = {"addmm": ("mat1", "mat2"), "baddbmm": ("batch1", "batch2"),
             "addbmm": ("batch1", "batch2"), "addmv": ("mat", "vec"), "addr": ("vec1", "vec2")}[short]
    inp = arg(args, kwargs, 0, "input")
    a, b = arg(args, kwargs, 1, names[0]), arg(args, kwargs, 2, names[1])
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


def vec_ops(mode, func, args, kwargs):
    """mv, dot, vdot, inner, outer/ger, linalg.vecdot."""
    what = op_name(func)
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


def multi_dot(mode, func, args, kwargs):
    """multi_dot / chain_matmul: pairwise left to right (a fixed order, not torch's
    cost-optimal one); every intermediate product is a GEMM result in the output format."""
    what = op_name(func)
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


def tensordot(mode, func, args, kwargs):
    a, b = arg(args, kwargs, 0, "a"), arg(args, kwargs, 1, "b")
    dims = arg(args, kwargs, 2, "dims", 2)
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


def einsum(mode, func, args, kwargs):
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
            cur = cq(torch.sum(cq(cur, mode.policy), summed), mode.policy)
            sc = "".join(c for c in sc if c in out)
        return cur.permute([sc.index(c) for c in out])
    for j in range(1, len(ops)):
        t, st = _diag(ops[j], subs[j])
        keep = set(out).union(*subs[j + 1:])
        cur, sc = _pair(mode, cur, sc, t, st, keep, sizes, ops[j])
        if j < len(ops) - 1:
            cur = _out(mode, cur, mode.policy)
    return _out(mode, cur.permute([sc.index(c) for c in out]), mode.policy)


def bilinear(mode, func, args, kwargs):
    """y = x1 A x2 + b as (x1 A) first, then the contraction with x2 (two GEMMs)."""
    x1, x2, w = (arg(args, kwargs, i, n) for i, n in enumerate(("input1", "input2", "weight")))
    bias = arg(args, kwargs, 3, "bias")
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


def _scaled_or_block(pol):
    return any(isinstance(f, Scaled) or is_block_format(f) for f in (pol.weight, pol.activation))


def conv(mode, func, args, kwargs):
    """conv1d/2d/3d, conv_transpose1d/2d/3d and torch.convolution."""
    what = op_name(func)
    short = what.rsplit(".", 1)[-1]
    x, w = arg(args, kwargs, 0, "input"), arg(args, kwargs, 1, "weight")
    bias = arg(args, kwargs, 2, "bias")
    if short == "convolution":  # (input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
        stride, padding, dilation, transposed, opad, groups = (args + (None,) * 9)[3:9]
        short = "conv_transpose" if transposed else "conv"
        nd = w.dim() - 2
        what = f"{short}{nd}d"
    else:
        nd = int(short[-2])
        transposed = short.startswith("conv_transpose")
        stride = arg(args, kwargs, 3, "stride", 1)
        padding = arg(args, kwargs, 4, "padding", 0)
        if transposed:
            opad = arg(args, kwargs, 5, "output_padding", 0)
            groups = arg(args, kwargs, 6, "groups", 1)
            dilation = arg(args, kwargs, 7, "dilation", 1)
        else:
            dilation = arg(args, kwargs, 5, "dilation", 1)
            groups = arg(args, kwargs, 6, "groups", 1)
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


def _rnn_linear(mode):
    def linear(x, w, b):
        y = _mm(mode, x, w.t(), "rnn", rb=w)
        if b is not None:
            y = y + b
        return _out(mode, y, mode.policy)
    return linear


def rnn(mode, func, args, kwargs):
    kind = op_name(func).rsplit(".", 1)[-1]
    if kwargs or len(args) != 9:
        return mode.unsupported(func, args, kwargs, f"torch.{kind} with keyword arguments")
    if isinstance(args[1], torch.Tensor) and args[1].dim() == 1 and args[1].dtype == torch.int64:
        return mode.unsupported(func, args, kwargs, f"torch.{kind} on a PackedSequence")
    x, hx, params, has_b, layers, drop, train, bidir, bfirst = args
    return _recurrent(kind, x, hx, list(params), has_b, layers, drop, train, bidir, bfirst,
                      _rnn_linear(mode))


def rnn_cell_h(mode, func, args, kwargs):
    kind = op_name(func).rsplit(".", 1)[-1].removesuffix("_cell")
    x, hx, w_ih, w_hh = (arg(args, kwargs, i, n) for i, n in enumerate(("input", "hx", "w_ih", "w_hh")))
    b_ih, b_hh = arg(args, kwargs, 4, "b_ih"), arg(args, kwargs, 5, "b_hh")
    return _rnn_cell(kind, x, hx, w_ih, w_hh, b_ih, b_hh, _rnn_linear(mode))


def sdpa(mode, func, args, kwargs):
    q, k, v = (arg(args, kwargs, i, n) for i, n in enumerate(("query", "key", "value")))
    mask = arg(args, kwargs, 3, "attn_mask")
    p_drop = arg(args, kwargs, 4, "dropout_p", 0.0)
    causal = arg(args, kwargs, 5, "is_causal", False)
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
    p = softmax_core(s, -1, pol)
    if p_drop > 0.0:
        p = F.dropout(p, p_drop, training=True)
    y = gemm(p.to(v.dtype), v, pol, roles=("activation", "activation"), what="sdpa PV")
    return _out(mode, y, pol)
