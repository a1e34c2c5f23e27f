"""fpsim.analysis.sweep: interrupted sweeps resume to the same records, on every executor."""

import functools
import json
import os

import numpy as np
import pytest

import fpsim
import fpsim.analysis as fa

GRID = {"fmt": ["e4m3", "e5m2", "bf16"], "seed": [0, 1], "lr": [0.1, 0.01]}
N = 12


def train(fmt, seed, lr, log=None):
    """A deterministic stand-in for a training run (logs each call to ``log``)."""
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps({"fmt": fmt, "seed": seed, "lr": lr}, sort_keys=True) + "\n")
    # 2**15 values: fpsim's parallel (OpenMP) kernels run inside the workers
    x = np.random.default_rng(seed).standard_normal(1 << 15)
    err = fa.format_errors(fmt, x * lr).rmse
    return {"loss": float(err), "tag": (fmt, seed), "n": np.int64(64)}


def train_flaky(fmt, seed, lr, log=None, flag=None):
    if os.path.exists(flag) and fmt == "e5m2" and seed == 1:
        raise RuntimeError("simulated crash")
    return train(fmt, seed, lr, log)


def _calls(log):
    if not os.path.exists(log):
        return []
    with open(log) as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture
def env(tmp_path):
    return tmp_path / "calls.log", tmp_path / "fail.flag"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return fa.sweep(train, GRID, executor="serial", progress=False).to_records()


def test_records_content(reference):
    assert len(reference) == N
    assert reference[0]["fmt"] == "e4m3" and reference[0]["tag"] == ["e4m3", 0]  # JSON round trip
    assert reference[0]["n"] == 64 and isinstance(reference[0]["n"], int)
    assert [r["lr"] for r in reference[:2]] == [0.1, 0.01]


@pytest.mark.parametrize("executor", ["serial", "processes"])
def test_interrupted_sweep_resumes_to_same_records(env, tmp_path, reference, executor):
    log, flag = env
    path = tmp_path / "sweep.jsonl"
    flaky = functools.partial(train_flaky, log=str(log), flag=str(flag))  # picklable
    # OpenMP threads running in this process before the pool starts: a forked worker would be
    # killed by the OpenMP runtime (regression test for the default start method)
    fpsim.quantize(np.ones(1 << 16), "e4m3")
    flag.touch()
    with pytest.raises(RuntimeError, match="simulated crash"):
        fa.sweep(flaky, GRID, executor=executor, path=path, progress=False, max_workers=1)
    with open(path) as fh:
        finished = [json.loads(line)["point"] for line in fh]
    assert 0 < len(finished) < N
    assert all(not (p["fmt"] == "e5m2" and p["seed"] == 1) for p in finished)
    first_calls = _calls(log)
    flag.unlink()
    res = fa.sweep(flaky, GRID, executor=executor, path=path, progress=False, max_workers=1)
    assert res.to_records() == reference
    assert res.reused == len(finished) and res.computed == N - len(finished)
    second_calls = _calls(log)[len(first_calls):]
    # no finished point was recomputed, every missing one was computed once
    key = lambda p: json.dumps(p, sort_keys=True)  # noqa: E731
    assert sorted(map(key, second_calls)) == sorted(
        key(p) for p in fa.grid(**GRID) if key(p) not in set(map(key, finished)))
    # a third run computes nothing
    again = fa.sweep(flaky, GRID, executor=executor, path=path, progress=False)
    assert again.computed == 0 and again.to_records() == reference


def test_torn_last_line_is_recomputed(env, tmp_path, reference):
    path = tmp_path / "s.jsonl"
    fa.sweep(train, GRID, executor="serial", path=path, progress=False)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # torn write
    res = fa.sweep(train, GRID, executor="threads", path=path, progress=False)
    assert res.computed == 1 and res.to_records() == reference
    assert len(path.read_text().splitlines()) == N and path.read_text().endswith("\n")


def test_dask_local_cluster(env, tmp_path, reference):
    distributed = pytest.importorskip("distributed")
    path = tmp_path / "d.jsonl"
    # half the grid first (serial), then Dask finishes it: resume works across executors
    half = [p for p in fa.grid(**GRID) if p["fmt"] == "e4m3"]
    fa.sweep(train, half, executor="serial", path=path, progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        res = fa.sweep(train, GRID, executor=client, path=path, progress=False)
    assert res.reused == len(half) and res.computed == N - len(half)
    assert res.to_records() == reference


def test_own_executor_and_scalar_results(tmp_path):
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(2) as ex:
        res = fa.sweep(lambda a, b: a * b, {"a": [1, 2], "b": [3]}, executor=ex, progress=False)
    assert res.to_records() == [{"a": 1, "b": 3, "result": 3}, {"a": 2, "b": 3, "result": 6}]
    fig = fa.sweep(lambda a, b: {"y": a + b}, [{"a": 1, "b": 0}, {"a": 2, "b": 0}, {"a": 1, "b": 1}],
                   executor="serial", progress=False).plot("a", "y", hue="b")
    assert fig.axes[0].get_xlabel() == "a"
    fig.savefig(tmp_path / "s.png")
    assert "| a | b | result |" in res.to_markdown()


def test_bad_input():
    with pytest.raises(ValueError, match="no points"):
        fa.sweep(train, [], executor="serial")
    with pytest.raises(ValueError, match="axis 'seed' is empty"):
        fa.sweep(train, {"seed": []}, executor="serial")
    with pytest.raises(ValueError, match="duplicate"):
        fa.sweep(train, [{"a": 1}, {"a": 1}], executor="serial")
    with pytest.raises(ValueError, match="clash"):
        fa.sweep(lambda a: {"a": 2}, {"a": [1]}, executor="serial", progress=False)
    with pytest.raises(ValueError, match="executor='gpu'"):
        fa.sweep(train, GRID, executor="gpu", progress=False)
    with pytest.raises(TypeError, match="executor=3"):
        fa.sweep(train, GRID, executor=3, progress=False)
    with pytest.raises(TypeError, match="JSON"):
        fa.sweep(lambda a: 0, {"a": [object()]}, executor="serial")
    with pytest.raises(TypeError, match="sequence"):
        fa.grid(seed=3)
