"""The torch twins of the instruction-level engines (fpsim.torch.accum_scaled: Blackwell
block-scaled MMA; fpsim.torch.accum_mfma: AMD v_mfma, every variant) == the Numba kernels
behind fpsim.matmul bit for bit, for every block-scaled and MFMA instruction kind that
fpsim.engines.ENGINES lists, on inputs of every kind (normal, wide exponents, cancellation,
zeros, subnormals, tiny products, inf/NaN; NaN, zero and extreme scales), K not a multiple
of the instruction, batch dimensions; the same error messages; and against MMA-Sim
(mmasim, an independent bit-accurate model of the instructions) directly, so that the twin
is not only compared with fpsim. End to end: the B200/MI300X torch profiles give the same
bits on the forced torch path as on the Numba path."""

import re
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fpsim  # noqa: E402
from fpsim import engines as E  # noqa: E402
from fpsim.accum import Blocked, FusedBlock, Permuted, Sequential  # noqa: E402
from fpsim.torch import accum as ta  # noqa: E402
from engine_names import mfma_suffix  # noqa: E402

KINDS = ["normal", "wide", "cancel", "zeros", "subnormal", "tiny", "special"]


# ---------------------------------------------------------------------------------------
# the instruction kinds of fpsim.engines.ENGINES (the enumeration of tests/test_mmasim.py)
# ---------------------------------------------------------------------------------------



def _mfma_instructions():
    """(arch, v_mfma name, (A's format, B's format)): every row, K and operand pairing."""
    out = []
    for e in E.ENGINES:
        if e.opcode != "v_mfma" or e.inputs == ("fp64",):  # fp64: an FMA chain, not an MFMA model
            continue
        for fa in e.inputs:
            for fb in e.inputs:
                for k in (e.ks if len(e.inputs) > 1 else e.ks[-1:]):
                    out.append((e.arch, "v_mfma_" + mfma_suffix(e, fa, fb, k), (fa, fb)))
    return out


_SCALED_PAIRS = {("Blackwell", "mxf8f6f4"): [("e4m3", "e4m3"), ("e5m2", "e5m2"), ("e3m2", "e3m2"),
                                             ("e2m3", "e2m3"), ("e2m1", "e2m1"),
                                             ("e4m3", "e5m2"), ("e2m1", "e4m3")],
                 ("RTX Blackwell", "mxf8f6f4"): [("e4m3", "e4m3"), ("e2m1", "e5m2")]}


def _scaled_instructions():
    """(arch, PTX name, (A's format, B's format), block, scale type): every block-scaled kind."""
    out = []
    for e in E.ENGINES:
        if not e.scaling:
            continue
        k = e.ks[0]
        for fa, fb in _SCALED_PAIRS.get((e.arch, e.kind), [(e.inputs[0], e.inputs[0])]):
            for blk, sc in e.scaling:
                ty = f"kind::{e.kind}.block{blk}.f32.{fa}.{fb}"
                if e.opcode == "tcgen05.mma":
                    full = f"tcgen05.mma.cta_group::1.m128n256k{k}.{ty}.{sc}"
                else:
                    full = (f"mma.sync.aligned.m16n8k{k}.row.col.kind::{e.kind}.block_scale."
                            f"scale_vec::{k // blk}X.f32.{fa}.{fb}.f32.{sc}")
                out.append((e.arch, full, (fa, fb), blk, sc))
    return out


MFMAS = _mfma_instructions()
SCALED = _scaled_instructions()


def test_the_enumeration_covers_every_engine_kind():
    assert {m[0] for m in MFMAS} == {"CDNA1", "CDNA2", "CDNA3"}
    variants = {getattr(fpsim.hardware.mma(a, n), "variant", None) for a, n, _ in MFMAS}
    assert variants >= {"exact", "ftz", "tr", "gtr"}
    assert {s[0] for s in SCALED} == {"Blackwell", "RTX Blackwell"}
    groups = {(fpsim.hardware.mma(a, n).group, b, sc) for a, n, _, b, sc in SCALED}
    assert groups >= {(1, 32, "ue8m0"), (16, 32, "ue8m0"), (16, 16, "ue8m0"), (16, 16, "ue4m3")}


# ---------------------------------------------------------------------------------------
# inputs of every kind
# ---------------------------------------------------------------------------------------

def _values(rng, fmt, kind, shape):
    f = fpsim.as_format(fmt)
    if kind == "normal":
        x = rng.standard_normal(shape) * 2.0 ** rng.integers(-4, 5, shape[:-1] + (1,))
    elif kind in ("wide", "special"):
        x = rng.standard_normal(shape) * 2.0 ** rng.integers(f.emin - 3, f.emax, shape)
    elif kind == "cancel":  # neighbours of opposite sign and nearly equal magnitude
        x = rng.standard_normal(shape)
        h = 2 * (shape[-1] // 2)
        x[..., 1:h:2] = -x[..., 0:h:2] * (1 + 2.0 ** -rng.integers(3, 12, x[..., 1:h:2].shape))
    elif kind == "zeros":
        x = rng.standard_normal(shape) * (rng.random(shape) < 0.3)
    elif kind == "subnormal":
        x = rng.standard_normal(shape) * 2.0 ** (f.emin - rng.integers(0, f.man_bits + 1, shape))
    else:  # tiny: products near the bottom of the output range, zeros among them
        e = max(f.emin - f.man_bits, -68)
        x = rng.standard_normal(shape) * 2.0 ** rng.integers(e, e + 8, shape)
        x *= rng.random(shape) < 0.7
    x = fpsim.quantize(np.clip(x, -f.max, f.max), fmt)
    if kind == "special":
        pick = rng.random(shape)
        if f.has_inf:
            x[pick < 0.02] = np.inf
            x[(pick >= 0.02) & (pick < 0.04)] = -np.inf
        if f.has_nan:
            x[pick > 0.985] = np.nan
    return x


def _operands(rng, fa, fb, n, K):
    """A (7n, K) and B (K, 7n): n rows (columns) of every kind; the GEMM pairs every kind
    of A with every kind of B."""
    A = np.concatenate([_values(rng, fa, k, (n, K)) for k in KINDS])
    B = np.concatenate([_values(rng, fb, k, (n, K)) for k in KINDS]).T.copy()
    return A, B


def _c(rng, shape):
    c = rng.standard_normal(shape) * 2.0 ** rng.integers(-6, 6, shape)
    c[rng.random(shape) < 0.2] = 0.0
    c[rng.random(shape) < 0.1] *= 2.0 ** -130
    return fpsim.quantize(c, "fp32")


def _scales(rng, sc, shape):
    """Scales of every kind: moderate, extreme (both ends of the range), NaN, zero (ue4m3)."""
    pick = rng.random(shape)
    if sc == "ue8m0":
        e = rng.integers(-12, 12, shape)
        e[pick < 0.1] = rng.integers(-127, -110, (pick < 0.1).sum())
        e[pick > 0.9] = rng.integers(110, 128, (pick > 0.9).sum())
        s = 2.0 ** e.astype(float)
        s[pick > 0.99] = np.nan
        return s
    s = fpsim.quantize(2.0 ** rng.uniform(-10, 9, shape), "ue4m3")
    s[pick < 0.03] = 0.0
    s[pick > 0.98] = 448.0
    s[(pick > 0.97) & (pick <= 0.98)] = np.nan
    return s


def _same(want, got):
    """Identical bits except NaN payloads (NaN at the same places)."""
    a = np.asarray(want)
    b = got.numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
    na, nb = np.isnan(a), np.isnan(b)
    return (a.shape == b.shape and np.array_equal(na, nb)
            and np.array_equal(np.where(na, 0.0, a).view(np.int64), np.where(nb, 0.0, b).view(np.int64)))


def _t(x):
    return None if x is None else torch.from_numpy(np.ascontiguousarray(x))


def _both(m, A, B, C=None, sa=None, sb=None):
    want = fpsim.matmul(A, B, C, model=m, a_scale=sa, b_scale=sb)
    got = ta.matmul(_t(A), _t(B), _t(C), model=m, a_scale=_t(sa), b_scale=_t(sb))
    assert got.dtype == torch.float64
    return want, got


# ---------------------------------------------------------------------------------------
# torch twin == Numba kernels
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch,name,fin", MFMAS, ids=[f"{m[0]}:{m[1]}" for m in MFMAS])
def test_mfma_torch_equals_numba(arch, name, fin):
    m = fpsim.hardware.mma(arch, name)
    rng = np.random.default_rng(zlib.crc32(f"{arch}{name}".encode()))
    L = getattr(m, "L", 4)
    K = 3 * L + L // 2 + 1  # three whole blocks and a partial one
    A, B = _operands(rng, fin[0], fin[1], 3, K)
    assert _same(*_both(m, A, B, _c(rng, (A.shape[0], B.shape[1])))), name
    assert _same(*_both(m, A[:5], B[:, :4])), name  # C = 0
    assert _same(*_both(m, A[:, :1], B[:1], _c(rng, (A.shape[0], B.shape[1])))), name  # K = 1
    assert _same(*_both(m, A[:, :0], B[:0], _c(rng, (A.shape[0], B.shape[1])))), name  # K = 0


@pytest.mark.parametrize("arch,name,fin,blk,sc", SCALED, ids=[s[1] for s in SCALED])
def test_block_scaled_torch_equals_numba(arch, name, fin, blk, sc):
    m = fpsim.hardware.mma(arch, name)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    # two whole instructions and one block more (K not a multiple of L where block < L)
    K = 2 * m.L + blk
    A, B = _operands(rng, fin[0], fin[1], 3, K)
    R, N, kb = A.shape[0], B.shape[1], K // blk
    sa, sb = _scales(rng, sc, (R, kb)), _scales(rng, sc, (kb, N))
    assert _same(*_both(m, A, B, _c(rng, (R, N)), sa, sb)), name
    # moderate scales only (no NaN scale hides the arithmetic of a whole row)
    sa, sb = 2.0 ** rng.integers(-3, 4, (R, kb)), 2.0 ** rng.integers(-3, 4, (kb, N))
    assert _same(*_both(m, A, B, None, sa, sb)), name


def test_batched_and_broadcast():
    rng = np.random.default_rng(5)
    m = fpsim.hardware.mma("Blackwell", SCALED[0][1])  # e4m3, block 32, L = 32
    A = fpsim.quantize(rng.standard_normal((2, 3, 64)) * 8, "e4m3")
    B = fpsim.quantize(rng.standard_normal((64, 4)), "e4m3")
    sa, sb = 2.0 ** rng.integers(-20, 20, (2, 3, 2)), 2.0 ** rng.integers(-20, 20, (2, 4))
    C = rng.standard_normal((1, 3, 4))  # broadcast, and not fp32 values
    assert _same(*_both(m, A, B, C, sa, sb))
    assert _same(*_both(m, A, B, None, sa, sb[:1]))  # a scale row broadcast over K blocks
    for M, K, N in ((0, 32, 2), (2, 0, 3), (2, 32, 0)):  # empty shapes
        assert _same(*_both(m, A[0, :M, :K], B[:K, :N], C[0, :M, :N] if N else None,
                            sa[0, :M, :K // 32], sb[:K // 32, :N]))
    for arch, name, fin in MFMAS[::3]:
        mm = fpsim.hardware.mma(arch, name)
        fa, fb = fin
        A = fpsim.quantize(rng.standard_normal((2, 1, 3, 21)) * 4, fa)
        B = fpsim.quantize(rng.standard_normal((3, 21, 2)), fb)
        assert _same(*_both(mm, A, B, rng.standard_normal((3, 2)))), name


def _codes(rng, fmt, shape):
    """Values of random bit patterns of ``fmt`` (every class: zeros, subnormals, inf, NaN)."""
    f = fpsim.as_format(fmt)
    return fpsim.decode(rng.integers(0, 2**f.bits, shape), fmt)


@settings(deadline=None, max_examples=10)
@given(st.integers(1, 24), st.integers(0, 2**32 - 1))
def test_random_bit_patterns(K, seed):
    """Random operand (and scale) bit patterns through every MFMA variant and a block-scaled
    kind of each group size."""
    rng = np.random.default_rng(seed)
    for arch, name in (("CDNA1", "v_mfma_f32_16x16x16f16"), ("CDNA2", "v_mfma_f32_16x16x16f16"),
                       ("CDNA3", "v_mfma_f32_16x16x16_f16"), ("CDNA3", "v_mfma_f32_16x16x32_fp8_fp8")):
        m = fpsim.hardware.mma(arch, name)
        fa, fb = m.input_formats
        A, B = _codes(rng, fa.name, (3, K)), _codes(rng, fb.name, (K, 2))
        assert _same(*_both(m, A, B, _c(rng, (3, 2)))), name
    for arch, name, fin, blk, sc in (SCALED[0], SCALED[6], SCALED[10]):
        m = fpsim.hardware.mma(arch, name)
        Kb = blk * (1 + K % 5)
        A, B = _codes(rng, fin[0], (3, Kb)), _codes(rng, fin[1], (Kb, 2))
        sfmt = "e8m0" if sc == "ue8m0" else "ue4m3"
        sa, sb = _codes(rng, sfmt, (3, Kb // blk)), _codes(rng, sfmt, (Kb // blk, 2))
        assert _same(*_both(m, A, B, _c(rng, (3, 2)), sa, sb)), name


def test_wide_initial_c_and_kulisch_extremes():
    """The exact (Kulisch) twin with C anywhere in float64 (subnormal, huge, not fp32) and
    products at both ends of bf16's range, cancelling exactly."""
    m = fpsim.hardware.mma("CDNA1", "v_mfma_f32_16x16x8bf16")
    big, tiny = 2.0**127, 2.0**-133
    A = np.array([[big, -big, tiny, 1.0], [big, tiny, -big, 0.0], [1.0, 1.0, 1.0, 1.0],
                  [-0.0, -0.0, 0.0, -0.0]])
    B = np.array([[big, big, tiny, 1.0], [tiny, 2.0**-7, 1.0, -1.0]]).T.copy()
    C = np.array([[5e-324, -1e300], [1.0 + 2.0**-40, 3.0], [-2.0**-1000, 2.0**1000], [-0.0, 0.0]])
    assert _same(*_both(m, A, B, C))
    assert _same(*_both(m, A, B, -np.zeros((4, 2)))), "signed zeros"
    rng = np.random.default_rng(3)
    A = fpsim.quantize(rng.standard_normal((6, 10)) * 2.0 ** rng.integers(-130, 127, (6, 10)), "bf16")
    B = fpsim.quantize(rng.standard_normal((10, 5)) * 2.0 ** rng.integers(-130, 127, (10, 5)), "bf16")
    C = rng.standard_normal((6, 5)) * 2.0 ** rng.integers(-1070, 1000, (6, 5))
    assert _same(*_both(m, A, B, C))
    assert _same(*_both(m, A, B, fpsim.quantize(C, "fp32", overflow="saturate")))


def test_nested_mfma():
    """MFMA inside Blocked (inner and outer) and Permuted orders: the same composition rules."""
    rng = np.random.default_rng(11)
    A = fpsim.quantize(rng.standard_normal((4, 37)) * 4, "fp16")
    B = fpsim.quantize(rng.standard_normal((37, 3)), "fp16")
    for arch, name in (("CDNA3", "v_mfma_f32_16x16x16_f16"), ("CDNA2", "v_mfma_f32_16x16x16f16"),
                       ("CDNA1", "v_mfma_f32_16x16x16f16")):
        mm = fpsim.hardware.mma(arch, name)
        for m in (Blocked(12, mm, Sequential("fp32")), Permuted(mm, seed=2),
                  Blocked(8, FusedBlock(8, 0, in_fmt="fp16"), mm)):
            assert ta.supports(m)
            assert _same(*_both(m, A, B)), (name, m)


def test_hand_values():
    """Values derived by hand. Products 1, 2**-24, 2**-25: CDNA1 sums them exactly (1 + 3 *
    2**-25, above the half-way point, rounds up to 1 + 2**-23); CDNA3 truncates them at
    2**-24 (1 + 2**-24: a tie, to even 1.0). Block-scaled: a result beyond fp32 is inf; an
    exact one stays exact; a NaN scale gives NaN."""
    a = torch.tensor([[1.0, 2.0**-12, 2.0**-12]], dtype=torch.float64)
    b = torch.tensor([[1.0], [2.0**-12], [2.0**-13]], dtype=torch.float64)
    cdna1 = fpsim.hardware.mma("CDNA1", "v_mfma_f32_16x16x16f16")
    assert ta.matmul(a, b, model=cdna1).item() == 1.0 + 2.0**-23
    cdna3 = fpsim.hardware.mma("CDNA3", "v_mfma_f32_16x16x16_f16")
    assert ta.matmul(a, b, model=cdna3).item() == 1.0
    m = fpsim.hardware.mma("Blackwell", SCALED[0][1])
    x = torch.full((1, 32), 448.0, dtype=torch.float64)
    d = ta.matmul(x, x.T, model=m, a_scale=torch.tensor([[2.0**127]]), b_scale=torch.tensor([[1.0]]))
    assert d.item() == float("inf")
    d = ta.matmul(x, -x.T, model=m, a_scale=torch.tensor([[2.0**-100]]), b_scale=torch.tensor([[1.0]]))
    assert d.item() == -448.0**2 * 32 * 2.0**-100  # exact: 0x1.88p+22 * 2**-100
    nan = ta.matmul(x, x.T, model=m, a_scale=torch.tensor([[float("nan")]]),
                    b_scale=torch.tensor([[1.0]]))
    assert torch.isnan(nan).all()


# ---------------------------------------------------------------------------------------
# errors: the messages of fpsim.matmul
# ---------------------------------------------------------------------------------------

def _message(fn):
    try:
        fn()
    except (ValueError, TypeError) as e:  # numpy scalars print as np.float64(v): as v
        return type(e), re.sub(r"np\.float64\(([^)]*)\)", r"\1", str(e))
    raise AssertionError("no error raised")


def test_same_errors_as_fpsim_matmul():
    m = fpsim.hardware.mma(*SCALED[-1][:2])  # nvfp4: block 16, ue4m3
    A, B = np.ones((2, 32)), np.ones((32, 3))
    sa, sb = np.ones((2, 2)), np.ones((2, 3))
    cases = [
        dict(A=A, B=B, a_scale=None, b_scale=sb),  # scales missing
        dict(A=A, B=B, a_scale=np.ones((2, 3)), b_scale=sb),  # wrong shape
        dict(A=A, B=B, a_scale=sa * 1000, b_scale=sb),  # not a ue4m3 value
        dict(A=A, B=B, a_scale=sa, b_scale=-sb),  # negative
        dict(A=A[:, :24], B=B[:24], a_scale=sa, b_scale=sb),  # K not a multiple of the block
        dict(A=A * 0.1, B=B, a_scale=sa, b_scale=sb),  # not e2m1 values
    ]
    for kw in cases:
        want = _message(lambda: fpsim.matmul(kw["A"], kw["B"], model=m, a_scale=kw["a_scale"],
                                             b_scale=kw["b_scale"]))
        got = _message(lambda: ta.matmul(_t(kw["A"]), _t(kw["B"]), model=m, a_scale=_t(kw["a_scale"]),
                                         b_scale=_t(kw["b_scale"])))
        if "round the inputs first" in want[1]:  # names its own quantize function
            want = (want[0], want[1].replace("fpsim.quantize", "fpsim.torch.quantize"))
        assert want == got, kw
    e8 = fpsim.hardware.mma("Blackwell", SCALED[0][1])
    for bad in (3.0, 0.0, 2.0**128):
        s = np.full((2, 1), bad)
        want = _message(lambda: fpsim.matmul(A, B, model=e8, a_scale=s, b_scale=np.ones((1, 3))))
        got = _message(lambda: ta.matmul(_t(A), _t(B), model=e8, a_scale=_t(s),
                                         b_scale=torch.ones(1, 3, dtype=torch.float64)))
        assert want == got, bad
    mf = fpsim.hardware.mma("CDNA3", "v_mfma_f32_16x16x16_f16")
    want = _message(lambda: fpsim.matmul(A, B, model=mf, a_scale=sa, b_scale=sb))
    assert want == _message(lambda: ta.matmul(_t(A), _t(B), model=mf, a_scale=_t(sa), b_scale=_t(sb)))
    with pytest.raises(ValueError, match="move the scales"):
        ta.matmul(_t(A), _t(B), model=m, a_scale=torch.ones(2, 2, device="meta"), b_scale=_t(sb))


def test_supports_and_backend(monkeypatch):
    bsf = fpsim.hardware.tensor_core("B200", "nvfp4")
    mi = fpsim.hardware.tensor_core("MI300X", "e4m3fnuz")
    assert ta.supports(bsf) and ta.supports(mi)
    assert not ta.supports(Blocked(64, bsf, Sequential("fp32")))  # fpsim refuses nested scales
    monkeypatch.delenv(ta.ENV, raising=False)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [ta.backend(d, bsf) for d in (cpu, cuda)] == ["numba", "torch"]
    assert [ta.backend(d, mi) for d in (cpu, cuda)] == ["numba", "torch"]
    monkeypatch.setenv(ta.ENV, "torch")
    assert ta.backend(cpu, bsf) == ta.backend(cpu, mi) == "torch"


# ---------------------------------------------------------------------------------------
# against MMA-Sim directly (an independent model, not fpsim's kernels)
# ---------------------------------------------------------------------------------------

_SIM_T = {"fp16": torch.float16, "bf16": torch.bfloat16, "tf32": torch.float32,
          "e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2,
          "e4m3fnuz": torch.float8_e4m3fnuz, "e5m2fnuz": torch.float8_e5m2fnuz}


def _sim_operand(x, fmt, packed=False):
    if fmt in _SIM_T:
        return torch.tensor(x, dtype=torch.float32).to(_SIM_T[fmt])
    codes = fpsim.encode(x, fmt).astype(np.uint8)
    if packed:  # FP4 pairs, the first in the high nibble
        return torch.tensor((codes[:, ::2] << 4) | codes[:, 1::2])
    return torch.tensor(codes << (2 if fmt == "e2m1" else 0))  # FP6/FP4 codes in a byte


def _rows_torch(m, a, b, c, sa=None, sb=None):
    """Dot products of the rows through the torch twin: batched (R, 1, K) @ (R, K, 1)."""
    sa = None if sa is None else _t(sa)[:, None, :]
    sb = None if sb is None else _t(sb)[:, :, None]
    d = ta.matmul(_t(a)[:, None, :], _t(b)[:, :, None], _t(c)[:, None, None], model=m,
                  a_scale=sa, b_scale=sb)
    return d[:, 0, 0]


@pytest.mark.parametrize("arch,short,name,fin,sc", [
    ("Blackwell", "m128n8k32.kind::mxf8f6f4.block32.f32.e4m3.e5m2.ue8m0", SCALED[5][1], ("e4m3", "e5m2"), "ue8m0"),
    ("Blackwell", "m128n8k32.kind::mxf8f6f4.block32.f32.e2m1.e4m3.ue8m0", SCALED[6][1], ("e2m1", "e4m3"), "ue8m0"),
    ("Blackwell", "m128n8k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue4m3", SCALED[10][1], ("e2m1", "e2m1"), "ue4m3"),
])
def test_block_scaled_torch_equals_mmasim(arch, short, name, fin, sc):
    sim = pytest.importorskip("mmasim.nv_ptx.sim")
    m = fpsim.hardware.mma(arch, name)
    assert m.input_formats == tuple(fpsim.as_format(f) for f in fin)
    op = sim.TCGen05MMABlockScale(arch, short)
    rng = np.random.default_rng(zlib.crc32(short.encode()))
    K, nb = m.L, m.L // m.block
    a = np.concatenate([_values(rng, fin[0], k, (24, K)) for k in KINDS])
    b = np.concatenate([_values(rng, fin[1], k, (24, K)) for k in KINDS])
    c = _c(rng, len(a))
    sa, sb = _scales(rng, sc, (len(a), nb)), _scales(rng, sc, (len(a), nb))
    codes = {"ue8m0": ("e8m0", torch.float8_e8m0fnu), "ue4m3": ("ue4m3", torch.float8_e4m3fn)}[sc]

    def sim_scales(s):
        return torch.tensor(fpsim.encode(s, codes[0]).astype(np.uint8)).view(codes[1])
    packed = m.group > 1
    want = op.dpa(_sim_operand(a, fin[0], packed), _sim_operand(b, fin[1], packed),
                  torch.tensor(c, dtype=torch.float32), sim_scales(sa), sim_scales(sb)).double()
    assert _same(want.numpy(), _rows_torch(m, a, b, c, sa, sb))


@pytest.mark.parametrize("arch,suffix,fin,K", [
    ("CDNA1", "f32_16x16x16f16", ("fp16", "fp16"), 16),  # exact
    ("CDNA1", "f32_16x16x8bf16", ("bf16", "bf16"), 8),  # exact
    ("CDNA2", "f32_16x16x16bf16_1k", ("bf16", "bf16"), 16),  # ftz
    ("CDNA3", "f32_16x16x8_xf32", ("tf32", "tf32"), 8),  # tr
    ("CDNA3", "f32_16x16x16_bf16", ("bf16", "bf16"), 16),  # tr
    ("CDNA3", "f32_32x32x16_fp8_bf8", ("e4m3fnuz", "e5m2fnuz"), 16),  # gtr, one block of 16
])
def test_mfma_torch_equals_mmasim(arch, suffix, fin, K):
    amd = pytest.importorskip("mmasim.amd.sim")
    m = fpsim.hardware.mma(arch, "v_mfma_" + suffix)
    op = amd.MFMA(arch, suffix)
    rng = np.random.default_rng(zlib.crc32((arch + suffix).encode()))
    a = np.concatenate([_values(rng, fin[0], k, (24, K)) for k in KINDS])
    b = np.concatenate([_values(rng, fin[1], k, (24, K)) for k in KINDS])
    c = _c(rng, len(a))
    want = op.dpa(_sim_operand(a, fin[0]), _sim_operand(b, fin[1]),
                  torch.tensor(c, dtype=torch.float32)).double()
    assert _same(want.numpy(), _rows_torch(m, a, b, c))


# ---------------------------------------------------------------------------------------
# end to end: the torch profiles of these engines on the forced torch path are in
# tests/test_torch_accum.py (test_emulated_model_forced_torch_path_equals_numba)
# ---------------------------------------------------------------------------------------
