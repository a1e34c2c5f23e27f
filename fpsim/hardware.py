"""Hardware presets: NVIDIA tensor-core models and their validation on captured GPU data.

:func:`tensor_core` returns a :class:`fpsim.accum.FusedBlock` with the published parameters
(SPEC §4; Fasi, Higham, Mikaitis & Pranesh 2021; Khattak & Mikaitis 2025):

=================== ============= ====== ======= ======================= ===============
GPU                 fp16 / bf16 n tf32 n fp8 n   neab                    fp16 output
=================== ============= ====== ======= ======================= ===============
V100                4             --     --      0                       RNE
A100, A2, A30       8             4      --      1                       RNE
Ada, L40S           8             4      16      1; fp8: -10             RNE
H100, H200          16            8      32      2; fp8: -10             RNE
B200                16            8      32      2; fp8: 8 (RNE)         RNE
=================== ============= ====== ======= ======================= ===============

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

import difflib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import accum as _A
from . import rounding as _R
from .formats import as_format

__all__ = [
    "CAPTURED",
    "CAPTURE_NOTES",
    "UNREPRODUCED",
    "BLOCK_SCALED",
    "GPUS",
    "IN_FORMATS",
    "SAMPLE_NAME",
    "ValidationResult",
    "data_dir",
    "evidence",
    "fp8_promoted",
    "mma",
    "tensor_core",
    "validate",
]

#: GPU names accepted by :func:`tensor_core` (case-insensitive).
GPUS = ("V100", "T4", "A100", "A2", "A30", "A40", "Ada", "L40S", "L4", "RTX 4090", "H100",
        "H200", "GH200", "B200", "B300", "RTX 5090", "RTX PRO 6000", "MI100", "MI210",
        "MI250X", "MI300X", "MI300A", "MI325X")
#: Input formats accepted by :func:`tensor_core` (AMD CDNA3 FP8 takes the fnuz formats
#: ``e4m3fnuz``/``e5m2fnuz``; Blackwell also the block-scaled ``mxfp8``, ``mxfp4``, ``nvfp4``).
IN_FORMATS = ("fp16", "bf16", "tf32", "e4m3", "e5m2")
_FNUZ = ("e4m3fnuz", "e5m2fnuz")
#: Block-scaled kinds of :func:`tensor_core` on Blackwell: name -> (kind, element, block, scale)
BLOCK_SCALED = {"mxfp8": ("mxf8f6f4", "e4m3", 32, "ue8m0"),
                "mxfp8_e4m3": ("mxf8f6f4", "e4m3", 32, "ue8m0"),
                "mxfp8_e5m2": ("mxf8f6f4", "e5m2", 32, "ue8m0"),
                "mxfp6_e2m3": ("mxf8f6f4", "e2m3", 32, "ue8m0"),
                "mxfp6_e3m2": ("mxf8f6f4", "e3m2", 32, "ue8m0"),
                "mxfp4": ("mxf4", "e2m1", 32, "ue8m0"),
                "nvfp4": ("mxf4nvf4", "e2m1", 16, "ue4m3")}

# Each GPU's architecture and the instruction its tensor-core preset models, per input
# class (fpsim.engines holds the parameters and the evidence of every instruction)
_GPU_ARCH = {"V100": "Volta", "T4": "Turing", "A100": "Ampere", "A2": "Ampere",
             "A30": "Ampere", "A40": "Ampere", "Ada": "Ada", "L40S": "Ada", "L4": "Ada",
             "RTX 4090": "Ada", "H100": "Hopper", "H200": "Hopper", "GH200": "Hopper",
             "B200": "Blackwell", "B300": "Blackwell", "RTX 5090": "RTX Blackwell",
             "RTX PRO 6000": "RTX Blackwell", "MI100": "CDNA1", "MI210": "CDNA2",
             "MI250X": "CDNA2", "MI300X": "CDNA3", "MI300A": "CDNA3", "MI325X": "CDNA3"}
_PRESET_INSTR = {
    "Volta": {"16": "mma.m8n8k4.{d}.{t}.{t}.{d}"},
    "Ampere": {"16": "mma.m16n8k16.{d}.{t}.{t}.{d}", "tf32": "mma.m16n8k8.{d}.{t}.{t}.{d}"},
    "Ada": {"16": "mma.m16n8k16.{d}.{t}.{t}.{d}", "tf32": "mma.m16n8k8.{d}.{t}.{t}.{d}",
            "8": "mma.m16n8k32.{d}.{t}.{t}.{d}"},
    "Hopper": {"16": "wgmma.m64n8k16.{d}.{t}.{t}", "tf32": "wgmma.m64n8k8.{d}.{t}.{t}",
               "8": "wgmma.m64n8k32.{d}.{t}.{t}"},
    "Blackwell": {"16": "mma.m16n8k16.{d}.{t}.{t}.{d}", "tf32": "mma.m16n8k8.{d}.{t}.{t}.{d}",
                  "8": "mma.m16n8k32.{d}.{t}.{t}.{d}",
                  "mx": "tcgen05.mma.m128n256k{k}.kind::{kind}.block{block}.f32.{t}.{t}.{sc}"},
    "Turing": {"16": "mma.m16n8k8.{d}.{t}.{t}.{d}"},
    "RTX Blackwell": {"16": "mma.m16n8k16.{d}.{t}.{t}.{d}",
                      "tf32": "mma.m16n8k8.{d}.{t}.{t}.{d}", "8": "mma.m16n8k32.{d}.{t}.{t}.{d}",
                      "mx": "mma.m16n8k{k}.kind::{kind}.block{block}.f32.{t}.{t}.f32.{sc}"},
    # AMD: the largest-K instruction of each input type
    "CDNA1": {"fp16": "v_mfma_f32_16x16x16f16", "bf16": "v_mfma_f32_16x16x8bf16"},
    "CDNA2": {"fp16": "v_mfma_f32_16x16x16f16", "bf16": "v_mfma_f32_16x16x16bf16_1k"},
    "CDNA3": {"fp16": "v_mfma_f32_16x16x16_f16", "bf16": "v_mfma_f32_16x16x16_bf16",
              "tf32": "v_mfma_f32_16x16x8_xf32", "e4m3fnuz": "v_mfma_f32_16x16x32_fp8_fp8",
              "e5m2fnuz": "v_mfma_f32_16x16x32_bf8_bf8"},
}
_PTX = {"fp16": "f16", "bf16": "bf16", "tf32": "tf32", "e4m3": "e4m3", "e5m2": "e5m2",
        "fp32": "f32"}


def _gpu_name(gpu: str) -> str:
    for g in GPUS:  # case, spaces and '_' do not matter ("rtx_4090", "RTX4090")
        if str(gpu).lower().replace(" ", "").replace("_", "") == g.lower().replace(" ", ""):
            return g
    upper = {g.upper(): g for g in GPUS}
    close = difflib.get_close_matches(str(gpu).upper(), list(upper), n=1, cutoff=0.5)
    hint = f"did you mean {upper[close[0]]!r}? " if close else ""
    raise ValueError(f"unknown GPU {gpu!r}; {hint}allowed: {', '.join(GPUS)}")


def _in_name(fmt) -> str:
    if isinstance(fmt, str) and fmt.lower() in BLOCK_SCALED:
        return fmt.lower()
    f = as_format(fmt)
    for nm in IN_FORMATS + _FNUZ:
        if as_format(nm) == f:
            return nm
    raise ValueError(f"tensor cores take {', '.join(IN_FORMATS + _FNUZ)} inputs (and the "
                     f"block-scaled {', '.join(BLOCK_SCALED)} on Blackwell), not {f.name}")


def _preset_instruction(g: str, fin: str, fout: str) -> str:
    """The instruction GPU ``g``'s preset models for ``fin`` inputs and ``fout`` output."""
    arch = _GPU_ARCH[g]
    if arch.startswith("CDNA"):
        if fout != "fp32" or fin not in _PRESET_INSTR[arch]:
            raise ValueError(f"{g} matrix cores have no {fin} -> {fout} mode (they take "
                             f"{', '.join(_PRESET_INSTR[arch])} into fp32)")
        return _PRESET_INSTR[arch][fin]
    if fin in BLOCK_SCALED:
        if "mx" not in _PRESET_INSTR[arch] or fout != "fp32":
            raise ValueError(f"{g} has no block-scaled {fin} -> {fout} MMA (Blackwell and RTX "
                             "Blackwell have them, into fp32)")
        kind, t, block, sc = BLOCK_SCALED[fin]
        return _PRESET_INSTR[arch]["mx"].format(k=32 if kind == "mxf8f6f4" else 64, kind=kind,
                                                block=block, t=t, sc=sc)
    if fin in _FNUZ:
        raise ValueError(f"{g} has no {fin} mode (the fnuz FP8 formats are AMD CDNA3's)")
    cls = {"fp16": "16", "bf16": "16", "tf32": "tf32"}.get(fin, "8")
    if cls not in _PRESET_INSTR[arch]:
        raise ValueError(f"{g} tensor cores have no {fin} mode" +
                         (" (fp8 needs Ada/L40S or later)" if cls == "8" else ""))
    return _PRESET_INSTR[arch][cls].format(d=_PTX[fout], t=_PTX[fin])


def tensor_core(gpu: str, in_fmt, out_fmt="fp32") -> _A.FusedBlock:
    """The tensor-core model of ``gpu`` for ``in_fmt`` inputs and ``out_fmt`` (fp32/fp16).

    Raises ``ValueError`` for combinations the GPU does not have (V100: fp16 only; fp8 from
    Ada on; tf32 and bf16 need fp32 output).

    >>> import fpsim
    >>> fpsim.hardware.tensor_core("V100", "fp16", "fp16").rounding
    'rne'
    >>> fpsim.hardware.tensor_core("H100", "e4m3")
    FusedBlock<H100 e4m3>(n=32, neab=-10, out=fp32, rounding='rtz')
    """
    g = _gpu_name(gpu)
    if isinstance(in_fmt, (tuple, list)) and len(in_fmt) == 2:
        fa, fb = _in_name(in_fmt[0]), _in_name(in_fmt[1])
        if fa != fb and {fa, fb} <= set(_FNUZ) and _GPU_ARCH[g] == "CDNA3":
            t = {"e4m3fnuz": "fp8", "e5m2fnuz": "bf8"}
            m = mma("CDNA3", f"v_mfma_f32_16x16x32_{t[fa]}_{t[fb]}")
            return type(m)(**{**{k: getattr(m, k) for k in m.__dataclass_fields__},
                              "name": f"{g} {fa} x {fb}"})
        if fa != fb:
            if not {fa, fb} <= {"e4m3", "e5m2"}:
                raise ValueError(f"mixed tensor-core inputs are FP8 pairs (e4m3, e5m2), not "
                                 f"({fa}, {fb})")
            m = tensor_core(g, fa, out_fmt)
            return _A.FusedBlock(m.n, m.neab, out_fmt=m.out_fmt, rounding=m.rounding,
                                 in_fmt=(fa, fb), name=f"{g} {fa} x {fb}"
                                 + ("" if m.out_fmt.name == "fp32" else " -> fp16"))
        in_fmt = fa
    fin = _in_name(in_fmt)
    fo = as_format(out_fmt)
    if fo.name not in ("fp32", "fp16"):
        raise ValueError(f"tensor-core output must be fp32 or fp16, not {fo.name}")
    arch = _GPU_ARCH[g]
    instr = _preset_instruction(g, fin, fo.name)
    try:
        m = mma(arch, instr)
    except ValueError:
        raise ValueError(f"{g} tensor cores have no {fin} -> {fo.name} mode "
                         f"(bf16 and tf32 accumulate into fp32 only; V100 and T4 take fp16 "
                         "only)") from None
    if not isinstance(m, _A.FusedBlock):  # block-scaled kinds, AMD matrix cores
        return type(m)(**{**{k: getattr(m, k) for k in m.__dataclass_fields__},
                          "name": f"{g} {fin}"})
    return _A.FusedBlock(m.n, m.neab, out_fmt=fo, rounding=m.rounding, in_fmt=fin,
                         name=f"{g} {fin}" + ("" if fo.name == "fp32" else " -> fp16"))


def mma(arch: str, instruction: str):
    """The model of one matrix-engine instruction: a :class:`fpsim.accum.FusedBlock`.

    ``arch``: Volta, Turing, Ampere, Ada (or "Ada Lovelace"), Hopper, Blackwell,
    RTX Blackwell, CDNA1, CDNA2, CDNA3, or an ``sm_XX``/``gfxNNN`` name (case-insensitive).
    AMD instructions as the ISA spells them (``v_mfma_f32_32x32x8_bf16``) give a
    :class:`fpsim.accum.MFMA` (fp32 inputs: :class:`fpsim.accum.Sequential` fp32 FMA). ``instruction`` as PTX spells it
    (``mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32``, ``wgmma.mma_async...``,
    ``tcgen05.mma.m128n256k32.kind::f8f6f4.f32.e2m1.e2m1``) or MMA-Sim's short form after
    the opcode (``m16n8k16.f32.bf16.bf16.f32``). M and N do not change a dot product; a K
    longer than the instruction's chains instructions (c <- d). The parameters and what
    stands behind them (captured data, MMA-Sim, published) are in :data:`fpsim.engines.ENGINES`
    (docs: Matrix engines). Block-scaled kinds (``kind::mxf8f6f4``, ``mxf4``,
    ``mxf4nvf4`` with ``block16``/``block32`` and ``ue8m0``/``ue4m3``, or PTX's
    ``.block_scale.scale_vec::NX``) give a :class:`fpsim.accum.BlockScaledFused`, used with
    ``fpsim.dot(a, b, c, model=m, a_scale=sa, b_scale=sb)``. Mixed operand formats (``e4m3 x e5m2``, ``e2m1 x e4m3``) are modelled
    where the instruction takes them: each operand's subnormals count with its own format's
    smallest exponent.

    >>> import fpsim
    >>> fpsim.hardware.mma("Ada Lovelace", "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32")
    FusedBlock<Ada mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32>(n=16, neab=-10, out=fp32, rounding='rtz')
    """
    from . import engines as _E
    ins = _E.parse_instruction(instruction)
    e = _E.lookup(arch, instruction)
    fa, fb, fout = _E.OPERAND_FORMATS[ins.a], _E.OPERAND_FORMATS[ins.b], _E.OPERAND_FORMATS[ins.d]
    if e.variant == "fma":  # fp32 MFMA: one fused multiply-add per product
        return _A.Sequential("fp32", fma=True)
    if e.variant:  # AMD matrix cores
        return _A.MFMA(e.variant, e.L if e.variant == "ftz" else min(e.L, ins.k), e.F, e.F2,
                       in_fmt=fa, in_fmt_b=fb, name=f"{e.arch} {instruction}")
    if e.scaling:  # block-scaled kinds
        block, sc = _E.block_scale(e, ins)
        return _A.BlockScaledFused(e.L, e.F, block=block, group=e.group, e_zero=e.e_zero,
                                   in_fmt=fa, in_fmt_b=fb,
                                   scale_fmt="e8m0" if sc == "ue8m0" else sc,
                                   name=f"{e.arch} {instruction}")
    F = e.F_fp16 if fout == "fp16" and e.F_fp16 is not None else e.F
    rounding = e.fp32_rounding if fout == "fp32" else "rne"
    return _A.FusedBlock(e.L, F - 23, out_fmt=fout, rounding=rounding, in_fmt=(fa, fb),
                         name=f"{e.arch} {instruction}")


#: (GPU, input, output) whose captured file the preset reproduces line for line
#: (tests/test_tensor_cores.py checks this set against the data).
CAPTURED = frozenset(
    [(g, f, o) for g, f, o in [
        ("V100", "fp16", "fp32"), ("V100", "fp16", "fp16"), ("A100", "fp16", "fp32"),
        ("A100", "fp16", "fp16"), ("A100", "bf16", "fp32"), ("A100", "tf32", "fp32"),
        ("Ada", "fp16", "fp32"), ("Ada", "fp16", "fp16"), ("Ada", "bf16", "fp32"),
        ("Ada", "tf32", "fp32"), ("H100", "fp16", "fp32"), ("H100", "fp16", "fp16"),
        ("H100", "bf16", "fp32"), ("H100", "tf32", "fp32")]]
    + [(g, f, o) for g, f, o in [("Ada", "e4m3", "fp32"), ("Ada", "e4m3", "fp16"),
                                 ("Ada", "e5m2", "fp32"), ("Ada", "e5m2", "fp16"),
                                 ("H100", "e4m3", "fp32"), ("H100", "e5m2", "fp32"),
                                 ("B200", "e4m3", "fp32"), ("B200", "e5m2", "fp32")]])


#: Captured files no known model reproduces (FP8 inputs with fp16 output on Hopper and
#: Blackwell: 62-68% of lines with the presets, MMA-Sim's models included).
UNREPRODUCED = frozenset({("H100", "e4m3", "fp16"), ("H100", "e5m2", "fp16"),
                          ("B200", "e4m3", "fp16"), ("B200", "e5m2", "fp16")})


def evidence(gpu: str, in_fmt, out_fmt="fp32") -> str:
    """What the preset :func:`tensor_core` ``(gpu, in_fmt, out_fmt)`` stands on, starting
    with one of ``"captured GPU data"``, ``"MMA-Sim agreement"``, ``"published parameters
    only"``.

    >>> import fpsim
    >>> fpsim.hardware.evidence("A100", "bf16").split(":")[0]
    'captured GPU data'
    >>> fpsim.hardware.evidence("H200", "bf16").split(":")[0]
    'MMA-Sim agreement'
    """
    from . import engines as _E
    g = _gpu_name(gpu)
    m = tensor_core(g, in_fmt, out_fmt)  # raises for modes the GPU lacks
    fin, fo = m.in_fmt.name, m.out_fmt.name
    if isinstance(in_fmt, str) and in_fmt.lower() in BLOCK_SCALED:
        fin = in_fmt.lower()
    arch = _GPU_ARCH[g]
    instr = _preset_instruction(g, fin, fo)
    row = _E.lookup(arch, instr)
    mmasim = row.mmasim and not (fo == "fp16" and row.evidence_fp16 == _E.PUBLISHED)
    sim = f"bit-identical to MMA-Sim's {arch} {instr.split('.')[0]} model on random inputs"
    if (g, fin, fo) in CAPTURED:
        return (f"captured GPU data: the model reproduces every captured line of {g} {fin} -> "
                f"{fo} outputs" + (f"; {sim}" if mmasim else ""))
    sibling = sorted(o for o, a in _GPU_ARCH.items() if a == arch and (o, fin, fo) in CAPTURED)
    differs = sorted(o for o, a in _GPU_ARCH.items()
                     if a == arch and (o, fin, fo) in UNREPRODUCED)
    warn = (f"; the captured {differs[0]} {fin} -> {fo} outputs disagree (no known model "
            "reproduces them: 62-68% of lines)") if differs else ""
    if mmasim:
        own = "" if (g, fin, fo) in UNREPRODUCED else f"; no captured data of {g}"
        return (f"MMA-Sim agreement: {sim}{own}"
                + (f" (the same architecture's {sibling[0]} data is reproduced)" if sibling else "")
                + warn)
    own = "" if (g, fin, fo) in UNREPRODUCED else \
        f": not checked against captured outputs of {g} {fin} -> {fo}"
    return "published parameters only" + own + warn


def fp8_promoted(gpu: str = "H100", in_fmt="e4m3", every: int = 128) -> _A.Promoted:
    """DeepSeek-V3's FP8 GEMM recipe: ``every`` (128) products on the tensor core's narrow
    (13-bit-mantissa) accumulator, then each partial sum added into fp32 on CUDA cores.

    >>> import fpsim
    >>> fpsim.hardware.fp8_promoted().every
    128
    """
    return _A.Promoted(tensor_core(gpu, in_fmt), every=every,
                       outer=_A.Sequential("fp32", fma=True))


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
