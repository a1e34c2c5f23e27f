"""Parameter sweeps (formats × seeds × learning rates …) that survive interruption.

:func:`sweep` calls ``fn(**point)`` for every point of a grid, in local processes by default
(:class:`concurrent.futures.ProcessPoolExecutor`), in-process (``executor="serial"``), in
threads, or on a Dask cluster (pass a ``dask.distributed.Client``). Each finished point is
appended at once to a JSONL file; running the same sweep again reads the file, skips the
points already there and computes only the rest — an interrupted sweep loses no finished
point and recomputes none.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ._common import Result, new_figure

__all__ = ["sweep", "grid", "SweepResult", "plot_sweep", "EXECUTORS"]

#: Executor names accepted by :func:`sweep` (besides Executor / dask Client objects).
EXECUTORS = ("processes", "threads", "serial")


def grid(**axes) -> list:
    """Cartesian product of named axes, as a list of dicts (the last axis varies fastest).

    >>> grid(fmt=["e4m3", "e5m2"], seed=[0, 1])[:2]
    [{'fmt': 'e4m3', 'seed': 0}, {'fmt': 'e4m3', 'seed': 1}]
    """
    if not axes:
        raise ValueError("grid needs at least one axis, e.g. grid(seed=[0, 1])")
    for k, v in axes.items():
        if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
            raise TypeError(f"axis {k!r} must be a sequence of values, got {v!r}")
    vals = {k: list(v) for k, v in axes.items()}
    for k, v in vals.items():
        if not v:
            raise ValueError(f"axis {k!r} is empty")
    return [dict(zip(vals, c)) for c in itertools.product(*vals.values())]


_product = grid  # sweep's ``grid`` argument shadows the function's name


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "name") and hasattr(o, "bits"):  # an fpsim format: stored by its name
        return o.name
    raise TypeError(f"sweep values must be JSON-serialisable; got {type(o).__name__}: {o!r}")


def _canon(o):
    """JSON round trip, so fresh and resumed results are the same Python objects."""
    return json.loads(json.dumps(o, default=_jsonable))


def _key(point) -> str:
    return json.dumps(point, sort_keys=True, default=_jsonable)


def _call_point(fn, point):
    t = time.perf_counter()
    out = fn(**point)
    return out, time.perf_counter() - t


def _annotated(e, point):
    if hasattr(e, "add_note"):  # Python >= 3.11
        e.add_note(f"raised by the sweep point {point!r}; finished points are kept")
    return e


def _record(point, result):
    if isinstance(result, Mapping):
        clash = set(point) & set(result)
        if clash:
            raise ValueError(f"result keys {sorted(clash)} clash with grid axes; rename them")
        return {**point, **result}
    return {**point, "result": result}


#: Every line :func:`sweep` writes starts with these bytes (``json.dumps`` of a dict whose
#: first key is "key"); a file with any other line is not a sweep record file.
_RECORD_START = b'{"key": '


def _not_a_record_file(path, lineno, why):
    return ValueError(f"path={path!r} exists but is not a sweep record file (line {lineno}: "
                      f"{why}); the file was left unchanged. Pass a new path, or delete the "
                      "file to start over")


def _load(path):
    """Finished results from a JSONL record file; drops a torn last line left by an
    interruption. Refuses (before changing anything) a file that is not a record file:
    a CSV, a JSON array or any other data would otherwise be truncated and appended to."""
    done = {}
    if path is None or not os.path.exists(path):
        return done
    if os.path.isdir(path):
        raise ValueError(f"path={path!r} is a directory; pass a file name such as "
                         f"{os.path.join(path, 'sweep.jsonl')!r}")
    with open(path, "rb") as fh:
        data = fh.read()
    good_end = data.rfind(b"\n") + 1
    tail = data[good_end:]
    lines = data[:good_end].splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if not line.startswith(_RECORD_START):
            raise _not_a_record_file(path, n, f"{line[:40]!r} is not a sweep record")
        try:
            rec = json.loads(line)
            done[rec["key"]] = rec["result"]
        except (ValueError, KeyError, TypeError):
            continue  # a damaged record of ours: that point is simply recomputed
    if tail.strip() and not tail.startswith(_RECORD_START[:len(tail)]):
        raise _not_a_record_file(path, len(lines) + 1,
                                 f"{tail[:40]!r} is not a sweep record")
    if good_end < len(data):  # torn write of a record: cut it so appends start on a fresh line
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
    return done


@dataclass(frozen=True)
class SweepResult(Result):
    """Records (grid order), plus how many points were computed now and how many reused."""

    records: tuple
    computed: int
    reused: int
    path: object = None

    def to_records(self) -> list:
        return [dict(r) for r in self.records]

    def plot(self, x: str, y: str, hue=None):
        """``y`` against ``x`` (mean ± std over the other axes), one line per ``hue`` value."""
        return plot_sweep(self, x, y, hue)


def plot_sweep(result: SweepResult, x: str, y: str, hue=None):
    """Line plot of a sweep: ``y`` vs ``x`` per ``hue``, averaged (±std) over other axes.

    >>> r = sweep(lambda a, b: {"y": a * b}, {"a": [1, 2], "b": [1, 3]}, executor="serial", progress=False)
    >>> plot_sweep(r, "a", "y", hue="b").axes[0].get_ylabel()
    'y'
    """
    recs = result.to_records()
    if not recs:
        raise ValueError("the sweep has no records to plot")
    for k in (x, y) + ((hue,) if hue else ()):
        if k not in recs[0]:
            raise ValueError(f"{k!r} is not a record field; fields: {list(recs[0])}")
    fig, ax = new_figure(figsize=(6, 4))
    a = ax[0, 0]
    hues = list(dict.fromkeys(_key(r[hue]) for r in recs)) if hue else [None]
    for h in hues:
        sub = [r for r in recs if hue is None or _key(r[hue]) == h]
        xs = list(dict.fromkeys(_key(r[x]) for r in sub))
        xv = [json.loads(k) for k in xs]
        ys = [[r[y] for r in sub if _key(r[x]) == k] for k in xs]
        m = np.array([np.mean(v) for v in ys])
        s = np.array([np.std(v) for v in ys])
        numeric = all(isinstance(v, (int, float)) for v in xv)
        pos = np.array(xv, dtype=float) if numeric else np.arange(len(xv))
        a.errorbar(pos, m, yerr=s if np.any(s > 0) else None, marker="o", capsize=3,
                   label=f"{hue}={json.loads(h)}" if hue else None)
        if not numeric:
            a.set_xticks(pos, [str(v) for v in xv])
    a.set(xlabel=x, ylabel=y, title=f"sweep: {y} vs {x}")
    if hue:
        a.legend(fontsize="small")
    return fig


def _stop_workers(ex):
    """Terminate the worker processes of our own ProcessPoolExecutor (after Ctrl-C)."""
    procs = getattr(ex, "_processes", None) or {}  # no public API lists the workers
    for p in list(procs.values()):
        try:
            p.terminate()
        except Exception:  # noqa: BLE001 - already gone
            pass


def _is_dask_client(ex) -> bool:
    return type(ex).__module__.split(".")[0] == "distributed" and hasattr(ex, "submit") and hasattr(ex, "gather")


def _watch_driver(driver_pid):
    """Worker initializer: ignore Ctrl-C (the driver handles it and stops the pool) and exit
    as soon as the driver process is gone.

    Why: a SIGKILLed driver cannot shut its pool down, and its workers (children of the
    forkserver) would live on under init, keeping the forkserver and the resource tracker
    alive too. A daemon thread polls twice a second: the parent process changed (the
    driver, or the forkserver that exits with it, has died) or the driver's pid is gone.
    """
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(0.5)
            try:
                os.kill(driver_pid, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:  # pragma: no cover - pid reused by another user
                alive = False
            if not alive or os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="fpsim-sweep-watchdog", daemon=True).start()


def _check_picklable(fn, ctx_name):
    """Refuse, before any pool starts, a function the worker processes cannot load.

    A function defined in a REPL, in ``python -`` / ``python -c`` or in a notebook lives in a
    ``__main__`` that spawn/forkserver workers cannot import; a lambda or a nested function
    cannot be pickled at all. Either shows up later as a bare ``BrokenProcessPool``.
    """
    import pickle
    import sys

    fix = ("define fn in a module (or a script guarded by if __name__ == '__main__'), or "
           "use executor='threads' or executor='serial'")
    try:
        pickle.dumps(fn)
    except Exception as e:  # noqa: BLE001 - any pickling failure means the same
        raise TypeError(f"fn={fn!r} cannot be sent to worker processes ({type(e).__name__}: "
                        f"{e}); {fix}") from None
    target = getattr(fn, "func", fn)  # functools.partial: check the wrapped function
    if ctx_name != "fork" and getattr(target, "__module__", None) == "__main__":
        main = sys.modules.get("__main__")
        main_file = getattr(main, "__file__", None)
        if not main_file or not os.path.exists(main_file):
            raise TypeError(f"fn={getattr(target, '__qualname__', target)!r} is defined in an "
                            "interactive session (REPL, python -, python -c or a notebook), "
                            f"which {ctx_name} worker processes cannot import; {fix}")


def _mp_context(name):
    import multiprocessing as mp

    if name is None:
        # Not "fork": a child forked from a process whose Numba kernels already ran on GNU
        # OpenMP threads is killed by the OpenMP runtime. forkserver/spawn start clean.
        name = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    try:
        return mp.get_context(name)
    except ValueError:
        raise ValueError(f"mp_context={name!r}: choose one of {mp.get_all_start_methods()}") from None


def sweep(fn, grid, *, executor=None, path=None, max_workers=None, progress: bool = True,
          desc: str = "sweep", mp_context=None) -> SweepResult:
    """Evaluate ``fn(**point)`` on every grid point, streaming results to ``path`` (JSONL).

    Parameters
    ----------
    fn : callable
        Returns a dict (merged into the record) or any JSON-serialisable value (stored as
        ``"result"``). Must be picklable (a module-level function) for processes and Dask.
    grid : dict or iterable of dicts
        ``{"fmt": [...], "seed": [...], "lr": [...]}`` (cartesian product, see :func:`grid`)
        or explicit points. Values must be JSON-serialisable (formats are stored by name);
        ``fn`` receives them after a JSON round trip (tuples arrive as lists), exactly as a
        resumed sweep would.
    executor : None, str, Executor or dask.distributed.Client
        ``None``/``"processes"``: a local ProcessPoolExecutor (``max_workers``);
        ``"threads"``; ``"serial"`` (in this process, in order); a
        :class:`concurrent.futures.Executor` you own; or a Dask ``Client``.
    path : str or PathLike, optional
        JSONL file: one line per finished point, appended as soon as it finishes. Points
        already in the file are not recomputed (resume). ``None``: keep nothing on disk.
    progress : bool
        Show a tqdm progress bar.
    mp_context : str, optional
        Start method of the local processes: default ``"forkserver"`` (``"spawn"`` where
        there is none), which start clean whatever ran before (``"fork"`` also works with
        fpsim's default fork-safe threading layer). So ``fn`` must be importable by the
        workers: defined in a module, or in a script guarded by
        ``if __name__ == "__main__"``. A function the workers cannot load (a lambda, or one
        defined in a REPL, ``python -`` or a notebook) is refused with a TypeError before
        anything starts: move it into a module or use ``"threads"``/``"serial"``.
        The workers ignore Ctrl-C and exit by themselves when the driver process dies
        (even by SIGKILL), so no process is left behind.

    Interruption: on Ctrl-C the sweep stops its workers, prints
    ``"sweep interrupted: N of M points saved to PATH; rerun the same sweep to resume"`` to
    stderr and re-raises :class:`KeyboardInterrupt` (a library does not exit for you).
    ``path`` must be a file :func:`sweep` wrote (or a new one): any other existing file
    (a CSV, a JSON array, ...) is refused with a ValueError and left unchanged.

    Returns
    -------
    SweepResult with one record per point, in grid order (``{**point, **result}``).
    If ``fn`` raises, finished points stay in ``path`` and the exception propagates.

    Examples
    --------
    >>> r = sweep(lambda fmt, seed: {"loss": seed + len(fmt)}, {"fmt": ["e4m3"], "seed": [0, 1]},
    ...           executor="serial", progress=False)
    >>> r.to_records()
    [{'fmt': 'e4m3', 'seed': 0, 'loss': 4}, {'fmt': 'e4m3', 'seed': 1, 'loss': 5}]
    """
    from tqdm.auto import tqdm

    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if isinstance(executor, str) and executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r}: choose one of {', '.join(EXECUTORS)}, "
                         "a concurrent.futures.Executor or a dask.distributed.Client")
    if not (executor is None or isinstance(executor, (str, cf.Executor)) or _is_dask_client(executor)):
        raise TypeError(f"executor={executor!r}: pass None, one of {EXECUTORS}, a "
                        "concurrent.futures.Executor or a dask.distributed.Client")
    points = _product(**grid) if isinstance(grid, Mapping) else [dict(p) for p in grid]
    if not points:
        raise ValueError("the grid has no points")
    for p in points:
        if not all(isinstance(k, str) for k in p):
            raise TypeError(f"grid point keys must be strings (they become fn's keyword arguments): {p!r}")
    keys = [_key(p) for p in points]
    if len(set(keys)) != len(keys):
        raise ValueError("the grid has duplicate points")
    points = [_canon(p) for p in points]
    path = os.fspath(path) if path is not None else None
    done = _load(path)
    todo = [i for i, k in enumerate(keys) if k not in done]
    results = {k: done[k] for k in keys if k in done}
    reused = len(results)

    ctx = None
    if executor is None or executor == "processes":
        ctx = _mp_context(mp_context)
        if todo:
            _check_picklable(fn, ctx.get_start_method())
    fh = open(path, "a", encoding="utf-8") if path is not None else None
    bar = tqdm(total=len(points), initial=reused, disable=not progress, desc=desc)

    def finish(i, out, elapsed):
        res = _canon(out)
        _record(points[i], res)  # checks key clashes before anything is stored
        results[keys[i]] = res
        if fh is not None:
            fh.write(json.dumps({"key": keys[i], "point": points[i], "result": res,
                                 "elapsed_s": round(elapsed, 6)}) + "\n")
            fh.flush()
        bar.update(1)

    try:
        if not todo:
            pass
        elif executor == "serial":
            for i in todo:
                try:
                    out = _call_point(fn, points[i])
                except Exception as e:
                    _annotated(e, points[i])
                    raise
                finish(i, *out)
        elif _is_dask_client(executor):
            from distributed import as_completed as dask_as_completed

            futs = {executor.submit(_call_point, fn, points[i], pure=False): i for i in todo}
            try:
                for f in dask_as_completed(list(futs)):
                    try:
                        out = f.result()
                    except Exception as e:
                        _annotated(e, points[futs[f]])
                        raise
                    finish(futs[f], *out)
            except BaseException:  # on a Dask cluster: cancel everything still queued
                executor.cancel(list(futs))
                raise
        else:
            own = executor is None or isinstance(executor, str)
            if not own:
                ex = executor
            elif executor == "threads":
                ex = cf.ThreadPoolExecutor(max_workers)
            else:
                ex = cf.ProcessPoolExecutor(max_workers, mp_context=ctx,
                                            initializer=_watch_driver, initargs=(os.getpid(),))
            futs = {ex.submit(_call_point, fn, points[i]): i for i in todo}
            first_err = None
            try:
                for f in cf.as_completed(futs):
                    if f.cancelled():
                        continue
                    try:
                        out = f.result()
                    except Exception as e:
                        # stop starting new points, but keep (and store) those already running
                        if first_err is None:
                            first_err = _annotated(e, points[futs[f]])
                            for g in futs:
                                g.cancel()
                        continue
                    finish(futs[f], *out)
            except BaseException as e:
                for f in futs:
                    f.cancel()
                if own and isinstance(e, KeyboardInterrupt):
                    _stop_workers(ex)  # Ctrl-C: do not wait for the running points
                raise
            finally:
                if own:
                    ex.shutdown(wait=True, cancel_futures=True)
            if first_err is not None:
                raise first_err
    except KeyboardInterrupt:
        # the library re-raises (the caller decides what Ctrl-C means); the message says what
        # was kept. Scripts exit with Python's usual status for SIGINT.
        bar.close()
        msg = (f"sweep interrupted: {len(results)} of {len(points)} points saved to {path}; "
               "rerun the same sweep to resume" if path is not None else
               f"sweep interrupted: {len(results)} of {len(points)} points finished; nothing "
               "was saved (pass path=... to make a sweep resumable)")
        import sys
        print(msg, file=sys.stderr, flush=True)
        raise
    finally:
        bar.close()
        if fh is not None:
            fh.close()
    recs = tuple(_record(p, results[k]) for p, k in zip(points, keys))
    return SweepResult(recs, len(todo), reused, path)
