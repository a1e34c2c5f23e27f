"""The documentation site builds without a single warning (``mkdocs build --strict``)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_MISSING = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")
            if importlib.util.find_spec(m.split(".")[0]) is None
            or (m == "mkdocstrings_handlers.python" and importlib.util.find_spec(m) is None)]


@pytest.mark.skipif(bool(_MISSING), reason=f"docs extra not installed (missing: {', '.join(_MISSING)}); "
                    "pip install -e '.[docs]'")
def test_mkdocs_build_strict(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                          "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    site = tmp_path / "site"
    for page in ("index.html", "formats/index.html", "rounding/index.html", "api/index.html",
                 "benchmarks/index.html"):
        assert (site / page).is_file(), page
    # the formats table is generated from fpsim itself (docs/hooks.py)
    formats = (site / "formats" / "index.html").read_text()
    assert "e4m3fnuz" in formats and "<!-- fpsim:formats-table -->" not in formats
    # the API reference rendered the docstrings of the public functions
    api = (site / "api" / "index.html").read_text()
    for ident in ("rounding.quantize", "rounding.encode", "rounding.decode", "formats.parse",
                  "formats.FloatFormat", "analysis.tables.format_table", "cli.main"):
        assert f'id="fpsim.{ident}"' in api, ident


def test_formats_page_has_no_stale_hand_written_table():
    """docs/formats.md keeps the generated table (the marker), so it cannot drift from
    ``fpsim formats``."""
    text = (ROOT / "docs" / "formats.md").read_text()
    assert "<!-- fpsim:formats-table -->" in text


def test_architecture_page_names_every_module():
    """docs/architecture.md lists each module of fpsim in its layer table, so that a new
    module cannot go undocumented there (and a renamed one leaves no stale name)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    pkg = ROOT / "fpsim"
    files = sorted(p for p in pkg.rglob("*.py") if p.name != "__init__.py")
    missing = [p.relative_to(ROOT).as_posix() for p in files if f"`{p.name}`" not in text
               and f"`{p.parent.name}/{p.name}`" not in text and f"{p.parent.name}/{p.name}" not in text]
    assert not missing, f"docs/architecture.md does not name {missing}"
    subpackages = sorted(p.parent.name for p in pkg.glob("*/__init__.py"))
    assert all(f"`{d}/`" in text for d in subpackages), subpackages
    # names the page cites as file::NAME exist in that file
    for path, name in re.findall(r"`([\w/]+\.py)::(\w+)`", text):
        src = (pkg / path).read_text() if (pkg / path).exists() else (ROOT / path).read_text()
        assert re.search(rf"\b{name}\b", src), f"{path}::{name}"
