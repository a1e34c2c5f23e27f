"""Shared timing helper of the benchmark scripts (run as ``python benchmarks/bench_*.py``)."""

from __future__ import annotations

import time


def best_time(fn, repeat: int, warm=None) -> float:
    """Minimum wall time of ``fn()`` over ``repeat`` calls, after one warm-up call of ``warm``
    (default ``fn``: JIT compile, page faults, caches). The minimum is the least noisy
    estimate on a shared machine."""
    (warm or fn)()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best
