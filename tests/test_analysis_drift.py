"""fpsim.analysis.drift on hand-built token sequences and logits (values worked out by hand)."""

import numpy as np
import pytest

import fpsim.analysis as fa


def test_div_index_by_hand():
    assert fa.div_index([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 9, 4]]) == 2
    assert fa.div_index([[7, 1], [8, 1]]) == 0
    assert fa.div_index([[1, 2, 3], [1, 2, 3]]) is None
    assert fa.div_index([[1, 2, 3], [1, 2]]) == 2  # one stops early: diverges at its end
    assert fa.div_index([[1, 2, 3]]) is None
    assert fa.div_index([np.array([3, 4]), [3, 5]]) == 1


def test_std_helpers_by_hand():
    assert fa.std_at_acc([0.6, 0.8, 0.7]) == pytest.approx(np.sqrt(2 / 300))
    assert fa.std_at_acc([0.6, 0.8], ddof=1) == pytest.approx(np.sqrt(0.02))
    assert fa.length_std([[1] * 2, [1] * 4, [1] * 6]) == pytest.approx(np.sqrt(8 / 3))
    # positions 0 and 1 only: stds 0 and 0.1 -> mean 0.05
    assert fa.top1_prob_std([[0.9, 0.5, 0.2], [0.9, 0.7, 0.9]], upto=2) == pytest.approx(0.05)
    assert np.isnan(fa.top1_prob_std([[0.5], [0.6]], upto=0))


def test_logit_metrics_by_hand():
    a = np.array([[[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]]])
    b = np.array([[[1.0, 1.0, 1.5], [3.0, 0.5, 0.0]]])
    assert fa.logit_diff(a, b) == (1.5, pytest.approx(3.0 / 6))
    assert fa.flip_rate(a, b) == 0.5


def _runs():
    # 3 configs x 3 examples, worked out by hand below
    return {
        "bs1": {"tokens": [[5, 6, 7], [1, 2], [9, 9, 9, 9]], "correct": [True, True, False],
                "top1_prob": [[0.9, 0.8, 0.7], [0.6, 0.6], [0.5, 0.5, 0.5, 0.5]]},
        "bs8": {"tokens": [[5, 6, 7], [1, 3, 4, 4], [9, 9, 9, 9]], "correct": [True, False, False],
                "top1_prob": [[0.9, 0.8, 0.7], [0.6, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]]},
        "bs32": {"tokens": [[5, 6, 8], [1, 2, 4], [9, 9, 9, 9]], "correct": [True, True, True],
                 "top1_prob": [[0.9, 0.8, 0.4], [0.9, 0.6, 0.1], [0.5, 0.5, 0.5, 0.5]]},
    }


def test_drift_on_hand_built_sequences():
    runs = _runs()
    rep = fa.drift(runs.__getitem__, {k: k for k in runs})
    (r,) = rep.to_records()
    accs = [2 / 3, 1 / 3, 1.0]
    assert r["configs"] == 3
    assert r["mean_acc"] == pytest.approx(np.mean(accs))
    assert r["std_acc"] == pytest.approx(np.std(accs))
    # lengths: ex0 (3,3,3) std 0; ex1 (2,4,3) std sqrt(2/3); ex2 (4,4,4) std 0
    assert r["avg_std_len"] == pytest.approx(np.sqrt(2 / 3) / 3)
    # Div_Index: ex0 -> 2, ex1 -> 1, ex2 -> none
    assert rep.div_indices["all"] == [2, 1, None]
    assert r["div_rate"] == pytest.approx(2 / 3)
    assert r["avg_div_index"] == 1.5
    # top-1 std before divergence: ex0 positions 0,1 -> 0; ex1 position 0: std(.6,.6,.9);
    # ex2 all 4 positions -> 0
    assert r["std_top1_prob"] == pytest.approx(np.std([0.6, 0.6, 0.9]) / 3)
    assert r["max_logit_diff"] is None
    cr = rep.config_records()
    assert [c["accuracy"] for c in cr] == pytest.approx(accs)
    assert cr[1]["mean_length"] == pytest.approx(11 / 3)


def test_drift_with_judge_and_groups():
    seqs = {("fp32", 1): [[1, 2, 3]], ("fp32", 8): [[1, 2, 3]],
            ("bf16", 1): [[1, 2, 3]], ("bf16", 8): [[1, 4, 3, 3]]}
    configs = [{"precision": p, "batch_size": b} for p, b in seqs]
    rep = fa.drift(lambda c: {"tokens": seqs[(c["precision"], c["batch_size"])]}, configs,
                   judge=lambda i, t: t[-1] == 3 and len(t) == 3, group_by="precision")
    rows = {r["group"]: r for r in rep.to_records()}
    assert rows["fp32"]["std_acc"] == 0.0 and rows["fp32"]["div_rate"] == 0.0
    assert rows["fp32"]["avg_div_index"] is None
    assert rows["bf16"]["std_acc"] == 0.5 and rows["bf16"]["avg_div_index"] == 1.0
    assert rows["bf16"]["avg_std_len"] == 0.5


def test_drift_logits_vs_baseline_and_derived_top1():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((4, 3, 5))  # examples x steps x vocab
    other = base.copy()
    other[0, 1, :] = base[0, 1, ::-1]  # reversed row: argmax flips unless symmetric
    other[2, 0, 0] += 0.25
    outs = {"ref": {"logits": base, "tokens": np.argmax(base, -1)},
            "b": {"logits": other, "tokens": np.argmax(other, -1)}}
    rep = fa.drift(outs.__getitem__, ["ref", "b"], baseline=0)
    (r,) = rep.to_records()
    d = np.abs(other - base)
    assert r["max_logit_diff"] == pytest.approx(d.max())
    assert r["mean_logit_diff"] == pytest.approx(d.mean())
    flips = np.mean(np.argmax(other, -1) != np.argmax(base, -1))
    assert r["flip_rate"] == pytest.approx(flips) and flips > 0
    # top-1 probabilities derived from the logits by softmax
    p = lambda z: np.max(np.exp(z) / np.exp(z).sum(-1, keepdims=True), -1)  # noqa: E731
    ex1 = np.std([p(base[1]), p(other[1])], axis=0).mean()  # ex 1 never diverges: all steps
    assert ex1 == 0.0
    assert r["std_top1_prob"] is not None
    # plain logits array; reference = first config
    rep2 = fa.drift(lambda c: base * c, [1.0, 1.5])
    assert rep2.to_records()[0]["max_logit_diff"] == pytest.approx(0.5 * np.abs(base).max())
    assert rep2.to_records()[0]["flip_rate"] == 0.0


def test_drift_configs_and_plot(tmp_path):
    cfgs = fa.drift_configs(batch_sizes=(1, 4), precisions=("bf16", "layercast"), accumulation=("seq", "pair"))
    assert len(cfgs) == 8 and cfgs[-1] == {"batch_size": 4, "precision": "layercast", "accumulation": "pair"}
    runs = _runs()
    rep = fa.drift(runs.__getitem__, list(runs))
    fig = rep.plot()
    assert fig.axes[2].get_xlabel() == "token position"
    fig.savefig(tmp_path / "d.png")
    assert "std_acc" in rep.to_markdown()


def test_drift_bad_input():
    with pytest.raises(ValueError, match="configs is empty"):
        fa.drift(lambda c: np.zeros((1, 2)), [])
    with pytest.raises(ValueError, match="same shape"):
        fa.drift(lambda c: np.zeros((2, c)), [3, 4])
    with pytest.raises(ValueError, match="numbers of examples"):
        fa.drift(lambda c: {"tokens": [[1]] * c}, [1, 2])
    with pytest.raises(TypeError, match="returned list"):
        fa.drift(lambda c: [1, 2], [1])
    with pytest.raises(ValueError, match="unknown keys"):
        fa.drift(lambda c: {"token": [[1]]}, [1])
    with pytest.raises(ValueError, match="baseline='x'"):
        fa.drift(lambda c: np.zeros((1, 2)), {"a": 1}, baseline="x")
    with pytest.raises(ValueError, match="group_by='precision'"):
        fa.drift(lambda c: np.zeros((1, 2)), [1], group_by="precision")
    with pytest.raises(ValueError, match="axis 'batch_size' is empty"):
        fa.drift_configs(batch_sizes=())


def test_greedy_runner_matches_hand_decoding():
    torch = pytest.importorskip("torch")
    from contextlib import contextmanager

    torch.manual_seed(1)
    V = 12

    class LM(torch.nn.Module):  # logits of the next token from the mean embedding so far
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(V, 16)
            self.out = torch.nn.Linear(16, V)

        def forward(self, ids):
            return self.out(self.emb(ids).cumsum(1) / torch.arange(1, ids.shape[1] + 1)[:, None])

    lm = LM()
    prompts = torch.randint(0, V, (5, 3))
    eos = 7

    def by_hand(p):
        seq, out = list(p), []
        with torch.no_grad():
            for _ in range(6):
                t = int(lm(torch.tensor([seq]))[0, -1].argmax())
                out.append(t)
                seq.append(t)
                if t == eos:
                    break
        return out

    want = [by_hand(p.tolist()) for p in prompts]
    run = fa.greedy_runner(lm, prompts, max_new_tokens=6, eos=eos)
    for bs in (1, 2, 5):
        out = run({"batch_size": bs})
        assert out["tokens"] == want
        assert [len(p) for p in out["top1_prob"]] == [len(t) for t in want]

    @contextmanager
    def force_token_3():  # stand-in emulation that changes the model's answer
        orig = torch.nn.functional.linear
        torch.nn.functional.linear = lambda x, w, b=None: orig(x, w, b) + 100 * (torch.arange(V) == 3)
        try:
            yield
        finally:
            torch.nn.functional.linear = orig

    rep = fa.drift(run, [{"precision": None}, {"precision": force_token_3}])
    (r,) = rep.to_records()
    assert rep.div_indices["all"] == [0 if w[0] != 3 else fa.div_index([w, [3] * 6]) for w in want]
    assert r["flip_rate"] == np.mean([w[0] != 3 for w in want])
    with pytest.raises(ValueError, match="prompts must be"):
        fa.greedy_runner(lm, [1, 2, 3])


def test_deployment_audit_on_a_dask_cluster_equals_serial():
    """A real dask.distributed run: two worker processes (one thread each) run the
    deployments; the audit's numbers are those of the serial run, bit for bit. Small grid
    (fp32, 2 prompts, 2 tokens, 3 deployments) so that it stays well under a minute."""
    torch = pytest.importorskip("torch")
    distributed = pytest.importorskip("distributed")
    import fpsim.torch as ft

    torch.manual_seed(0)
    lm = ft.TinyGPT(vocab=12, d=16, heads=2, layers=1, ctx=8).eval()
    kw = dict(max_new_tokens=2, dtypes=("fp32",), batch_sizes=(1, 2), tps=(1, 2),
              judge=lambda i, t: t[0] % 2 == 0, sms=4, tile_m=4, tile_n=16, k_grain=16)
    prompts = [[1, 2, 3], [4, 5, 6]]
    with distributed.LocalCluster(n_workers=0, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        cluster.scale(2)  # the workers start (import torch) while the serial run computes
        serial = fa.deployment_audit(lm, prompts, executor="serial", **kw)
        client.wait_for_workers(2, timeout=120)
        dask = fa.deployment_audit(lm, prompts, executor=client, **kw)
        assert len(client.scheduler_info()["workers"]) == 2
    assert dask.to_records() == serial.to_records()
    assert dask.group_records() == serial.group_records()
    assert dask.div == serial.div
    assert [r["config"] for r in serial.to_records()] == ["baseline", "batch_size=2", "tp=2"]


def test_deployment_audit_checks_the_grid_first():
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"fp8 on a100 .*no FP8 tensor cores"):
        fa.deployment_audit(None, [[1, 2]], dtypes=("fp8",), gpus=("h100", "a100"), tps=(1,),
                            batch_sizes=(1,))
    with pytest.raises(ValueError, match="allreduce"):
        fa.deployment_audit(None, [[1, 2]], dtypes=("bf16",), tps=(1, 2), batch_sizes=(1,),
                            allreduce="nccl")
