"""``fpsim report``: fpsim's main job, one folder with an HTML page, Markdown and figures.

Each section is a function returning (title, markdown/html body, figure files); later work
adds accumulation models, tensor-core validation and a reproducibility audit.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm


def _section_formats(out: Path, quick: bool):
    from .analysis.tables import format_table, to_markdown

    rows = format_table()
    return "Formats", to_markdown(rows), []


def _section_rounding(out: Path, quick: bool):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .analysis.tables import rounding_error_summary, to_markdown
    from .formats import list_formats

    names = [n for n in list_formats() if n not in ("fp64", "e8m0")]
    rows = rounding_error_summary(names, n=20_000 if quick else 200_000)
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
    return "Rounding error", to_markdown(rows), ["rounding_sqnr.png"]


SECTIONS = [_section_formats, _section_rounding]


def write_report(out="fpsim-report", *, quick: bool = False) -> Path:
    """Write the report into folder ``out`` and return the path of its ``index.html``.

    >>> import tempfile
    >>> p = write_report(tempfile.mkdtemp(), quick=True)  # doctest: +SKIP
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md, body = ["# fpsim report\n"], []
    for sec in tqdm(SECTIONS, desc="fpsim report", unit="section"):
        title, text, figs = sec(out, quick)
        md.append(f"## {title}\n\n{text}\n")
        md.extend(f"![{f}]({f})\n" for f in figs)
        body.append(f"<h2>{html.escape(title)}</h2>\n{_md_table_to_html(text)}")
        body.extend(f'<img src="{f}" alt="{f}">' for f in figs)
    (out / "report.md").write_text("\n".join(md))
    page = out / "index.html"
    page.write_text("<!doctype html><meta charset='utf-8'><title>fpsim report</title>"
                    "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
                    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>"
                    "<h1>fpsim report</h1>" + "\n".join(body))
    return page


def _md_table_to_html(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.startswith("|")]
    if len(lines) < 2:
        return f"<pre>{html.escape(text)}</pre>"
    cells = lambda ln: [html.escape(c.strip()) for c in ln.strip().strip("|").split("|")]
    head = "".join(f"<th>{c}</th>" for c in cells(lines[0]))
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in cells(ln)) + "</tr>" for ln in lines[2:])
    return f"<table><tr>{head}</tr>{rows}</table>"
