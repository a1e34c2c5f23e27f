"""``fpsim report``: fpsim's main job, one folder with an HTML page, Markdown and figures.

Each section is a function ``section(out, quick) -> (title, markdown body, figure files)``;
:data:`SECTIONS` lists them in report order:

1. **Formats**: range and precision of every well-known format.
2. **Rounding error**: SQNR per format on three distributions, relative spacing vs magnitude.
3. **Accumulation models**: error of a length-K dot product against K for sequential,
   pairwise, Kahan, blocked, tensor-core and FP8-promoted accumulation (SPEC §4).
4. **Tensor-core validation**: the bit-exact fraction of each tensor-core model on the
   captured GPU outputs of ``shared/data/tensor-cores`` (when that folder can be found).
5. **Reproducibility audit**: a tiny character-level language model bundled here (trained
   in code in a few seconds, fixed seed) greedy-decodes under precisions, tensor-core
   profiles and split-K accumulation; drift metrics of "Give Me FP32 or Give Me Death?"
   (needs torch; without it the section says so).

A section that cannot run (missing optional dependency or data) explains why in the report
instead of failing the whole command.
"""

from __future__ import annotations

import hashlib
import html
import re
import time
import traceback
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import __version__
from . import accum as _A
from . import hardware as _H
from .analysis.audit import deployment_audit
from .analysis.format_plots import plot_relative_precision
from .analysis.tables import format_table, rounding_error_summary, to_markdown
from .formats import list_formats
from .hardware import data_dir

__all__ = ["SECTIONS", "write_report", "tensor_core_data_dir", "tiny_lm"]


# ---------------------------------------------------------------------------------------
# 1. Formats, 2. rounding error
# ---------------------------------------------------------------------------------------

def _section_formats(out: Path, quick: bool):
    rows = format_table()
    text = ("Range and precision of the well-known formats (`fpsim formats` prints this table; "
            "`fpsim values NAME` lists every value of a format).\n\n" + to_markdown(rows))
    return "Formats", text, []


#: Formats of the relative-precision figure (from FP4 to fp32).
_PRECISION_FORMATS = ("e2m1", "e3m2", "e4m3", "e5m2", "fp16", "bf16", "fp32")


def _section_rounding(out: Path, quick: bool):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # integer and codebook formats mean nothing unscaled: they get their usual scaling below
    names = [n for n in list_formats()
             if n not in ("fp64", "e8m0") and not n.startswith(("int", "uint", "dint", "nf"))]
    n = 20_480 if quick else 200_000  # whole blocks of 16/32/64
    rows = rounding_error_summary(names, n=n)
    srows = [dict(r, name=nm, scaling=_SCALED_FORMATS[nm])
             for nm, r in zip(_SCALED_FORMATS, rounding_error_summary(list(_SCALED_FORMATS), n=n))]
    srows = [{"name": r["name"], "scaling": r["scaling"],
              **{k: v for k, v in r.items() if k.startswith("sqnr")}} for r in srows]
    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(rows))
    keys = [k for k in rows[0] if k.startswith("sqnr")]
    for j, k in enumerate(keys):
        ax.bar(x + (j - 1) * 0.27, [r[k] for r in rows], width=0.27, label=k[8:-1])
    ax.set_xticks(x, [r["name"] for r in rows], rotation=60, ha="right")
    ax.set_ylabel("SQNR (dB)")
    ax.set_title("Round-to-nearest SQNR of unit-scale data")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "rounding_sqnr.png", dpi=110)
    plt.close(fig)

    # relative spacing ulp(x)/x: where each format is precise, and where it runs out of range
    fig = plot_relative_precision(_PRECISION_FORMATS, lo=2.0**-30, hi=2.0**40, n=1500 if quick else 6000)
    fig.savefig(out / "relative_precision.png", dpi=110)
    text = (f"Signal-to-quantisation-noise ratio (dB) of round-to-nearest-even into each format "
            f"({n} samples per distribution, unit scale, overflow saturates). The second figure "
            "shows the relative spacing ulp(x)/x of "
            f"{', '.join(_PRECISION_FORMATS)} against the magnitude x: flat in the normal range "
            "(2^-mantissa bits), growing in the subnormal range, ending at the format's max.\n\n"
            + to_markdown(rows)
            + "\n\nBlock-scaled, scaled and codebook formats with the scaling each is used with "
            "(same data; block scales computed by fpsim from each block's amax; integer formats "
            "per tensor or per group of 32, absmax to the integer maximum):\n\n"
            + to_markdown(srows))
    return "Rounding error", text, ["rounding_sqnr.png", "relative_precision.png"]


#: Formats of the report's second SQNR table, with the scaling each is used with.
_SCALED_FORMATS = {
    "mxfp8_e4m3": "OCP MX: blocks of 32, E8M0 power-of-two scale",
    "mxfp6_e3m2": "OCP MX: blocks of 32, E8M0 scale",
    "mxfp4": "OCP MX: blocks of 32, E8M0 scale",
    "nvfp4": "NVFP4: blocks of 16, E4M3 scale, fp32 tensor scale",
    "block[nf4,64,fp32]": "QLoRA NF4: blocks of 64, absmax (fp32) scale",
    "scaled[int8,tensor,fp32]": "int8, one absmax scale per tensor",
    "scaled[int4,group,fp32,group=32]": "int4, absmax scale per group of 32",
}


# ---------------------------------------------------------------------------------------
# 3. Accumulation models
# ---------------------------------------------------------------------------------------

def _accum_models():
    return {
        "Sequential fp32 (FMA)": _A.Sequential("fp32", fma=True),
        "Sequential bf16 (FMA)": _A.Sequential("bf16", fma=True),
        "Pairwise fp32": _A.Pairwise("fp32"),
        "Kahan fp32": _A.Kahan("fp32"),
        "Blocked(32) fp32 (split-K)": _A.Blocked(32, _A.Sequential("fp32", fma=True)),
        "A100 tensor core (bf16)": _H.tensor_core("A100", "bf16"),
        "H100 tensor core (bf16)": _H.tensor_core("H100", "bf16"),
        "H100 FP8 tensor core (e4m3)": _H.tensor_core("H100", "e4m3"),
        "H100 FP8, promoted every 128": _H.fp8_promoted("H100", "e4m3", 128),
    }


def _section_accumulation(out: Path, quick: bool):
    Ks = (16, 64, 256, 1024) if quick else (16, 64, 256, 1024, 4096, 16384)
    trials = 8 if quick else 32
    models = _accum_models()
    errs = _A.error_growth(models, Ks, trials, seed=0, in_fmt="bf16", statistic="median")

    fig, ax = _figure((8, 5))
    for name, e in errs.items():
        ax.loglog(Ks, np.where(e > 0, e, np.nan), marker="o", label=name)  # 0 (exact): not drawn
    ax.loglog(Ks, [K * 2.0**-24 for K in Ks], "k--", lw=0.8, label="K·u (fp32 worst-case scale)")
    ax.set(xlabel="dot-product length K", ylabel="median relative error (exact results not drawn)",
           title="Error growth of accumulation models (bf16 inputs in [0, 1))")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.savefig(out / "accumulation_error.png", dpi=110)

    rows = [{"model": name, **{f"K={K}": float(v) for K, v in zip(Ks, e)}} for name, e in errs.items()]
    text = ("Median relative error of `fpsim.dot` against the exact dot product, for length-K "
            f"dot products of bf16 inputs uniform in [0, 1) ({trials} trials per K; positive "
            "terms, so rounding errors accumulate). Tensor-core models are the bit-exact fused "
            "multi-term adders of `fpsim.hardware.tensor_core` (truncated alignment, "
            "round-toward-zero fp32 output); the FP8 tensor core keeps only 13 mantissa bits, "
            "which promoting every 128 products into fp32 (DeepSeek-V3) repairs.\n\n"
            + to_markdown(rows))
    return "Accumulation models", text, ["accumulation_error.png"]


# ---------------------------------------------------------------------------------------
# 4. Tensor-core validation
# ---------------------------------------------------------------------------------------

#: The folder of captured tensor-core outputs, or ``None``: :func:`fpsim.hardware.data_dir`
#: itself (one search: ``$FPSIM_TENSOR_CORE_DATA``, then ``shared/data/tensor-cores`` next
#: to the fpsim checkout and to the current directory).
tensor_core_data_dir = data_dir


def _section_tensor_cores(out: Path, quick: bool):

    title = "Tensor-core validation"
    d = tensor_core_data_dir()
    try:
        res = _H.validate(d)  # d None: the sample bundled with fpsim
    except (ValueError, OSError) as e:
        return title, f"**Not run: the tensor-core data in `{d}` could not be read: {e}**", []
    rows = []
    for r in res.values():
        try:
            m = _H.tensor_core(r.gpu, r.in_fmt.lower(), r.out_fmt)
            if isinstance(m, _A.Permuted):  # FP8 -> fp16 on Hopper/Blackwell: two k16 steps
                s = m.inner.inner
                model = f"2 x n={s.n} (low, high half-words), neab={s.neab}, {s.rounding}; + c"
            else:
                model = f"n={m.n}, neab={m.neab}, {m.rounding}"
        except ValueError as e:
            model = str(e)
        rows.append({"GPU": r.gpu, "input": r.in_fmt, "output": r.out_fmt, "lines": r.lines,
                     "bit-exact": r.matches, "fraction": r.fraction, "model": model,
                     "note": r.note})
    total = sum(r["lines"] for r in rows)
    exact = sum(r["bit-exact"] for r in rows)
    if d is None:
        where = ("the sample bundled with fpsim (evenly spaced lines of every captured file; set "
                 "`FPSIM_TENSOR_CORE_DATA` to the full `tensor-cores` folder to replay all)")
    else:
        where = f"every line of the captured folder `{d}`"
    text = (f"Captured dot products `d = Σ a_i b_i + c` (real GPU outputs, Khattak & Mikaitis "
            f"2025) from {where}, replayed through the model `fpsim.hardware.tensor_core(GPU, "
            "input, output)` (fused block of n products, neab extra alignment bits, final "
            "rounding); files captured without c are replayed with c = 0, as `note` says. "
            f"**{exact} of {total} outputs bit-exact ({exact / total:.4f}).** (The FP8 -> fp16 "
            "outputs of H100 and B200 follow two chained k16 steps, not the published model: "
            "docs: Accumulation, Validation on real GPUs.)\n\n" + to_markdown(rows))
    return title, text, []


# ---------------------------------------------------------------------------------------
# 5. Reproducibility audit of a bundled tiny language model
# ---------------------------------------------------------------------------------------

#: The training text of the bundled model (written for fpsim; public domain).
_CORPUS = (
    "the quick brown fox jumps over the lazy dog. "
    "a small model learns the text it is shown. "
    "every number format rounds what it cannot hold. "
    "the tensor core adds eight products at once. "
    "sums in a different order give different bits. "
    "greedy decoding picks the most likely letter. "
    "one flipped letter changes the rest of the line. "
    "bfloat16 keeps the range and drops the precision. "
)
_CTX = 64  # longest sequence the positional embedding covers


def tiny_lm(seed: int = 0, steps: int = 120):
    """A tiny character-level GPT (2 layers, width 32) trained on a bundled corpus.

    Deterministic: fixed seed, fixed data order, one torch thread while training. Returns
    ``(model, encode, decode)`` where ``encode(str) -> list[int]`` and
    ``decode(list[int]) -> str``. Needs torch. Training takes a few seconds on one core.

    >>> m, enc, dec = tiny_lm(steps=2)
    >>> dec(enc("the fox")), m(__import__("torch").tensor([enc("the fox")])).shape[-1]
    ('the fox', 30)
    """
    import torch
    import torch.nn.functional as F

    from .torch.tiny import TinyGPT

    chars = sorted(set(_CORPUS))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in _CORPUS])
    T = 32
    with _one_torch_thread():
        torch.manual_seed(seed)
        model = TinyGPT(len(chars), ctx=_CTX)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        g = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            ix = torch.randint(0, len(data) - T - 1, (16,), generator=g)
            x = torch.stack([data[i:i + T] for i in ix])
            y = torch.stack([data[i + 1:i + T + 1] for i in ix])
            loss = F.cross_entropy(model(x).reshape(-1, len(chars)), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    model.final_loss, model.steps = float(loss.detach()), steps
    return model, (lambda s: [stoi[c] for c in s]), (lambda ids: "".join(chars[i] for i in ids))


class _one_torch_thread:
    """Tiny tensors: torch's thread pool only adds contention (and thread-count dependence)."""

    def __enter__(self):
        import torch
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        import torch
        torch.set_num_threads(self.n)


#: The GPU scaled down with the tiny model: 8 SMs, 16x16 output tiles, a K grain of 16, so
#: that its GEMMs (M = batch x length up to ~150, N and K 32..128) sit in the regime of a 7B
#: model's GEMMs at batch 1..N on a real GPU (split-K at batch 1, none at large batch), and
#: key blocks of 4 so that attention's split-KV count varies with the batch as well.
_TINY_GPU = dict(sms=8, tile_m=16, tile_n=16, k_grain=16, splitk_reduction="output", kv_block=4)


def _near_tie_starts(model, enc, plen, new, n):
    """Corpus offsets of the ``n`` prompts whose bf16 greedy continuation comes closest to
    a tie between the top two tokens (every offset is a candidate)."""
    import torch

    from .torch import emulate
    cands = list(range(0, len(_CORPUS) - plen - new - 1))
    x = torch.tensor([enc(_CORPUS[s:s + plen]) for s in cands])
    margin = torch.full((len(cands),), float("inf"))
    with torch.no_grad(), _one_torch_thread(), emulate("bf16"):
        for _ in range(new):
            lg = model(x)[:, -1]
            top = lg.topk(2, -1).values
            margin = torch.minimum(margin, top[:, 0] - top[:, 1])
            x = torch.cat([x, lg.argmax(-1, keepdim=True)], 1)
    order = sorted(range(len(cands)), key=lambda i: (float(margin[i]), cands[i]))
    return sorted(cands[i] for i in order[:n])


def _section_drift(out: Path, quick: bool):
    title = "Reproducibility audit (bundled tiny language model)"
    try:
        import torch  # noqa: F401

        import fpsim.torch  # noqa: F401
    except ImportError as e:
        return title, (f"**Not run: this section needs torch** (`pip install \"torch==2.13.0\"` or "
                       f"the `torch` extra): {e}"), []

    t0 = time.perf_counter()
    model, enc, dec = tiny_lm()
    t_train = time.perf_counter() - t0
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()[:16]

    # the bit-exact GEMM kernels run on the CPU and greedy decoding re-runs the whole
    # sequence at every step (no KV cache): keep the workload small
    n_prompts, plen, new = (8, 8, 10) if quick else (12, 8, 16)
    # drift flips a greedy choice where the model hesitates (near-ties, as in long reasoning
    # outputs): of the corpus positions, the prompts whose greedy continuation under the
    # plain bf16 profile (torch's matmul on bf16 operands: one cheap batched pass) has the
    # smallest top-1/top-2 logit margin
    starts = _near_tie_starts(model, enc, plen, new, n_prompts)
    prompts = [enc(_CORPUS[s:s + plen]) for s in starts]
    expected = [enc(_CORPUS[s + plen:s + plen + new]) for s in starts]

    def judge(i, toks):  # partial credit: the share of characters that reproduce the corpus
        return sum(a == b for a, b in zip(toks, expected[i])) / len(expected[i])

    grid = (dict(batch_sizes=(1, n_prompts), tps=(1, 2), gpus=("h100",)) if quick else
            dict(batch_sizes=(1, 4, n_prompts), tps=(1, 2, 4, 8), gpus=("h100", "a100")))
    t1 = time.perf_counter()
    with _one_torch_thread():
        audit = deployment_audit(model, prompts, judge=judge, max_new_tokens=new,
                                 dtypes=("bf16", "fp32", "layercast"), progress=True, **grid,
                                 **_TINY_GPU)
    t_drift = time.perf_counter() - t1
    fig = audit.plot()
    fig.savefig(out / "drift.png", dpi=100)
    n_cfg = len(audit.rows)
    text = (
        "A tiny character-level GPT (2 layers, width 32, "
        f"{sum(p.numel() for p in model.parameters())} parameters) ships with fpsim as code: "
        f"`fpsim.report.tiny_lm()` trains it on a bundled 8-sentence corpus with a fixed seed "
        f"({t_train:.1f} s here, {model.steps} steps, final loss {model.final_loss:.3f}, weights sha256 `{digest}`). "
        f"{len(prompts)} prompts of {plen} characters are greedy-decoded for {new} characters under "
        "each deployment (`fpsim.torch.Deployment`: GPU, dtype, tensor-parallel degree, "
        "shape-dependent kernels) by `fpsim.analysis.deployment_audit`, which compares every "
        "deployment with the baseline of the **same dtype** (batch 1, tp 1, first GPU), as "
        "\"Give Me FP32 or Give Me Death?\" (2025) does: the batch size changes the split-K of "
        "the GEMMs and the key splits of attention (split-KV), tp > 1 sums the row-parallel "
        "layers' partial products by a ring all-reduce "
        "in the dtype (bf16 for bf16, fp32 for fp32/LayerCast), the GPU changes the tensor "
        "core. The GPU is scaled down with the model "
        f"({', '.join(f'{k}={v}' for k, v in _TINY_GPU.items())}; split-K partials are "
        "added in the output format, cuBLASLt's in-place reduction scheme: with fp32 partials "
        "the batch-size effect on a model this small stays below bf16's output rounding). "
        "Accuracy is partial credit (the share of generated characters that reproduce the "
        "corpus), so it varies across prompts; `Std@Acc` is its std across the deployments of "
        "a dtype. `div_rate`: prompts whose greedy output differs from the baseline's; "
        "`first_div`: mean first differing character; `max_top1_diff`: the largest change of a "
        "top-1 probability at any step before the divergence (0: identical logits); logit "
        f"differences and top-1 flips are of the first step. {n_cfg} deployments took "
        f"{t_drift:.1f} s. LayerCast (bf16 weights, fp32 compute) has fp32 arithmetic, so it "
        "drifts like fp32 here.\n\n"
        "Per dtype (across its deployments):\n\n" + to_markdown(audit.group_records())
        + "\n\nPer deployment, against its dtype's baseline:\n\n" + audit.to_markdown()
    )
    return title, text, ["drift.png"]


SECTIONS = [_section_formats, _section_rounding, _section_accumulation, _section_tensor_cores,
            _section_drift]


# ---------------------------------------------------------------------------------------
# Writing the report
# ---------------------------------------------------------------------------------------

def _figure(figsize):
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots()


def _run_section(sec, out: Path, quick: bool):
    """Run one section; an unexpected failure becomes a clear message in the report."""
    try:
        return sec(out, quick)
    except Exception as e:  # noqa: BLE001 - the report must survive a broken section
        name = sec.__name__.removeprefix("_section_").replace("_", " ")
        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        return (name.capitalize(), f"**Section failed** ({tb}). The other sections are unaffected; "
                "please report this as a bug.", [])


def write_report(out="fpsim-report", *, quick: bool = False, sections=None, progress: bool = True) -> Path:
    """Write the report into folder ``out`` and return the path of its ``index.html``.

    ``quick`` uses small sample sizes (about a minute in all); ``sections`` (default
    :data:`SECTIONS`) picks section functions; ``progress`` shows a tqdm bar over sections.
    The folder gets ``index.html`` (self-contained apart from the PNG figures next to it),
    ``report.md`` and the figures.

    >>> import tempfile
    >>> p = write_report(tempfile.mkdtemp(), sections=[SECTIONS[0]], progress=False)
    >>> p.name, "e4m3" in p.read_text()
    ('index.html', True)
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a file is in the way
        raise ValueError(f"out={str(out)!r}: cannot create the report folder there: it or a "
                         "folder above it is an existing file; choose another path") from None
    secs = list(SECTIONS if sections is None else sections)
    t0 = time.perf_counter()
    md, body, toc = [], [], []
    bar = tqdm(secs, desc="fpsim report", unit="section", disable=not progress)
    for i, sec in enumerate(bar, 1):
        bar.set_postfix_str(sec.__name__.removeprefix("_section_"))
        ts = time.perf_counter()
        title, text, figs = _run_section(sec, out, quick)
        dt = time.perf_counter() - ts
        anchor = f"s{i}"
        toc.append(f'<li><a href="#{anchor}">{html.escape(title)}</a></li>')
        md.append(f"## {i}. {title}\n\n{text}\n")
        md.extend(f"![{f}]({f})\n" for f in figs)
        md.append(f"*({dt:.1f} s)*\n")
        body.append(f'<h2 id="{anchor}">{i}. {html.escape(title)}</h2>\n{_md_to_html(text)}')
        body.extend(f'<p><img src="{f}" alt="{f}"></p>' for f in figs)
        body.append(f'<p class="t">({dt:.1f} s)</p>')
    head = (f"fpsim {__version__}, {'quick' if quick else 'full'} report, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')} ({time.perf_counter() - t0:.0f} s)")
    (out / "report.md").write_text(f"# fpsim report\n\n{head}\n\n" + "\n".join(md))
    page = out / "index.html"
    page.write_text(
        "<!doctype html><html lang='en'><meta charset='utf-8'><title>fpsim report</title>"
        "<style>body{font-family:sans-serif;max-width:1150px;margin:auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:2px 6px}"
        "img{max-width:100%}code{background:#f3f3f3}.t{color:#888;font-size:80%}</style>"
        f"<h1>fpsim report</h1><p>{html.escape(head)}</p><ol>{''.join(toc)}</ol>"
        + "\n".join(body) + "</html>\n")
    return page


def _inline(s: str) -> str:
    s = html.escape(s, quote=False)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", s)


def _md_to_html(text: str) -> str:
    """The small Markdown subset the sections write: paragraphs, ``code``, **bold**, tables."""
    parts = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.strip().splitlines()
        if lines and all(ln.startswith("|") for ln in lines) and len(lines) >= 2:
            cells = lambda ln: [_inline(c.strip()) for c in ln.strip().strip("|").split("|")]  # noqa: E731
            head = "".join(f"<th>{c}</th>" for c in cells(lines[0]))
            rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in cells(ln)) + "</tr>"
                           for ln in lines[2:])
            parts.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif lines:
            parts.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "\n".join(parts)
