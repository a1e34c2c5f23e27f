"""The op-coverage contract (fpsim.torch.coverage), the run report, overrides that cannot
silently miss, profile validation labels and the converted model's state_dict."""

import warnings

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import fpsim.torch as ft  # noqa: E402
import fpsim.torch.handlers as ft_handlers  # noqa: E402
from fpsim.torch import Policy  # noqa: E402
from fpsim.torch import coverage  # noqa: E402

# The ops the issue names, that must stay emulated (a removal fails here and in the contract)
MUST_EMULATE = [
    "torch.nn.functional.linear", "torch.matmul", "Tensor.__matmul__", "torch.linalg.matmul",
    "torch.linalg.multi_dot", "torch.einsum", "torch.tensordot", "torch.mv", "torch.dot",
    "torch.inner", "torch.outer", "torch.addmv", "torch.addr", "torch.baddbmm", "torch.addbmm",
    "torch.conv1d", "torch.conv2d", "torch.conv3d", "torch.conv_transpose1d",
    "torch.conv_transpose2d", "torch.conv_transpose3d", "torch.lstm", "torch.gru",
    "torch.rnn_tanh", "torch.rnn_relu", "torch.lstm_cell", "torch.gru_cell",
    "torch.nn.functional.scaled_dot_product_attention", "torch.batch_norm", "torch.group_norm",
    "torch.instance_norm", "torch.layer_norm", "torch.softmax", "torch.sum", "torch.mean",
]


def test_contract_classifies_every_op_of_the_rule():
    """Every torch op that reduces or multiplies is emulated, a composite, or listed with a
    reason: an op removed from the handler table lands in none of them and fails here."""
    table = ft.coverage_table()
    assert len(table) > 150  # the rule really enumerates torch.overrides
    unclassified = [n for n, status, why in table if status == "pass-through" and "not classified" in why]
    assert not unclassified, unclassified
    status = {n: s for n, s, _ in table}
    for n in MUST_EMULATE:
        if n in status:
            assert status[n] == "emulated", n
    assert set(MUST_EMULATE) <= set(ft.supported_ops())
    for n, s, why in table:
        if s == "pass-through":
            assert n in coverage.PASSTHROUGH and len(why) > 15, n
    # no op is listed as pass-through while it has a handler
    assert not set(coverage.PASSTHROUGH) & set(ft.supported_ops())


def test_contract_fails_when_an_op_leaves_the_emulated_set(monkeypatch):
    table = dict(ft_handlers.HANDLERS)
    del table[torch.conv3d]
    monkeypatch.setattr(ft_handlers, "HANDLERS", table)
    row = next(r for r in ft.coverage_table() if r[0] == "torch.conv3d")
    assert row[1] == "pass-through" and "not classified" in row[2]
    # ... and at run time it is a loud pass-through, not a silent one
    with pytest.raises(ft.UnsupportedOpError, match="conv3d"):
        with ft.emulate("bf16", strict=True):
            torch.conv3d(torch.ones(1, 1, 2, 2, 2), torch.ones(1, 1, 1, 1, 1))


@pytest.mark.parametrize("prof", ["bf16", "mxfp4", "dint4_w4a8", "a100_bf16"])
def test_emulated_ops_run_under_profiles(prof):
    """A sample of each GEMM family runs emulated (never passed through) under each profile."""
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(3, 32, generator=g), torch.randn(32, 4, generator=g)
    v, u = torch.randn(32, generator=g), torch.randn(3, generator=g)
    x = torch.randn(1, 2, 4, 4, 4, generator=g)
    with ft.emulate(prof, strict=True) as m:
        outs = [torch.linalg.matmul(A, B), torch.linalg.multi_dot([A, B, B.t()]),
                torch.einsum("ik,kj,jl->il", A, B, B.t()), torch.tensordot(A, B, 1),
                torch.mv(A, v), torch.dot(v, v), torch.inner(A, A), torch.outer(u, v),
                torch.addmv(u, A, v), torch.addr(torch.zeros(3, 32), u, v),
                torch.addbmm(torch.zeros(3, 4), A.expand(2, 3, 32), B.expand(2, 32, 4)),
                F.conv3d(x, torch.randn(3, 2, 2, 2, 2, generator=g)),
                F.conv_transpose1d(x[:, :, 0, 0], torch.randn(2, 3, 2, generator=g), stride=2),
                F.cross_entropy(A, torch.tensor([0, 1, 2])), F.mse_loss(A, A * 0.5)]
    rep = m.report()
    assert not rep.passthrough and sum(rep.emulated.values()) >= len(outs)
    plain = [A @ B, A @ B @ B.t()]
    assert (outs[0] - plain[0]).abs().max() > 0 and (outs[1] - plain[1]).abs().max() > 0
    assert "emulated" in str(rep) and rep.as_dict()["emulated"]


def test_compute_precision_reaches_norms_and_losses():
    bf = lambda t: t.to(torch.bfloat16).float()  # noqa: E731  oracle: torch's RNE cast
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    t = torch.tensor([0, 2, 1, 0])
    with ft.emulate(Policy(compute="bf16")):
        got = [F.cross_entropy(x, t), F.mse_loss(x, y), F.nll_loss(x, t), F.l1_loss(x, y),
               F.batch_norm(x, None, None, training=True), F.group_norm(x[..., None], 3),
               F.instance_norm(x[:, :, None].expand(4, 3, 2).contiguous()), torch.var(x, 0)]
    want = [bf(F.cross_entropy(bf(x), t)), bf(F.mse_loss(bf(x), bf(y))), bf(F.nll_loss(bf(x), t)),
            bf(F.l1_loss(bf(x), bf(y))), bf(F.batch_norm(bf(x), None, None, training=True)),
            bf(F.group_norm(bf(x)[..., None], 3)),
            bf(F.instance_norm(bf(x)[:, :, None].expand(4, 3, 2).contiguous())), bf(torch.var(bf(x), 0))]
    for i, (a, b) in enumerate(zip(got, want)):
        assert torch.equal(a, b), i
    assert not torch.equal(got[0], F.cross_entropy(x, t))  # compute= is not ignored


def test_embedding_stays_exact():
    emb = torch.nn.Embedding(5, 3)
    with ft.emulate("mxfp4", strict=True) as m:
        out = emb(torch.tensor([1, 4]))
    assert torch.equal(out, emb.weight[[1, 4]]) and not m.report().passthrough


def test_override_pattern_must_match():
    net = torch.nn.Sequential()
    net.add_module("body", torch.nn.Linear(4, 4))
    net.add_module("head", torch.nn.Linear(4, 2))
    x = torch.ones(1, 4)
    typo = Policy(weight="bf16", activation="bf16", overrides=(("haed", "fp32"),), name="typo")
    with pytest.warns(RuntimeWarning, match=r"'haed'.*closest module names: head"):
        with ft.emulate(typo, model=net):
            net(x)
    with pytest.raises(ValueError, match=r"'haed'.*head"):
        with ft.emulate(typo.replace(strict=True, name="typo_strict"), model=net):
            net(x)
    with pytest.raises(ValueError, match="model="):
        ft.emulate(typo)
    ok = typo.replace(overrides=(("head", "fp32"),), name="ok")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ft.emulate(ok, model=net):
            net(x)


def test_state_dict_has_the_plain_keys():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    emu = ft.convert(net, "bf16")
    sd = emu.state_dict()
    assert list(sd) == list(net.state_dict()) == ["0.weight", "0.bias"]
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 2))
    fresh.load_state_dict(sd)  # a converted model's checkpoint loads into the plain model
    emu2 = ft.convert(torch.nn.Sequential(torch.nn.Linear(3, 2)), "bf16")
    emu2.load_state_dict(net.state_dict())  # and back
    assert torch.equal(emu2.module[0].weight, net[0].weight)
    outer = torch.nn.ModuleDict({"enc": emu})  # nested: only the wrapper's level disappears
    assert list(outer.state_dict()) == ["enc.0.weight", "enc.0.bias"]


def test_profile_names_and_validation_labels():
    with pytest.raises(ValueError, match="did you mean 'h100_fp8'") as e:
        ft.profiles.get("h100-fp8")
    assert "b200_e5m2" not in str(e.value)  # a suggestion, not the whole list
    lab = ft.profiles.validation
    for n in ("v100_fp16", "a100_fp16", "a100_bf16", "a100_tf32", "ada_fp16", "ada_e4m3",
              "ada_e5m2", "h100_fp16", "h100_bf16", "h100_tf32"):
        assert lab(n).startswith("captured GPU data"), n
    for n in ("b200_e4m3", "b200_e5m2", "h100_e4m3", "h100_e5m2", "h100_fp8"):
        assert lab(n).startswith("captured GPU data"), n  # fitted / replayed without c
    for n in ("h200_bf16", "b200_bf16", "a30_fp16", "l40s_e4m3"):
        assert lab(n).startswith("MMA-Sim agreement"), n
    assert "same architecture's A100 data" in lab("a30_fp16")
    assert lab("mxfp4").startswith("formats only")
    ft.profiles.register("cov_e5m2", Policy(weight="e5m2", name="cov_e5m2"))
    assert "weight=e5m2" in ft.profiles.describe("cov_e5m2")


def test_captured_label_is_backed_by_the_data():
    """The 'captured GPU data' label stands on a replay of the captured files (one format per
    GPU here, to stay fast; tests/test_tensor_cores.py replays them all)."""
    import fpsim
    d = fpsim.hardware.data_dir()
    if d is None:
        pytest.skip("tensor-core data not found")
    for gpu, fmt in (("H100", "bf16"), ("A100", "tf32")):
        res = fpsim.hardware.validate(d / gpu / fmt)
        assert res and all(r.fraction == 1.0 for r in res.values()), res
        assert (gpu.lower(), fmt) in ft.profiles.CAPTURED
