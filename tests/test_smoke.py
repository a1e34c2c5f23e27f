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


def test_cli_block_formats():
    from fpsim.cli import main
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["formats", "mxfp4", "nvfp4"]) == 0
        assert main(["values", "mxfp4"]) == 0
    out = buf.getvalue()
    assert "| mxfp4 | 4.25 |" in out and "e2m1 × e8m0 scale per 32" in out
    assert "| nvfp4 | 4.5 | 2688 |" in out and "fp32 tensor scale" in out
    assert "block format, 32 elements share one e8m0 scale" in out and "0x7  0111  6.0" in out


def test_cli_stops_quietly_on_a_closed_pipe():
    p = subprocess.run(f'"{sys.executable}" -m fpsim.cli values fp16 | head -n 2', shell=True,
                       capture_output=True, text=True)
    assert p.stdout.count("\n") == 2 and "Traceback" not in p.stderr


def test_report_formats_section(tmp_path):
    """The report writer itself (tests/test_report.py covers every section in depth)."""
    from fpsim.report import SECTIONS, write_report

    page = write_report(tmp_path, quick=True, sections=[SECTIONS[0]], progress=False)
    assert "e4m3" in page.read_text() and (tmp_path / "report.md").exists()


def test_import_is_light():
    """`import fpsim` must not pull in numba (loaded on first use), torch (optional) or
    ml_dtypes (0.7 costs ~0.6 CPU s to import; fpsim needs it only for bfloat16)."""
    code = ("import sys, fpsim; print('numba' in sys.modules, 'torch' in sys.modules, "
            "'ml_dtypes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]


def test_bfloat16_without_importing_ml_dtypes_first():
    """bfloat16 named by fpsim itself (decode's dtype=, the carrier table) loads ml_dtypes
    on demand, with the same bits as ml_dtypes' own cast."""
    code = ("import numpy as np, fpsim, sys; d = fpsim.decode(np.array([0x3F80, 0xC0A0], "
            "np.uint16), 'bf16', dtype='bfloat16'); import ml_dtypes; "
            "print(d.dtype == ml_dtypes.bfloat16, d.astype(float).tolist(), "
            "fpsim.lowering.DTYPES[np.dtype(ml_dtypes.bfloat16)].M)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "[1.0,", "-5.0]", "7"]
