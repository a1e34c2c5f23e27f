"""Generate the tour notebooks from the cell sources below (so they stay reviewable).

    python notebooks/_make.py      # rewrites notebooks/*.ipynb, without outputs

Each notebook uses small sizes and runs in well under 30 s; ``tests/test_notebooks.py``
executes all of them (``python -m pytest notebooks --nbmake`` works too).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent

SETUP = """\
import os, sys
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import fpsim"""

NOTEBOOKS = {
    "01_formats_tour": [
        ("md", """\
# A tour of number formats

fpsim describes every format by a small frozen object: floats `eXmY` in several special-value
families, integers, fixed point, dINT, codebooks and block-scaled formats (MX, NVFP4).
This notebook rounds the same data into each and looks at their grids."""),
        ("code", SETUP),
        ("code", """\
for name in ["fp32", "bf16", "fp16", "e5m2", "e4m3", "e3m2", "e2m1", "int4", "dint4"]:
    f = fpsim.as_format(name)
    print(f"{f.name:6s} bits={f.bits:2d} max={f.max:<12g} min>0={f.min_subnormal:<10.3g}",
          f"family={getattr(f, 'family', '-')}")"""),
        ("md", "Small formats list all their values; dINT4 keeps a 'denormal' level `s` next to zero:"),
        ("code", """\
print("e2m1 :", fpsim.as_format("e2m1").values())
print("int4 :", fpsim.as_format("int4").values())
print("dint4:", fpsim.as_format("dint4").values())"""),
        ("md", "Rounding modes and overflow policies (e4m3 saturates by default here; e5m2 overflows to inf):"),
        ("code", """\
x = np.array([0.3, 1.0625, 500.0, -1e-4])
for mode in ["rne", "rtz", "rup", "rdn"]:
    print(mode, fpsim.quantize(x, "e4m3", rounding=mode))
print("stochastic", fpsim.quantize(np.full(8, 1.0625), "e4m3", rounding="stochastic", seed=0))
print("e5m2 overflow:", fpsim.quantize(np.array([1e6]), "e5m2"))"""),
        ("md", "Errors on normal data, per format (`fpsim.analysis.format_errors`):"),
        ("code", """\
import fpsim.analysis as fa
for name in ["bf16", "e4m3", "e5m2", "e2m1"]:
    s = fa.format_errors(name, dist="normal", n=20_000)
    print(f"{name:5s} SQNR={s.sqnr_db:5.1f} dB  mean rel. error={s.mean_rel:.2e}  flushed={s.flushed:.2%}")"""),
        ("code", """\
fig = fa.plot_relative_precision(["bf16", "fp16", "e4m3", "e5m2"])
fig"""),
        ("md", "Block-scaled formats: OCP MX (block 32, E8M0 scale) and NVFP4 (block 16, E4M3 scale):"),
        ("code", """\
rng = np.random.default_rng(0)
w = rng.standard_normal((4, 64)) * np.exp2(rng.integers(-4, 4, (4, 1)))
for name in ["mxfp8_e4m3", "mxfp4", "nvfp4"]:
    q = fpsim.quantize(w, name)
    print(f"{name:11s} rel. error {np.linalg.norm(q - w) / np.linalg.norm(w):.4f}")"""),
    ],
    "02_accumulation_models": [
        ("md", """\
# Accumulation models

The same dot product gives different bits depending on how the hardware adds the products:
order, accumulator width, fused multi-term adders with truncation (tensor cores), split-K.
Every model in `fpsim.accum` is bit-exact and deterministic."""),
        ("code", SETUP),
        ("code", """\
A = fpsim.accum
x = np.array([1.0] + [2.0**-24] * 8)
for m in [A.Sequential("fp32"), A.Pairwise("fp32"), A.Kahan("fp32"), A.Exact("fp32"),
          A.Blocked(4, A.Sequential("fp32"))]:
    print(f"{type(m).__name__:10s} {float(fpsim.sum(x, model=m)):.10f}")"""),
        ("md", "Tensor cores: published parameters (block size `n`, extra alignment bits `neab`):"),
        ("code", """\
for gpu in ["V100", "A100", "H100"]:
    print(gpu, fpsim.hardware.tensor_core(gpu, "fp16"))
print(fpsim.hardware.tensor_core("H100", "e4m3"))"""),
        ("md", "If the captured GPU outputs are available, the models reproduce them bit for bit:"),
        ("code", """\
d = fpsim.hardware.data_dir()
if d is not None and (d / "V100" / "fp16").is_dir():
    for k, r in fpsim.hardware.validate(d / "V100" / "fp16").items():
        print(r)
else:
    print("tensor-core data not found: skipped")"""),
        ("md", "Error growth with the dot-product length K (small sizes):"),
        ("code", """\
import fpsim.analysis as fa  # figures live in fpsim.analysis (the core draws nothing)
models = {"Sequential fp32": A.Sequential("fp32", fma=True),
          "Sequential bf16": A.Sequential("bf16", fma=True),
          "A100 bf16 tensor core": fpsim.hardware.tensor_core("A100", "bf16"),
          "H100 FP8 (13-bit acc.)": fpsim.hardware.tensor_core("H100", "e4m3"),
          "H100 FP8, promoted /128": fpsim.hardware.fp8_promoted("H100")}
fig = fa.plot_error_growth(models, Ks=(64, 256, 1024, 4096), trials=8)
fig"""),
        ("md", "Split-K changes the result bits (this is what batch size does on a GPU):"),
        ("code", """\
rng = np.random.default_rng(1)
a = fpsim.quantize(rng.standard_normal((256, 512)), "bf16")
b = fpsim.quantize(rng.standard_normal(512), "bf16")
seq = fpsim.dot(a, b, model=A.Sequential("fp32", fma=True))
for k in [32, 128]:
    sk = fpsim.dot(a, b, model=A.Blocked(k, A.Sequential("fp32", fma=True)))
    print(f"split-K chunks of {k}: {np.mean(sk != seq):.0%} of results differ, "
          f"max |diff| {np.max(np.abs(sk - seq)):.2e}")"""),
    ],
    "03_reproducibility_audit": [
        ("md", """\
# A reproducibility audit

"Give Me FP32 or Give Me Death?" (2025) showed greedy LLM outputs change with batch size,
GPU and precision. Here a tiny GPT (trained in seconds on a synthetic language) decodes
the same prompts under several emulated configurations, and `fpsim.analysis.drift`
measures how far they drift."""),
        ("code", SETUP + """
sys.path.insert(0, os.path.join(os.getcwd(), "..", "analysis"))
import torch
torch.set_num_threads(1)
from _common import MarkovText, trained_gpt
import fpsim.torch as ft
from fpsim.torch import profiles
from fpsim.analysis import drift, greedy_runner"""),
        ("code", """\
text = MarkovText(vocab=24, p_main=0.6)
model, losses = trained_gpt(text, 40, d=32)
prompts = text.sample(4, 8, seed=3)
print(f"final training loss {losses[-5:].mean():.3f}")"""),
        ("md", "Configurations: precision × accumulation (sequential fp32 vs split-K vs an H100 tensor core):"),
        ("code", """\
A = fpsim.accum
accums = {"seq": A.Sequential("fp32", fma=True), "splitK16": A.Blocked(16, A.Sequential("fp32", fma=True))}
configs = {}
for prec in ["bf16", "fp32"]:
    for k, m in accums.items():
        configs[f"{prec}/{k}"] = {"precision": profiles.get(prec).replace(accum=m), "group": prec}
configs["bf16/H100"] = {"precision": profiles.get("bf16").replace(accum=fpsim.hardware.tensor_core("H100", "bf16")),
                        "group": "bf16"}
rep = drift(greedy_runner(model, prompts, max_new_tokens=4), configs, group_by="group")
print(rep.to_markdown())"""),
        ("code", """\
for r in rep.config_records():
    print(r["config"], "max |Δlogit| =", r["max_logit_diff"])"""),
    ],
    "04_training_sharpness": [
        ("md", """\
# Training under emulation, with sharpness

A tiny GPT is trained under an emulation policy (GEMM inputs truncated to E8M3, as in
"To FP8 and Back Again"), and the sharpness of its loss is measured with
`fpsim.analysis.sharpness` (top Hessian eigenvalue and a 1-D loss slice)."""),
        ("code", SETUP + """
sys.path.insert(0, os.path.join(os.getcwd(), "..", "analysis"))
import torch
torch.set_num_threads(1)
from _common import MarkovText, make_gpt, train_lm
from fpsim.torch import Policy
from fpsim.analysis import sharpness"""),
        ("code", """\
text = MarkovText(vocab=24)
policies = {"fp32": None,
            "e8m3 (truncated)": Policy(weight="e8m3", activation="e8m3", gradient="e8m3",
                                       rounding="rtz", grad_rounding="rtz")}
models, curves = {}, {}
for name, pol in policies.items():
    m = make_gpt(24, d=16, seed=0)
    curves[name] = train_lm(m, text, 15, lr=1e-2, policy=pol)
    models[name] = m
    print(f"{name:18s} loss {curves[name][0]:.3f} -> {curves[name][-1]:.3f}")"""),
        ("code", """\
xb = torch.as_tensor(text.sample(8, 16, seed=99))
loss_fn = lambda logits, y: torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
for name, m in models.items():
    r = sharpness(m, loss_fn, (xb[:, :-1], xb[:, 1:]), "hessian_top", iters=5)
    print(f"{name:18s} top Hessian eigenvalue ≈ {r.value:.3f}")"""),
        ("code", """\
r = sharpness(models["e8m3 (truncated)"], loss_fn, (xb[:, :-1], xb[:, 1:]), "landscape", steps=7, radius=0.5)
r.plot()"""),
    ],
    "05_hardware_whatif": [
        ("md", """\
# Hardware what-if: accumulator width × block size

What if an FP8 tensor core kept more (or fewer) accumulator bits, or added more products per
fused block? `fpsim.accum.FusedBlock(n, neab)` makes every combination a bit-exact model:
`n` products per fused addition, `23 + neab` accumulator fraction bits (H100 FP8: n = 32,
neab = −10, i.e. 13 bits)."""),
        ("code", SETUP),
        ("code", """\
rng = np.random.default_rng(0)
K, trials = 2048, 8
a = fpsim.quantize(rng.random((trials, K)), "e4m3")
b = fpsim.quantize(rng.random((trials, K)), "e4m3")
ref = fpsim.dot(a, b, model=fpsim.accum.Exact(fpsim.FloatFormat(11, 50)))
ns, neabs = [8, 16, 32, 64], [-12, -10, -8, -4, 0]
err = np.zeros((len(neabs), len(ns)))
for i, ne in enumerate(neabs):
    for j, n in enumerate(ns):
        m = fpsim.accum.FusedBlock(n, ne, in_fmt="e4m3")
        err[i, j] = np.median(np.abs(fpsim.dot(a, b, model=m) - ref) / ref)
print(np.array2string(err, precision=2))"""),
        ("code", """\
fig, ax = plt.subplots(figsize=(5.5, 4))
im = ax.imshow(np.log10(err), cmap="viridis", aspect="auto")
ax.set_xticks(range(len(ns)), ns); ax.set_yticks(range(len(neabs)), [23 + e for e in neabs])
ax.set_xlabel("products per fused block n"); ax.set_ylabel("accumulator fraction bits (23 + neab)")
fig.colorbar(im, label="log10 median relative error")
ax.set_title(f"FP8 dot products, K={K}")
fig"""),
        ("md", "Promotion into fp32 every 128 products (DeepSeek-V3) removes most of the K-dependence:"),
        ("code", """\
tc = fpsim.hardware.tensor_core("H100", "e4m3")
for every in [None, 512, 128, 32]:
    m = tc if every is None else fpsim.accum.Promoted(tc, every=every)
    e = np.median(np.abs(fpsim.dot(a, b, model=m) - ref) / ref)
    print(f"promote every {every}: median rel. error {e:.2e}")"""),
    ],
}


def build(nb_dir: Path = HERE):
    import nbformat

    for name, cells in NOTEBOOKS.items():
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                    for kind, src in cells]
        for i, c in enumerate(nb.cells):  # stable ids: regenerating gives identical files
            c["id"] = f"{name[:2]}-{i:02d}"
        nbformat.write(nb, nb_dir / f"{name}.ipynb")


if __name__ == "__main__":
    build()
