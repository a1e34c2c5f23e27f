"""Accumulation figures: error growth of dot products with their length K.

The numbers come from :func:`fpsim.accum.error_growth`; this module draws them (the core
never imports matplotlib).
"""

from __future__ import annotations

import numpy as np

from .. import hardware as _H
from ..accum import Blocked, Exact, Kahan, Pairwise, Promoted, Sequential, error_growth
from ._common import new_figure

__all__ = ["error_growth_models", "plot_error_growth"]


def error_growth_models() -> dict:
    """The default models of :func:`plot_error_growth`: fp32 software loops, split-K, exact,
    bf16, and the A100 bf16 and Ada FP8 tensor cores (also promoted every 128 products).

    >>> import fpsim.analysis as fa
    >>> sorted(fa.error_growth_models())[:2]
    ['A100 tensor core (bf16)', 'Ada FP8 (e4m3)']
    """
    return {
        "Sequential fp32": Sequential("fp32", fma=True),
        "Pairwise fp32": Pairwise("fp32"),
        "Kahan fp32": Kahan("fp32"),
        "Blocked(32) fp32": Blocked(32, Sequential("fp32", fma=True)),
        "Exact fp32": Exact("fp32"),
        "A100 tensor core (bf16)": _H.tensor_core("A100", "bf16"),
        "Sequential bf16": Sequential("bf16", fma=True),
        "Ada FP8 (e4m3)": _H.tensor_core("Ada", "e4m3"),
        "Ada FP8, promoted every 128": Promoted(_H.tensor_core("Ada", "e4m3"), every=128),
    }


def plot_error_growth(models=None, Ks=(32, 128, 512, 2048, 8192), trials=32, seed=0,
                      in_fmt="bf16", statistic="mean"):
    """A matplotlib Figure: relative error of a length-K dot product against K, per model.

    ``models`` (``{name: model}``; default :func:`error_growth_models`) and the other
    arguments are those of :func:`fpsim.accum.error_growth`. Exact results (error 0) are
    not drawn on the log axes. The figure is not registered with pyplot (no global state).

    >>> import fpsim, fpsim.analysis as fa
    >>> fig = fa.plot_error_growth({"seq": fpsim.accum.Sequential("fp32")}, Ks=(8, 16), trials=2)
    >>> type(fig).__name__
    'Figure'
    """
    models = error_growth_models() if models is None else models
    errs = error_growth(models, Ks, trials, seed, in_fmt, statistic)
    fig, axes = new_figure(figsize=(7.5, 5))
    ax = axes[0, 0]
    for name, e in errs.items():
        ax.loglog(Ks, np.where(e > 0, e, np.nan), marker="o", label=name)  # 0: exact
    u = 2.0**-24
    ax.loglog(Ks, [K * u for K in Ks], "k--", lw=0.8, label="K·u (fp32 bound scale)")
    ax.set_xlabel("dot-product length K")
    ax.set_ylabel(f"{statistic} relative error")
    ax.set_title(f"Error growth of accumulation models ({in_fmt} inputs in [0, 1))")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return fig
