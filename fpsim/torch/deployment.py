"""Deployments: the GPU, dtype, tensor-parallel degree and kernel library a model is served
with, as the causes of run-to-run drift that a profile alone cannot express.

On a GPU the bits of a GEMM depend on more than its inputs: the library picks a kernel for
each shape (M, N, K), and kernels for small M split the reduction over K (split-K) to fill
the GPU; a tensor-parallel row-parallel layer sums partial products of several ranks in the
order of an all-reduce. So the greedy output of a model changes with the batch size and the
number of GPUs ("Give Me FP32 or Give Me Death?", 2025). A :class:`Deployment` states these
choices; ``fpsim.torch.emulate(Deployment(...), model=model)`` and
``fpsim.torch.convert(model, Deployment(...))`` accept it wherever a profile name is.

Rules (each one a parameter of :class:`Deployment`; "fact" = published, "assumption" =
plausible, not verified on a GPU by fpsim):

``kernels="batch_invariant"``
    every GEMM reduces K in one fixed order whatever its shape (fact: the batch-invariant
    kernels of Thinking Machines' ``batch_invariant_ops`` and of SGLang/vLLM's deterministic
    modes do exactly this; the order itself, the GPU's tensor-core chain, is fpsim's model).
``kernels="shape_dependent"`` -- split-K
    the GEMM (M, N, K) (M = rows of the flattened input; batched GEMMs count each matrix of
    the batch as tiles too) has ``tiles = batch * ceil(M / tile_m) * ceil(N / tile_n)``
    output tiles. If ``tiles < sms`` (less than one wave of output tiles), the library splits
    K into ``s = min(max_splits, sms // tiles, K // k_grain)`` slices of a multiple of
    ``k_grain`` products; each slice is accumulated by the GPU's tensor core (fp32 partial),
    and the partials are added in fp32 in slice order:
    ``fpsim.accum.Promoted(tensor_core, every=slice)``. The rule is applied to every GEMM
    with its own shape, the two backward GEMMs of training included (``dX = dY W^T`` is
    (M, K, N): N reduced; ``dW = X^T dY`` is (K, N, M): the batch x length rows reduced,
    so the batch size changes dW's split). *Fact*: cuBLAS/CUTLASS use split-K
    for small-M GEMMs and combine the fp32 partials in a separate reduction (CUTLASS
    ``GemmSplitKParallel``, cuBLASLt ``CUBLASLT_ALGO_CONFIG_SPLITK_NUM``); the K grain of 64
    products for fp16/bf16 and 128 for FP8 is the granularity reported for cuBLAS.
    *Assumptions*: the tile sizes, the one-wave threshold and the in-order fp32 combination
    (cuBLAS's heuristics are not published).
``dtype="fp8"`` (or ``"e4m3"``) -- FP8 GEMMs (Ada, Hopper, Blackwell)
    every GEMM runs on per-tensor-scaled E4M3 operands (E5M2 gradients) as the
    ``h100_fp8`` profile: one fp32 amax scale per operand, computed on the whole tensor
    before K is sharded or sliced (as Transformer Engine reduces the amax over the
    tensor-parallel group), the two scales multiplying each fp32 result in the epilogue.
    The unsplit GEMM is the GPU's FP8 tensor core (``fpsim.hardware.tensor_core(gpu,
    "e4m3")``, a narrow fused accumulator) promoted into fp32 every 128 products
    (``fpsim.hardware.fp8_promoted``); ``fast_accum=True``: no promotion. Split-K works at
    the FP8 grain (``k_grain`` 128), so a slice is a whole number of promotion blocks and
    split-K reorders the fp32 additions of the block sums: ``((c0 + c1) + c2) + c3`` unsplit,
    ``(c0 + c1) + (c2 + c3)`` in two slices. Outputs and the all-reduce are bf16. A dynamic
    per-tensor activation scale depends on every row of the batch, so the batch size also
    acts through it, even with ``batch_invariant`` kernels (``scaling="row"``: per-token and
    per-channel scales, which do not). *Fact*: cuBLASLt promotes FP8 accumulation
    periodically unless ``CUBLASLT_MATMUL_DESC_FAST_ACCUM`` is set; FP8 serving (vLLM,
    TensorRT-LLM) writes the FP8 GEMMs' outputs in the model's 16-bit dtype. *Assumptions*:
    the promotion interval 128 (DeepSeek-V3's; cuBLAS does not publish its), attention's
    GEMMs in FP8 too (as under ``h100_fp8``).
``tp`` -- tensor parallelism (Megatron-LM layout)
    column-parallel layers (QKV, MLP up) need no cross-rank sum: their bits are unchanged.
    A row-parallel layer (module name matching ``row_parallel``: attention output and MLP
    down projections) splits K into ``tp`` equal contiguous shards; each rank runs its own
    GEMM (M, N, K/tp) under the kernel rule, rounds the result into ``comm_dtype`` and the
    ranks' results are summed by an all-reduce (:mod:`fpsim.torch.collectives`):
    ``"ring"`` (the default), ``"double_binary_tree"`` (NCCL's trees) or ``"tree"``
    (pairwise halves), every addition rounded into ``comm_dtype``; the bias is added after
    the all-reduce. *Fact*: Megatron-LM's row/column split and the all-reduce of
    row-parallel outputs in the activation dtype (bf16 by default). The facts and
    assumptions of each order, and which one NCCL picks, are in
    :mod:`fpsim.torch.collectives`.

``attention`` -- split-KV (flash-decoding)
    ``scaled_dot_product_attention`` runs as a split-KV kernel: the keys are cut into
    ``kv_splits(batch * heads, L, S)`` chunks, each with its own running max and sum, the
    chunks combined with the usual rescaling in fp32. *Fact*: FlashAttention-2 picks the
    number of splits by ``num_splits_heuristic`` (flash_api.cpp) from batch x heads x query
    blocks, the SM count and the number of key blocks; fpsim uses that heuristic (as recalled
    from the source, with ``kv_block`` and ``q_block`` parameters). *Assumption*: the
    in-chunk arithmetic (exp, sums in fp32 via torch) and the combination order.

``norm`` -- LayerNorm / RMSNorm
    each row's sums (mean, variance) are split into ``norm_splits(rows, d)`` chunks when
    there are fewer rows than SMs, the chunk sums added in order (fp32). *Fact*: Thinking
    Machines' "Defeating Nondeterminism in LLM Inference" (2025) names the RMSNorm
    reduction that switches to a split strategy for small batches as a cause of batch
    dependence. *Assumption*: the thresholds (one row per SM, chunks of at least
    ``norm_grain`` features).

>>> import torch, fpsim.torch as ft
>>> d = ft.Deployment("h100", "bf16", tp=2)
>>> d.name
'h100/bf16/tp2/shape_dependent'
>>> d.splits(1, 4096, 4096), d.splits(8192, 4096, 4096)  # split-K for a batch-1 GEMM only
(4, 1)
>>> ft.Deployment("h100", "fp8").k_grain
128
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from .. import accum as _A
from .. import hardware as _H
from . import profiles as _P
from .collectives import ALLREDUCE, allreduce, sequential_sum, with_grad_of
from .gemm import gemm, prepare
from .policy import Scaled
from .splitkernels import split_kv_attention, split_norm

__all__ = ["Deployment", "KERNELS", "ALLREDUCE", "DTYPES", "SMS", "ROW_PARALLEL", "FP8_GPUS",
           "allreduce"]

#: Kernel behaviours of a deployment.
KERNELS = ("batch_invariant", "shape_dependent")
#: Deployment dtypes: the fpsim.torch profile each starts from ("fp8": module docstring;
#: ``"e4m3"`` is accepted as its other name).
DTYPES = ("bf16", "fp16", "fp32", "layercast", "fp8")
#: Streaming multiprocessors per GPU (NVIDIA data sheets; H100/H200 SXM, A100 SXM).
SMS = {"v100": 80, "a100": 108, "a2": 10, "a30": 56, "ada": 128, "l40s": 142, "h100": 132,
       "h200": 132, "b200": 148}
#: Module-name patterns of row-parallel linear layers (Megatron-LM: attention output and MLP
#: down projections; GPT-2/Llama/BERT/TinyGPT names).
ROW_PARALLEL = ("proj", "*.proj", "*o_proj", "*down_proj", "*out_proj", "*c_proj", "*fc2",
                "*.mlp.2", "*dense_4h_to_h", "*attention.dense", "*attention.output.dense")
#: GPUs of :data:`SMS` whose tensor cores take FP8 (E4M3/E5M2) inputs: Ada, Hopper, Blackwell.
FP8_GPUS = ("ada", "l40s", "h100", "h200", "b200")
#: Products per split-K grain (cuBLAS, as reported): 16-bit and fp32 inputs, FP8 inputs.
K_GRAIN = {"fp8": 128}


@dataclass(frozen=True)
class Deployment:
    """How a model is served: GPU, dtype, tensor-parallel degree and kernel behaviour.

    Parameters
    ----------
    gpu : str
        GPU whose tensor core runs the 16-bit and FP8 GEMMs (a key of :data:`SMS`, any case).
    dtype : {"bf16", "fp16", "fp32", "layercast", "fp8"}
        The serving precision: the fpsim.torch profile of that name (``"layercast"``: bf16
        weights computed in fp32). fp32 GEMMs are CUDA-core FMA chains (sequential fp32).
        ``"fp8"`` (or ``"e4m3"``): per-tensor-scaled E4M3 GEMMs with bf16 outputs, on the
        GPUs of :data:`FP8_GPUS` only (module docstring).
    tp : int
        Tensor-parallel degree (1: one GPU).
    kernels : {"shape_dependent", "batch_invariant"}
        Whether the reduction order of a GEMM depends on its shape (split-K) or is fixed.
    allreduce : {"ring", "double_binary_tree", "tree"}
        Order of the cross-rank sum of row-parallel layers (:mod:`fpsim.torch.collectives`).
    comm_dtype : str, optional
        Format of the all-reduce (default: the dtype's activation format: bf16 for fp8, fp32
        for fp32/layercast).
    sms, tile_m, tile_n, k_grain, max_splits : int, optional
        The split-K rule (module docstring). ``sms`` defaults to the GPU's SM count,
        ``k_grain`` to 64 (16-bit and fp32 inputs) or 128 (fp8).
    fast_accum : bool
        fp8 only: the tensor core accumulates all of K without promotion into fp32 (cuBLASLt
        ``CUBLASLT_MATMUL_DESC_FAST_ACCUM``).
    scaling : {"tensor", "row"}
        fp8 only: one dynamic amax scale per operand (``"tensor"``, as ``h100_fp8``) or per
        token / output channel (``"row"``). A per-tensor activation scale depends on every
        row of the batch, so with it even ``batch_invariant`` kernels change bits with the
        batch (unless its amax is the same); per-row scales do not.
    splitk_reduction : {"compute", "output"}
        How split-K partials are combined: ``"compute"`` in fp32, in slice order (cuBLASLt
        ``CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE``); ``"output"``: each partial rounded into
        the dtype's output format (bf16/fp16) and added in it, in slice order
        (``CUBLASLT_REDUCTION_SCHEME_INPLACE`` / ``OUTPUT_TYPE``, which the cuBLASLt
        documentation says add "in the output data type"). Which scheme cuBLAS's heuristic
        picks is not published; ``"compute"`` is the default.
    row_parallel : tuple of str
        fnmatch patterns of the row-parallel layers' qualified module names.

    >>> Deployment("a100", "fp32").policy().name
    'a100/fp32/tp1/shape_dependent'
    """

    gpu: str = "h100"
    dtype: str = "bf16"
    tp: int = 1
    kernels: str = "shape_dependent"
    allreduce: str = "ring"
    comm_dtype: str | None = None
    sms: int | None = None
    tile_m: int = 128
    tile_n: int = 128
    k_grain: int | None = None
    max_splits: int = 16
    splitk_reduction: str = "compute"
    kv_block: int | None = None
    q_block: int = 64
    norm_grain: int = 256
    norm_max_splits: int = 8
    row_parallel: tuple = ROW_PARALLEL
    fast_accum: bool = False
    scaling: str = "tensor"
    name: str = field(default="", compare=False)

    def __post_init__(self):
        gpu = str(self.gpu).lower()
        if gpu not in SMS:
            raise ValueError(f"Deployment gpu={self.gpu!r} is not known; choose one of {sorted(SMS)}")
        object.__setattr__(self, "gpu", gpu)
        if self.dtype == "e4m3":
            object.__setattr__(self, "dtype", "fp8")
        if self.dtype not in DTYPES:
            raise ValueError(f"Deployment dtype={self.dtype!r}; choose one of {DTYPES} (or 'e4m3')")
        if self.dtype == "fp8" and gpu not in FP8_GPUS:
            raise ValueError(f"Deployment gpu={gpu!r} has no FP8 tensor cores: dtype='fp8' needs "
                             f"one of {FP8_GPUS} (Ada, Hopper, Blackwell)")
        if not isinstance(self.fast_accum, bool) or (self.fast_accum and self.dtype != "fp8"):
            raise ValueError(f"Deployment fast_accum={self.fast_accum!r}: a bool, True only with "
                             "dtype='fp8' (FP8 accumulation without promotion into fp32)")
        if self.scaling not in ("tensor", "row") or (self.scaling != "tensor" and self.dtype != "fp8"):
            raise ValueError(f"Deployment scaling={self.scaling!r}: 'tensor' or 'row' (per-token "
                             "and per-channel amax scales), 'row' only with dtype='fp8'")
        if self.k_grain is None:
            object.__setattr__(self, "k_grain", K_GRAIN.get(self.dtype, 64))
        if self.kernels not in KERNELS:
            raise ValueError(f"Deployment kernels={self.kernels!r}; choose one of {KERNELS}")
        if self.splitk_reduction not in ("compute", "output"):
            raise ValueError(f"Deployment splitk_reduction={self.splitk_reduction!r}; choose "
                             "'compute' (fp32 partials) or 'output' (partials in the dtype)")
        if self.allreduce not in ALLREDUCE:
            raise ValueError(f"Deployment allreduce={self.allreduce!r}; choose one of {ALLREDUCE}")
        for nm in ("tp", "tile_m", "tile_n", "k_grain", "max_splits", "q_block", "norm_grain",
                   "norm_max_splits") + tuple(
                n for n in ("sms", "kv_block") if getattr(self, n) is not None):
            v = getattr(self, nm)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Deployment {nm}={v!r} must be an int >= 1")
        if self.sms is None:
            object.__setattr__(self, "sms", SMS[gpu])
        if self.comm_dtype is None:
            object.__setattr__(self, "comm_dtype", {"fp16": "fp16", "bf16": "bf16", "fp8": "bf16"}
                               .get(self.dtype, "fp32"))
        if self.comm_dtype not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"Deployment comm_dtype={self.comm_dtype!r}; choose bf16, fp16 or fp32")
        if isinstance(self.row_parallel, str):
            object.__setattr__(self, "row_parallel", (self.row_parallel,))
        object.__setattr__(self, "row_parallel", tuple(self.row_parallel))
        if not self.name:
            object.__setattr__(self, "name", f"{gpu}/{self.dtype}/tp{self.tp}/{self.kernels}")

    # -- the rules ------------------------------------------------------------------------
    def splits(self, M: int, N: int, K: int, batch: int = 1) -> int:
        """Number of K slices the kernel rule gives a GEMM (M, N, K) (1: no split-K).

        >>> d = Deployment("a100", sms=4, tile_m=16, tile_n=16)
        >>> d.splits(1, 16, 256), d.splits(40, 16, 256), d.splits(64, 16, 256)
        (4, 1, 1)
        >>> Deployment("a100", kernels="batch_invariant").splits(1, 16, 256)
        1
        """
        if self.kernels == "batch_invariant":
            return 1
        tiles = batch * math.ceil(M / self.tile_m) * math.ceil(N / self.tile_n)
        if tiles >= self.sms:
            return 1
        return max(1, min(self.max_splits, self.sms // tiles, K // self.k_grain))

    def slice_length(self, M: int, N: int, K: int, batch: int = 1) -> int:
        """Products per K slice (a multiple of ``k_grain``; K when there is no split).

        >>> Deployment("a100", sms=4, tile_m=16, tile_n=16).slice_length(1, 16, 200)  # 3 splits of 4 grains
        128
        """
        s = self.splits(M, N, K, batch)
        if s == 1:
            return K
        return self.k_grain * math.ceil(math.ceil(K / self.k_grain) / s)

    def kv_splits(self, batch_heads: int, L: int, S: int, head_dim: int = 64) -> int:
        """KV splits of attention (split-KV / flash-decoding) for ``batch_heads`` (batch x
        heads) query blocks of ``L`` queries over ``S`` keys: FlashAttention-2's
        ``num_splits_heuristic`` (flash_api.cpp) with ``2 * sms`` CTA slots, ``q_block``
        queries per block and ``kv_block`` keys per block (default as FA2: 256 for head dims
        <= 64, 128 for <= 128, else 64).

        >>> d = Deployment("a100", kv_block=4, sms=8)
        >>> d.kv_splits(2, 1, 16), d.kv_splits(16, 1, 16)  # few query blocks: split the keys
        (4, 1)
        """
        if self.kernels == "batch_invariant":
            return 1
        kv = self.kv_block or _kv_block(head_dim)
        bhm = batch_heads * math.ceil(L / self.q_block)
        n_blocks, slots = math.ceil(S / kv), 2 * self.sms
        if bhm >= 0.8 * slots:
            return 1
        top = min(128, slots, n_blocks)

        def eligible(s):
            return s == 1 or math.ceil(n_blocks / s) != math.ceil(n_blocks / (s - 1))
        eff = {}
        for s in range(1, top + 1):
            if eligible(s):
                w = bhm * s / slots
                eff[s] = w / math.ceil(w)
        best = max(eff.values())
        return next(s for s in sorted(eff) if eff[s] >= 0.85 * best)

    def norm_splits(self, rows: int, d: int) -> int:
        """Chunks the row reduction of a LayerNorm/RMSNorm over ``d`` features is split into
        for ``rows`` rows: one row per SM needs no split (``rows >= sms``); fewer rows split
        each row's sum into ``min(norm_max_splits, sms // rows, d // norm_grain)`` chunks.

        >>> d = Deployment("a100", sms=8, norm_grain=16)
        >>> d.norm_splits(1, 64), d.norm_splits(4, 64), d.norm_splits(8, 64)
        (4, 2, 1)
        """
        if self.kernels == "batch_invariant" or rows >= self.sms:
            return 1
        return max(1, min(self.norm_max_splits, self.sms // rows, d // self.norm_grain))

    def base_model(self, backward: bool = False):
        """The accumulation model of one unsplit GEMM: the GPU's tensor core on 16-bit
        inputs, a sequential fp32 FMA chain for fp32 and LayerCast, the FP8 tensor core
        promoted into fp32 every 128 products for fp8 (``backward``: the same core taking
        the mixed E4M3 x E5M2 operands of the backward GEMMs).

        >>> Deployment("a100", "bf16").base_model().name
        'A100 bf16'
        >>> Deployment("h100", "fp8").base_model().every
        128
        """
        return _base_model(self, bool(backward))

    def gemm_model(self, M: int, N: int, K: int, batch: int = 1, backward: bool = False):
        """The accumulation model the rule picks for a GEMM of this shape (``backward``: a
        backward GEMM, from :meth:`base_model` ``(backward=True)``).

        >>> d = Deployment("a100", "fp32", sms=4, tile_m=16, tile_n=16)
        >>> type(d.gemm_model(64, 16, 256)).__name__, d.gemm_model(1, 16, 256).every
        ('Sequential', 64)
        """
        return _gemm_model(self, M, N, K, batch, bool(backward))

    # -- as a policy ----------------------------------------------------------------------
    def policy(self, model=None):
        """The :class:`~fpsim.torch.Policy` that emulates this deployment. With ``tp > 1``
        the row-parallel layers of ``model`` (required then) become per-module overrides.

        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4)); net.proj = torch.nn.Linear(4, 4)
        >>> [p for p, _ in Deployment("h100", tp=2).policy(net).overrides]
        ['proj']
        """
        if self.tp == 1:
            return _policy(self, ())
        if model is None:
            raise ValueError(f"deployment {self.name!r} has tp={self.tp}: its row-parallel layers "
                             "are found by module name, so pass the model (emulate(deployment, "
                             "model=model) or fpsim.torch.convert(model, deployment))")
        import fnmatch
        names = [n for n, _ in model.named_modules() if n]
        pats = tuple(p for p in self.row_parallel if any(fnmatch.fnmatchcase(n, p) for n in names))
        if not pats:
            import warnings
            warnings.warn(f"deployment {self.name!r}: no module of the model matches the "
                          f"row-parallel patterns {self.row_parallel}, so tp={self.tp} changes "
                          "nothing; pass row_parallel= with the names of the attention output "
                          "and MLP down projections", RuntimeWarning, stacklevel=3)
        return _policy(self, pats)


def _kv_block(head_dim):
    """FlashAttention-2's keys per block for a head dimension."""
    return 256 if head_dim <= 64 else 128 if head_dim <= 128 else 64


@lru_cache(maxsize=64)
def _base_model(dep: Deployment, backward: bool):
    if dep.dtype in ("bf16", "fp16"):
        return _H.tensor_core(dep.gpu, dep.dtype)
    if dep.dtype != "fp8":
        return _A.Sequential("fp32", fma=True)
    core = _H.tensor_core(dep.gpu, "e4m3")
    if backward:  # the same fused adder on e4m3 x e5m2 products (as the h100_fp8 profile)
        core = _A.FusedBlock(core.n, core.neab, out_fmt=core.out_fmt, rounding=core.rounding,
                                in_fmt=None, name=f"{core.name} mixed fp8")
    return core if dep.fast_accum else _A.Promoted(core, every=128)


@lru_cache(maxsize=4096)
def _gemm_model(dep: Deployment, M, N, K, batch, backward=False):
    base = dep.base_model(backward)
    L = dep.slice_length(M, N, K, batch)
    if L >= K:
        return base
    return _A.Promoted(base, every=L)


@dataclass(frozen=True)
class _Backward:
    """The ``backward_accum`` of the policy a deployment's GEMM runs under:
    :mod:`fpsim.torch.gemm` asks :meth:`plan_backward` for the model of each backward GEMM
    ``x @ y``, which the rule picks by that GEMM's own shape."""

    dep: Deployment

    @property
    def name(self):
        return self.dep.name + " backward"

    def plan_backward(self, x, y):
        batch = math.prod(torch.broadcast_shapes(x.shape[:-2], y.shape[:-2]))
        return self.dep.gemm_model(x.shape[-2], y.shape[-1], x.shape[-1], batch, backward=True)


@dataclass(frozen=True)
class _Kernels:
    """A Policy's ``accum`` under a deployment: picks the model per GEMM shape
    (:func:`fpsim.torch.gemm.gemm` calls :meth:`plan_gemm`); ``row_parallel`` layers sum
    ``dep.tp`` rank partials by the all-reduce."""

    dep: Deployment
    row_parallel: bool = False

    @property
    def name(self):
        return self.dep.name + (" row-parallel" if self.row_parallel else "")

    def plan_gemm(self, a, b, pol, roles, what):
        if b.dim() == 2 and a.dim() > 2:
            M, batch = math.prod(a.shape[:-1]), 1
        else:
            M = a.shape[-2]
            batch = math.prod(torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
        K, N = a.shape[-1], b.shape[-1]
        # scaled operands (fp8): one scale per whole operand, before K is sharded or sliced;
        # the GEMMs below then run on the element values and each result is scaled
        scales = None
        if any(isinstance(pol.role_fmt(r), Scaled) for r in roles):
            dtype = a.dtype
            a, b = a.float(), b.float()
            (a, sa), (b, sb) = (prepare(a, pol.role_fmt(roles[0]), pol.rounding, -1),
                                prepare(b, pol.role_fmt(roles[1]), pol.rounding, -2))
            scales, pol = (sa, sb, dtype), _unscaled(pol, tuple(roles))
        tp = self.dep.tp if self.row_parallel else 1
        if tp == 1:
            return self._local(a, b, pol, roles, what, M, N, K, batch, scales)
        if K % tp:
            raise ValueError(f"{what}: K={K} is not divisible by tp={tp}: a row-parallel layer "
                             "shards K equally over the ranks")
        k = K // tp
        parts = [self._local(a[..., r * k:(r + 1) * k], b[..., r * k:(r + 1) * k, :], pol, roles,
                             what, M, N, k, batch, scales) for r in range(tp)]
        return allreduce(parts, self.dep.allreduce, self.dep.comm_dtype)

    def attention(self, s, v, pol):
        """softmax(s) @ v as a split-KV kernel with ``kv_splits`` key chunks
        (:func:`fpsim.torch.splitkernels.split_kv_attention`)."""
        *lead, L, S = s.shape
        n = self.dep.kv_splits(math.prod(lead), L, S, v.shape[-1])
        return split_kv_attention(s, v, pol, n, self.dep.kv_block or _kv_block(v.shape[-1]))

    def norm(self, func, args, kwargs):
        """layer_norm / rms_norm with the row sums split into ``norm_splits(rows, d)`` chunks
        (:func:`fpsim.torch.splitkernels.split_norm`)."""
        return split_norm(func, args, kwargs, self.dep.norm_splits)

    def _local(self, a, b, pol, roles, what, M, N, K, batch, scales=None):
        """One GPU's GEMM under the kernel rule (``scales``: (sa, sb, dtype) of operands
        already divided by their scales)."""
        dep = self.dep

        def run(x, y, model):
            out = gemm(x, y, _concrete(pol, model, dep), roles, what)
            if scales is None:
                return out
            sa, sb, dtype = scales  # the epilogue of a scaled GEMM, as fpsim.torch.gemm does
            return (out * sa.to(out.dtype) * sb.to(out.dtype)).to(dtype)
        out_fmt = pol.output if dep.dtype in ("bf16", "fp16", "fp8") else None
        if dep.splitk_reduction == "compute" or out_fmt is None:
            return run(a, b, dep.gemm_model(M, N, K, batch))
        L = dep.slice_length(M, N, K, batch)  # "output": partials in the output format
        base = dep.base_model()
        parts = [run(a[..., j:j + L], b[..., j:j + L, :], base) for j in range(0, K, L)]
        if len(parts) == 1:  # no split: the in-place scheme still writes it in the output format
            return sequential_sum(parts, out_fmt)
        value = sequential_sum([p.detach() for p in parts], out_fmt)
        if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
            # the slices are the forward's arithmetic only: training's backward GEMMs are
            # those of the whole GEMM (each with its own split, fpsim.torch.gemm)
            value = with_grad_of(value, run(a, b, base))
        return value


@lru_cache(maxsize=4096)
def _concrete(pol, model, dep):
    return pol.replace(accum=model, backward_accum=_Backward(dep))


@lru_cache(maxsize=256)
def _unscaled(pol, roles):
    """``pol`` with the scaled formats of ``roles`` replaced by their element formats."""
    return pol.replace(**{r: pol.role_fmt(r).fmt for r in set(roles)
                          if isinstance(pol.role_fmt(r), Scaled)})


@lru_cache(maxsize=256)
def _policy(dep: Deployment, patterns: tuple):
    if dep.dtype == "fp8":  # a bf16 model whose GEMMs are FP8 (as the h100_fp8 profile)
        op = Scaled("e4m3", per=dep.scaling)
        base = _P.get("bf16").replace(weight=op, activation=op,
                                            gradient=Scaled("e5m2", per=dep.scaling))
    else:
        base = _P.get(dep.dtype)
    pol = base.replace(accum=_Kernels(dep), backward_accum=None, name=dep.name,
                       description=f"{dep.gpu.upper()} {dep.dtype}, tp={dep.tp}, {dep.kernels} "
                                   f"kernels ({dep.allreduce} all-reduce in {dep.comm_dtype})")
    if patterns:
        row = pol.replace(accum=_Kernels(dep, row_parallel=True), name=dep.name + " row-parallel")
        pol = pol.replace(overrides=tuple((p, row) for p in patterns))
    return pol
