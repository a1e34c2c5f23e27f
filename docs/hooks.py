"""MkDocs hooks: generated content for the documentation pages.

``<!-- fpsim:formats-table -->`` in a page is replaced by the table that ``fpsim formats``
prints (built from the installed fpsim at build time, so the docs cannot drift from it);
``<!-- fpsim:engines-table -->`` by the matrix-engine instruction table (fpsim.engines);
``<!-- fpsim:gpu-table -->`` and ``<!-- fpsim:gpu-parameters -->`` by the GPU table
(fpsim.gpus.table, parameter_table);
``<!-- fpsim:torch-coverage -->`` and ``<!-- fpsim:torch-validation -->`` by the op-coverage
contract and the profile validation labels of ``fpsim.torch``.
"""

from __future__ import annotations

FORMATS_TABLE = "<!-- fpsim:formats-table -->"
ENGINES_TABLE = "<!-- fpsim:engines-table -->"
GPU_TABLES = {"<!-- fpsim:gpu-table -->": "table", "<!-- fpsim:gpu-parameters -->": "parameter_table"}
TORCH_COVERAGE = "<!-- fpsim:torch-coverage -->"
TORCH_VALIDATION = "<!-- fpsim:torch-validation -->"


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace the markers of generated content in ``markdown``."""
    if FORMATS_TABLE in markdown:
        from fpsim.analysis.tables import format_table, to_markdown

        markdown = markdown.replace(FORMATS_TABLE, to_markdown(format_table()))
    if ENGINES_TABLE in markdown:
        from fpsim.analysis.tables import to_markdown
        from fpsim.engines import table

        markdown = markdown.replace(ENGINES_TABLE, to_markdown(table()))
    for marker, fn in GPU_TABLES.items():
        if marker in markdown:
            from fpsim import gpus
            from fpsim.analysis.tables import to_markdown

            markdown = markdown.replace(marker, to_markdown(getattr(gpus, fn)()))
    if TORCH_COVERAGE in markdown or TORCH_VALIDATION in markdown:
        # the op-coverage contract and the profile validation labels of fpsim.torch
        from fpsim.torch.handlers import markdown_tables

        cov, val = markdown_tables()
        markdown = markdown.replace(TORCH_COVERAGE, cov).replace(TORCH_VALIDATION, val)
    return markdown
