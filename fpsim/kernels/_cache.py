"""Recover from a damaged Numba cache file instead of failing on every call.

Why: Numba unpickles its on-disk cache (``__pycache__/*.nbi`` index and ``*.nbc`` data,
or under ``NUMBA_CACHE_DIR``) without guarding against a truncated or corrupt file - a
disk that filled up, a copy interrupted, two machines sharing a folder. The
``UnpicklingError``/``EOFError`` then surfaces from every call of the kernel until the file
is deleted by hand. :func:`install` wraps Numba's cache loader so that, for fpsim's own
kernels only, a cache entry that cannot be read is dropped: the kernel is compiled again
(and the cache file rewritten), with one RuntimeWarning per process saying what happened.

>>> from fpsim.kernels import _cache
>>> _cache.install()
True
"""

from __future__ import annotations

import os
import warnings

_STATE = {"installed": False, "warned": False}


def _is_fpsim(py_func) -> bool:
    return getattr(py_func, "__module__", "").startswith("fpsim.")


def _drop_index(cache) -> str:
    """Remove the (possibly corrupt) index file so the next save starts a fresh one."""
    path = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
    if path:
        try:
            os.remove(path)
        except OSError:
            pass
    return path or getattr(cache, "cache_path", "?")


def install() -> bool:
    """Wrap ``numba.core.caching.Cache.load_overload`` once (idempotent); returns True.

    >>> install() and install()
    True
    """
    if _STATE["installed"]:
        return True
    from numba.core import caching

    original = caching.Cache.load_overload

    def load_overload(self, sig, target_context):
        try:
            return original(self, sig, target_context)
        except Exception as e:  # noqa: BLE001 - any unreadable entry means: compile again
            if not _is_fpsim(getattr(self, "_py_func", None)):
                raise  # not ours: leave other libraries' caches alone
            where = _drop_index(self)
            if not _STATE["warned"]:
                _STATE["warned"] = True
                warnings.warn(
                    f"fpsim: the Numba cache entry of {getattr(self, '_name', '?')} could not be "
                    f"read ({type(e).__name__}: {e}) - a truncated or corrupt file under "
                    f"{os.path.dirname(where)}; compiling the kernel again and rewriting the "
                    "cache (further damaged entries are repaired silently)",
                    RuntimeWarning, stacklevel=2)
            return None  # Numba compiles and saves a fresh entry

    load_overload.__wrapped__ = original
    caching.Cache.load_overload = load_overload
    _STATE["installed"] = True
    return True
