"""fpsim.torch.NVFP4Recipe: 2D weight scales, RHT on wgrad, SR of gradients, against
independent constructions (ml_dtypes casts, scipy's Hadamard matrix, fpsim.encode +
fpsim.matmul on the Numba kernels, the b200_nvfp4 profile's CPU path)."""

import ml_dtypes
import numpy as np
import pytest
import scipy.linalg
import torch

import fpsim
import fpsim.torch as ft
from fpsim.torch.block_quant import block_operand
from fpsim.torch.recipes import hadamard, nvfp4_operand, rht

NV = fpsim.parse("nvfp4")
MODEL = fpsim.hardware.tensor_core("B200", "nvfp4")


def _oracle_2d(W):
    """NVFP4 with one scale per 16x16 tile from ml_dtypes casts (E4M3 scale of
    amax / (6 g), E2M1 elements of x / (s g), saturating), g = fp32(amax / (6 * 448))."""
    W = W.astype(np.float64)
    g = float(np.float32(np.abs(W).max() / (6 * 448)))
    out = np.empty_like(W)
    for i in range(0, W.shape[0], 16):
        for j in range(0, W.shape[1], 16):
            t = W[i:i + 16, j:j + 16]
            s = float(np.float64(np.float32(np.abs(t).max() / (6 * g))).astype(ml_dtypes.float8_e4m3fn))
            y = np.clip(t / (s * g), -6, 6)
            out[i:i + 16, j:j + 16] = y.astype(ml_dtypes.float4_e2m1fn).astype(np.float64) * s * g
    return out


def _value(e, s, g, axis):
    return (e * torch.repeat_interleave(s, 16, dim=axis) * g).numpy()


def test_2d_weight_scales_match_ml_dtypes_and_are_transpose_invariant():
    W = torch.randn(32, 48, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    W[5, 7] = 9.0  # one tile with a large amax: its 16 lines share that scale
    fwd = _value(*nvfp4_operand(W, -2, tile=16), axis=-2)       # forward: blocks along K (rows)
    bwd = _value(*nvfp4_operand(W.T, -2, tile=16), axis=-2).T   # dgrad: Wᵀ blocked along N
    np.testing.assert_array_equal(fwd, _oracle_2d(W.numpy()))
    np.testing.assert_array_equal(fwd, bwd)
    one_d = _value(*nvfp4_operand(W, -2), axis=-2)
    assert not np.array_equal(one_d, fwd)  # 1x16 blocks give other values (the test can fail)


def test_rht_is_the_scipy_hadamard_and_orthogonal():
    H = hadamard(16, seed=5)
    signs = np.random.default_rng(5).integers(0, 2, 16) * 2 - 1
    ref = scipy.linalg.hadamard(16) / 4.0 * signs
    np.testing.assert_array_equal(H.numpy(), ref)
    np.testing.assert_array_equal((H @ H.T).numpy(), np.eye(16))
    x = torch.randn(40, 3, dtype=torch.float64)
    y = rht(x, 16, seed=5)
    blk = scipy.linalg.block_diag(*[ref] * 3)
    np.testing.assert_allclose(y.numpy(), blk @ np.vstack([x.numpy(), np.zeros((8, 3))]), rtol=0,
                               atol=1e-15)


def _encode(X, axis):
    """Element values, block scales, tensor scale by fpsim.encode (the Numba kernels)."""
    c = fpsim.encode(X, NV, axis=axis)
    e = fpsim.decode(c.elements, NV.elem)
    pad = -X.shape[axis] % 16
    if pad:
        w = [(0, 0)] * 2
        w[axis] = (0, pad)
        e = np.pad(e, w)
    return e, fpsim.decode(c.scales, NV.scale), float(fpsim.decode(np.array([c.tensor_scale]),
                                                                   NV.tensor_scale)[0])


def _oracle_gemm(A, B):
    ea, sa, ga = _encode(A, -1)
    eb, sb, gb = _encode(B, -2)
    D = np.asarray(fpsim.matmul(ea, eb, model=MODEL, a_scale=sa, b_scale=sb), np.float32)
    return D * np.float32(ga) * np.float32(gb)


def _lin_grads(recipe, x, w, dy):
    xt, wt = x.clone().requires_grad_(), w.clone().requires_grad_()
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    with ft.emulate(recipe, model=lin):
        y = torch.nn.functional.linear(xt, wt)
    y.backward(dy)
    return y.detach(), xt.grad, wt.grad


def _data(M=24, K=32, N=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(M, K, generator=g), torch.randn(N, K, generator=g),
            torch.randn(M, N, generator=g))


def test_wgrad_is_quantized_rht_operands_on_the_tensor_core():
    x, w, dy = _data()
    r = ft.NVFP4Recipe(weight_2d=False, rht_wgrad=True, sr_grads=False, seed=11)
    _, _, gw = _lin_grads(r, x, w, dy)
    blk = scipy.linalg.block_diag(*[hadamard(16, 11).numpy()] * 2)  # M = 24 padded to 32
    hx = blk @ np.vstack([x.double().numpy(), np.zeros((8, x.shape[1]))])
    hdy = blk @ np.vstack([dy.double().numpy(), np.zeros((8, dy.shape[1]))])
    ref = _oracle_gemm(np.ascontiguousarray(hx.T), hdy)  # dW' = q(Hx)ᵀ q(H dy): (K, N)
    np.testing.assert_array_equal(gw.numpy(), ref.T)
    no_rht = _lin_grads(ft.NVFP4Recipe(weight_2d=False, rht_wgrad=False, sr_grads=False), x, w, dy)[2]
    assert not torch.equal(no_rht, gw)
    exact = (x.double().T @ dy.double()).T.numpy()
    np.testing.assert_allclose((hx.T @ hdy).T, exact, atol=1e-12)  # H orthogonal: same exact dW


def test_plain_recipe_equals_the_b200_nvfp4_profile_cpu_kernels():
    x, w, dy = _data(M=20, K=48, N=32, seed=1)
    plain = ft.NVFP4Recipe(weight_2d=False, rht_wgrad=False, sr_grads=False)
    got = _lin_grads(plain, x, w, dy)
    ref = _lin_grads("b200_nvfp4", x, w, dy)  # fpsim.encode / fpsim.matmul on the CPU
    for a, b in zip(got, ref):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(got[0].numpy(), _oracle_gemm(x.double().numpy(),
                                                               w.double().T.numpy().copy()))


def test_forward_uses_the_2d_weight():
    x, w, dy = _data(seed=2)
    y = _lin_grads(ft.NVFP4Recipe(rht_wgrad=False, sr_grads=False), x, w, dy)[0]
    wq = _oracle_2d(w.double().T.numpy())  # (K, N) tiles
    ea, sa, ga = _encode(x.double().numpy(), -1)
    assert np.allclose(y.numpy(), _value(torch.from_numpy(ea), torch.from_numpy(sa), ga, -1)
                       [:, :32] @ wq, rtol=1e-5, atol=1e-5)


def test_sr_unbiased_deterministic_and_seeded():
    x = torch.tensor([[0.25] * 15 + [0.1]], dtype=torch.float64)
    vals = np.array([_value(*nvfp4_operand(x, rounding="sr",
                                           generator=torch.Generator().manual_seed(s)), -1)[0]
                     for s in range(2000)])
    _, sc, g = nvfp4_operand(x)
    tot = float(sc[0, 0]) * g  # 0.1 is about 2.4 at the block scale: E2M1 2 or 3
    p = 0.1 / tot - 2
    assert 0.3 < p < 0.5
    np.testing.assert_array_equal(np.unique(vals[:, 15]), [2 * tot, 3 * tot])
    sigma = tot * np.sqrt(p * (1 - p) / len(vals))
    assert abs(vals[:, 15].mean() - 0.1) < 5 * sigma
    assert abs(vals[:, 15].mean() - 2 * tot) > 20 * sigma  # not rounded to nearest
    assert np.all(vals[:, :15] == 6 * tot)  # values on the E2M1 grid do not move
    a = nvfp4_operand(x, rounding="sr", generator=torch.Generator().manual_seed(7))[0]
    b = nvfp4_operand(x, rounding="sr", generator=torch.Generator().manual_seed(7))[0]
    assert torch.equal(a, b)
    big = torch.randn(64, 64, dtype=torch.float64)
    c = nvfp4_operand(big, rounding="sr", generator=torch.Generator().manual_seed(1))[0]
    d = nvfp4_operand(big, rounding="sr", generator=torch.Generator().manual_seed(2))[0]
    assert not torch.equal(c, d)


def test_recipe_sr_gradients_deterministic_per_seed():
    x, w, dy = _data(seed=4)
    r = ft.NVFP4Recipe(seed=3)
    g1, g2 = _lin_grads(r, x, w, dy), _lin_grads(r, x, w, dy)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))
    g3 = _lin_grads(ft.NVFP4Recipe(seed=4), x, w, dy)
    assert torch.equal(g1[0], g3[0]) and not torch.equal(g1[2], g3[2])


def test_mlp_training_loop_with_a_bf16_last_layer():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    r = ft.NVFP4Recipe(seed=1, high_precision_layers=("2",))
    assert r.policy(net).resolve("2").name == "bf16"
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    x, t = torch.randn(48, 32), torch.randn(48, 8)
    w0 = net[0].weight.detach().clone()
    losses = []
    with ft.emulate(r, model=net):
        for _ in range(3):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), t)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert all(np.isfinite(losses)) and not torch.equal(w0, net[0].weight)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("kw, err", [
    (dict(rht_size=12), ValueError), (dict(rht_size=1), ValueError),
    (dict(weight_2d="yes"), TypeError), (dict(seed=-1), ValueError),
    (dict(high_precision="nope"), ValueError), (dict(high_precision_layers=(3,)), TypeError)])
def test_bad_recipe_options(kw, err):
    with pytest.raises(err):
        ft.NVFP4Recipe(**kw)


def test_bad_calls():
    with pytest.raises(ValueError, match="match no module"):
        ft.NVFP4Recipe(high_precision_layers=("lm_head",)).policy(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="rounding"):
        nvfp4_operand(torch.ones(1, 16), rounding="rtz")
    with pytest.raises(TypeError, match="Generator"):
        nvfp4_operand(torch.ones(1, 16), rounding="sr")
    with pytest.raises(ValueError, match="tile"):
        block_operand(torch.ones(2, 2, 16), NV, tile=16)
    with pytest.raises(ValueError, match="power of two"):
        hadamard(12)


def test_gpu_check_cpu_mode_covers_every_torch_twin(capsys):
    """benchmarks/gpu_check.py --cpu at tiny sizes: tensor cores, MFMA, fp64 chains, the
    block-scaled encodings and GEMMs and the recipe's 2D tiles all checked and passing."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check_recipes", path)
    gc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gc)
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the full script instead")
    assert gc.main(["--cpu", "--trials", "1", "--m", "16", "--k", "32", "--n", "16",
                    "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    for name in ("MI300X e4m3fnuz MFMA", "seq fp64 (fp32)", "B200 nvfp4", "B200 mxfp8 x e5m2",
                 "NVFP4 recipe 2D tiles  bit-identical", "B200 nvfp4 block16"):
        assert name in out, name
    assert "MISMATCH" not in out and "PASS" in out
    assert not gc._same([0.0], [-0.0]) and gc._same([np.nan], [np.nan])  # the check can fail


def test_tinygpt_step_and_convert_under_the_recipe():
    """3D activations (flattened to one GEMM), attention's batched matmuls (the b200_nvfp4
    profile) and fpsim.torch.convert with a recipe."""
    torch.manual_seed(0)
    g = ft.TinyGPT(32)
    idx = torch.randint(0, 32, (2, 16))
    with ft.emulate(ft.NVFP4Recipe(seed=1), model=g):
        loss = g(idx).float().logsumexp(-1).mean()
    loss.backward()
    grads = [p.grad for p in g.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(t).all() for t in grads)
    net = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    m = ft.convert(net, ft.NVFP4Recipe(seed=2, high_precision_layers=("2",)))
    x = torch.randn(8, 32)
    y = m(x)
    y.sum().backward()
    assert net[0].weight.grad is not None
    with torch.no_grad():
        assert not torch.equal(y, net(x))  # the converted model is not the fp32 one
