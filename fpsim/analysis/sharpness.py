"""Loss sharpness of a torch model, optionally under an emulation policy (SPEC §6).

Methods (``sharpness(model, loss_fn, batch, method=...)``):

``"hessian_top"``
    eigenvalue of largest magnitude of the Hessian of the loss w.r.t. the parameters, by
    power iteration on Hessian-vector products (double backprop; finite differences of
    gradients under a policy);
``"hutchinson_trace"``
    Hutchinson's estimator ``E[vᵀHv]`` with Rademacher ``v`` of the Hessian trace;
``"keskar"``
    Keskar et al. (2017) ε-sharpness as used by "To FP8 and Back Again" (2024):
    ``100 · (max_{y∈C_ε} f(x+y) − f(x)) / (1 + f(x))`` over the box
    ``|y_i| ≤ ε(|x_i| + 1)``, maximised with scipy's L-BFGS-B;
``"landscape"``
    1-D or 2-D slices ``f(x + α d₁ + β d₂)`` along random filter-normalised directions
    (Li et al. 2018), with a line or contour plot.

``batch`` is an input tensor (``loss = loss_fn(model(batch))``) or a tuple
``(inputs, *targets)`` (``loss = loss_fn(model(inputs), *targets)``). ``policy`` (a fpsim.torch
policy/profile name, or a callable returning a context manager) is active during every
forward *and* backward pass of the model; the estimators' own arithmetic (dot products,
norms) runs plainly. torch is imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._common import Result, check_context, new_figure, policy_context

__all__ = ["sharpness", "SharpnessResult", "plot_sharpness", "METHODS"]

#: The sharpness methods.
METHODS = ("hessian_top", "hutchinson_trace", "keskar", "landscape")


@dataclass(frozen=True)
class SharpnessResult(Result):
    """A sharpness value plus what produced it (``details``) and its convergence ``history``."""

    method: str
    value: float
    details: dict = field(default_factory=dict)
    history: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def to_records(self) -> list:
        rec = {"method": self.method, "value": self.value}
        rec.update({k: v for k, v in self.details.items() if np.isscalar(v) or v is None})
        return [rec]

    def plot(self):
        """Convergence (power iteration / Hutchinson), or the loss slice (landscape)."""
        return plot_sharpness(self)


def plot_sharpness(result: SharpnessResult):
    """Figure of a :class:`SharpnessResult` (method-specific, labelled)."""
    d = result.details
    if result.method == "landscape" and d.get("dims") == 2:
        fig, ax = new_figure(figsize=(5.5, 4.5))
        a = ax[0, 0]
        cs = a.contourf(d["alphas"], d["betas"], np.asarray(d["losses"]).T, levels=30, cmap="viridis")
        a.contour(d["alphas"], d["betas"], np.asarray(d["losses"]).T, levels=10, colors="w", linewidths=0.5)
        a.figure.colorbar(cs, ax=a, label="loss")
        a.plot([0], [0], "r*")
        a.set(xlabel="α (direction 1)", ylabel="β (direction 2)", title="2-D loss landscape")
        return fig
    fig, ax = new_figure()
    a = ax[0, 0]
    if result.method == "landscape":
        a.plot(d["alphas"], d["losses"], "-")
        a.axvline(0, color="0.5", lw=0.8)
        a.set(xlabel="α (filter-normalised direction)", ylabel="loss", title="1-D loss landscape")
    elif result.method == "keskar":
        a.bar(["f(x)", "max f(x+y)"], [d["loss"], d["max_loss"]], color=["C0", "C3"])
        a.set(ylabel="loss", title=f"Keskar ε={d['epsilon']:g}: sharpness {result.value:.3g}")
    else:
        h = result.history
        a.plot(np.arange(1, h.size + 1), h, ".-")
        lab = "eigenvalue estimate" if result.method == "hessian_top" else "running trace estimate"
        a.set(xlabel="iteration" if result.method == "hessian_top" else "samples", ylabel=lab,
              title=f"{result.method}: {result.value:.4g}")
    return fig


# ---------------------------------------------------------------------------------------

def _params(model):
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    ps = [p for p in model.parameters() if p.requires_grad]
    if not ps:
        raise ValueError("model has no trainable parameters: sharpness is taken w.r.t. parameters")
    return ps


def _loss(model, loss_fn, batch):
    import torch

    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("batch is an empty tuple: give (inputs, *targets)")
        x, rest = batch[0], tuple(batch[1:])
    else:
        x, rest = batch, ()
    try:
        loss = loss_fn(model(x), *rest)
    except (RuntimeError, TypeError) as e:  # e.g. inputs or targets of the wrong shape
        raise ValueError(f"loss_fn(model(inputs), *targets) failed: {e}") from e
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError(f"loss_fn must return a scalar tensor, got {type(loss).__name__}"
                         + (f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else ""))
    return loss.reshape(())


def _dot(a, b):
    return sum(float((x.double() * y.double()).sum()) for x, y in zip(a, b))


_HVP_MODES = ("auto", "autograd", "fd")


class _Problem:
    """The loss at the model's parameters. Only the model's forward and backward passes run
    inside the policy context; this module's own arithmetic (dot products, norms) runs
    plainly so the emulation never perturbs the measurement itself."""

    def __init__(self, model, loss_fn, batch, ps, factory, emulated):
        self.model, self.loss_fn, self.batch, self.ps, self.factory = model, loss_fn, batch, ps, factory
        self.emulated = emulated

    def loss(self) -> float:
        import torch

        with torch.no_grad(), check_context(self.factory):
            return float(_loss(self.model, self.loss_fn, self.batch))

    def loss_and_grad(self, create_graph=False):
        import torch

        with check_context(self.factory):
            loss = _loss(self.model, self.loss_fn, self.batch)
            g = torch.autograd.grad(loss, self.ps, create_graph=create_graph, allow_unused=True)
        g = [torch.zeros_like(p) if t is None else t for t, p in zip(g, self.ps)]
        return loss, g

    def set_params(self, values):
        import torch

        with torch.no_grad():
            for p, v in zip(self.ps, values):
                p.copy_(v)

    def hvp_fn(self, mode="auto", fd_step=None):
        """(hvp, loss): ``hvp(v)`` = H v by double backprop, or by central differences of
        gradients (``"fd"``; what ``"auto"`` picks under a policy: an emulated backward pass
        rounds gradients, a step double backprop cannot differentiate)."""
        import torch

        if mode not in _HVP_MODES:
            raise ValueError(f"hvp={mode!r}: choose one of {', '.join(_HVP_MODES)}")
        if mode == "auto":
            mode = "fd" if self.emulated else "autograd"
        if mode != "fd":
            loss, grads = self.loss_and_grad(create_graph=True)
            twice = all(g.requires_grad for g in grads)
            if twice:
                def hvp(v):
                    with check_context(self.factory):
                        out = torch.autograd.grad(grads, self.ps, grad_outputs=v, retain_graph=True,
                                                  allow_unused=True)
                    return [torch.zeros_like(p) if t is None else t.detach() for t, p in zip(out, self.ps)]

                return hvp, float(loss.detach())
            raise ValueError("the backward pass is not twice differentiable (under this policy); "
                             "use hvp='fd' (finite differences of gradients)")
        x0 = [p.detach().clone() for p in self.ps]
        if fd_step is None:
            # plain: about sqrt(machine epsilon); emulated: well above the rounding noise of
            # low-precision gradients (bf16's 2^-8 relative noise needs steps >= ~1e-2)
            fd_step = 3e-2 if self.emulated else float(torch.finfo(self.ps[0].dtype).eps) ** 0.5
        scale = 1.0 + (_dot(x0, x0) / sum(p.numel() for p in self.ps)) ** 0.5
        h = fd_step * scale

        def hvp(v):
            nv = _dot(v, v) ** 0.5
            if nv == 0:
                return [torch.zeros_like(p) for p in self.ps]
            try:
                self.set_params([x + (h / nv) * t for x, t in zip(x0, v)])
                _, gp = self.loss_and_grad()
                self.set_params([x - (h / nv) * t for x, t in zip(x0, v)])
                _, gm = self.loss_and_grad()
            finally:
                self.set_params(x0)
            return [(a - b) * (nv / (2 * h)) for a, b in zip(gp, gm)]

        return hvp, self.loss()


def _hessian_top(prob, *, iters=100, tol=1e-6, seed=0, hvp="auto", fd_step=None):
    import torch

    ps = prob.ps
    gen = torch.Generator().manual_seed(seed)
    hvp, loss = prob.hvp_fn(hvp, fd_step)
    v = [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in ps]
    nrm = _dot(v, v) ** 0.5
    v = [x / nrm for x in v]
    hist, lam = [], float("nan")
    for _ in range(iters):
        hv = hvp(v)
        new = _dot(v, hv)  # Rayleigh quotient: keeps the sign of the dominant eigenvalue
        hist.append(new)
        n = _dot(hv, hv) ** 0.5
        if n == 0:
            lam = 0.0
            break
        v = [x.detach() / n for x in hv]
        if np.isfinite(lam) and abs(new - lam) <= tol * max(abs(new), 1e-30):
            lam = new
            break
        lam = new
    return SharpnessResult("hessian_top", lam, {"iterations": len(hist), "loss": loss, "tol": tol},
                           np.array(hist))


def _hutchinson(prob, *, samples=100, seed=0, hvp="auto", fd_step=None):
    import torch

    if samples < 1:
        raise ValueError(f"samples={samples}: need at least 1")
    gen = torch.Generator().manual_seed(seed)
    hvp, loss = prob.hvp_fn(hvp, fd_step)
    ests = []
    for _ in range(samples):
        v = [(torch.randint(0, 2, p.shape, generator=gen) * 2 - 1).to(p.dtype).to(p.device) for p in prob.ps]
        ests.append(_dot(v, hvp(v)))
    e = np.array(ests)
    se = float(e.std(ddof=1) / np.sqrt(e.size)) if e.size > 1 else float("nan")
    return SharpnessResult("hutchinson_trace", float(e.mean()),
                           {"samples": samples, "std_error": se, "loss": loss},
                           np.cumsum(e) / np.arange(1, e.size + 1))


def _keskar(prob, *, epsilon=1e-3, maxiter=10, start="random", seed=0):
    import torch
    from scipy.optimize import minimize
    from torch.nn.utils import parameters_to_vector, vector_to_parameters

    if not epsilon > 0:
        raise ValueError(f"epsilon={epsilon}: must be > 0")
    if start not in ("random", "zeros"):
        raise ValueError(f"start={start!r}: choose 'random' or 'zeros'")
    ps = prob.ps
    x0t = parameters_to_vector(ps).detach().clone()
    x0 = x0t.double().cpu().numpy()
    half = epsilon * (np.abs(x0) + 1.0)

    def f_and_g(y):
        with torch.no_grad():
            vector_to_parameters(torch.as_tensor(x0 + y, dtype=x0t.dtype, device=x0t.device), ps)
        loss, g = prob.loss_and_grad()
        gv = torch.cat([t.reshape(-1) for t in g]).double().cpu().numpy()
        return -float(loss.detach()), -gv  # minimise −f

    try:
        f0 = -f_and_g(np.zeros_like(x0))[0]
        y0 = (np.random.default_rng(seed).uniform(-1, 1, x0.size) * half if start == "random"
              else np.zeros_like(x0))
        res = minimize(f_and_g, y0, jac=True, method="L-BFGS-B", bounds=list(zip(-half, half)),
                       options={"maxiter": maxiter})
        fmax = max(-float(res.fun), f0)
    finally:
        with torch.no_grad():
            vector_to_parameters(x0t, ps)
    value = 100.0 * (fmax - f0) / (1.0 + f0)
    return SharpnessResult("keskar", value, {"epsilon": epsilon, "loss": f0, "max_loss": fmax,
                                             "iterations": int(res.nit), "maxiter": maxiter})


def _direction(ps, spec, gen, normalize, ignore_bias):
    """One direction as a list of tensors shaped like the parameters."""
    import torch

    if spec is None:
        d = [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in ps]
    elif isinstance(spec, (list, tuple)) and len(spec) == len(ps) and all(hasattr(t, "shape") for t in spec):
        d = [torch.as_tensor(t, dtype=p.dtype, device=p.device).clone() for t, p in zip(spec, ps)]
        if any(t.shape != p.shape for t, p in zip(d, ps)):
            raise ValueError("direction tensors must have the shapes of the model's parameters "
                             f"{[tuple(p.shape) for p in ps]}")
    else:
        flat = torch.as_tensor(np.asarray(spec, dtype=np.float64)).reshape(-1)
        n = sum(p.numel() for p in ps)
        if flat.numel() != n:
            raise ValueError(f"a flat direction needs {n} entries (the parameter count), got {flat.numel()}")
        d, i = [], 0
        for p in ps:
            d.append(flat[i:i + p.numel()].reshape(p.shape).to(p.dtype).to(p.device))
            i += p.numel()
    if normalize == "filter":
        out = []
        for t, p in zip(d, ps):
            if p.dim() <= 1:
                out.append(torch.zeros_like(t) if ignore_bias else t * (p.detach().norm() / (t.norm() + 1e-12)))
            else:  # one filter per output channel (dim 0), as Li et al. 2018
                tn = t.reshape(t.shape[0], -1).norm(dim=1)
                pn = p.detach().reshape(p.shape[0], -1).norm(dim=1)
                out.append(t * (pn / (tn + 1e-12)).reshape(-1, *([1] * (t.dim() - 1))))
        d = out
    elif normalize is not None:
        raise ValueError(f"normalize={normalize!r}: choose 'filter' or None")
    return [t.detach() for t in d]


def _landscape(prob, *, dims=1, radius=1.0, steps=21, directions=None,
               normalize="filter", ignore_bias=False, seed=0):
    import torch

    if dims not in (1, 2):
        raise ValueError(f"dims={dims}: choose 1 or 2")
    if steps < 2:
        raise ValueError(f"steps={steps}: need at least 2")
    if directions is not None and len(directions) != dims:
        raise ValueError(f"directions has {len(directions)} entries, dims={dims} needs {dims}")
    ps = prob.ps
    gen = torch.Generator().manual_seed(seed)
    dirs = [_direction(ps, None if directions is None else directions[k], gen, normalize, ignore_bias)
            for k in range(dims)]
    x0 = [p.detach().clone() for p in ps]
    alphas = np.linspace(-radius, radius, steps)
    betas = alphas if dims == 2 else np.zeros(1)
    losses = np.empty((alphas.size, betas.size))
    try:
        with torch.no_grad():
            for i, a in enumerate(alphas):
                for j, b in enumerate(betas):
                    for k, p in enumerate(ps):
                        p.copy_(x0[k] + a * dirs[0][k] + (b * dirs[1][k] if dims == 2 else 0))
                    losses[i, j] = prob.loss()
    finally:
        with torch.no_grad():
            for p, x in zip(ps, x0):
                p.copy_(x)
    f0 = float(losses[steps // 2, steps // 2 if dims == 2 else 0]) if steps % 2 else float("nan")
    if dims == 1:
        losses = losses[:, 0]
    # value: the largest loss rise within the slice (a crude, scale-free sharpness)
    base = f0 if np.isfinite(f0) else float(np.min(losses))
    flat = [torch.cat([t.reshape(-1) for t in d]).double().cpu().numpy() for d in dirs]
    details = {"dims": dims, "radius": radius, "steps": steps, "loss": base, "alphas": alphas,
               "losses": losses, "normalize": normalize, "directions": flat}
    if dims == 2:
        details["betas"] = betas
    return SharpnessResult("landscape", float(np.max(losses) - base), details)


_IMPL = {"hessian_top": _hessian_top, "hutchinson_trace": _hutchinson, "keskar": _keskar,
         "landscape": _landscape}


def sharpness(model, loss_fn, batch, method: str = "hessian_top", *, policy=None, **options) -> SharpnessResult:
    """Sharpness of ``loss_fn`` at the model's parameters by ``method`` (see :data:`METHODS`).

    Options per method:

    * ``hessian_top``: ``iters=100``, ``tol=1e-6`` (relative change), ``seed=0``;
    * ``hutchinson_trace``: ``samples=100``, ``seed=0``;
    * both: ``hvp="auto"`` — Hessian-vector products by double backprop (``"autograd"``)
      or central differences of gradients (``"fd"``, step ``fd_step`` × (1 + rms(x))).
      ``"auto"`` is double backprop without a policy and finite differences under one
      (an emulated backward rounds gradients: double backprop would silently drop those
      paths); ``fd_step`` defaults to √eps of the parameter dtype plainly and to ``3e-2``
      under a policy (above the rounding noise of bf16/fp8 gradients);
    * ``keskar``: ``epsilon=1e-3``, ``maxiter=10`` (L-BFGS-B iterations, as Keskar et al.),
      ``start="random"`` (uniform in the box; ``"zeros"`` stalls at a stationary point),
      ``seed=0``;
    * ``landscape``: ``dims=1`` or ``2``, ``radius=1.0``, ``steps=21``, ``directions=None``
      (random; or per direction a list of tensors or a flat vector), ``normalize="filter"``
      (or ``None``), ``ignore_bias=False`` (zero the direction of 1-D parameters), ``seed=0``.
      Its ``value`` is the largest loss rise over the slice; the grid is in ``details``.

    The parameters are restored afterwards.

    >>> import torch
    >>> class Quad(torch.nn.Module):  # f(x) = 0.5 * (3 x0^2 + x1^2)
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.x = torch.nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))
    ...     def forward(self, a):
    ...         return 0.5 * (a * self.x**2).sum()
    >>> m, a = Quad(), torch.tensor([3.0, 1.0], dtype=torch.float64)
    >>> round(sharpness(m, lambda y: y, a, "hessian_top").value, 6)
    3.0
    >>> sharpness(m, lambda y: y, a, "hutchinson_trace", samples=4).value
    4.0
    """
    if method not in _IMPL:
        raise ValueError(f"method={method!r}: choose one of {', '.join(METHODS)}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    ps = _params(model)
    factory = policy_context(policy)
    check_context(factory)  # fail early if the policy gives no context manager
    import inspect

    allowed = [n for n, p in inspect.signature(_IMPL[method]).parameters.items()
               if p.kind == p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"method={method!r} has no option(s) {unknown}; allowed: {allowed}")
    return _IMPL[method](_Problem(model, loss_fn, batch, ps, factory, policy is not None), **options)
