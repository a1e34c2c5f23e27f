"""Block formats (issue 3): OCP MX against gfloat 0.5.2, torchao's scale rules against a
Fraction reference written from torchao's documented formulas, NVFP4 against an exact
rational reference, hand-checked OCP corner cases, names, packing and bad input."""

from __future__ import annotations

import math
import warnings
import zlib
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fpsim
from reference import floor_log2, round_value

gfloat = pytest.importorskip("gfloat")
from gfloat import RoundMode, compute_scale_amax, encode_block, quantize_block, round_float  # noqa: E402
from gfloat.formats import (format_info_mxfp4_e2m1, format_info_mxfp6_e2m3,  # noqa: E402
                            format_info_mxfp6_e3m2, format_info_mxfp8_e4m3,
                            format_info_mxfp8_e5m2, format_info_mxint8)

GF = {
    "mxfp8_e4m3": format_info_mxfp8_e4m3, "mxfp8_e5m2": format_info_mxfp8_e5m2,
    "mxfp6_e2m3": format_info_mxfp6_e2m3, "mxfp6_e3m2": format_info_mxfp6_e3m2,
    "mxfp4": format_info_mxfp4_e2m1, "mxint8": format_info_mxint8,
}
GF_MODE = {"rne": RoundMode.TiesToEven, "rna": RoundMode.TiesToAway, "rtz": RoundMode.TowardZero,
           "rup": RoundMode.TowardPositive, "rdn": RoundMode.TowardNegative}


def _blocks(rng, nblocks, k, fmt):
    """float32 blocks over a wide range, with zeros, element ties and subnormal elements."""
    x = rng.standard_normal((nblocks, k)) * np.exp2(rng.integers(-30, 30, (nblocks, 1)))
    f = fpsim.parse(fmt)
    vals = f.elem.values()
    # some blocks made of exact element midpoints (ties) times a power of two
    for b in range(0, nblocks, 5):
        i = rng.integers(0, vals.size - 1, k)
        mid = (vals[i] + vals[i + 1]) / 2
        x[b] = mid * 2.0 ** rng.integers(-10, 10)
    x[3::7, :5] = 0.0
    x[4::11] = 0.0  # all-zero blocks
    return x.astype(np.float32)


@pytest.mark.parametrize("name", list(GF))
def test_mx_quantize_and_encode_match_gfloat(name):
    rng = np.random.default_rng(list(GF).index(name))
    fi = GF[name]
    k = 32
    x = _blocks(rng, 40, k, name)
    for mode in GF_MODE:
        q = fpsim.quantize(x, name, rounding=mode)
        e, s = fpsim.encode(x, name, rounding=mode)
        assert q.dtype == np.float32 and e.shape == x.shape and s.shape == (40, 1)
        for b in range(x.shape[0]):
            blk = x[b].astype(np.float64)
            want = quantize_block(fi, blk, compute_scale_amax, GF_MODE[mode])
            np.testing.assert_array_equal(q[b].astype(np.float64), want, err_msg=f"{name} {mode} {b}")
            sc = compute_scale_amax(fi.etype.emax, blk)
            codes = list(encode_block(fi, sc, blk / sc, GF_MODE[mode]))
            assert int(s[b, 0]) == codes[0], (name, mode, b)
            assert e[b].tolist() == codes[1:], (name, mode, b)


@pytest.mark.parametrize("name", ["mxfp4", "mxfp8_e5m2", "mxint8"])
def test_mx_other_axis_and_partial_block_match_gfloat(name):
    rng = np.random.default_rng(7)
    fi = GF[name]
    x = (rng.standard_normal((70, 9)) * np.exp2(rng.integers(-8, 8, (1, 9)))).astype(np.float32)
    q = fpsim.quantize(x, name, axis=0)  # blocks 0:32, 32:64 and a partial 64:70 per column
    e, s = fpsim.encode(x, name, axis=0)
    assert s.shape == (3, 9)
    for j in range(9):
        for lo in (0, 32, 64):
            blk = x[lo:lo + 32, j].astype(np.float64)
            np.testing.assert_array_equal(q[lo:lo + 32, j], quantize_block(fi, blk, compute_scale_amax))
    np.testing.assert_array_equal(fpsim.decode((e, s), name, axis=0), q.astype(np.float64))


def test_3d_any_axis_encode_decode_roundtrip():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 40, 6)).astype(np.float32)
    for name in ("mxfp4", "mxfp6_e3m2", "nvfp4"):
        for ax in (0, 1, 2, -1):
            q = fpsim.quantize(x, name, axis=ax)
            c = fpsim.encode(x, name, axis=ax)
            np.testing.assert_array_equal(fpsim.decode(c, name), q.astype(np.float64))
    # along axis 1, each (i, :, k) fibre is blocked like a 1-D array on its own
    q = fpsim.quantize(x, "mxfp4", axis=1)
    for i in range(5):
        for k in range(6):
            np.testing.assert_array_equal(q[i, :, k], fpsim.quantize(np.ascontiguousarray(x[i, :, k]), "mxfp4"))


# -- hand-checked OCP corner cases -----------------------------------------------------------

def test_all_zero_block_gets_smallest_scale():
    e, s = fpsim.encode(np.zeros(32, np.float32), "mxfp8_e4m3")
    assert s.tolist() == [0] and e.tolist() == [0] * 32  # E8M0 code 0 = 2**-127
    assert fpsim.quantize(np.zeros(32), "mxfp4").tolist() == [0.0] * 32


def test_nan_in_block_makes_scale_nan_and_only_that_block():
    x = np.ones(64, np.float32)
    x[3] = np.nan
    e, s = fpsim.encode(x, "mxfp4")
    assert s.tolist() == [255, 125]  # E8M0 NaN, then 2**(floor(log2 1) - 2) for a block of ones
    q = fpsim.quantize(x, "mxfp4")
    assert np.all(np.isnan(q[:32])) and q[32:].tolist() == [1.0] * 32
    assert np.all(np.isnan(fpsim.decode((e, s), "mxfp4")[:32]))
    # E4M3 elements keep NaN codes for the NaN block (0x7F), like gfloat's encoding
    e8, s8 = fpsim.encode(x, "mxfp8_e4m3")
    assert s8[0] == 255 and set(e8[:32].tolist()) == {0x7F}


def test_inf_in_block_gives_nan_scale():
    x = np.ones(32)
    x[0] = np.inf
    e, s = fpsim.encode(x, "mxfp8_e5m2")
    assert s.tolist() == [255]
    assert np.all(np.isnan(fpsim.quantize(x, "mxfp8_e5m2")))


def test_amax_at_binade_edge():
    # amax = 4 = 2**2: shared exp floor(log2 4) - 2 = 0, scale 1; elements exact
    x = np.array([4.0, 1.5, -0.5] + [0.0] * 29, np.float32)
    e, s = fpsim.encode(x, "mxfp4")
    assert s[0] == 127 and fpsim.quantize(x, "mxfp4")[:3].tolist() == [4.0, 1.5, -0.5]
    # amax just below 4: shared exp 1 - 2 = -1, scale 1/2; 3.9999998 / 0.5 = 7.99.. saturates to 6 -> 3
    below = np.nextafter(np.float32(4), np.float32(0))
    x[0] = below
    assert fpsim.encode(x, "mxfp4")[1][0] == 126
    assert fpsim.quantize(x, "mxfp4")[0] == 3.0


def test_values_that_overflow_after_scaling_clamp_to_max():
    # amax 7 (binade [4, 8)): scale 1; 7 -> 6 (clamped); -5 ties between 4 and 6 -> even (4)
    x = np.array([7.0, -5.0, 5.5] + [0.0] * 29)
    assert fpsim.quantize(x, "mxfp4")[:3].tolist() == [6.0, -4.0, 6.0]
    # E4M3 elements: amax 480 (binade [256, 512)), scale 1, 480 > 448 -> 448
    y = np.array([480.0] + [1.0] * 31)
    assert fpsim.quantize(y, "mxfp8_e4m3")[0] == 448.0


def test_subnormal_elements():
    # scale 1 (amax 6); E2M1 subnormal is 0.5: 0.25 ties to 0 (even), 0.26 -> 0.5, 0.75 -> 1.0
    x = np.array([6.0, 0.25, 0.26, 0.75, -0.25] + [0.0] * 27)
    got = fpsim.quantize(x, "mxfp4")[:5]
    assert got.tolist() == [6.0, 0.0, 0.5, 1.0, -0.0]
    assert math.copysign(1, got[4]) == -1  # the sign of zero survives (E2M1 has -0)
    # without subnormals (FTZ elements) 0.5 flushes
    assert fpsim.quantize(x, "mxfp4", subnormals=False)[2] == 0.0


def test_mxint8_range():
    x = np.array([1.0, -1.0, 0.5] + [0.0] * 29)
    q = fpsim.quantize(x, "mxint8")  # amax 1: scale 2**0, int8 * 2**-6 grid, max 1.984375
    assert q[:3].tolist() == [1.0, -1.0, 0.5]
    x = np.array([-2.0, 1.999] + [0.0] * 30)  # amax 2: scale 2; -2 -> -1 * 2
    assert fpsim.quantize(x, "mxint8")[:2].tolist() == [-2.0, 2.0]


def test_float16_and_bfloat16_inputs():
    import ml_dtypes

    x = np.linspace(-3, 3, 64)
    for dt in (np.float16, ml_dtypes.bfloat16):
        xx = x.astype(dt)
        got = fpsim.quantize(xx, "mxfp8_e4m3")
        assert got.dtype == dt
        np.testing.assert_array_equal(got.astype(np.float64),
                                      fpsim.quantize(xx.astype(np.float64), "mxfp8_e4m3"))


def test_stochastic_rounding_picks_a_neighbour_and_is_reproducible():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(32 * 50).astype(np.float32)
    lo = fpsim.quantize(x, "mxfp4", rounding="rdn")
    hi = fpsim.quantize(x, "mxfp4", rounding="rup")
    a = fpsim.quantize(x, "mxfp4", rounding="stochastic", seed=1)
    b = fpsim.quantize(x, "mxfp4", rounding="stochastic", seed=1)
    np.testing.assert_array_equal(a, b)
    assert np.all((a == lo) | (a == hi))
    assert not np.array_equal(a, fpsim.quantize(x, "mxfp4", rounding="stochastic", seed=2))
    # unbiased: the mean of many draws approaches x (one value, scale fixed by amax 6)
    blk = np.array([6.0] + [1.2] * 31)
    m = np.mean([fpsim.quantize(blk, "mxfp4", rounding="stochastic", seed=s)[1:] for s in range(200)])
    assert abs(m - 1.2) < 0.02


# -- torchao scale rules: Fraction reference written from torchao's documented formulas ----

def _ref_scale_exp(amax: Fraction, rule: str, emax: int, mbits: int, maxv: Fraction) -> int:
    if amax == 0:
        return -127
    if rule == "floor":
        s = floor_log2(amax) - emax
    elif rule == "ceil":  # torchao CEIL: exponent of amax, +1 if its mantissa is non-zero
        fl = floor_log2(amax)
        s = fl + (amax != Fraction(2) ** fl) - emax
    elif rule == "even":  # torchao EVEN: amax rounded half-up to mbits fraction bits, then floor
        fl = floor_log2(amax)
        ulp = Fraction(2) ** (fl - mbits)
        r = math.floor(amax / ulp + Fraction(1, 2)) * ulp
        s = floor_log2(r) - emax
    else:  # rceil: ceil(log2(amax / max_elem))
        t = amax / maxv
        fl = floor_log2(t)
        s = fl + (t != Fraction(2) ** fl)
    return max(-127, min(127, s))


def _amax_cases(rng, maxv):
    """Block maxima at and around the rule boundaries, plus random and subnormal ones."""
    out = [1.0, 4.0, 6.0, 7.0, 7.5, 448.0, 57344.0, 1e-40, 3e-39, 1.5e38]
    for e in range(-20, 20, 3):
        for m in (1.0, 1.5, 1.75, 1.875, 1.9375, float(maxv) / 2 ** math.floor(math.log2(maxv))):
            v = np.float32(m * 2.0**e)
            out += [float(v), float(np.nextafter(v, np.float32(0))), float(np.nextafter(v, np.float32(np.inf)))]
    out += list(np.abs(rng.standard_normal(100) * np.exp2(rng.integers(-30, 30, 100))).astype(np.float32))
    return [float(v) for v in out]


@pytest.mark.parametrize("rule", ["floor", "ceil", "even", "rceil"])
@pytest.mark.parametrize("name", ["mxfp4", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp8_e4m3", "mxfp8_e5m2"])
def test_scale_rules_match_fraction_reference(rule, name):
    fmt = fpsim.parse(name).replace(scale_rounding=rule)
    assert fpsim.parse(fmt.name) == fmt
    elem = fmt.elem
    fi = GF[name].etype
    rng = np.random.default_rng(11)
    amaxes = _amax_cases(rng, elem.max)
    k = 8
    x = np.zeros((len(amaxes), k), np.float32)
    x[:, 0] = amaxes
    x[:, 1:] = (np.array(amaxes)[:, None] * rng.uniform(-1, 1, (len(amaxes), k - 1))).astype(np.float32)
    fmt = fmt.replace(block=k)
    e, s = fpsim.encode(x, fmt)
    q = fpsim.quantize(x, fmt)
    for i, a in enumerate(amaxes):
        want = _ref_scale_exp(Fraction(a), rule, elem.emax, elem.man_bits, Fraction(elem.max))
        assert int(s[i, 0]) - 127 == want, (name, rule, a)
        sc = 2.0**want
        for j in range(k):  # elements: gfloat's saturating RNE of x / scale
            ref = round_float(fi, float(x[i, j]) / sc, RoundMode.TiesToEven, True) * sc
            assert q[i, j] == ref, (name, rule, a, x[i, j])


def _torchao_f32_emulation(amax32: np.ndarray, rule: str, emax: int, mbits: int, maxv: float):
    """torchao's float32 bit recipe (FLOOR/CEIL/EVEN on the amax bits; RCEIL via
    amax * (1/max_pos) in float32 rounded up to a power of two), in numpy."""
    b = amax32.astype(np.float32).view(np.int32).astype(np.int64)
    if rule == "even":
        b = (b + (1 << (23 - mbits - 1))) & (0x1FF << 23)
    if rule == "rceil":
        d = (amax32.astype(np.float32) * np.float32(1.0 / np.float32(maxv))).astype(np.float32)
        db = d.view(np.int32).astype(np.int64)
        ex, man = db >> 23, db & 0x7FFFFF
        up = np.where(ex == 0, man > 0x400000, man != 0)
        return ex + up - 127
    ex = ((b >> 23) & 0xFF) - 127
    if rule == "ceil":
        ex = ex + ((b & 0x7FFFFF) > 0)
    return np.clip(ex - emax, -127, 128)


@pytest.mark.parametrize("rule", ["floor", "ceil", "even", "rceil"])
def test_scale_rules_agree_with_torchao_float32_recipe(rule):
    # normal float32 maxima (torchao's bit tricks differ only for float32 subnormals)
    rng = np.random.default_rng(2)
    for name in ("mxfp4", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp8_e4m3", "mxfp8_e5m2"):
        elem = fpsim.parse(name).elem
        a = np.array([v for v in _amax_cases(rng, elem.max) if 2.0**-100 < v < 2.0**100], np.float32)
        want = _torchao_f32_emulation(a, rule, elem.emax, elem.man_bits, elem.max)
        _, s = fpsim.encode(a.reshape(-1, 1), fpsim.parse(name).replace(scale_rounding=rule, block=1))
        np.testing.assert_array_equal(s[:, 0].astype(np.int64) - 127, want, err_msg=f"{name} {rule}")


# -- NVFP4 against an exact rational reference ----------------------------------------------

def test_nvfp4_matches_rational_reference():
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((4, 48)) * np.exp2(rng.integers(-6, 6, (4, 1)))).astype(np.float32)
    x[1, 16:32] = 0.0  # a zero block
    x[2, :16] *= 1e-6  # a tiny block: its E4M3 scale is subnormal or rounds to zero
    fmt = fpsim.parse("nvfp4")
    fp32, e4m3, e2m1 = fpsim.parse("fp32"), fpsim.parse("e4m3"), fpsim.parse("e2m1")
    amax_t = Fraction(float(np.max(np.abs(x))))
    g = Fraction(round_value(amax_t / (6 * 448), fp32, "rne"))
    q = fpsim.quantize(x, fmt)
    c = fpsim.encode(x, fmt)
    assert q.dtype == np.float64 and c.scales.shape == (4, 3)
    assert fpsim.decode(c.tensor_scale.reshape(()), "fp32") == float(g)
    for r in range(4):
        for b in range(3):
            blk = [Fraction(float(v)) for v in x[r, 16 * b:16 * b + 16]]
            amax = max(abs(v) for v in blk)
            sb = Fraction(round_value(amax / (6 * g), e4m3, "rne", overflow="saturate"))
            assert fpsim.decode(c.scales[r, b], e4m3) == float(sb)
            for j, v in enumerate(blk):
                want = 0.0 if sb == 0 else float(Fraction(round_value(v / (sb * g), e2m1, "rne")) * sb * g)
                assert q[r, 16 * b + j] == want, (r, b, j)
    np.testing.assert_array_equal(fpsim.decode(c, fmt), q)


# -- names, descriptors, packing ------------------------------------------------------------

@pytest.mark.parametrize("name", ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp4",
                                  "mxint8", "nvfp4"])
def test_preset_names_round_trip(name):
    f = fpsim.parse(name)
    assert isinstance(f, fpsim.BlockFormat) and f.name == name and fpsim.parse(repr(f.name)[1:-1]) == f
    assert fpsim.parse(name.upper()) == f
    assert f.emax_elem == {"mxfp8_e4m3": 8, "mxfp8_e5m2": 15, "mxfp6_e2m3": 2, "mxfp6_e3m2": 4,
                           "mxfp4": 2, "mxint8": 0, "nvfp4": 2}[name]


def test_descriptor_properties():
    f = fpsim.parse("mxfp4")
    assert (f.bits, f.elem_bits, f.scale_bits, f.block, f.max) == (4.25, 4, 8, 32, 6.0 * 2.0**127)
    assert fpsim.parse("nvfp4").bits == 4.5
    assert fpsim.parse("mxfp4_e2m1") == f
    # no values of its own (they depend on the block scale): absent, not a method that raises
    assert not hasattr(f, "values") and not hasattr(f, "code_table")
    assert not hasattr(fpsim.as_format("scaled[int8,tensor,fp32]"), "values")
    with pytest.raises(AttributeError, match="mxfp4 has no values.*elem.values"):
        f.values()
    assert f.elem.values().size == 15


@settings(max_examples=40, deadline=None)
@given(elem=st.sampled_from(["e2m1", "e4m3", "e5m2", "int4", "fixed8f6", "bf16"]),
       block=st.integers(1, 64), scale=st.sampled_from(["e8m0", "e4m3", "bf16", "fp32"]),
       axis=st.integers(-3, 2), rule=st.sampled_from([None, "floor", "ceil", "even", "rceil", "rup"]),
       tensor=st.sampled_from([None, "fp32"]), partial=st.booleans())
def test_any_block_format_name_parses_back(elem, block, scale, axis, rule, tensor, partial):
    try:
        f = fpsim.BlockFormat(elem, block, scale, axis=axis, scale_rounding=rule, tensor_scale=tensor,
                              partial=partial)
    except ValueError as e:  # bf16 * fp32 * fp32 products do not fit float64 exactly
        assert "53 bits" in str(e)
        return
    assert fpsim.parse(f.name) == f
    assert eval(repr(f), {"BlockFormat": fpsim.BlockFormat}) == f


@settings(max_examples=30, deadline=None)
@given(bits=st.integers(1, 8), n=st.integers(0, 70), seed=st.integers(0, 2**32 - 1))
def test_pack_unpack_round_trip(bits, n, seed):
    c = np.random.default_rng(seed).integers(0, 2**bits, n).astype(np.uint8)
    p = fpsim.pack(c, bits)
    assert p.dtype == np.uint8 and p.size == -(-n * bits // 8)
    np.testing.assert_array_equal(fpsim.unpack(p, bits, n), c)


def test_pack_fp4_two_codes_per_byte():
    e, _ = fpsim.encode(np.array([1.0, -3.0, 0.5, 6.0]), "mxfp4")  # codes 2, 13, 1, 7
    p = fpsim.pack(e, "mxfp4")
    assert p.tolist() == [2 | 13 << 4, 1 | 7 << 4]
    np.testing.assert_array_equal(fpsim.unpack(p, "e2m1", e.shape), e)


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 40), min_size=1, max_size=3), data=st.data(),
       name=st.sampled_from(["mxfp4", "mxfp8_e5m2", "mxint8", "nvfp4"]),
       mode=st.sampled_from(["rne", "rtz", "rup", "stochastic"]))
def test_decode_inverts_encode(shape, data, name, mode):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = np.random.default_rng(len(shape) * 7 + axis).standard_normal(shape) * 100
    q = fpsim.quantize(x, name, axis=axis, rounding=mode, seed=3)
    c = fpsim.encode(x, name, axis=axis, rounding=mode, seed=3)
    np.testing.assert_array_equal(fpsim.decode(c, name), q)


# -- bad input --------------------------------------------------------------------------------

def test_bad_input_errors():
    x = np.ones((4, 30))
    with pytest.raises(ValueError, match="does not divide"):
        fpsim.quantize(x, fpsim.BlockFormat("e2m1", 32, "e8m0", partial=False))
    with pytest.raises(ValueError, match="axis=2 is out of range"):
        fpsim.quantize(x, "mxfp4", axis=2)
    with pytest.raises(TypeError, match="scale must be a float format"):
        fpsim.BlockFormat("e2m1", 32, "int8")
    with pytest.raises(TypeError, match="elements must be"):
        fpsim.BlockFormat("uint4", 32, "e8m0")
    with pytest.raises(ValueError, match="block=0"):
        fpsim.BlockFormat("e2m1", 0, "e8m0")
    with pytest.raises(ValueError, match="scale_rounding='nearest'"):
        fpsim.BlockFormat("e2m1", 32, "e8m0", scale_rounding="nearest")
    with pytest.raises(ValueError, match="unknown format name|unknown block format"):
        fpsim.parse("mxfp5")
    with pytest.raises(ValueError, match="always saturate"):
        fpsim.quantize(x, "mxfp4", overflow="inf")
    with pytest.raises(ValueError, match="only applies to block"):
        fpsim.quantize(x, "e4m3", axis=0)
    e, s = fpsim.encode(x, "mxfp4")
    with pytest.raises(ValueError, match="scale codes have shape"):
        fpsim.decode((e, s[:, :0]), "mxfp4")
    with pytest.raises(ValueError, match="per-tensor scale"):
        fpsim.decode(tuple(fpsim.encode(x, "nvfp4")), "nvfp4")
    with pytest.raises(ValueError, match="1..8 bits"):
        fpsim.pack(e, 9)


def test_plot_block_error_returns_figure(tmp_path):
    from matplotlib.figure import Figure

    from fpsim.analysis import plot_block_error

    x = np.random.default_rng(0).standard_normal((8, 64))
    fig = plot_block_error(x, ["mxfp4", "mxfp8_e4m3"])
    assert isinstance(fig, Figure)
    fig.savefig(tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 1000
    err = fpsim.block.block_errors(x, "mxfp4")
    assert err.shape == (8, 2) and np.all((err > 0) & (err < 0.5))
    assert not hasattr(fpsim.block, "plot_block_error")  # figures live in fpsim.analysis


def test_callers_of_values_say_why_for_block_and_scaled_formats(capsys):
    from fpsim.analysis import format_table, plot_value_grid
    from fpsim.cli import main

    assert main(["values", "mxfp4"]) == 0  # the element values, with a note on the scale
    out = capsys.readouterr().out
    assert "block format, 32 elements share one e8m0 scale" in out and "0x7  0111  6.0" in out
    assert main(["values", "scaled[e2m1,group,e8m0,group=16]"]) == 0
    assert "scaled format" in capsys.readouterr().out
    rows = format_table(["mxfp4", "scaled[int8,channel,fp32]"])
    assert [r["values"] for r in rows] == [None, None]
    for name in ("mxfp4", "scaled[int8,tensor,fp32]"):
        with pytest.raises(TypeError, match="no value grid of its own.*element format"):
            plot_value_grid([name])


def test_core_block_modules_import_no_matplotlib_and_no_block_privates():
    import ast
    import pathlib
    import subprocess
    import sys

    code = ("import sys; import fpsim, fpsim.block, fpsim.scaling; "
            "assert not any(m.startswith('matplotlib') for m in sys.modules), 'matplotlib'")
    subprocess.run([sys.executable, "-c", code], check=True)
    # scaling reaches the block engine through its public-internal names only
    tree = ast.parse(pathlib.Path(fpsim.scaling.__file__).read_text())
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name) and n.value.id == "_EN"}
    assert used and not [u for u in used if u.startswith("_")], used
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                and (n.module or "").startswith("block") for a in n.names]
    assert imported and not [a for a in imported if a.startswith("_")], imported


def _extreme_f32(rng, shape):
    """float32 data over the whole range: normals of every binade, subnormals, zeros, max,
    NaN and inf in a few places, and element ties."""
    e = rng.integers(-149, 128, shape)
    x = rng.uniform(1, 2, shape) * np.exp2(e.astype(np.float64))
    x = np.where(rng.random(shape) < 0.5, -x, x)
    x = np.clip(x, -np.finfo(np.float32).max, np.finfo(np.float32).max)
    # blocks with a narrow range too (the common case), and exact element ties
    x[::3] = rng.standard_normal(x[::3].shape) * 2.0 ** rng.integers(-140, 120)
    x[1::5] = (rng.integers(-20, 20, x[1::5].shape) + 0.5) * 2.0 ** rng.integers(-130, 110)
    x = x.astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.integers(0, flat.size, 3)] = np.nan
    flat[rng.integers(0, flat.size, 2)] = np.inf
    flat[rng.integers(0, flat.size, 2)] = np.finfo(np.float32).max
    flat[rng.integers(0, flat.size, 20)] = 0.0
    return x


@pytest.mark.parametrize("name", ["mxfp4", "mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxint8",
                                  "nvfp4", "block[e4m3,16,e8m0,scale_rounding=ceil]",
                                  "block[e5m2,8,e8m0]", "block[e2m1,32,bf16,scale_rounding=rne]"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_float32_lanes_equal_the_float64_path(name, axis):
    """float32 inputs take float32 lanes (block_round._f32_ok / _floor32) where that is exact;
    float64 inputs never do: both must give the same values, NaN blocks included."""
    for seed in range(4):
        rng = np.random.default_rng([zlib.crc32(name.encode()), axis + 1, seed])
        x = _extreme_f32(rng, (96, 64))
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always", RuntimeWarning)  # values beyond float32: below
            got = fpsim.quantize(x, name, axis=axis).astype(np.float64)
            want = fpsim.quantize(x.astype(np.float64), name, axis=axis)
        big = np.abs(want) > np.finfo(np.float32).max
        # only rounded-up scales, or MXINT8's -2 element, pass float32's range, and they warn
        f = fpsim.parse(name)
        assert not big.any() or f.scale_rounding != "floor" or f.elem.name == "fixed8f6"
        assert big.any() == any("exceed the range of float32" in str(m.message) for m in w)
        np.testing.assert_array_equal(got[~big], want[~big])
        assert np.all(np.isinf(got[big]) & (np.sign(got[big]) == np.sign(want[big])))


def test_values_beyond_the_float32_range_warn():
    x = np.full((1, 32), np.finfo(np.float32).max, dtype=np.float32)
    with pytest.warns(RuntimeWarning, match="exceed the range of float32"):
        q = fpsim.quantize(x, "block[e4m3,32,e8m0,scale_rounding=ceil]")
    assert np.isinf(q).all()  # 256 * 2**120 = 2**128
    assert fpsim.quantize(x.astype(np.float64), "block[e4m3,32,e8m0,scale_rounding=ceil]")[0, 0] == 2.0**128


# --- table elements (dINT, codebooks such as NF4) ----------------------------------------

def _table_ref(x, name, k):
    """Exact reference of block quantization with table elements, one block at a time:
    the scale from the block's amax (floor rule for e8m0, otherwise amax / elem.max rounded
    to nearest into the scale format), then every element the exact quotient rounded to the
    table (reference.round_value: nearest value, ties to the even code)."""
    from reference import round_value
    f = fpsim.parse(name)
    out = np.empty(x.shape)
    for r in range(x.shape[0]):
        for lo in range(0, x.shape[1], k):
            blk = x[r, lo:lo + k].astype(np.float64)
            amax = Fraction(float(np.max(np.abs(blk))))
            if amax == 0:
                scale = Fraction(2) ** -127 if f.scale.name == "e8m0" else Fraction(0)
            elif f.scale.name == "e8m0":
                s = floor_log2(amax) - math.floor(math.log2(f.elem.max))
                scale = Fraction(2) ** min(max(s, -127), 127)
            else:
                scale = Fraction(round_value(amax / Fraction(f.elem.max), f.scale))
            for i, v in enumerate(blk):
                out[r, lo + i] = 0.0 if scale == 0 else float(
                    Fraction(round_value(Fraction(float(v)) / scale, f.elem)) * scale)
    return out


@pytest.mark.parametrize("name,k", [("block[dint4,16,e8m0]", 16), ("block[nf4,64,fp32]", 64),
                                    ("block[dint4,8,fp32]", 8), ("block[nf4,16,bf16]", 16)])
def test_table_elements_match_the_exact_reference(name, k):
    rng = np.random.default_rng(k)
    x = rng.standard_normal((12, 4 * k)) * np.exp2(rng.integers(-20, 20, (12, 1)))
    f = fpsim.parse(name)
    vals = f.elem.values()
    # ties: rows whose blocks hold the largest element (so the scale is known) and exact
    # midpoints between neighbouring table values
    for r in (2, 7):
        i = rng.integers(0, vals.size - 1, 4 * k)
        x[r] = (vals[i] + vals[i + 1]) / 2
        x[r, ::k] = vals[-1]
    x[5, :k] = 0.0  # an all-zero block
    x = x.astype(np.float32)
    got = fpsim.quantize(x, name)
    np.testing.assert_array_equal(got.astype(np.float64), _table_ref(x, name, k))
    codes = fpsim.encode(x, name)
    assert codes[0].dtype == np.uint8 and codes[0].max() < 16
    np.testing.assert_array_equal(fpsim.decode(codes, name), got.astype(np.float64))


def test_table_elements_per_channel_group_and_nan_blocks():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 32))
    # per-channel dINT4 (W4A8 style): each row's scale is its amax / 6 in fp32
    q = fpsim.quantize(w, "scaled[dint4,channel,fp32,axis=0]")
    s = fpsim.quantize(np.abs(w).max(axis=1) / 6.0, "fp32")
    assert np.array_equal(q, fpsim.quantize(w / s[:, None], "dint4") * s[:, None])
    # per-group NF4 with given scales
    st = fpsim.scale_tensor(w, "scaled[nf4,group,fp32,group=16]")
    assert st.scales.shape == (8, 2)
    x = w.copy()
    x[1, 3] = np.nan
    x[4, 20] = np.inf
    qb = fpsim.quantize(x, "block[nf4,16,fp32]")
    assert np.isnan(qb[1, :16]).all() and np.isnan(qb[4, 16:]).all()
    assert np.isfinite(np.delete(qb.reshape(-1, 16), [2, 9], axis=0)).all()
    e, sc = fpsim.encode(x, "block[nf4,16,fp32]")
    sv = fpsim.decode(sc, "fp32")
    assert np.isnan(sv[1, 0]) and np.isnan(sv[4, 1]) and np.isnan(sv).sum() == 2
    assert np.isnan(fpsim.decode((e, sc), "block[nf4,16,fp32]")[1]).sum() == 16
    with pytest.raises(TypeError, match="positive and negative"):
        fpsim.BlockFormat(fpsim.CodebookFormat([0.0, 0.5, 1.0]), 16, "fp32")


def test_values_beyond_the_float16_and_bfloat16_range_say_so():
    # never a silent inf: float16 results are cast exactly (a clear error), bfloat16 ones warn
    # (the range check reads bfloat16's largest number from the carrier's bit layout)
    import ml_dtypes
    f16, bf16 = np.float16, ml_dtypes.bfloat16
    x16 = np.full(32, float(np.finfo(f16).max)).astype(f16)
    with pytest.raises(ValueError, match="not representable in float16"):
        fpsim.quantize(x16, "mxfp8_e4m3[scale_rounding=ceil]")
    xb = np.full(32, float(ml_dtypes.finfo(bf16).max)).astype(bf16)
    with pytest.warns(RuntimeWarning, match="32 quantized value.*exceed the range of bfloat16"):
        q = fpsim.quantize(xb, "mxfp4[scale_rounding=ceil]")
    assert q.dtype == np.dtype(bf16) and np.all(np.isinf(q.astype(np.float64)))
    for x, name in ((x16, "mxfp8_e4m3"), (xb, "mxfp4")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the floor rule stays in range: no warning
            q = fpsim.quantize(x, name)
        assert q.dtype == x.dtype and np.all(np.isfinite(q.astype(np.float64)))
