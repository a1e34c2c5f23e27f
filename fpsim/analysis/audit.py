"""Deployment audit: the same model under several deployments - batch size, tensor
parallelism, GPU type, dtype (:class:`fpsim.torch.Deployment`) - each compared with its own
dtype's batch-1, tp-1 run (:func:`deployment_audit`); the metrics are those of
:mod:`fpsim.analysis.drift`.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field

import numpy as np

from ._common import Result, new_figure
from .drift import div_index, drift, greedy_runner
from .sweep import sweep

__all__ = ["deployment_audit", "DeploymentAudit", "deployment_configs", "plot_deployment_audit"]


def deployment_configs(*, dtypes=("bf16", "fp32", "layercast"), batch_sizes=(1, 2, 4, 8),
                       tps=(1, 2, 4, 8), gpus=("h100",), full=False) -> list:
    """The deployments an audit runs: for each dtype the baseline (first batch size, first
    tp, first GPU), then each other batch size, tp and GPU changed one at a time (``full``:
    the whole cartesian product).

    >>> [(c["batch_size"], c["tp"]) for c in deployment_configs(dtypes=("bf16",), batch_sizes=(1, 4), tps=(1, 2))]
    [(1, 1), (4, 1), (1, 2)]
    """
    for nm, v in (("dtypes", dtypes), ("batch_sizes", batch_sizes), ("tps", tps), ("gpus", gpus)):
        if not v:
            raise ValueError(f"deployment_configs: {nm} is empty")
    out = []
    for dt in dtypes:
        if full:
            pts = itertools.product(gpus, batch_sizes, tps)
        else:
            b0, t0, g0 = batch_sizes[0], tps[0], gpus[0]
            pts = [(g0, b0, t0)] + [(g0, b, t0) for b in batch_sizes[1:]] + \
                  [(g0, b0, t) for t in tps[1:]] + [(g, b0, t0) for g in gpus[1:]]
        out += [{"dtype": dt, "gpu": g, "batch_size": int(b), "tp": int(t)} for g, b, t in pts]
    return out


def _audit_point(dtype, gpu, batch_size, tp, *, model, prompts, max_new_tokens, eos, options):
    """One deployment's greedy run (module level: picklable for processes and Dask)."""
    import fpsim.torch as ft
    dep = ft.Deployment(gpu, dtype, tp=tp, **options)
    run = greedy_runner(model, prompts, max_new_tokens=max_new_tokens, eos=eos, policy_key="ctx")
    out = run({"batch_size": batch_size, "ctx": lambda: ft.emulate(dep, model=model)})
    return {"tokens": out["tokens"], "top1_prob": out["top1_prob"], "logits": out["logits"].tolist()}


def _check_deployments(cfgs, options):
    """Build every deployment once before any run, so that a bad option or a dtype a GPU
    lacks (fp8 on an A100) fails at once, in this process, not on a worker mid-grid."""
    import fpsim.torch as ft
    bad = []
    for c in cfgs:
        try:
            ft.Deployment(c["gpu"], c["dtype"], tp=c["tp"], **options)
        except (TypeError, ValueError) as e:
            bad.append(f"{c['dtype']} on {c['gpu']} (tp={c['tp']}): {e}")
    if bad:
        raise ValueError("deployment_audit: some deployments of the grid cannot be built:\n  "
                         + "\n  ".join(dict.fromkeys(bad)))


def _top1_diff(pa, pb, d):
    """max |Δ top-1 probability| over every prompt's steps before its outputs diverge (any
    bit that changed in the logits of any step shows here)."""
    m = 0.0
    for x, y, dv in zip(pa, pb, d):
        n = min(len(x), len(y)) if dv is None else min(dv + 1, len(x), len(y))
        if n:
            m = max(m, float(np.max(np.abs(np.asarray(x[:n]) - np.asarray(y[:n])))))
    return m


def _config_label(c, base):
    diff = [f"{k}={c[k]}" for k in ("batch_size", "tp", "gpu") if c[k] != base[k]]
    return ", ".join(diff) if diff else "baseline"


@dataclass(frozen=True)
class DeploymentAudit(Result):
    """Drift of greedy outputs across deployments, each against its dtype's baseline.

    ``rows``: one record per deployment (``div_rate`` = prompts whose output differs from
    the baseline's, ``first_div`` the mean first differing token among them, accuracy,
    length change, first-step top-1 flips and logit differences, ``max_top1_diff`` the
    largest change of a top-1 probability at any step up to the divergence); ``groups``: one record per
    dtype (``Std@Acc`` and the other metrics of :func:`drift` over that dtype's
    deployments); ``div``: (dtype, label) -> per-prompt Div_Index against the baseline.
    """

    rows: tuple
    groups: tuple
    div: dict = field(repr=False)
    max_new_tokens: int = 0

    def to_records(self) -> list:
        return [dict(r) for r in self.rows]

    def group_records(self) -> list:
        return [dict(r) for r in self.groups]

    def plot(self):
        """Where outputs first diverge (:func:`plot_deployment_audit`)."""
        return plot_deployment_audit(self)


def plot_deployment_audit(audit: DeploymentAudit):
    """Two panels: the share of prompts whose greedy output has diverged from the baseline
    by each token position (one line per dtype: a line on 0 is no drift), and the
    divergence rate of every deployment as an annotated grid (0 written as 0).

    >>> a = DeploymentAudit(({"dtype": "bf16", "config": "tp=2", "div_rate": 0.5},), (),
    ...                     {("bf16", "tp=2"): [1, None]}, 4)
    >>> len(plot_deployment_audit(a).axes) >= 2
    True
    """
    fig, ax = new_figure(1, 2, figsize=(12, 4.2))
    a0, a1 = ax[0]
    n = max(1, audit.max_new_tokens)
    dtypes = list(dict.fromkeys(r["dtype"] for r in audit.rows))
    pos = np.arange(n)
    for dt in dtypes:
        ds = [d for (g, lab), d in audit.div.items() if g == dt and lab != "baseline"]
        pairs = [x for d in ds for x in d]
        if not pairs:
            continue
        frac = [100 * np.mean([x is not None and x <= t for x in pairs]) for t in pos]
        a0.step(pos, frac, where="post", marker="o", ms=3, label=f"{dt} ({len(ds)} deployments vs baseline)")
    a0.set(title="greedy outputs diverged from the baseline (batch 1, tp 1)",
           xlabel="token position", ylabel="% of (deployment, prompt) pairs", ylim=(-3, 103))
    a0.legend(fontsize="small")
    labels = list(dict.fromkeys(r["config"] for r in audit.rows if r["config"] != "baseline"))
    grid = np.full((len(labels), len(dtypes)), np.nan)
    for r in audit.rows:
        if r["config"] in labels:
            grid[labels.index(r["config"]), dtypes.index(r["dtype"])] = 100 * r["div_rate"]
    if labels:
        a1.imshow(np.nan_to_num(grid, nan=0.0), cmap="Reds", vmin=0, vmax=100, aspect="auto")
        for i in range(len(labels)):
            for j in range(len(dtypes)):
                v = grid[i, j]
                a1.text(j, i, "–" if np.isnan(v) else f"{v:.0f}%", ha="center", va="center",
                        color="white" if v > 60 else "black", fontsize="small")
        a1.set_xticks(range(len(dtypes)), dtypes)
        a1.set_yticks(range(len(labels)), labels)
    a1.set(title="prompts whose output differs from the baseline")
    return fig


def deployment_audit(model, prompts, *, judge=None, max_new_tokens: int = 16, eos=None,
                     dtypes=("bf16", "fp32", "layercast"), batch_sizes=(1, 2, 4, 8),
                     tps=(1, 2, 4, 8), gpus=("h100",), full=False, executor="serial",
                     progress: bool = False, **options) -> DeploymentAudit:
    """Greedy-decode ``prompts`` with ``model`` under a grid of :class:`fpsim.torch.Deployment`
    s and measure the drift of each against the baseline of the same dtype (the first
    batch size, tp and GPU) -- like with like, as in "Give Me FP32 or Give Me Death?".

    ``judge(i, tokens)`` gives correctness (a bool or a score in [0, 1]) for ``Std@Acc``;
    ``options`` go to every Deployment (``kernels=``, ``sms=``, ``allreduce=``, ...);
    ``executor`` is that of :func:`fpsim.analysis.sweep` (``"serial"``, ``"processes"``,
    or a ``dask.distributed.Client`` to run the deployments on a cluster). The model must
    accept ``(batch, length)`` token ids (see :func:`greedy_runner`).

    >>> import torch, fpsim.torch as ft
    >>> _ = torch.manual_seed(0)
    >>> lm = ft.TinyGPT(vocab=12, d=16, heads=2, layers=1, ctx=8)
    >>> a = deployment_audit(lm, [[1, 2], [3, 4]], max_new_tokens=2, dtypes=("fp32",),
    ...                      batch_sizes=(1, 2), tps=(1,))
    >>> [r["config"] for r in a.to_records()]
    ['baseline', 'batch_size=2']
    """
    cfgs = deployment_configs(dtypes=dtypes, batch_sizes=batch_sizes, tps=tps, gpus=gpus, full=full)
    _check_deployments(cfgs, options)
    ids = [list(map(int, p)) for p in prompts]
    fn = functools.partial(_audit_point, model=model, prompts=ids, max_new_tokens=int(max_new_tokens),
                           eos=eos, options=dict(options))
    res = sweep(fn, cfgs, executor=executor, progress=progress, desc="deployments").to_records()
    runs = {}
    for r in res:
        key = (r["dtype"], r["gpu"], r["batch_size"], r["tp"])
        runs[key] = {"tokens": r["tokens"], "top1_prob": r["top1_prob"], "logits": np.asarray(r["logits"])}
    base = {}
    for c in cfgs:
        base.setdefault(c["dtype"], c)
    names = {}
    for c in cfgs:
        lab = _config_label(c, base[c["dtype"]])
        names[f"{c['dtype']}: {lab}"] = c
    rep = drift(lambda c: runs[(c["dtype"], c["gpu"], c["batch_size"], c["tp"])], names,
                judge=judge, group_by="dtype")
    rows, div = [], {}
    crec = {r["config"]: r for r in rep.config_records()}
    for nm, c in names.items():
        b = runs[tuple(base[c["dtype"]][k] for k in ("dtype", "gpu", "batch_size", "tp"))]
        mine = runs[(c["dtype"], c["gpu"], c["batch_size"], c["tp"])]
        d = [div_index([x, y]) for x, y in zip(b["tokens"], mine["tokens"])]
        lab = _config_label(c, base[c["dtype"]])
        div[(c["dtype"], lab)] = d
        dv = [x for x in d if x is not None]
        cr = crec[nm]
        rows.append({"dtype": c["dtype"], "config": lab, "gpu": c["gpu"], "batch_size": c["batch_size"],
                     "tp": c["tp"], "accuracy": cr["accuracy"], "div_rate": len(dv) / len(d),
                     "first_div": float(np.mean(dv)) if dv else None,
                     "len_change": float(np.mean([abs(len(x) - len(y)) for x, y in
                                                  zip(b["tokens"], mine["tokens"])])),
                     "flip_rate": cr["flip_rate"], "max_logit_diff": cr["max_logit_diff"],
                     "mean_logit_diff": cr["mean_logit_diff"],
                     "max_top1_diff": _top1_diff(b["top1_prob"], mine["top1_prob"], d)})
    groups = []
    for g in rep.to_records():
        g = dict(g)
        g["dtype"] = g.pop("group")
        groups.append(g)
    return DeploymentAudit(tuple(rows), tuple(groups), div, int(max_new_tokens))
