"""Generic scaling (issue 3): per-tensor / per-channel / per-group scales, clipping, given
scales and delayed scaling, against an exact rational reference (``tests/reference.py``)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import fpsim
from reference import round_value

FP32 = fpsim.parse("fp32")


def _ref_scale(amax: Fraction, elem, scale_fmt="fp32", clip=1.0):
    """clip * amax / elem.max rounded (rne) into the scale format; 0 for amax 0."""
    if amax == 0:
        return Fraction(0)
    a = Fraction(float(Fraction(clip) * amax)) if clip != 1.0 else amax  # float64 product
    return Fraction(round_value(a / Fraction(elem.max), fpsim.parse(scale_fmt), "rne",
                                overflow="saturate"))


def _ref_elems(xs, s: Fraction, elem, mode="rne"):
    if s == 0:
        return [0.0] * len(xs)
    return [float(Fraction(round_value(Fraction(float(v)) / s, elem, mode, overflow="saturate")) * s)
            for v in xs]


@pytest.mark.parametrize("elem", ["e4m3", "e5m2", "int8", "e2m1"])
@pytest.mark.parametrize("mode", ["rne", "rtz", "rup"])
def test_per_tensor_matches_reference(elem, mode):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((7, 9)) * 3).astype(np.float32)
    f = fpsim.ScaledFormat(elem, "tensor")
    e = f.elem
    s = _ref_scale(max(Fraction(float(v)) for v in np.abs(x).ravel()), e)
    got = fpsim.quantize(x, f, rounding=mode)
    assert got.dtype == np.float64 and got.shape == x.shape  # fp32 scale x element > 24 bits
    assert got.ravel().tolist() == _ref_elems(x.ravel(), s, e, mode)
    c = fpsim.encode(x, f, rounding=mode)
    assert c.scales.shape == () and fpsim.decode(c.scales, "fp32") == float(s)
    np.testing.assert_array_equal(fpsim.decode(c, f), got)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_per_channel_any_axis_matches_reference(axis):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 5, 6)) * np.exp2(rng.integers(-5, 5, (4, 5, 6)))
    f = fpsim.ScaledFormat("e4m3", "channel", axis=axis)
    got = fpsim.quantize(x, f)
    xm = np.moveaxis(x, axis, 0)
    gm = np.moveaxis(got, axis, 0)
    c = fpsim.encode(x, f)
    for ch in range(xm.shape[0]):
        vals = xm[ch].ravel()
        s = _ref_scale(max(Fraction(float(v)) for v in np.abs(vals)), f.elem)
        assert fpsim.decode(c.scales[ch], "fp32") == float(s)
        assert gm[ch].ravel().tolist() == _ref_elems(vals, s, f.elem)
    np.testing.assert_array_equal(fpsim.decode(c, f), got)


def test_per_group_is_a_block_format_with_fp32_scales():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 50))
    f = fpsim.ScaledFormat("int4", "group", group=16, axis=1)
    got = fpsim.quantize(x, f)
    e = f.elem
    for r in range(6):
        for lo in range(0, 50, 16):
            blk = x[r, lo:lo + 16]
            s = _ref_scale(max(Fraction(float(v)) for v in np.abs(blk)), e)
            assert got[r, lo:lo + 16].tolist() == _ref_elems(blk, s, e)
    np.testing.assert_array_equal(got, fpsim.quantize(x, fpsim.BlockFormat("int4", 16, "fp32"), axis=1))
    np.testing.assert_array_equal(fpsim.decode(fpsim.encode(x, f), f), got)


def test_clip_ratio_and_other_scale_formats():
    x = np.array([0.01, 0.5, -1.0, 100.0])
    for scale in ("bf16", "e8m0", "e4m3"):
        f = fpsim.ScaledFormat("int8", "tensor", scale, clip=0.5)
        got = fpsim.quantize(x, f)
        if scale == "e8m0":  # floor rule: 2**(floor(log2 50) - floor(log2 127)) = 2**(5 - 6)
            s = Fraction(1, 2)
        else:
            s = _ref_scale(Fraction(100), f.elem, scale, clip=0.5)
        assert got.tolist() == _ref_elems(x, s, f.elem), scale
        assert got[3] < 100.0  # the outlier is clipped


def test_given_scale_and_given_amax():
    x = np.array([0.1, -2.0, 3.5, 1000.0])
    f = fpsim.ScaledFormat("e4m3", "tensor")
    r = fpsim.scale_tensor(x, f, scale=0.5)
    assert float(r.scales) == 0.5 and r.values.tolist() == _ref_elems(x, Fraction(1, 2), f.elem)
    r2 = fpsim.scale_tensor(x, f, amax=10.0)  # outliers saturate at 448 * scale
    s = _ref_scale(Fraction(10), f.elem)
    assert r2.values.tolist() == _ref_elems(x, s, f.elem) and r2.values[3] == float(448 * s)
    fc = fpsim.ScaledFormat("int8", "channel", axis=1)
    r3 = fpsim.scale_tensor(np.ones((3, 2)), fc, scale=[0.25, 0.125])
    assert r3.values.tolist() == [[1.0, 1.0]] * 3 and r3.scales.tolist() == [0.25, 0.125]
    with pytest.raises(ValueError, match="either scale= or amax="):
        fpsim.scale_tensor(x, f, scale=1.0, amax=1.0)


def test_nan_inf_and_zero():
    f = fpsim.ScaledFormat("e4m3", "channel", axis=0)
    x = np.array([[1.0, np.nan], [0.0, 0.0], [np.inf, 2.0]])
    got = fpsim.quantize(x, f)
    assert np.all(np.isnan(got[0])) and got[1].tolist() == [0.0, 0.0] and np.all(np.isnan(got[2]))


def test_delayed_scaling_follows_the_amax_history():
    ds = fpsim.DelayedScaling("e4m3", history=3, algo="max")
    steps = [np.array([1000.0, 1.0]), np.array([10.0, -2.0]), np.array([5.0]), np.array([3.0]),
             np.array([4.0])]
    hist, scale = [], Fraction(1)
    e4m3 = fpsim.parse("e4m3")
    for x in steps:
        got = ds(x)
        assert got.tolist() == _ref_elems(x, scale, e4m3)
        hist = ([max(abs(x))] + hist)[:3]
        scale = _ref_scale(Fraction(max(hist)), e4m3)
        assert ds.scale == float(scale)
    # 'most_recent' and a margin of 1 doubles the scale of the latest amax
    ds2 = fpsim.DelayedScaling("e5m2", history=4, algo="most_recent", margin=1)
    ds2(np.array([100.0]))
    ds2(np.array([3.0]))
    assert ds2.scale == float(_ref_scale(Fraction(6), fpsim.parse("e5m2")))


def test_names_and_bad_input():
    for f in (fpsim.ScaledFormat("e4m3"), fpsim.ScaledFormat("int8", "channel", "bf16", axis=-2),
              fpsim.ScaledFormat("e2m1", "group", "e8m0", group=32, clip=0.9, scale_rounding="rceil")):
        assert fpsim.parse(f.name) == f
    with pytest.raises(ValueError, match="granularity='bands'"):
        fpsim.ScaledFormat("e4m3", "bands")
    with pytest.raises(ValueError, match="needs group="):
        fpsim.ScaledFormat("e4m3", "group")
    with pytest.raises(ValueError, match="clip=2"):
        fpsim.ScaledFormat("e4m3", clip=2)
    with pytest.raises(TypeError, match="scale must be a float format"):
        fpsim.ScaledFormat("e4m3", "tensor", "int8")
    with pytest.raises(ValueError, match="out of range"):
        fpsim.quantize(np.ones((2, 2)), fpsim.ScaledFormat("e4m3", "channel", axis=3))


def test_delayed_scaling_update_state_and_eval():
    # issue 15: DelayedScaling worked only as ds(x). update(amax) records an amax measured
    # elsewhere; quantize(update=False) evaluates; state_dict/load_state_dict/reset
    e4m3 = fpsim.parse("e4m3")
    ds = fpsim.DelayedScaling("e4m3", history=3)
    hist = []
    for amax in (1000.0, 10, np.float32(5.0), 3.0):
        got = ds.update(amax)
        hist = ([Fraction(float(amax))] + hist)[:3]
        assert got == ds.scale == float(_ref_scale(max(hist), e4m3))
    x = np.array([300.0, -7.0])
    scale = Fraction(ds.scale)
    state = ds.state_dict()
    assert ds.quantize(x, update=False).tolist() == _ref_elems(x, scale, e4m3)
    assert ds.state_dict()["steps"] == 4 and ds.scale == float(scale)
    ds2 = fpsim.DelayedScaling("e4m3", history=3)
    ds2.load_state_dict(state)
    assert ds2(x).tolist() == ds(x).tolist() == _ref_elems(x, scale, e4m3)
    assert ds2.scale == ds.scale and ds2.amax_history.tolist() == ds.amax_history.tolist()
    ds.update(np.inf)  # recorded, keeps the scale (the history's max is inf)
    assert ds.scale == ds2.scale
    ds.reset()
    assert (ds.scale, ds.steps, ds.amax_history.tolist()) == (1.0, 0, [0.0, 0.0, 0.0])
    for bad, err in (("1", TypeError), (True, TypeError), (-1.0, ValueError)):
        with pytest.raises(err, match="amax"):
            ds.update(bad)
    with pytest.raises(ValueError, match="amax_history has 2 entries"):
        ds.load_state_dict({"amax_history": [1.0, 2.0], "scale": 1.0, "steps": 1})
