"""Convolutions as the implicit GEMM the hardware runs (conv1d/2d/3d, conv_transpose1d/2d/3d).

A convolution is lowered to one GEMM per group: the rows are the output positions, the
reduction (K) runs over the group's input channels x the kernel window (channel-major, then
the kernel offsets in order), the columns are the output channels. Block formats are
therefore blocked along that reduction and ``Scaled(per="row")`` weights get one scale per
output channel, as on a GPU's implicit-GEMM kernels.

A transposed convolution is lowered to the direct convolution it equals: the input with
``stride - 1`` zeros inserted between samples, padded by ``dilation * (k - 1) - padding``
(plus ``output_padding`` on the high side), convolved with stride 1 by the spatially flipped
kernel whose in/out channel axes are swapped. The inserted zeros join the reduction (they
add nothing to a sum, and do not change a block's amax).

>>> import torch
>>> from fpsim.torch import Policy
>>> x, w = torch.ones(1, 2, 5), torch.ones(3, 2, 3)
>>> conv_gemm(x, w, nd=1, pol=Policy(weight="bf16", activation="bf16"))
tensor([[[6., 6., 6.],
         [6., 6., 6.],
         [6., 6., 6.]]])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .gemm import gemm

__all__ = ["conv_gemm", "conv_transpose_gemm", "im2col"]


def _tuple(v, nd, what):
    if isinstance(v, (tuple, list)):
        if len(v) != nd:
            raise ValueError(f"conv{nd}d {what}={tuple(v)!r}: expected {nd} values")
        return tuple(int(e) for e in v)
    return (int(v),) * nd


def _check(x, w, nd, groups, what):
    if x.dim() not in (nd + 1, nd + 2):
        raise ValueError(f"{what}: expected a {nd + 1}-D or {nd + 2}-D input, got shape {tuple(x.shape)}")
    if w.dim() != nd + 2:
        raise ValueError(f"{what}: expected a {nd + 2}-D weight, got shape {tuple(w.shape)}")
    if groups < 1:
        raise ValueError(f"{what}: groups={groups} must be >= 1")


def im2col(x, kernel, stride, padding, dilation):
    """Patches of ``x`` (N, C, *S) as (N, L, C * prod(kernel)): L output positions, and for
    each the channel-major window (the K order of :func:`conv_gemm`). ``padding`` is a tuple
    of (low, high) pairs, one per spatial dimension. Returns (patches, output sizes).

    >>> im2col(torch.arange(4.).reshape(1, 1, 4), (2,), (2,), ((0, 0),), (1,))
    (tensor([[[0., 1.],
             [2., 3.]]]), (2,))
    """
    nd = len(kernel)
    pads = []
    for lo, hi in reversed(padding):  # F.pad takes the last dimension first
        pads += [lo, hi]
    if any(pads):
        x = F.pad(x, pads)
    for i in range(nd):
        span = dilation[i] * (kernel[i] - 1) + 1
        if x.shape[2 + i] < span:
            raise ValueError(f"conv: padded input size {x.shape[2 + i]} is smaller than the "
                             f"dilated kernel ({span}) along spatial dimension {i}")
        x = x.unfold(2 + i, span, stride[i])  # (N, C, ..., O_i, ..., span) appended last
        if dilation[i] > 1:
            x = x[..., :: dilation[i]]
    # x: (N, C, O_1..O_nd, k_1..k_nd) -> (N, O_1..O_nd, C, k_1..k_nd)
    n, c = x.shape[:2]
    outs = x.shape[2:2 + nd]
    perm = [0, *range(2, 2 + nd), 1, *range(2 + nd, 2 + 2 * nd)]
    cols = x.permute(perm).reshape(n, math.prod(outs), c * math.prod(kernel))
    return cols, tuple(outs)


def _same_padding(kernel, dilation):
    pad = []
    for k, d in zip(kernel, dilation):
        t = d * (k - 1)
        pad.append((t // 2, t - t // 2))
    return tuple(pad)


def conv_gemm(x, w, stride=1, padding=0, dilation=1, groups=1, *, nd, pol, what=None):
    """``conv{nd}d(x, w)`` (no bias) as one emulated GEMM per group under ``pol``.

    The reduction is over ``C_in / groups`` x the kernel window; see the module docstring.
    """
    what = what or f"conv{nd}d"
    _check(x, w, nd, groups, what)
    unbatched = x.dim() == nd + 1
    if unbatched:
        x = x.unsqueeze(0)
    kernel = tuple(w.shape[2:])
    stride, dilation = _tuple(stride, nd, "stride"), _tuple(dilation, nd, "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            pad = ((0, 0),) * nd
        elif padding == "same":
            pad = _same_padding(kernel, dilation)
        else:
            raise ValueError(f"{what} padding={padding!r}: allowed 'valid', 'same' or ints")
    else:
        pad = tuple((p, p) for p in _tuple(padding, nd, "padding"))
    n, cin = x.shape[:2]
    cout, cg = w.shape[:2]
    g = groups
    if cin != cg * g or cout % g:
        raise ValueError(f"{what}: input has {cin} channels, weight {tuple(w.shape)} with "
                         f"groups={g} expects {cg * g} (and out channels divisible by groups)")
    cols, outs = im2col(x, kernel, stride, pad, dilation)  # (N, L, C*k)
    kk = cg * math.prod(kernel)
    L = cols.shape[1]
    cols = cols.reshape(n, L, g, kk).transpose(1, 2)  # (N, g, L, K)
    wm = w.reshape(g, cout // g, kk).transpose(-1, -2)  # (g, K, cout/g)
    y = gemm(cols, wm, pol, what=what)  # (N, g, L, cout/g)
    y = y.transpose(-1, -2).reshape(n, cout, *outs)
    return y.squeeze(0) if unbatched else y


def conv_transpose_gemm(x, w, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                        nd, pol, what=None):
    """``conv_transpose{nd}d(x, w)`` (no bias) as the equivalent direct convolution (zeros
    inserted, flipped kernel with in/out channels swapped), then :func:`conv_gemm`."""
    what = what or f"conv_transpose{nd}d"
    _check(x, w, nd, groups, what)
    unbatched = x.dim() == nd + 1
    if unbatched:
        x = x.unsqueeze(0)
    stride, dilation = _tuple(stride, nd, "stride"), _tuple(dilation, nd, "dilation")
    padding, opad = _tuple(padding, nd, "padding"), _tuple(output_padding, nd, "output_padding")
    kernel = tuple(w.shape[2:])
    g = groups
    cin, cog = w.shape[:2]
    if x.shape[1] != cin or cin % g:
        raise ValueError(f"{what}: input has {x.shape[1]} channels, weight {tuple(w.shape)} "
                         f"expects {cin} (divisible by groups={g})")
    if any(s > 1 for s in stride):  # zero insertion
        n, c, *S = x.shape
        up = x.new_zeros(n, c, *[(s_ - 1) * st + 1 for s_, st in zip(S, stride)])
        up[(slice(None), slice(None), *[slice(None, None, st) for st in stride])] = x
        x = up
    pads = []
    for i in reversed(range(nd)):
        lo = dilation[i] * (kernel[i] - 1) - padding[i]
        pads += [lo, lo + opad[i]]  # negative padding crops
    x = F.pad(x, pads)
    # (cin, cout/g, k..) -> (g, cin/g, cout/g, k..) -> (cout, cin/g, k..), flipped
    wd = w.reshape(g, cin // g, cog, *kernel).transpose(1, 2).reshape(g * cog, cin // g, *kernel)
    wd = wd.flip(list(range(2, 2 + nd)))
    y = conv_gemm(x, wd, 1, 0, dilation, g, nd=nd, pol=pol, what=what)
    return y.squeeze(0) if unbatched else y
