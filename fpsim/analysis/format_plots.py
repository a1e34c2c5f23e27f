"""Format comparison: a table of range/precision/SQNR and three plots.

* :func:`plot_value_grid` — every positive value of each format on a log axis;
* :func:`plot_relative_precision` — relative spacing ``ulp(x) / x`` against magnitude;
* :func:`plot_dynamic_range` — the normal and subnormal ranges as bars (log2 scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..formats import MAX_TABLE_BITS, FloatFormat, as_format
from ._common import Result, new_figure
from .errors import format_errors, sample, ulp
from .tables import format_list, format_table

__all__ = ["FormatComparison", "compare_formats", "plot_value_grid", "plot_relative_precision",
           "plot_dynamic_range"]


@dataclass(frozen=True)
class FormatComparison(Result):
    """One row per format: range, precision and SQNR on each distribution."""

    rows: tuple

    def to_records(self) -> list:
        return [dict(r) for r in self.rows]

    def plot(self):
        """Bar chart of SQNR (dB) per format and distribution."""
        fig, ax = new_figure(figsize=(7, 3.6))
        a = ax[0, 0]
        keys = [k for k in self.rows[0] if k.startswith("sqnr_db[")]
        names = [r["name"] for r in self.rows]
        w = 0.8 / max(len(keys), 1)
        for j, k in enumerate(keys):
            a.bar(np.arange(len(names)) + j * w, [r[k] for r in self.rows], width=w, label=k[8:-1])
        a.set_xticks(np.arange(len(names)) + 0.4 - w / 2, names)
        a.set(ylabel="SQNR (dB)", title="rounding SQNR per format (saturating, unit scale)")
        a.legend()
        return fig


def compare_formats(formats, *, dists=("normal", "laplace", "student-t"), n=20_000, seed=0,
                    rounding="rne") -> FormatComparison:
    """Range/precision table (:func:`format_table`) joined with the SQNR on ``dists``.

    >>> c = compare_formats(["e4m3", "e5m2"], dists=("normal",), n=2000)
    >>> [r["name"] for r in c.to_records()], c.to_records()[0]["sqnr_db[normal]"] > 25
    (['e4m3', 'e5m2'], True)

    A single name is one format; block, scaled and table formats are compared on the same
    data (their scales chosen by fpsim, blocks along the sample):

    >>> [r["name"] for r in compare_formats("e4m3", dists=("normal",), n=256).to_records()]
    ['e4m3']
    """
    formats = format_list(formats)
    rows = format_table([as_format(f).name if not isinstance(f, str) else f for f in formats])
    data = {d: sample(d, n, seed=seed) for d in dists}
    for row, f in zip(rows, formats):
        lo = row["min_subnormal"]
        row["dynamic_range_log2"] = float(np.log2(row["max"] / lo)) if lo else None
        for d, x in data.items():
            row[f"sqnr_db[{d}]"] = format_errors(f, x, rounding=rounding).sqnr_db
    return FormatComparison(tuple(rows))


def _fmts(formats):
    return [as_format(f) for f in format_list(formats)]


def plot_value_grid(formats):
    """Every positive finite value of each format (≤ 16 bits) as a tick on a log2 axis.

    >>> fig = plot_value_grid(["e2m1", "e3m2"])
    >>> fig.axes[0].get_xlabel()
    'value (log scale)'
    """
    fs = _fmts(formats)
    fig, ax = new_figure(figsize=(8, 0.6 + 0.5 * len(fs)))
    a = ax[0, 0]
    for i, f in enumerate(fs):
        if not hasattr(f, "values"):  # block/scaled formats: their values depend on the scales
            raise TypeError(f"{f.name} has no value grid of its own (its values depend on its "
                            f"scales); plot its element format {f.elem.name!r}")
        if f.bits > MAX_TABLE_BITS:
            raise ValueError(f"{f.name} has {f.bits} bits; value grids need at most {MAX_TABLE_BITS}")
        v = f.values()
        v = v[v > 0]
        a.plot(v, np.full(v.size, i), "|", ms=12, mew=1)
    a.set_yticks(range(len(fs)), [f.name for f in fs])
    a.set(xscale="log", xlabel="value (log scale)", title="positive values of each format")
    a.set_xscale("log", base=2)
    a.set_ylim(-0.7, len(fs) - 0.3)
    return fig


def plot_relative_precision(formats, *, lo=None, hi=None, n=4000):
    """Relative spacing ``ulp(x) / x`` of each format against the magnitude ``x``.

    ``lo``/``hi`` default to the smallest subnormal and the max over all formats.

    >>> fig = plot_relative_precision(["bf16", "fp16"])
    >>> fig.axes[0].get_ylabel()
    'relative spacing ulp(x)/x'
    """
    fs = _fmts(formats)
    lo = lo if lo is not None else min(f.min_subnormal for f in fs)
    hi = hi if hi is not None else max(f.max for f in fs)
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got lo={lo}, hi={hi}")
    x = np.geomspace(lo, hi, n)
    fig, ax = new_figure(figsize=(7, 4))
    a = ax[0, 0]
    for f in fs:
        m = (x >= f.min_subnormal) & (x <= f.max)
        a.step(x[m], ulp(x[m], f) / x[m], where="post", label=f.name)
    a.set(xscale="log", yscale="log", xlabel="magnitude x", ylabel="relative spacing ulp(x)/x",
          title="relative precision vs magnitude")
    a.legend(fontsize="small")
    return fig


def plot_dynamic_range(formats):
    """Horizontal bars from the smallest subnormal to the max (log2), normals darker.

    >>> fig = plot_dynamic_range(["e4m3", "e5m2", "fp16"])
    >>> fig.axes[0].get_xlabel()
    'log2(magnitude)'
    """
    fs = _fmts(formats)
    fig, ax = new_figure(figsize=(7, 0.8 + 0.45 * len(fs)))
    a = ax[0, 0]
    for i, f in enumerate(fs):
        lo, mn, hi = np.log2(f.min_subnormal), np.log2(f.min_normal), np.log2(f.max)
        if isinstance(f, FloatFormat):
            a.barh(i, mn - lo, left=lo, color="C0", alpha=0.35)
            a.barh(i, hi - mn, left=mn, color="C0")
        else:
            a.barh(i, hi - lo, left=lo, color="C1")
        a.text(hi, i, f"  {hi - lo:.0f} binades", va="center", fontsize="small")
    a.set_yticks(range(len(fs)), [f.name for f in fs])
    a.set(xlabel="log2(magnitude)", title="dynamic range (light: subnormals)")
    return fig
