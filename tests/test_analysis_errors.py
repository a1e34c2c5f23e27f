"""fpsim.analysis.errors / format_plots: metrics against numpy/ml_dtypes and closed forms."""

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fpsim.analysis as fa


def _finite_patterns(dtype, uint, n, seed=0):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, np.iinfo(uint).max, n, dtype=uint, endpoint=True)
    x = bits.view(dtype)
    with np.errstate(invalid="ignore"):
        x = x[np.isfinite(x.astype(np.float64))]
    return x


@pytest.mark.parametrize("dtype,uint,fmt", [
    (np.float16, np.uint16, "fp16"),
    (np.float32, np.uint32, "fp32"),
    (ml_dtypes.bfloat16, np.uint16, "bf16"),
])
def test_ulp_matches_numpy_spacing(dtype, uint, fmt):
    # np.spacing(|x|) is the gap above |x| in the dtype: the ULP by our definition,
    # subnormals included; the top binade's last value has spacing inf there (skipped).
    x = _finite_patterns(dtype, uint, 20000)
    with np.errstate(over="ignore"):
        sp = np.spacing(np.abs(x)).astype(np.float64)
    ok = np.isfinite(sp)
    got = fa.ulp(x.astype(np.float64), fmt)
    np.testing.assert_array_equal(got[ok], sp[ok])


def test_ulp_error_of_next_value_is_one():
    x = _finite_patterns(np.float16, np.uint16, 5000, seed=3)
    x = x[np.abs(x) < np.float16(60000)]
    nxt = np.nextafter(np.abs(x), np.float16(np.inf)) * np.sign(x)
    m = x != 0
    e = fa.ulp_error(nxt[m].astype(np.float64), x[m].astype(np.float64), "fp16")
    np.testing.assert_array_equal(e, 1.0)


def test_ulp_of_integers_and_codebooks():
    assert fa.ulp([3.7, -100.0], "int8").tolist() == [1.0, 1.0]
    assert fa.ulp([0.3], "fixed8f4").tolist() == [0.0625]
    # dINT4 = {0, ±0.5, ±1, ..., ±6}: gaps bracketing the value
    assert fa.ulp([0.25, 0.7, 2.5, 7.0], "dint4").tolist() == [0.5, 0.5, 1.0, 1.0]


def test_sqnr_closed_form_uniform_fixed_point():
    # Uniform data on [-1, 1] rounded to a fixed-point grid of step D: noise variance D^2/12,
    # signal variance 1/3, so SQNR = 10 log10(4 / D^2).
    D = 2.0**-6
    x = fa.sample("uniform", 400_000, seed=1)
    s = fa.format_errors("fixed10f6", x)
    assert s.sqnr_db == pytest.approx(10 * np.log10(4 / D**2), abs=0.05)
    assert s.max_abs <= D / 2
    assert abs(s.bias) < 2e-5
    # truncation toward zero of positive data: bias -D/2
    pos = np.abs(x)
    b = fa.format_errors("fixed10f6", pos, rounding="rtz").bias
    assert b == pytest.approx(-D / 2, rel=0.01)


def test_error_stats_against_ml_dtypes():
    x = fa.sample("student-t", 50_000, seed=2)
    q = x.astype(ml_dtypes.float8_e4m3fn).astype(np.float64)  # independent RNE rounding
    inr = np.abs(x) <= 448  # ml_dtypes turns overflow into NaN; compare in range only
    s = fa.format_errors("e4m3", x[inr])
    d = q[inr] - x[inr]
    assert s.mse == pytest.approx(np.mean(d * d), rel=1e-12)
    assert s.sqnr_db == pytest.approx(10 * np.log10(np.sum(x[inr] ** 2) / np.sum(d * d)), rel=1e-12)
    nz = x[inr] != 0
    assert s.max_rel == pytest.approx(np.max(np.abs(d[nz] / x[inr][nz])))
    assert s.max_ulp <= 0.5 + 1e-12  # round to nearest never errs by more than half an ULP
    assert s.flushed == pytest.approx(np.mean((q[inr] == 0) & nz))


def test_clipping_fraction():
    s = fa.format_errors("e4m3", [1.0, 500.0, -1000.0, 2.0])
    assert s.clipped == 0.5 and s.max_abs == 552.0


@settings(deadline=None, max_examples=25)
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=30))
def test_rel_abs_error_properties(v):
    x = np.array(v)
    q = x.astype(np.float16).astype(np.float64)
    a = fa.abs_error(q, x)
    r = fa.rel_error(q, x)
    assert np.all(a >= 0)
    nz = x != 0
    np.testing.assert_allclose(r[nz], a[nz] / np.abs(x[nz]))
    assert np.all(np.isnan(r[~nz]))
    normal = np.abs(x) >= 2.0**-14
    assert np.all(r[normal] <= 2.0**-11 + 1e-15)  # fp16 normal range: unit roundoff


def test_histogram_counts_and_plot(tmp_path):
    h = fa.error_histogram("e2m1", dist="laplace", n=5000, kind="ulp", bins=10)
    assert h.counts.sum() == 5000 and h.edges.size == 11
    assert sum(r["count"] for r in h.to_records()) == 5000
    fig = h.plot()
    assert fig.axes[1].get_xlabel() == "error (ULP)"
    fig.savefig(tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000
    assert "| lo | hi | count |" in h.to_markdown()


def test_clip_search_beats_every_candidate_by_brute_force():
    # Independent oracle for int4 (round half to even = np.round, saturate = clip).
    x = fa.sample("laplace", 4000, seed=5)

    def mse(c):
        s = c / 7.0
        q = np.clip(np.round(x / s), -8, 7) * s
        return np.mean((q - x) ** 2)

    r = fa.clip_search(x, "int4", n_grid=40)
    amax = np.max(np.abs(x))
    brute = min(mse(c) for c in np.linspace(amax / 400, amax, 400))
    assert r.mse <= brute * (1 + 1e-9)
    assert r.mse == pytest.approx(mse(r.clip), rel=1e-12)
    assert r.clip < 0.6 * amax and r.mse < 0.5 * r.mse_noclip  # heavy tails: clipping pays
    assert r.mse_noclip == pytest.approx(mse(amax), rel=1e-12)
    assert r.to_records()[0]["clip/amax"] == pytest.approx(r.clip / amax)
    assert r.plot().axes[0].get_xlabel() == "clip / amax"


def test_clip_search_exact_grid_and_power_of_two():
    x = np.arange(-127, 128) * 0.01  # exactly int8 * 0.01 (up to float64 rounding of the scale)
    r = fa.clip_search(x, "int8", n_grid=8)
    assert r.mse < 1e-30
    p = fa.clip_search(fa.sample("normal", 2000), "e4m3", power_of_two=True, n_grid=12)
    assert np.log2(p.scale) == np.round(np.log2(p.scale))


def test_compare_formats_and_plots(tmp_path):
    c = fa.compare_formats(["e4m3", "e5m2", "bf16"], n=4000)
    rec = c.to_records()
    assert [r["name"] for r in rec] == ["e4m3", "e5m2", "bf16"]
    assert rec[2]["sqnr_db[normal]"] > rec[0]["sqnr_db[normal]"] > rec[1]["sqnr_db[normal]"]
    assert rec[0]["dynamic_range_log2"] == pytest.approx(np.log2(448 / 2.0**-9))
    assert "sqnr_db[laplace]" in c.to_markdown()
    for fig in (c.plot(), fa.plot_value_grid(["e2m1", "e3m2", "e4m3"]),
                fa.plot_relative_precision(["e4m3", "bf16"]), fa.plot_dynamic_range(["e4m3", "int8"])):
        assert fig.axes[0].get_title()
        fig.savefig(tmp_path / "f.png")


def test_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        fa.abs_error([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="same shape"):
        fa.error_stats(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="empty"):
        fa.error_stats([], [])
    with pytest.raises(ValueError, match="empty"):
        fa.format_errors("e4m3", [])
    with pytest.raises(ValueError, match="dist='cauchy' is unknown"):
        fa.sample("cauchy")
    with pytest.raises(ValueError, match="kind="):
        fa.error_histogram("e4m3", [1.0], kind="log")
    with pytest.raises(ValueError, match="all zeros"):
        fa.clip_search([0.0, 0.0], "int4")
    with pytest.raises(ValueError, match="formats is empty"):
        fa.plot_dynamic_range([])
    with pytest.raises(ValueError, match="at most 16"):
        fa.plot_value_grid(["fp32"])
