"""Cross-rank sums of a tensor-parallel deployment: the all-reduce orders of
:class:`fpsim.torch.Deployment` (``allreduce=``), each addition rounded into the
communication format.

``"ring"``
    reduce-scatter of a ring: the flattened output is cut into ``p`` equal chunks; chunk
    ``c`` is accumulated starting at rank ``c+1`` and going round the ring to rank ``c``:
    ``((x[c+1] + x[c+2]) + ...) + x[c]`` (ranks mod ``p``). *Fact*: NCCL's ring adds each
    chunk rank by rank along the ring. *Assumption*: the chunk-to-start-rank mapping.
``"tree"``
    pairwise halves ``(x0 + x1) + (x2 + x3)`` for every element (a generic balanced tree,
    not NCCL's).
``"double_binary_tree"``
    NCCL's double binary tree (NCCL >= 2.4). *Facts* (NVIDIA, "Massively Scale Your Deep
    Learning Training with NCCL 2.4", 2019; NCCL ``src/graph/trees.cc``): two complementary
    binary trees over the ranks (for an even number of ranks the inner nodes of one are
    the leaves of the other), each reducing half of the data: the first tree is ``ncclGetBtree`` (root rank
    0 with a single child, rank ``r``'s children ``r -/+ lowbit/2``), the second its mirror
    ``r -> p-1-r`` for even ``p`` or its shift ``r -> r+1`` for odd ``p``; values go up the
    tree (reduce) and the root's sum comes down (broadcast), so every rank gets the same
    bits. *Assumptions*: one tree node per rank (NCCL builds the trees over nodes and chains
    the GPUs within a node), the buffer cut into a first half (tree 0) and a second half
    (tree 1) (NCCL alternates chunks of its channels between the trees), and the order of
    additions inside a node: its own value, plus its first child's subtree sum, plus its
    second child's (the order of the sources of NCCL's reduce primitive).

Which algorithm NCCL runs is chosen at run time by its cost model from the message size,
the number of ranks and the topology (*fact*; ``NCCL_ALGO=Ring|Tree`` forces one): trees
for small, latency-bound messages across nodes, rings for large, bandwidth-bound ones; the
crossover is computed, not a published constant. Within one NVLink node (the usual
tensor-parallel group) NCCL mostly picks the ring (or NVLS on NVSwitch systems, not
modelled), hence ``"ring"`` is the :class:`~fpsim.torch.Deployment` default.

>>> import torch
>>> x = [torch.tensor([1.0]), torch.tensor([2.0**-8]), torch.tensor([2.0**-8]), torch.tensor([0.0])]
>>> allreduce(x, "double_binary_tree", "bf16").item()  # x0 + ((x2 + x1) + x3): 1 + 2^-7
1.0078125
"""

from __future__ import annotations

import math
from functools import lru_cache, reduce

import torch

from . import _ops
from .quantize import quantize

__all__ = ["ALLREDUCE", "allreduce", "btree", "double_binary_tree", "sequential_sum", "with_grad_of"]

#: All-reduce orders of tensor-parallel partial sums.
ALLREDUCE = ("ring", "tree", "double_binary_tree")


def btree(p: int) -> dict:
    """NCCL's binary tree over ``p`` ranks (``ncclGetBtree``): rank -> (parent, children),
    parent ``-1`` at the root (rank 0), children in NCCL's order (``down0``, ``down1``).

    >>> btree(4)
    {0: (-1, (2,)), 1: (2, ()), 2: (0, (1, 3)), 3: (2, ())}
    """
    if isinstance(p, bool) or not isinstance(p, int) or p < 1:
        raise ValueError(f"btree: the number of ranks must be an int >= 1, got {p!r}")
    out = {}
    for r in range(p):
        bit = 1
        while bit < p and not bit & r:
            bit <<= 1
        if r == 0:  # the root has one child only
            out[r] = (-1, (bit >> 1,) if p > 1 else ())
            continue
        up = (r ^ bit) | (bit << 1)
        if up >= p:
            up = r ^ bit
        low = bit >> 1
        kids = []
        if low:
            kids.append(r - low)
            d1 = r + low
            while d1 >= p and low:  # the second child: the largest r + 2^j inside the ranks
                low >>= 1
                d1 = r + low
            if low:
                kids.append(d1)
        out[r] = (up, tuple(kids))
    return out


def double_binary_tree(p: int) -> tuple:
    """NCCL's two complementary trees over ``p`` ranks (``ncclGetDtree``): :func:`btree`
    and its mirror ``r -> p-1-r`` (even ``p``) or shift ``r -> r+1`` (odd ``p``).

    >>> t0, t1 = double_binary_tree(4)
    >>> t1  # root 3, whose child 1 has the children 2 and 0
    {3: (-1, (1,)), 2: (1, ()), 1: (3, (2, 0)), 0: (1, ())}
    """
    t0 = btree(p)
    if p % 2:
        f = lambda r: -1 if r == -1 else (r + 1) % p  # noqa: E731
    else:
        f = lambda r: -1 if r == -1 else p - 1 - r  # noqa: E731
    # tree 1's rank f(r) plays the role that rank r has in tree 0
    return t0, {f(r): (f(u), tuple(f(k) for k in kids)) for r, (u, kids) in t0.items()}


@lru_cache(maxsize=64)
def _trees(p):
    return double_binary_tree(p)


def allreduce(parts, order="ring", comm_dtype="bf16"):
    """Sum of the ranks' partial results as an all-reduce computes it, every value and
    every addition rounded into ``comm_dtype`` (the orders: module docstring). The result is
    the same on every rank; its gradient goes unchanged to every part (the backward of a
    Megatron-LM row-parallel all-reduce is the identity).

    >>> import torch
    >>> x = [torch.tensor([1.0, 1.0]), torch.tensor([2.0**-8, 2.0**-8]), torch.tensor([2.0**-8, 2.0**-8])]
    >>> allreduce(x, "ring", "bf16").tolist()  # chunk 0: (x1+x2)+x0, chunk 1: (x2+x0)+x1
    [1.0078125, 1.0]
    """
    if order not in ALLREDUCE:
        raise ValueError(f"allreduce order={order!r}; choose one of {ALLREDUCE}")
    if not parts:
        raise ValueError("allreduce of no parts: give one tensor per rank")
    shapes = {tuple(t.shape) for t in parts}
    if len(shapes) != 1:
        raise ValueError(f"allreduce: every rank's part must have the same shape, got {sorted(shapes)}")
    shape = parts[0].shape

    def rnd(t):  # float64 sums of two comm-format values round once into the format (exact
        # sum, or innocuous double rounding: float64 has > 2p+2 bits of any comm format)
        return quantize(t, comm_dtype)

    xs = [rnd(t.detach().to(torch.float64)).reshape(-1) for t in parts]
    p, n = len(xs), xs[0].numel()
    if p == 1:
        out = xs[0]
    elif order == "tree":
        def tree(lo, hi):
            if hi - lo == 1:
                return xs[lo]
            mid = lo + (hi - lo) // 2
            return rnd(tree(lo, mid) + tree(mid, hi))
        out = tree(0, p)
    elif order == "double_binary_tree":
        out = torch.empty(n, dtype=torch.float64)
        half = math.ceil(n / 2)
        for t, sl in zip(_trees(p), (slice(0, half), slice(half, n))):
            root = next(r for r, (u, _) in t.items() if u == -1)

            def up(r, t=t, sl=sl):  # the subtree sum arriving at r's parent
                s = xs[r][sl]
                for k in t[r][1]:
                    s = rnd(s + up(k))
                return s
            out[sl] = up(root)
    else:
        out = torch.empty(n, dtype=torch.float64)
        step = math.ceil(n / p)
        for c in range(p):
            sl = slice(c * step, min(n, (c + 1) * step))
            if sl.start >= n:
                break
            s = xs[(c + 1) % p][sl]
            for j in range(2, p + 1):
                s = rnd(s + xs[(c + j) % p][sl])
            out[sl] = s
    return with_grad_of(out.reshape(shape).to(parts[0].dtype), parts)


def sequential_sum(parts, fmt):
    """``((p0 + p1) + p2) + ...`` with every value and sum rounded into ``fmt``; the
    gradient goes unchanged to every part.

    >>> import torch
    >>> sequential_sum([torch.tensor([1.0]), torch.tensor([2.0**-8]), torch.tensor([2.0**-8])], "bf16").item()
    1.0
    """
    s = quantize(parts[0].detach().to(torch.float64), fmt)
    for p in parts[1:]:
        s = quantize(s + quantize(p.detach().to(torch.float64), fmt), fmt)
    return with_grad_of(s.to(parts[0].dtype), parts)


# The value of a sum computed outside autograd (float64, rounded step by step), with the
# gradient of the plain sum of ``refs``: an opaque op, so that torch.compile never traces it
@torch.library.custom_op(f"{_ops.NAMESPACE}::with_grad_of", mutates_args=())
def _with_grad_of_op(value: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return value.clone(memory_format=torch.contiguous_format)


@_with_grad_of_op.register_fake
def _(value, ref):
    return torch.empty(value.shape, dtype=value.dtype, device=value.device)


def _with_grad_of_backward(ctx, g):
    return None, g


_with_grad_of_op.register_autograd(_with_grad_of_backward)


def with_grad_of(value, refs):
    """``value`` (computed without autograd) carrying the gradient of ``sum(refs)``: each
    tensor of ``refs`` receives the incoming gradient unchanged (the straight-through rule
    of a reduction whose order autograd cannot see). Without autograd: ``value`` itself.

    >>> import torch
    >>> a = torch.tensor([1.0], requires_grad=True); b = torch.tensor([2.0], requires_grad=True)
    >>> y = with_grad_of(torch.tensor([3.5]), [a, b]); (2 * y).sum().backward()
    >>> y.item(), a.grad.item(), b.grad.item()
    (3.5, 2.0, 2.0)
    """
    if isinstance(refs, torch.Tensor):
        refs = [refs]
    if not (torch.is_grad_enabled() and any(r.requires_grad for r in refs)):
        return value
    ref = reduce(lambda x, y: x + y, refs)  # only its graph matters: each ref gets g
    if ref.shape != value.shape:
        raise ValueError(f"with_grad_of: value has shape {tuple(value.shape)} but the sum of "
                         f"refs {tuple(ref.shape)}")
    return _with_grad_of_op(value.detach().to(ref.dtype), ref)
