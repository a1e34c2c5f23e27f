"""Make the figures of docs/analysis.md (PNG, next to this script) and print its tables.

    python docs/img/make_analysis_figures.py

Every example is small (CPU, well under a minute) and seeded, so reruns give the same output.
"""

from __future__ import annotations

import contextlib
import pathlib
import sys

import numpy as np

import fpsim
import fpsim.analysis as fa

HERE = pathlib.Path(__file__).resolve().parent


def save(fig, name):
    fig.savefig(HERE / name, dpi=110)
    print(f"wrote docs/img/{name}")


# -- 1. errors and formats ----------------------------------------------------------------
def formats_section():
    fmts = ["e2m1", "e3m2", "e2m3", "e4m3", "e5m2"]
    save(fa.plot_value_grid(fmts + ["nf4", "int4"]), "analysis_value_grid.png")
    save(fa.plot_relative_precision(["e4m3", "e5m2", "fp16", "bf16"], lo=2.0**-20, hi=2.0**17),
         "analysis_relative_precision.png")
    save(fa.plot_dynamic_range(fmts + ["fp16", "bf16", "int8"]), "analysis_dynamic_range.png")
    print(fa.compare_formats(["e4m3", "e5m2", "e3m4", "bf16"]).to_markdown(), "\n")
    h = fa.error_histogram("e4m3", dist="student-t", kind="ulp", n=100_000)
    save(h.plot(), "analysis_error_histogram.png")
    print(h.stats.to_markdown(), "\n")
    c = fa.clip_search(fa.sample("laplace", 20_000, seed=0), "int4")
    save(c.plot(), "analysis_clip_search.png")
    print(c.to_markdown(), "\n")


# -- 2. reproducibility drift ---------------------------------------------------------------
def toy_decoder(seed=0, V=64, D=32, K=512, n=48, T=40):
    """A tiny random recurrent 'language model' whose output projection is a split-K GEMV."""
    rng = np.random.default_rng(seed)
    E = rng.standard_normal((V, D))
    R = rng.standard_normal((D, D)) * (0.9 / np.sqrt(D))
    U = rng.standard_normal((D, K)) / np.sqrt(D)
    W = rng.standard_normal((K, V)) * (3.0 / np.sqrt(K))
    prompts = rng.integers(1, V, n)
    EOS = 0

    def run(cfg):
        prec = cfg["precision"]
        fmt = "fp32" if prec == "layercast" else prec
        # LayerCast: weights stored in bf16, every computation in fp32
        Wq = fpsim.quantize(W, "bf16" if prec == "layercast" else fmt)
        chunks = {1: 1, 8: 4, 32: 16}[cfg["batch_size"]]  # bigger batch -> more split-K
        s = np.zeros((n, D))
        tok = prompts.copy()
        alive = np.ones(n, bool)
        toks = [[] for _ in range(n)]
        top1 = [[] for _ in range(n)]
        first_logits = None
        for _ in range(T):
            s = np.tanh(E[tok] + s @ R)
            h = fpsim.quantize(np.tanh(s @ U), fmt)
            acc = None
            for idx in np.array_split(np.arange(K), chunks):  # partial sums rounded to fmt
                part = fpsim.quantize(h[:, idx] @ Wq[idx], fmt)
                acc = part if acc is None else fpsim.quantize(acc + part, fmt)
            logits = acc
            if first_logits is None:
                first_logits = logits
            z = np.exp(logits - logits.max(1, keepdims=True))
            p = z.max(1) / z.sum(1)
            tok = np.argmax(logits, 1)
            for i in np.flatnonzero(alive):
                toks[i].append(int(tok[i]))
                top1[i].append(float(p[i]))
            alive &= tok != EOS
            if not alive.any():
                break
        return {"tokens": toks, "top1_prob": top1, "logits": first_logits}

    return run


def drift_section():
    run = toy_decoder()
    ref = run({"precision": "fp64", "batch_size": 1})["tokens"]
    judge = lambda i, t: t[-8:] == ref[i][-8:]  # noqa: E731  "correct": same final answer
    configs = fa.drift_configs(batch_sizes=(1, 8, 32), precisions=("bf16", "fp16", "fp32", "layercast"))
    rep = fa.drift(run, configs, judge=judge, group_by="precision")
    save(rep.plot(), "analysis_drift.png")
    print(rep.to_markdown(), "\n")


# -- 3. error propagation and 4. sharpness (torch) ------------------------------------------
def policy_or_standin(name, fmt):
    """The fpsim.torch profile when available, else a stand-in rounding Linear inputs/weights."""
    import torch

    try:
        import fpsim.torch as ft

        with ft.emulate(name):
            torch.nn.Linear(2, 2)(torch.ones(1, 2))
        return name
    except Exception as e:  # pragma: no cover - older fpsim.torch
        print(f"(fpsim.torch profile {name!r} unavailable: {e}; using a stand-in)", file=sys.stderr)

    @contextlib.contextmanager
    def standin():
        orig = torch.nn.functional.linear

        def q(t):
            return torch.from_numpy(fpsim.quantize(t.detach().double().numpy(), fmt)).to(t.dtype) + (t - t.detach())

        torch.nn.functional.linear = lambda x, w, b=None: orig(q(x), q(w), b)
        try:
            yield
        finally:
            torch.nn.functional.linear = orig

    return standin


def propagation_section():
    import torch

    torch.manual_seed(0)
    layers = []
    for _ in range(6):
        layers += [torch.nn.Linear(64, 64), torch.nn.GELU()]
    net = torch.nn.Sequential(*layers, torch.nn.Linear(64, 10))
    x = torch.randn(256, 64)
    rep = fa.propagation(net, x, policy_or_standin("mxfp4", "e2m1"))
    save(rep.plot(), "analysis_propagation.png")
    print(rep.to_markdown(), "\n", rep.summary(), "\n")


def sharpness_section():
    import torch

    torch.manual_seed(0)
    X = torch.randn(256, 8)
    Y = torch.sin(X @ torch.randn(8, 1))
    net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(X), Y).backward()
        opt.step()
    loss = torch.nn.MSELoss()
    rows = []
    for pol in (None, "bf16", "mxfp4"):
        for meth, opts in (("hessian_top", {"iters": 100}), ("hutchinson_trace", {"samples": 100}),
                           ("keskar", {"epsilon": 1e-3})):
            r = fa.sharpness(net, loss, (X, Y), meth, policy=pol, **opts)
            rows.append({"policy": pol or "plain", "method": meth, "value": r.value,
                         "loss": r.details["loss"]})
    print(fa.to_markdown(rows), "\n")
    land = fa.sharpness(net, loss, (X, Y), "landscape", dims=2, steps=21, radius=1.0)
    save(land.plot(), "analysis_landscape.png")


# -- 5. sweeps --------------------------------------------------------------------------------
def clip_gain(fmt, dist, seed):
    x = fa.sample(dist, 5000, seed=seed)
    r = fa.clip_search(x, fmt, n_grid=32)
    return {"sqnr_gain_db": 10 * np.log10(r.mse_noclip / r.mse), "clip_over_amax": r.clip / r.amax}


def sweep_section(tmp):
    res = fa.sweep(clip_gain, {"fmt": ["int4", "e2m1", "e3m2", "int8"], "dist": ["normal", "laplace", "student-t"],
                               "seed": [0, 1, 2]}, path=tmp / "clip.jsonl", progress=False)
    save(res.plot("dist", "sqnr_gain_db", hue="fmt"), "analysis_sweep.png")


if __name__ == "__main__":
    import tempfile

    formats_section()
    drift_section()
    propagation_section()
    sharpness_section()
    with tempfile.TemporaryDirectory() as d:
        sweep_section(pathlib.Path(d))
