"""Deferred access to Numba kernels, so that ``import fpsim`` does not import numba.

Importing numba costs 0.2-0.5 s; :mod:`fpsim.rounding` needs its kernels only when it
first rounds something. ``kernel("float_round", "quantize_serial")`` is a callable that
imports ``fpsim.kernels.float_round`` on its first call and then forwards to the real
dispatcher (one attribute read of overhead per call).
"""

from __future__ import annotations

import importlib


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
            mod = importlib.import_module(f"fpsim.kernels.{self._module}")
            self._obj = getattr(mod, self._name)
        return self._obj

    def __call__(self, *args, **kwargs):
        obj = self._obj
        if obj is None:
            obj = self.resolve()
        return obj(*args, **kwargs)

    def __repr__(self) -> str:
        return f"kernel({self._module!r}, {self._name!r})"


class lazy_module:  # noqa: N801 - stands for a module
    """A module of :mod:`fpsim.kernels` imported on first attribute access.

    For modules that use a kernel module as a namespace (``_k.some_kernel(...)``):
    ``_k = lazy_module("block_round")`` instead of ``from .kernels import block_round as _k``
    keeps numba out of ``import fpsim``.

    >>> from fpsim.kernels._lazy import lazy_module
    >>> lazy_module("float_round").FIXED_EMIN
    4096
    """

    __slots__ = ("_name", "_mod")

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_mod", None)

    def __getattr__(self, attr):
        mod = object.__getattribute__(self, "_mod")
        if mod is None:
            mod = importlib.import_module(f"fpsim.kernels.{object.__getattribute__(self, '_name')}")
            object.__setattr__(self, "_mod", mod)
        return getattr(mod, attr)

    def __repr__(self) -> str:
        return f"lazy_module({object.__getattribute__(self, '_name')!r})"
