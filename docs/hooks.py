"""MkDocs hooks: generated content for the documentation pages.

``<!-- fpsim:formats-table -->`` in a page is replaced by the table that ``fpsim formats``
prints (built from the installed fpsim at build time, so the docs cannot drift from it);
``<!-- fpsim:engines-table -->`` by the matrix-engine instruction table (fpsim.engines).
"""

from __future__ import annotations

FORMATS_TABLE = "<!-- fpsim:formats-table -->"
ENGINES_TABLE = "<!-- fpsim:engines-table -->"


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace the markers of generated content in ``markdown``."""
    if FORMATS_TABLE in markdown:
        from fpsim.analysis.tables import format_table, to_markdown

        markdown = markdown.replace(FORMATS_TABLE, to_markdown(format_table()))
    if ENGINES_TABLE in markdown:
        from fpsim.analysis.tables import to_markdown
        from fpsim.engines import table

        markdown = markdown.replace(ENGINES_TABLE, to_markdown(table()))
    return markdown
