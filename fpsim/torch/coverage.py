"""The op-coverage contract of :func:`fpsim.torch.emulate`: which torch ops that reduce or
multiply are emulated, and which pass through (with the reason).

**The rule.** An op is *covered by the contract* when it is a torch function or a ``Tensor``
method known to ``torch.overrides.get_testing_overrides()`` (every overridable function of
the installed torch) whose short name (the part after the last dot) matches
:data:`RULE`: the names of GEMMs, convolutions, recurrent layers, attention, contractions
(einsum, tensordot, dot, inner, outer), reductions (sum, mean, prod, var, std, cumulative
sums, logsumexp, norms, distances), normalisations, softmax and losses, plus everything in
``torch.linalg``. In-place variants (``sum_``) and private names (``_foo``) are left out: the
first follow their out-of-place op, the second are torch internals. Elementwise ops (add,
mul, exp, GELU, ...) are outside the rule: they run natively in the tensor's dtype, which is
what the emulated hardware does with them too. Embedding lookups (``embedding``) are exact
gathers, outside the rule.

Each covered op is exactly one of

* **emulated**: a handler of :mod:`fpsim.torch.mode` runs it under every profile (GEMM-like
  ops through the emulated GEMM, reductions/normalisations/losses at the policy's ``compute``
  precision);
* **composite**: a Python function of ``torch.nn.functional`` that runs inside the
  emulation, so that the ops it calls are handled (e.g. ``F.mse_loss`` -> the emulated
  ``mse_loss`` kernel);
* **pass-through**: listed in :data:`PASSTHROUGH` with the reason; under ``strict=True`` it
  raises :class:`~fpsim.torch.UnsupportedOpError`, otherwise it runs natively in fp32 with one
  ``RuntimeWarning`` per op name and profile.

An op that matches the rule but is in none of the three (a new torch op, or one removed from
the emulated set) is treated as pass-through at run time and makes the contract test fail.

>>> op_name(__import__("torch").linalg.matmul)
'torch.linalg.matmul'
"""

from __future__ import annotations

import re

__all__ = ["RULE", "PASSTHROUGH", "op_name", "candidates", "matches_rule"]

#: Short names of the ops that reduce or multiply (anchored regular expression).
RULE = re.compile(
    r"^(?:"
    r"addbmm|addmm|addmv|addr|baddbmm|bmm|mm|mv|smm|dsmm|hsmm|saddmm|sspaddmm|"
    r"matmul|__matmul__|__rmatmul__|chain_matmul|multi_dot|einsum|tensordot|dot|vdot|vecdot|"
    r"inner|outer|ger|bilinear|linear|"
    r"conv\w*|\w*convolution\w*|"
    r"lstm\w*|gru\w*|rnn_\w+|\w+_rnn|\w*_cell|"
    r"scaled_dot_product_attention|multi_head_attention_forward|"
    r"\w*norm|\w*norm_\w*|"
    r"sum|nansum|sum_to_size|mean|nanmean|prod|cumsum|cumprod|logcumsumexp|"
    r"var|std|var_mean|std_mean|logsumexp|trace|"
    r"\w*softmax|\w*loss|"
    r"cdist|pdist|pairwise_distance|cosine_similarity|embedding_bag|fbgemm_\w+"
    r")$")

_BACKEND = ("backend-specific kernel (MIOpen/fbgemm/quantized engines, batch-norm pieces for "
            "distributed sync); the nn modules fpsim intercepts call the generic op instead")
_LINALG = ("matrix factorisation, solve or function (LAPACK/cuSOLVER): not a GEMM or a "
           "reduction fpsim models")

#: Ops covered by the rule that fpsim does not emulate, and why.
PASSTHROUGH = {
    **{n: _BACKEND for n in (
        "torch.batch_norm_backward_elemt", "torch.batch_norm_backward_reduce",
        "torch.batch_norm_elemt", "torch.batch_norm_gather_stats",
        "torch.batch_norm_gather_stats_with_counts", "torch.batch_norm_stats",
        "torch.batch_norm_update_stats", "torch.miopen_batch_norm", "torch.miopen_convolution",
        "torch.miopen_convolution_add_relu", "torch.miopen_convolution_relu",
        "torch.miopen_convolution_transpose", "torch.miopen_depthwise_convolution",
        "torch.miopen_rnn", "torch.quantized_batch_norm", "torch.quantized_gru_cell",
        "torch.quantized_lstm_cell", "torch.quantized_rnn_relu_cell",
        "torch.quantized_rnn_tanh_cell", "torch.fbgemm_linear_fp16_weight",
        "torch.fbgemm_linear_fp16_weight_fp32_activation", "torch.fbgemm_linear_int8_weight",
        "torch.fbgemm_linear_int8_weight_fp32_activation", "torch.fbgemm_linear_quantize_weight",
        "torch.fbgemm_pack_gemm_matrix_fp16", "torch.fbgemm_pack_quantized_matrix",
        "torch.native_batch_norm", "torch.native_group_norm", "torch.native_layer_norm",
        "torch.native_norm", "torch.norm_except_dim", "torch.conv_tbc")},
    **{n: "sparse-matrix product (sparse layouts are not emulated)" for n in (
        "torch.smm", "Tensor.smm", "torch.dsmm", "torch.hsmm", "torch.saddmm", "Tensor.sspaddmm")},
    **{f"torch.linalg.{n}": _LINALG for n in (
        "cholesky", "cholesky_ex", "cond", "det", "eig", "eigh", "eigvals", "eigvalsh",
        "householder_product", "inv", "inv_ex", "ldl_factor", "ldl_factor_ex", "ldl_solve",
        "lstsq", "lu", "lu_factor", "lu_factor_ex", "lu_solve", "matrix_exp", "matrix_power",
        "matrix_rank", "pinv", "qr", "slogdet", "solve", "solve_ex", "solve_triangular", "svd",
        "svdvals", "tensorinv", "tensorsolve")},
    "torch.linalg.cross": "cross product (two products and a difference per element): "
                          "elementwise, not a reduction fpsim models",
    "torch.linalg.vander": "powers of the input (no reduction)",
    "torch.linalg.diagonal": "a view (no arithmetic); listed because of the linalg namespace",
    "torch.nuclear_norm": "sum of singular values (an SVD): " + _LINALG,
    "torch.embedding_bag": "sums/means of gathered embedding rows (fused bag kernel); "
                           "compose from embedding + sum to emulate the reduction",
    "torch.ctc_loss": "CTC's dynamic-programming recursion (log-space sums along paths) is "
                      "not emulated",
    "torch.nn.functional.ctc_loss": "composite around torch.ctc_loss (see there)",
    "torch.nn.functional.gumbel_softmax": "composite: its softmax is emulated; listed "
                                          "because its random sampling is torch's",
}


def op_name(func) -> str:
    """A stable, user-facing name for a torch function or Tensor method.

    >>> import torch
    >>> op_name(torch.nn.functional.linear), op_name(torch.Tensor.sum), op_name(torch.einsum)
    ('torch.nn.functional.linear', 'Tensor.sum', 'torch.einsum')
    """
    mod = getattr(func, "__module__", None) or ""
    q = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    q = q.replace("_VariableFunctionsClass.", "").replace("_TensorBase.", "Tensor.") \
         .replace("TensorBase.", "Tensor.")
    if q.startswith("Tensor."):
        return q
    short = q.rsplit(".", 1)[-1]
    if mod == "torch._C._nn":
        return f"torch.nn.functional.{short}"
    if mod == "torch._C._linalg":
        return f"torch.linalg.{short.removeprefix('linalg_')}"
    if mod == "torch._C._special":
        return f"torch.special.{short.removeprefix('special_')}"
    if mod in ("torch", "torch.functional", "") or mod.startswith("torch._C"):
        if short.startswith("linalg_"):
            return f"torch.linalg.{short.removeprefix('linalg_')}"
        if short.startswith("special_"):
            return f"torch.special.{short.removeprefix('special_')}"
        return f"torch.{short}"
    return f"{mod}.{short}"


def matches_rule(name: str) -> bool:
    """Whether the op called ``name`` (see :func:`op_name`) is covered by the contract.

    >>> matches_rule("torch.conv3d"), matches_rule("Tensor.add"), matches_rule("torch.linalg.qr")
    (True, False, True)
    """
    short = name.rsplit(".", 1)[-1]
    if short.startswith("_") and not short.startswith("__"):
        return False
    if short.endswith("_") and not short.endswith("__"):
        return False
    return name.startswith("torch.linalg.") or RULE.match(short) is not None


def candidates() -> dict:
    """{name: function} of every overridable torch op the rule covers (the installed torch).

    >>> "torch.conv_transpose3d" in candidates()
    True
    """
    from torch.overrides import get_testing_overrides
    out = {}
    for f in get_testing_overrides():
        n = op_name(f)
        if matches_rule(n):
            out.setdefault(n, f)
    return out
