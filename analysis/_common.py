"""Shared helpers of the studies in ``analysis/``: command line, report writing, tiny models.

Everything here is small on purpose: every model is trained in seconds on the CPU from data
generated in code (no downloads), so each study reproduces a paper's experiment *in
miniature*. The numbers a study reports are always measured by the run that writes the
report; the paper's numbers are quoted next to them, never used as results.

Study scripts use three pieces:

* :func:`parse_args` / :func:`run_main` -- the shared ``--out``/``--smoke``/``--seed`` options;
* :class:`Report` -- collects text, tables and figures and writes ``report.md``,
  ``results.json`` and PNG files into the output folder;
* :class:`TinyGPT`, :class:`MarkovText`, :func:`train_lm`, :func:`eval_lm` -- a character-level
  GPT trained on a synthetic order-2 Markov language whose most likely continuation is known
  exactly (so "accuracy" of a greedy answer is well defined).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

# fpsim's kernels give the same bits for any thread count, so the studies keep the default
# thread pools. (Changing NUMBA_NUM_THREADS here would break any process, such as the test
# suite, in which numba's threads already run.)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------

def parse_args(description: str, argv=None, default_out: str = "reports/study"):
    """The options every study takes: ``--out DIR``, ``--smoke`` (tiny sizes), ``--seed``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=default_out, help=f"output folder (default {default_out})")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes (seconds): checks that the study runs end to end")
    p.add_argument("--seed", type=int, default=0, help="base random seed")
    return p.parse_args(argv)


def fmt_num(v, digits: int = 4) -> str:
    """A number for a Markdown table: 4 significant digits, scientific when tiny or huge."""
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def md_table(rows, columns=None) -> str:
    """A Markdown table from a list of dicts (columns: the first row's keys by default)."""
    if not rows:
        return "_(no rows)_\n"
    cols = list(columns or rows[0].keys())

    def cell(v):  # a literal "|" would end the cell
        return (v if isinstance(v, str) else fmt_num(v)).replace("|", "\\|")

    out = ["| " + " | ".join(cell(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        out.append("| " + " | ".join(cell(r.get(c)) for c in cols) + " |")
    return "\n".join(out) + "\n"


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return f if math.isfinite(f) else str(f)
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, (np.bool_,)):
        return bool(o)
    return o


class Report:
    """A Markdown report with figures, written into ``out``.

    ``add`` appends Markdown text, ``table`` a table of dict rows, ``figure`` saves a
    matplotlib figure as PNG and links it, ``verdict`` adds a row to the
    "paper vs measured" table that :meth:`write` puts at the top.
    """

    def __init__(self, out, title: str, paper: str, command: str, smoke: bool):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.title, self.paper, self.command, self.smoke = title, paper, command, smoke
        self.parts: list = []
        self.verdicts: list = []
        self.results: dict = {}
        self.figures: list = []
        self.t0 = time.time()

    def add(self, text: str):
        self.parts.append(text.strip("\n") + "\n")

    def table(self, rows, columns=None, caption: str | None = None):
        if caption:
            self.parts.append(f"**{caption}**\n")
        self.parts.append(md_table(rows, columns))

    def figure(self, fig, name: str, caption: str):
        path = self.out / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        self.figures.append(path.name)
        self.parts.append(f"![{caption}]({path.name})\n\n*{caption}*\n")

    def verdict(self, claim: str, paper: str, measured: str, agrees):
        """One claim: what the paper says, what this run measured, and whether they agree
        (``True``/``False``, or a string such as ``"partly"``)."""
        v = agrees if isinstance(agrees, str) else ("agrees" if agrees else "disagrees")
        self.verdicts.append({"claim": claim, "paper": paper, "measured here": measured,
                              "verdict": v})

    def write(self) -> Path:
        size = "smoke (tiny sizes: numbers are noisy)" if self.smoke else "full"
        head = [f"# {self.title}\n",
                f"Paper: {self.paper}\n",
                f"Command: `{self.command}` (size: {size}; "
                f"run time {time.time() - self.t0:.1f} s on this machine)\n",
                "## Paper vs measured\n",
                md_table(self.verdicts, ["claim", "paper", "measured here", "verdict"]),
                "All measured numbers come from this run; nothing is copied from the paper "
                "except the quoted claims.\n"]
        text = "\n".join(head) + "\n" + "\n".join(self.parts)
        (self.out / "report.md").write_text(text)
        (self.out / "results.json").write_text(json.dumps(_jsonable(
            {"title": self.title, "smoke": self.smoke, "verdicts": self.verdicts,
             "results": self.results, "figures": self.figures}), indent=1))
        return self.out / "report.md"


def command_line(script: str, argv) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", f"analysis/{script}"] + [str(a) for a in args])


# ---------------------------------------------------------------------------------------
# Synthetic language and a tiny GPT
# ---------------------------------------------------------------------------------------

class MarkovText:
    """An order-2 Markov language over ``vocab`` tokens with one dominant continuation.

    For each context ``(a, b)`` one next token has probability ``p_main``; the rest is
    spread over a few alternatives. The exact most-likely continuation of any prompt is
    known (:meth:`greedy`), which gives greedy decoding a right answer to be judged against.
    """

    def __init__(self, vocab: int = 24, p_main: float = 0.8, alts: int = 3, seed: int = 0):
        rng = np.random.default_rng(10_000 + seed)
        self.vocab = vocab
        self.main = rng.integers(0, vocab, size=(vocab, vocab))
        P = np.zeros((vocab, vocab, vocab))
        for a in range(vocab):
            for b in range(vocab):
                alt = rng.choice(vocab, size=alts, replace=False)
                P[a, b, alt] += (1 - p_main) / alts
                P[a, b, self.main[a, b]] += p_main
        self.P = P
        self.C = np.cumsum(P, axis=-1)

    def sample(self, n: int, length: int, seed: int = 0) -> np.ndarray:
        """``n`` sequences of ``length`` tokens."""
        rng = np.random.default_rng(seed)
        x = np.empty((n, length), dtype=np.int64)
        x[:, :2] = rng.integers(0, self.vocab, size=(n, 2))
        for t in range(2, length):
            u = rng.random(n)[:, None]
            c = self.C[x[:, t - 2], x[:, t - 1]]
            x[:, t] = np.minimum((u > c).sum(-1), self.vocab - 1)
        return x

    def greedy(self, prompt, steps: int) -> list:
        """The exact most-likely continuation (argmax of the true next-token law)."""
        s = list(prompt)
        for _ in range(steps):
            s.append(int(np.argmax(self.P[s[-2], s[-1]])))
        return s[len(prompt):]

    def entropy(self) -> float:
        """Mean next-token entropy (nats): the best achievable cross-entropy."""
        P = self.P.reshape(-1, self.vocab)
        return float(np.mean(-(P * np.log(np.where(P > 0, P, 1))).sum(-1)))


def _torch():
    import torch
    torch.set_num_threads(1)
    return torch


def make_gpt(vocab: int, d: int = 32, heads: int = 2, layers: int = 2, ctx: int = 32, seed: int = 0):
    """A tiny GPT (pre-LN, causal attention written with explicit matmuls in a parameter-free
    ``core`` submodule, so policies can target the attention products alone with the
    override pattern ``"*.core"``)."""
    torch = _torch()
    nn = torch.nn

    class AttnCore(nn.Module):
        """softmax(q kᵀ / √d + causal mask) v: the attention products, nothing else."""

        def forward(self, q, k, v):
            T = q.shape[-2]
            s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
            mask = torch.ones(T, T, dtype=torch.bool).triu(1)
            s = s.masked_fill(mask, float("-inf"))
            return torch.softmax(s, dim=-1) @ v

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
            self.core = AttnCore()

        def forward(self, x):
            B, T, D = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
            q, k, v = (t.reshape(B, T, heads, D // heads).transpose(1, 2) for t in (q, k, v))
            a = self.core(q, k, v).transpose(1, 2).reshape(B, T, D)
            x = x + self.proj(a)
            return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(vocab, d)
            self.pos = nn.Parameter(0.02 * torch.randn(ctx, d))
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.ln = nn.LayerNorm(d)
            self.head = nn.Linear(d, vocab, bias=False)

        def forward(self, idx):
            x = self.tok(idx) + self.pos[: idx.shape[1]]
            for b in self.blocks:
                x = b(x)
            return self.head(self.ln(x))

    torch.manual_seed(seed)
    return GPT()


def make_mlp(d_in: int, hidden: int, d_out: int, depth: int = 2, seed: int = 0):
    """A plain MLP (Linear-GELU stack)."""
    torch = _torch()
    torch.manual_seed(seed)
    layers, w = [], d_in
    for _ in range(depth):
        layers += [torch.nn.Linear(w, hidden), torch.nn.GELU()]
        w = hidden
    layers.append(torch.nn.Linear(w, d_out))
    return torch.nn.Sequential(*layers)


def _ctx(policy, model):
    if policy is None:
        return contextlib.nullcontext()
    import fpsim.torch as ft
    return ft.emulate(policy, model=model)


def lm_loss(model, x, policy=None):
    """Mean next-token cross-entropy of ``model`` on token batch ``x`` (numpy or tensor)."""
    torch = _torch()
    x = torch.as_tensor(x)
    with _ctx(policy, model):
        logits = model(x[:, :-1])
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                             x[:, 1:].reshape(-1))


def train_lm(model, text: MarkovText, steps: int, *, lr: float = 3e-3, batch: int = 16,
             length: int = 24, policy=None, seed: int = 0, log_every: int = 0, callback=None):
    """Train with AdamW on fresh Markov batches (optionally under an emulation policy).

    Returns the per-step losses (a NaN/inf loss stops training: the run diverged).
    ``callback(step, model)`` runs every ``log_every`` steps (e.g. to track sharpness).
    """
    torch = _torch()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for s in range(steps):
        x = text.sample(batch, length, seed=seed * 100_003 + s)
        loss = lm_loss(model, x, policy)
        lv = float(loss.detach())
        losses.append(lv)
        if not math.isfinite(lv):
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if callback is not None and log_every and (s + 1) % log_every == 0:
            callback(s + 1, model)
    return np.array(losses)


def eval_lm(model, x, policy=None) -> dict:
    """Loss and next-token accuracy (vs the data) of ``model`` on ``x``, no gradients."""
    torch = _torch()
    x = torch.as_tensor(x)
    with torch.no_grad(), _ctx(policy, model):
        logits = model(x[:, :-1])
    logits = logits.float()
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
    acc = (logits.argmax(-1) == x[:, 1:]).float().mean()
    return {"loss": float(loss), "acc": float(acc), "logits": logits.numpy().astype(np.float64)}


def trained_gpt(text: MarkovText, steps: int, *, d=32, layers=2, heads=2, ctx=32, seed=0, lr=3e-3):
    """A TinyGPT trained plainly (fp32) on ``text``; returns ``(model, losses)``."""
    m = make_gpt(text.vocab, d=d, heads=heads, layers=layers, ctx=ctx, seed=seed)
    losses = train_lm(m, text, steps, lr=lr, seed=seed)
    m.eval()
    return m, losses
