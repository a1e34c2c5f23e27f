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

EXPECTED_FILES = {
    "V100/fp16/fp32", "V100/fp16/fp16", "A100/fp16/fp32", "A100/fp16/fp16", "A100/bf16/fp32",
    "A100/tf32/fp32", "Ada/fp16/fp32", "Ada/fp16/fp16", "Ada/bf16/fp32", "Ada/tf32/fp32",
    "Ada/E4M3/fp32", "Ada/E4M3/fp16", "Ada/E5M2/fp32", "Ada/E5M2/fp16"}


@needs_data
@pytest.mark.parametrize("fast", [True, False], ids=["fast-kernel", "general-kernel"])
def test_every_line_of_the_gpu_data_is_reproduced(fast, monkeypatch):
    monkeypatch.setattr(A, "_FUSED_FAST", fast)
    res = fpsim.hardware.validate(DATA)
    assert EXPECTED_FILES <= set(res)
    for key, r in res.items():
        assert r.lines == 5000, key
        assert r.fraction == 1.0, str(r)


@needs_data
def test_gemm_kernel_reproduces_gpu_data():
    """The GEMM kernel (vectorised across columns) on the data: 64 lines at a time as the
    rows of A and the columns of B, with C = diag(c); the diagonal of D are the lines."""
    for gpu, fmt, out in [("V100", "fp16", "fp32"), ("A100", "bf16", "fp32"),
                          ("Ada", "E4M3", "fp32"), ("Ada", "E5M2", "fp16"), ("A100", "tf32", "fp32")]:
        a, b, c, outs = fpsim.hardware._load_dir(DATA / gpu / fmt, gpu, fmt)
        m = fpsim.hardware.tensor_core(gpu, fmt.lower(), out)
        cc = c if out == "fp32" else fpsim.quantize(c, out)
        n = 64
        for s in range(0, 5000, 1000):
            D = fpsim.matmul(a[s:s + n], b[s:s + n].T, np.diag(cc[s:s + n]), model=m)
            got = np.diag(D)
            want = outs[out][s:s + n]
            assert np.array_equal(got.view(np.uint64), want.view(np.uint64)), (gpu, fmt, out, s)


def test_validate_rejects_bad_path(tmp_path):
    with pytest.raises(ValueError, match="no a_"):
        fpsim.hardware.validate(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        fpsim.hardware.validate(tmp_path / "missing")


# ---------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("gpu,fmt,n,neab", [
    ("V100", "fp16", 4, 0), ("A100", "fp16", 8, 1), ("A100", "tf32", 4, 1), ("A2", "bf16", 8, 1),
    ("A30", "tf32", 4, 1), ("Ada", "e4m3", 16, -10), ("L40S", "e5m2", 16, -10),
    ("H100", "bf16", 16, 2), ("H100", "tf32", 8, 2), ("H200", "e4m3", 32, -10),
    ("B200", "e5m2", 32, 2), ("B200", "fp16", 16, 2)])
def test_published_parameters(gpu, fmt, n, neab):
    m = fpsim.hardware.tensor_core(gpu, fmt)
    assert (m.n, m.neab, m.rounding, m.in_fmt.name, m.out_fmt.name) == (n, neab, "rtz", fmt, "fp32")
    if fmt in ("fp16", "e4m3", "e5m2"):
        m16 = fpsim.hardware.tensor_core(gpu, fmt, "fp16")
        assert m16.rounding == "rne" and m16.out_fmt.name == "fp16"


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
