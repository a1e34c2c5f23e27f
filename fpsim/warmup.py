"""Compile fpsim's Numba kernels ahead of time, one *kernel family* at a time.

Why: fpsim's kernels are compiled by Numba on their first call and cached on disk
(``__pycache__`` next to the sources, or ``$NUMBA_CACHE_DIR``); on a cold cache the first
block-format quantize, scaled int4 or tensor-core matmul compiles for tens of seconds. A
family is the set of kernels one kind of call needs; :func:`warmup` makes that first call on
a tiny input, so that the compile happens now (with a progress bar) instead of in the
middle of a script. ``fpsim warmup`` is the command-line form.

The same table drives ``benchmarks/bench_coldstart.py`` (the cold compile time of each
family) and the first-use notice of :mod:`fpsim.kernels._notice` (its ``estimate`` column).

``fpsim.warmup`` is the function :func:`warmup` (this module stays importable as
``from fpsim.warmup import families``):

>>> import fpsim
>>> from fpsim.warmup import families
>>> "block-mxfp4" in families()
True
>>> fpsim.warmup(["quantize-e4m3"], progress=False)["quantize-e4m3"] >= 0
True
"""

from __future__ import annotations

import difflib
import importlib.util
import time
from typing import Callable, NamedTuple

import numpy as np

# warmup is the last module `import fpsim` runs: everything it calls is loaded by then
from .accum import Blocked, Exact, Kahan, Pairwise, Sequential, dot, matmul
from .arith import add, fma, lmul, mul
from .hardware import fp8_promoted, mma, tensor_core
from .kernels import _notice
from .rounding import quantize


class Family(NamedTuple):
    """One kernel family: what it covers, its cold compile time and the call that compiles it."""

    name: str
    what: str  # the user-facing calls that need these kernels
    estimate: float  # seconds to compile on a cold cache (2 cores; docs/benchmarks.md)
    run: Callable[[], object]  # the first call, on a tiny input
    torch: bool = False  # needs torch (skipped by ``warmup(all)`` when it is not installed)
    common: bool = False  # compiled by ``fpsim report``; ``fpsim warmup`` with no names


def _x(shape=(4, 64), dtype=np.float32):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


def _q(fmt, **kw):
    def run():
        return quantize(_x(), fmt, **kw)
    return run


def _arith():
    a, b = _x((64,)), _x((64,))
    return add(a, b, "bf16"), mul(a, b, "e4m3"), fma(a, b, a, "fp16")


def _lmul():
    return lmul(_x((64,)), _x((64,)), 3)


def _exact_x(shape):
    """Multiples of 1/4 up to 2: values of every input format of the models below."""
    return (np.random.default_rng(0).integers(-8, 9, shape) / 4).astype(np.float32)


def _acc(make):
    def run():
        m = make()
        A, B = _exact_x((4, 32)), _exact_x((32, 4))
        return dot(A[0], B[:, 0], model=m), matmul(A, B, model=m)
    return run


def _seq():
    return Sequential("bf16")


def _pairwise():
    return Pairwise("fp32")


def _blocked():
    return Blocked(8, Sequential("fp32"), Sequential("fp32"))


def _tensor_core():
    return tensor_core("A100", "bf16")


def _promoted():
    return fp8_promoted("H100", "e4m3")


def _packed_gemm():
    A, B = quantize(_exact_x((4, 32)), "bf16"), quantize(_exact_x((32, 4)), "bf16")
    return matmul(A, B, model=tensor_core("H100", "bf16"))


def _exact():
    return Exact("fp32")


def _kahan():
    return Kahan("fp32")


def _seq32():
    return Sequential("fp32")  # float32 data: the register-blocked GEMM kernel


def _mfma():
    return mma("CDNA3", "v_mfma_f32_32x32x8_bf16")


def _block_scaled():
    m = mma("Blackwell", "tcgen05.mma.m128n256k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue4m3")
    A, B = quantize(_exact_x((4, 64)), "e2m1"), quantize(_exact_x((64, 4)), "e2m1")
    sa, sb = np.ones((4, 4)), np.ones((4, 4))
    return (dot(A[0], B[:, 0], model=m, a_scale=sa[0], b_scale=sb[:, 0]),
            matmul(A, B, model=m, a_scale=sa, b_scale=sb))


def _torch_quantize():
    import torch

    import fpsim.torch as ft
    t = torch.from_numpy(_x())
    return ft.quantize(t, "e4m3"), ft.quantize(t, "mxfp4")


def _torch_emulate():
    import torch

    import fpsim.torch as ft
    lin = torch.nn.Linear(32, 8)
    with torch.no_grad(), ft.emulate("h100_fp8"):
        return lin(torch.from_numpy(_x((4, 32))))


_FAMILIES = [
    Family("quantize-e4m3", "quantize/encode/decode to FP8 and other small floats", 3, _q("e4m3"),
           common=True),
    Family("quantize-bf16", "quantize to bf16/fp16 (float32 fast path)", 3, _q("bf16"), common=True),
    Family("block-mxfp4", "MX block formats with FP4/FP6 elements", 45, _q("mxfp4"), common=True),
    Family("block-mxfp8", "MX block formats with FP8 elements", 45, _q("mxfp8_e4m3"), common=True),
    Family("block-nvfp4", "NVFP4 (E4M3 block scales, a tensor scale)", 45, _q("nvfp4"),
           common=True),
    Family("scaled-int4", "per-tensor/channel/group scaled formats (int4 per channel)", 45,
           _q("scaled[int4,channel,fp32,axis=0]"), common=True),
    Family("table-nf4", "table formats: NF4, dINT, codebooks", 5, _q("nf4"), common=True),
    Family("arith", "add/sub/mul/div/fma/sqrt in any format", 35, _arith),
    Family("lmul", "L-Mul multiplication (fpsim.lmul)", 15, _lmul),
    Family("accum-sequential", "dot/matmul, Sequential accumulation", 40, _acc(_seq), common=True),
    Family("accum-pairwise", "dot/matmul, Pairwise accumulation", 10, _acc(_pairwise),
           common=True),
    Family("accum-kahan", "dot/matmul, Kahan accumulation", 10, _acc(_kahan), common=True),
    Family("accum-blocked", "dot/matmul, Blocked (split-K) accumulation", 10, _acc(_blocked),
           common=True),
    Family("accum-tensor-core", "dot/matmul, FusedBlock: GPU tensor-core presets, mma()", 30,
           _acc(_tensor_core), common=True),
    Family("accum-promoted", "dot/matmul, Promoted (FP8 promote every 128)", 30, _acc(_promoted),
           common=True),
    Family("accum-exact", "dot/matmul, Exact accumulation", 10, _acc(_exact), common=True),
    Family("accum-gemm-fp32", "matmul, Sequential fp32 on float32 data (blocked GEMM kernel)", 20,
           _acc(_seq32), common=True),
    Family("accum-gemm-tensor-core", "matmul, FusedBlock/Promoted on declared input formats "
           "(packed tensor-core GEMM kernel)", 25, _packed_gemm, common=True),
    Family("accum-mfma", "dot/matmul, AMD CDNA matrix cores (hardware.mma v_mfma_*)", 30,
           _acc(_mfma)),
    Family("accum-block-scaled", "dot/matmul, block-scaled MMA (MXFP8/MXFP4/NVFP4 kinds)", 30,
           _block_scaled),
    Family("torch-quantize", "fpsim.torch.quantize (plain and block formats)", 60,
           _torch_quantize, torch=True),
    Family("torch-emulate", "fpsim.torch.emulate of a model (h100_fp8 profile)", 60,
           _torch_emulate, torch=True),
]

FAMILIES = {f.name: f for f in _FAMILIES}


def families() -> list:
    """Names of the kernel families, in warm-up order.

    >>> families()[0]
    'quantize-e4m3'
    """
    return list(FAMILIES)


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def _select(names) -> list:
    if names is None:
        return [f for f in _FAMILIES if f.common]
    if names == "all":
        return [f for f in _FAMILIES if not f.torch or _has_torch()]
    out = []
    for n in ([names] if isinstance(names, str) else list(names)):
        if n not in FAMILIES:
            near = difflib.get_close_matches(n, FAMILIES, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ValueError(f"unknown kernel family {n!r}{hint}; known: {', '.join(FAMILIES)}")
        out.append(FAMILIES[n])
    return out


def warmup(families=None, *, progress=True) -> dict:
    """Compile the kernels of ``families`` now; returns ``{family: seconds}``.

    ``families``: ``None`` (the common families, those ``fpsim report`` uses), ``"all"``
    (every family; torch ones only when torch is installed) or a list of names from
    :func:`families`. A warm family takes milliseconds. The first-use notices are silenced
    meanwhile (the progress bar says what is compiling).

    >>> warmup(["table-nf4"], progress=False)["table-nf4"] < 600
    True
    """
    sel = _select(families)
    times = {}
    from tqdm.auto import tqdm
    bar = tqdm(sel, desc="fpsim warmup", unit="family", disable=not progress)
    with _notice.quiet():
        for f in bar:
            bar.set_postfix_str(f"{f.name} (cold: about {f.estimate:.0f} s)", refresh=True)
            t = time.perf_counter()
            f.run()
            times[f.name] = time.perf_counter() - t
    bar.close()
    return times
