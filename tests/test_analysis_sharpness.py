"""fpsim.analysis.sharpness against closed forms of quadratic losses."""

from contextlib import contextmanager
from itertools import product

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fpsim.analysis as fa  # noqa: E402


class Quad(torch.nn.Module):
    """f(x) = 0.5 x^T A x with A given at call time (the "batch"): Hessian A."""

    gain = 1.0  # the stand-in emulation below changes it

    def __init__(self, x):
        super().__init__()
        self.x = torch.nn.Parameter(torch.as_tensor(x, dtype=torch.float64).clone())

    def forward(self, A):
        return 0.5 * Quad.gain * self.x @ (A @ self.x)


def ident(y):
    return y


def _spd(n, eigs, seed=0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q * eigs) @ Q.T


def test_hessian_top_of_quadratic():
    A = _spd(10, np.linspace(1.0, 10.0, 10))
    m = Quad(np.ones(10))
    r = fa.sharpness(m, ident, torch.tensor(A), "hessian_top", iters=300)
    top = np.linalg.eigvalsh(A)[-1]
    assert abs(r.value - top) <= 0.01 * top
    assert r.details["iterations"] == r.history.size
    # indefinite: the eigenvalue of largest magnitude, with its sign
    B = _spd(6, np.array([-8.0, 1.0, 2.0, 3.0, 4.0, 5.0]), seed=1)
    rb = fa.sharpness(Quad(np.ones(6)), ident, torch.tensor(B), "hessian_top", iters=300)
    assert abs(rb.value + 8.0) <= 0.08


def test_hutchinson_trace_of_quadratic():
    D = np.diag(np.arange(1.0, 9.0))
    r = fa.sharpness(Quad(np.zeros(8)), ident, torch.tensor(D), "hutchinson_trace", samples=3)
    assert r.value == pytest.approx(36.0, rel=1e-12)  # Rademacher: exact for diagonal Hessians
    A = _spd(10, np.linspace(1.0, 10.0, 10), seed=2)
    r = fa.sharpness(Quad(np.zeros(10)), ident, torch.tensor(A), "hutchinson_trace", samples=2000)
    assert abs(r.value - np.trace(A)) <= 0.01 * np.trace(A)
    assert r.details["std_error"] > 0 and r.history.size == 2000


def test_linear_regression_hessian():
    # MSE of an nn.Linear: Hessian 2/n Z^T Z with Z = [X, 1] (weights then bias)
    torch.manual_seed(0)
    n = 64
    X = torch.randn(n, 5, dtype=torch.float64) * torch.tensor([3.0, 1.0, 1.0, 0.5, 0.2], dtype=torch.float64)
    y = torch.randn(n, 1, dtype=torch.float64)
    model = torch.nn.Linear(5, 1, dtype=torch.float64)
    loss = torch.nn.MSELoss()
    Z = np.hstack([X.numpy(), np.ones((n, 1))])
    H = 2.0 / n * Z.T @ Z
    top = fa.sharpness(model, loss, (X, y), "hessian_top", iters=500)
    assert abs(top.value - np.linalg.eigvalsh(H)[-1]) <= 0.01 * np.linalg.eigvalsh(H)[-1]
    tr = fa.sharpness(model, loss, (X, y), "hutchinson_trace", samples=1000)
    assert abs(tr.value - np.trace(H)) <= 0.01 * np.trace(H)


def test_keskar_of_diagonal_quadratic():
    # f(x+y) = sum a_i (x_i+y_i)^2 / 2 is maximised over the box at y_i = sign(x_i) eps (|x_i|+1).
    a = np.array([1.0, 4.0, 0.5, 2.0, 3.0])
    x = np.array([0.8, -1.5, 2.0, -0.6, 1.0])
    eps = 1e-2
    m = Quad(x)
    r = fa.sharpness(m, ident, torch.tensor(np.diag(a)), "keskar", epsilon=eps)
    f0 = 0.5 * np.sum(a * x * x)
    fmax = 0.5 * np.sum(a * (np.abs(x) + eps * (np.abs(x) + 1)) ** 2)
    assert r.value == pytest.approx(100 * (fmax - f0) / (1 + f0), rel=1e-6)
    assert r.details["max_loss"] == pytest.approx(fmax, rel=1e-9)
    np.testing.assert_array_equal(m.x.detach().numpy(), x)  # parameters restored


def test_keskar_general_quadratic_bounded_by_vertex_max():
    A = _spd(6, np.linspace(0.5, 3.0, 6), seed=3)
    x = np.array([1.0, -0.5, 0.3, 2.0, -1.0, 0.7])
    eps = 0.05
    r = fa.sharpness(Quad(x), ident, torch.tensor(A), "keskar", epsilon=eps, maxiter=50)
    h = eps * (np.abs(x) + 1)
    f = lambda v: 0.5 * v @ A @ v  # noqa: E731
    f0 = f(x)
    best = max(f(x + np.array(s) * h) for s in product([-1, 1], repeat=6))  # convex: max at a vertex
    assert 0 < r.value <= 100 * (best - f0) / (1 + f0) * (1 + 1e-9)
    assert r.value >= 0.9 * 100 * (best - f0) / (1 + f0)


def test_landscape_closed_form_and_filter_normalisation(tmp_path):
    A = np.diag([1.0, 2.0, 3.0])
    x = np.array([1.0, -1.0, 0.5])
    d = np.array([0.5, 0.25, -1.0])
    m = Quad(x)
    r = fa.sharpness(m, ident, torch.tensor(A), "landscape", directions=[d], normalize=None,
                     radius=2.0, steps=9)
    al = r.details["alphas"]
    want = [0.5 * (x + t * d) @ A @ (x + t * d) for t in al]
    np.testing.assert_allclose(r.details["losses"], want, rtol=1e-12)
    assert r.value == pytest.approx(max(want) - 0.5 * x @ A @ x)
    fig = r.plot()
    assert fig.axes[0].get_ylabel() == "loss"
    fig.savefig(tmp_path / "l1.png")
    # 2-D, filter-normalised random directions on a small MLP
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    before = [p.detach().clone() for p in net.parameters()]
    X, Y = torch.randn(10, 4), torch.randn(10, 2)
    r2 = fa.sharpness(net, torch.nn.MSELoss(), (X, Y), "landscape", dims=2, steps=5, radius=0.5)
    assert r2.details["losses"].shape == (5, 5)
    with torch.no_grad():
        f0 = float(torch.nn.MSELoss()(net(X), Y))
    assert r2.details["losses"][2, 2] == pytest.approx(f0, rel=1e-6)
    for p, b in zip(net.parameters(), before):
        assert torch.equal(p, b)
    d0 = r2.details["directions"][0]
    w = net[0].weight.detach().double().numpy()
    dw = d0[: w.size].reshape(w.shape)
    np.testing.assert_allclose(np.linalg.norm(dw, axis=1), np.linalg.norm(w, axis=1), rtol=1e-5)
    fig = r2.plot()
    assert fig.axes[0].get_xlabel() == "α (direction 1)"
    fig.savefig(tmp_path / "l2.png")


def test_policy_is_active_in_forward_and_backward(tmp_path):
    @contextmanager
    def double_gain():  # stand-in emulation: the model's output doubles
        Quad.gain = 2.0
        try:
            yield
        finally:
            Quad.gain = 1.0

    D = torch.tensor(np.diag([1.0, 5.0]))
    plain = fa.sharpness(Quad([1.0, 1.0]), ident, D, "hessian_top")
    emu = fa.sharpness(Quad([1.0, 1.0]), ident, D, "hessian_top", policy=double_gain)
    assert plain.value == pytest.approx(5.0, rel=1e-6) and emu.value == pytest.approx(10.0, rel=1e-6)
    assert Quad.gain == 1.0
    fig = emu.plot()
    assert fig.axes[0].get_ylabel() == "eigenvalue estimate"
    for meth in ("hutchinson_trace", "keskar"):
        res = fa.sharpness(Quad([1.0, 1.0]), ident, D, meth, policy=double_gain)
        assert res.plot().axes[0].get_title()
        assert res.to_records()[0]["method"] == meth
    assert "| method | value |" in emu.to_markdown()


def test_bad_input():
    D = torch.eye(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fa.sharpness(torch.nn.ReLU(), ident, D)
    with pytest.raises(ValueError, match="method='adam'"):
        fa.sharpness(Quad([1.0, 1.0]), ident, D, "adam")
    with pytest.raises(ValueError, match="scalar tensor"):
        fa.sharpness(Quad([1.0, 1.0]), lambda y: torch.stack([y, y]), D)
    with pytest.raises(ValueError, match="needs 2 entries"):
        fa.sharpness(Quad([1.0, 1.0]), ident, D, "landscape", directions=[[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="dims=3"):
        fa.sharpness(Quad([1.0, 1.0]), ident, D, "landscape", dims=3)
    with pytest.raises(ValueError, match="epsilon"):
        fa.sharpness(Quad([1.0, 1.0]), ident, D, "keskar", epsilon=0)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        fa.sharpness(lambda a: a, ident, D)
    net = torch.nn.Linear(3, 1)
    with pytest.raises(ValueError, match="failed"):  # mismatched shapes
        fa.sharpness(net, torch.nn.MSELoss(), (torch.randn(4, 2), torch.randn(4, 1)))
    with pytest.raises(TypeError, match="no option.*'samples'"):
        fa.sharpness(Quad([1.0, 1.0]), ident, D, "hessian_top", samples=3)


def test_finite_difference_hvp_matches_closed_form():
    A = _spd(8, np.linspace(1.0, 6.0, 8), seed=4)
    m = Quad(np.linspace(-1, 1, 8))
    r = fa.sharpness(m, ident, torch.tensor(A), "hessian_top", hvp="fd", iters=300)
    assert abs(r.value - 6.0) <= 0.06
    D = torch.tensor(np.diag(np.arange(1.0, 9.0)))
    t = fa.sharpness(m, ident, D, "hutchinson_trace", hvp="fd", samples=3)
    assert t.value == pytest.approx(36.0, rel=1e-6)
    np.testing.assert_array_equal(m.x.detach().numpy(), np.linspace(-1, 1, 8))


def test_fpsim_torch_policy_by_name():
    try:
        from fpsim.torch import emulate  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="emulate|fpsim.torch"):
            fa.sharpness(Quad([1.0]), ident, torch.eye(1, dtype=torch.float64), policy="bf16")
        return
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
    X, Y = torch.randn(16, 6), torch.randn(16, 1)
    plain = fa.sharpness(net, torch.nn.MSELoss(), (X, Y), "hessian_top", iters=50)
    emu = fa.sharpness(net, torch.nn.MSELoss(), (X, Y), "hessian_top", iters=50, policy="bf16")
    # bf16 perturbs the curvature only slightly on this well-scaled problem (hvp="auto" takes
    # finite differences of the emulated gradients: fpsim.torch rounds gradients in backward)
    assert emu.value == pytest.approx(plain.value, rel=0.1) and emu.details["loss"] != plain.details["loss"]
    k = fa.sharpness(net, torch.nn.MSELoss(), (X, Y), "keskar", policy="bf16")
    assert k.value > 0
