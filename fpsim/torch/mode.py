"""``with fpsim.torch.emulate(policy): ...`` — intercept torch ops and emulate them.

A :class:`torch.overrides.TorchFunctionMode` sees every torch function call made inside the
block. GEMM-like ops (linear, matmul/@, mm, bmm, baddbmm, addmm, 2-operand einsum,
conv1d/conv2d, scaled_dot_product_attention) go through :func:`fpsim.torch.gemm.gemm`;
softmax, log_softmax, layer_norm, rms_norm, sum and mean run at the policy's compute
precision. Python-level composites of ``torch.nn.functional`` (e.g. multi-head attention)
are run *inside* the mode so that their inner GEMMs are emulated too. Ops that do
arithmetic fpsim does not emulate (:data:`UNSUPPORTED`) raise under a strict policy and run
natively with a one-time warning otherwise.
"""

from __future__ import annotations

import math
import types
import warnings

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .gemm import gemm, round_output
from .policy import Policy, as_policy
from .quantize import quantize

__all__ = ["emulate", "EmulationMode", "UnsupportedOpError", "UNSUPPORTED", "supported_ops"]


class UnsupportedOpError(NotImplementedError):
    """An op with arithmetic fpsim cannot emulate ran under a strict policy."""


@torch.compiler.assume_constant_result  # torch.compile: a constant, not traced str ops
def _name(func) -> str:
    mod = getattr(func, "__module__", None) or ""
    q = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    q = q.replace("_VariableFunctionsClass.", "").replace("TensorBase.", "Tensor.")
    if mod in ("torch", "") or mod.startswith("torch._C"):
        return q if q.startswith("Tensor.") else f"torch.{q}" if not mod.startswith("torch._C._nn") else f"torch.nn.functional.{q}"
    return f"{mod}.{q}"


# ---------------------------------------------------------------------------------------
# handlers: (mode, func, args, kwargs) -> result, run with the mode popped
# ---------------------------------------------------------------------------------------

def _arg(args, kwargs, i, name, default=None):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _out(mode, y, pol):
    return round_output(y, pol.output, pol.rounding)


def _linear(mode, func, args, kwargs):
    x, w = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "weight")
    bias = _arg(args, kwargs, 2, "bias")
    pol = mode.policy
    y = gemm(x, w.t(), pol, what="linear")
    if bias is not None:
        y = y + bias
    return _out(mode, y, pol)


def _matmul(mode, func, args, kwargs):
    a, b = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "other")
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or "out" in kwargs:
        return mode.passthrough(func, args, kwargs)
    if not (a.is_floating_point() and b.is_floating_point()):
        return func(*args, **kwargs)
    sa = sb = False
    if a.dim() == 1:
        a, sa = a.unsqueeze(0), True
    if b.dim() == 1:
        b, sb = b.unsqueeze(-1), True
    y = gemm(a, b, mode.policy, roles=_roles(b), what=_name(func))
    if sa:
        y = y.squeeze(-2)
    if sb:
        y = y.squeeze(-1)
    return _out(mode, y, mode.policy)


def _roles(b):
    """Parameters are weights; everything else an activation."""
    return ("activation", "weight" if isinstance(b, torch.nn.Parameter) else "activation")


def _bmm(mode, func, args, kwargs):
    a, b = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "mat2")
    if "out" in kwargs:
        return mode.passthrough(func, args, kwargs)
    what = _name(func)
    if a.dim() != b.dim() or a.dim() != (3 if "bmm" in what else 2):
        raise ValueError(f"{what}: expected {3 if 'bmm' in what else 2}-D operands, got "
                         f"shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return _out(mode, gemm(a, b, mode.policy, roles=_roles(b), what=what), mode.policy)


def _addmm_like(mode, func, args, kwargs):
    inp = _arg(args, kwargs, 0, "input")
    a, b = _arg(args, kwargs, 1, "batch1" if "bmm" in _name(func) else "mat1"), \
        _arg(args, kwargs, 2, "batch2" if "bmm" in _name(func) else "mat2")
    if a is None:
        a, b = kwargs.get("mat1", kwargs.get("batch1")), kwargs.get("mat2", kwargs.get("batch2"))
    beta, alpha = kwargs.get("beta", 1), kwargs.get("alpha", 1)
    if "out" in kwargs:
        return mode.passthrough(func, args, kwargs)
    y = gemm(a, b, mode.policy, roles=_roles(b), what=_name(func))
    if alpha != 1:
        y = y * alpha
    if beta != 0:
        y = y + (inp if beta == 1 else inp * beta)
    return _out(mode, y, mode.policy)


def _einsum(mode, func, args, kwargs):
    eq = args[0]
    ops = args[1:]
    if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
        ops = tuple(ops[0])
    if len(ops) != 2 or not all(isinstance(o, torch.Tensor) and o.is_floating_point() for o in ops):
        return mode.unsupported(func, args, kwargs, f"einsum with {len(ops)} operand(s)")
    plan = _einsum_plan(eq.replace(" ", ""), ops[0].dim(), ops[1].dim())
    if plan is None:
        return mode.unsupported(func, args, kwargs, f"einsum {eq!r} (repeated or summed-only indices)")
    a, b = ops
    bat, fa, fb, con, out = plan[:5]
    ia = {c: i for i, c in enumerate(plan[5])}
    ib = {c: i for i, c in enumerate(plan[6])}
    A = a.permute([ia[c] for c in bat + fa + con])
    B = b.permute([ib[c] for c in bat + con + fb])
    sz = {c: a.shape[ia[c]] for c in ia}
    sz.update({c: b.shape[ib[c]] for c in ib if c not in sz or sz[c] == 1})
    nb = [max(a.shape[ia[c]], b.shape[ib[c]]) for c in bat]
    M = math.prod(sz[c] for c in fa)
    N = math.prod(sz[c] for c in fb)
    Kd = math.prod(sz[c] for c in con)
    A = A.expand(*nb, *A.shape[len(bat):]).reshape(*nb, M, Kd)
    B = B.expand(*nb, *B.shape[len(bat):]).reshape(*nb, Kd, N)
    y = gemm(A, B, mode.policy, roles=_roles(b), what="torch.einsum")
    y = y.reshape(*nb, *[sz[c] for c in fa], *[sz[c] for c in fb])
    cur = bat + fa + fb
    y = y.permute([cur.index(c) for c in out])
    return _out(mode, y, mode.policy)


def _einsum_plan(eq, na, nb):
    if "->" not in eq:
        lhs = eq
        ins = lhs.split(",")
        if len(ins) != 2:
            return None
        from collections import Counter
        cnt = Counter(lhs.replace(",", "").replace(".", ""))
        out = "".join(sorted(c for c, n in cnt.items() if n == 1))
        if "..." in lhs:
            out = "..." + out
    else:
        lhs, out = eq.split("->")
        ins = lhs.split(",")
        if len(ins) != 2:
            return None
    sa, sb = ins
    # expand the ellipsis into fresh capital letters
    free = [c for c in "ZYXWVUTSRQPONMLKJIHGFEDCBA" if c not in eq]
    nell = 0
    for s, n in ((sa, na), (sb, nb)):
        if "..." in s:
            nell = max(nell, n - (len(s) - 3))
    ell = "".join(free[:nell])

    def expand(s, n):
        if "..." not in s:
            return s
        k = n - (len(s) - 3)
        return s.replace("...", ell[nell - k:])
    sa, sb, out = expand(sa, na), expand(sb, nb), out.replace("...", ell)
    if len(set(sa)) != len(sa) or len(set(sb)) != len(sb) or len(sa) != na or len(sb) != nb:
        return None
    bat = "".join(c for c in out if c in sa and c in sb)
    con = "".join(c for c in sa if c in sb and c not in out)
    fa = "".join(c for c in sa if c not in sb)
    fb = "".join(c for c in sb if c not in sa)
    if any(c not in out for c in fa + fb):  # an index summed over one operand only
        return None
    return bat, fa, fb, con, out, sa, sb


def _conv(mode, func, args, kwargs):
    nd = 1 if "conv1d" in _name(func) else 2
    x, w = _arg(args, kwargs, 0, "input"), _arg(args, kwargs, 1, "weight")
    bias = _arg(args, kwargs, 2, "bias")
    stride = _arg(args, kwargs, 3, "stride", 1)
    padding = _arg(args, kwargs, 4, "padding", 0)
    dilation = _arg(args, kwargs, 5, "dilation", 1)
    groups = _arg(args, kwargs, 6, "groups", 1)
    pol = mode.policy
    if pol.is_native:  # quantize, then torch's conv (an fp32 GEMM on the rounded values)
        from .gemm import grad_round, prepare, dequant
        if _scaled_or_block(pol):
            return mode.unsupported(func, args, kwargs, f"conv{nd}d with scaled/block formats")
        qx, _ = prepare(x, pol.activation, pol.rounding, 1)
        qw, _ = prepare(w, pol.weight, pol.rounding, 1)
        y = func(qx, qw, None, stride, padding, dilation, groups)
        y = grad_round(y, pol.gradient, pol.grad_rounding)
    else:
        y = _conv_gemm(x, w, stride, padding, dilation, groups, nd, pol)
    if bias is not None:
        y = y + bias.reshape(1, -1, *([1] * nd))
    return _out(mode, y, pol)


def _scaled_or_block(pol):
    from .policy import Scaled
    from .quantize import is_block_format
    return any(isinstance(f, Scaled) or is_block_format(f) for f in (pol.weight, pol.activation))


def _tuple(v, nd):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * nd


def _conv_gemm(x, w, stride, padding, dilation, groups, nd, pol):
    """conv as im2col + emulated GEMM (reduction over C_in/groups × kernel)."""
    if nd == 1:
        x, w = x.unsqueeze(-2), w.unsqueeze(-2)
        stride, dilation = (1, _tuple(stride, 1)[0]), (1, _tuple(dilation, 1)[0])
        padding = padding if isinstance(padding, str) else (0, _tuple(padding, 1)[0])
    stride, dilation = _tuple(stride, 2), _tuple(dilation, 2)
    kh, kw = w.shape[-2:]
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            th, tw = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
            x = F.pad(x, (tw // 2, tw - tw // 2, th // 2, th - th // 2))
            padding = (0, 0)
        else:
            raise ValueError(f"conv padding={padding!r}: allowed 'valid', 'same' or ints")
    padding = _tuple(padding, 2)
    n, cin, H, W = x.shape
    cout = w.shape[0]
    Ho = (H + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (W + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)  # n, cin*kh*kw, L
    g = groups
    cols = cols.reshape(n, g, (cin // g) * kh * kw, Ho * Wo).transpose(-1, -2)  # n, g, L, K
    wm = w.reshape(g, cout // g, (cin // g) * kh * kw).transpose(-1, -2)  # g, K, cout/g
    y = gemm(cols, wm, pol, what=f"conv{nd}d")  # n, g, L, cout/g
    y = y.transpose(-1, -2).reshape(n, cout, Ho, Wo)
    return y.squeeze(-2) if nd == 1 else y


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
    s = gemm(q, k.transpose(-2, -1), pol, roles=("activation", "activation"), what="sdpa QKᵀ")
    s = s * scale
    if causal:
        keep = torch.ones(L, S, dtype=torch.bool, device=q.device).tril()
        s = s.masked_fill(~keep, float("-inf"))
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask
    p = _softmax_core(s, -1, pol)
    if p_drop > 0.0:
        p = F.dropout(p, p_drop, training=True)
    y = gemm(p.to(v.dtype), v, pol, roles=("activation", "activation"), what="sdpa PV")
    return _out(mode, y, pol)


def _cq(x, pol):
    """Round into the compute precision (straight-through)."""
    if pol.compute is None or not x.is_floating_point():
        return x
    return quantize(x, pol.compute, rounding=pol.rounding)


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
        return mode.passthrough(func, args, kwargs)
    dtype = kwargs.get("dtype", _arg(args, kwargs, 3 if "functional" in _name(func) else 2, "dtype")
                       if len(args) > 2 and not isinstance(args[2], int) else kwargs.get("dtype"))
    return _softmax_core(x, dim, mode.policy, log="log_softmax" in _name(func), dtype=dtype)


def _norm(mode, func, args, kwargs):
    pol = mode.policy
    x = _arg(args, kwargs, 0, "input")
    if pol.compute is None or not x.is_floating_point():
        return func(*args, **kwargs)
    args = (_cq(x, pol),) + tuple(args[1:])
    if "input" in kwargs:
        kwargs = dict(kwargs, input=args[0])
        args = ()
    return _cq(func(*args, **kwargs), pol)


def _reduce(mode, func, args, kwargs):
    pol = mode.policy
    x = _arg(args, kwargs, 0, "input")
    if pol.compute is None or not isinstance(x, torch.Tensor) or not x.is_floating_point() or "out" in kwargs:
        return func(*args, **kwargs)
    args = (_cq(x, pol),) + tuple(args[1:])
    return _cq(func(*args, **kwargs), pol)


_T = torch.Tensor
_HANDLERS = {
    F.linear: _linear,
    torch.matmul: _matmul, _T.matmul: _matmul, _T.__matmul__: _matmul, torch.mm: _bmm,
    _T.mm: _bmm, torch.bmm: _bmm, _T.bmm: _bmm,
    torch.addmm: _addmm_like, _T.addmm: _addmm_like, torch.baddbmm: _addmm_like,
    _T.baddbmm: _addmm_like,
    torch.einsum: _einsum,
    torch.conv1d: _conv, torch.conv2d: _conv,
    F.scaled_dot_product_attention: _sdpa,
    F.softmax: _softmax, torch.softmax: _softmax, _T.softmax: _softmax,
    F.log_softmax: _softmax, torch.log_softmax: _softmax, _T.log_softmax: _softmax,
    F.layer_norm: _norm, F.rms_norm: _norm,
    torch.sum: _reduce, _T.sum: _reduce, torch.mean: _reduce, _T.mean: _reduce,
}
if hasattr(_T, "__rmatmul__"):
    _HANDLERS[_T.__rmatmul__] = lambda m, f, a, k: _matmul(m, torch.matmul, (a[1], a[0]), k)

#: Ops whose arithmetic (a GEMM, a reduction or a normalisation) fpsim does not emulate.
UNSUPPORTED = tuple(f for f in (
    torch.conv3d, torch.conv_transpose1d, torch.conv_transpose2d, torch.conv_transpose3d,
    torch.dot, _T.dot, torch.vdot, torch.mv, _T.mv, torch.addmv, torch.addbmm, _T.addbmm,
    torch.tensordot, torch.inner, torch.chain_matmul if hasattr(torch, "chain_matmul") else None,
    torch.cumsum, _T.cumsum, torch.prod, _T.prod, torch.var, _T.var, torch.std, _T.std,
    torch.var_mean, torch.std_mean, torch.logsumexp, _T.logsumexp, torch.norm, _T.norm,
    torch.linalg.vector_norm, torch.linalg.matrix_norm, torch.linalg.norm, torch.nansum,
    torch.group_norm, torch.batch_norm, torch.instance_norm, F.embedding_bag, torch.cdist,
    torch.nn.functional.bilinear,
) if f is not None)
_UNSUPPORTED = frozenset(UNSUPPORTED)

# Python composites of torch.nn.functional that are run inside the mode (their own
# dispatch check switched off) so that the GEMMs they make are emulated
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


# the composites and their dispatch-free copies, built once (Dynamo cannot iterate code objects)
_COMPOSITES = {f: _inner(f) for m in (F, torch.functional) for f in vars(m).values() if _is_composite(f)}

_warned: set = set()


class EmulationMode(TorchFunctionMode):
    """The TorchFunctionMode behind :func:`emulate` (one per ``with`` block)."""

    def __init__(self, policy: Policy, model=None):
        super().__init__()
        self.base = policy
        self.policy = policy
        self._names = {}
        if model is not None:
            self._names = {id(m): n for n, m in model.named_modules()}
        self._stack = []
        self._hooks = []

    # module tracking for per-module overrides
    def _pre(self, module, inputs):
        # the innermost module matching an override pattern sets the policy; modules that
        # match nothing inherit their parent's
        name = self._names.get(id(module), "")
        self._stack.append(self.policy)
        p = self.base.resolve(name, type(module).__name__)
        if p is not self.base:
            self.policy = p

    def _post(self, module, inputs, output):
        if self._stack:
            self.policy = self._stack.pop()

    def __enter__(self):
        if self.base.overrides:
            from torch.nn.modules import module as _m
            self._hooks = [_m.register_module_forward_pre_hook(self._pre),
                           _m.register_module_forward_hook(self._post, always_call=True)]
        return super().__enter__()

    def __exit__(self, *exc):
        for h in self._hooks:
            h.remove()
        self._hooks = []
        return super().__exit__(*exc)

    def passthrough(self, func, args, kwargs):
        return func(*args, **kwargs)

    def unsupported(self, func, args, kwargs, what=None):
        what = what or _name(func)
        if self.policy.strict:
            raise UnsupportedOpError(
                f"{what} is not emulated by fpsim (policy {self.policy.name!r} is strict); "
                "emulated: linear, matmul/@, mm, bmm, baddbmm, addmm, 2-operand einsum, "
                "conv1d/conv2d, scaled_dot_product_attention, softmax, log_softmax, "
                "layer_norm, rms_norm, sum, mean. Use a lenient policy (strict=False) to run "
                "it natively")
        if what not in _warned:
            _warned.add(what)
            warnings.warn(f"fpsim.torch: {what} is not emulated; it runs natively in fp32 "
                          "(warned once)", RuntimeWarning, stacklevel=3)
        with torch._C.DisableTorchFunction():
            return func(*args, **kwargs)

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        h = _HANDLERS.get(func)
        if h is not None:
            return h(self, func, args, kwargs)
        if func in _UNSUPPORTED:
            return self.unsupported(func, args, kwargs)
        inner = _COMPOSITES.get(func)  # a dict lookup, not _is_composite: torch.compile can trace it
        if inner is not None:
            with self:
                return inner(*args, **kwargs)
        return func(*args, **kwargs)


def emulate(policy="fp32", *, model=None, strict=None):
    """Context manager: run torch code inside under ``policy`` (a Policy or profile name).

    ``model`` (optional) gives qualified module names for the policy's per-module
    overrides; ``strict`` overrides the policy's strictness.

    >>> import torch, fpsim.torch as ft
    >>> lin = torch.nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = lin.weight.copy_(torch.tensor([[1.0, 1.0]]))
    >>> x = torch.tensor([[1.0, 0.001]])
    >>> with ft.emulate("bf16"):
    ...     y = lin(x)
    >>> y.item()  # bf16 inputs: 0.001 -> 0.0010004; fp32 sum 1.0010004, bf16 output
    1.0
    """
    pol = as_policy(policy)
    if strict is not None:
        pol = pol.replace(strict=bool(strict))
    return EmulationMode(pol, model=model)


def supported_ops() -> list:
    """Names of the intercepted torch functions.

    >>> "torch.nn.functional.linear" in supported_ops()
    True
    """
    return sorted({_name(f) for f in _HANDLERS})
