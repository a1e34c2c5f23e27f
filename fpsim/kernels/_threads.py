"""Numba threading layer: fork-safe by default, and safe from many Python threads.

Why: with Numba's default choice (TBB, else OpenMP, else workqueue) a machine without TBB
runs fpsim's ``parallel=True`` kernels on GNU OpenMP, and a ``multiprocessing`` child
forked after such a kernel ran is killed by the OpenMP runtime ("fork() called from a
process already using GNU OpenMP") - the pool then hangs. So, unless the user chose a
layer (``NUMBA_THREADING_LAYER`` / ``NUMBA_THREADING_LAYER_PRIORITY`` in the environment,
or ``numba.config.THREADING_LAYER`` set before fpsim's first kernel), fpsim asks Numba for
``"forksafe"``: TBB when it is installed, otherwise the built-in workqueue.

The workqueue layer aborts the whole process when two Python threads launch parallel
kernels at the same time, so every parallel kernel fpsim calls from Python goes through
:func:`parallel_guard`, which serialises launches with one process-wide lock whenever the
layer in use is not thread-safe (each launch already uses every core). The lock is
re-created in a forked child, so a fork taken while another thread held it cannot
deadlock the child.

Results never depend on the layer or the thread count: every parallel kernel splits
independent elements or rows (``prange``), never a reduction.

>>> from fpsim.kernels import _threads
>>> _threads.configure() in ("fpsim", "user", "already-running")
True
"""

from __future__ import annotations

import functools
import os
import threading

_STATE = {"configured": None, "layer": None}
_LOCK = threading.Lock()
_THREADSAFE = ("tbb", "omp")  # Numba's thread-safe layers (omp: not fork-safe with GNU)


def _reset_lock_in_child():
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_in_child)


def configure() -> str:
    """Choose the threading layer before fpsim's first Numba kernel is loaded (idempotent).

    Returns who chose it: ``"fpsim"`` (forksafe), ``"user"`` (an environment variable or
    ``numba.config`` setting is respected) or ``"already-running"`` (Numba's threads were
    started by other code before fpsim: nothing can be changed).

    >>> configure() == configure()
    True
    """
    if _STATE["configured"] is not None:
        return _STATE["configured"]
    import numba
    from numba.np.ufunc import parallel as _par

    if os.environ.get("NUMBA_THREADING_LAYER") or os.environ.get("NUMBA_THREADING_LAYER_PRIORITY"):
        who = "user"
    elif str(numba.config.THREADING_LAYER).lower() != "default":
        who = "user"  # set in code by the user before fpsim ran
    elif getattr(_par, "_is_initialized", False):
        who = "already-running"
    else:
        numba.config.THREADING_LAYER = "forksafe"
        who = "fpsim"
    _STATE["configured"] = who
    return who


def _needs_lock() -> bool:
    layer = _STATE["layer"]
    if layer is None:
        try:
            import numba

            layer = numba.threading_layer()  # ValueError until the first parallel launch
        except ValueError:
            return True  # not known yet: be safe
        _STATE["layer"] = layer
    return layer not in _THREADSAFE


def parallel_guard(dispatcher):
    """Wrap a ``parallel=True`` Numba dispatcher so that concurrent launches are serialised
    when the threading layer is not thread-safe (workqueue); other objects pass through.

    >>> parallel_guard(len) is len
    True
    """
    opts = getattr(dispatcher, "targetoptions", None)
    if not (isinstance(opts, dict) and opts.get("parallel")):
        return dispatcher

    @functools.wraps(dispatcher.py_func)
    def guarded(*args, **kwargs):
        if _needs_lock():
            with _LOCK:
                return dispatcher(*args, **kwargs)
        return dispatcher(*args, **kwargs)

    guarded.dispatcher = dispatcher  # the Numba object (signatures, inspect_types, ...)
    return guarded
