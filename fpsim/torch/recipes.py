"""Training recipes: how a low-precision training run quantizes each operand of each GEMM.

:class:`NVFP4Recipe` models NVIDIA's NVFP4 pretraining recipe ("Pretraining Large Language
Models with NVFP4", NVIDIA 2025, arXiv:2509.25149; Transformer Engine's
``NVFP4BlockScaling``) on the B200 block-scaled tensor core (``tcgen05.mma
kind::mxf4nvf4.block16``, :func:`fpsim.hardware.tensor_core` ``("B200", "nvfp4")``).
``fpsim.torch.emulate(NVFP4Recipe(), model=model)`` and ``fpsim.torch.convert(model,
NVFP4Recipe())`` accept it wherever a profile name is (it has a ``policy(model)`` method, as
:class:`~fpsim.torch.Deployment`).

Every linear-layer GEMM ``y = x @ w`` (x: (M, K) activations, w: (K, N) the transposed
weight) and its two backward GEMMs are quantized into NVFP4 (E2M1 elements, one UE4M3 scale
per 16 elements along the GEMM's reduction axis, one fp32 tensor scale from the operand's
amax, as fpsim's ``nvfp4`` format) by these rules ("paper": arXiv:2509.25149 / the TE
documentation; "assumption": not confirmed there, a parameter):

=================  ==========================================================================
GEMM               operands
=================  ==========================================================================
forward (fprop)    x: 1x16 blocks along K, RNE; w: ``weight_2d`` 16x16 tiles, else 1x16, RNE
dgrad ``dy @ wᵀ``  dy: 1x16 along N, SR if ``sr_grads``; wᵀ: the same 16x16 tiles (so the
                   same quantized values as forward), else 1x16 along N, RNE
wgrad ``xᵀ @ dy``  both along M (tokens): ``rht_wgrad``: a random Hadamard transform of
                   ``rht_size`` rows applied to x and dy along M first; xᵀ RNE, dy SR
=================  ==========================================================================

* 2D weight scaling (paper, section 4): a weight's scale is the amax of a 16x16 tile, so the
  weight quantized for forward and its transpose for dgrad hold the same values.
* Random Hadamard transform (paper: 16x16, wgrad inputs only): ``H = hadamard(n) / sqrt(n)
  @ diag(signs)``, one random sign vector drawn from ``seed`` (assumption: fixed for the run,
  as TE's fixed sign mask), applied to each group of ``n`` consecutive rows (tokens; M padded
  with zero rows). ``H`` is orthogonal, so the exact wgrad is unchanged; the emulated one
  changes because quantization follows the transform. The transform is evaluated in float64
  (exact for operands whose exponents span fewer than 29 binades; the GPU kernel's own fp32
  arithmetic is an assumption not modelled).
* Stochastic rounding of gradients (paper: dy in dgrad and wgrad; activations and weights
  RNE): each element of the scaled gradient becomes one of its two neighbours in E2M1 with
  the probability of its distance to the other (unbiased), from uniforms of a
  ``torch.Generator`` on the tensor's device seeded with ``seed`` and a counter of SR
  quantizations (deterministic for a fixed seed and call sequence; CPU and CUDA generators
  give different streams, so SR bits are device-dependent). The block scales are RNE.
* ``high_precision_layers`` (paper: the last layers, about 15%, in BF16): fnmatch patterns of
  module names run under the ``high_precision`` profile (default ``"bf16"``).

Other GEMMs (attention's batched matmuls) run as the ``b200_nvfp4`` profile. The tensor
core's bits are fpsim's model (:mod:`fpsim.accum`, MMA-Sim-checked); the recipe's rules are
the paper's.

>>> import torch, fpsim.torch as ft
>>> r = ft.NVFP4Recipe(seed=1)
>>> r.name
'nvfp4_recipe/w2d/rht16/sr'
>>> lin = torch.nn.Linear(32, 16)
>>> with ft.emulate(r, model=lin):
...     y = lin(torch.randn(4, 32))
>>> tuple(y.shape)
(4, 16)
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import accum as _A
from .. import hardware as _H
from ..formats import parse
from . import accum as _TA
from . import block_quant as _BQ
from . import profiles as _P
from .gemm import gemm

__all__ = ["NVFP4Recipe", "ROUNDINGS", "hadamard", "rht", "nvfp4_operand"]

#: Element roundings of :func:`nvfp4_operand`: round to nearest even, stochastic.
ROUNDINGS = ("rne", "sr")
_NVFP4 = parse("nvfp4")


def hadamard(n: int, seed=None) -> torch.Tensor:
    """The orthogonal (Sylvester) Hadamard matrix of order ``n`` (a power of two) divided
    by sqrt(n), float64; with ``seed``, times diag(signs) of random signs drawn from it.

    >>> h = hadamard(4); (h @ h.T).equal(torch.eye(4, dtype=torch.float64))
    True
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n & (n - 1):
        raise ValueError(f"hadamard: n={n!r} must be a power of two >= 1")
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    h = h / math.sqrt(n)
    if seed is not None:
        signs = np.random.default_rng(seed).integers(0, 2, n) * 2 - 1
        h = h * torch.from_numpy(signs.astype(np.float64))
    return h


def rht(x, n: int = 16, seed=None, dim: int = 0):
    """``x`` (float64) with :func:`hadamard` ``(n, seed)`` applied to each group of ``n``
    consecutive entries along ``dim`` (padded with zeros to a multiple of ``n``).

    >>> x = torch.ones(4, 1); rht(x, 4)[:, 0].tolist()
    [2.0, 0.0, 0.0, 0.0]
    """
    h = hadamard(n, seed).to(x.device)
    xm = x.detach().to(torch.float64).movedim(dim, 0)
    pad = -xm.shape[0] % n
    if pad:
        xm = torch.cat([xm, xm.new_zeros((pad, *xm.shape[1:]))], 0)
    g = xm.unflatten(0, (-1, n))
    y = torch.einsum("ij,gj...->gi...", h, g).flatten(0, 1)
    return y.movedim(0, dim)


def nvfp4_operand(x, axis=-1, rounding="rne", tile=1, generator=None):
    """``x`` encoded into NVFP4 along ``axis`` on its device: (element values padded to whole
    blocks, block scales, tensor scale) as :func:`fpsim.torch.block_quant.block_operand`
    (``tile=16``: 16x16 2D scales), with ``rounding="sr"`` the elements rounded
    stochastically (unbiased, uniforms from ``generator``; block and tensor scales as RNE).

    >>> x = torch.tensor([[0.25] * 15 + [0.1]])   # 0.1 is 2.4 at the block's scale
    >>> e, s, g = nvfp4_operand(x, rounding="sr", generator=torch.Generator().manual_seed(0))
    >>> e[0, 0].item(), e[0, 15].item() in (2.0, 3.0), s[0, 0].item()
    (6.0, True, 448.0)
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"nvfp4_operand: rounding={rounding!r}; choose one of {ROUNDINGS}")
    if rounding == "rne":
        return _BQ.block_operand(x, _NVFP4, axis, "rne", tile)
    if not isinstance(generator, torch.Generator):
        raise TypeError("nvfp4_operand: rounding='sr' needs a torch.Generator (the random stream)")
    lo, s, g = _BQ.block_operand(x, _NVFP4, axis, "rdn", tile)
    hi = _BQ.block_operand(x, _NVFP4, axis, "rup", tile)[0]
    xm = x.detach().to(torch.float64).movedim(axis, -1)
    pad = lo.shape[axis] - xm.shape[-1]
    if pad:
        xm = torch.cat([xm, xm.new_zeros((*xm.shape[:-1], pad))], -1)
    xm = xm.movedim(-1, axis)
    tot = torch.repeat_interleave(s, 16, dim=axis).narrow(axis, 0, lo.shape[axis]) * g
    # P(hi) = (y - lo) / (hi - lo) with y = x / scale: unbiased between the two neighbours
    width = torch.where(hi != lo, (hi - lo) * tot, torch.ones_like(tot))
    p = torch.where(hi != lo, (xm - lo * tot) / width, torch.zeros_like(tot))
    u = torch.rand(lo.shape, generator=generator, dtype=torch.float64, device=generator.device)
    return torch.where(u.to(lo.device) < p, hi, lo), s, g


@dataclass(frozen=True)
class NVFP4Recipe:
    """NVIDIA's NVFP4 training recipe on the B200 tensor core (module docstring).

    Parameters
    ----------
    weight_2d : bool
        16x16 2D block scales for weights (forward and dgrad see the same values); False:
        1x16 blocks along each GEMM's K.
    rht_wgrad : bool
        Random Hadamard transform of ``rht_size`` rows on both wgrad operands along M.
    sr_grads : bool
        Stochastic rounding of the output gradient dy (dgrad and wgrad); False: RNE.
    rht_size : int
        Order of the Hadamard transform (a power of two; the paper's 16).
    seed : int
        Seed of the RHT sign vector and of the SR stream.
    high_precision_layers : tuple of str
        fnmatch patterns of module names kept in ``high_precision``.
    high_precision : str
        The profile of those layers (default ``"bf16"``).

    >>> NVFP4Recipe(weight_2d=False, rht_wgrad=False, sr_grads=False).name
    'nvfp4_recipe/w1d'
    """

    weight_2d: bool = True
    rht_wgrad: bool = True
    sr_grads: bool = True
    rht_size: int = 16
    seed: int = 0
    high_precision_layers: tuple = ()
    high_precision: str = "bf16"
    name: str = field(default="", compare=False)

    def __post_init__(self):
        for nm in ("weight_2d", "rht_wgrad", "sr_grads"):
            if not isinstance(getattr(self, nm), bool):
                raise TypeError(f"NVFP4Recipe {nm}={getattr(self, nm)!r} must be a bool")
        n = self.rht_size
        if isinstance(n, bool) or not isinstance(n, int) or n < 2 or n & (n - 1):
            raise ValueError(f"NVFP4Recipe rht_size={n!r} must be a power of two >= 2 (the "
                             "paper's 16)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"NVFP4Recipe seed={self.seed!r} must be an int >= 0")
        hp = self.high_precision_layers
        hp = (hp,) if isinstance(hp, str) else tuple(hp)
        if not all(isinstance(p, str) for p in hp):
            raise TypeError(f"NVFP4Recipe high_precision_layers={hp!r} must be module-name patterns")
        object.__setattr__(self, "high_precision_layers", hp)
        _P.get(self.high_precision)  # an unknown profile fails here, with the profile list
        if not self.name:
            parts = ["nvfp4_recipe", "w2d" if self.weight_2d else "w1d"]
            parts += [f"rht{n}"] * self.rht_wgrad + ["sr"] * self.sr_grads
            object.__setattr__(self, "name", "/".join(parts))

    def policy(self, model=None):
        """The :class:`~fpsim.torch.Policy` that runs this recipe (a fresh SR stream each
        call; ``model``: to check that ``high_precision_layers`` match some module).

        >>> NVFP4Recipe().policy().accum.name
        'nvfp4_recipe/w2d/rht16/sr'
        """
        pol = _P.get("b200_nvfp4")
        pol = pol.replace(accum=_RecipeGEMM(self, pol), backward_accum=None, name=self.name,
                          description=f"NVFP4 training recipe ({self.name}) on the B200 "
                                      "kind::mxf4nvf4 block16 tensor core")
        hp = self.high_precision_layers
        if hp and model is not None:
            names = [n for n, _ in model.named_modules() if n]
            missing = [p for p in hp if not any(fnmatch.fnmatchcase(n, p) for n in names)]
            if missing:
                raise ValueError(f"NVFP4Recipe high_precision_layers {missing} match no module "
                                 f"of the model (modules: {names[:8]}...)")
        if hp:
            pol = pol.replace(overrides=tuple((p, self.high_precision) for p in hp))
        return pol


class _RecipeGEMM:
    """A Policy's ``accum`` under a recipe: :func:`fpsim.torch.gemm.gemm` calls
    :meth:`plan_gemm`; holds the tensor-core model and the SR call counter."""

    def __init__(self, recipe, base):
        self.recipe, self.base, self.calls = recipe, base, 0
        self.model = _H.tensor_core("B200", "nvfp4")

    @property
    def name(self):
        return self.recipe.name

    def generator(self, device):
        """The SR stream of the next stochastic quantization (seed, call counter)."""
        self.calls += 1
        g = torch.Generator(device=device)
        return g.manual_seed(self.recipe.seed * 1_000_003 + self.calls)

    def plan_gemm(self, a, b, pol, roles, what):
        if b.dim() != 2:  # batched matmuls (attention): as the b200_nvfp4 profile
            return gemm(a, b, self.base, roles, what)
        flat = a.shape[:-1]
        out = _RecipeMatmul.apply(a.reshape(-1, a.shape[-1]), b, self, roles[1] == "weight")
        return out.reshape(*flat, b.shape[-1])

    def matmul(self, a, b, qa, qb):
        """``a @ b`` on the tensor core, operands encoded by ``qa(a)``/``qb(b)``."""
        ea, sa, ga = qa(a)
        eb, sb, gb = qb(b)
        if _TA.backend(a.device, self.model) == "torch":
            out = _TA.matmul(ea, eb, model=self.model, a_scale=sa, b_scale=sb).to(torch.float32)
        else:
            npy = [t.cpu().numpy() for t in (ea, eb, sa, sb)]
            D = _A.matmul(npy[0], npy[1], model=self.model, a_scale=npy[2], b_scale=npy[3])
            out = torch.from_numpy(np.asarray(D, np.float32)).to(a.device)
        # the fp32 tensor scales multiply the fp32 result (the GEMM's epilogue)
        return out * torch.tensor(ga, dtype=torch.float32) * torch.tensor(gb, dtype=torch.float32)


class _RecipeMatmul(torch.autograd.Function):
    """Forward, dgrad and wgrad of ``a @ b`` under the recipe's quantization rules."""

    @staticmethod
    def forward(ctx, a, b, plan, is_weight):
        ctx.save_for_backward(a, b)
        ctx.plan, ctx.is_weight = plan, is_weight
        tile = 16 if (plan.recipe.weight_2d and is_weight) else 1
        out = plan.matmul(a, b, lambda t: nvfp4_operand(t, -1),
                          lambda t: nvfp4_operand(t, -2, tile=tile))
        return out.to(a.dtype)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        plan, r = ctx.plan, ctx.plan.recipe
        gr = "sr" if r.sr_grads else "rne"

        def grad_q(axis):
            return lambda t: nvfp4_operand(t, axis, gr, generator=(
                plan.generator(t.device) if gr == "sr" else None))
        ga = gb = None
        if ctx.needs_input_grad[0]:  # dgrad: dy (M, N) @ bᵀ (N, K), reduced over N
            tile = 16 if (r.weight_2d and ctx.is_weight) else 1
            ga = plan.matmul(g, b.transpose(0, 1), grad_q(-1),
                             lambda t: nvfp4_operand(t, -2, tile=tile)).to(a.dtype)
        if ctx.needs_input_grad[1]:  # wgrad: aᵀ (K, M) @ dy (M, N), reduced over M
            x, dy = a, g
            if r.rht_wgrad:
                x, dy = rht(a, r.rht_size, r.seed), rht(g, r.rht_size, r.seed)
            gb = plan.matmul(x.transpose(0, 1), dy, lambda t: nvfp4_operand(t, -1),
                             grad_q(-2)).to(b.dtype)
        return ga, gb, None, None
