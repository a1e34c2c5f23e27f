"""Per-block error figure of block formats: :func:`plot_block_error`.

The numbers come from :func:`fpsim.block.block_errors`; the figure is a detached matplotlib
``Figure`` (no pyplot), so the core (:mod:`fpsim.block`) never imports matplotlib.
"""

from __future__ import annotations

import numpy as np

from ..block import block_errors
from ..formats import Format, as_format
from ._common import new_figure

__all__ = ["plot_block_error"]


def plot_block_error(x, formats=("mxfp4", "mxfp6_e2m3", "mxfp8_e4m3"), *, axis=None,
                     rounding="rne", title=None):
    """A matplotlib Figure of the relative RMS error of each block of ``x`` for ``formats``.

    One line per format (and per fibre along the blocked axis of a multi-dimensional ``x``),
    the block's position on the x axis. The figure is independent of pyplot; save it with
    ``fig.savefig("err.png")``.

    >>> import numpy as np
    >>> from fpsim.analysis import plot_block_error
    >>> fig = plot_block_error(np.random.default_rng(0).standard_normal(256), ["mxfp4"])
    >>> type(fig).__name__, fig.axes[0].get_yscale()
    ('Figure', 'log')
    """
    if isinstance(formats, (str, Format)):
        formats = [formats]
    fmts = [as_format(f) for f in formats]
    fig, axes = new_figure(figsize=(7, 3.6))
    ax = axes[0, 0]
    for i, f in enumerate(fmts):
        e = block_errors(x, f, axis=axis, rounding=rounding)
        bax = f.axis if axis is None else axis
        e = np.moveaxis(e, bax, -1).reshape(-1, e.shape[bax])
        pos = np.arange(e.shape[1]) * f.block  # blocks of different sizes share the x axis
        for r, row in enumerate(e):
            ax.plot(pos, row, ".-", ms=3, lw=0.8, color=f"C{i}",
                    label=f"{f.name} (median {np.nanmedian(e):.3g})" if r == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("position of the block's first element along the axis")
    ax.set_ylabel("relative RMS error of the block")
    ax.set_title(title or "Per-block quantization error")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig
