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
    ``fpsim.accum.Promoted(tensor_core, every=slice)``. *Fact*: cuBLAS/CUTLASS use split-K
    for small-M GEMMs and combine the fp32 partials in a separate reduction (CUTLASS
    ``GemmSplitKParallel``, cuBLASLt ``CUBLASLT_ALGO_CONFIG_SPLITK_NUM``); the K grain of 64
    products for fp16/bf16 and 128 for FP8 is the granularity reported for cuBLAS.
    *Assumptions*: the tile sizes, the one-wave threshold and the in-order fp32 combination
    (cuBLAS's heuristics are not published).
``tp`` -- tensor parallelism (Megatron-LM layout)
    column-parallel layers (QKV, MLP up) need no cross-rank sum: their bits are unchanged.
    A row-parallel layer (module name matching ``row_parallel``: attention output and MLP
    down projections) splits K into ``tp`` equal contiguous shards; each rank runs its own
    GEMM (M, N, K/tp) under the kernel rule, rounds the result into ``comm_dtype`` and the
    ranks' results are summed by an all-reduce: ``"ring"`` (reduce-scatter: output chunk
    ``c`` of ``tp`` equal chunks of the flattened output is accumulated starting at rank
    ``c+1`` and going round the ring to rank ``c``) or ``"tree"`` (pairwise halves), every
    addition rounded into ``comm_dtype``; the bias is added after the all-reduce. *Fact*:
    Megatron-LM's row/column split and the all-reduce of row-parallel outputs in the
    activation dtype (bf16 by default); NCCL's ring reduce-scatter adds each chunk rank by
    rank. *Assumption*: the chunk-to-start-rank mapping and the tree shape (NCCL's double
    binary tree is not modelled).

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import torch

__all__ = ["Deployment", "KERNELS", "ALLREDUCE", "DTYPES", "SMS", "ROW_PARALLEL"]

#: Kernel behaviours of a deployment.
KERNELS = ("batch_invariant", "shape_dependent")
#: All-reduce orders of tensor-parallel partial sums.
ALLREDUCE = ("ring", "tree")
#: Deployment dtypes: the fpsim.torch profile each starts from.
DTYPES = ("bf16", "fp16", "fp32", "layercast")
#: Streaming multiprocessors per GPU (NVIDIA data sheets; H100/H200 SXM, A100 SXM).
SMS = {"v100": 80, "a100": 108, "a2": 10, "a30": 56, "ada": 128, "l40s": 142, "h100": 132,
       "h200": 132, "b200": 148}
#: Module-name patterns of row-parallel linear layers (Megatron-LM: attention output and MLP
#: down projections; GPT-2/Llama/BERT/TinyGPT names).
ROW_PARALLEL = ("proj", "*.proj", "*o_proj", "*down_proj", "*out_proj", "*c_proj", "*fc2",
                "*.mlp.2", "*dense_4h_to_h", "*attention.dense", "*attention.output.dense")


@dataclass(frozen=True)
class Deployment:
    """How a model is served: GPU, dtype, tensor-parallel degree and kernel behaviour.

    Parameters
    ----------
    gpu : str
        GPU whose tensor core runs the 16-bit GEMMs (``fpsim.hardware.GPUS``, any case).
    dtype : {"bf16", "fp16", "fp32", "layercast"}
        The serving precision: the fpsim.torch profile of that name (``"layercast"``: bf16
        weights computed in fp32). fp32 GEMMs are CUDA-core FMA chains (sequential fp32).
    tp : int
        Tensor-parallel degree (1: one GPU).
    kernels : {"shape_dependent", "batch_invariant"}
        Whether the reduction order of a GEMM depends on its shape (split-K) or is fixed.
    allreduce : {"ring", "tree"}
        Order of the cross-rank sum of row-parallel layers.
    comm_dtype : str, optional
        Format of the all-reduce (default: the dtype's activation format, fp32 for
        fp32/layercast).
    sms, tile_m, tile_n, k_grain, max_splits : int, optional
        The split-K rule (module docstring). ``sms`` defaults to the GPU's SM count,
        ``k_grain`` to 64 (16-bit and fp32 inputs).
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
    k_grain: int = 64
    max_splits: int = 16
    splitk_reduction: str = "compute"
    kv_block: int | None = None
    q_block: int = 64
    norm_grain: int = 256
    norm_max_splits: int = 8
    row_parallel: tuple = ROW_PARALLEL
    name: str = field(default="", compare=False)

    def __post_init__(self):
        gpu = str(self.gpu).lower()
        if gpu not in SMS:
            raise ValueError(f"Deployment gpu={self.gpu!r} is not known; choose one of {sorted(SMS)}")
        object.__setattr__(self, "gpu", gpu)
        if self.dtype not in DTYPES:
            raise ValueError(f"Deployment dtype={self.dtype!r}; choose one of {DTYPES}")
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
            object.__setattr__(self, "comm_dtype", self.dtype if self.dtype in ("bf16", "fp16") else "fp32")
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
        kv = self.kv_block or (256 if head_dim <= 64 else 128 if head_dim <= 128 else 64)
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

    def base_model(self):
        """The accumulation model of one unsplit GEMM: the GPU's tensor core on 16-bit
        inputs, a sequential fp32 FMA chain for fp32 and LayerCast.

        >>> Deployment("a100", "bf16").base_model().name
        'A100 bf16'
        """
        from .. import accum, hardware
        if self.dtype in ("bf16", "fp16"):
            return hardware.tensor_core(self.gpu, self.dtype)
        return accum.Sequential("fp32", fma=True)

    def gemm_model(self, M: int, N: int, K: int, batch: int = 1):
        """The accumulation model the rule picks for a GEMM of this shape.

        >>> d = Deployment("a100", "fp32", sms=4, tile_m=16, tile_n=16)
        >>> type(d.gemm_model(64, 16, 256)).__name__, d.gemm_model(1, 16, 256).every
        ('Sequential', 64)
        """
        return _gemm_model(self, M, N, K, batch)

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


@lru_cache(maxsize=4096)
def _gemm_model(dep: Deployment, M, N, K, batch):
    from .. import accum
    base = dep.base_model()
    L = dep.slice_length(M, N, K, batch)
    if L >= K:
        return base
    return accum.Promoted(base, every=L)


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
        from .gemm import gemm
        if b.dim() == 2 and a.dim() > 2:
            M, batch = math.prod(a.shape[:-1]), 1
        else:
            M = a.shape[-2]
            batch = math.prod(torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
        K, N = a.shape[-1], b.shape[-1]
        tp = self.dep.tp if self.row_parallel else 1
        if tp == 1:
            return self._local(a, b, pol, roles, what, M, N, K, batch)
        if K % tp:
            raise ValueError(f"{what}: K={K} is not divisible by tp={tp}: a row-parallel layer "
                             "shards K equally over the ranks")
        k = K // tp
        parts = [self._local(a[..., r * k:(r + 1) * k], b[..., r * k:(r + 1) * k, :], pol, roles,
                             what, M, N, k, batch) for r in range(tp)]
        return allreduce(parts, self.dep.allreduce, self.dep.comm_dtype).to(parts[0].dtype)

    def attention(self, s, v, pol):
        """softmax(s) @ v as a split-KV kernel: the keys cut into ``kv_splits`` chunks (of
        whole ``kv_block`` s), each giving its row max ``m_j``, ``l_j = sum exp(s - m_j)`` and
        ``o_j = exp(s - m_j) @ v_j`` (a GEMM under the policy; P rounded like any GEMM
        operand), combined as ``sum exp(m_j - m) o_j / sum exp(m_j - m) l_j`` in fp32."""
        from .gemm import gemm
        *lead, L, S = s.shape
        n = self.dep.kv_splits(math.prod(lead), L, S, v.shape[-1])
        kv = self.dep.kv_block or (256 if v.shape[-1] <= 64 else 128 if v.shape[-1] <= 128 else 64)
        step = kv * math.ceil(math.ceil(S / kv) / n)
        s = s.float()
        ms, ls, os_ = [], [], []
        for j in range(0, S, step):
            sj = s[..., j:j + step]
            m = sj.amax(-1, keepdim=True)
            # a chunk fully masked for a row: its terms are exp(-inf) = 0, weight 0 below
            e = torch.exp(sj - torch.where(torch.isinf(m), torch.zeros_like(m), m))
            ms.append(m)
            ls.append(e.sum(-1, keepdim=True))
            os_.append(gemm(e.to(v.dtype), v[..., j:j + step, :], pol, roles=("activation", "activation"),
                            what="sdpa PV (split-KV)").float())
        mx = torch.stack(ms).amax(0)
        w = [torch.exp(m - mx) for m in ms]
        num = sum(wi * o for wi, o in zip(w, os_))
        den = sum(wi * li for wi, li in zip(w, ls))
        return (num / den).to(v.dtype)

    def norm(self, func, args, kwargs):
        """layer_norm / rms_norm over the last dimension with the row sums split into
        ``norm_splits(rows, d)`` chunks (each summed by torch in fp32, the chunk sums added
        in order); NotImplemented for other ops (they run as under the profile)."""
        name = getattr(func, "__name__", "")
        if name not in ("layer_norm", "rms_norm"):
            return NotImplemented
        x = args[0] if args else kwargs.get("input")
        shape = args[1] if len(args) > 1 else kwargs.get("normalized_shape")
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if len(shape) != 1 or not x.is_floating_point():
            return NotImplemented
        rest = list(args[2:]) + [None] * 3
        if name == "layer_norm":
            w, b, eps = (kwargs.get("weight", rest[0]), kwargs.get("bias", rest[1]),
                         kwargs.get("eps", rest[2] if rest[2] is not None else 1e-5))
        else:
            w, b = kwargs.get("weight", rest[0]), None
            eps = kwargs.get("eps", rest[1])
            eps = torch.finfo(torch.float32).eps if eps is None else eps
        d = x.shape[-1]
        n = self.dep.norm_splits(x.numel() // max(d, 1), d)
        step = math.ceil(d / n)
        xf = x.float()

        def rowsum(t):
            parts = [t[..., j:j + step].sum(-1, keepdim=True) for j in range(0, d, step)]
            s = parts[0]
            for p in parts[1:]:
                s = s + p
            return s
        if name == "layer_norm":
            mean = rowsum(xf) / d
            xc = xf - mean
            var = rowsum(xc * xc) / d
        else:
            xc, var = xf, rowsum(xf * xf) / d
        y = xc * torch.rsqrt(var + eps)
        if w is not None:
            y = y * w.float()
        if b is not None:
            y = y + b.float()
        return y.to(x.dtype)

    def _local(self, a, b, pol, roles, what, M, N, K, batch):
        """One GPU's GEMM under the kernel rule."""
        from .gemm import gemm
        dep = self.dep
        out_fmt = pol.output if dep.dtype in ("bf16", "fp16") else None
        if dep.splitk_reduction == "compute" or out_fmt is None:
            return gemm(a, b, _concrete(pol, dep.gemm_model(M, N, K, batch)), roles, what)
        L = dep.slice_length(M, N, K, batch)  # "output": partials in the output format
        base = _concrete(pol, dep.base_model())
        parts = [gemm(a[..., j:j + L], b[..., j:j + L, :], base, roles, what) for j in range(0, K, L)]
        return _sequential(parts, out_fmt).to(parts[0].dtype)


@lru_cache(maxsize=4096)
def _concrete(pol, model):
    return pol.replace(accum=model, backward_accum=None)


def allreduce(parts, order="ring", comm_dtype="bf16"):
    """Sum of the ranks' partial results as an all-reduce computes it, every value and
    every addition rounded into ``comm_dtype``.

    ``"ring"``: the flattened output is cut into ``len(parts)`` equal chunks (the last may
    be shorter); chunk ``c`` is accumulated as ``((x[c+1] + x[c+2]) + ...) + x[c]`` (ranks
    mod ``p``), the reduce-scatter of a ring. ``"tree"``: pairwise halves
    ``(x0 + x1) + (x2 + x3)`` for every element.

    >>> import torch
    >>> x = [torch.tensor([1.0, 1.0]), torch.tensor([2.0**-8, 2.0**-8]), torch.tensor([2.0**-8, 2.0**-8])]
    >>> allreduce(x, "ring", "bf16").tolist()  # chunk 0: (x1+x2)+x0, chunk 1: (x2+x0)+x1
    [1.0078125, 1.0]
    """
    from .quantize import quantize
    if order not in ALLREDUCE:
        raise ValueError(f"allreduce order={order!r}; choose one of {ALLREDUCE}")
    p = len(parts)
    shape = parts[0].shape

    def rnd(t):  # float64 sums of two comm-format values round once into the format (exact
        # sum, or innocuous double rounding: float64 has > 2p+2 bits of any comm format)
        return quantize(t, comm_dtype)

    xs = [rnd(t.detach().to(torch.float64)).reshape(-1) for t in parts]
    if p == 1:
        return xs[0].reshape(shape)
    if order == "tree":
        def tree(lo, hi):
            if hi - lo == 1:
                return xs[lo]
            mid = lo + (hi - lo) // 2
            return rnd(tree(lo, mid) + tree(mid, hi))
        return tree(0, p).reshape(shape)
    n = xs[0].numel()
    step = math.ceil(n / p)
    out = torch.empty(n, dtype=torch.float64)
    for c in range(p):
        sl = slice(c * step, min(n, (c + 1) * step))
        if sl.start >= n:
            break
        s = xs[(c + 1) % p][sl]
        for j in range(2, p + 1):
            s = rnd(s + xs[(c + j) % p][sl])
        out[sl] = s
    return out.reshape(shape)


def _sequential(parts, fmt):
    """``((p0 + p1) + p2) + ...`` with every value and sum rounded into ``fmt``."""
    from .quantize import quantize
    s = quantize(parts[0].detach().to(torch.float64), fmt)
    for p in parts[1:]:
        s = quantize(s + quantize(p.detach().to(torch.float64), fmt), fmt)
    return s


@lru_cache(maxsize=256)
def _policy(dep: Deployment, patterns: tuple):
    from . import profiles
    base = profiles.get(dep.dtype)
    pol = base.replace(accum=_Kernels(dep), backward_accum=None, name=dep.name,
                       description=f"{dep.gpu.upper()} {dep.dtype}, tp={dep.tp}, {dep.kernels} "
                                   f"kernels ({dep.allreduce} all-reduce in {dep.comm_dtype})")
    if patterns:
        row = pol.replace(accum=_Kernels(dep, row_parallel=True), name=dep.name + " row-parallel")
        pol = pol.replace(overrides=tuple((p, row) for p in patterns))
    return pol
