"""Every study in analysis/ runs end to end at --smoke size and writes a report with figures
and the numbers it measured (the studies themselves compare against the papers)."""

import importlib
import json
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

ANALYSIS = Path(__file__).resolve().parent.parent / "analysis"
STUDIES = ["lmul_precision", "repro_drift", "training_stability", "dint_w4a8",
           "exp_vs_mantissa", "fp8_accumulation", "deployment_drift"]


@pytest.fixture(scope="module")
def studies():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    sys.path.insert(0, str(ANALYSIS))
    try:
        yield {s: importlib.import_module(s) for s in STUDIES}
    finally:
        sys.path.remove(str(ANALYSIS))
        torch.set_num_threads(n)


def test_every_study_has_a_script():
    assert sorted(p.stem for p in ANALYSIS.glob("[a-z]*.py")) == sorted(STUDIES)


@pytest.mark.parametrize("name", STUDIES)
def test_study_smoke(studies, name, tmp_path):
    rep = studies[name].main(["--smoke", "--out", str(tmp_path)])
    md = (tmp_path / "report.md").read_text()
    res = json.loads((tmp_path / "results.json").read_text())
    assert md.startswith("# ") and "## Paper vs measured" in md
    assert f"analysis/{name}.py --smoke" in md
    # figures exist, are PNGs and are linked from the report
    assert res["figures"], "a study must draw at least one figure"
    for fig in res["figures"]:
        data = (tmp_path / fig).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
        assert f"]({fig})" in md
    # every verdict quotes measured numbers, and they are in the report
    assert res["verdicts"] and res["verdicts"] == rep.verdicts
    for v in res["verdicts"]:
        if v["verdict"] != "not run":  # smoke sizes may skip a config axis
            assert re.search(r"\d", v["measured here"]), v
        assert v["measured here"].replace("|", "\\|") in md  # tables escape "|"
        assert v["verdict"]
    # the raw results hold finite measured numbers, and some of them appear in the tables
    nums = [x for x in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", json.dumps(res["results"]))]
    assert len(nums) >= 3
