"""Tensor-core models (fpsim.hardware) against real GPU outputs and hand-computed probes.

The GPU vectors (Khattak & Mikaitis 2025) live outside the repository in
``../shared/data/tensor-cores`` (or ``$FPSIM_TENSOR_CORE_DATA``); the data tests skip with a
message when that folder is absent.
"""

from fractions import Fraction

import numpy as np
import pytest

import fpsim
from fpsim import accum as A

DATA = fpsim.hardware.data_dir()
needs_data = pytest.mark.skipif(
    DATA is None, reason="tensor-core data folder not found (../shared/data/tensor-cores next to "
    "the repository, or set FPSIM_TENSOR_CORE_DATA)")

# Every captured file with what the default model (fpsim.hardware.tensor_core) reproduces:
# (lines, bit-exact lines). A file that is not reproduced fully is recorded as it is, with the
# reason; a new file under the data folder must be added here.
_FULL = {f"{g}/{f}/{o}": (5000, 5000) for g, f, o in [
    ("V100", "fp16", "fp32"), ("V100", "fp16", "fp16"),
    ("A100", "fp16", "fp32"), ("A100", "fp16", "fp16"), ("A100", "bf16", "fp32"),
    ("A100", "tf32", "fp32"),
    ("Ada", "fp16", "fp32"), ("Ada", "fp16", "fp16"), ("Ada", "bf16", "fp32"),
    ("Ada", "tf32", "fp32"), ("Ada", "E4M3", "fp32"), ("Ada", "E4M3", "fp16"),
    ("Ada", "E5M2", "fp32"), ("Ada", "E5M2", "fp16"),
    ("H100", "fp16", "fp32"), ("H100", "fp16", "fp16"), ("H100", "bf16", "fp32"),
    ("H100", "tf32", "fp32"),
    # captured without the accumulator input (WGMMA D = A*B): replayed with c = 0
    ("H100", "E4M3", "fp32"), ("H100", "E5M2", "fp32")]}
EXPECTED = {
    **_FULL,
    # B200 mma.sync FP8 -> fp32: only the first 2500 lines were published; the data-fitted
    # preset (neab=8, nearest-even) reproduces all of them (the published model: ~63%).
    "B200/E4M3/fp32": (2500, 2500), "B200/E5M2/fp32": (2500, 2500),
    # FP8 inputs with fp16 output on H100/B200: the published parameters (and MMA-Sim)
    # match 62-68% of lines; two chained k16 steps into fp16, then c (gpus.fp16_halves,
    # found with tools/fit_fp8_fp16.py) reproduce every line.
    "H100/E4M3/fp16": (5000, 5000), "H100/E5M2/fp16": (5000, 5000),
    "B200/E4M3/fp16": (2500, 2500), "B200/E5M2/fp16": (2500, 2500),
}


@needs_data
@pytest.mark.parametrize("fast", [True, False], ids=["fast-kernel", "general-kernel"])
def test_every_captured_file_matches_its_recorded_expectation(fast, monkeypatch):
    monkeypatch.setattr(A.fused, "_FUSED_FAST", fast)
    res = fpsim.hardware.validate(DATA)
    assert set(res) == set(EXPECTED), "record an expectation for every captured file"
    for key, r in res.items():
        assert (r.lines, r.matches) == EXPECTED[key], str(r)
    assert "c = 0" in res["H100/E4M3/fp32"].note and res["H100/E4M3/fp16"].note == ""


def test_evidence_sets_match_the_recorded_expectations():
    """hardware.CAPTURED / UNREPRODUCED (behind every 'captured GPU data' label) are the
    files this suite replays: fully reproduced, and not."""
    def key(k):
        g, f, o = k.split("/")
        return g, f.lower(), o
    full = {key(k) for k, (n, m) in EXPECTED.items() if n == m}
    part = {key(k) for k, (n, m) in EXPECTED.items() if n != m}
    assert fpsim.hardware.CAPTURED == full and fpsim.hardware.UNREPRODUCED == part
    for g, f, o in full:
        assert fpsim.hardware.evidence(g, f, o).startswith("captured GPU data")
    for g, f, o in part:
        assert "disagree" in fpsim.hardware.evidence(g, f, o)


@needs_data
def test_published_b200_fp8_model_disagrees_with_the_hardware():
    """What stands behind the data-fitted B200 FP8 preset: the published parameters
    (n=32, neab=2, truncation) miss about a third of the captured lines; round-to-nearest
    with 29 fraction bits (neab=6) still misses one."""
    a, b, c, outs = fpsim.hardware._load_dir(DATA / "B200" / "E5M2", "B200", "E5M2")
    ref = outs["fp32"].view(np.uint64)
    for m, lo, hi in [(A.FusedBlock(32, 2, in_fmt="e5m2"), 0.6, 0.7),
                      (A.FusedBlock(32, 6, rounding="rne", in_fmt="e5m2"), 0.999, 0.9999),
                      (fpsim.hardware.tensor_core("B200", "e5m2"), 1.0, 1.0)]:
        frac = np.mean(fpsim.dot(a, b, c, model=m).view(np.uint64) == ref)
        assert lo <= frac <= hi, (m, frac)


@needs_data
@pytest.mark.parametrize("fmt", ["E4M3", "E5M2"])
def test_mmasim_tcgen05_equals_the_published_b200_model(fmt):
    """MMA-Sim (independent, bit-accurate per instruction) models Blackwell FP8 as
    tcgen05.mma kind::f8f6f4: F=25, 32 products, RZ-FP32. On the captured inputs it gives
    the bits of fpsim's published-parameter model, and so disagrees with the hardware data
    exactly where that model does."""
    torch = pytest.importorskip("torch")
    sim = pytest.importorskip("mmasim.nv_ptx.sim")
    t = fmt.lower()
    a, b, c, outs = fpsim.hardware._load_dir(DATA / "B200" / fmt, "B200", fmt)
    a, b, c, ref = a[:400], b[:400], c[:400], outs["fp32"][:400]
    op = sim.TCGen05MMA("Blackwell", f"m128n8k32.kind::f8f6f4.f32.{t}.{t}")
    dt = torch.float8_e4m3fn if t == "e4m3" else torch.float8_e5m2
    ta, tb = torch.tensor(a, dtype=torch.float32).to(dt), torch.tensor(b, dtype=torch.float32).to(dt)
    tc = torch.tensor(c, dtype=torch.float32)
    got = np.array([float(op.dpa(ta[i], tb[i], tc[i])) for i in range(len(a))])
    published = fpsim.dot(a, b, c, model=A.FusedBlock(32, 2, in_fmt=t))
    assert np.array_equal(got.view(np.uint64), published.view(np.uint64))
    assert 0.5 < np.mean(got == ref) < 0.75
    fitted = fpsim.dot(a, b, c, model=fpsim.hardware.tensor_core("B200", t))
    assert np.array_equal(fitted.view(np.uint64), ref.view(np.uint64))


@needs_data
def test_gemm_kernel_reproduces_gpu_data():
    """The GEMM kernel (vectorised across columns) on the data: 64 lines at a time as the
    rows of A and the columns of B, with C = diag(c); the diagonal of D are the lines."""
    for gpu, fmt, out in [("V100", "fp16", "fp32"), ("A100", "bf16", "fp32"),
                          ("Ada", "E4M3", "fp32"), ("Ada", "E5M2", "fp16"), ("A100", "tf32", "fp32"),
                          ("H100", "bf16", "fp32"), ("B200", "E4M3", "fp32")]:
        a, b, c, outs = fpsim.hardware._load_dir(DATA / gpu / fmt, gpu, fmt)
        m = fpsim.hardware.tensor_core(gpu, fmt.lower(), out)
        cc = c if out == "fp32" else fpsim.quantize(c, out)
        n = 64
        for s in range(0, len(a), 1000):
            D = fpsim.matmul(a[s:s + n], b[s:s + n].T, np.diag(cc[s:s + n]), model=m)
            got = np.diag(D)
            want = outs[out][s:s + n]
            assert np.array_equal(got.view(np.uint64), want.view(np.uint64)), (gpu, fmt, out, s)


@needs_data
def test_bundled_sample_is_the_captured_data():
    """The sample shipped in fpsim/data equals the lines of the captured files it names."""
    from fpsim.hardware import _load_dir, _sample_sets
    sets = _sample_sets()
    assert {f"{g}/{f}" for g, f, *_ in sets} == {k.rsplit("/", 1)[0] for k in EXPECTED}
    for gpu, fmt, a, b, c, outs, source in sets:
        fa, fb, fc, fouts = _load_dir(DATA / gpu / fmt, gpu, fmt)
        idx = np.arange(len(a)) * len(fa) // len(a)
        assert len(a) == min(320, len(fa)) and f"of {len(fa)} lines" in source
        for got, full in [(a, fa), (b, fb), (c, fc)] + [(outs[o], fouts[o]) for o in fouts]:
            assert np.array_equal(got.view(np.uint64), full[idx].view(np.uint64)), (gpu, fmt)
        assert set(outs) == set(fouts)


def test_validate_without_data_replays_the_bundled_sample(monkeypatch, tmp_path):
    monkeypatch.setenv("FPSIM_TENSOR_CORE_DATA", str(tmp_path / "nowhere"))
    assert fpsim.hardware.data_dir() is None
    res = fpsim.hardware.validate()
    assert set(res) == set(EXPECTED)
    for key, r in res.items():
        lines, matches = EXPECTED[key]
        assert r.source.startswith("bundled sample: ") and r.lines == 320
        if matches == lines:  # files the preset reproduces: every sampled line too
            assert r.matches == r.lines, str(r)
        else:  # the others: about the same fraction as on the whole file
            assert abs(r.fraction - matches / lines) < 0.1, str(r)


def test_data_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FPSIM_TENSOR_CORE_DATA", str(tmp_path))
    assert fpsim.hardware.data_dir() == tmp_path
    monkeypatch.setenv("FPSIM_TENSOR_CORE_DATA", str(tmp_path / "missing"))
    assert fpsim.hardware.data_dir() is None


def test_validate_rejects_bad_path(tmp_path):
    with pytest.raises(ValueError, match="no a_"):
        fpsim.hardware.validate(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        fpsim.hardware.validate(tmp_path / "missing")


def _write_dir(root, a_rows, b_rows, c_rows, d_rows):
    d = root / "A100" / "bf16"
    d.mkdir(parents=True)
    (d / "a_A100_bf16.txt").write_text("".join(r + "\n" for r in a_rows))
    (d / "b_A100_bf16.txt").write_text("".join(r + "\n" for r in b_rows))
    (d / "c_A100_fp32.txt").write_text("".join(r + "\n" for r in c_rows))
    (d / "d_A100_fp32.txt").write_text("".join(r + "\n" for r in d_rows))
    return d


ONE = "3f800000"                      # 1.0 as hex binary32
ONE_B = format(0x3F800000, "032b")    # 1.0 as a binary string
TWO_B = format(0x40000000, "032b")    # 2.0


def test_validate_on_a_small_hand_made_folder(tmp_path):
    # 1*1 + 1 = 2: the first line is right, the second claims 1
    d = _write_dir(tmp_path, [ONE] * 2, [ONE] * 2, [ONE_B] * 2, [TWO_B, ONE_B])
    r = fpsim.hardware.validate(d)["A100/bf16/fp32"]
    assert (r.lines, r.matches, r.first_mismatches) == (2, 1, (1,))


def test_validate_refuses_files_of_unequal_length(tmp_path):
    # one d_ line for three vectors used to be broadcast and reported 3/3 bit-exact
    d = _write_dir(tmp_path, [ONE] * 3, [ONE] * 3, [ONE_B] * 3, [TWO_B])
    with pytest.raises(ValueError, match=r"unequal length.*d_A100_fp32.txt has 1 lines"):
        fpsim.hardware.validate(d)


@pytest.mark.parametrize("which,bad,msg", [
    ("a", [ONE, "3f80000g"], r"a_A100_bf16.txt, line 2: not hexadecimal"),
    ("a", [ONE, ONE + " " + ONE], r"a_A100_bf16.txt, line 2: 2 values where line 1 has 1"),
    ("b", ["1.0", ONE], r"b_A100_bf16.txt, line 1: expected 8-digit hex"),
    ("c", ["10", ONE_B], r"c_A100_fp32.txt, line 1: expected a 32-character binary string"),
    ("d", [TWO_B, "2" * 32], r"d_A100_fp32.txt, line 2: expected a 32-character"),
])
def test_validate_names_the_malformed_file_and_line(tmp_path, which, bad, msg):
    rows = {"a": [ONE, ONE], "b": [ONE, ONE], "c": [ONE_B, ONE_B], "d": [TWO_B, TWO_B]}
    rows[which] = bad
    d = _write_dir(tmp_path, rows["a"], rows["b"], rows["c"], rows["d"])
    with pytest.raises(ValueError, match=msg):
        fpsim.hardware.validate(d)


def test_validate_refuses_a_folder_without_outputs(tmp_path):
    d = _write_dir(tmp_path, [ONE], [ONE], [ONE_B], [TWO_B])
    (d / "d_A100_fp32.txt").unlink()
    with pytest.raises(ValueError, match="no d_A100_fp32.txt or d_A100_fp16.txt"):
        fpsim.hardware.validate(d)


def test_unknown_gpu_suggests_the_closest_name():
    with pytest.raises(ValueError, match=r"did you mean 'H100'\?"):
        fpsim.hardware.tensor_core("h10", "bf16")
    with pytest.raises(ValueError, match=r"unknown GPU 'TPU'; allowed: V100"):
        fpsim.hardware.tensor_core("TPU", "bf16")


# ---------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("gpu,fmt,n,neab", [
    ("V100", "fp16", 4, 0), ("A100", "fp16", 8, 1), ("A100", "tf32", 4, 1), ("A2", "bf16", 8, 1),
    ("A30", "tf32", 4, 1), ("Ada", "e4m3", 16, -10), ("L40S", "e5m2", 16, -10),
    ("H100", "bf16", 16, 2), ("H100", "tf32", 8, 2), ("H200", "e4m3", 32, -10),
    ("B200", "fp16", 16, 2)])
def test_published_parameters(gpu, fmt, n, neab):
    m = fpsim.hardware.tensor_core(gpu, fmt)
    assert (m.n, m.neab, m.rounding, m.in_fmt.name, m.out_fmt.name) == (n, neab, "rtz", fmt, "fp32")
    if fmt in ("fp16", "e4m3", "e5m2"):
        m16 = fpsim.hardware.tensor_core(gpu, fmt, "fp16")
        if isinstance(m16, fpsim.accum.Permuted):  # Hopper/Blackwell FP8: two k16 steps
            assert m16.inner.inner.n == 16 and m16.period == 32
            m16 = m16.inner.inner
        assert m16.rounding == "rne" and m16.out_fmt.name == "fp16"


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
def test_b200_fp8_preset_is_fitted_to_the_captured_data(fmt):
    m = fpsim.hardware.tensor_core("B200", fmt)
    assert (m.n, m.neab, m.rounding, m.out_fmt.name) == (32, 8, "rne", "fp32")
    # fp16 output: two chained k16 steps of the published width (F = 25), c added last
    m16 = fpsim.hardware.tensor_core("B200", fmt, "fp16")
    step = m16.inner.inner
    assert (step.n, step.neab, step.rounding, m16.period) == (16, 2, "rne", 32)


def test_presets_reject_missing_modes():
    for gpu, fmt, out in [("V100", "bf16", "fp32"), ("V100", "e4m3", "fp32"),
                          ("A100", "e5m2", "fp32"), ("A100", "bf16", "fp16"), ("H100", "fp16", "bf16")]:
        with pytest.raises(ValueError):
            fpsim.hardware.tensor_core(gpu, fmt, out)


# ---------------------------------------------------------------------------------------
# Hand-computed probes (Fasi, Higham, Mikaitis & Pranesh 2021)
# ---------------------------------------------------------------------------------------

V100 = fpsim.hardware.tensor_core("V100", "fp16")
A100 = fpsim.hardware.tensor_core("A100", "fp16")


def d(model, a, b=None, c=0.0):
    a = np.asarray(a, dtype=np.float64)
    b = np.ones_like(a) if b is None else np.asarray(b, dtype=np.float64)
    return float(fpsim.dot(a, b, c, model=model))


def test_no_guard_digits():
    # 1 + 1.5 * 2**-23: each term is truncated at 2**-23 before the addition (V100 keeps
    # 23 fraction bits below the largest exponent), so the result is 1 + 2**-23, where a
    # correctly rounded sum would give 1 + 2**-22.
    assert d(V100, [1.0, 3 * 2.0**-24]) == 1 + 2.0**-23
    # A100 has one extra alignment bit: 1.5 * 2**-23 survives, then RTZ to fp32
    assert d(A100, [1.0, 3 * 2.0**-24]) == 1 + 2.0**-23
    assert d(A100, [1.0, 2.0**-24, 2.0**-24]) == 1 + 2.0**-23  # two halves add up (no loss)
    assert d(V100, [1.0, 2.0**-24, 2.0**-24]) == 1.0  # both below the V100 window


def test_round_toward_zero_both_signs():
    x = [1.0, 2.0**-23 + 2.0**-24]  # 1.5 ulp above 1: 2**-23 + 2**-24 (kept on A100)
    assert d(A100, x) == 1 + 2.0**-23
    assert d(A100, [-v for v in x]) == -(1 + 2.0**-23)  # toward zero, not floor
    # fp16 output rounds to nearest even
    A16 = fpsim.hardware.tensor_core("A100", "fp16", "fp16")
    assert d(A16, [1.0, 2.0**-11 + 2.0**-13]) == 1 + 2.0**-10


def test_carry_out_bits_are_kept():
    # four products 1.75 * 1.75 = 3.0625 each: the 4-term sum 12.25 needs two carry bits
    assert d(V100, [1.75] * 4, [1.75] * 4) == 12.25
    assert d(V100, [1.75] * 4, [1.75] * 4, c=3.75) == 16.0


def test_non_monotonic():
    # raising c from 2 - 2**-23 to 2 raises the alignment exponent and drops the products
    # 1.5 * 2**-23 entirely: the result *decreases* (2 + 2**-22 -> 2)
    p = [3 * 2.0**-24] * 4
    lo = d(V100, p, c=2 - 2.0**-23)
    hi = d(V100, p, c=2.0)
    assert lo == 2 + 2.0**-22 and hi == 2.0 and hi < lo


def test_blocks_are_chained():
    # K = 8 on V100 (n = 4): two blocks, the second one sees the first's result as c
    a = [1.0, 3 * 2.0**-24, 0, 0, 3 * 2.0**-24, 0, 0, 0]
    assert d(V100, a) == 1 + 2 * 2.0**-23
    exact = sum(Fraction(x) for x in a)
    assert exact == 1 + 3 * Fraction(2) ** -23


def test_special_values():
    m = fpsim.hardware.tensor_core("A100", "bf16")
    assert np.isnan(d(m, [np.inf, 1.0], [1.0, 1.0], c=-np.inf))
    assert d(m, [np.inf, 1.0], [1.0, 1.0]) == np.inf
    assert np.isnan(d(m, [np.nan, 1.0]))
    assert d(m, [0.0, 0.0]) == 0.0
    # overflow when truncating: inf, as the GPU model
    assert d(m, [2.0**127, 2.0**127]) == np.inf


# ---------------------------------------------------------------------------------------
# The GPU table (fpsim.gpus.GPU_TABLE): the one source of GPU facts
# ---------------------------------------------------------------------------------------

_ALL_INPUTS = (fpsim.hardware.IN_FORMATS + fpsim.gpus.FNUZ + fpsim.gpus.FP6_FP4
               + tuple(fpsim.hardware.BLOCK_SCALED) + ("fp64",))


@pytest.mark.parametrize("row", fpsim.hardware.GPU_TABLE, ids=lambda g: g.name)
def test_a_row_lists_exactly_the_inputs_its_preset_takes(row):
    takes = []
    for f in _ALL_INPUTS:
        try:
            fpsim.hardware.tensor_core(row.name, f)
        except ValueError:
            continue
        takes.append(f)
    assert tuple(takes) == row.inputs
    assert fpsim.hardware.gpu(row.name.lower().replace(" ", "_")) is row
    for f, o in row.captured + row.unreproduced:  # captured modes are modes of the preset
        fpsim.hardware.tensor_core(row.name, f, o)


def test_names_sets_and_profiles_are_derived_from_the_table():
    H, T = fpsim.hardware, fpsim.hardware.GPU_TABLE
    assert H.GPUS == tuple(g.name for g in T) and len(set(H.GPUS)) == len(T)
    assert H.CAPTURED == {(g.name, f, o) for g in T for f, o in g.captured}
    assert H.gpu("RTX PRO 6000 Blackwell").name == "RTX PRO 6000"  # an alias
    pytest.importorskip("torch")
    from fpsim.torch import profiles
    tc = {f"{g.profile}_{f}" for g in T for f in g.inputs if f in H.IN_FORMATS}
    assert tc <= set(profiles.names())
    assert {n for n in profiles.names() if n.split("_")[0] in {g.profile for g in T}
            and n.split("_", 1)[1] in H.IN_FORMATS} == tc


def test_a_new_row_is_a_working_preset():
    """Adding a GPU is adding a row: a row of a known architecture is a preset at once."""
    from fpsim.gpus import AMPERE, GPU
    row = GPU("A800", "Ampere", ("fp16", "bf16", "tf32"), AMPERE)
    m = fpsim.hardware.tensor_core(row, "bf16")
    ref = fpsim.hardware.tensor_core("A100", "bf16")
    assert (m.n, m.neab, m.rounding, m.name) == (ref.n, ref.neab, ref.rounding, "A800 bf16")
    with pytest.raises(ValueError, match="A800 tensor cores have no e4m3 mode"):
        fpsim.hardware.tensor_core(row, "e4m3")


def test_docs_gpu_tables_are_generated_from_the_table():
    """docs/engines.md and docs/accumulation.md hold markers the docs hook replaces with
    fpsim.gpus.table() / parameter_table() (no hand-written GPU table to drift)."""
    import importlib.util
    from pathlib import Path
    docs = Path(__file__).resolve().parents[1] / "docs"
    spec = importlib.util.spec_from_file_location("fpsim_docs_hooks", docs / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    for page, marker, fn in [("engines.md", "<!-- fpsim:gpu-table -->", fpsim.gpus.table),
                             ("accumulation.md", "<!-- fpsim:gpu-parameters -->",
                              fpsim.gpus.parameter_table)]:
        text = (docs / page).read_text()
        assert marker in text, page
        out = hooks.on_page_markdown(text, None, None, None)
        assert marker not in out
        rows = fn()
        for r in rows:
            assert "| " + " | ".join(str(v) for v in r.values()) + " |" in out, (page, r)
    names = [n for r in fpsim.gpus.parameter_table() for n in r["GPU"].split(", ")]
    assert names == [g.name for g in fpsim.hardware.GPU_TABLE if not g.arch.startswith("CDNA")]
