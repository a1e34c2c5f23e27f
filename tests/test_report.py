"""``fpsim report --quick``: every section and figure is there, with real numbers.

The report runs once (through the CLI) into a temporary folder; the numbers in it are
checked against independent computations (ml_dtypes rounding, exact float64 sums, the
captured tensor-core outputs) where one exists, and for sanity (finite, ordered) elsewhere.
"""

import math
import re

import ml_dtypes
import numpy as np
import pytest

from fpsim import report
from fpsim.cli import main

TITLES = ["Formats", "Rounding error", "Accumulation models", "Tensor-core validation",
          "Reproducibility audit"]
FIGURES = ["rounding_sqnr.png", "relative_precision.png", "accumulation_error.png", "drift.png"]


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["report", "--quick", "--out", str(out)]) == 0
    return out


def _sections(md: str) -> dict:
    parts = re.split(r"^## \d+\. ", md, flags=re.M)[1:]
    return {p.splitlines()[0].strip(): p for p in parts}


def _section(md, prefix):
    secs = _sections(md)
    (key,) = [k for k in secs if k.startswith(prefix)]
    return secs[key]


def _tables(text: str) -> list:
    """Every Markdown table in ``text`` as a list of dicts (cells as strings)."""
    out, block = [], []
    for ln in text.splitlines() + [""]:
        if ln.startswith("|"):
            block.append([c.strip() for c in ln.strip().strip("|").split("|")])
        elif block:
            out.append([dict(zip(block[0], r)) for r in block[2:]])
            block = []
    return out


def test_files_sections_and_figures(quick_report):
    html = (quick_report / "index.html").read_text()
    md = (quick_report / "report.md").read_text()
    secs = _sections(md)
    assert [k for t in TITLES for k in secs if k.startswith(t)] == list(secs)  # all, in order
    assert "Section failed" not in md
    for title, text in secs.items():  # only the tensor-core section may lack its data
        assert title.startswith("Tensor-core") or "Not run" not in text, title
    for f in FIGURES:
        data = (quick_report / f).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, f
        assert f'src="{f}"' in html and f"![{f}]({f})" in md
    for t in TITLES:
        assert t in html
    assert "<table>" in html and "http" not in html.split("<h1>", 1)[1]  # self-contained


def test_formats_table_matches_ml_dtypes(quick_report):
    rows = {r["name"]: r for r in _tables(_section((quick_report / "report.md").read_text(), "Formats"))[0]}
    for name, dt in (("e4m3", ml_dtypes.float8_e4m3fn), ("e5m2", ml_dtypes.float8_e5m2),
                     ("bf16", ml_dtypes.bfloat16), ("fp16", np.float16)):
        fi = ml_dtypes.finfo(dt)
        assert float(rows[name]["max"]) == pytest.approx(float(fi.max), rel=1e-5)
        assert float(rows[name]["eps"]) == pytest.approx(float(fi.eps), rel=1e-5)  # 6 digits
        assert float(rows[name]["min_subnormal"]) == pytest.approx(float(fi.smallest_subnormal), rel=1e-5)


def test_rounding_sqnr_matches_ml_dtypes(quick_report):
    md = (quick_report / "report.md").read_text()
    rows = {r["name"]: r for r in _tables(_section(md, "Rounding error"))[0]}
    x = np.random.default_rng(123).standard_normal(20_000)
    for name, dt in (("bf16", ml_dtypes.bfloat16), ("e4m3", ml_dtypes.float8_e4m3fn),
                     ("fp16", np.float16)):
        q = x.astype(dt).astype(np.float64)  # no overflow at unit scale: RNE agrees
        want = 10 * np.log10(np.sum(x * x) / np.sum((q - x) ** 2))
        got = float(rows[name]["sqnr_db[normal]"])
        assert abs(got - want) < 0.3, (name, got, want)  # different samples of one distribution


def test_scaled_sqnr_table_matches_independent_scaling(quick_report):
    """The second SQNR table (formats with their usual scaling) against MX / absmax scaling
    written out with ml_dtypes and numpy rounding."""
    md = (quick_report / "report.md").read_text()
    tabs = _tables(_section(md, "Rounding error"))
    unit = {r["name"] for r in tabs[0]}
    assert not unit & {"int8", "int4", "uint8", "nf4", "dint4"}  # no longer shown unscaled
    rows = {r["name"]: r for r in tabs[1]}
    assert {"mxfp8_e4m3", "mxfp4", "nvfp4", "block[nf4,64,fp32]", "scaled[int8,tensor,fp32]"} <= set(rows)
    x = np.random.default_rng(321).standard_normal(20_480)
    b = x.reshape(-1, 32)  # OCP MX: scale 2^(floor(log2 amax) - emax_elem), elements clamp
    s = 2.0 ** (np.floor(np.log2(np.abs(b).max(1, keepdims=True))) - 2)
    q = np.clip(b / s, -6, 6).astype(ml_dtypes.float4_e2m1fn).astype(np.float64) * s
    want = {"mxfp4": 10 * np.log10(np.sum(b * b) / np.sum((q - b) ** 2))}
    si = np.abs(x).max() / 127  # int8 per tensor, absmax
    q = np.rint(x / si) * si
    want["scaled[int8,tensor,fp32]"] = 10 * np.log10(np.sum(x * x) / np.sum((q - x) ** 2))
    for name, w in want.items():
        got = float(rows[name]["sqnr_db[normal]"])
        assert abs(got - w) < 0.5, (name, got, w)  # different samples of one distribution


def _oracle_sequential(Ks, trials, dtype):
    """Median relative error of sequential FMA accumulation into ``dtype``, recomputed with
    ml_dtypes/numpy rounding and exact float64 arithmetic, on the report's data (its seed)."""
    rng = np.random.default_rng(0)
    res = []
    for K in Ks:
        a = rng.random((trials, K)).astype(ml_dtypes.bfloat16).astype(np.float64)
        b = rng.random((trials, K)).astype(ml_dtypes.bfloat16).astype(np.float64)
        p = a * b  # exact: 8-bit x 8-bit significands
        s = np.zeros(trials)
        for k in range(K):
            t = s + p[:, k]
            assert np.all(t - s == p[:, k])  # the float64 sum is exact, so one rounding below
            s = t.astype(dtype).astype(np.float64)
        ref = np.array([math.fsum(r) for r in p])
        res.append(float(np.median(np.abs(s - ref) / ref)))
    return res


def test_accumulation_errors_against_independent_oracle(quick_report):
    md = (quick_report / "report.md").read_text()
    rows = {r["model"]: r for r in _tables(_section(md, "Accumulation models"))[0]}
    Ks = [int(k[2:]) for k in next(iter(rows.values())) if k.startswith("K=")]
    assert Ks == [16, 64, 256, 1024]
    err = {m: np.array([float(r[f"K={K}"]) for K in Ks]) for m, r in rows.items()}
    for model, dt in (("Sequential bf16 (FMA)", ml_dtypes.bfloat16), ("Sequential fp32 (FMA)", np.float32)):
        want = _oracle_sequential(Ks, 8, dt)
        np.testing.assert_allclose(err[model], want, rtol=1e-5, atol=1e-300)
    assert len(rows) >= 8
    assert all(np.all(np.isfinite(e)) and np.all(e >= 0) for e in err.values())
    K = np.array(Ks, dtype=float)
    for m in ("Pairwise fp32", "Kahan fp32", "A100 tensor core (bf16)", "H100 tensor core (bf16)"):
        assert np.all(err[m] <= K * 2.0**-23), m  # within the fp32 worst-case bound
    fp8, promoted = err["H100 FP8 tensor core (e4m3)"], err["H100 FP8, promoted every 128"]
    assert promoted[-1] < fp8[-1] / 5  # promotion into fp32 repairs the 13-bit accumulator
    assert err["Kahan fp32"][-1] < err["Sequential fp32 (FMA)"][-1]


def test_tensor_core_table(quick_report):
    md = (quick_report / "report.md").read_text()
    sec = _section(md, "Tensor-core validation")
    if report.tensor_core_data_dir() is None:
        assert "sample bundled with fpsim" in sec
        return
    rows = _tables(sec)[0]
    seen = {(r["GPU"], r["input"].lower(), r["output"]) for r in rows}
    assert {("V100", "fp16", "fp32"), ("A100", "bf16", "fp32"), ("Ada", "e4m3", "fp16")} <= seen
    # the captured GPU outputs are the oracle: each file as recorded in test_tensor_cores
    from test_tensor_cores import EXPECTED
    assert len(rows) == len(EXPECTED)
    for r in rows:
        key = f"{r['GPU']}/{r['input']}/{r['output']}"
        assert (int(r["lines"]), int(r["bit-exact"])) == EXPECTED[key], r
    notes = {f"{r['GPU']}/{r['input']}/{r['output']}": r["note"] for r in rows}
    assert "c = 0" in notes["H100/E4M3/fp32"]


def test_drift_audit(quick_report):
    """Like with like: every deployment against its own dtype's batch-1/tp-1 run; bf16
    drifts across batch size and tp (greedy outputs and accuracy change), fp32 and
    LayerCast only by fp32 rounding errors (no greedy output changes)."""
    md = (quick_report / "report.md").read_text()
    sec = _section(md, "Reproducibility audit")
    groups, configs = _tables(sec)
    g = {r["dtype"]: r for r in groups}
    assert set(g) == {"bf16", "fp32", "layercast"}
    c = {(r["dtype"], r["config"]): r for r in configs}
    assert set(c) == {(d, k) for d in g for k in ("baseline", "batch_size=8", "tp=2")}
    for d in g:
        assert float(c[(d, "baseline")]["max_logit_diff"]) == 0.0  # the baseline itself
        assert 0 <= float(g[d]["mean_acc"]) <= 1
    for k in ("batch_size=8", "tp=2"):
        assert float(c[("bf16", k)]["max_top1_diff"]) > 1e-3
        for d in ("fp32", "layercast"):
            assert 0 < float(c[(d, k)]["max_top1_diff"]) < 1e-5
            assert float(c[(d, k)]["div_rate"]) == 0
    assert float(g["bf16"]["std_acc"]) > 0 and float(g["bf16"]["div_rate"]) > 0
    assert float(g["fp32"]["std_acc"]) == 0 and float(g["layercast"]["std_acc"]) == 0
    # accuracy is partial credit: it is not one constant over every configuration
    assert len({r["accuracy"] for r in configs}) > 1


def test_missing_data_and_broken_sections_degrade(tmp_path, monkeypatch):
    monkeypatch.setenv("FPSIM_TENSOR_CORE_DATA", str(tmp_path / "nowhere"))
    assert report.tensor_core_data_dir() is None
    title, text, figs = report._section_tensor_cores(tmp_path, True)
    # without the data folder the section replays the sample bundled with fpsim
    assert "sample bundled with fpsim" in text and "Not run" not in text and figs == []
    rows = _tables(text)[0]
    assert {r["GPU"] for r in rows} == {"V100", "A100", "Ada", "H100", "B200"}
    assert all(int(r["lines"]) <= 320 for r in rows)
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    title, text, figs = report._section_drift(tmp_path, True)
    assert "Not run: this section needs torch" in text and figs == []

    def _section_broken(out, quick):
        raise RuntimeError("boom")

    page = report.write_report(tmp_path / "r", sections=[_section_broken], progress=False)
    assert "Section failed" in page.read_text() and "boom" in page.read_text()
    assert (tmp_path / "r" / "report.md").exists()


def test_tensor_core_data_dir_from_env(tmp_path, monkeypatch):
    d = tmp_path / "tc"
    d.mkdir()
    monkeypatch.setenv("FPSIM_TENSOR_CORE_DATA", str(d))
    assert report.tensor_core_data_dir() == d
    monkeypatch.delenv("FPSIM_TENSOR_CORE_DATA")
    found = report.tensor_core_data_dir()
    assert found is None or found.name == "tensor-cores"
