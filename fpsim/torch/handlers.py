"""The op handlers of :func:`fpsim.torch.emulate`: ``(mode, func, args, kwargs) -> result``.

Each GEMM-like op (linear, matmul, bmm, addmm, einsum, convolutions, RNNs, attention...) is
rewritten into :func:`fpsim.torch.gemm.gemm` calls; softmax, normalisations, reductions and
losses run at the policy's compute precision. :data:`HANDLERS` maps each torch function to
its handler, :data:`COMPOSITES` the Python composites of ``torch.nn.functional`` that run
inside the mode, and :func:`classify` / :func:`coverage_table` apply the coverage contract
of :mod:`fpsim.torch.coverage`. The mode itself (:mod:`fpsim.torch.mode`) only dispatches.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F

from . import coverage as _COV
from . import compute_ops as _CO
from . import gemm_ops as _GO
from . import profiles as _P
from .ops_common import OperandMismatchError, UnsupportedOpError, op_name

__all__ = ["HANDLERS", "COMPOSITES", "UnsupportedOpError", "OperandMismatchError", "classify",
           "coverage_table", "is_composite", "op_name", "supported_ops", "markdown_tables"]


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
    (_GO.linear, ["F.linear"]),
    (_GO.matmul, ["torch.matmul", "Tensor.matmul", "Tensor.__matmul__", "linalg.matmul"]),
    (_GO.bmm, ["torch.mm", "Tensor.mm", "torch.bmm", "Tensor.bmm"]),
    (_GO.addmm_like, ["torch.addmm", "Tensor.addmm", "torch.baddbmm", "Tensor.baddbmm",
                   "torch.addbmm", "Tensor.addbmm", "torch.addmv", "Tensor.addmv",
                   "torch.addr", "Tensor.addr"]),
    (_GO.vec_ops, ["torch.mv", "Tensor.mv", "torch.dot", "Tensor.dot", "torch.vdot", "Tensor.vdot",
                "torch.inner", "Tensor.inner", "torch.outer", "Tensor.outer", "torch.ger",
                "Tensor.ger", "linalg.vecdot"]),
    (_GO.multi_dot, ["linalg.multi_dot", "torch.chain_matmul"]),
    (_GO.tensordot, ["torch.tensordot"]),
    (_GO.einsum, ["torch.einsum"]),
    (_GO.bilinear, ["torch.bilinear"]),
    (_GO.conv, ["torch.conv1d", "torch.conv2d", "torch.conv3d", "torch.conv_transpose1d",
             "torch.conv_transpose2d", "torch.conv_transpose3d", "torch.convolution"]),
    (_GO.rnn, ["torch.lstm", "torch.gru", "torch.rnn_tanh", "torch.rnn_relu"]),
    (_GO.rnn_cell_h, ["torch.lstm_cell", "torch.gru_cell", "torch.rnn_tanh_cell", "torch.rnn_relu_cell"]),
    (_GO.sdpa, ["F.scaled_dot_product_attention"]),
    (_CO.softmax, ["F.softmax", "torch.softmax", "Tensor.softmax", "F.log_softmax",
                "torch.log_softmax", "Tensor.log_softmax", "special.softmax", "special.log_softmax"]),
    (_CO.first_in_compute, [
        "F.layer_norm", "torch.layer_norm", "F.rms_norm", "torch.rms_norm", "torch.batch_norm",
        "torch.instance_norm", "torch.group_norm", "torch.sum", "Tensor.sum", "Tensor.sum_to_size",
        "torch.mean", "Tensor.mean", "torch.nansum", "Tensor.nansum", "torch.nanmean",
        "Tensor.nanmean", "torch.prod", "Tensor.prod", "torch.cumsum", "Tensor.cumsum",
        "torch.cumprod", "Tensor.cumprod", "torch.logcumsumexp", "Tensor.logcumsumexp",
        "torch.var", "Tensor.var", "torch.std", "Tensor.std", "torch.var_mean", "torch.std_mean",
        "torch.logsumexp", "Tensor.logsumexp", "special.logsumexp", "torch.norm", "Tensor.norm",
        "torch.frobenius_norm", "linalg.vector_norm", "linalg.matrix_norm", "linalg.norm",
        "torch.renorm", "Tensor.renorm", "torch.trace", "Tensor.trace"]),
    (_CO.all_in_compute, [
        "nn.cross_entropy_loss", "nn.nll_loss", "nn.nll_loss_nd", "nn.nll_loss2d", "nn.mse_loss",
        "nn.l1_loss", "nn.smooth_l1_loss", "nn.huber_loss", "nn.binary_cross_entropy",
        "nn.soft_margin_loss", "nn.multi_margin_loss", "nn.multilabel_margin_loss",
        "torch.binary_cross_entropy_with_logits", "torch.kl_div", "torch.poisson_nll_loss",
        "torch.cosine_embedding_loss", "torch.hinge_embedding_loss", "torch.margin_ranking_loss",
        "torch.triplet_margin_loss", "torch.cosine_similarity", "torch.pairwise_distance",
        "torch.pdist", "torch.cdist", "torch._cdist_forward"]),
]
HANDLERS = {f: h for h, ns in _GROUPS for f in _fns(*ns)}
if hasattr(_T, "__rmatmul__"):
    HANDLERS[_T.__rmatmul__] = lambda m, f, a, k: _GO.matmul(m, torch.matmul, (a[1], a[0]), k)
# torch.norm/cdist/chain_matmul/tensordot/einsum are Python functions of torch.functional:
# handled above before they could run as composites


def classify(func):
    """"emulated", "composite", a pass-through reason (str) or None (not in the rule)."""
    if func in HANDLERS:
        return "emulated"
    if is_composite(func):
        return "composite"
    n = op_name(func)
    if n in _COV.PASSTHROUGH:
        return _COV.PASSTHROUGH[n]
    if _COV.matches_rule(n):
        return "not classified by the coverage contract (treated as pass-through)"
    return None


def coverage_table() -> list:
    """The contract for the installed torch: ``[(op name, status, reason)]``, status one of
    ``"emulated"``, ``"composite"``, ``"pass-through"``.

    >>> ("torch.conv3d", "emulated", "") in coverage_table()
    True
    """
    rows = []
    for n, f in sorted(_COV.candidates().items()):
        c = classify(f)
        if c in ("emulated", "composite"):
            rows.append((n, c, ""))
        else:
            rows.append((n, "pass-through", c or ""))
    return rows


def __getattr__(name):
    if name == "UNSUPPORTED":  # the pass-through ops of the contract (functions), on demand
        return tuple(f for n, f in sorted(_COV.candidates().items())
                     if classify(f) not in ("emulated", "composite"))
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


def is_composite(func) -> bool:
    """A Python function of torch.nn.functional / torch.functional that dispatches itself."""
    return (isinstance(func, types.FunctionType) and func.__module__ in _COMPOSITE_MODULES
            and any(n.startswith("has_torch_function") for n in func.__code__.co_names))


COMPOSITES = {f: _inner(f) for m in (F, torch.functional) for f in vars(m).values() if is_composite(f)}


def supported_ops() -> list:
    """Names of the torch functions emulated under every profile (the contract's emulated set).

    >>> "torch.nn.functional.linear" in supported_ops()
    True
    """
    return sorted({op_name(f) for f in HANDLERS})


def markdown_tables() -> tuple:
    """(coverage markdown, profile-validation markdown) for the docs (docs/hooks.py), built
    from the contract and the profiles of the installed torch and fpsim.

    >>> cov, val = markdown_tables()
    >>> "torch.conv3d" in cov and "a100_bf16" in val
    True
    """
    rows = coverage_table()
    em = [n for n, s, _ in rows if s == "emulated"]
    extra = sorted(set(supported_ops()) - set(em))  # handled ops outside torch.overrides
    comp = [n for n, s, _ in rows if s == "composite"]
    pt = [(n, why) for n, s, why in rows if s == "pass-through"]
    code = lambda ns: ", ".join(f"`{n}`" for n in ns)  # noqa: E731
    out = [f"**Emulated under every profile** ({len(em)} ops of the rule): {code(em)}.", "",
           f"Also handled (kernels the composites call): {code(extra)}.", "",
           f"**Composites** run inside the emulation, so the ops they call are handled "
           f"({len(comp)}): {code(comp)}.", "",
           f"**Pass-through** ({len(pt)}: raise under `strict=True`, else run natively in fp32 "
           "with one warning per op name and profile):", "", "| op | reason |", "|---|---|"]
    out += [f"| `{n}` | {why} |" for n, why in pt]
    val = ["| profile | what the claim stands on |", "|---|---|"]
    val += [f"| `{n}` | {_P.validation(n)} |" for n in _P.names()]
    return "\n".join(out), "\n".join(val)
