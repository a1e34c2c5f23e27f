"""Smoke tests: the package imports, the CLI runs."""

import subprocess
import sys

import numpy as np

import fpsim


def test_quantize_e4m3_known_values():
    x = np.array([0.3, 500.0, 1e-4, 464.0, -1e9], dtype=np.float32)
    got = fpsim.quantize(x, "e4m3")
    assert got.dtype == np.float32
    assert got.tolist() == [0.3125, 448.0, 0.0, 448.0, -448.0]


def test_cli_formats_and_values():
    out = subprocess.run([sys.executable, "-m", "fpsim.cli", "values", "e2m1"], capture_output=True,
                         text=True, check=True).stdout
    assert "0x7  0111  6.0" in out
    assert "0xf  1111  -6.0" in out


def test_report_quick(tmp_path):
    from fpsim.report import write_report

    page = write_report(tmp_path, quick=True)
    text = page.read_text()
    assert "e4m3" in text and (tmp_path / "rounding_sqnr.png").stat().st_size > 1000


def test_import_is_light():
    """`import fpsim` must not pull in numba (loaded on first use) or torch (optional)."""
    code = "import sys, fpsim; print('numba' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
