"""Error metrics of a format on data: abs/rel/ULP error, SQNR, bias, histograms, clip search.

Every function compares a result ``x`` with a reference ``ref`` (float64 or exact) or rounds
data into a format and measures what was lost (SPEC §6 "Errors").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..accum import exact_float64
from ..formats import CodebookFormat, DIntFormat, FixedFormat, FloatFormat, as_format
from ..rounding import quantize
from ._common import Result, new_figure

__all__ = ["abs_error", "rel_error", "ulp", "ulp_error", "sqnr", "bias", "sample", "DISTRIBUTIONS",
           "ErrorStats", "error_stats", "format_errors", "ErrorHistogram", "error_histogram",
           "ClipSearch", "clip_search"]


# ---------------------------------------------------------------------------------------
# Elementwise metrics
# ---------------------------------------------------------------------------------------

def _real(x, what) -> np.ndarray:
    """``x`` as a float64 array; complex and non-numeric input is refused, not reinterpreted.

    (``np.asarray(z, dtype=float)`` would silently drop the imaginary part of a complex
    array; bool, strings and objects are not data to measure errors on.)
    """
    if isinstance(x, complex) or (isinstance(x, np.ndarray) and x.dtype.kind == "c"):
        raise TypeError(f"{what}: complex input is not supported (the imaginary part would be "
                        "dropped); measure the real and imaginary parts separately")
    if type(x).__module__.startswith("torch"):
        raise TypeError(f"{what}: pass a numpy array (tensor.detach().cpu().numpy())")
    a = x if isinstance(x, np.ndarray) else np.asarray(x)
    if a.dtype.kind == "c":
        raise TypeError(f"{what}: complex input is not supported (the imaginary part would be "
                        "dropped); measure the real and imaginary parts separately")
    # the rest is the accumulation input rule: exact conversion to float64, or an error
    return exact_float64(x if isinstance(x, (list, tuple, int, float)) else a, what)


def _pair(x, ref):
    x = _real(x, "x")
    ref = _real(ref, "ref")
    if x.shape != ref.shape:
        raise ValueError(f"x and ref must have the same shape, got {x.shape} and {ref.shape}")
    return x, ref


def abs_error(x, ref) -> np.ndarray:
    """``|x - ref|`` elementwise (float64).

    >>> abs_error([1.0, 2.5], [1.0, 2.0]).tolist()
    [0.0, 0.5]
    """
    x, ref = _pair(x, ref)
    return np.abs(x - ref)


def rel_error(x, ref) -> np.ndarray:
    """``|x - ref| / |ref|`` elementwise; NaN where ``ref == 0`` (undefined there).

    >>> rel_error([1.5, 0.0, 1.0], [1.0, 0.0, 0.0]).tolist()
    [0.5, nan, nan]
    """
    x, ref = _pair(x, ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ref != 0, np.abs(x - ref) / np.abs(np.where(ref != 0, ref, 1.0)), np.nan)


def ulp(ref, fmt) -> np.ndarray:
    """Unit in the last place of ``fmt`` at each value of ``ref`` (float64).

    For floats the gap above ``|ref|`` in its binade (``2**(e - man_bits)``, the subnormal
    spacing below ``min_normal``, the top binade's spacing beyond ``max``); for integers
    and fixed point ``2**-frac_bits``; for table formats (codebooks, dINT) the gap between
    the two table values that bracket ``ref``.

    At ``±inf`` the ULP is ``inf`` and at NaN it is NaN (no spacing is defined there), so
    an error measured in ULPs is never a made-up finite number.

    Block and scaled formats (``mxfp4``, ``nvfp4``, ``scaled[...]``) have no ULP of their
    own - their spacing depends on the scale chosen for each block - so they raise
    TypeError here; :func:`error_stats` reports NaN ULP statistics for them.

    >>> ulp([1.0, 1.9, 3.0, 0.0], "bf16").tolist()
    [0.0078125, 0.0078125, 0.015625, 9.183549615799121e-41]
    >>> ulp([float("inf"), float("nan")], "e4m3").tolist()
    [inf, nan]
    """
    fmt = as_format(fmt)
    s = _real(ref, "ref")
    r = np.abs(s)
    if isinstance(fmt, FloatFormat):
        with np.errstate(invalid="ignore"):
            _, e = np.frexp(r)  # r = m * 2**e, 0.5 <= m < 1, so the binade exponent is e - 1
        e = np.where(r == 0, fmt.emin, np.clip(e - 1, fmt.emin, fmt.emax))
        out = np.ldexp(1.0, e - fmt.man_bits)
    elif isinstance(fmt, FixedFormat):
        out = np.full(r.shape, fmt.eps)
    elif isinstance(fmt, (CodebookFormat, DIntFormat)):
        v = fmt.values()
        gaps = np.diff(v)
        i = np.clip(np.searchsorted(v, np.where(np.isnan(s), 0.0, s), side="right") - 1, 0,
                    gaps.size - 1)
        out = gaps[i]
    else:
        raise TypeError(f"ulp: {fmt.name} has no ULP of its own (a {getattr(fmt, 'kind', type(fmt).__name__)} "
                        "format: its spacing depends on the scale of each block or channel); "
                        "use abs/rel errors or SQNR, or the ULP of its element format "
                        f"{getattr(getattr(fmt, 'elem', None), 'name', '')!r} on scaled data")
    out = np.where(np.isinf(s), np.inf, out)
    return np.where(np.isnan(s), np.nan, out)


def ulp_error(x, ref, fmt) -> np.ndarray:
    """``|x - ref|`` in units of ``fmt``'s ULP at ``ref`` (see :func:`ulp`).

    NaN where ``x`` or ``ref`` is NaN; where ``ref`` is ``±inf``, 0 if ``x`` equals it and
    ``inf`` otherwise; ``inf`` where a finite ``ref`` became ``±inf`` (overflow).

    >>> ulp_error([1.0078125, 3.0], [1.0, 3.0], "bf16").tolist()
    [1.0, 0.0]
    >>> inf = float("inf")
    >>> ulp_error([inf, inf, 1.0, float("nan")], [inf, 1.0, inf, 1.0], "e4m3").tolist()
    [0.0, inf, inf, nan]
    """
    x, ref = _pair(x, ref)
    u = ulp(ref, fmt)
    with np.errstate(invalid="ignore"):
        e = np.abs(x - ref) / u
    same_inf = np.isinf(ref) & (x == ref)
    e = np.where(same_inf, 0.0, e)
    e = np.where(np.isinf(ref) & ~same_inf & ~np.isnan(x), np.inf, e)
    return np.where(np.isnan(x) | np.isnan(ref), np.nan, e)


def sqnr(x, ref) -> float:
    """Signal-to-quantisation-noise ratio in dB: ``10 log10(Σ ref² / Σ (x - ref)²)``.

    ``inf`` when ``x == ref`` exactly.

    >>> round(sqnr([1.1, 2.0], [1.0, 2.0]), 6)
    26.9897
    """
    x, ref = _pair(x, ref)
    noise = float(np.sum((x - ref) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(signal / noise)) if signal > 0 else float("-inf")


def bias(x, ref) -> float:
    """Mean signed error ``mean(x - ref)`` (systematic rounding drift, e.g. of ``rtz``).

    >>> bias([1.0, 2.5], [1.5, 2.0])
    0.0
    """
    x, ref = _pair(x, ref)
    if x.size == 0:
        raise ValueError("bias of empty arrays is undefined")
    return float(np.mean(x - ref))


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------

#: Named unit-scale distributions for :func:`sample`.
DISTRIBUTIONS = ("normal", "laplace", "student-t", "uniform")


def sample(dist: str = "normal", n: int = 100_000, *, seed: int = 0, scale: float = 1.0,
           df: float = 3.0) -> np.ndarray:
    """``n`` float64 draws from a named distribution (see :data:`DISTRIBUTIONS`).

    ``"student-t"`` uses ``df`` degrees of freedom (heavy tails, like LLM activations);
    ``"uniform"`` is on ``[-scale, scale]``.

    >>> sample("laplace", 3, seed=1).shape
    (3,)
    """
    rng = np.random.default_rng(seed)
    if dist == "normal":
        x = rng.standard_normal(n)
    elif dist == "laplace":
        x = rng.laplace(size=n)
    elif dist in ("student-t", "t"):
        x = rng.standard_t(df, size=n)
    elif dist == "uniform":
        x = rng.uniform(-1.0, 1.0, size=n)
    else:
        raise ValueError(f"dist={dist!r} is unknown; choose one of {', '.join(DISTRIBUTIONS)}")
    return x * scale


def _data(data, dist, n, seed, scale):
    if data is None:
        return sample(dist, n, seed=seed, scale=scale)
    d = _real(data, "data").ravel()
    if d.size == 0:
        raise ValueError("data is empty")
    return d


# ---------------------------------------------------------------------------------------
# Summary statistics
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ErrorStats(Result):
    """Summary of the error of ``x`` against ``ref`` (all float).

    For a figure, use :func:`error_histogram` (which also carries these stats).
    """

    format: str
    n: int
    mse: float
    rmse: float
    mean_abs: float
    max_abs: float
    mean_rel: float
    max_rel: float
    mean_ulp: float
    max_ulp: float
    sqnr_db: float
    bias: float
    clipped: float  #: fraction of |ref| beyond the format's max
    flushed: float  #: fraction of nonzero ref that became 0

    def to_records(self) -> list:
        return [dict(self.__dict__)]


def _has_ulp(f) -> bool:
    return isinstance(f, (FloatFormat, FixedFormat, CodebookFormat, DIntFormat))


def _max(f) -> float:
    """Largest magnitude a format can represent (block formats: over all scales); inf for
    per-tensor/channel scaled formats, whose scale follows the data (nothing clips)."""
    if getattr(f, "kind", None) == "scaled" or getattr(f, "tensor_scale", None) is not None:
        return float("inf")
    m = getattr(f, "max", None)
    return float(m) if m is not None else float("inf")


def error_stats(x, ref, fmt=None) -> ErrorStats:
    """Error summary of ``x`` (e.g. a quantised tensor) against ``ref``.

    ULP statistics are in units of ``fmt``; they are NaN when ``fmt`` is None or a block /
    scaled format (``mxfp4``, ``nvfp4``, ``scaled[...]``: no ULP of their own, the spacing
    depends on each block's scale) - every other statistic is computed for every format.
    Relative errors skip ``ref == 0``. A NaN or infinite value in ``x`` or ``ref`` makes
    the statistics that include it NaN or inf (never a finite made-up number).

    >>> s = error_stats([1.0, 2.5], [1.0, 2.0], "bf16")
    >>> s.max_abs, s.max_rel, s.max_ulp
    (0.5, 0.25, 32.0)
    """
    x, ref = _pair(x, ref)
    if x.size == 0:
        raise ValueError("x and ref are empty")
    f = as_format(fmt) if fmt is not None else None
    d = x - ref
    a = np.abs(d)
    r = rel_error(x, ref)
    nz = ref != 0
    u = ulp_error(x, ref, f) if _has_ulp(f) else np.full(x.shape, np.nan)
    with np.errstate(invalid="ignore"):
        return ErrorStats(
            format=f.name if f is not None else "-",
            n=int(x.size),
            mse=float(np.mean(d * d)),
            rmse=float(np.sqrt(np.mean(d * d))),
            mean_abs=float(np.mean(a)),
            max_abs=float(np.max(a)),
            mean_rel=float(np.mean(r[nz])) if nz.any() else float("nan"),
            max_rel=float(np.max(r[nz])) if nz.any() else float("nan"),
            mean_ulp=float(np.mean(u)),
            max_ulp=float(np.max(u)),
            sqnr_db=sqnr(x, ref),
            bias=float(np.mean(d)),
            clipped=float(np.mean(np.abs(ref) > _max(f))) if f is not None else float("nan"),
            flushed=float(np.mean((x == 0) & nz)),
        )


def format_errors(fmt, data=None, *, dist="normal", n=100_000, seed=0, scale=1.0,
                  rounding="rne", overflow="saturate") -> ErrorStats:
    """Round ``data`` (or ``n`` draws of ``dist``) into ``fmt`` and summarise the error.

    Every format fpsim has works: block formats (``"mxfp4"``, ``"nvfp4"``, blocked along
    the data), scaled formats (``"scaled[int8,tensor,fp32]"``) and table formats
    (``"nf4"``); for block and scaled formats the ULP statistics are NaN (see
    :func:`error_stats`).

    >>> s = format_errors("e4m3", [0.3, 1000.0])
    >>> s.clipped, s.max_abs
    (0.5, 552.0)
    >>> s = format_errors("mxfp4", n=1024)
    >>> 15 < s.sqnr_db < 25, s.max_ulp
    (True, nan)
    """
    d = _data(data, dist, n, seed, scale)
    q = quantize(d, fmt, rounding=rounding, overflow=overflow)
    return error_stats(q, d, fmt)


# ---------------------------------------------------------------------------------------
# Histograms
# ---------------------------------------------------------------------------------------

_KINDS = ("abs", "rel", "ulp", "signed")


@dataclass(frozen=True)
class ErrorHistogram(Result):
    """Histogram of the rounding error of a format on data, plus the data itself."""

    format: str
    kind: str
    edges: np.ndarray
    counts: np.ndarray
    data: np.ndarray = field(repr=False)
    stats: ErrorStats = field(repr=False)

    def to_records(self) -> list:
        return [{"lo": float(a), "hi": float(b), "count": int(c)}
                for a, b, c in zip(self.edges[:-1], self.edges[1:], self.counts)]

    def plot(self):
        """Two panels: the data's histogram with the format's grid, and the error histogram."""
        fig, ax = new_figure(1, 2, figsize=(10, 3.6))
        a0, a1 = ax[0]
        lo, hi = np.quantile(self.data, [0.001, 0.999])
        a0.hist(self.data, bins=200, range=(lo, hi), color="0.6", density=True)
        f = as_format(self.format)
        if _has_ulp(f) and f.bits <= 16:  # the format's values as a rug along the bottom
            v = f.values()
            v = v[(v >= lo) & (v <= hi)]
            a0.vlines(v, 0, 0.06, transform=a0.get_xaxis_transform(), color="C0", lw=0.8)
        a0.set(title=f"data and {self.format} values (ticks)", xlabel="value", ylabel="density")
        w = np.diff(self.edges)
        a1.bar(self.edges[:-1], self.counts, width=w, align="edge", color="C1")
        label = {"abs": "|x̂ − x|", "rel": "|x̂ − x| / |x|", "ulp": "error (ULP)",
                 "signed": "x̂ − x"}[self.kind]
        a1.set(title=f"{self.format}: SQNR {self.stats.sqnr_db:.1f} dB", xlabel=label, ylabel="count")
        return fig


def error_histogram(fmt, data=None, *, dist="normal", n=100_000, seed=0, scale=1.0,
                    kind="rel", bins=50, rounding="rne", overflow="saturate") -> ErrorHistogram:
    """Histogram of the rounding error of ``fmt`` on ``data`` (or draws of ``dist``).

    ``kind``: ``"abs"``, ``"rel"`` (skips zeros), ``"ulp"`` or ``"signed"``.

    >>> h = error_histogram("e2m1", [0.25, 0.75, 1.25, 5.0], kind="abs", bins=2)
    >>> h.counts.tolist(), h.edges.tolist()
    ([3, 1], [0.25, 0.625, 1.0])
    """
    if kind not in _KINDS:
        raise ValueError(f"kind={kind!r}: choose one of {', '.join(_KINDS)}")
    f = as_format(fmt)
    d = _data(data, dist, n, seed, scale)
    q = quantize(d, f, rounding=rounding, overflow=overflow)
    if kind == "abs":
        e = abs_error(q, d)
    elif kind == "rel":
        e = rel_error(q, d)
        e = e[np.isfinite(e)]
    elif kind == "ulp":
        e = ulp_error(q, d, f)
    else:
        e = q - d
    counts, edges = np.histogram(e, bins=bins)
    return ErrorHistogram(f.name, kind, edges, counts, d, error_stats(q, d, f))


# ---------------------------------------------------------------------------------------
# Clip / scale search
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClipSearch(Result):
    """Best clipping threshold for ``scale * Q(x / scale)`` with ``scale = clip / fmt.max``."""

    format: str
    amax: float
    clip: float
    scale: float
    mse: float
    mse_noclip: float
    clips: np.ndarray = field(repr=False)
    mses: np.ndarray = field(repr=False)

    def to_records(self) -> list:
        return [{"format": self.format, "amax": self.amax, "clip": self.clip, "scale": self.scale,
                 "clip/amax": self.clip / self.amax, "mse": self.mse, "mse_noclip": self.mse_noclip}]

    def plot(self):
        """MSE against the clipping threshold, the optimum marked."""
        fig, ax = new_figure()
        a = ax[0, 0]
        a.plot(self.clips / self.amax, self.mses, ".-", ms=3)
        a.axvline(self.clip / self.amax, color="C3", ls="--", label=f"best: {self.clip / self.amax:.3f}·amax")
        a.set(xlabel="clip / amax", ylabel="MSE", yscale="log", title=f"clip search: {self.format}")
        a.legend()
        return fig


def _clip_mse(x, f, clip, rounding):
    s = clip / f.max
    q = quantize(x / s, f, rounding=rounding, overflow="saturate") * s
    return float(np.mean((q - x) ** 2))


def clip_search(data, fmt, *, n_grid: int = 64, refine: bool = True, power_of_two: bool = False,
                rounding: str = "rne") -> ClipSearch:
    """Find the clipping threshold (equivalently the scale) that minimises the MSE of ``fmt``.

    Values are scaled by ``clip / fmt.max``, rounded with saturation, and scaled back.
    Candidates: ``n_grid`` thresholds in ``(0, amax]``, then a bounded scalar refinement
    around the best one (``refine``). ``power_of_two`` restricts scales to powers of two
    (as MX block scales), searched over every exponent that matters.

    >>> r = clip_search([-3.0, -1.0, 0.0, 1.0, 3.0], "int2")
    >>> r.mse <= r.mse_noclip
    True
    """
    f = as_format(fmt)
    if not _has_ulp(f):
        raise TypeError(f"clip_search: {f.name} chooses its own scales (a "
                        f"{getattr(f, 'kind', '')} format); search the clip of its element "
                        "format instead")
    x = _real(data, "data").ravel()
    if x.size == 0:
        raise ValueError("data is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError("data must be finite")
    amax = float(np.max(np.abs(x)))
    if amax == 0:
        raise ValueError("data is all zeros: no scale to search")
    if n_grid < 2:
        raise ValueError(f"n_grid={n_grid}: need at least 2 candidates")
    if power_of_two:
        top = int(np.ceil(np.log2(amax / f.max)))
        scales = np.ldexp(1.0, np.arange(top - n_grid + 1, top + 1))
        clips = scales * f.max
    else:
        clips = amax * np.arange(1, n_grid + 1) / n_grid
    mses = np.array([_clip_mse(x, f, c, rounding) for c in clips])
    i = int(np.argmin(mses))
    best_c, best = float(clips[i]), float(mses[i])
    if refine and not power_of_two:
        from scipy.optimize import minimize_scalar

        lo, hi = clips[max(i - 1, 0)] if i > 0 else clips[0] / 2, clips[min(i + 1, len(clips) - 1)]
        res = minimize_scalar(lambda c: _clip_mse(x, f, c, rounding), bounds=(lo, hi), method="bounded",
                              options={"xatol": amax * 1e-6})
        if res.fun < best:
            best_c, best = float(res.x), float(res.fun)
    order = np.argsort(clips)
    return ClipSearch(f.name, amax, best_c, best_c / f.max, best, _clip_mse(x, f, amax, rounding),
                      clips[order], mses[order])
