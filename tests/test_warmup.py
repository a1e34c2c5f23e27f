"""Issue 15, cold start: the first-use compile notice, ``fpsim warmup`` and ``fpsim.warmup``.

Cheap by design: the notice logic is checked on stand-in dispatchers (an empty or a filled
Numba cache index), the real kernels only on families the suite has compiled anyway.
"""

import logging
import types

import numpy as np
import pytest

import fpsim
from fpsim.cli import main
from fpsim.kernels import _notice
from fpsim.warmup import FAMILIES, families


def _fake(overloads=(), index=None):
    """A stand-in Numba dispatcher: compiled ``overloads`` in this process, cache ``index``."""
    cf = types.SimpleNamespace(_load_index=lambda: dict(index or {}))
    return types.SimpleNamespace(overloads=dict.fromkeys(overloads), _cache=types.SimpleNamespace(
        _cache_file=cf))


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setitem(_notice._STATE, "said", set())
    monkeypatch.delenv(_notice.ENV, raising=False)


@pytest.mark.parametrize("disp, said", [
    (_fake(), True),  # nothing compiled, nothing on disk: cold
    (_fake(index={("sig",): "file.nbc"}), False),  # the disk cache holds it
    (_fake(overloads=["sig"]), False),  # compiled earlier in this process
    (object(), False),  # not a Numba object as expected: stay silent
])
def test_notice_only_when_cold(fresh, caplog, disp, said):
    with caplog.at_level(logging.WARNING, logger="fpsim.compile"):
        assert _notice.announce("block_round", disp) is said
        assert _notice.announce("block_round", _fake()) is not said  # once per family
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1
    assert "compiling the block-format kernels" in msgs[0] and "about 45 s" in msgs[0]
    assert "fpsim warmup" in msgs[0] and "FPSIM_COMPILE_NOTICE=0" in msgs[0]


def test_notice_silenced(fresh, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="fpsim.compile"):
        with _notice.quiet():
            assert not _notice.announce("accum", _fake())
        monkeypatch.setenv(_notice.ENV, "0")
        assert not _notice.announce("accum", _fake())
        assert not _notice.announce("float_round", _fake())  # quick family: never a notice
    assert not caplog.records


def test_first_call_wrapper_replaces_itself(fresh):
    calls, installed = [], []
    f = type("D", (), {"overloads": {"s": 1}, "__call__": lambda self, x: calls.append(x) or x})()
    w = _notice.first_call("arith", f, installed.append)
    assert w is not f and w(3) == 3 and installed == [f] and calls == [3]
    assert _notice.first_call("float_round", f, installed.append) is f


def test_real_kernel_is_cached_after_use():
    from fpsim.kernels import arith
    fpsim.add(np.ones(2), np.ones(2), "bf16")
    assert _notice.is_cached(arith.arith_serial)


def test_warmup_api_and_cli(capsys):
    assert families() == list(FAMILIES) and "accum-tensor-core" in families()
    t = fpsim.warmup(["quantize-e4m3", "table-nf4"], progress=False)
    assert set(t) == {"quantize-e4m3", "table-nf4"} and all(v >= 0 for v in t.values())
    assert main(["warmup", "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in out] == families()
    assert main(["warmup", "--no-progress", "quantize-e4m3"]) == 0
    assert "compiled 1 kernel families" in capsys.readouterr().out


@pytest.mark.parametrize("argv, msg", [
    (["warmup", "block-nvfp"], "did you mean 'block-nvfp4'"),
    (["warmup", "--all", "arith"], "not both"),
])
def test_warmup_cli_errors(capsys, argv, msg):
    assert main(argv) == 2
    assert msg in capsys.readouterr().err


def test_blocked_family_builds_its_model():
    # it once passed Blocked's arguments in the wrong order, so `fpsim report` stopped there
    assert fpsim.warmup(["accum-blocked"], progress=False)["accum-blocked"] >= 0


def test_common_families_are_the_reports():
    # `fpsim warmup` (no names) compiles what `fpsim report` needs; torch families are opt-in
    common = [f.name for f in FAMILIES.values() if f.common]
    assert "block-mxfp4" in common and "accum-tensor-core" in common
    assert not any(FAMILIES[n].torch for n in common)


@pytest.mark.parametrize("argv, warmed", [([], True), (["--quick"], False), (["--no-warmup"], False)])
def test_report_command_warms_the_common_families(monkeypatch, tmp_path, argv, warmed):
    import fpsim.cli
    calls = []
    # stand-ins where the command looks them up (fpsim.cli imports both at module level)
    monkeypatch.setattr(fpsim.cli, "warmup", lambda *a, **k: calls.append(a) or {})
    monkeypatch.setattr(fpsim.cli, "write_report", lambda out, quick: str(out))
    assert main(["report", "--out", str(tmp_path)] + argv) == 0
    assert calls == ([()] if warmed else [])


def test_kernel_cache_stamp_covers_every_kernel_source(tmp_path):
    """A cached kernel is stale when *any* kernel source changed (kernels inline helpers of
    other files: round_bits of float_round.py runs inside the accumulation kernels), not
    only its own file, which is all Numba's stamp covers."""
    import hashlib
    import os

    from numba.core import caching

    from fpsim.kernels import _cache, accum_leaves, float_round

    _cache.install()
    kdir = os.path.dirname(float_round.__file__)
    want = hashlib.sha256()
    for name in sorted(n for n in os.listdir(kdir) if n.endswith(".py")):
        want.update(name.encode())
        want.update(hashlib.sha256(open(os.path.join(kdir, name), "rb").read()).digest())
    assert _cache.kernels_digest() == want.hexdigest()
    loc = caching.InTreeCacheLocator(accum_leaves.rnd1.py_func, accum_leaves.__file__)
    own, digest = loc.get_source_stamp()
    assert digest == want.hexdigest()
    assert own == caching._SourceFileBackedLocatorMixin.get_source_stamp.__wrapped__(loc)
    # a file outside fpsim/kernels keeps Numba's own stamp
    other = tmp_path / "mod.py"
    other.write_text("def f():\n    return 1\n")
    ns = {}
    exec(compile(other.read_text(), str(other), "exec"), ns)
    loc2 = caching.InTreeCacheLocator(ns["f"], str(other))
    assert not isinstance(loc2.get_source_stamp(), tuple)
