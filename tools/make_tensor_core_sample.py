"""Write fpsim/data/tensor_cores_sample.npz: an evenly spaced sample of every captured file
in the tensor-core data folder (Khattak & Mikaitis 2025, BSD-2; see
fpsim/data/LICENCE-tensor-cores.txt), so `fpsim.hardware.validate()` works without it.

    python tools/make_tensor_core_sample.py [DATA_DIR] [--lines 320]

Each ``<GPU>/<format>`` folder becomes the arrays ``<GPU>/<format>/{a,b,c,fp32,fp16,lines}``:
binary32 bit patterns (uint32) of the sampled lines and their 0-based line numbers in the
captured files (``total`` holds each file's line count).
"""

import argparse
from pathlib import Path

import numpy as np

import fpsim
from fpsim import hardware as H


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", default=None)
    ap.add_argument("--lines", type=int, default=320)
    ap.add_argument("--out", default=str(Path(fpsim.__file__).parent / "data" / H.SAMPLE_NAME))
    args = ap.parse_args()
    root = Path(args.data) if args.data else H.data_dir()
    arrays = {}
    for d in H._vector_dirs(root):
        gpu, fmt = d.parent.name, d.name
        a, b, c, outs = H._load_dir(d, gpu, fmt)
        total = len(a)
        idx = np.arange(args.lines) * total // args.lines if total > args.lines else np.arange(total)
        key = f"{gpu}/{fmt}"
        arrays[f"{key}/lines"] = idx.astype(np.uint16)
        arrays[f"{key}/total"] = np.array(total, dtype=np.uint32)
        for nm, v in [("a", a), ("b", b), ("c", c), *outs.items()]:
            arrays[f"{key}/{nm}"] = v[idx].astype(np.float32).view(np.uint32)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}: {len(arrays)} arrays")


if __name__ == "__main__":
    main()
