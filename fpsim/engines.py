"""Matrix-engine instructions: one table from (arch, instruction) to the fused dot-add model.

:func:`fpsim.hardware.mma` reads an instruction as PTX spells it (``mma``, ``wgmma``,
``tcgen05.mma``; MMA-Sim's short ``shape_and_type`` forms too) and returns the
:class:`fpsim.accum.FusedBlock` of that instruction on that architecture. Every row of
:data:`ENGINES` says what stands behind it: captured GPU outputs, MMA-Sim agreement on random
inputs, or published parameters only. ``docs/engines.md`` is generated from this table.

Parameters per row: ``L`` products per fused group (a longer K chains groups, c <- d),
``F`` fraction bits kept below the largest exponent (``F = 23 + neab``), and the final
rounding for fp32 and fp16 outputs.

>>> from fpsim import engines
>>> engines.lookup("Ampere", "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32").L
8
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

__all__ = ["ARCHS", "ENGINES", "Engine", "Instruction", "arch_name", "block_scale", "lookup",
           "parse_instruction", "table"]

#: Architectures (case-insensitive; "Ada Lovelace" and "Ada", "RTX Blackwell" and
#: "sm_120" accepted).
ARCHS = ("Volta", "Turing", "Ampere", "Ada", "Hopper", "Blackwell", "RTX Blackwell", "CDNA1",
         "CDNA2", "CDNA3")
_ALIASES = {"gfx908": "CDNA1", "gfx90a": "CDNA2", "gfx940": "CDNA3", "gfx941": "CDNA3",
            "gfx942": "CDNA3", "ada lovelace": "Ada", "lovelace": "Ada", "sm_70": "Volta", "sm_75": "Turing",
            "sm_80": "Ampere", "sm_86": "Ampere", "sm_89": "Ada", "sm_90": "Hopper",
            "sm_90a": "Hopper", "sm_100": "Blackwell", "sm_100a": "Blackwell",
            "sm_120": "RTX Blackwell", "rtx_blackwell": "RTX Blackwell"}

# PTX type names -> fpsim format names
OPERAND_FORMATS = {"f16": "fp16", "bf16": "bf16", "tf32": "tf32", "f32": "fp32", "f64": "fp64",
          "e4m3": "e4m3",
          "e5m2": "e5m2", "e2m1": "e2m1", "e3m2": "e3m2", "e2m3": "e2m3",
          # AMD ISA type names (v_mfma_*): xf32 is tf32, fp8/bf8 the fnuz FP8 formats
          "xf32": "tf32", "fp8": "e4m3fnuz", "bf8": "e5m2fnuz"}
_AMD_ONLY = ("xf32", "fp8", "bf8")
_F8 = ("e4m3", "e5m2")
_F8F6F4 = ("e4m3", "e5m2", "e3m2", "e2m3", "e2m1")
_FP64 = ("fp64",)

MMASIM = "MMA-Sim (bit-identical on random inputs, tests/test_mmasim.py)"
DATA = "captured GPU outputs (every line reproduced) and MMA-Sim"
DATA_ONLY = "captured GPU outputs (every line reproduced); MMA-Sim has no model"
DATA_NOT_SIM = ("captured GPU outputs (every line reproduced); MMA-Sim models one fused group "
                "and disagrees with the hardware (62-68% of lines)")
PUBLISHED = "published parameters only (Khattak & Mikaitis 2025; not validated)"


@dataclass(frozen=True)
class Engine:
    """One row of the table: an instruction family on one architecture.

    ``opcode`` is ``mma``, ``wgmma`` or ``tcgen05.mma`` (with ``kind``); ``ks`` the K of the
    instruction shapes; ``inputs`` the operand formats; ``outputs`` the result formats;
    ``L``/``F`` the fused-group size and alignment width (``F_fp16`` where fp16 output
    differs); ``fp32_rounding`` the final rounding into fp32 (fp16 output is nearest-even);
    ``evidence`` what stands behind the parameters; ``mmasim`` whether MMA-Sim models the
    instruction (every such row is compared with it in the test suite).
    """

    arch: str
    opcode: str
    kind: str
    ks: tuple
    inputs: tuple
    outputs: tuple
    L: int
    F: int
    fp32_rounding: str
    evidence: str
    F_fp16: int | None = None
    evidence_fp16: str | None = None
    #: fp16 output: the instruction runs as two chained fused steps of 16 products into the
    #: fp16 accumulator - the low 16-bit halves of each 32-bit register word first
    #: (k = 0, 1, 4, 5, ...), from zero, then the high halves - and c is added last in one
    #: fp16 rounding (fitted to the captured H100 and B200 FP8 -> fp16 outputs, every line)
    fp16_halves: bool = False
    mmasim: bool = True  # MMA-Sim models this instruction (tests/test_mmasim.py compares)
    #: block-scaled kinds: the (block, scale format) pairs the instruction takes, products
    #: summed exactly per group before scaling (1: each product scaled) and the exponent of
    #: zero terms (fpsim.accum.BlockScaledFused)
    scaling: tuple = ()
    group: int = 1
    e_zero: int = -133
    #: AMD v_mfma rows: fpsim.accum.MFMA's variant and its second alignment width F2;
    #: "fma" (AMD and NVIDIA rows): one IEEE FMA per product in the output format, the
    #: Sequential(fp32 or fp64, fma=True) model (L and F do not apply)
    variant: str = ""
    F2: int = 0

    def describe(self) -> str:
        op = self.opcode + (f".kind::{self.kind}" if self.kind else "")
        if self.scaling:
            op += " " + "/".join(f"block{b}.{sc}" for b, sc in self.scaling)
        return (f"{self.arch} {op} K={'/'.join(map(str, self.ks))} "
                f"{'/'.join(self.inputs)} -> {'/'.join(self.outputs)}: L={self.L}, F={self.F}")


def _mma_rows():
    rows = [
        Engine("Volta", "mma", "", (4,), ("fp16",), ("fp32", "fp16"), 4, 23, "rtz", DATA),
        # Turing's m8n8k4 runs with Volta's parameters (MMA-Sim)
        Engine("Turing", "mma", "", (4,), ("fp16",), ("fp32", "fp16"), 4, 23, "rtz", MMASIM),
        Engine("Turing", "mma", "", (8,), ("fp16",), ("fp32", "fp16"), 8, 24, "rtz", MMASIM),
    ]
    for arch, F, lb, ev in [("Ampere", 24, 16, DATA), ("Ada", 24, 16, DATA),
                            ("Hopper", 25, 32, DATA), ("Blackwell", 25, 32, MMASIM),
                            ("RTX Blackwell", 25, 32, MMASIM)]:
        rows += [
            Engine(arch, "mma", "", (8, 16), ("fp16",), ("fp32", "fp16"), lb // 2, F, "rtz", ev),
            Engine(arch, "mma", "", (8, 16), ("bf16",), ("fp32",), lb // 2, F, "rtz", ev),
            Engine(arch, "mma", "", (4, 8), ("tf32",), ("fp32",), lb // 4, F, "rtz", ev),
        ]
    rows += [
        # Ada FP8: 13 fraction bits, an fp32 result truncated to 13 mantissa bits (e8m13)
        Engine("Ada", "mma", "", (16, 32), _F8, ("fp32", "fp16"), 16, 13, "rtz", DATA),
        Engine("RTX Blackwell", "mma", "", (16, 32), _F8, ("fp32", "fp16"), 32, 25, "rtz",
               MMASIM),
        Engine("RTX Blackwell", "mma", "f8f6f4", (32,), _F8F6F4, ("fp32", "fp16"), 32, 25,
               "rtz", MMASIM),
        # B200 mma.sync FP8: fitted to the captured outputs (the published model, truncation
        # with F=25, matches 63%); fp16 output: two chained k16 steps (tools/fit_fp8_fp16.py)
        Engine("Blackwell", "mma", "", (32,), _F8, ("fp32", "fp16"), 32, 31, "rne", DATA_ONLY,
               F_fp16=25, evidence_fp16=DATA_ONLY, mmasim=False, fp16_halves=True),
        Engine("Hopper", "wgmma", "", (16,), ("fp16",), ("fp32", "fp16"), 16, 25, "rtz", DATA),
        Engine("Hopper", "wgmma", "", (16,), ("bf16",), ("fp32",), 16, 25, "rtz", DATA),
        Engine("Hopper", "wgmma", "", (8,), ("tf32",), ("fp32",), 8, 25, "rtz", DATA),
        # H100 FP8: fp32 output as published; fp16 output runs as two chained k16 steps into
        # fp16 (fitted to the captured outputs, tools/fit_fp8_fp16.py; MMA-Sim differs)
        Engine("Hopper", "wgmma", "", (32,), _F8, ("fp32", "fp16"), 32, 13, "rtz", DATA,
               F_fp16=25, evidence_fp16=DATA_NOT_SIM, fp16_halves=True),
        Engine("Blackwell", "tcgen05.mma", "tf32", (8,), ("tf32",), ("fp32",), 8, 25, "rtz", MMASIM),
        Engine("Blackwell", "tcgen05.mma", "f16", (16,), ("fp16",), ("fp32", "fp16"), 16, 25,
               "rtz", MMASIM),
        Engine("Blackwell", "tcgen05.mma", "f16", (16,), ("bf16",), ("fp32",), 16, 25, "rtz",
               MMASIM),
        Engine("Blackwell", "tcgen05.mma", "f8f6f4", (32,), _F8F6F4, ("fp32", "fp16"), 32, 25,
               "rtz", MMASIM + "; differs from B200 mma.sync FP8 hardware outputs"),
    ]
    # fp64 (DMMA): a chain of fp64 FMAs, c first, k = 0..K-1 (MMA-Sim's MMA_FMA); MMA-Sim's
    # PTX tables give m8n8k4 from sm_80 on and m16n8k4/k8/k16 to Hopper only
    for arch in ("Ampere", "Ada", "Hopper", "Blackwell", "RTX Blackwell"):
        rows.append(Engine(arch, "mma", "", (4, 8, 16) if arch == "Hopper" else (4,), _FP64,
                           _FP64, 1, 0, "rne", MMASIM, variant="fma"))
    # Block-scaled kinds (MMA-Sim's ST-FDPA and GST-FDPA models): MXF8F6F4 scales every
    # product and fuses 32 of them with F=25; MXF4/NVFP4 sums groups of 16 products exactly,
    # scales the group sums and fuses them with F=35, zero terms at exponent -139
    for arch, op in (("Blackwell", "tcgen05.mma"), ("RTX Blackwell", "mma")):
        rows += [
            Engine(arch, op, "mxf8f6f4", (32,), _F8F6F4, ("fp32",), 32, 25, "rtz", MMASIM,
                   scaling=((32, "ue8m0"),), group=1, e_zero=-133),
            Engine(arch, op, "mxf4", (64,), ("e2m1",), ("fp32",), 64, 35, "rtz", MMASIM,
                   scaling=((32, "ue8m0"),), group=16, e_zero=-139),
            Engine(arch, op, "mxf4nvf4", (64,), ("e2m1",), ("fp32",), 64, 35, "rtz", MMASIM,
                   scaling=((32, "ue8m0"), (16, "ue8m0"), (16, "ue4m3")), group=16,
                   e_zero=-139),
        ]
    return tuple(rows) + _mfma_rows()


def _mfma_rows():
    """AMD CDNA matrix cores, per MMA-Sim's models (mmasim.amd): CDNA1 fuses 4 fp16 or 2 bf16
    products exactly (E-FDPA), CDNA2 adds fp32 products pairwise with subnormals flushed,
    CDNA3 fuses 8 products (4 xf32, 16 FP8 split into odd and even halves) with F=24 and
    adds c with F2=31 (TR-FDPA, GTR-FDPA); fp32 and fp64 inputs run one FMA per product
    (CDNA2 and CDNA3 have fp64 MFMA, K=4)."""
    fnuz = ("e4m3fnuz", "e5m2fnuz")
    V = "v_mfma"
    fp32 = ("fp32",)
    rows = []
    for arch in ("CDNA1", "CDNA2"):
        rows.append(Engine(arch, V, "", (1, 2, 4), fp32, fp32, 1, 0, "rne", MMASIM, variant="fma"))
    rows += [
        Engine("CDNA1", V, "", (4, 8, 16), ("fp16",), fp32, 4, 0, "rne", MMASIM, variant="exact"),
        Engine("CDNA1", V, "", (2, 4, 8), ("bf16",), fp32, 2, 0, "rne", MMASIM, variant="exact"),
        Engine("CDNA2", V, "", (4, 8, 16), ("fp16",), fp32, 4, 0, "rne", MMASIM, variant="ftz"),
        Engine("CDNA2", V, "", (2, 4, 8), ("bf16",), fp32, 2, 0, "rne", MMASIM, variant="ftz"),
        Engine("CDNA2", V, "1k", (4, 8, 16), ("bf16",), fp32, 4, 0, "rne", MMASIM, variant="ftz"),
        Engine("CDNA2", V, "", (4,), _FP64, _FP64, 1, 0, "rne", MMASIM, variant="fma"),
        Engine("CDNA3", V, "", (4,), _FP64, _FP64, 1, 0, "rne", MMASIM, variant="fma"),
        Engine("CDNA3", V, "", (1, 2, 4), fp32, fp32, 1, 0, "rne", MMASIM, variant="fma"),
        Engine("CDNA3", V, "", (4, 8), ("tf32",), fp32, 4, 24, "rne", MMASIM, variant="tr", F2=31),
        Engine("CDNA3", V, "", (4, 8, 16), ("fp16",), fp32, 8, 24, "rne", MMASIM, variant="tr",
               F2=31),
        Engine("CDNA3", V, "", (4, 8, 16), ("bf16",), fp32, 8, 24, "rne", MMASIM, variant="tr",
               F2=31),
        Engine("CDNA3", V, "", (16, 32), fnuz, fp32, 16, 24, "rne", MMASIM, variant="gtr", F2=31),
    ]
    return tuple(rows)


_MFMA = re.compile(r"(?:v_mfma_)?(f32|f64)_(\d+)x(\d+)x(\d+)(?:_\d+b)?_?(xf32|f32|f64|f16|bf16|fp8|bf8)"
                   r"(?:_(fp8|bf8))?(_1k)?$")


def _parse_mfma(text):
    """AMD's v_mfma_<D>_<M>x<N>x<K>[_<blocks>b]_<A>[_<B>] (CDNA1/2 omit the underscore
    before the type; CDNA2's bf16_1k is kind '1k')."""
    mt = _MFMA.match(text.strip().lower())
    if not mt:
        raise ValueError(f"instruction {text!r}: expected an AMD name such as "
                         "'v_mfma_f32_32x32x8_bf16', 'v_mfma_f32_16x16x32_fp8_bf8' or "
                         "'v_mfma_f32_32x32x8bf16_1k'")
    d, m, n, k, a, b, k1 = mt.groups()
    if (d == "f64") != (a == "f64"):
        raise ValueError(f"instruction {text!r}: fp64 MFMA takes fp64 operands into an fp64 "
                         "result (v_mfma_f64_16x16x4_f64); other inputs give f32 results")
    return Instruction("v_mfma", "1k" if k1 else "", int(m), int(n), int(k), d, a, b or a)


#: Every modelled (architecture, instruction family) with its parameters and evidence.
ENGINES = _mma_rows()


@dataclass(frozen=True)
class Instruction:
    """A parsed instruction: opcode, kind, M/N/K and the PTX types of D, A, B (and C)."""

    opcode: str
    kind: str
    m: int
    n: int
    k: int
    d: str
    a: str
    b: str
    block: str = ""
    scale: str = ""
    c: str = ""  # C's type where it differs from D's (mma.m8n8k4.f32.f16.f16.f16)


_SHAPE = re.compile(r"m(\d+)n(\d+)k(\d+)$")
_QUALIFIERS = {"sync", "aligned", "row", "col", "mma_async", "satfinite", "cta_group::1",
               "cta_group::2", "ws"}


def parse_instruction(text: str) -> Instruction:
    """Read an instruction spelled as PTX (or MMA-Sim's short form after the opcode).

    >>> from fpsim.engines import parse_instruction
    >>> parse_instruction("wgmma.mma_async.sync.aligned.m64n256k32.f32.e4m3.e5m2")
    Instruction(opcode='wgmma', kind='', m=64, n=256, k=32, d='f32', a='e4m3', b='e5m2', block='', scale='', c='')
    """
    if not isinstance(text, str):
        raise TypeError(f"instruction must be a string such as 'mma.m16n8k16.f32.bf16.bf16.f32', "
                        f"got {type(text).__name__}")
    if text.strip().lower().startswith("v_mfma") or _MFMA.match(text.strip().lower()):
        return _parse_mfma(text)
    toks = [t for t in text.strip().lower().split(".") if t]
    opcode = ""
    if toks[:2] == ["tcgen05", "mma"]:
        opcode, toks = "tcgen05.mma", toks[2:]
    elif toks and toks[0] in ("mma", "wgmma"):
        opcode, toks = toks[0], toks[1:]
    toks = [t for t in toks if t not in _QUALIFIERS and t != "block_scale"]
    kinds = [t for t in toks if t.startswith("kind::")]
    if len(kinds) == 1:  # the kind may precede the shape (tcgen05.mma.cta_group::1.kind::...)
        toks.remove(kinds[0])
    vec = [t for t in toks if t.startswith("scale_vec::")]
    toks = [t for t in toks if not t.startswith("scale_vec::")]
    shape = [i for i, t in enumerate(toks) if _SHAPE.match(t)]
    if len(shape) != 1:
        raise ValueError(f"instruction {text!r}: no shape such as 'm16n8k16' (expected e.g. "
                         "'mma.m16n8k16.f32.bf16.bf16.f32' or 'wgmma.m64n256k32.f32.e4m3.e5m2')")
    m, n, k = map(int, _SHAPE.match(toks[shape[0]]).groups())
    rest = toks[shape[0] + 1:]
    kind = block = scale = ""
    if kinds:
        kind = kinds[0][6:]
    if vec:  # PTX's .scale_vec::NX: N scales per row of K elements
        nx = re.fullmatch(r"scale_vec::(\d+)x", vec[0])
        if not nx or k % int(nx.group(1)):
            raise ValueError(f"instruction {text!r}: {vec[0]} does not divide K={k} "
                             "(allowed scale_vec::1X, ::2X, ::4X)")
        block = f"block{k // int(nx.group(1))}"
    if rest and rest[0].startswith("block"):
        block, rest = rest[0], rest[1:]
    if rest and rest[-1] in ("ue8m0", "ue4m3"):
        scale, rest = rest[-1], rest[:-1]
    ptx_types = [t for t in OPERAND_FORMATS if t not in _AMD_ONLY]
    if len(rest) not in (3, 4) or any(t not in ptx_types for t in rest):
        raise ValueError(f"instruction {text!r}: expected the types of D, A, B (and C) after "
                         f"the shape, from {', '.join(ptx_types)}; got "
                         f"{'.'.join(rest) or 'nothing'}")
    c = ""
    if len(rest) == 4 and rest[3] != rest[0]:
        if (m, n, k, rest[0], rest[1], rest[3]) != (8, 8, 4, "f32", "f16", "f16"):
            raise ValueError(f"instruction {text!r}: C ({rest[3]}) must have D's type "
                             f"({rest[0]}); the one exception is mma.m8n8k4.f32.f16.f16.f16")
        c = rest[3]  # Volta's f16 C into an f32 D: FusedBlock(c_fmt="fp16")
    if not opcode:  # MMA-Sim's short forms: tcgen05 has a kind, others are mma
        opcode = "tcgen05.mma" if kind and m in (64, 128) else "mma"
    return Instruction(opcode, kind, m, n, k, rest[0], rest[1], rest[2], block, scale, c)


def arch_name(arch) -> str:
    """The canonical architecture name.

    >>> from fpsim.engines import arch_name
    >>> arch_name("ada lovelace"), arch_name("SM_90")
    ('Ada', 'Hopper')
    """
    s = str(arch).strip()
    for a in ARCHS:
        if s.lower() == a.lower():
            return a
    if s.lower() in _ALIASES:
        return _ALIASES[s.lower()]
    close = difflib.get_close_matches(s.lower(), [a.lower() for a in ARCHS] + list(_ALIASES),
                                      n=1, cutoff=0.5)
    hint = f"did you mean {arch_name(close[0])!r}? " if close else ""
    raise ValueError(f"unknown architecture {arch!r}; {hint}allowed: {', '.join(ARCHS)} "
                     "(also 'Ada Lovelace' and sm_XX names)")


def _listing(arch):
    rows = [e for e in ENGINES if e.arch == arch]
    return "; ".join(e.describe().split(": ")[0].split(" ", 1)[1] for e in rows)


def lookup(arch, instruction) -> Engine:
    """The table row for ``instruction`` on ``arch``, or a ``ValueError`` listing what
    ``arch`` has.

    >>> from fpsim.engines import lookup
    >>> lookup("Hopper", "wgmma.m64n8k32.f32.e5m2.e5m2").F
    13
    """
    a = arch_name(arch)
    ins = parse_instruction(instruction) if isinstance(instruction, str) else instruction
    scaled = ins.kind.startswith("mx")
    if (ins.block or ins.scale) and not scaled:
        raise ValueError(f"{instruction!r}: block scales belong to the kinds mxf8f6f4, mxf4 and "
                         f"mxf4nvf4, not kind::{ins.kind or '(none)'}")
    fa, fb, fd = OPERAND_FORMATS[ins.a], OPERAND_FORMATS[ins.b], OPERAND_FORMATS[ins.d]
    for e in ENGINES:
        # A and B may differ within one family of 8/6/4-bit inputs (e4m3 x e5m2, e2m1 x e4m3)
        if (e.arch == a and e.opcode == ins.opcode and e.kind == ins.kind and ins.k in e.ks
                and fa in e.inputs and fb in e.inputs and fd in e.outputs
                and (fa == fb or len(e.inputs) > 1)):
            if scaled and block_scale(e, ins) is None:
                allowed = ", ".join(f"block{b}.{sc}" for b, sc in e.scaling)
                raise ValueError(f"{instruction!r}: kind::{e.kind} takes {allowed}, not "
                                 f"{ins.block or '(no block)'}.{ins.scale or '(no scale type)'}")
            return e
    raise ValueError(f"{a} has no modelled instruction {instruction!r}; {a} has: {_listing(a)}")


def block_scale(e: Engine, ins: Instruction):
    """(block, scale format) of a block-scaled instruction, or None if ``e`` lacks it; the
    block and scale type may be left out where the kind has only one choice.

    >>> from fpsim.engines import ENGINES, block_scale, parse_instruction
    >>> e = [r for r in ENGINES if r.kind == "mxf4nvf4"][0]
    >>> block_scale(e, parse_instruction("tcgen05.mma.m128n8k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue4m3"))
    (16, 'ue4m3')
    """
    ok = [(b, sc) for b, sc in e.scaling
          if (not ins.block or ins.block == f"block{b}") and (not ins.scale or ins.scale == sc)]
    return ok[0] if len(ok) == 1 else None


def table() -> list:
    """The instruction table as rows (dicts) for docs and reports: one row per
    (architecture, instruction family, output format).

    >>> from fpsim.engines import table
    >>> row = table()[0]
    >>> row["arch"], row["instruction"], row["arithmetic"], row["L"], row["F"]
    ('Volta', 'mma K=4', 'fused dot-add', 4, 23)
    """
    rows = []
    for e in ENGINES:
        for fo in e.outputs:
            f16 = fo == "fp16"
            F = e.F_fp16 if f16 and e.F_fp16 is not None else e.F
            op = e.opcode + (f".kind::{e.kind}" if e.kind else "")
            if e.scaling:
                op += " " + "/".join(f"block{b}.{sc}" for b, sc in e.scaling)
            fused = not e.variant  # L and F describe fused groups only
            rows.append({"arch": e.arch, "instruction": f"{op} K={'/'.join(map(str, e.ks))}",
                         "inputs": ", ".join(e.inputs), "output": fo,
                         "arithmetic": _ARITHMETIC.get(e.variant) or (
                             "block-scaled fused dot-add" if e.scaling else "fused dot-add"),
                         "L": e.L if e.variant != "fma" else "–",
                         "F": F if fused or e.variant in ("tr", "gtr") else "–",
                         "rounding": "RNE" if f16 else e.fp32_rounding.upper()
                         + (f" (e8m{F})" if fused and F < 23 else ""),
                         "evidence": (e.evidence_fp16 or e.evidence) if f16 else e.evidence})
    return rows


# what a row of the table computes, by Engine.variant (no variant: a fused dot-add)
_ARITHMETIC = {"fma": "FMA chain", "exact": "exact sum of L products and c",
               "ftz": "pairwise, FTZ", "tr": "fused L, then c (F2)",
               "gtr": "fused odd/even halves, then c (F2)"}
