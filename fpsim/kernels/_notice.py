"""A one-line notice before a long first-use compile, so that a cold start is never silent.

Why: Numba compiles a kernel on its first call and caches it on disk; on a cold cache the
block, scaled and accumulation kernels take tens of seconds to compile (see
docs/benchmarks.md), which looks like a hang. :func:`first_call` wraps a kernel so that its
first call in the process checks, for free afterwards, whether Numba's cache holds an
entry for it; if not, one line per kernel family goes to stderr through :mod:`logging`
(logger ``fpsim.compile``; a notice, not a warning, so ``-W error`` cannot turn it into a
failure), e.g.::

    fpsim: compiling the block-format kernels (MX, NVFP4, scaled) (first use, about 60 s on
    2 cores; cached afterwards; `fpsim warmup` compiles ahead; FPSIM_COMPILE_NOTICE=0 silences)

Silenced by the environment variable ``FPSIM_COMPILE_NOTICE=0``, by :func:`quiet` (used
by :func:`fpsim.warmup.warmup`, which shows a progress bar instead) or by configuring the
``fpsim.compile`` logger. Known limit: a kernel whose cache holds *another* signature (a
float64 input after a float32 one) recompiles without a notice.

>>> from fpsim.kernels import _notice
>>> _notice.family_of("block_round", "block_round_rows")
'block'
"""

from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger("fpsim.compile")

ENV = "FPSIM_COMPILE_NOTICE"

# kernel module -> (family label, what it covers, cold compile estimate in s on 2 cores, from
# benchmarks/bench_coldstart.py). Families that compile in about 2 s or less are not listed.
_FAMILY = {
    "block_round": ("block", "block-format kernels (MX, NVFP4, scaled formats)", 45),
    "accum": ("accum", "accumulation kernels (dot/matmul/sum models, tensor cores)", 40),
    "arith": ("arith", "arithmetic kernels (add/mul/fma/div/sqrt)", 35),
    "lmul": ("lmul", "L-Mul kernels", 15),
    "gemm_fused": ("gemm-fused", "packed tensor-core GEMM kernel (matmul with FusedBlock, "
                   "Blocked and Promoted models)", 25),
}

_STATE = {"quiet": 0, "said": set()}


def family_of(module: str, name: str):
    """The notice family of kernel ``name`` of ``fpsim.kernels.<module>`` (None: no notice).

    >>> family_of("float_round", "quantize_serial") is None
    True
    """
    f = _FAMILY.get(module)
    return f[0] if f else None


def enabled() -> bool:
    """Whether notices are on (not silenced by the environment or :func:`quiet`).

    >>> with quiet():
    ...     enabled()
    False
    """
    return _STATE["quiet"] == 0 and os.environ.get(ENV, "1").strip().lower() not in (
        "0", "no", "off", "false")


@contextlib.contextmanager
def quiet():
    """Context manager: no notices inside (nests).

    >>> with quiet():
    ...     pass
    """
    _STATE["quiet"] += 1
    try:
        yield
    finally:
        _STATE["quiet"] -= 1


def is_cached(dispatcher) -> bool:
    """Whether Numba holds a compiled version of ``dispatcher`` (this process or on disk).

    Reads Numba's cache index (cheap: a small pickle), which is empty when the source
    changed since the entries were written; any surprise counts as cached (no notice).

    >>> from fpsim.kernels import float_round
    >>> isinstance(is_cached(float_round.quantize_serial), bool)
    True
    """
    d = getattr(dispatcher, "dispatcher", dispatcher)  # through _threads.parallel_guard
    try:
        if d.overloads:
            return True
        cache = d._cache
        if not getattr(cache, "_cache_file", None):
            return True  # caching off: nothing to tell
        return bool(cache._cache_file._load_index())
    except Exception:  # noqa: BLE001 - a Numba internal changed: stay silent
        return True


def announce(module: str, dispatcher) -> bool:
    """Log the notice of ``module``'s family once per process if ``dispatcher`` is cold.

    Returns whether a notice was logged.

    >>> with quiet():
    ...     announce("block_round", None)
    False
    """
    f = _FAMILY.get(module)
    if f is None or f[0] in _STATE["said"] or not enabled() or is_cached(dispatcher):
        return False
    _STATE["said"].add(f[0])
    log.warning("fpsim: compiling the %s (first use, about %d s on 2 cores; cached afterwards; "
                "`fpsim warmup` compiles ahead; %s=0 silences)", f[1], f[2], ENV)
    return True


def first_call(module: str, dispatcher, install):
    """``dispatcher`` wrapped so that its first call runs :func:`announce`, then
    ``install(dispatcher)`` puts the bare dispatcher in the wrapper's place (no overhead on
    later calls). Kernels of modules without a notice family come back unwrapped.

    >>> first_call("float_round", len, None) is len
    True
    """
    if module not in _FAMILY or not callable(dispatcher) or not hasattr(
            getattr(dispatcher, "dispatcher", dispatcher), "overloads"):
        return dispatcher

    def call(*args, **kwargs):
        announce(module, dispatcher)
        install(dispatcher)
        return dispatcher(*args, **kwargs)

    return call
