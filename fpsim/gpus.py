"""The GPU table: one row per GPU, from which every GPU-level fact of fpsim is derived.

A :class:`GPU` row names the GPU (and its aliases), its architecture, the input formats its
tensor / matrix cores take, the instruction its preset models per input class (the
parameters of each instruction are rows of :data:`fpsim.engines.ENGINES`), and which
captured GPU outputs (``shared/data/tensor-cores``) stand behind it. :data:`GPUS`,
:func:`tensor_core`, :func:`evidence`, :data:`CAPTURED`, the torch profile names
(``<gpu>_<fmt>``, :func:`profile_formats`) and the docs tables (:func:`table`) are read from
:data:`GPU_TABLE`; adding a GPU is adding a row. ``fpsim.hardware`` re-exports these names.

>>> from fpsim import gpus
>>> g = gpus.gpu("rtx_4090")
>>> g.name, g.arch, g.instruction("e4m3", "fp32")
('RTX 4090', 'Ada', 'mma.m16n8k32.f32.e4m3.e4m3.f32')
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from . import accum as _A
from . import engines as _E
from .formats import as_format

__all__ = ["BLOCK_SCALED", "CAPTURED", "FNUZ", "FP6_FP4", "GPU", "GPU_TABLE", "GPUS", "IN_FORMATS",
           "UNREPRODUCED", "evidence", "fp16_halves", "fp8_promoted", "gpu", "mma", "parameter_table",
           "profile_formats", "table", "tensor_core"]

#: Input formats of NVIDIA-style presets (and the torch ``<gpu>_<fmt>`` profiles).
IN_FORMATS = ("fp16", "bf16", "tf32", "e4m3", "e5m2")
#: AMD CDNA3's FP8 input formats.
FNUZ = ("e4m3fnuz", "e5m2fnuz")
#: Blackwell's unscaled FP6/FP4 operands (``kind::f8f6f4`` without block scales).
FP6_FP4 = ("e3m2", "e2m3", "e2m1")
#: Block-scaled kinds of :func:`tensor_core` on Blackwell: name -> (kind, element, block, scale)
BLOCK_SCALED = {"mxfp8": ("mxf8f6f4", "e4m3", 32, "ue8m0"),
                "mxfp8_e4m3": ("mxf8f6f4", "e4m3", 32, "ue8m0"),
                "mxfp8_e5m2": ("mxf8f6f4", "e5m2", 32, "ue8m0"),
                "mxfp6_e2m3": ("mxf8f6f4", "e2m3", 32, "ue8m0"),
                "mxfp6_e3m2": ("mxf8f6f4", "e3m2", 32, "ue8m0"),
                "mxfp4": ("mxf4", "e2m1", 32, "ue8m0"),
                "nvfp4": ("mxf4nvf4", "e2m1", 16, "ue4m3")}
_PTX = {"fp16": "f16", "bf16": "bf16", "tf32": "tf32", "e4m3": "e4m3", "e5m2": "e5m2",
        "fp32": "f32", "fp64": "f64", **{f: f for f in FP6_FP4}}
# input class of a format: the key of a row's instruction templates (AMD rows key by format)
_CLASS = {"fp16": "16", "bf16": "16", "tf32": "tf32", "e4m3": "8", "e5m2": "8",
          **{f: "f6f4" for f in FP6_FP4}, "fp64": "64", **{k: "mx" for k in BLOCK_SCALED}}
_F8F6F4 = ("e4m3", "e5m2") + FP6_FP4  # the operands kind::f8f6f4 pairs freely


@dataclass(frozen=True)
class GPU:
    """One GPU: what its preset takes, which instruction models it, what stands behind it.

    ``inputs``: the input formats :func:`tensor_core` accepts (``IN_FORMATS`` names, the
    fnuz FP8 formats, the block-scaled kinds of :data:`BLOCK_SCALED`). ``instructions``:
    ``(input class, template)`` pairs; the class is ``"16"`` (fp16, bf16), ``"tf32"``, ``"8"``
    (e4m3, e5m2), ``"f6f4"`` (e3m2, e2m3, e2m1), ``"64"`` (fp64), ``"mx"`` (block-scaled)
    or an input format (AMD); templates take ``{d}``
    (output), ``{a}`` and ``{b}`` (inputs) PTX types, and ``{k}``, ``{kind}``, ``{block}``, ``{sc}`` for
    block-scaled kinds; ``{a}``/``{b}`` are A's and B's types. ``captured``: ``(input, output)`` whose captured file the preset
    reproduces line for line; ``unreproduced``: captured files no known model reproduces.

    >>> GPU("X1", "Ampere", ("fp16",), AMPERE).instruction("fp16", "fp16")
    'mma.m16n8k16.f16.f16.f16.f16'
    """

    name: str
    arch: str
    inputs: tuple
    instructions: tuple
    aliases: tuple = ()
    captured: tuple = ()
    unreproduced: tuple = ()

    @property
    def profile(self) -> str:
        """The GPU's part of a torch profile name (``rtx4090`` in ``rtx4090_fp16``)."""
        return self.name.lower().replace(" ", "")

    def instruction(self, fin: str, fout: str = "fp32", fin_b: str | None = None) -> str:
        """The instruction this GPU's preset models for ``fin`` inputs (B: ``fin_b``, a
        block-scaled kind of the same instruction kind) and ``fout`` output (``ValueError``
        for an input the GPU does not take)."""
        amd = self.arch.startswith("CDNA")
        cls = _CLASS.get(fin)
        if fin_b is not None and fin_b != fin:
            if fin_b not in self.inputs:
                raise ValueError(self._lacks(fin_b, fout))
            same = lambda k: (k[0], k[2], k[3])  # noqa: E731  (kind, block, scale)
            if {fin, fin_b} & set(FP6_FP4):  # an FP6/FP4 operand: the kind::f8f6f4 instruction
                if not {fin, fin_b} <= set(_F8F6F4):
                    raise ValueError(f"{self.name} has no ({fin}, {fin_b}) -> {fout} MMA "
                                     f"(Blackwell's kind::f8f6f4 pairs {', '.join(_F8F6F4)})")
                cls = "f6f4"
            elif not (fin in BLOCK_SCALED and fin_b in BLOCK_SCALED
                      and same(BLOCK_SCALED[fin]) == same(BLOCK_SCALED[fin_b])):
                raise ValueError(f"mixed block-scaled inputs must share an instruction kind, "
                                 f"block and scale type, not ({fin}, {fin_b})")
        if fin not in self.inputs:
            raise ValueError(self._lacks(fin, fout))
        if (fin == "fp64") != (fout == "fp64") or (amd and fout not in ("fp32", "fp64")):
            raise ValueError(self._lacks(fin, fout))
        if fin in BLOCK_SCALED and fout != "fp32":
            raise ValueError(f"{self.name} has no block-scaled {fin} -> {fout} MMA (Blackwell "
                             "and RTX Blackwell have them, into fp32)")
        templates = dict(self.instructions)
        t = templates[fin] if amd else templates[cls]
        if fin in BLOCK_SCALED:
            kind, elem, block, sc = BLOCK_SCALED[fin]
            return t.format(k=32 if kind == "mxf8f6f4" else 64, kind=kind, block=block, a=elem,
                            b=BLOCK_SCALED[fin_b or fin][1], sc=sc)
        return t if amd else t.format(d=_PTX[fout], a=_PTX[fin], b=_PTX[fin_b or fin])

    def _lacks(self, fin, fout):
        if self.arch.startswith("CDNA"):
            return (f"{self.name} matrix cores have no {fin} -> {fout} mode (they take "
                    f"{', '.join(self.inputs)} into fp32)")
        if fin in BLOCK_SCALED:
            return (f"{self.name} has no block-scaled {fin} -> {fout} MMA (Blackwell and RTX "
                    "Blackwell have them, into fp32)")
        if fin in FNUZ:
            return f"{self.name} has no {fin} mode (the fnuz FP8 formats are AMD CDNA3's)"
        hint = " (fp8 needs Ada/L40S or later)" if _CLASS.get(fin) == "8" else ""
        return (f"{self.name} tensor cores have no {fin} mode{hint}; they take "
                f"{', '.join(self.inputs)}")


# Instruction templates per architecture (the parameters: fpsim.engines.ENGINES)
VOLTA = (("16", "mma.m8n8k4.{d}.{a}.{b}.{d}"),)
TURING = (("16", "mma.m16n8k8.{d}.{a}.{b}.{d}"),)
AMPERE = (("16", "mma.m16n8k16.{d}.{a}.{b}.{d}"), ("tf32", "mma.m16n8k8.{d}.{a}.{b}.{d}"),
          ("64", "mma.m8n8k4.f64.f64.f64.f64"))
ADA = AMPERE + (("8", "mma.m16n8k32.{d}.{a}.{b}.{d}"),)
HOPPER = (("16", "wgmma.m64n8k16.{d}.{a}.{b}"), ("tf32", "wgmma.m64n8k8.{d}.{a}.{b}"),
          ("8", "wgmma.m64n8k32.{d}.{a}.{b}"), ("64", "mma.m16n8k16.f64.f64.f64.f64"))
BLACKWELL = ADA + (
    ("f6f4", "tcgen05.mma.m128n256k32.kind::f8f6f4.{d}.{a}.{b}"),
    ("mx", "tcgen05.mma.m128n256k{k}.kind::{kind}.block{block}.f32.{a}.{b}.{sc}"),)
RTX_BLACKWELL = ADA + (("f6f4", "mma.m16n8k32.kind::f8f6f4.{d}.{a}.{b}.{d}"),
                       ("mx", "mma.m16n8k{k}.kind::{kind}.block{block}.f32.{a}.{b}.f32.{sc}"))
# AMD: the largest-K instruction of each input type
CDNA1 = (("fp16", "v_mfma_f32_16x16x16f16"), ("bf16", "v_mfma_f32_16x16x8bf16"))
CDNA2 = (("fp16", "v_mfma_f32_16x16x16f16"), ("bf16", "v_mfma_f32_16x16x16bf16_1k"),
         ("fp64", "v_mfma_f64_16x16x4f64"))
CDNA3 = (("fp16", "v_mfma_f32_16x16x16_f16"), ("bf16", "v_mfma_f32_16x16x16_bf16"),
         ("tf32", "v_mfma_f32_16x16x8_xf32"), ("e4m3fnuz", "v_mfma_f32_16x16x32_fp8_fp8"),
         ("e5m2fnuz", "v_mfma_f32_16x16x32_bf8_bf8"), ("fp64", "v_mfma_f64_16x16x4_f64"))

_F16 = ("fp16", "bf16", "tf32")
_F8 = _F16 + ("e4m3", "e5m2")
_MX = _F8 + FP6_FP4 + tuple(BLOCK_SCALED)
# fp64 matrix instructions: the data-center GPUs whose data sheets list FP64 tensor / matrix
# cores (the model is the instruction's, MMA-Sim's FMA chain, whatever the GPU's fp64 rate)
_D = ("fp64",)
_ALL16 = (("fp16", "fp32"), ("fp16", "fp16"), ("bf16", "fp32"), ("tf32", "fp32"))

#: Every GPU fpsim has a preset for; :data:`GPUS`, :func:`tensor_core`, :func:`evidence`,
#: :data:`CAPTURED` and the torch ``<gpu>_<fmt>`` profiles are derived from it.
GPU_TABLE = (
    GPU("V100", "Volta", ("fp16",), VOLTA, captured=(("fp16", "fp32"), ("fp16", "fp16"))),
    GPU("T4", "Turing", ("fp16",), TURING),
    GPU("A100", "Ampere", _F16 + _D, AMPERE, captured=_ALL16),
    GPU("A2", "Ampere", _F16, AMPERE),
    GPU("A30", "Ampere", _F16 + _D, AMPERE),
    GPU("A40", "Ampere", _F16, AMPERE),
    GPU("Ada", "Ada", _F8, ADA, captured=_ALL16 + tuple(
        (f, o) for f in ("e4m3", "e5m2") for o in ("fp32", "fp16"))),
    GPU("L40S", "Ada", _F8, ADA),
    GPU("L4", "Ada", _F8, ADA),
    GPU("RTX 4090", "Ada", _F8, ADA),
    GPU("H100", "Hopper", _F8 + _D, HOPPER, captured=_ALL16 + tuple(
        (f, o) for f in ("e4m3", "e5m2") for o in ("fp32", "fp16"))),
    GPU("H200", "Hopper", _F8 + _D, HOPPER),
    GPU("GH200", "Hopper", _F8 + _D, HOPPER),
    GPU("B200", "Blackwell", _MX + _D, BLACKWELL, captured=tuple(
        (f, o) for f in ("e4m3", "e5m2") for o in ("fp32", "fp16"))),
    GPU("B300", "Blackwell", _MX, BLACKWELL),
    GPU("RTX 5090", "RTX Blackwell", _MX, RTX_BLACKWELL),
    GPU("RTX PRO 6000", "RTX Blackwell", _MX, RTX_BLACKWELL, aliases=("RTX PRO 6000 Blackwell",)),
    GPU("MI100", "CDNA1", ("fp16", "bf16"), CDNA1),
    GPU("MI210", "CDNA2", ("fp16", "bf16") + _D, CDNA2),
    GPU("MI250X", "CDNA2", ("fp16", "bf16") + _D, CDNA2),
    GPU("MI300X", "CDNA3", _F16 + FNUZ + _D, CDNA3),
    GPU("MI300A", "CDNA3", _F16 + FNUZ + _D, CDNA3),
    GPU("MI325X", "CDNA3", _F16 + FNUZ + _D, CDNA3),
)

#: GPU names accepted by :func:`tensor_core` (case-insensitive).
GPUS = tuple(g.name for g in GPU_TABLE)
#: (GPU, input, output) whose captured file the preset reproduces line for line
#: (tests/test_tensor_cores.py checks this set against the data).
CAPTURED = frozenset((g.name, f, o) for g in GPU_TABLE for f, o in g.captured)
#: Captured files no known model reproduces (none today: the FP8 -> fp16 outputs of H100 and
#: B200, 62-68% with the published model, are reproduced by ``fp16_halves``).
UNREPRODUCED = frozenset((g.name, f, o) for g in GPU_TABLE for f, o in g.unreproduced)


def _key(s) -> str:
    return str(s).lower().replace(" ", "").replace("_", "")


def gpu(name) -> GPU:
    """The row of GPU ``name`` (case, spaces and ``_`` do not matter: ``"rtx_4090"``), or a
    ``ValueError`` suggesting the closest name.

    >>> from fpsim import gpus
    >>> gpus.gpu("h100").arch
    'Hopper'
    """
    if isinstance(name, GPU):
        return name
    for g in GPU_TABLE:
        if _key(name) in {_key(n) for n in (g.name,) + g.aliases}:
            return g
    upper = {g.upper(): g for g in GPUS}
    close = difflib.get_close_matches(str(name).upper(), list(upper), n=1, cutoff=0.5)
    hint = f"did you mean {upper[close[0]]!r}? " if close else ""
    raise ValueError(f"unknown GPU {name!r}; {hint}allowed: {', '.join(GPUS)}")


def _in_name(fmt) -> str:
    if isinstance(fmt, str) and fmt.lower() in BLOCK_SCALED:
        return fmt.lower()
    f = as_format(fmt)
    for nm in IN_FORMATS + FNUZ + FP6_FP4 + ("fp64",):
        if as_format(nm) == f:
            return nm
    raise ValueError(f"tensor cores take {', '.join(IN_FORMATS + FNUZ)} inputs (and on "
                     f"Blackwell {', '.join(FP6_FP4)} and the block-scaled "
                     f"{', '.join(BLOCK_SCALED)}), not {f.name}")


#: The order in which the FP8 -> fp16 path of Hopper wgmma and Blackwell mma.sync sums the 32
#: products of one instruction (engines.Engine.fp16_halves): the low 16-bit halves of each
#: 32-bit register word (k = 0, 1, 4, 5, ..., 28, 29), then the high halves (2, 3, 6, 7, ...)
HALVES_ORDER = tuple(k for h in (0, 2) for w in range(0, 32, 4) for k in (w + h, w + h + 1))


def fp16_halves(F, in_fmt, name=""):
    """The FP8 -> fp16 model of Hopper wgmma and Blackwell mma.sync (``Engine.fp16_halves``):
    per instruction of 32 products, a fused step of the 16 low-half products into fp16 (RNE)
    from zero, a fused step of the 16 high-half products with that result as its c, then
    ``d = fp16(c + x)``; instructions chain through c. ``F`` is the fused steps' alignment
    width (any F >= 18 gives the same bits on the captured data). Fitted to every line of
    the captured H100 and B200 outputs (``tests/test_fp8_fp16_outputs.py``); K is padded
    to whole instructions with zero products.

    >>> import numpy as np, fpsim
    >>> m = fpsim.gpus.fp16_halves(25, "e4m3")
    >>> float(fpsim.dot(np.ones(32), np.full(32, 2.0**-9), 1.0, model=m))  # 1 + 32 * 2**-9
    1.0625
    """
    step = _A.FusedBlock(16, F - 23, out_fmt="fp16", rounding="rne", in_fmt=in_fmt,
                         name=(name + " k16 step").strip())
    return _A.Permuted(_A.Blocked(32, step, _A.Sequential("fp16")), order=HALVES_ORDER,
                       period=32)


def _renamed(m, name):
    """``m`` (a frozen dataclass model) under another name."""
    return type(m)(**{**{k: getattr(m, k) for k in m.__dataclass_fields__}, "name": name})


def tensor_core(gpu_name, in_fmt, out_fmt=None):
    """The tensor-core model of ``gpu_name`` for ``in_fmt`` inputs and ``out_fmt``
    (fp32/fp16; default fp32): a :class:`fpsim.accum.FusedBlock` (AMD:
    :class:`fpsim.accum.MFMA`; block-scaled kinds: :class:`fpsim.accum.BlockScaledFused`).
    ``"fp64"`` inputs (the data-center GPUs with fp64 tensor / matrix cores: A100, A30,
    H100, H200, GH200, B200, MI210, MI250X, MI300X, MI300A, MI325X) give their fp64
    instruction, ``Sequential("fp64", fma=True)``, with fp64 output.

    Raises ``ValueError`` for combinations the GPU does not have (V100: fp16 only; fp8 from
    Ada on; tf32 and bf16 need fp32 output). ``in_fmt`` may be a pair (A's,
    B's): FP8 pairs, AMD's fnuz FP8 pairs, and on Blackwell any pair of the
    ``kind::f8f6f4`` operands (e4m3, e5m2, e3m2, e2m3, e2m1), which Blackwell also takes
    alone, unscaled (``tensor_core("B200", "e2m1")``).

    >>> import fpsim
    >>> fpsim.hardware.tensor_core("V100", "fp16", "fp16").rounding
    'rne'
    >>> fpsim.hardware.tensor_core("H100", "e4m3")
    FusedBlock<H100 e4m3>(n=32, neab=-10, out=fp32, rounding='rtz')
    >>> fpsim.hardware.tensor_core("B200", ("e2m1", "e4m3"))
    FusedBlock<B200 e2m1 x e4m3>(n=32, neab=2, out=fp32, rounding='rtz')
    """
    g = gpu(gpu_name)
    if out_fmt is None:  # fp32, or fp64 for fp64 inputs
        pair = isinstance(in_fmt, (tuple, list))
        out_fmt = "fp64" if not pair and _in_name(in_fmt) == "fp64" else "fp32"
    if isinstance(in_fmt, (tuple, list)) and len(in_fmt) == 2:
        fa, fb = _in_name(in_fmt[0]), _in_name(in_fmt[1])
        if fa != fb and fa in BLOCK_SCALED:  # e.g. MX E5M2 gradients x MX E4M3 weights
            if as_format(out_fmt).name != "fp32":
                raise ValueError(g._lacks(fa, as_format(out_fmt).name))
            return _renamed(mma(g.arch, g.instruction(fa, "fp32", fb)), f"{g.name} {fa} x {fb}")
        if fa != fb and {fa, fb} <= set(FNUZ) and fa in g.inputs and fb in g.inputs:
            t = {"e4m3fnuz": "fp8", "e5m2fnuz": "bf8"}
            m = mma(g.arch, f"v_mfma_f32_16x16x32_{t[fa]}_{t[fb]}")
            return _renamed(m, f"{g.name} {fa} x {fb}")
        if fa != fb and {fa, fb} & set(FP6_FP4):  # kind::f8f6f4: any pair of its operands
            fo = as_format(out_fmt)
            m = mma(g.arch, g.instruction(fa, fo.name, fb))
            return _renamed(m, f"{g.name} {fa} x {fb}" + ("" if fo.name == "fp32" else " -> fp16"))
        if fa != fb:
            if not {fa, fb} <= {"e4m3", "e5m2"}:
                raise ValueError(f"mixed tensor-core inputs are pairs of Blackwell's kind::f8f6f4 "
                                 f"operands ({', '.join(_F8F6F4)}), FP8 pairs (e4m3, e5m2) or "
                                 f"AMD's fnuz FP8 pairs, not ({fa}, {fb})")
            m = tensor_core(g, fa, out_fmt)
            if isinstance(m, _A.Permuted):  # the FP8 -> fp16 path of two k16 steps
                step = m.inner.inner
                return fp16_halves(step.neab + 23, (fa, fb), f"{g.name} {fa} x {fb} -> fp16")
            return _A.FusedBlock(m.n, m.neab, out_fmt=m.out_fmt, rounding=m.rounding,
                                 in_fmt=(fa, fb), name=f"{g.name} {fa} x {fb}"
                                 + ("" if m.out_fmt.name == "fp32" else " -> fp16"))
        in_fmt = fa
    fin = _in_name(in_fmt)
    fo = as_format(out_fmt)
    if fin == "fp64" or fo.name == "fp64":  # fp64 matrix instructions: an fp64 FMA chain
        if (fin, fo.name) != ("fp64", "fp64"):
            raise ValueError(f"fp64 tensor-core inputs give fp64 outputs only, not {fin} -> "
                             f"{fo.name}")
        return mma(g.arch, g.instruction("fp64", "fp64"))  # Sequential("fp64", fma=True)
    if fo.name not in ("fp32", "fp16"):
        raise ValueError(f"tensor-core output must be fp32 or fp16 (fp64 for fp64 inputs), not "
                         f"{fo.name}")
    instr = g.instruction(fin, fo.name)
    try:
        m = mma(g.arch, instr)
    except ValueError:
        raise ValueError(f"{g.name} tensor cores have no {fin} -> {fo.name} mode "
                         f"(bf16 and tf32 accumulate into fp32 only; V100 and T4 take fp16 "
                         "only)") from None
    if isinstance(m, _A.Permuted):  # the FP8 -> fp16 path of two k16 steps
        return fp16_halves(m.inner.inner.neab + 23, fin, f"{g.name} {fin} -> fp16")
    if not isinstance(m, _A.FusedBlock):  # block-scaled kinds, AMD matrix cores
        return _renamed(m, f"{g.name} {fin}")
    return _A.FusedBlock(m.n, m.neab, out_fmt=fo, rounding=m.rounding, in_fmt=fin,
                         name=f"{g.name} {fin}" + ("" if fo.name == "fp32" else " -> fp16"))


def mma(arch: str, instruction: str):
    """The model of one matrix-engine instruction: a :class:`fpsim.accum.FusedBlock`.

    ``arch``: Volta, Turing, Ampere, Ada (or "Ada Lovelace"), Hopper, Blackwell,
    RTX Blackwell, CDNA1, CDNA2, CDNA3, or an ``sm_XX``/``gfxNNN`` name (case-insensitive).
    AMD instructions as the ISA spells them (``v_mfma_f32_32x32x8_bf16``) give a
    :class:`fpsim.accum.MFMA` (fp32 inputs: :class:`fpsim.accum.Sequential` fp32 FMA).
    fp64 instructions (``mma.m8n8k4.f64.f64.f64.f64``, ``v_mfma_f64_16x16x4_f64``) give
    ``Sequential("fp64", fma=True)``: one IEEE fp64 FMA per product, c first, as MMA-Sim
    models them.
    ``instruction`` as PTX spells it (``mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32``,
    ``wgmma.mma_async...``, ``tcgen05.mma.m128n256k32.kind::f8f6f4.f32.e2m1.e2m1``) or
    MMA-Sim's short form after the opcode (``m16n8k16.f32.bf16.bf16.f32``). M and N do not
    change a dot product; a K longer than the instruction's chains instructions (c <- d). The
    parameters and what stands behind them (captured data, MMA-Sim, published) are in
    :data:`fpsim.engines.ENGINES` (docs: Matrix engines). Block-scaled kinds
    (``kind::mxf8f6f4``, ``mxf4``, ``mxf4nvf4`` with ``block16``/``block32`` and
    ``ue8m0``/``ue4m3``, or PTX's ``.block_scale.scale_vec::NX``) give a
    :class:`fpsim.accum.BlockScaledFused`, used with ``fpsim.dot(a, b, c, model=m,
    a_scale=sa, b_scale=sb)``. Mixed operand formats (``e4m3 x e5m2``, ``e2m1 x e4m3``) are
    modelled where the instruction takes them: each operand's subnormals count with its own
    format's smallest exponent.

    >>> import fpsim
    >>> fpsim.hardware.mma("Ada Lovelace", "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32")
    FusedBlock<Ada mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32>(n=16, neab=-10, out=fp32, rounding='rtz')
    >>> fpsim.hardware.mma("Hopper", "mma.sync.aligned.m16n8k16.row.col.f64.f64.f64.f64")
    Sequential(fmt=FloatFormat(11, 52), rounding='rne', fma=True, multiply=None, overflow=None, seed=None)
    """
    ins = _E.parse_instruction(instruction)
    e = _E.lookup(arch, instruction)
    fa, fb, fout = (_E.OPERAND_FORMATS[ins.a], _E.OPERAND_FORMATS[ins.b],
                    _E.OPERAND_FORMATS[ins.d])
    if e.variant == "fma":  # fp32/fp64 MFMA, fp64 mma: one fused multiply-add per product
        return _A.Sequential(fout, fma=True)
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
    if fout == "fp16" and e.fp16_halves:
        if ins.k != 32:
            raise ValueError(f"{e.arch} {instruction}: the FP8 -> fp16 model is of k32 "
                             "instructions")
        return fp16_halves(F, (fa, fb), f"{e.arch} {instruction}")
    rounding = e.fp32_rounding if fout == "fp32" else "rne"
    return _A.FusedBlock(e.L, F - 23, out_fmt=fout, rounding=rounding, in_fmt=(fa, fb),
                         name=f"{e.arch} {instruction}",
                         c_fmt=_E.OPERAND_FORMATS[ins.c] if ins.c else None)


def evidence(gpu_name: str, in_fmt, out_fmt=None) -> str:
    """What the preset :func:`tensor_core` ``(gpu, in_fmt, out_fmt)`` stands on, starting
    with one of ``"captured GPU data"``, ``"MMA-Sim agreement"``, ``"published parameters
    only"``.

    >>> import fpsim
    >>> fpsim.hardware.evidence("A100", "bf16").split(":")[0]
    'captured GPU data'
    >>> fpsim.hardware.evidence("H200", "bf16").split(":")[0]
    'MMA-Sim agreement'
    """
    g = gpu(gpu_name)
    m = tensor_core(g, in_fmt, out_fmt)  # raises for modes the GPU lacks
    fin, fo = (("fp64", "fp64") if isinstance(m, _A.Sequential)
               else (m.in_fmt.name, m.out_fmt.name))
    if isinstance(in_fmt, str) and in_fmt.lower() in BLOCK_SCALED:
        fin = in_fmt.lower()
    instr = g.instruction(fin, fo)
    row = _E.lookup(g.arch, instr)
    mmasim = row.mmasim and not (fo == "fp16" and (row.evidence_fp16 == _E.PUBLISHED
                                                   or row.fp16_halves))
    sim = f"bit-identical to MMA-Sim's {g.arch} {instr.split('.')[0]} model on random inputs"
    if (g.name, fin, fo) in CAPTURED:
        return (f"captured GPU data: the model reproduces every captured line of {g.name} {fin} "
                f"-> {fo} outputs" + (f"; {sim}" if mmasim else ""))
    same_arch = [o for o in GPU_TABLE if o.arch == g.arch]
    sibling = sorted(o.name for o in same_arch if (fin, fo) in o.captured)
    differs = sorted(o.name for o in same_arch if (fin, fo) in o.unreproduced)
    warn = (f"; the captured {differs[0]} {fin} -> {fo} outputs disagree (no known model "
            "reproduces them: 62-68% of lines)") if differs else ""
    own_data = (fin, fo) in g.unreproduced
    if mmasim:
        own = "" if own_data else f"; no captured data of {g.name}"
        return (f"MMA-Sim agreement: {sim}{own}"
                + (f" (the same architecture's {sibling[0]} data is reproduced)" if sibling else "")
                + warn)
    if sibling:  # data of another GPU of the architecture, no MMA-Sim model agreeing
        return (f"captured GPU data of {sibling[0]} (the same architecture): the model "
                f"reproduces every captured line of {sibling[0]} {fin} -> {fo} outputs; no "
                f"captured data of {g.name}" + warn)
    own = "" if own_data else \
        f": not checked against captured outputs of {g.name} {fin} -> {fo}"
    return "published parameters only" + own + warn


def fp8_promoted(gpu_name: str = "H100", in_fmt="e4m3", every: int = 128) -> _A.Promoted:
    """DeepSeek-V3's FP8 GEMM recipe: ``every`` (128) products on the tensor core's narrow
    (13-bit-mantissa) accumulator, then each partial sum added into fp32 on CUDA cores.

    >>> import fpsim
    >>> fpsim.hardware.fp8_promoted().every
    128
    """
    return _A.Promoted(tensor_core(gpu_name, in_fmt), every=every,
                       outer=_A.Sequential("fp32", fma=True))


def profile_formats(g) -> tuple:
    """The input formats of GPU ``g``'s torch ``<gpu>_<fmt>`` profiles (its plain inputs).

    >>> from fpsim import gpus
    >>> gpus.profile_formats("A100")
    ('fp16', 'bf16', 'tf32')
    """
    return tuple(f for f in gpu(g).inputs if f in IN_FORMATS)


def _outputs(g, fin):
    outs = []
    for fo in ("fp32", "fp16", "fp64"):
        try:
            tensor_core(g, fin, fo)
        except ValueError:
            continue
        outs.append(fo)
    return outs


def table() -> list:
    """The GPU table as rows (dicts) for docs and reports: one row per GPU.

    >>> from fpsim import gpus
    >>> row = gpus.table()[2]
    >>> row["GPU"], row["architecture"], row["inputs"], row["instructions"]
    ('A100', 'Ampere', 'fp16, bf16, tf32, fp64', '`mma.m16n8k16` (fp16, bf16); `mma.m16n8k8` (tf32); `mma.m8n8k4` (fp64)')
    """
    rows = []
    for g in GPU_TABLE:
        plain = [f for f in g.inputs if f not in BLOCK_SCALED]
        kinds = [f for f in g.inputs if f in BLOCK_SCALED]
        instr: dict = {}
        for f in g.inputs:  # one entry per instruction, with the inputs it serves
            instr.setdefault(_short(g.instruction(f, "fp64" if f == "fp64" else "fp32")),
                             []).append(f)
        rows.append({
            "GPU": g.name + (f" ({', '.join(g.aliases)})" if g.aliases else ""),
            "architecture": g.arch,
            "inputs": ", ".join(plain) + (f"; block-scaled: {', '.join(kinds)}" if kinds else ""),
            "fp16 output": ", ".join(f for f in plain if "fp16" in _outputs(g, f)) or "–",
            "instructions": "; ".join(f"`{i}` ({', '.join(fs)})" for i, fs in instr.items()),
            "captured outputs": ", ".join(f"{f} → {o}" for f, o in g.captured) or "–",
        })
    return rows


def _short(instr):
    """An instruction up to its shape (and kind): ``mma.m16n8k16``; AMD names whole."""
    if instr.startswith("v_mfma"):
        return instr
    toks = instr.split(".")
    i = next(i for i, t in enumerate(toks) if re.fullmatch(r"m\d+n\d+k\d+", t))
    return ".".join(toks[:i + 1] + [t for t in toks[i + 1:] if t.startswith("kind::")])


def parameter_table() -> list:
    """NVIDIA presets' published parameters (n products per fused block, neab extra
    alignment bits) as rows, GPUs with equal parameters grouped (docs: Accumulation).

    >>> from fpsim import gpus
    >>> gpus.parameter_table()[0]["GPU"]
    'V100'
    """
    groups: dict = {}
    for g in GPU_TABLE:
        if g.arch.startswith("CDNA"):
            continue
        cells = {}
        for col, fmts in (("fp16 / bf16", ("fp16", "bf16")), ("tf32", ("tf32",)),
                          ("fp8 (e4m3, e5m2)", ("e4m3", "e5m2"))):
            f = next((f for f in fmts if f in g.inputs), None)
            if f is None:
                cells[col] = "–"
                continue
            m = tensor_core(g, f)
            cells[col] = f"n={m.n}, neab={m.neab}" + (", RNE" if m.rounding == "rne" else "")
        groups.setdefault(tuple(cells.items()), []).append(g.name)
    return [{"GPU": ", ".join(names), **dict(cells)} for cells, names in groups.items()]
