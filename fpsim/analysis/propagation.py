"""Quantisation-error propagation through the layers of a torch model (SPEC §6).

For every selected layer ``l`` (by default each leaf module that owns parameters, in
execution order) with reference input ``X`` and output ``Y = f(W, X)``:

``local_error``
    ``‖Y − f̂(Ŵ, X)‖²``: the layer run under the emulation policy on the *reference* input
    (its own rounding error only);
``cumulative_error``
    ``‖W X − Ŵ X̂‖²``: the layer's output when every selected layer runs emulated, so its input
    ``X̂`` already carries the error of the layers before it;
``amplification``
    ``cum_rel[l] / cum_rel[l−1]`` (relative errors ``‖ΔY‖² / ‖Y‖²``): how much the error grows
    from one layer to the next; the first layer gets ``cum_rel / local_rel``.

Non-additivity: the model output's error with *one* layer emulated at a time, summed over
layers, against the output error with *all* of them emulated
(``non_additivity = all / sum``; 1 means the per-layer errors add up).

torch is imported lazily: ``import fpsim.analysis`` works without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import Result, check_context, new_figure, policy_context

__all__ = ["propagation", "PropagationReport", "plot_propagation"]


@dataclass(frozen=True)
class PropagationReport(Result):
    """Per-layer errors (``rows``) and the model-output totals of the non-additivity check."""

    rows: tuple
    output_norm2: float  #: ‖y‖² of the reference model output
    output_error_all: float  #: ‖y − ŷ‖² with every selected layer emulated
    output_error_sum_single: float  #: Σ_l ‖y − ŷ_l‖², one layer emulated at a time

    @property
    def non_additivity(self) -> float:
        """``output_error_all / output_error_sum_single`` (NaN when the sum is 0)."""
        s = self.output_error_sum_single
        return self.output_error_all / s if s > 0 else float("nan")

    def to_records(self) -> list:
        return [dict(r) for r in self.rows]

    def summary(self) -> dict:
        """The model-output totals as one dict."""
        return {"output_norm2": self.output_norm2, "output_error_all": self.output_error_all,
                "output_error_sum_single": self.output_error_sum_single,
                "non_additivity": self.non_additivity}

    def plot(self):
        """Local and cumulative relative error per layer, and the amplification."""
        return plot_propagation(self)


def plot_propagation(report: PropagationReport):
    """Figure of a :class:`PropagationReport`: relative errors (log) and amplification."""
    fig, ax = new_figure(1, 2, figsize=(11, 3.8))
    a0, a1 = ax[0]
    names = [r["layer"] for r in report.rows]
    x = np.arange(len(names))

    def pos(v):  # log axes cannot show exact zeros
        v = np.asarray(v, dtype=float)
        return np.where(v > 0, v, np.nan)

    a0.plot(x, pos([r["local_rel"] for r in report.rows]), "o-", label="local (reference input)")
    a0.plot(x, pos([r["cumulative_rel"] for r in report.rows]), "s-", label="cumulative")
    a0.set_xticks(x, names, rotation=45, ha="right")
    a0.set(yscale="log", ylabel="‖ΔY‖² / ‖Y‖²", title="per-layer relative error")
    a0.legend(fontsize="small")
    a1.bar(x, [r["amplification"] for r in report.rows], color="C2")
    a1.axhline(1.0, color="0.3", lw=0.8, ls="--")
    a1.set_xticks(x, names, rotation=45, ha="right")
    a1.set(ylabel="cum_rel[l] / cum_rel[l−1]",
           title=f"amplification (non-additivity {report.non_additivity:.3g})")
    return fig


# ---------------------------------------------------------------------------------------

def _first_tensor(out):
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for o in out:
            t = _first_tensor(o)
            if t is not None:
                return t
    if isinstance(out, dict):
        for o in out.values():
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


def _call(model, inputs):
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def _sq(a, b=None) -> float:
    a = a.detach().double()
    if b is not None:
        b = b.detach().double()
        if a.shape != b.shape:
            raise ValueError(f"emulated output shape {tuple(b.shape)} differs from reference {tuple(a.shape)}")
        a = a - b
    return float((a * a).sum())


def _select_layers(model, layers):
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not any(True for _ in model.parameters()):
        raise ValueError("model has no parameters: error propagation needs layers with weights")
    named = dict(model.named_modules())
    if layers is None:
        sel = [(n, m) for n, m in named.items()
               if n and not any(True for _ in m.children()) and any(True for _ in m.parameters(recurse=False))]
        if not sel and any(True for _ in model.parameters(recurse=False)):
            sel = [("model", model)]
        return sel
    sel = []
    for item in layers:
        if isinstance(item, str):
            if item not in named:
                raise ValueError(f"layer {item!r} is not a submodule name; known: {[n for n in named if n]}")
            sel.append((item, named[item]))
        elif isinstance(item, type):
            sel.extend((n, m) for n, m in named.items() if n and isinstance(m, item))
        else:
            raise TypeError(f"layers entries must be submodule names or module types, got {item!r}")
    if not sel:
        raise ValueError(f"layers={layers!r} selects no module")
    return sel


class _Recorder:
    """Forward hooks: record each selected layer's first call, optionally running it emulated."""

    def __init__(self, layers, factory=None, emulated=()):
        self.layers, self.factory, self.emulated = layers, factory, set(emulated)
        self.inputs, self.outputs, self.order, self.handles, self.open = {}, {}, [], [], []

    def __enter__(self):
        for name, m in self.layers:
            self.handles.append(m.register_forward_pre_hook(self._pre(name), with_kwargs=True))
            self.handles.append(m.register_forward_hook(self._post(name)))
        return self

    def _pre(self, name):
        def hook(mod, args, kwargs):
            if name not in self.inputs:
                self.inputs[name] = (tuple(a.detach() if hasattr(a, "detach") else a for a in args), dict(kwargs))
                self.order.append(name)
            if name in self.emulated:
                ctx = check_context(self.factory)
                ctx.__enter__()
                self.open.append(ctx)
        return hook

    def _post(self, name):
        def hook(mod, args, out):
            if name in self.emulated and self.open:
                self.open.pop().__exit__(None, None, None)
            if name not in self.outputs:
                t = _first_tensor(out)
                self.outputs[name] = t.detach() if t is not None else None
        return hook

    def __exit__(self, *exc):
        while self.open:
            self.open.pop().__exit__(None, None, None)
        for h in self.handles:
            h.remove()
        return False


_SCOPES = ("layers", "model")


def propagation(model, inputs, policy=None, *, layers=None, reference_policy=None,
                single_layer: bool = True, scope: str = "layers") -> PropagationReport:
    """Per-layer local/cumulative quantisation error, amplification and non-additivity.

    Parameters
    ----------
    model : torch.nn.Module
        Any module with parameters; run in inference mode (``torch.no_grad``).
    inputs : Tensor, tuple or dict
        ``model(inputs)``, ``model(*inputs)`` or ``model(**inputs)``.
    policy :
        The emulation: a fpsim.torch policy or profile name (run inside
        ``fpsim.torch.emulate(policy)``), or any callable returning a context manager;
        ``None`` runs plainly (every error is then 0).
    layers : list, optional
        Submodule names and/or module types to analyse; default every leaf module owning
        parameters. Each layer's first call is recorded (shared layers: the first use).
    reference_policy : optional
        Same kinds as ``policy``, for the reference run (e.g. a float64 profile).
    scope : str
        What runs emulated in the all-layers pass: ``"layers"`` (only the selected layers,
        so the non-additivity check compares like with like) or ``"model"`` (the whole
        forward, so operations outside the layers — attention matmuls, softmax, norms —
        add their error to the cumulative one).
    single_layer : bool
        Run the one-layer-at-a-time passes of the non-additivity check (one forward per
        layer); ``False`` skips them (``output_error_sum_single`` is NaN).

    Returns
    -------
    PropagationReport

    Examples
    --------
    >>> import torch
    >>> from contextlib import contextmanager
    >>> @contextmanager
    ... def weights_bf16():  # stand-in emulation: round nn.Linear weights to bf16
    ...     orig = torch.nn.functional.linear
    ...     torch.nn.functional.linear = lambda x, w, b=None: orig(x, w.bfloat16().float(), b)
    ...     try:
    ...         yield
    ...     finally:
    ...         torch.nn.functional.linear = orig
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> rep = propagation(net, torch.randn(4, 8), weights_bf16)
    >>> [r["layer"] for r in rep.to_records()], rep.to_records()[0]["local_error"] > 0
    (['0', '2'], True)
    """
    import torch

    if scope not in _SCOPES:
        raise ValueError(f"scope={scope!r}: choose one of {', '.join(_SCOPES)}")
    sel = _select_layers(model, layers)
    if not sel:
        raise ValueError("the model has no leaf module with parameters; pass layers=")
    emu = policy_context(policy)
    refc = policy_context(reference_policy)
    names = [n for n, _ in sel]
    mods = dict(sel)
    with torch.no_grad():
        try:
            with refc(), _Recorder(sel) as ref:
                y = _first_tensor(_call(model, inputs))
        except (RuntimeError, TypeError) as e:  # e.g. inputs of the wrong shape
            raise ValueError(f"model(inputs) failed in the reference run: {e}") from e
        if y is None:
            raise ValueError("the model output holds no tensor")
        if scope == "model":
            with refc(), check_context(emu), _Recorder(sel) as hat:
                y_hat = _first_tensor(_call(model, inputs))
        else:
            with refc(), _Recorder(sel, emu, names) as hat:
                y_hat = _first_tensor(_call(model, inputs))
        missing = [n for n in names if n not in ref.inputs]
        if missing:
            raise ValueError(f"layers {missing} were not called by model(inputs)")
        rows, prev_rel = [], None
        for name in ref.order:
            args, kwargs = ref.inputs[name]
            y_l = ref.outputs[name]
            if y_l is None:
                raise ValueError(f"layer {name!r} returned no tensor")
            with refc(), check_context(emu):
                local_out = _first_tensor(mods[name](*args, **kwargs))
            norm2 = _sq(y_l)
            local = _sq(y_l, local_out)
            cum = _sq(y_l, hat.outputs[name])
            lrel = local / norm2 if norm2 > 0 else float("nan")
            crel = cum / norm2 if norm2 > 0 else float("nan")
            if prev_rel is None:
                amp = crel / lrel if lrel > 0 else float("nan")
            else:
                amp = crel / prev_rel if prev_rel > 0 else float("nan")
            rows.append({"layer": name, "type": type(mods[name]).__name__, "output_norm2": norm2,
                         "local_error": local, "cumulative_error": cum, "local_rel": lrel,
                         "cumulative_rel": crel, "amplification": amp})
            prev_rel = crel
        err_all = _sq(y, y_hat)
        if single_layer:
            total = 0.0
            for row in rows:
                with refc(), _Recorder(sel, emu, [row["layer"]]):
                    y_one = _first_tensor(_call(model, inputs))
                row["output_error_single"] = _sq(y, y_one)
                total += row["output_error_single"]
        else:
            total = float("nan")
    return PropagationReport(tuple(rows), _sq(y), err_all, total)
