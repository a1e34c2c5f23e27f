"""fpsim's tensor-core presets against MMA-Sim (Xie et al. 2025, ``mmasim``), an independent
bit-accurate model of each PTX instruction, on random inputs of every kind that matters:
normal, a wide exponent range (products beyond fp32, overflow between chained blocks),
cancellation, zeros, subnormals, and inf/NaN. Both fpsim kernels (the fast one for finite
inputs and the general one) are checked, for ``dot`` and the GEMM kernel.

MMA-Sim is slow (pure torch loops): the sizes here are small; ``FPSIM_MMASIM_N`` (default
128) sets the number of dot products per input kind.
"""

import os

import numpy as np
import pytest

import fpsim
from fpsim import accum as A

torch = pytest.importorskip("torch")
sim = pytest.importorskip("mmasim.nv_ptx.sim")
from mmasim.amd import isa_mfma  # noqa: E402  (MMA-Sim's instruction tables)
from mmasim.nv_ptx import isa_mma, isa_tcgen05mma, isa_wgmma  # noqa: E402

N = int(os.environ.get("FPSIM_MMASIM_N", "128"))
KINDS = ["normal", "wide", "cancel", "zeros", "subnormal", "tiny", "special"]
TORCH = {"fp16": torch.float16, "bf16": torch.bfloat16, "tf32": torch.float32,
         "e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2, "fp64": torch.float64}
OUT_TORCH = {"fp16": torch.float16, "fp32": torch.float32, "fp64": torch.float64}
# c of the 'tiny' rows: near the bottom of the output format's range
TINY_C = {"fp16": 2.0**-20, "fp32": 2.0**-130, "fp64": 2.0**-1060}

# (MMA-Sim arch, class, instruction, fpsim preset (GPU, input, output), K of the instruction)
CASES = [
    ("Volta", "MMA", "m8n8k4.f32.f16.f16.f32", ("V100", "fp16", "fp32"), 4),
    ("Volta", "MMA", "m8n8k4.f16.f16.f16.f16", ("V100", "fp16", "fp16"), 4),
    ("Ampere", "MMA", "m16n8k16.f32.f16.f16.f32", ("A100", "fp16", "fp32"), 16),
    ("Ampere", "MMA", "m16n8k16.f16.f16.f16.f16", ("A100", "fp16", "fp16"), 16),
    ("Ampere", "MMA", "m16n8k16.f32.bf16.bf16.f32", ("A100", "bf16", "fp32"), 16),
    ("Ampere", "MMA", "m16n8k8.f32.tf32.tf32.f32", ("A100", "tf32", "fp32"), 8),
    ("Ada Lovelace", "MMA", "m16n8k32.f32.e4m3.e4m3.f32", ("Ada", "e4m3", "fp32"), 32),
    ("Ada Lovelace", "MMA", "m16n8k32.f16.e5m2.e5m2.f16", ("Ada", "e5m2", "fp16"), 32),
    ("Hopper", "WGMMA", "m64n8k16.f32.bf16.bf16", ("H100", "bf16", "fp32"), 16),
    ("Hopper", "WGMMA", "m64n8k16.f16.f16.f16", ("H100", "fp16", "fp16"), 16),
    ("Hopper", "WGMMA", "m64n8k8.f32.tf32.tf32", ("H100", "tf32", "fp32"), 8),
    ("Hopper", "WGMMA", "m64n8k32.f32.e4m3.e4m3", ("H100", "e4m3", "fp32"), 32),
    ("Blackwell", "TCGen05MMA", "m128n8k16.kind::f16.f32.bf16.bf16", ("B200", "bf16", "fp32"), 16),
    ("Blackwell", "TCGen05MMA", "m128n8k8.kind::tf32.f32.tf32.tf32", ("B200", "tf32", "fp32"), 8),
    # unscaled FP6/FP4 operands (kind::f8f6f4) at the GPU level
    ("Blackwell", "TCGen05MMA", "m128n8k32.kind::f8f6f4.f32.e2m1.e2m1", ("B200", "e2m1", "fp32"), 32),
    ("Blackwell", "TCGen05MMA", "m128n8k32.kind::f8f6f4.f16.e3m2.e3m2", ("B300", "e3m2", "fp16"), 32),
    ("RTX Blackwell", "MMA", "m16n8k32.kind::f8f6f4.f32.e2m3.e2m3.f32", ("RTX 5090", "e2m3", "fp32"),
     32),
]


def _inputs(rng, fmt, kind, n, K):
    with np.errstate(over="ignore"):  # fp64 'wide' values may overflow (then clipped)
        return _inputs_of(rng, fmt, kind, n, K)


def _inputs_of(rng, fmt, kind, n, K):
    f = fpsim.parse(fmt)
    if kind == "normal":
        x = rng.standard_normal((n, K)) * 2.0 ** rng.integers(-4, 5, (n, 1))
    elif kind in ("wide", "special"):
        lo, hi = (f.emin - 3, f.emax) if fmt != "fp64" else (-540, 520)  # fp64: mostly finite
        x = rng.standard_normal((n, K)) * 2.0 ** rng.integers(lo, hi, (n, K))
    elif kind == "cancel":
        x = rng.standard_normal((n, K))
        x[:, 1::2] = -x[:, ::2] * (1 + 2.0 ** -rng.integers(3, 12, (n, K // 2)))
    elif kind == "zeros":
        x = rng.standard_normal((n, K)) * (rng.random((n, K)) < 0.3)
    elif kind == "subnormal":
        x = rng.standard_normal((n, K)) * 2.0 ** (f.emin - rng.integers(0, f.man_bits + 1, (n, K)))
    else:  # tiny: products near the bottom of the output range, with zero products among them
        e = -540 if fmt == "fp64" else max(f.emin - f.man_bits, -68)
        x = rng.standard_normal((n, K)) * 2.0 ** rng.integers(e, e + 8, (n, K))
        x *= rng.random((n, K)) < 0.7
    x = fpsim.quantize(np.clip(x, -f.max, f.max), fmt)
    if kind == "special":  # a few inf and NaN operands (formats that have them)
        pick = rng.random((n, K))
        if f.has_inf:
            x[pick < 0.02] = np.inf
            x[(pick >= 0.02) & (pick < 0.04)] = -np.inf
        if f.has_nan:
            x[pick > 0.985] = np.nan
    return x


def _operands(rng, fmt, out, K, fmt_b=None):
    """Rows of every input kind, stacked: (a, b, c, kind of each row)."""
    fb = fmt if fmt_b is None else fmt_b
    rows = []
    for kind in KINDS:
        a, b = _inputs(rng, fmt, kind, N, K), _inputs(rng, fb, kind, N, K)
        if kind == "cancel":
            b = _inputs(rng, fb, "normal", N, K)
            if fb == fmt:
                b[:, 1::2] = b[:, ::2]
        rows.append((a, b))
    a = np.concatenate([r[0] for r in rows])
    b = np.concatenate([r[1] for r in rows])
    kinds = np.repeat(KINDS, N)
    c = rng.standard_normal(len(a)) * 2.0 ** rng.integers(-6, 6, len(a))
    c[::5] = 0.0
    c[kinds == "tiny"] *= TINY_C[out]
    return a, b, fpsim.quantize(c, out), kinds


def _operand(x, fmt):
    if fmt in TORCH:  # (the values are exact in the format: any conversion path is exact)
        return torch.tensor(x, dtype=torch.float64).to(TORCH[fmt])
    # MMA-Sim takes FP6 codes in bits 5:0 of a byte and FP4 codes in bits 5:2
    return torch.tensor(fpsim.encode(x, fmt).astype(np.uint8) << (2 if fmt == "e2m1" else 0))


def _mmasim(op, fmt, out, a, b, c, fmt_b=None, c_fmt=None):
    ta, tb = _operand(a, fmt), _operand(b, fmt if fmt_b is None else fmt_b)
    tc = torch.tensor(c, dtype=torch.float64).to(OUT_TORCH[c_fmt or out])
    return op.dpa(ta, tb, tc).double().numpy()


def _same(got, want):
    return (got.view(np.uint64) == want.view(np.uint64)) | (np.isnan(got) & np.isnan(want))


@pytest.mark.parametrize("arch,cls,instr,preset,K", CASES, ids=[f"{c[0]}:{c[2]}" for c in CASES])
def test_presets_equal_mmasim(arch, cls, instr, preset, K, monkeypatch):
    gpu, fmt, out = preset
    rng = np.random.default_rng(sum(map(ord, instr)))
    op = getattr(sim, cls)(arch, instr)
    m = fpsim.hardware.tensor_core(gpu, fmt, out)
    # two chained instructions: the second starts from the first one's result, as fpsim's
    # dot over the 2K products chains its blocks
    a1, b1, c, kinds = _operands(rng, fmt, out, K)
    a2, b2, _, _ = _operands(rng, fmt, out, K)
    want1 = _mmasim(op, fmt, out, a1, b1, c)
    want2 = _mmasim(op, fmt, out, a2, b2, want1)
    a, b = np.concatenate([a1, a2], 1), np.concatenate([b1, b2], 1)
    finite = kinds != "special"
    for fast in (True, False):
        monkeypatch.setattr(A.fused, "_FUSED_FAST", fast)
        for aa, bb, want in [(a1, b1, want1), (a, b, want2)]:
            bad = ~_same(fpsim.dot(aa, bb, c, model=m), want)
            assert not bad.any(), (fast, sorted(set(kinds[bad])), aa[bad][:1], bb[bad][:1],
                                   c[bad][:1], want[bad][:1])
        # the GEMM kernel on finite rows: C = diag(c), the diagonal holds the dot products
        idx = np.nonzero(finite)[0][::N // 8]
        D = fpsim.matmul(a[idx], b[idx].T, np.diag(c[idx]), model=m)
        assert _same(np.diag(D).copy(), want2[idx]).all(), fast


def test_overflow_in_an_early_block_stays_inf():
    """A regression found by MMA-Sim: when a block overflowed to inf, the fast kernels read
    the inf accumulator as an integer in the next block (undefined; it gave -inf for a
    positive overflow)."""
    m = fpsim.hardware.tensor_core("A100", "bf16")
    a = np.zeros(16)
    b = np.zeros(16)
    a[0], b[0] = 2.0**100, 2.0**100  # 2**200 overflows fp32 in block 1 (products 0..7)
    a[8], b[8] = 1.0, -3.0           # block 2: finite products keep +inf
    for fast in (True, False):
        A.fused._FUSED_FAST = fast
        try:
            assert fpsim.dot(a, b, 1.0, model=m) == np.inf
            assert fpsim.dot(-a, b, 1.0, model=m) == -np.inf
            D = fpsim.matmul(np.stack([a, -a]), np.stack([b, b]).T, model=m)
            assert D[0, 0] == np.inf and D[1, 1] == -np.inf
        finally:
            A.fused._FUSED_FAST = True


# ---------------------------------------------------------------------------------------
# Every row of the instruction table (fpsim.engines) that MMA-Sim also models
# ---------------------------------------------------------------------------------------

from fpsim import engines as E  # noqa: E402
from engine_names import mfma_suffix  # noqa: E402

_SIM_ARCH = {"Ada": "Ada Lovelace"}
_PTX = {"fp16": "f16", "fp32": "f32", "fp64": "f64"}


def _shapes(e):
    """(M x N prefix, K) of the instructions compared for row ``e``: the largest K (fp64
    mma: every shape MMA-Sim lists, m8n8k4 and, on Hopper, m16n8k4/k8/k16)."""
    if e.inputs == ("fp64",):
        return [("m8n8", 4)] + [("m16n8", k) for k in e.ks if len(e.ks) > 1]
    k = e.ks[-1]
    return [("m8n8" if k == 4 and e.inputs == ("fp16",) else "m16n8", k)]


def _instructions():
    """(arch, MMA-Sim class, MMA-Sim short form, fpsim's full PTX spelling, in, out, K)."""
    out = []
    for e in E.ENGINES:
        dmma = e.opcode == "mma" and e.variant == "fma"  # fp64 mma: an FMA chain
        if not e.mmasim or e.scaling or (e.variant and not dmma):  # block-scaled, AMD: below
            continue
        pairs = [(fa, fb) for fa in e.inputs for fb in e.inputs]  # mixed where allowed
        for (fin, fin_b), fo, (mn, k) in ((p, fo, s) for p in pairs for fo in e.outputs
                                          for s in _shapes(e)):
            if fo == "fp16" and e.fp16_halves:  # the hardware disagrees: tested below
                continue
            t, d = _PTX.get(fin, fin), _PTX[fo]
            tb = _PTX.get(fin_b, fin_b)
            kind = f".kind::{e.kind}" if e.kind else ""
            if e.opcode == "mma":
                short = f"{mn}k{k}{kind}.{d}.{t}.{tb}.{d}"
                full = f"mma.sync.aligned.{mn}k{k}.row.col{kind}.{d}.{t}.{tb}.{d}"
                cls = "MMA"
            elif e.opcode == "wgmma":
                short = f"m64n8k{k}.{d}.{t}.{tb}"
                full = f"wgmma.mma_async.sync.aligned.m64n256k{k}.{d}.{t}.{tb}"
                cls = "WGMMA"
            else:
                short = f"m128n8k{k}{kind}.{d}.{t}.{tb}"
                full = f"tcgen05.mma.cta_group::1.m128n256k{k}{kind}.{d}.{t}.{tb}"
                cls = "TCGen05MMA"
            out.append((e.arch, cls, short, full, (fin, fin_b), fo, k))
    return out


INSTRUCTIONS = _instructions()


@pytest.mark.parametrize("arch,cls,short,full,fin,fout,K", INSTRUCTIONS,
                         ids=[f"{i[0]}:{i[3]}" for i in INSTRUCTIONS])
def test_every_instruction_equals_mmasim(arch, cls, short, full, fin, fout, K):
    rng = np.random.default_rng(sum(map(ord, full)))
    op = getattr(sim, cls)(_SIM_ARCH.get(arch, arch), short)
    m = fpsim.hardware.mma(arch, full)
    a, b, c, kinds = _operands(rng, fin[0], fout, K, fin[1])
    want = _mmasim(op, fin[0], fout, a, b, c, fin[1])
    bad = ~_same(fpsim.dot(a, b, c, model=m), want)
    assert not bad.any(), (sorted(set(kinds[bad])), a[bad][:1], b[bad][:1], c[bad][:1])
    if fout == "fp64":  # FMA chains: two chained instructions, and the GEMM path, specials too
        a2, b2, _, _ = _operands(rng, fin[0], fout, K, fin[1])
        want2 = _mmasim(op, fin[0], fout, a2, b2, want, fin[1])
        a, b = np.concatenate([a, a2], 1), np.concatenate([b, b2], 1)
        bad = ~_same(fpsim.dot(a, b, c, model=m), want2)
        assert not bad.any(), sorted(set(kinds[bad]))
        idx = np.arange(0, len(c), len(c) // 24)
        D = fpsim.matmul(a[idx], b[idx].T, np.diag(c[idx]), model=m)
        assert _same(np.diag(D).copy(), want2[idx]).all()


@pytest.mark.parametrize("arch", ["Volta", "Turing"])
def test_f16_c_into_f32_d_equals_mmasim(arch):
    """mma.m8n8k4.f32.f16.f16.f16 (an f16 C into an f32 D): MMA-Sim aligns C at fp16's
    smallest normal exponent, so an fp16-subnormal C gives other bits than the f32-C model
    (shown here, else the test is moot); fpsim's model (FusedBlock c_fmt="fp16") gives
    MMA-Sim's bits on every input kind, for one and two chained instructions (the second
    one's C is the first one's fp32 D), by dot and by the GEMM path."""
    rng = np.random.default_rng(11)
    op = sim.MMA(arch, "m8n8k4.f32.f16.f16.f16")
    op32 = sim.MMA(arch, "m8n8k4.f32.f16.f16.f32")
    a, b, c, kinds = _operands(rng, "fp16", "fp32", 4)
    a2, b2, _, _ = _operands(rng, "fp16", "fp32", 4)
    c = fpsim.quantize(np.where(kinds == "tiny", c * 2.0**110, c), "fp16")  # fp16 subnormals
    assert ((c != 0) & (np.abs(c) < 2.0**-14)).sum() > 20
    want = _mmasim(op, "fp16", "fp32", a, b, c, c_fmt="fp16")
    want2 = _mmasim(op32, "fp16", "fp32", a2, b2, want)  # chained: C is now fp32
    f32_c = fpsim.hardware.mma(arch, "mma.m8n8k4.f32.f16.f16.f32")
    same = _same(fpsim.dot(a, b, c, model=f32_c), want)
    assert same[kinds != "tiny"].all() and not same[kinds == "tiny"].all()
    m = fpsim.hardware.mma(arch, "mma.sync.aligned.m8n8k4.row.col.f32.f16.f16.f16")
    assert m.c_fmt.name == "fp16"
    got = fpsim.dot(a, b, c, model=m)
    assert _same(got, want).all(), sorted(set(kinds[~_same(got, want)]))
    aa, bb = np.concatenate([a, a2], 1), np.concatenate([b, b2], 1)
    got2 = fpsim.dot(aa, bb, c, model=m)
    assert _same(got2, want2).all(), sorted(set(kinds[~_same(got2, want2)]))
    fin = np.nonzero(kinds != "special")[0][::7]
    D = fpsim.matmul(aa[fin], bb[fin].T, np.diag(c[fin]), model=m)
    assert _same(np.diag(D).copy(), want2[fin]).all()
    with pytest.raises(ValueError, match="not a value of .* C format fp16"):
        fpsim.dot(a[:1], b[:1], np.array([0.1]), model=m)


def test_fp8_fp16_path_departs_from_mmasim_where_the_hardware_does():
    """Hopper wgmma FP8 -> fp16: MMA-Sim models one fused group of 32 with c inside; the
    captured H100 outputs follow two chained k16 steps with c added last (every line,
    tests/test_fp8_fp16_outputs.py). Where they differ, fpsim follows the hardware: the
    models must disagree on random inputs (else this test and the claim are moot)."""
    rng = np.random.default_rng(7)
    op = sim.WGMMA("Hopper", "m64n8k32.f16.e4m3.e4m3")
    m = fpsim.hardware.mma("Hopper", "wgmma.mma_async.sync.aligned.m64n256k32.f16.e4m3.e4m3")
    a, b, c, kinds = _operands(rng, "e4m3", "fp16", 32)
    want = _mmasim(op, "e4m3", "fp16", a, b, c)
    same = _same(fpsim.dot(a, b, c, model=m), want)
    assert 0.3 < same[kinds == "normal"].mean() < 0.99


def test_the_table_covers_what_mmasim_models():
    """Every MMA-Sim instruction kind fpsim claims is in the comparison above."""
    archs = {i[0] for i in INSTRUCTIONS}
    assert archs == {"Volta", "Turing", "Ampere", "Ada", "Hopper", "Blackwell", "RTX Blackwell"}
    inputs = {i[4][0] for i in INSTRUCTIONS}
    assert inputs == {"fp16", "bf16", "tf32", "e4m3", "e5m2", "e2m1", "e3m2", "e2m3", "fp64"}
    fp64 = {(i[0], i[2]) for i in INSTRUCTIONS if i[5] == "fp64"}
    assert ("Hopper", "m16n8k16.f64.f64.f64.f64") in fp64 and len(fp64) == 8


def test_fpsim_has_every_instruction_mmasim_lists():
    """MMA-Sim's own PTX and AMD ISA tables: fpsim.hardware.mma takes every instruction
    they list, on the same architecture (the comparisons above and below run each kind),
    except the f16-C-into-f32-D form it refuses."""
    tables = [("mma.", isa_mma.mma_shape_and_type), ("mma.", isa_mma.mma_block_scale_shape_and_type),
              ("wgmma.", isa_wgmma.wgmma_shape_and_type),
              ("tcgen05.mma.", isa_tcgen05mma.tcgen05mma_shape_and_type),
              ("tcgen05.mma.", isa_tcgen05mma.tcgen05mma_block_scale_shape_and_type),
              ("v_mfma_", isa_mfma.arch_mfma_suffix)]
    n = 0
    for prefix, table in tables:
        for arch, names in table.items():
            for name in names:
                m = fpsim.hardware.mma(arch, prefix + name)  # raises if fpsim lacks it
                assert isinstance(m, fpsim.accum.Model)
                n += 1
    assert n > 400
    assert ("e4m3", "e5m2") in {i[4] for i in INSTRUCTIONS}  # mixed operands
    assert ("e2m1", "e4m3") in {i[4] for i in INSTRUCTIONS}


# ---------------------------------------------------------------------------------------
# Block-scaled kinds (MMA-Sim's ST-FDPA and GST-FDPA models)
# ---------------------------------------------------------------------------------------

_SCALED_PAIRS = {("Blackwell", "mxf8f6f4"): [("e4m3", "e4m3"), ("e5m2", "e5m2"), ("e3m2", "e3m2"),
                                             ("e2m3", "e2m3"), ("e2m1", "e2m1"),
                                             ("e4m3", "e5m2"), ("e2m1", "e4m3")],
                 ("RTX Blackwell", "mxf8f6f4"): [("e4m3", "e4m3"), ("e2m1", "e5m2")]}


def _scaled_instructions():
    """(arch, MMA-Sim class, MMA-Sim short form, fpsim's PTX spelling, inputs, block, scale, K)."""
    out = []
    for e in E.ENGINES:
        if not e.scaling:
            continue
        k = e.ks[0]
        for fa, fb in _SCALED_PAIRS.get((e.arch, e.kind), [(e.inputs[0], e.inputs[0])]):
            for blk, sc in e.scaling:
                ty = f"kind::{e.kind}.block{blk}.f32.{fa}.{fb}"
                if e.opcode == "tcgen05.mma":
                    short, cls = f"m128n8k{k}.{ty}.{sc}", "TCGen05MMABlockScale"
                    full = f"tcgen05.mma.cta_group::1.m128n256k{k}.{ty}.{sc}"
                else:
                    short, cls = f"m16n8k{k}.{ty}.f32.{sc}", "MMABlockScale"
                    full = (f"mma.sync.aligned.m16n8k{k}.row.col.kind::{e.kind}.block_scale."
                            f"scale_vec::{k // blk}X.f32.{fa}.{fb}.f32.{sc}")
                out.append((e.arch, cls, short, full, (fa, fb), blk, sc, k))
    return out


SCALED = _scaled_instructions()


def _scales(rng, sc, n, nb):
    """Scales of every kind: moderate, extreme (both ends of the range), NaN, zero (ue4m3)."""
    if sc == "ue8m0":
        e = rng.integers(-12, 12, (n, nb))
        pick = rng.random((n, nb))
        e[pick < 0.1] = rng.integers(-127, -110, (pick < 0.1).sum())
        e[pick > 0.9] = rng.integers(110, 128, (pick > 0.9).sum())
        s = 2.0 ** e.astype(float)
        s[pick > 0.99] = np.nan
        return s
    s = fpsim.quantize(2.0 ** rng.uniform(-10, 9, (n, nb)), "ue4m3")
    pick = rng.random((n, nb))
    s[pick < 0.03] = 0.0
    s[pick > 0.98] = 448.0
    s[(pick > 0.97) & (pick <= 0.98)] = np.nan
    return s


def _scaled_operand(x, fmt, packed):
    if not packed:
        return _operand(x, fmt)
    codes = fpsim.encode(x, fmt).astype(np.uint8)  # FP4 pairs, the first in the high nibble
    return torch.tensor((codes[:, ::2] << 4) | codes[:, 1::2])


def _sim_scales(s, sc):
    codes = fpsim.encode(s, "e8m0" if sc == "ue8m0" else "ue4m3").astype(np.uint8)
    return torch.tensor(codes).view(torch.float8_e8m0fnu if sc == "ue8m0" else torch.float8_e4m3fn)


@pytest.mark.parametrize("arch,cls,short,full,fin,blk,sc,K", SCALED, ids=[s[3] for s in SCALED])
def test_block_scaled_equals_mmasim(arch, cls, short, full, fin, blk, sc, K):
    rng = np.random.default_rng(sum(map(ord, full)))
    op = getattr(sim, cls)(arch, short)
    m = fpsim.hardware.mma(arch, full)
    packed = m.group > 1  # MMA-Sim's mxf4 kinds take two FP4 codes per byte
    ops = [_operands(rng, fin[0], "fp32", K, fin[1]) for _ in range(2)]
    c, kinds = ops[0][2], ops[0][3]
    R, nb = len(c), K // blk
    sa = [_scales(rng, sc, R, nb) for _ in range(2)]
    sb = [_scales(rng, sc, R, nb) for _ in range(2)]
    want, cc = [], c
    for (a, b, _, _), x, y in zip(ops, sa, sb):  # two chained instructions (c <- d)
        cc = op.dpa(_scaled_operand(a, fin[0], packed), _scaled_operand(b, fin[1], packed),
                    torch.tensor(cc, dtype=torch.float32), _sim_scales(x, sc),
                    _sim_scales(y, sc)).double().numpy()
        want.append(cc)
    a, b = (np.concatenate([o[i] for o in ops], 1) for i in (0, 1))
    SA, SB = np.concatenate(sa, 1), np.concatenate(sb, 1)
    for n, want_n in ((1, want[0]), (2, want[1])):
        got = fpsim.dot(a[:, :n * K], b[:, :n * K], c, model=m, a_scale=SA[:, :n * nb],
                        b_scale=SB[:, :n * nb])
        bad = ~_same(got, want_n)
        assert not bad.any(), (n, sorted(set(kinds[bad])), np.nonzero(bad)[0][:5])
    # the GEMM path: C = diag(c), the diagonal holds the dot products
    idx = np.arange(0, R, R // 16)
    D = fpsim.matmul(a[idx], b[idx].T, np.diag(c[idx]), model=m, a_scale=SA[idx],
                     b_scale=SB[idx].T)
    assert _same(np.diag(D).copy(), want[1][idx]).all()


# ---------------------------------------------------------------------------------------
# AMD CDNA1-3 v_mfma (MMA-Sim's mmasim.amd models)
# ---------------------------------------------------------------------------------------

amd = pytest.importorskip("mmasim.amd.sim")
TORCH.update({"fp32": torch.float32, "e4m3fnuz": torch.float8_e4m3fnuz,
              "e5m2fnuz": torch.float8_e5m2fnuz})
# fp64 MFMA: both shapes of each architecture (MMA-Sim's suffixes)
_F64_MFMA = {"CDNA2": ("f64_16x16x4f64", "f64_4x4x4f64"),
             "CDNA3": ("f64_16x16x4_f64", "f64_4x4x4_4b_f64")}


def _mfma_instructions():
    """(arch, MMA-Sim suffix, inputs, K, output): the largest K of every table row (both K
    of FP8, and every operand pairing of FP8; both fp64 shapes)."""
    out = []
    for e in E.ENGINES:
        if e.opcode != "v_mfma":
            continue
        if e.inputs == ("fp64",):
            out += [(e.arch, sfx, ("fp64", "fp64"), 4, "fp64") for sfx in _F64_MFMA[e.arch]]
            continue
        pairs = [(fa, fb) for fa in e.inputs for fb in e.inputs]
        for fa, fb in pairs:
            for k in (e.ks if len(e.inputs) > 1 else e.ks[-1:]):
                out.append((e.arch, mfma_suffix(e, fa, fb, k), (fa, fb), k, "fp32"))
    return out


MFMAS = _mfma_instructions()


@pytest.mark.parametrize("arch,suffix,fin,K,fout", MFMAS,
                         ids=[f"{m[0]}:v_mfma_{m[1]}" for m in MFMAS])
def test_every_mfma_equals_mmasim(arch, suffix, fin, K, fout):
    rng = np.random.default_rng(sum(map(ord, arch + suffix)))
    op = amd.MFMA(arch, suffix)
    m = fpsim.hardware.mma(arch, "v_mfma_" + suffix)
    ops = [_operands(rng, fin[0], fout, K, fin[1]) for _ in range(2)]
    c, kinds = ops[0][2], ops[0][3]
    want, cc = [], c
    for a, b, _, _ in ops:  # two chained instructions (c <- d)
        cc = _mmasim(op, fin[0], fout, a, b, cc, fin[1])
        want.append(cc)
    a, b = (np.concatenate([o[i] for o in ops], 1) for i in (0, 1))
    for n in (1, 2):
        got = fpsim.dot(a[:, :n * K], b[:, :n * K], c, model=m)
        dropped = np.zeros(len(c), bool)
        if getattr(m, "variant", "") == "gtr":
            # MMA-Sim's GTR-FDPA reads an inf/NaN accumulator's exponent as -1 and drops it
            # when the next 16 products are 2**25 larger (its c-dropping rule): a NaN or inf
            # of one block vanishes in the next. fpsim keeps IEEE propagation there.
            cc = c
            for lo in range(0, n * K - 16, 16):
                cc = _mmasim(op, fin[0], "fp32", a[:, lo:lo + 16], b[:, lo:lo + 16], cc, fin[1])
                dropped |= ~np.isfinite(cc)
            dropped &= np.isfinite(want[n - 1])
            assert not np.isfinite(got[dropped]).any()
        bad = ~_same(got, want[n - 1]) & ~dropped
        assert not bad.any(), (n, sorted(set(kinds[bad])), a[bad][:1, :n * K],
                               b[bad][:1, :n * K], c[bad][:1], want[n - 1][bad][:1])
    # the GEMM path (C = diag(c): the diagonal holds the dot products); finite rows, and
    # inf/NaN too for the FMA chains (fp32, fp64)
    skip = () if isinstance(m, fpsim.accum.Sequential) else ("special",)
    idx = np.nonzero(~np.isin(kinds, skip))[0][::len(c) // 16]
    D = fpsim.matmul(a[idx], b[idx].T, np.diag(c[idx]), model=m)
    assert _same(np.diag(D).copy(), want[1][idx]).all()


def test_every_cdna_arch_is_compared():
    assert {m[0] for m in MFMAS} == {"CDNA1", "CDNA2", "CDNA3"}
    assert {m[2] for m in MFMAS} >= {("e4m3fnuz", "e5m2fnuz"), ("fp32", "fp32"), ("tf32", "tf32"),
                                     ("fp64", "fp64")}
    assert {(m[0], m[1]) for m in MFMAS if m[4] == "fp64"} == {
        (a, sfx) for a, sfxs in _F64_MFMA.items() for sfx in sfxs}
