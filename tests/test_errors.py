"""Bad input raises ValueError/TypeError whose message says what is wrong and what is allowed."""

import numpy as np
import pytest

import fpsim
from fpsim import CodebookFormat, DIntFormat, FixedFormat, FloatFormat, IntFormat


@pytest.mark.parametrize("kw,match", [
    (dict(exp_bits=0, man_bits=3), r"1 <= exp_bits <= 11"),
    (dict(exp_bits=12, man_bits=3), r"1 <= exp_bits <= 11"),
    (dict(exp_bits=4, man_bits=60), r"0 <= man_bits <= 52"),
    (dict(exp_bits=4, man_bits=-1), r"0 <= man_bits <= 52"),
    (dict(exp_bits=4, man_bits=3, family="fnn"), r"allowed: ieee, fn, fnuz.*Did you mean 'fn"),
    (dict(exp_bits=4, man_bits=3, family="fnuz", signed=False), r"needs a sign bit"),
    (dict(exp_bits=8, man_bits=1, family="e8m0", signed=False), r"man_bits=0"),
    (dict(exp_bits=1, man_bits=3), r"ieee' needs exp_bits >= 2"),
    (dict(exp_bits=11, man_bits=52, bias=2000), r"outside float64"),
])
def test_bad_float_format(kw, match):
    with pytest.raises(ValueError, match=match):
        FloatFormat(**kw)


def test_bad_types_in_formats():
    with pytest.raises(TypeError, match="exp_bits must be an int"):
        FloatFormat(4.0, 3)
    with pytest.raises(TypeError, match="bias must be an int"):
        FloatFormat(4, 3, bias=1.5)
    with pytest.raises(TypeError, match="bits must be an int"):
        IntFormat(True)
    with pytest.raises(ValueError, match=r"2 <= bits <= 53"):
        IntFormat(64)
    with pytest.raises(ValueError, match="narrow=True only applies to signed"):
        IntFormat(8, signed=False, narrow=True)
    with pytest.raises(ValueError, match="-900..900"):
        FixedFormat(8, 5000)
    with pytest.raises(ValueError, match="allowed 2..16"):
        DIntFormat(1)
    with pytest.raises(ValueError, match="0 < special < 1"):
        DIntFormat(4, 1.5)
    with pytest.raises(ValueError, match="P3109 needs"):
        fpsim.p3109(8, 9)
    with pytest.raises(ValueError, match="allowed 'extended' or 'finite'"):
        fpsim.p3109(8, 3, domain="ext")


def test_bad_codebooks():
    with pytest.raises(ValueError, match=r"distinct; duplicated: \[0.5\]"):
        CodebookFormat([0.0, 0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match="finite"):
        CodebookFormat([0.0, np.nan])
    with pytest.raises(ValueError, match="at least 2 values"):
        CodebookFormat([1.0])
    with pytest.raises(TypeError, match="real numbers"):
        CodebookFormat(["a", "b"])


def test_unknown_name_suggests_closest():
    with pytest.raises(ValueError, match=r"unknown format name 'e4m3fz'.*Did you mean 'e4m3fnuz'"):
        fpsim.parse("e4m3fz")
    with pytest.raises(ValueError, match=r"Did you mean 'bf16'"):
        fpsim.parse("bf61")
    with pytest.raises(ValueError, match=r"Known names: .*e4m3"):
        fpsim.parse("nonsense")
    with pytest.raises(TypeError, match="must be a str"):
        fpsim.parse(3)
    with pytest.raises(TypeError, match="expected a Format or a format name"):
        fpsim.quantize(1.0, 8)


@pytest.mark.parametrize("x,match", [
    (np.array([True]), r"bool arrays are not accepted.*allowed dtypes"),
    (np.array([1 + 2j]), r"complex128 is not supported; allowed: float16, bfloat16"),
    (True, "not bool"),
    (1 + 2j, "complex input is not supported"),
    (np.bool_(True), "not bool"),
    ("1.0", "cannot quantize a str"),
])
def test_bad_input_types(x, match):
    with pytest.raises(TypeError, match=match):
        fpsim.quantize(x, "e4m3")


def test_ml_dtypes_int4_is_refused():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    with pytest.raises(TypeError, match="int4 is not supported"):
        fpsim.quantize(np.zeros(3, ml_dtypes.int4), "e2m1")


@pytest.mark.parametrize("order", [">", "<"])
@pytest.mark.parametrize("dt", ["f2", "f4", "f8"])
def test_any_byte_order_is_read(order, dt):
    x = np.random.default_rng(0).standard_normal(50).astype(order + dt)
    native = x.astype("=" + dt)
    q = fpsim.quantize(x, "e4m3")
    assert q.dtype == native.dtype and np.array_equal(q, fpsim.quantize(native, "e4m3"))
    assert np.array_equal(fpsim.encode(x, "e2m1"), fpsim.encode(native, "e2m1"))
    assert np.array_equal(fpsim.quantize(x, "mxfp4"), fpsim.quantize(native, "mxfp4"))


def test_ml_dtypes_small_floats_are_read_as_float32():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.abs(np.random.default_rng(1).standard_normal(64)).astype(np.float32) + 0.01
    for name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float6_e3m2fn",
                 "float4_e2m1fn", "float8_e8m0fnu"):
        y = x.astype(getattr(ml_dtypes, name))
        q = fpsim.quantize(y, "e2m1")
        assert q.dtype == np.float32, name
        assert np.array_equal(q, fpsim.quantize(y.astype(np.float32), "e2m1")), name
        assert float(fpsim.quantize(y[3], "bf16")) == float(fpsim.quantize(np.float32(y[3]), "bf16"))


def test_torch_tensor_is_refused_by_the_core():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="fpsim.torch.quantize"):
        fpsim.quantize(torch.ones(2), "e4m3")


def test_nan_into_nanless_format():
    x = np.array([1.0, np.nan])
    with pytest.raises(ValueError, match=r"e2m1 has no NaN.*nan='zero' or nan='max'"):
        fpsim.quantize(x, "e2m1")
    with pytest.raises(ValueError, match="has no NaN"):
        fpsim.quantize(x.astype(np.float32), "int8")
    with pytest.raises(ValueError, match="has no NaN"):
        fpsim.quantize(x, "nf4")
    with pytest.raises(ValueError, match="has no NaN"):
        fpsim.encode(x, "e3m2")
    assert fpsim.quantize(x, "e2m1", nan="zero").tolist() == [1.0, 0.0]
    assert fpsim.quantize(x, "e2m1", nan="max").tolist() == [1.0, 6.0]
    assert fpsim.quantize(x, "int8", nan="max").tolist() == [1.0, 127.0]
    with pytest.raises(ValueError, match=r"nan='propagate' needs a format with NaN.*'raise', 'zero' or 'max'"):
        fpsim.quantize(x, "e2m1", nan="propagate")
    with pytest.raises(ValueError, match=r"nan='zero' needs a format with a zero"):
        fpsim.quantize(x, "e8m0", nan="zero")
    with pytest.raises(ValueError, match=r"nan='nope' is not allowed; choose one of 'propagate'"):
        fpsim.quantize(x, "e4m3", nan="nope")


def test_bad_overflow_policies():
    with pytest.raises(ValueError, match=r"overflow='inf' needs a format with infinities; e4m3 has none \(use 'saturate' or 'nan'\)"):
        fpsim.quantize(1.0, "e4m3", overflow="inf")
    with pytest.raises(ValueError, match=r"overflow='nan' needs a format with NaN; e2m1 has none"):
        fpsim.quantize(1.0, "e2m1", overflow="nan")
    with pytest.raises(ValueError, match="only for integer and fixed-point"):
        fpsim.quantize(1.0, "e5m2", overflow="wrap")
    with pytest.raises(ValueError, match="full two's complement range"):
        fpsim.quantize(1.0, "int8_narrow", overflow="wrap")
    with pytest.raises(ValueError, match=r"overflow='clip' is not allowed; choose one of 'saturate', 'inf', 'nan', 'wrap'"):
        fpsim.quantize(1.0, "e5m2", overflow="clip")
    with pytest.raises(ValueError, match="overflow='inf' needs a format with infinities"):
        fpsim.quantize(1.0, "int8", overflow="inf")


def test_bad_rounding_seed_srbits():
    with pytest.raises(ValueError, match=r"rounding='nearest' is not allowed; choose one of 'rne', 'rna', 'rtz', 'rup', 'rdn', 'rto', 'stochastic'"):
        fpsim.quantize(1.0, "e4m3", rounding="nearest")
    with pytest.raises(TypeError, match="seed must be an int, a numpy Generator or None, got str"):
        fpsim.quantize(1.0, "e4m3", rounding="stochastic", seed="abc")
    with pytest.raises(TypeError, match="seed must be"):
        fpsim.quantize(1.0, "e4m3", rounding="stochastic", seed=1.5)
    with pytest.raises(ValueError, match="srbits only applies to rounding='stochastic'"):
        fpsim.quantize(1.0, "e4m3", srbits=4)
    for bad in (0, 63, 2.5, True):
        with pytest.raises(ValueError, match="allowed an int 1..62"):
            fpsim.quantize(1.0, "e4m3", rounding="stochastic", srbits=bad)


def test_decode_errors():
    with pytest.raises(ValueError, match=r"code 256 is outside 0..255 of the 8-bit format e4m3"):
        fpsim.decode(np.array([1, 256]), "e4m3")
    with pytest.raises(ValueError, match="outside 0..15"):
        fpsim.decode(np.array([-1]), "e2m1")
    with pytest.raises(TypeError, match="codes must be an integer array"):
        fpsim.decode(np.array([1.0]), "e4m3")
    with pytest.raises(ValueError, match="not used by the narrow format int8_narrow"):
        fpsim.decode(np.array([128], dtype=np.uint8), "int8_narrow")
    with pytest.raises(ValueError, match=r"code 5 is not used by codebook"):
        fpsim.decode(np.array([5]), CodebookFormat([0.0, 1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(ValueError, match="not representable in float16"):
        fpsim.decode(np.array([0x7F7F], dtype=np.uint16), "bf16", dtype=np.float16)
    with pytest.raises(TypeError, match="allowed dtypes: float16, bfloat16"):
        fpsim.decode(np.array([1]), "e4m3", dtype=np.int32)


def test_result_not_representable_in_input_dtype():
    # the e9m3 neighbour of float32's largest finite value is 2**128: float32 cannot hold it
    with pytest.raises(ValueError, match=r"e9m3 value .* not representable in float32; pass a float64"):
        fpsim.quantize(np.float32(3.4e38), "e9m3")
    with pytest.raises(ValueError, match="e6m2 value 65536.0 is not representable in float16"):
        fpsim.quantize(np.array([65504.0], dtype=np.float16), "e6m2")
    import ml_dtypes

    with pytest.raises(ValueError, match="not representable in bfloat16"):
        fpsim.quantize(np.array([3.38e38], dtype=ml_dtypes.bfloat16), "e9m3")
    # exact results are fine even when the format is wider than the input type
    assert fpsim.quantize(np.float16(1e-7), "fp32", rounding="rup") == np.float16(1e-7)
    # a float64 input gets the value
    assert fpsim.quantize(np.float64(3.4e38), "e9m3") == 2.0**128


def test_values_of_wide_format():
    with pytest.raises(ValueError, match="only available for formats of at most 16 bits"):
        fpsim.parse("fp32").values()
