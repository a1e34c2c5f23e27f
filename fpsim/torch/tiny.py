"""A tiny character-level GPT: the small model that ``fpsim report``, the tests and the
notebooks train in seconds and then run under emulation profiles.

>>> import torch
>>> from fpsim.torch.tiny import TinyGPT
>>> TinyGPT(vocab=30, ctx=16)(torch.zeros(1, 8, dtype=torch.long)).shape
torch.Size([1, 8, 30])
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["TinyBlock", "TinyGPT"]


class TinyBlock(nn.Module):
    """Pre-norm transformer block: causal multi-head attention (``scaled_dot_product_attention``)
    and a GELU MLP, each with a residual connection.

    >>> TinyBlock(8, 2)(torch.zeros(1, 4, 8)).shape
    torch.Size([1, 4, 8])
    """

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.heads = heads

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
        q, k, v = (t.view(B, T, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(B, T, D))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """Token and learned positional embeddings, ``layers`` :class:`TinyBlock` s, a final
    LayerNorm and an ``lm_head`` without bias; sequences up to ``ctx`` tokens.

    >>> TinyGPT(vocab=10, d=16, heads=2, layers=1, ctx=8)(torch.zeros(2, 5, dtype=torch.long)).shape
    torch.Size([2, 5, 10])
    """

    def __init__(self, vocab: int, d: int = 32, heads: int = 2, layers: int = 2, ctx: int = 64):
        super().__init__()
        if d % heads:
            raise ValueError(f"d={d} must be a multiple of heads={heads}")
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(ctx, d))
        self.blocks = nn.ModuleList(TinyBlock(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        if idx.shape[1] > self.pos.shape[0]:
            raise ValueError(f"sequence of {idx.shape[1]} tokens; this TinyGPT covers at most "
                             f"{self.pos.shape[0]} (ctx)")
        x = self.tok(idx) + self.pos[: idx.shape[1]]
        for b in self.blocks:
            x = b(x)
        return self.lm_head(self.ln(x))
