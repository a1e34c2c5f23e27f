"""Reproducibility drift: the same model under several configurations (SPEC §6).

After "Give Me FP32 or Give Me Death? Challenges and Solutions for Reproducible Reasoning"
(2025): batch size (→ split-K reductions), accumulation order, GPU / tensor-core profile and
precision change the rounding of every reduction; greedy decoding then diverges. This module
measures that drift from the outputs of ``run(config)`` for each config:

``Std@Acc``
    standard deviation of accuracy across configs;
``avg_std_len``
    per-example standard deviation of output length across configs, averaged;
``Div_Index``
    first token position at which the greedy outputs of the configs differ
    (``avg_div_index`` over the examples that diverge, ``div_rate`` the fraction that do);
``std_top1_prob``
    per-position std (across configs) of the top-1 probability before the divergence,
    averaged over positions and examples;
``max_logit_diff`` / ``mean_logit_diff`` / ``flip_rate``
    ``|Δ logits|`` and the fraction of top-1 (argmax) flips against a reference config.

Configs can be grouped (``group_by="precision"``) so each precision gets its own row, as in
the paper's tables; LayerCast (16-bit stored weights, fp32 compute; fpsim.torch profile
``"layercast"``) is just one more precision, the baseline that should drift least.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ._common import Result, check_context, new_figure, policy_context

__all__ = ["drift", "DriftReport", "drift_configs", "greedy_runner", "div_index", "std_at_acc", "length_std",
           "top1_prob_std", "logit_diff", "flip_rate", "plot_drift"]


# ---------------------------------------------------------------------------------------
# Metrics on hand-made data
# ---------------------------------------------------------------------------------------

def div_index(seqs):
    """First position at which the token sequences differ; ``None`` if all are identical.

    A sequence that ends while another continues diverges at its length.

    >>> div_index([[5, 1, 2], [5, 1, 3]]), div_index([[1, 2], [1, 2, 9]]), div_index([[4], [4]])
    (2, 2, None)
    """
    seqs = [list(np.asarray(s).ravel().tolist()) for s in seqs]
    if len(seqs) < 2:
        return None
    n = min(len(s) for s in seqs)
    for i in range(n):
        t = seqs[0][i]
        if any(s[i] != t for s in seqs[1:]):
            return i
    if any(len(s) != len(seqs[0]) for s in seqs):
        return n
    return None


def std_at_acc(accuracies, ddof: int = 0) -> float:
    """``Std@Acc``: standard deviation of accuracy across configs (``ddof`` as numpy).

    >>> std_at_acc([0.5, 0.7])
    0.09999999999999998
    """
    a = np.asarray(accuracies, dtype=np.float64)
    if a.size == 0:
        raise ValueError("std_at_acc of no accuracies")
    if a.size > ddof and np.all(a == a[0]):  # exactly 0, not np.std's rounding residue
        return 0.0
    return float(np.std(a, ddof=ddof)) if a.size > ddof else float("nan")


def length_std(seqs, ddof: int = 0) -> float:
    """Std across configs of one example's output length.

    >>> length_std([[1, 2, 3], [1, 2, 3, 4, 5]])
    1.0
    """
    return float(np.std([len(s) for s in seqs], ddof=ddof))


def top1_prob_std(probs, upto=None, ddof: int = 0) -> float:
    """Mean over positions ``< upto`` of the std (across configs) of the top-1 probability.

    ``probs``: one 1-D array per config (top-1 probability at each generated position).
    ``upto`` defaults to the shortest length; NaN if no position qualifies.

    >>> round(top1_prob_std([[0.9, 0.6, 0.1], [0.9, 0.8, 0.9]], upto=2), 12)
    0.05
    """
    ps = [np.asarray(p, dtype=np.float64).ravel() for p in probs]
    n = min(p.size for p in ps)
    if upto is not None:
        n = min(n, int(upto))
    if n == 0:
        return float("nan")
    m = np.stack([p[:n] for p in ps])
    return float(np.mean(np.std(m, axis=0, ddof=ddof)))


def _logit_pair(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"logits must have the same shape in every config, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("logits are empty")
    return a, b


def logit_diff(a, b):
    """``(max |a - b|, mean |a - b|)`` of two logit arrays.

    >>> logit_diff([[1.0, 2.0]], [[1.5, 2.0]])
    (0.5, 0.25)
    """
    a, b = _logit_pair(a, b)
    d = np.abs(a - b)
    return float(np.max(d)), float(np.mean(d))


def flip_rate(a, b) -> float:
    """Fraction of positions whose top-1 (argmax over the last axis) differs.

    >>> flip_rate([[0.0, 1.0], [2.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]])
    0.5
    """
    a, b = _logit_pair(a, b)
    return float(np.mean(np.argmax(a, axis=-1) != np.argmax(b, axis=-1)))


def _softmax_max(logits):
    z = np.asarray(logits, dtype=np.float64)
    z = z - np.max(z, axis=-1, keepdims=True)
    e = np.exp(z)
    return np.max(e, axis=-1) / np.sum(e, axis=-1)


# ---------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------

def drift_configs(*, batch_sizes=(1, 8, 32), precisions=("bf16", "fp16", "fp32", "layercast"),
                  **axes) -> list:
    """The cartesian product of configuration axes as a list of dicts.

    Extra axes (``accumulation=("sequential", "pairwise")``, ``profile=(...)``) are added
    as keyword arguments; each must be a non-empty sequence.

    >>> drift_configs(batch_sizes=(1, 2), precisions=("bf16",))
    [{'batch_size': 1, 'precision': 'bf16'}, {'batch_size': 2, 'precision': 'bf16'}]
    """
    all_axes = {"batch_size": tuple(batch_sizes), "precision": tuple(precisions)}
    all_axes.update({k: tuple(v) for k, v in axes.items()})
    for k, v in all_axes.items():
        if not v:
            raise ValueError(f"axis {k!r} is empty")
    keys = list(all_axes)
    return [dict(zip(keys, vals)) for vals in itertools.product(*all_axes.values())]


def greedy_runner(model, prompts, *, max_new_tokens: int = 32, eos=None, policy_key: str = "precision"):
    """A ``run(config)`` for :func:`drift` that greedy-decodes a torch language model.

    ``model(ids)`` takes a ``(batch, length)`` LongTensor and returns logits
    ``(batch, length, vocab)`` or ``(batch, vocab)`` (or an object with ``.logits``). The
    prompts (equal lengths) are processed in batches of ``config["batch_size"]`` (default:
    all at once) under the emulation ``config[policy_key]`` (a fpsim.torch profile name or
    policy, or a callable returning a context manager; missing or ``None``: plain). Each step
    re-runs the whole sequence (no KV cache: for small models). A sequence stops after
    ``eos``. The run returns ``tokens``, ``top1_prob`` and the first step's ``logits``.

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> lm = torch.nn.Sequential(torch.nn.Embedding(10, 8), torch.nn.Linear(8, 10))
    >>> run = greedy_runner(lm, [[1, 2], [3, 4], [5, 6]], max_new_tokens=4)
    >>> out = run({"batch_size": 2})
    >>> len(out["tokens"]), len(out["tokens"][0]), out["logits"].shape
    (3, 4, (3, 10))
    """
    import torch

    ids = torch.as_tensor(prompts) if not isinstance(prompts, torch.Tensor) else prompts
    if ids.dim() != 2 or ids.numel() == 0:
        raise ValueError(f"prompts must be a non-empty (n, length) batch of token ids, got shape {tuple(ids.shape)}")
    if ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"prompts must be integer token ids, got {ids.dtype}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens}: need at least 1")

    def last_logits(x):
        out = model(x)
        out = getattr(out, "logits", out)
        return out[:, -1, :] if out.dim() == 3 else out

    def run(config):
        cfg = config if isinstance(config, Mapping) else {}
        bs = int(cfg.get("batch_size") or ids.shape[0])
        if bs < 1:
            raise ValueError(f"batch_size={bs}: must be >= 1")
        factory = policy_context(cfg.get(policy_key))
        toks, top1, first = [], [], []
        with torch.no_grad():
            for start in range(0, ids.shape[0], bs):
                x = ids[start:start + bs].long()
                alive = torch.ones(x.shape[0], dtype=torch.bool)
                t_out = [[] for _ in range(x.shape[0])]
                p_out = [[] for _ in range(x.shape[0])]
                for step in range(max_new_tokens):
                    with check_context(factory):
                        lg = last_logits(x)
                    lg = lg.detach().double()
                    if step == 0:
                        first.append(lg.cpu().numpy())
                    p = torch.softmax(lg, -1).max(-1).values
                    nxt = lg.argmax(-1)
                    for i in torch.nonzero(alive).flatten().tolist():
                        t_out[i].append(int(nxt[i]))
                        p_out[i].append(float(p[i]))
                    if eos is not None:
                        alive &= nxt != eos
                    if not bool(alive.any()):
                        break
                    x = torch.cat([x, nxt[:, None].to(x.dtype)], 1)
                toks += t_out
                top1 += p_out
        return {"tokens": toks, "top1_prob": top1, "logits": np.concatenate(first, 0)}

    return run


def _config_name(c) -> str:
    if isinstance(c, Mapping):
        return ",".join(f"{k}={v}" for k, v in c.items())
    return str(c)


# ---------------------------------------------------------------------------------------
# Normalised outputs of one run
# ---------------------------------------------------------------------------------------

@dataclass
class _Out:
    logits: object = None
    tokens: object = None
    top1: object = None
    correct: object = None


def _normalise(out, name, judge):
    if isinstance(out, np.ndarray) or hasattr(out, "detach"):
        out = {"logits": out}
    if not isinstance(out, Mapping):
        raise TypeError(
            f"run({name}) returned {type(out).__name__}; return a logits array or a dict with "
            "keys among 'logits', 'tokens', 'top1_prob', 'correct'")
    unknown = set(out) - {"logits", "tokens", "top1_prob", "correct"}
    if unknown:
        raise ValueError(f"run({name}) returned unknown keys {sorted(unknown)}; allowed: "
                         "'logits', 'tokens', 'top1_prob', 'correct'")
    o = _Out()
    if out.get("logits") is not None:
        lg = out["logits"]
        if hasattr(lg, "detach"):  # a torch tensor, without importing torch
            lg = lg.detach().cpu().double().numpy()
        o.logits = np.asarray(lg, dtype=np.float64)
    if out.get("tokens") is not None:
        o.tokens = [list(np.asarray(t).ravel().tolist()) for t in out["tokens"]]
    if out.get("top1_prob") is not None:
        o.top1 = [np.asarray(p, dtype=np.float64).ravel() for p in out["top1_prob"]]
    elif o.tokens is not None and o.logits is not None and o.logits.ndim == 3:
        # per-step logits of the generated tokens: (examples, steps, vocab)
        o.top1 = [_softmax_max(o.logits[i, : len(t)]) for i, t in enumerate(o.tokens)]
    if out.get("correct") is not None:
        o.correct = _scores(out["correct"], name)
    elif judge is not None and o.tokens is not None:
        o.correct = _scores([judge(i, t) for i, t in enumerate(o.tokens)], name)
    if o.logits is None and o.tokens is None:
        raise ValueError(f"run({name}) returned neither logits nor tokens")
    return o


def _scores(v, name):
    """Per-example correctness: bools, or scores in [0, 1] (partial credit)."""
    a = np.asarray(v).ravel()
    if a.dtype == bool:
        return a
    a = a.astype(np.float64)
    if not np.all((a >= 0) & (a <= 1)):
        raise ValueError(f"run({name}): 'correct' / judge values must be bools or scores in [0, 1]")
    return a


# ---------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DriftReport(Result):
    """Drift metrics per group of configs (``rows``) and per config (``config_rows``)."""

    rows: tuple
    config_rows: tuple
    div_indices: dict = field(repr=False)  #: group -> per-example Div_Index (None: no divergence)

    def to_records(self) -> list:
        """One record per group (all configs form one group unless ``group_by`` was given)."""
        return [dict(r) for r in self.rows]

    def config_records(self) -> list:
        """One record per config: accuracy, mean length, logit differences vs the reference."""
        return [dict(r) for r in self.config_rows]

    def plot(self):
        """Three panels: Std@Acc and divergence rate, logit differences, Div_Index histogram."""
        return plot_drift(self)


def plot_drift(report: DriftReport):
    """Figure of a :class:`DriftReport` (see :meth:`DriftReport.plot`).

    >>> r = drift(lambda c: {"tokens": [[1, 2, c]], "correct": [c == 2]}, [2, 3])
    >>> len(plot_drift(r).axes)
    3
    """
    fig, ax = new_figure(1, 3, figsize=(14, 3.8))
    a0, a1, a2 = ax[0]
    groups = [str(r["group"]) for r in report.rows]
    x = np.arange(len(groups))

    def col(k):
        return np.array([np.nan if r.get(k) is None else r[k] for r in report.rows], dtype=float)

    a0.bar(x - 0.2, 100 * col("std_acc"), width=0.4, label="Std@Acc (%)")
    a0.bar(x + 0.2, 100 * col("div_rate"), width=0.4, label="diverged examples (%)")
    a0.set_xticks(x, groups)
    a0.set(title="accuracy spread and divergence", ylabel="%")
    a0.legend(fontsize="small")
    pos = lambda v: np.where(v > 0, v, np.nan)  # noqa: E731  (log axis: 0 = no difference)
    a1.bar(x - 0.2, pos(col("max_logit_diff")), width=0.4, label="max |Δlogit|")
    a1.bar(x + 0.2, pos(col("mean_logit_diff")), width=0.4, label="mean |Δlogit|")
    a1.set_xticks(x, groups)
    a1.set(title="logit differences vs reference", ylabel="|Δ logit|")
    if np.any(pos(col("max_logit_diff")) > 0):
        a1.set_yscale("log")
    a1.legend(fontsize="small")
    for g, d in report.div_indices.items():
        v = [i for i in d if i is not None]
        if v:
            a2.hist(v, bins=min(30, max(v) + 1), alpha=0.5, label=str(g))
    a2.set(title="Div_Index (first divergent token)", xlabel="token position", ylabel="examples")
    if a2.get_legend_handles_labels()[0]:
        a2.legend(fontsize="small")
    else:
        a2.text(0.5, 0.5, "no greedy output diverged", ha="center", va="center", transform=a2.transAxes)
    return fig


def _group_key(group_by, c):
    if group_by is None:
        return "all"
    if callable(group_by):
        return group_by(c)
    if not isinstance(c, Mapping) or group_by not in c:
        raise ValueError(f"group_by={group_by!r}: every config must be a dict with that key; got {c!r}")
    return c[group_by]


def drift(run, configs, *, judge=None, group_by=None, baseline=None, ddof: int = 0) -> DriftReport:
    """Run ``run(config)`` for every config and measure the reproducibility drift.

    Parameters
    ----------
    run : callable
        ``run(config)`` returns either a logits array ``(examples, ..., vocab)`` or a dict
        with some of: ``"logits"``; ``"tokens"`` (one greedy-decoded token sequence per
        example); ``"top1_prob"`` (per example, the top-1 probability at each generated
        step — derived from ``(examples, steps, vocab)`` logits when absent);
        ``"correct"`` (one bool per example).
    configs : sequence or dict
        At least one config (a dict ``name -> config`` names them; see
        :func:`drift_configs`). Configs vary batch size, accumulation, profile, precision.
    judge : callable, optional
        ``judge(example_index, tokens) -> bool`` (or a score in [0, 1]) when ``run`` gives
        no ``"correct"``.
    group_by : str or callable, optional
        Report one row per value of ``config[group_by]`` (e.g. ``"precision"``).
    baseline : optional
        Name (dict key, or position in a list) of the config whose logits are the reference
        for logit differences and flips; default: the first config of each group.
    ddof : int
        Delta degrees of freedom of every std (0: population std).

    Examples
    --------
    >>> runs = {"a": {"tokens": [[1, 2, 3], [4, 5]], "correct": [True, False]},
    ...         "b": {"tokens": [[1, 2, 7, 8], [4, 5]], "correct": [True, True]}}
    >>> r = drift(runs.__getitem__, {"a": "a", "b": "b"}).to_records()[0]
    >>> r["std_acc"], r["avg_std_len"], r["avg_div_index"], r["div_rate"]
    (0.25, 0.25, 2.0, 0.5)
    """
    if not callable(run):
        raise TypeError(f"run must be callable, got {type(run).__name__}")
    if isinstance(configs, Mapping):
        names, cfgs = [str(k) for k in configs], list(configs.values())
    else:
        cfgs = list(configs)
        names = [_config_name(c) for c in cfgs]
    if not cfgs:
        raise ValueError("configs is empty: give at least one configuration")
    if len(set(names)) != len(names):
        names = [f"{i}:{n}" for i, n in enumerate(names)]
    outs = [_normalise(run(c), n, judge) for c, n in zip(cfgs, names)]
    n_ex = {len(o.tokens) if o.tokens is not None else o.logits.shape[0] for o in outs}
    if len(n_ex) != 1:
        raise ValueError(f"configs returned different numbers of examples: {sorted(n_ex)}")
    kinds = {(o.logits is not None, o.tokens is not None) for o in outs}
    if len(kinds) != 1:
        raise ValueError("every config must return the same kinds of output (logits and/or tokens)")

    ref_out = None
    if baseline is not None:
        if isinstance(baseline, int) and not isinstance(configs, Mapping):
            if not 0 <= baseline < len(outs):
                raise ValueError(f"baseline={baseline} is not a config position (0..{len(outs) - 1})")
            ref_out = outs[baseline]
        elif str(baseline) in names:
            ref_out = outs[names.index(str(baseline))]
        else:
            raise ValueError(f"baseline={baseline!r} is not one of the configs: {names}")

    groups: dict = {}
    for i, c in enumerate(cfgs):
        groups.setdefault(_group_key(group_by, c), []).append(i)

    rows, crows, divs = [], [], {}
    for g, idx in groups.items():
        go = [outs[i] for i in idx]
        ref = ref_out if ref_out is not None else go[0]
        row = {"group": g, "configs": len(idx)}
        accs = [float(np.mean(o.correct)) for o in go if o.correct is not None]
        row["mean_acc"] = float(np.mean(accs)) if accs else None
        row["std_acc"] = std_at_acc(accs, ddof) if accs else None
        if go[0].tokens is not None:
            ne = len(go[0].tokens)
            per_ex = [[o.tokens[e] for o in go] for e in range(ne)]
            d = [div_index(s) for s in per_ex]
            divs[g] = d
            row["avg_std_len"] = float(np.mean([length_std(s, ddof) for s in per_ex])) if ne else None
            dv = [x for x in d if x is not None]
            row["div_rate"] = len(dv) / ne if ne else None
            row["avg_div_index"] = float(np.mean(dv)) if dv else None
            if all(o.top1 is not None for o in go):
                st = [top1_prob_std([o.top1[e] for o in go], d[e], ddof) for e in range(ne)]
                st = [s for s in st if np.isfinite(s)]
                row["std_top1_prob"] = float(np.mean(st)) if st else None
            else:
                row["std_top1_prob"] = None
        else:
            row.update(avg_std_len=None, div_rate=None, avg_div_index=None, std_top1_prob=None)
        if go[0].logits is not None:
            cmp = [(logit_diff(o.logits, ref.logits), flip_rate(o.logits, ref.logits))
                   for o in go if o is not ref]
            row["max_logit_diff"] = max((m for (m, _), _ in cmp), default=0.0)
            row["mean_logit_diff"] = float(np.mean([mn for (_, mn), _ in cmp])) if cmp else 0.0
            row["flip_rate"] = float(np.mean([f for _, f in cmp])) if cmp else 0.0
        else:
            row.update(max_logit_diff=None, mean_logit_diff=None, flip_rate=None)
        rows.append(row)
        for i in idx:
            o = outs[i]
            cr = {"config": names[i], "group": g,
                  "accuracy": float(np.mean(o.correct)) if o.correct is not None else None,
                  "mean_length": float(np.mean([len(t) for t in o.tokens])) if o.tokens is not None else None}
            if o.logits is not None:
                cr["max_logit_diff"], cr["mean_logit_diff"] = logit_diff(o.logits, ref.logits)
                cr["flip_rate"] = flip_rate(o.logits, ref.logits)
            crows.append(cr)
    return DriftReport(tuple(rows), tuple(crows), divs)
