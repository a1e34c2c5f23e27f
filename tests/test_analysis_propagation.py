"""fpsim.analysis.propagation through linear layers, against closed forms."""

from contextlib import contextmanager

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fpsim.analysis as fa  # noqa: E402


def scale_weights(delta):
    """Stand-in emulation: every F.linear uses the weight (1 + delta) W."""

    @contextmanager
    def ctx():
        orig = torch.nn.functional.linear
        torch.nn.functional.linear = lambda x, w, b=None: orig(x, w * (1 + delta), b)
        try:
            yield
        finally:
            torch.nn.functional.linear = orig

    return ctx


@contextmanager
def weights_bf16():
    orig = torch.nn.functional.linear
    torch.nn.functional.linear = lambda x, w, b=None: orig(x, w.bfloat16().to(w.dtype), b)
    try:
        yield
    finally:
        torch.nn.functional.linear = orig


def _chain(L, relu, seed=0):
    torch.manual_seed(seed)
    mods = []
    for i in range(L):
        mods.append(torch.nn.Linear(6, 6, bias=False, dtype=torch.float64))
        if relu and i < L - 1:
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods)


@pytest.mark.parametrize("relu", [False, True])
def test_scaled_weights_closed_form(relu):
    # With W -> (1+d) W and positive homogeneity of ReLU, layer l's emulated output is
    # (1+d)^(l+1) Y_l: local error d^2 |Y_l|^2, cumulative ((1+d)^(l+1) - 1)^2 |Y_l|^2,
    # amplification ((1+d)^(l+1) - 1)^2 / ((1+d)^l - 1)^2, single-layer output error d^2 |y|^2.
    L, d = 4, 0.01
    net = _chain(L, relu)
    x = torch.randn(5, 6, dtype=torch.float64)
    rep = fa.propagation(net, x, scale_weights(d))
    rows = rep.to_records()
    assert [r["type"] for r in rows] == ["Linear"] * L
    with torch.no_grad():
        ys, h = [], x
        for m in net:
            h = m(h)
            if isinstance(m, torch.nn.Linear):
                ys.append(float((h * h).sum()))
        y2 = float((h * h).sum())
    for l, r in enumerate(rows):
        assert r["output_norm2"] == pytest.approx(ys[l], rel=1e-12)
        assert r["local_error"] == pytest.approx(d**2 * ys[l], rel=1e-9)
        assert r["cumulative_error"] == pytest.approx(((1 + d) ** (l + 1) - 1) ** 2 * ys[l], rel=1e-9)
        assert r["output_error_single"] == pytest.approx(d**2 * y2, rel=1e-9)
        if l:
            want = ((1 + d) ** (l + 1) - 1) ** 2 / ((1 + d) ** l - 1) ** 2
            assert r["amplification"] == pytest.approx(want, rel=1e-9)
    assert rep.output_error_sum_single == pytest.approx(L * d**2 * y2, rel=1e-9)
    assert rep.output_error_all == pytest.approx(((1 + d) ** L - 1) ** 2 * y2, rel=1e-9)
    assert rep.non_additivity == pytest.approx(((1 + d) ** L - 1) ** 2 / (L * d**2), rel=1e-9)
    assert rep.non_additivity > 1  # errors of the same sign compound


def test_bf16_weights_local_error_matches_direct_computation():
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    x = torch.randn(8, 16)
    rep = fa.propagation(net, x, weights_bf16)
    with torch.no_grad():
        l0, l2 = net[0], net[2]
        w0q = l0.weight.bfloat16().float()
        w2q = l2.weight.bfloat16().float()
        y0 = l0(x)
        e_local0 = ((y0 - (x @ w0q.T + l0.bias)).double() ** 2).sum()
        h = torch.tanh(y0)
        y2 = l2(h)
        e_local2 = ((y2 - (h @ w2q.T + l2.bias)).double() ** 2).sum()
        hq = torch.tanh(x @ w0q.T + l0.bias)
        e_cum2 = ((y2 - (hq @ w2q.T + l2.bias)).double() ** 2).sum()
    r0, r2 = rep.to_records()
    assert (r0["layer"], r2["layer"]) == ("0", "2")
    assert r0["local_error"] == pytest.approx(float(e_local0), rel=1e-5)
    assert r0["cumulative_error"] == pytest.approx(float(e_local0), rel=1e-5)
    assert r2["local_error"] == pytest.approx(float(e_local2), rel=1e-5)
    assert r2["cumulative_error"] == pytest.approx(float(e_cum2), rel=1e-5)
    assert rep.summary()["output_error_all"] == pytest.approx(float(e_cum2), rel=1e-5)


def test_plain_policy_gives_zero_and_layer_selection(tmp_path):
    net = _chain(3, relu=True)
    x = torch.randn(2, 6, dtype=torch.float64)
    rep = fa.propagation(net, x, None)
    assert all(r["local_error"] == 0 and r["cumulative_error"] == 0 for r in rep.to_records())
    rep = fa.propagation(net, (x,), scale_weights(0.1), layers=["2"], single_layer=False)
    assert [r["layer"] for r in rep.to_records()] == ["2"]
    assert np.isnan(rep.output_error_sum_single)
    rep = fa.propagation(net, x, scale_weights(0.1), layers=[torch.nn.Linear])
    assert len(rep.to_records()) == 3
    whole = fa.propagation(net, x, scale_weights(0.1), scope="model")  # same here: only F.linear changes
    assert whole.output_error_all == pytest.approx(rep.output_error_all, rel=1e-12)
    fig = rep.plot()
    assert fig.axes[0].get_ylabel() == "‖ΔY‖² / ‖Y‖²"
    fig.savefig(tmp_path / "p.png")
    assert "cumulative_error" in rep.to_markdown()


def test_policy_by_name():
    net = _chain(2, relu=False)
    x = torch.randn(3, 6, dtype=torch.float64)
    try:
        from fpsim.torch import emulate  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="emulate|fpsim.torch"):
            fa.propagation(net, x, "bf16")
    else:
        import fpsim.torch as ft

        rep = fa.propagation(net.float(), x.float(), "bf16")
        assert rep.output_error_all > 0
        rep2 = fa.propagation(net.float(), x.float(), ft.as_policy("bf16"))  # a Policy object
        assert rep2.output_error_all == rep.output_error_all


def test_bad_input():
    with pytest.raises(ValueError, match="no parameters"):
        fa.propagation(torch.nn.ReLU(), torch.randn(2, 3), scale_weights(0.1))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        fa.propagation(lambda x: x, torch.randn(2, 3), scale_weights(0.1))
    net = _chain(2, relu=False)
    with pytest.raises(ValueError, match="not a submodule name"):
        fa.propagation(net, torch.randn(2, 6, dtype=torch.float64), None, layers=["fc9"])
    with pytest.raises(ValueError, match="reference run"):  # mismatched input shape
        fa.propagation(net, torch.randn(2, 5, dtype=torch.float64), None)
    with pytest.raises(ValueError, match="scope='all'"):
        fa.propagation(net, torch.randn(2, 6, dtype=torch.float64), None, scope="all")
    with pytest.raises(TypeError, match="not a context manager"):
        fa.propagation(net, torch.randn(2, 6, dtype=torch.float64), lambda: 3)
