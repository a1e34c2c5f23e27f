"""Griffe extension: render the doctest examples of fpsim's docstrings as code blocks.

fpsim's docstrings put their (tested) examples as bare ``>>>`` blocks, often without a
numpy ``Examples`` header. Markdown would read ``>>>`` as nested quotes and ``x["k"]`` as a
link, so every doctest block (``>>>``/``...`` lines and the output lines that follow, up to
a blank line) is wrapped in a ``pycon`` fence before mkdocstrings renders the docstring.
Sphinx roles (``:func:`fpsim.parse` ``) become inline code.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:func|class|data|attr|meth|mod|obj|exc|const):`~?([^`]+)`")


def fence_doctests(text: str) -> str:
    """Wrap each doctest block of ``text`` in a fenced code block.

    ``"Sum.\\n\\n>>> 1 + 1\\n2\\n\\nMore."`` becomes the same text with the two lines
    ``>>> 1 + 1`` and ``2`` between a ```` ```pycon ```` line and a ```` ``` ```` line.
    """
    out, block, in_fence = [], None, False
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        if block is None and not in_fence and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            block = [indent + "```pycon"]
        if block is not None:
            if not stripped:
                out += block + [indent + "```", line]
                block = None
                continue
            block.append(line)
            continue
        out.append(line)
    if block is not None:
        out += block + [indent + "```"]
    return "\n".join(out)


class FenceDoctests(griffe.Extension):
    """Applies :func:`fence_doctests` to every docstring griffe loads."""

    def on_instance(self, *, obj, **kwargs) -> None:  # noqa: D102
        if obj.docstring is None:
            return
        text = _ROLE.sub(r"`\1`", obj.docstring.value)
        obj.docstring.value = fence_doctests(text) if ">>>" in text else text
