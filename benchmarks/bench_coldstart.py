"""Cold-start cost of each kernel family: the first call in a fresh process on an empty Numba
cache, then the same call in another fresh process once that cache is warm.

    python benchmarks/bench_coldstart.py                     # every family (torch ones if installed)
    python benchmarks/bench_coldstart.py block-mxfp4 arith   # some families
    python benchmarks/bench_coldstart.py --threads 2         # NUMBA_NUM_THREADS for the children

The families are those of ``fpsim warmup --list`` (:data:`fpsim.warmup.FAMILIES`): each row
runs that family's first call (a tiny input) in a subprocess whose ``NUMBA_CACHE_DIR`` is
a new empty folder, so nothing compiled before is reused, not even kernels shared with
other families. Columns: ``cold s`` (wall time of the call, compile included), ``cold cpu s``
(CPU time of the call: on a busy machine the wall time grows, the CPU time much less),
``warm s`` (the call in a fresh process reading that now-filled cache) and ``est s``
(the estimate the first-use notice prints). Rows above 15 s cold are marked ``> 15 s``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

_CHILD = r"""
import json, sys, time
from fpsim.kernels import _notice
from fpsim.warmup import FAMILIES
f = FAMILIES[sys.argv[1]]
with _notice.quiet():
    t, c = time.perf_counter(), time.process_time()
    f.run()
    print(json.dumps({"wall": time.perf_counter() - t, "cpu": time.process_time() - c}))
"""


def _child(name: str, cache: str, threads) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    if threads:
        env["NUMBA_NUM_THREADS"] = str(threads)
    r = subprocess.run([sys.executable, "-c", _CHILD, name], env=env, capture_output=True,
                       text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{name}: child failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    from fpsim.warmup import FAMILIES, _has_torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("families", nargs="*", help="family names (default: all)")
    ap.add_argument("--threads", type=int, default=None, help="NUMBA_NUM_THREADS of the children")
    args = ap.parse_args(argv)
    names = args.families or [n for n, f in FAMILIES.items() if not f.torch or _has_torch()]
    print("| family | cold s | cold cpu s | warm s | est s | |")
    print("|---|---|---|---|---|---|")
    for n in names:
        with tempfile.TemporaryDirectory(prefix="fpsim-cold-") as d:
            cold = _child(n, d, args.threads)
            warm = _child(n, d, args.threads)
        flag = "> 15 s" if cold["wall"] > 15 else ""
        print(f"| {n} | {cold['wall']:.1f} | {cold['cpu']:.1f} | {warm['wall']:.2f} | "
              f"{FAMILIES[n].estimate:.0f} | {flag} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
