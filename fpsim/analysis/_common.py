"""Shared pieces of the analysis modules: the result base class, figures, emulation contexts."""

from __future__ import annotations

import contextlib

from .tables import to_markdown


class Result:
    """Base of every analysis result: plain data with ``to_records()`` and ``to_markdown()``.

    Subclasses implement ``to_records()`` (a list of flat dicts) and ``plot()``.
    """

    def to_records(self) -> list:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_markdown(self) -> str:
        """The records as a Markdown table."""
        return to_markdown(self.to_records())


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize=None):
    """A matplotlib ``Figure`` (not registered with pyplot, so nothing leaks) and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize or (5.0 * ncols, 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def policy_context(policy):
    """Turn ``policy`` into a zero-argument factory of fresh context managers.

    ``None`` → a no-op context (plain execution); a string or a ``fpsim.torch`` policy →
    ``fpsim.torch.emulate(policy)``; any other callable → called with no arguments, it must
    return a context manager (so tests and users can pass their own emulation).
    """
    if policy is None:
        return contextlib.nullcontext
    if isinstance(policy, str) or not callable(policy) or _is_fpsim_policy(policy):
        try:
            from .. import torch as fptorch  # lazy: fpsim.torch needs torch
        except ImportError as e:
            raise ValueError(
                f"policy={policy!r} needs fpsim.torch (install the 'torch' extra), or pass a "
                f"callable that returns a context manager: {e}") from None
        emulate = getattr(fptorch, "emulate", None)
        if emulate is None:
            raise ValueError("fpsim.torch has no emulate(); pass a callable returning a context manager")
        return lambda: emulate(policy)
    return policy


def _is_fpsim_policy(obj) -> bool:
    # Without importing torch: a fpsim.torch Policy is recognised by its defining module.
    return type(obj).__module__.startswith("fpsim.torch")


def check_context(factory):
    """Create one context from ``factory`` and check it is a context manager."""
    ctx = factory()
    if not (hasattr(ctx, "__enter__") and hasattr(ctx, "__exit__")):
        raise TypeError(
            f"policy factory returned {type(ctx).__name__}, not a context manager; pass None, a "
            "profile name / fpsim.torch policy, or a callable returning a context manager")
    return ctx
