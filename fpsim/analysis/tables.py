"""Format tables and rounding-error summaries (plain data: lists of dicts)."""

from __future__ import annotations

import numpy as np

from ..formats import MAX_TABLE_BITS, Format, as_format, list_formats
from ..rounding import quantize


def format_list(formats, what="formats") -> list:
    """``formats`` as a list: a single name or Format means that one format (not its
    characters), otherwise an iterable of names / Formats.

    >>> format_list("e4m3"), format_list(["e4m3", "mxfp4"])
    (['e4m3'], ['e4m3', 'mxfp4'])
    """
    if isinstance(formats, (str, Format)):
        return [formats]
    try:
        out = list(formats)
    except TypeError:
        raise TypeError(f"{what} must be a format name, a Format or a list of them, got "
                        f"{type(formats).__name__}") from None
    for f in out:
        if not isinstance(f, (str, Format)):
            raise TypeError(f"{what}: {f!r} is not a format name or Format")
    if not out:
        raise ValueError(f"{what} is empty: give at least one format name")
    return out


def _specials(fmt) -> str:
    parts = []
    if getattr(fmt, "has_inf", False):
        parts.append("inf")
    if getattr(fmt, "has_nan", False):
        parts.append("NaN")
    if getattr(fmt, "has_negzero", False):
        parts.append("-0")
    if not getattr(fmt, "has_zero", True):
        parts.append("no zero")
    return ", ".join(parts) or "none"


def format_table(names=None) -> list:
    """One row per format: bits, max, smallest normal and subnormal, eps, #values, specials.

    Block formats (``mxfp4``, ``nvfp4``, ``block[...]``) get their storage bits per element
    (the scale amortised), the largest and smallest magnitudes over all scales, the
    element's eps, and their layout in the last column.

    >>> rows = format_table(["e4m3", "e2m1"])
    >>> rows[1]["max"], rows[1]["values"]
    (6.0, 15)
    """
    rows = []
    for n in (format_list(names, "names") if names is not None else list_formats()):
        f = as_format(n)
        if getattr(f, "kind", None) == "scaled":
            # one scale per tensor/channel/group chosen from the data: range is the element's
            # times the scale format's
            rows.append({
                "name": f.name, "bits": f.bits, "max": f.max, "min_normal": None,
                "min_subnormal": f.elem.min_subnormal * f.scale.min_subnormal, "eps": f.eps,
                "values": None,
                "specials": f"{f.elem.name} × {f.scale.name} scale per {f.granularity}"
                            + (f" of {f.group}" if f.group else ""),
            })
            continue
        if getattr(f, "kind", None) == "block":
            # storage bits per element with the scale amortised; values depend on the scale
            rows.append({
                "name": f.name, "bits": f.bits, "max": f.max, "min_normal": None,
                "min_subnormal": f.min_subnormal, "eps": f.eps, "values": None,
                "specials": f"{f.elem.name} × {f.scale.name} scale per {f.block}"
                            + (f", {f.tensor_scale.name} tensor scale" if f.tensor_scale else ""),
            })
            continue
        rows.append({
            "name": f.name,
            "bits": f.bits,
            "max": f.max,
            "min_normal": f.min_normal,
            "min_subnormal": f.min_subnormal,
            "eps": f.eps,
            "values": int(f.values().size) if f.bits <= MAX_TABLE_BITS else None,
            "specials": _specials(f),
        })
    return rows


_DISTRIBUTIONS = {
    "normal": lambda rng, n: rng.standard_normal(n),
    "laplace": lambda rng, n: rng.laplace(size=n),
    "student-t(3)": lambda rng, n: rng.standard_t(3, size=n),
}


def rounding_error_summary(names=None, *, n=100_000, seed=0, rounding="rne") -> list:
    """Relative RMS rounding error and SQNR (dB) of each format on unit-scale distributions.

    Values beyond the format's range saturate (the error of clipping is included).

    >>> r = rounding_error_summary(["bf16"], n=1000)[0]
    >>> 40 < r["sqnr_db[normal]"] < 60
    True
    """
    rng = np.random.default_rng(seed)
    data = {k: g(rng, n) for k, g in _DISTRIBUTIONS.items()}
    rows = []
    for nm in (format_list(names, "names") if names is not None else list_formats()):
        f = as_format(nm)
        row = {"name": f.name}
        for k, x in data.items():
            q = quantize(x, f, rounding=rounding, overflow="saturate")
            err = q - x
            row[f"sqnr_db[{k}]"] = float(10 * np.log10(np.sum(x * x) / max(np.sum(err * err), 1e-300)))
        rows.append(row)
    return rows


def to_markdown(rows: list) -> str:
    """Render rows (dicts with the same keys) as a Markdown table.

    >>> print(to_markdown([{"a": 1, "b": 0.5}]))
    | a | b |
    |---|---|
    | 1 | 0.5 |
    """
    if not rows:
        return ""
    keys = list(rows[0])
    out = ["| " + " | ".join(keys) + " |", "|" + "|".join("---" for _ in keys) + "|"]
    for r in rows:
        out.append("| " + " | ".join(_fmt(r[k]) for k in keys) + " |")
    return "\n".join(out)


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
