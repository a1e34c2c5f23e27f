"""Hardware presets: NVIDIA tensor-core models and their validation on captured GPU data.

:func:`tensor_core` returns the model of a GPU's tensor (or matrix) cores for an input format:
a :class:`fpsim.accum.FusedBlock` with the published parameters (SPEC §4; Fasi, Higham,
Mikaitis & Pranesh 2021; Khattak & Mikaitis 2025), an :class:`fpsim.accum.MFMA` (AMD) or an
:class:`fpsim.accum.BlockScaledFused` (Blackwell's block-scaled kinds). The GPUs, their
input formats, instructions and captured data are one table, :data:`GPU_TABLE`
(:mod:`fpsim.gpus`; docs: Matrix engines, GPU presets).

fp32 output rounds toward zero, except B200 FP8: the captured B200 outputs
(``mma.sync.aligned.m16n8k32``, 2500 lines per format) contradict the published B200 FP8
model (n=32, neab=2, truncation; MMA-Sim's tcgen05 kind::f8f6f4 model gives the same bits on
every captured input, and it has no model of mma.sync FP8 on sm_100): it matches about 63% of lines,
while a fused block of 32 products with at least 31 fraction bits (neab >= 8; neab=6 fails
one E5M2 line) and round-to-nearest-even into fp32 reproduces every line. The hardware
wins: fpsim's B200 FP8 fp32 preset is that data-fitted model (``neab=8``, the most the data
can tell apart from an exact sum). :func:`validate` replays a directory of captured vectors
(the ``shared/data/tensor-cores`` layout) through a model and reports the bit-exact fraction.

>>> import fpsim
>>> m = fpsim.hardware.tensor_core("A100", "bf16")
>>> m.n, m.neab, m.in_fmt.name, m.out_fmt.name, m.rounding
(8, 1, 'bf16', 'fp32', 'rtz')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import accum as _A
from . import rounding as _R
from .gpus import (BLOCK_SCALED, CAPTURED, GPU, GPU_TABLE, GPUS, IN_FORMATS, UNREPRODUCED,
                   evidence, fp8_promoted, gpu, mma, tensor_core)

__all__ = [
    "CAPTURED",
    "CAPTURE_NOTES",
    "UNREPRODUCED",
    "BLOCK_SCALED",
    "GPU",
    "GPU_TABLE",
    "GPUS",
    "IN_FORMATS",
    "SAMPLE_NAME",
    "ValidationResult",
    "data_dir",
    "evidence",
    "fp8_promoted",
    "gpu",
    "mma",
    "tensor_core",
    "validate",
]


# ---------------------------------------------------------------------------------------
# Validation on captured data
# ---------------------------------------------------------------------------------------

_DATA_ENV = "FPSIM_TENSOR_CORE_DATA"
#: File name of the bundled sample of captured vectors (in ``fpsim/data``).
SAMPLE_NAME = "tensor_cores_sample.npz"


def data_dir(cwd=None) -> Path | None:
    """The folder of captured tensor-core outputs, or ``None`` if none is found.

    Looked for, in order: ``$FPSIM_TENSOR_CORE_DATA`` (if set, only there);
    ``../shared/data/tensor-cores`` and ``shared/data/tensor-cores`` next to the fpsim source
    tree (an editable install or a clone); the same two relative to ``cwd`` (default: the
    current directory). Without it :func:`validate` replays the sample bundled with fpsim.

    >>> import fpsim
    >>> d = fpsim.hardware.data_dir()
    >>> d is None or d.is_dir()
    True
    """
    env = os.environ.get(_DATA_ENV)
    if env:
        p = Path(env)
        return p if p.is_dir() else None
    repo = Path(__file__).resolve().parent.parent
    cwd = Path(cwd) if cwd is not None else Path.cwd()
    for base in (repo, cwd):
        for cand in (base.parent / "shared", base / "shared"):
            d = cand / "data" / "tensor-cores"
            if d.is_dir():
                return d
    return None


#: Files of the ``shared/data/tensor-cores`` layout whose capture differs from
#: ``d = sum a_i b_i + c`` (from that folder's README): ``{(GPU, format, output): note}``.
#: :func:`validate` replays them as captured.
CAPTURE_NOTES = {
    ("H100", "E4M3", "fp32"): "captured with WGMMA D = A*B: c was not added; replayed with c = 0",
    ("H100", "E5M2", "fp32"): "captured with WGMMA D = A*B: c was not added; replayed with c = 0",
}
_NO_C = {k for k, v in CAPTURE_NOTES.items() if "c = 0" in v}


@dataclass(frozen=True)
class ValidationResult:
    """Bit-exact agreement of a model with one captured file of GPU outputs.

    ``note`` says how the file was replayed where its capture differs from
    ``d = sum a_i b_i + c`` (:data:`CAPTURE_NOTES`); ``source`` which lines were replayed
    (a captured folder, or the bundled sample with its line numbers). ``first_mismatches``
    are indices into the replayed lines.
    """

    gpu: str
    in_fmt: str
    out_fmt: str
    lines: int
    matches: int
    first_mismatches: tuple
    note: str = ""
    source: str = ""

    @property
    def fraction(self) -> float:
        return self.matches / self.lines if self.lines else float("nan")

    def __str__(self):
        s = (f"{self.gpu:5s} {self.in_fmt:5s} -> {self.out_fmt}: {self.matches}/{self.lines} "
             f"bit-exact ({self.fraction:.4f})")
        return s + (f" [{self.note}]" if self.note else "")


def _lines(fn):
    """The non-blank lines of ``fn`` with their 1-based line numbers."""
    try:
        with open(fn) as fh:
            return [(i, ln.strip()) for i, ln in enumerate(fh, 1) if ln.strip()]
    except UnicodeDecodeError as e:
        raise ValueError(f"{fn}: not a text file of tensor-core vectors ({e})") from None


def _read_hex(fn):
    """Rows of 8-digit hex binary32 patterns; every row must have the same length."""
    rows = []
    for i, ln in _lines(fn):
        toks = ln.split()
        if any(len(t) != 8 for t in toks):
            raise ValueError(f"{fn}, line {i}: expected 8-digit hex binary32 values, got {ln[:60]!r}")
        try:
            rows.append([int(t, 16) for t in toks])
        except ValueError:
            raise ValueError(f"{fn}, line {i}: not hexadecimal: {ln[:60]!r}") from None
        if len(rows[-1]) != len(rows[0]):
            raise ValueError(f"{fn}, line {i}: {len(rows[-1])} values where line 1 has "
                             f"{len(rows[0])}")
    return np.array(rows, dtype=np.uint32).view(np.float32).astype(np.float64)


def _read_bin(fn):
    """One 32-character binary string (binary32 bits) per line."""
    vals = []
    for i, ln in _lines(fn):
        if len(ln) != 32 or set(ln) - {"0", "1"}:
            raise ValueError(f"{fn}, line {i}: expected a 32-character binary string, got "
                             f"{ln[:60]!r}")
        vals.append(int(ln, 2))
    return np.array(vals, dtype=np.uint32).view(np.float32).astype(np.float64)


def _load_dir(d: Path, gpu: str, fmt: str):
    files = {"a": d / f"a_{gpu}_{fmt}.txt", "b": d / f"b_{gpu}_{fmt}.txt",
             "c": d / f"c_{gpu}_fp32.txt"}
    files.update({o: d / f"d_{gpu}_{o}.txt" for o in ("fp32", "fp16")
                  if (d / f"d_{gpu}_{o}.txt").exists()})
    for k, fn in files.items():
        if not fn.is_file():
            raise ValueError(f"{d}: missing {fn.name} (each <GPU>/<format> folder holds a_, b_, "
                             "c_ and at least one d_ file)")
    if len(files) == 3:
        raise ValueError(f"{d}: no d_{gpu}_fp32.txt or d_{gpu}_fp16.txt output file")
    data = {k: (_read_hex if k in "ab" else _read_bin)(fn) for k, fn in files.items()}
    counts = {files[k].name: len(v) for k, v in data.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"{d}: files of unequal length (one test per line in every file): "
                         + ", ".join(f"{n} has {c} lines" for n, c in counts.items()))
    if data["a"].shape != data["b"].shape:
        raise ValueError(f"{d}: {files['a'].name} has {data['a'].shape[1]} values per line, "
                         f"{files['b'].name} {data['b'].shape[1]}")
    outs = {o: data[o] for o in ("fp32", "fp16") if o in data}
    return data["a"], data["b"], data["c"], outs


def _vector_dirs(root: Path) -> list:
    """The ``<GPU>/<format>`` folders of captured vectors at or below ``root``."""
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory of tensor-core vectors")
    if any(root.glob("a_*.txt")):
        return [root]
    dirs = [sub2 for sub in sorted(root.iterdir()) if sub.is_dir()
            for sub2 in sorted(sub.iterdir()) if sub2.is_dir() and any(sub2.glob("a_*.txt"))]
    if not dirs:
        raise ValueError(f"no a_<GPU>_<fmt>.txt files under {root}")
    return dirs


def _sample_sets():
    """The bundled sample as (gpu, fmt, a, b, c, outs, source) tuples."""
    path = Path(__file__).resolve().parent / "data" / SAMPLE_NAME
    with np.load(path) as z:
        keys = sorted({k.rsplit("/", 1)[0] for k in z.files})
        sets = []
        for key in keys:
            gpu, fmt = key.split("/")
            f64 = {nm: z[f"{key}/{nm}"].view(np.float32).astype(np.float64)
                   for nm in ("a", "b", "c", "fp32", "fp16") if f"{key}/{nm}" in z.files}
            lines, total = z[f"{key}/lines"], int(z[f"{key}/total"])
            first = ", ".join(str(int(i) + 1) for i in lines[:3])
            source = f"bundled sample: {len(lines)} of {total} lines (line numbers {first}, ...)"
            outs = {o: f64[o] for o in ("fp32", "fp16") if o in f64}
            sets.append((gpu, fmt, f64["a"], f64["b"], f64["c"], outs, source))
    return sets


def validate(path=None, model=None) -> dict[str, ValidationResult]:
    """Replay captured tensor-core vectors and report the bit-exact fraction per file.

    ``path`` is one ``<GPU>/<format>`` directory or a root holding such directories (the
    ``shared/data/tensor-cores`` layout: ``a_/b_`` hex binary32 inputs, ``c_`` and ``d_``
    binary strings, one test per line). Without ``path``: the folder :func:`data_dir` finds,
    else the sample bundled with fpsim (320 evenly spaced lines of every file; each result's
    ``source`` says which). Each line is one dot product ``d = sum a_i b_i + c``;
    for fp16 outputs c is first rounded to fp16 (nearest-even), as the GPU receives it; files
    captured without c (:data:`CAPTURE_NOTES`) are replayed with c = 0. ``model`` defaults
    to :func:`tensor_core` of the directory's GPU and format (and each output format).
    Malformed files (a bad token, rows of unequal length, files of unequal length) raise
    ``ValueError`` naming the file and line. Returns ``{"<GPU>/<fmt>/<out>": ValidationResult}``.

    >>> import fpsim
    >>> res = fpsim.hardware.validate()
    >>> r = res["V100/fp16/fp32"]
    >>> r.fraction, r.source.split(":")[0] in ("captured folder", "bundled sample")
    (1.0, True)
    """
    if path is None:
        path = data_dir()
    if path is None:
        sets = _sample_sets()
    else:
        sets = []
        for d in _vector_dirs(Path(path)):
            gpu, fmt = d.parent.name, d.name
            sets.append((gpu, fmt, *_load_dir(d, gpu, fmt), f"captured folder: {d}"))
    results = {}
    for gpu, fmt, a, b, c, outs, source in sets:
        for o, ref in outs.items():
            m = model if model is not None else tensor_core(gpu, fmt.lower(), o)
            note = CAPTURE_NOTES.get((gpu, fmt, o), "")
            cc = np.zeros_like(c) if (gpu, fmt, o) in _NO_C else c
            cc = cc if o == "fp32" else _R.quantize(cc, o)
            got = _A.dot(a, b, cc, model=m)
            ok = got.view(np.uint64) == ref.view(np.uint64)
            # NaN results match any NaN
            ok |= np.isnan(got) & np.isnan(ref)
            results[f"{gpu}/{fmt}/{o}"] = ValidationResult(
                gpu, fmt, o, int(ok.size), int(ok.sum()), tuple(np.nonzero(~ok)[0][:10].tolist()),
                note, source)
    return results
