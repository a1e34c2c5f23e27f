"""Error growth: the relative error of length-K dot products against K, per model.

The numbers behind ``fpsim report``'s accumulation section and
:func:`fpsim.analysis.plot_error_growth` (the core draws nothing: no matplotlib here).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..rounding import quantize
from .api import dot
from .models import Exact

__all__ = ["error_growth"]

_STATISTICS = {"mean": np.mean, "median": np.median}


def error_growth(models, Ks=(32, 128, 512, 2048, 8192), trials=32, seed=0, in_fmt="bf16",
                 statistic="mean"):
    """Relative error of length-K dot products per model: ``{name: array over Ks}``.

    ``models`` maps names to accumulation models. For each K, ``trials`` pairs of vectors
    uniform in [0, 1) are rounded into ``in_fmt`` (positive terms, so errors accumulate)
    and, for a model with an input format of its own, into that format; each result is
    compared with the exact dot product (rounded once to float64, far more accurate than
    any model here) and the relative errors are reduced by ``statistic`` (``"mean"`` or
    ``"median"``). The same ``seed`` gives the same inputs for every model.

    >>> import fpsim
    >>> e = fpsim.accum.error_growth({"seq": fpsim.accum.Sequential("fp32")}, Ks=(8,), trials=2)
    >>> e["seq"].shape
    (1,)
    """
    if not isinstance(models, Mapping) or not models:
        raise TypeError("error_growth needs a dict {name: accumulation model} (a default set "
                        f"with tensor cores is fpsim.analysis.error_growth_models()), got {models!r}")
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic={statistic!r}: allowed {', '.join(_STATISTICS)}")
    reduce = _STATISTICS[statistic]
    # the exact products (inputs of <= 26 bits) summed exactly, rounded once: correctly
    # rounded, so the reference adds no error of its own beyond half an fp64 ulp
    reference = Exact("fp64")
    rng = np.random.default_rng(seed)
    out = {name: [] for name in models}
    for K in Ks:
        a = quantize(rng.random((trials, K)), in_fmt)
        b = quantize(rng.random((trials, K)), in_fmt)
        ref = dot(a, b, model=reference)
        for name, m in models.items():
            fin = m.in_fmt
            aa, bb = (a, b) if fin is None else (quantize(a, fin), quantize(b, fin))
            r = ref if fin is None else dot(aa, bb, model=reference)
            d = dot(aa, bb, model=m)
            out[name].append(float(reduce(np.abs(d - r) / np.abs(r))))
    return {k: np.array(v) for k, v in out.items()}
