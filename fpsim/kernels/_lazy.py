"""Deferred access to Numba kernels, so that ``import fpsim`` does not import numba.

Importing numba costs 0.2-0.5 s; :mod:`fpsim.rounding` needs its kernels only when it
first rounds something. ``kernel("float_round", "quantize_serial")`` is a callable that
imports ``fpsim.kernels.float_round`` on its first call and then forwards to the real
dispatcher (one attribute read of overhead per call).

Both also choose Numba's threading layer before the first kernel module loads, and route
``parallel=True`` kernels through a guard that keeps them safe to call from many Python
threads (see :mod:`fpsim.kernels._threads`: fork-safe by default), and make a damaged
Numba cache file recompile instead of failing (:mod:`fpsim.kernels._cache`), and give the
first call of a kernel that is about to compile for long a one-line notice
(:mod:`fpsim.kernels._notice`; the wrapper replaces itself by the kernel after that call).
"""

from __future__ import annotations

import importlib

from . import _cache, _notice, _threads


def _load(module: str):
    _threads.configure()  # before numba loads (or compiles) any parallel kernel
    _cache.install()  # a damaged cache file is recompiled, not an error on every call
    return importlib.import_module(f"fpsim.kernels.{module}")


class kernel:  # noqa: N801 - reads like the function it stands for
    """A callable standing for ``fpsim.kernels.<module>.<name>`` until first called.

    >>> from fpsim.kernels._lazy import kernel
    >>> k = kernel("float_round", "FIXED_EMIN")
    >>> k.resolve()
    4096
    """

    __slots__ = ("_module", "_name", "_obj")

    def __init__(self, module: str, name: str):
        self._module, self._name, self._obj = module, name, None

    def resolve(self):
        """The real object (importing its module the first time)."""
        if self._obj is None:
            real = _threads.parallel_guard(getattr(_load(self._module), self._name))
            self._obj = _notice.first_call(self._module, real, self._install)
        return self._obj

    def _install(self, real):
        self._obj = real

    def __call__(self, *args, **kwargs):
        obj = self._obj
        if obj is None:
            obj = self.resolve()
        return obj(*args, **kwargs)

    def __repr__(self) -> str:
        return f"kernel({self._module!r}, {self._name!r})"


class lazy_module:  # noqa: N801 - stands for a module
    """A module of :mod:`fpsim.kernels` imported on first attribute access.

    For modules that use a kernel module as a namespace (``_K.some_kernel(...)``):
    ``_K = lazy_module("block_round")`` instead of ``from .kernels import block_round as _K``
    keeps numba out of ``import fpsim``.

    >>> from fpsim.kernels._lazy import lazy_module
    >>> lazy_module("float_round").FIXED_EMIN
    4096
    """

    __slots__ = ("_name", "_mod", "_cache")

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_mod", None)
        object.__setattr__(self, "_cache", {})

    def __getattr__(self, attr):
        cache = object.__getattribute__(self, "_cache")
        try:
            return cache[attr]
        except KeyError:
            pass
        mod = object.__getattribute__(self, "_mod")
        if mod is None:
            mod = _load(object.__getattribute__(self, "_name"))
            object.__setattr__(self, "_mod", mod)
        real = _threads.parallel_guard(getattr(mod, attr))
        obj = cache[attr] = _notice.first_call(object.__getattribute__(self, "_name"), real,
                                               lambda r: cache.__setitem__(attr, r))
        return obj

    def __repr__(self) -> str:
        return f"lazy_module({object.__getattribute__(self, '_name')!r})"
