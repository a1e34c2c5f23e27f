"""Recover from a damaged Numba cache file instead of failing on every call, and never
load a cached kernel compiled from other kernel sources than the ones installed.

Why: Numba unpickles its on-disk cache (``__pycache__/*.nbi`` index and ``*.nbc`` data,
or under ``NUMBA_CACHE_DIR``) without guarding against a truncated or corrupt file - a
disk that filled up, a copy interrupted, two machines sharing a folder. The
``UnpicklingError``/``EOFError`` then surfaces from every call of the kernel until the file
is deleted by hand. :func:`install` wraps Numba's cache loader so that, for fpsim's own
kernels only, a cache entry that cannot be read is dropped: the kernel is compiled again
(and the cache file rewritten), with one RuntimeWarning per process saying what happened.

Why the second: Numba stamps a cache entry with the hash of the kernel's *own* source file
only, but fpsim's kernels inline helpers from other files (``round_bits`` of
``float_round.py`` is compiled into the accumulation, arithmetic and block kernels). After
an edit of such a helper, the kernels of the other files kept running their old, cached copy
of it. :func:`install` adds the digest of every ``fpsim/kernels/*.py`` file to the stamp of
fpsim's kernels: an edit of any kernel source recompiles them all (on first use).

>>> from fpsim.kernels import _cache
>>> _cache.install()
True
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings

_STATE = {"installed": False, "warned": False}


_KERNELS_DIR = os.path.dirname(os.path.abspath(__file__))


@functools.lru_cache(maxsize=None)
def kernels_digest() -> str:
    """sha256 of every kernel source file (``fpsim/kernels/*.py``), in name order.

    >>> len(kernels_digest())
    64
    """
    h = hashlib.sha256()
    for name in sorted(os.listdir(_KERNELS_DIR)):
        if name.endswith(".py"):
            h.update(name.encode())
            with open(os.path.join(_KERNELS_DIR, name), "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def _is_kernel_file(path) -> bool:
    return os.path.dirname(os.path.abspath(path)) == _KERNELS_DIR


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

    mixin = caching._SourceFileBackedLocatorMixin  # noqa: SLF001 - the one stamp to extend
    stamp = mixin.get_source_stamp

    def get_source_stamp(self):
        own = stamp(self)
        path = getattr(self, "_py_file", "")
        return (own, kernels_digest()) if path and _is_kernel_file(path) else own

    get_source_stamp.__wrapped__ = stamp
    mixin.get_source_stamp = get_source_stamp
    _STATE["installed"] = True
    return True
