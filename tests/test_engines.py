"""The instruction table (fpsim.engines) and fpsim.hardware.mma: parsing, errors, and that
the GPU-level presets are rows of the same table. Bit-level agreement of every row with
MMA-Sim is in tests/test_mmasim.py; with captured GPU data in tests/test_tensor_cores.py."""

from fractions import Fraction

import numpy as np
import pytest

import fpsim
from fpsim import engines as E


@pytest.mark.parametrize("text,want", [
    ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32",
     ("mma", "", 16, "f32", "bf16", "bf16")),
    ("m16n8k16.f32.bf16.bf16.f32", ("mma", "", 16, "f32", "bf16", "bf16")),
    ("wgmma.mma_async.sync.aligned.m64n256k32.f32.e4m3.e5m2",
     ("wgmma", "", 32, "f32", "e4m3", "e5m2")),
    ("tcgen05.mma.cta_group::1.m128n256k32.kind::f8f6f4.f32.e2m1.e3m2",
     ("tcgen05.mma", "f8f6f4", 32, "f32", "e2m1", "e3m2")),
    ("m128n8k32.kind::f8f6f4.f16.e4m3.e4m3", ("tcgen05.mma", "f8f6f4", 32, "f16", "e4m3", "e4m3")),
    ("MMA.M16N8K32.F32.E4M3.E4M3.F32", ("mma", "", 32, "f32", "e4m3", "e4m3")),
])
def test_parse_instruction(text, want):
    i = E.parse_instruction(text)
    assert (i.opcode, i.kind, i.k, i.d, i.a, i.b) == want


def test_parse_block_scaled():
    i = E.parse_instruction("tcgen05.mma.m128n256k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue4m3")
    assert (i.kind, i.block, i.scale, i.k) == ("mxf4nvf4", "block16", "ue4m3", 64)


@pytest.mark.parametrize("text,msg", [
    ("mma.f32.bf16.bf16.f32", "no shape"),
    ("mma.m16n8k16.f32.bf17.bf16.f32", "expected the types of D, A, B"),
    ("mma.m16n8k16.f32.bf16.bf16.f16", r"C \(f16\) must have D's type"),
    ("mma.m16n8k16", "got nothing"),
])
def test_bad_instructions_say_what_is_expected(text, msg):
    with pytest.raises(ValueError, match=msg):
        E.parse_instruction(text)
    with pytest.raises(TypeError, match="must be a string"):
        E.parse_instruction(16)


def test_instruction_the_arch_lacks_lists_what_it_has():
    with pytest.raises(ValueError, match=r"Volta has no modelled instruction.*Volta has: mma K=4"):
        fpsim.hardware.mma("Volta", "mma.m16n8k16.f32.bf16.bf16.f32")
    with pytest.raises(ValueError, match="Ampere has no modelled"):
        fpsim.hardware.mma("Ampere", "wgmma.m64n8k16.f32.bf16.bf16")
    with pytest.raises(ValueError, match="Hopper has no modelled"):  # K=24 is no shape
        fpsim.hardware.mma("Hopper", "wgmma.m64n8k24.f32.bf16.bf16")


def test_block_scaled_spellings_and_errors():
    m = fpsim.hardware.mma("Blackwell",
                           "tcgen05.mma.m128n256k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue4m3")
    assert (m.L, m.F, m.block, m.group, m.e_zero, m.scale_fmt.name) == (64, 35, 16, 16, -139,
                                                                        "ue4m3fn")
    # PTX's own spelling: .block_scale.scale_vec::NX (N scales per K of the instruction)
    ptx = fpsim.hardware.mma("RTX Blackwell", "mma.sync.aligned.m16n8k64.row.col.kind::mxf4nvf4"
                             ".block_scale.scale_vec::4X.f32.e2m1.e2m1.f32.ue4m3")
    assert (ptx.block, ptx.scale_fmt.name) == (16, "ue4m3fn")
    assert fpsim.hardware.mma("Blackwell", "tcgen05.mma.m128n8k32.kind::mxf8f6f4.f32.e4m3"
                              ".e2m1.ue8m0").block == 32  # one block size: may be left out
    with pytest.raises(ValueError, match=r"mxf4nvf4 takes block32.ue8m0, block16.ue8m0, "
                                         r"block16.ue4m3, not block32.ue4m3"):
        fpsim.hardware.mma("Blackwell", "tcgen05.mma.m128n8k64.kind::mxf4nvf4.block32.f32.e2m1"
                           ".e2m1.ue4m3")
    with pytest.raises(ValueError, match="block scales belong to the kinds"):
        fpsim.hardware.mma("Blackwell", "tcgen05.mma.m128n8k32.kind::f8f6f4.block32.f32.e4m3"
                           ".e4m3.ue8m0")
    a, b = np.ones((2, 64)), np.full((2, 64), 0.5)
    for sa, msg in [(None, "pass a_scale= and b_scale="),
                    (np.ones((2, 2)), r"a_scale has shape \(2, 2\); expected \(2, 4\)"),
                    (np.full((2, 4), -1.0), "not a scale of format ue4m3fn"),
                    (np.full((2, 4), 500.0), "not a scale of format ue4m3fn")]:
        with pytest.raises(ValueError, match=msg):
            fpsim.dot(a, b, model=m, a_scale=sa, b_scale=np.ones((2, 4)))
    with pytest.raises(ValueError, match="not a scale of format e8m0"):
        mx = fpsim.hardware.mma("Blackwell", "tcgen05.mma.m128n8k64.kind::mxf4.f32.e2m1.e2m1")
        fpsim.dot(a, b, model=mx, a_scale=[[0.0, 1.0]], b_scale=[[1.0, 1.0]])
    with pytest.raises(ValueError, match="not a multiple of the scale block 16"):
        fpsim.dot(a[:, :40], b[:, :40], model=m, a_scale=np.ones((2, 2)), b_scale=np.ones((2, 2)))
    with pytest.raises(ValueError, match="not a value of the model's input format e2m1"):
        fpsim.dot(a * 0.7, b, model=m, a_scale=np.ones((2, 4)), b_scale=np.ones((2, 4)))
    with pytest.raises(ValueError, match="a_scale/b_scale are for block-scaled models"):
        fpsim.dot(a, b, model=fpsim.hardware.tensor_core("A100", "fp16"), a_scale=1.0)
    with pytest.raises(TypeError, match="needs its block scales"):
        fpsim.sum(a, model=m)
    # a K that is not a whole number of instructions is padded with zeros, as the hardware
    # operands would be: the same bits as the explicitly padded call
    rng = np.random.default_rng(1)
    x = fpsim.quantize(rng.standard_normal((3, 96)), "e2m1")
    s = fpsim.quantize(2.0 ** rng.integers(-3, 4, (3, 6)) * 1.0, "ue4m3")
    xp = np.concatenate([x, np.zeros((3, 32))], 1)
    sp = np.concatenate([s, np.ones((3, 2))], 1)
    assert np.array_equal(fpsim.dot(x, x, model=m, a_scale=s, b_scale=s),
                          fpsim.dot(xp, xp, model=m, a_scale=sp, b_scale=sp))


def test_mixed_operands_the_arch_lacks_are_refused():
    with pytest.raises(ValueError, match="Ampere has no modelled"):  # fp16 x bf16
        fpsim.hardware.mma("Ampere", "mma.m16n8k16.f32.f16.bf16.f32")


def test_mixed_operands():
    m = fpsim.hardware.mma("Hopper", "wgmma.m64n256k32.f32.e4m3.e5m2")
    assert (m.in_fmt.name, m.in_fmt_b.name, m.n, m.neab) == ("e4m3", "e5m2", 32, -10)
    t = fpsim.hardware.tensor_core("H100", ("e4m3", "e5m2"))
    assert (t.input_formats[0].name, t.input_formats[1].name, t.n, t.neab) == \
        ("e4m3", "e5m2", 32, -10)
    a = np.array([15.0, 2.0**-9])  # e4m3 values (15 = 1.875 * 8 is not an e5m2 value)
    b = np.array([57344.0, 2.0**-16])  # e5m2 values (57344 is not an e4m3 value)
    assert fpsim.dot(a, b, 0.0, model=m) == fpsim.dot(a, b, 0.0, model=t)
    with pytest.raises(ValueError, match="A holds .*57344.*not a value of .* e4m3"):
        fpsim.dot(b, a, 0.0, model=m)
    with pytest.raises(ValueError, match="B holds .*15.0.*not a value of .* e5m2"):
        fpsim.dot(a, a, 0.0, model=m)
    assert fpsim.hardware.tensor_core("H100", ("e4m3", "e4m3")).in_fmt_b is None
    with pytest.raises(ValueError, match="FP8 pairs"):
        fpsim.hardware.tensor_core("H100", ("fp16", "bf16"))
    with pytest.raises(ValueError, match="one format, or a pair"):
        fpsim.accum.FusedBlock(8, 1, in_fmt=("e4m3", "e5m2", "fp16"))


@pytest.mark.parametrize("arch,canon", [("ada lovelace", "Ada"), ("ADA", "Ada"),
                                        ("sm_90a", "Hopper"), ("rtx blackwell", "RTX Blackwell")])
def test_arch_names(arch, canon):
    assert E.arch_name(arch) == canon


def test_unknown_arch_suggests():
    with pytest.raises(ValueError, match="did you mean 'Hopper'"):
        fpsim.hardware.mma("Hoper", "wgmma.m64n8k16.f32.bf16.bf16")


@pytest.mark.parametrize("gpu", fpsim.hardware.GPUS)
@pytest.mark.parametrize("fmt", fpsim.hardware.IN_FORMATS)
@pytest.mark.parametrize("out", ["fp32", "fp16"])
def test_gpu_presets_are_rows_of_the_table(gpu, fmt, out):
    try:
        m = fpsim.hardware.tensor_core(gpu, fmt, out)
    except ValueError:
        return
    arch = fpsim.hardware.gpu(gpu).arch
    if isinstance(m, fpsim.accum.Permuted):  # FP8 -> fp16 of Hopper/Blackwell: two k16 steps
        step = m.inner.inner
        rows = [e for e in E.ENGINES if e.arch == arch and fmt in e.inputs and e.fp16_halves]
        assert out == "fp16" and rows and step.n == 16, (gpu, fmt, out, m)
        assert step.neab + 23 in {e.F_fp16 for e in rows}
        return
    if not isinstance(m, fpsim.accum.FusedBlock):  # AMD: the model of the preset's instruction
        ins = fpsim.hardware.gpu(gpu).instruction(fmt, out)
        assert m.variant == E.lookup(arch, ins).variant == "tr" if arch == "CDNA3" else True
        assert (m.L, m.F, m.F2) == ((lambda i: (i.L, i.F, i.F2))(fpsim.hardware.mma(arch, ins)))
        return
    rows = [e for e in E.ENGINES if e.arch == arch and fmt in e.inputs and out in e.outputs
            and e.L == m.n]
    F = {e.F_fp16 if out == "fp16" and e.F_fp16 is not None else e.F for e in rows}
    assert m.neab + 23 in F, (gpu, fmt, out, m)


def test_instruction_model_runs_a_long_k():
    m = fpsim.hardware.mma("Ampere", "mma.m16n8k16.f32.bf16.bf16.f32")
    a = fpsim.quantize(np.linspace(-1, 1, 64), "bf16")
    # K = 64: eight chained groups of 8 products, the same as the A100 preset
    want = fpsim.dot(a, a[::-1], 0.5, model=fpsim.hardware.tensor_core("A100", "bf16"))
    assert fpsim.dot(a, a[::-1], 0.5, model=m) == want


def test_fp64_mma_rows_follow_the_ptx_tables():
    """fp64 mma: m8n8k4 from Ampere on, m16n8k4/k8/k16 on Hopper (MMA-Sim's PTX tables);
    an FMA chain in the table, with no fused-group parameters."""
    f64 = fpsim.accum.Sequential("fp64", fma=True)
    for arch in ("Ampere", "Ada", "Hopper", "Blackwell", "RTX Blackwell"):
        assert fpsim.hardware.mma(arch, "mma.sync.aligned.m8n8k4.row.col.f64.f64.f64.f64") == f64
    assert fpsim.hardware.mma("Hopper", "mma.m16n8k16.f64.f64.f64.f64") == f64
    for arch, instr in [("Volta", "mma.m8n8k4.f64.f64.f64.f64"),
                        ("Ampere", "mma.m16n8k16.f64.f64.f64.f64"),
                        ("Hopper", "mma.m16n8k16.f64.f16.f16.f64")]:
        with pytest.raises(ValueError, match=f"{arch} has no modelled instruction"):
            fpsim.hardware.mma(arch, instr)
    rows = [r for r in E.table() if r["inputs"] == "fp64"]
    assert len(rows) == 7 and {(r["arithmetic"], r["L"], r["F"], r["rounding"]) for r in rows} == {
        ("FMA chain", "–", "–", "RNE")}


def test_table_rows():
    rows = E.table()
    assert {r["arch"] for r in rows} == set(E.ARCHS)
    assert all(r["evidence"] for r in rows)
    b200 = [r for r in rows if r["arch"] == "Blackwell" and r["instruction"] == "mma K=32"]
    assert [(r["output"], r["F"], r["rounding"]) for r in b200] == [("fp32", 31, "RNE"),
                                                                   ("fp16", 25, "RNE")]


def test_amd_mfma_names_and_errors():
    m = fpsim.hardware.mma("CDNA3", "v_mfma_f32_32x32x8_bf16")
    assert (m.variant, m.L, m.F, m.F2, m.in_fmt.name) == ("tr", 8, 24, 31, "bf16")
    assert fpsim.hardware.mma("gfx942", "v_mfma_f32_32x32x4_2b_f16").L == 4  # K=4: 4 fused
    f8 = fpsim.hardware.mma("CDNA3", "V_MFMA_F32_16X16X32_FP8_BF8")
    assert (f8.variant, f8.L) == ("gtr", 16)
    assert [f.name for f in f8.input_formats] == ["e4m3fnuz", "e5m2fnuz"]
    assert fpsim.hardware.mma("CDNA2", "v_mfma_f32_32x32x8bf16_1k").L == 4
    assert fpsim.hardware.mma("CDNA2", "v_mfma_f32_32x32x4bf16").L == 2
    assert fpsim.hardware.mma("CDNA1", "f32_32x32x8f16").variant == "exact"  # MMA-Sim's form
    assert isinstance(fpsim.hardware.mma("CDNA3", "v_mfma_f32_16x16x4_f32"), fpsim.accum.Sequential)
    with pytest.raises(ValueError, match="CDNA1 has no modelled instruction.*CDNA1 has: v_mfma"):
        fpsim.hardware.mma("CDNA1", "v_mfma_f32_32x32x8bf16_1k")
    f64 = fpsim.accum.Sequential("fp64", fma=True)
    assert fpsim.hardware.mma("CDNA3", "v_mfma_f64_16x16x4_f64") == f64
    assert fpsim.hardware.mma("CDNA2", "v_mfma_f64_4x4x4f64") == f64
    with pytest.raises(ValueError, match="fp64 MFMA takes fp64 operands into an fp64 result"):
        fpsim.hardware.mma("CDNA3", "v_mfma_f32_16x16x4_f64")
    with pytest.raises(ValueError, match="CDNA1 has no modelled instruction"):
        fpsim.hardware.mma("CDNA1", "v_mfma_f64_16x16x4f64")
    with pytest.raises(ValueError, match="expected an AMD name such as"):
        fpsim.hardware.mma("CDNA3", "v_mfma_f32_32x32_bf16")
    with pytest.raises(ValueError, match="not a value of the model's input format e4m3fnuz"):
        fpsim.dot(np.full(16, 448.0), np.ones(16), model=f8)  # e4m3 (fn) max, not in fnuz


_NV16 = fpsim.BlockFormat("e2m1", 16, "ue4m3")  # NVFP4's elements and scales, no tensor scale


def _same(x, y):
    return x.shape == y.shape and bool(((x == y) | (np.isnan(x) & np.isnan(y))).all())


@pytest.mark.parametrize("instr,fmt", [
    ("tcgen05.mma.m128n256k32.kind::mxf8f6f4.block32.f32.e4m3.e4m3.ue8m0", "mxfp8_e4m3"),
    ("tcgen05.mma.m128n256k32.kind::mxf8f6f4.block32.f32.e3m2.e3m2.ue8m0", "mxfp6_e3m2"),
    ("tcgen05.mma.m128n256k64.kind::mxf4.block32.f32.e2m1.e2m1.ue8m0", "mxfp4"),
    ("tcgen05.mma.m128n256k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue4m3", _NV16),
], ids=["mxfp8", "mxfp6", "mxfp4", "nvfp4-block16"])
def test_block_codes_as_operands_equal_the_decoded_path(instr, fmt):
    """fpsim.encode's block codes go straight into dot/matmul of a block-scaled instruction:
    the same bits as its elements and scales decoded and passed as values."""
    m = fpsim.hardware.mma("Blackwell", instr)
    f = fpsim.parse(fmt) if isinstance(fmt, str) else fmt
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 128)) * 2.0 ** rng.integers(-8, 8, (5, 1))
    y = rng.standard_normal((128, 7)) * 2.0 ** rng.integers(-8, 8, (1, 7))
    c = rng.standard_normal((5, 7))
    cx, cy = fpsim.encode(x, f), fpsim.encode(y, f, axis=0)  # both blocked along K
    vx, sx = fpsim.decode(cx.elements, f.elem), fpsim.decode(cx.scales, f.scale)
    vy, sy = fpsim.decode(cy.elements, f.elem), fpsim.decode(cy.scales, f.scale)
    assert np.array_equal(fpsim.decode(cx, f), vx * np.repeat(sx, f.block, 1))
    want = fpsim.matmul(vx, vy, c, model=m, a_scale=sx, b_scale=sy)
    assert _same(fpsim.matmul(cx, cy, c, model=m), want)
    assert _same(fpsim.matmul(cx, vy, c, model=m, b_scale=sy), want)  # codes and values mixed
    cb = fpsim.encode(y.T[:5], f)  # dot: rows of A against rows of B, both blocked along K
    vb, sb = fpsim.decode(cb.elements, f.elem), fpsim.decode(cb.scales, f.scale)
    d_want = fpsim.dot(vx, vb, c[:, 0], model=m, a_scale=sx, b_scale=sb)
    assert _same(fpsim.dot(cx, cb, c[:, 0], model=m), d_want)
    # the instruction's result is the matmul of the dequantized operands, up to its rounding
    assert np.allclose(want, fpsim.decode(cx, f) @ fpsim.decode(cy, f) + c, rtol=1e-5, atol=1e-6)


def test_block_codes_that_do_not_fit_the_instruction_are_refused():
    m = fpsim.hardware.mma("Blackwell",
                           "tcgen05.mma.m128n256k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue4m3")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 64))
    cx = fpsim.encode(x, _NV16)
    with pytest.raises(ValueError, match="per-tensor scale"):
        fpsim.dot(fpsim.encode(x, "nvfp4"), cx, model=m)  # the preset has an fp32 tensor scale
    with pytest.raises(ValueError, match="blocks of 32"):
        fpsim.dot(fpsim.encode(x, "mxfp4"), cx, model=m)
    with pytest.raises(ValueError, match=r"blocked along axis 1; .* along K \(axis 0 of B"):
        fpsim.matmul(cx, fpsim.encode(x.T, _NV16), model=m)  # B (K, N) blocked along N
    with pytest.raises(ValueError, match="pass no a_scale"):
        fpsim.dot(cx, cx, model=m, a_scale=np.ones((4, 4)))
    with pytest.raises(TypeError, match="block codes of no known format"):
        fpsim.dot(fpsim.block.BlockCodes(cx.elements, cx.scales), cx, model=m)
    with pytest.raises(TypeError, match="block-encoded operands"):
        fpsim.dot(cx, cx, model=fpsim.hardware.tensor_core("H100", "bf16"))
    m8 = fpsim.hardware.mma("Blackwell",
                            "tcgen05.mma.m128n256k32.kind::mxf8f6f4.block32.f32.e4m3.e4m3.ue8m0")
    with pytest.raises(ValueError, match="not a value of the model's input format e4m3"):
        c5 = fpsim.encode(x * 100, "mxfp8_e5m2")  # E5M2 elements are no E4M3 values
        fpsim.dot(c5, c5, model=m8)


@pytest.mark.parametrize("gpu,fmt,kind", [("B200", "nvfp4", "mxf4nvf4"), ("B300", "mxfp8", "mxf8f6f4"),
                                          ("RTX 5090", "mxfp4", "mxf4")])
def test_block_scaled_gpu_presets(gpu, fmt, kind):
    m = fpsim.hardware.tensor_core(gpu, fmt)
    assert isinstance(m, fpsim.accum.BlockScaledFused)
    assert fpsim.hardware.evidence(gpu, fmt).startswith("MMA-Sim agreement")
    assert kind in fpsim.hardware.gpu(gpu).instruction(fmt, "fp32")
    with pytest.raises(ValueError, match="no block-scaled"):
        fpsim.hardware.tensor_core("H100", fmt)


def test_new_gpu_names():
    H = fpsim.hardware
    key = (lambda m: (m.n, m.neab, m.rounding, m.in_fmt, m.out_fmt))
    assert key(H.tensor_core("rtx_4090", "e4m3")) == key(H.tensor_core("Ada", "e4m3"))
    assert H.tensor_core("MI300X", ("e4m3fnuz", "e5m2fnuz")).in_fmt_b.name == "e5m2fnuz"
    with pytest.raises(ValueError, match="T4 tensor cores have no bf16"):
        H.tensor_core("T4", "bf16")
    with pytest.raises(ValueError, match="MI300X matrix cores have no e4m3 -> fp32"):
        H.tensor_core("MI300X", "e4m3")
    with pytest.raises(ValueError, match="fnuz FP8 formats are AMD CDNA3's"):
        H.tensor_core("H100", "e4m3fnuz")


@pytest.mark.parametrize("gpu", ["B200", "B300", "RTX 5090", "RTX PRO 6000"])
def test_blackwell_presets_take_fp6_fp4_operands(gpu):
    """Unscaled FP6/FP4 operands (and mixed pairs with FP8) are Blackwell's kind::f8f6f4
    instruction at the GPU level: the same parameters as that instruction's model (which
    tests/test_mmasim.py compares with MMA-Sim), with the operand formats as given."""
    arch = fpsim.gpus.gpu(gpu).arch
    for fa, fb in [("e2m1", "e2m1"), ("e3m2", "e3m2"), ("e2m3", "e2m3"), ("e2m1", "e4m3"),
                   ("e5m2", "e3m2")]:
        for fo in ("fp32", "fp16"):
            got = fpsim.hardware.tensor_core(gpu, fa if fa == fb else (fa, fb), fo)
            d = {"fp32": "f32", "fp16": "f16"}[fo]
            instr = (f"tcgen05.mma.m128n256k32.kind::f8f6f4.{d}.{fa}.{fb}" if arch == "Blackwell"
                     else f"mma.m16n8k32.kind::f8f6f4.{d}.{fa}.{fb}.{d}")
            want = fpsim.hardware.mma(arch, instr)
            assert (got.n, got.neab, got.rounding, got.out_fmt.name) == (
                want.n, want.neab, want.rounding, want.out_fmt.name)
            assert [f.name for f in got.input_formats] == [fa, fb]
    with pytest.raises(ValueError, match="kind::f8f6f4"):
        fpsim.hardware.tensor_core(gpu, ("e2m1", "bf16"))


def test_fp6_fp4_operands_need_blackwell():
    with pytest.raises(ValueError, match="H100 tensor cores have no e2m1 mode"):
        fpsim.hardware.tensor_core("H100", "e2m1")


@pytest.mark.parametrize("gpu,instr", [("A100", "mma.m8n8k4.f64.f64.f64.f64"),
                                       ("H100", "mma.m16n8k16.f64.f64.f64.f64"),
                                       ("B200", "mma.m8n8k4.f64.f64.f64.f64"),
                                       ("MI250X", "v_mfma_f64_16x16x4f64"),
                                       ("MI300X", "v_mfma_f64_16x16x4_f64")])
def test_fp64_presets_are_the_fp64_instructions(gpu, instr):
    """tensor_core(gpu, "fp64"): the GPU's fp64 matrix instruction (an fp64 FMA chain,
    compared with MMA-Sim per instruction in tests/test_mmasim.py), fp64 out only."""
    g = fpsim.gpus.gpu(gpu)
    m = fpsim.hardware.tensor_core(gpu, "fp64")
    assert m == fpsim.hardware.mma(g.arch, instr) == fpsim.accum.Sequential("fp64", fma=True)
    assert fpsim.hardware.tensor_core(gpu, "fp64", "fp64") == m
    assert fpsim.hardware.evidence(gpu, "fp64").startswith("MMA-Sim agreement")
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((3, 40)), rng.standard_normal((3, 40))
    c = rng.standard_normal(3)
    got = fpsim.dot(a, b, c, model=m)
    for r in range(3):  # the FMA chain with exact rationals, one correct rounding per step
        s = c[r]
        for k in range(40):
            s = float(Fraction(a[r, k]) * Fraction(b[r, k]) + Fraction(s))
        assert got[r] == s
    with pytest.raises(ValueError, match="fp64 outputs only"):
        fpsim.hardware.tensor_core(gpu, "fp64", "fp32")


@pytest.mark.parametrize("gpu", ["V100", "T4", "A40", "L40S", "RTX 4090", "MI100"])
def test_gpus_without_fp64_matrix_cores_refuse_fp64(gpu):
    with pytest.raises(ValueError, match="no fp64 (-> fp64 )?mode"):
        fpsim.hardware.tensor_core(gpu, "fp64")
