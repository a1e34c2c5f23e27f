"""RNN / LSTM / GRU (``torch._VF`` paths and the ``*Cell`` ops) as Python cell math around
emulated GEMMs.

torch runs recurrent layers in one fused native call (``torch._VF.lstm`` ...), which would
hide their GEMMs from the emulation. Here the same math runs step by step: per layer and
direction, the input projection ``x W_ihᵀ + b_ih`` of all time steps is one GEMM (as cuDNN
does), the recurrent projection ``h W_hhᵀ + b_hh`` one GEMM per step, and the gate
nonlinearities run natively in the tensor's dtype (elementwise, like every other
elementwise op under emulation). Each GEMM goes through ``linear(x, w, b)``, the caller's
emulated linear layer (bias added, output format applied). Gate order is torch's
(LSTM: i, f, g, o; GRU: r, z, n).

>>> import torch
>>> lin = lambda x, w, b: x @ w.t() + (0 if b is None else b)
>>> out, h = recurrent("rnn_tanh", torch.ones(3, 1, 2), torch.zeros(1, 1, 1),
...                    [torch.ones(1, 2), torch.zeros(1, 1)], False, 1, 0.0, False, False,
...                    False, lin)
>>> out.shape, round(h.item(), 4)  # tanh(1 + 1) at every step
(torch.Size([3, 1, 1]), 0.964)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["recurrent", "cell", "KINDS"]

#: torch._VF recurrent kinds and their number of gates.
KINDS = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def _step(kind, gi, h, c, w_hh, b_hh, w_hr, linear):
    """One time step; ``gi`` is the input projection (bias included). Returns (h, c)."""
    gh = linear(h, w_hh, b_hh)
    if kind == "lstm":
        i, f, g, o = (gi + gh).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        if w_hr is not None:
            h = linear(h, w_hr, None)
        return h, c
    if kind == "gru":
        ir, iz, in_ = gi.chunk(3, -1)
        hr, hz, hn = gh.chunk(3, -1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + r * hn)
        return (1 - z) * n + z * h, None
    a = gi + gh
    return (torch.tanh(a) if kind == "rnn_tanh" else torch.relu(a)), None


def cell(kind, x, hx, w_ih, w_hh, b_ih, b_hh, linear):
    """``torch.lstm_cell`` / ``gru_cell`` / ``rnn_tanh_cell`` / ``rnn_relu_cell``."""
    if kind == "lstm":
        h, c = hx
    else:
        h, c = hx, None
    h2, c2 = _step(kind, linear(x, w_ih, b_ih), h, c, w_hh, b_hh, None, linear)
    return (h2, c2) if kind == "lstm" else h2


def recurrent(kind, x, hx, params, has_biases, num_layers, dropout, train, bidirectional,
              batch_first, linear):
    """The full ``torch._VF.<kind>`` call (unpacked input); returns what torch returns:
    ``(output, h_n, c_n)`` for LSTM, ``(output, h_n)`` otherwise."""
    if kind not in KINDS:
        raise ValueError(f"unknown recurrent kind {kind!r}; allowed {sorted(KINDS)}")
    lstm = kind == "lstm"
    h0, c0 = (hx[0], hx[1]) if lstm else (hx, None)
    if batch_first:
        x = x.transpose(0, 1)  # (T, B, F)
    ndir = 2 if bidirectional else 1
    per = len(params) // (num_layers * ndir)
    hs, cs = [], []
    inp = x
    for layer in range(num_layers):
        outs = []
        for d in range(ndir):
            p = params[(layer * ndir + d) * per:(layer * ndir + d + 1) * per]
            w_ih, w_hh = p[0], p[1]
            b_ih, b_hh = (p[2], p[3]) if has_biases else (None, None)
            rest = p[4:] if has_biases else p[2:]
            w_hr = rest[0] if rest else None
            k = layer * ndir + d
            h, c = h0[k], (c0[k] if lstm else None)
            gi = linear(inp, w_ih, b_ih)  # all time steps in one GEMM
            steps = range(inp.shape[0] - 1, -1, -1) if d == 1 else range(inp.shape[0])
            ys = [None] * inp.shape[0]
            for t in steps:
                h, c = _step(kind, gi[t], h, c, w_hh, b_hh, w_hr, linear)
                ys[t] = h
            outs.append(torch.stack(ys, 0))
            hs.append(h)
            cs.append(c)
        inp = outs[0] if ndir == 1 else torch.cat(outs, -1)
        if dropout and train and layer < num_layers - 1:
            inp = F.dropout(inp, dropout, training=True)
    out = inp.transpose(0, 1) if batch_first else inp
    hn = torch.stack(hs, 0)
    if lstm:
        return out, hn, torch.stack(cs, 0)
    return out, hn
