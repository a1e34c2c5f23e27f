"""Fuzzing the core entry points (issue 16): any input either gives the right answer with the
documented shape and dtype, or a clear ValueError/TypeError. Never another exception, never a
silent change of shape, dtype or value.

Entry points: quantize, encode, decode, pack, unpack, parse, add/sub/mul/div/fma/sqrt, and the
block/scaled formats through quantize/encode/decode; torch tensors (float, float8, int and
bool dtypes; 0-d, empty, transposed, expanded, strided, requires_grad) through the core (a
TypeError naming the argument) and fpsim.torch.quantize (the numpy path's values, the tensor's
shape and dtype). Inputs: every numpy kind (bool, ints,
floats of every width and byte order, complex, strings, objects, datetimes), ml_dtypes arrays,
Python scalars, ints of any size, bools, nested lists; shapes 0-d, empty, 1-3-d; layouts
C, Fortran, reversed, strided, broadcast views, read-only, masked. Formats: valid names and
names one edit away. Options: valid values and values of wrong types.

Oracles: the exact-rational reference (tests/reference.py) for element formats and for the
arithmetic (Fraction results rounded by the reference), and decode(encode(x)) for every format.

The example count is modest by default (the file runs in well under a minute once the kernels
are compiled); run deeper with ``FPSIM_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py``.
"""

import math
import os
import warnings
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fpsim
import reference as ref

N = int(os.environ.get("FPSIM_FUZZ_EXAMPLES", "40"))
SETTINGS = settings(max_examples=N, deadline=None, derandomize="FPSIM_FUZZ_EXAMPLES" not in os.environ,
                    suppress_health_check=list(HealthCheck))

ELEMENT = ["e4m3", "e5m2", "bf16", "fp16", "fp32", "fp64", "e2m1", "e3m2", "e8m0", "e4m3fnuz",
           "e4m3_ftz", "ue5m2", "p3109_k8p3", "int8", "uint4", "int4_narrow", "fixed8f4",
           "nf4", "dint4"]
BLOCK = ["mxfp4", "mxfp8_e4m3", "mxint8", "nvfp4", "block[nf4,16,fp32]",
         "scaled[int8,channel,fp32]", "scaled[e4m3,tensor,fp32]", "mxfp4[axis=0]"]
FORMATS = ELEMENT + BLOCK
GRID = [f for f in ELEMENT if f not in ("nf4", "dint4")]

VALUES = [0.0, -0.0, 1.0, -1.0, 1.1, 0.3, -2.5, 6.0, 448.0, 449.0, 57344.0, 1e6, 1e-3, 2.0**-9,
          1e-300, 2.0**-127, 3.4e38, 1e300, math.inf, -math.inf, math.nan]

_EDIT_CHARS = "abefmnprtuxz0123456789[],=_-."


@st.composite
def format_names(draw):
    """A valid name, or one edit (insert, delete, replace a character) away from one."""
    name = draw(st.sampled_from(FORMATS))
    op = draw(st.sampled_from(["keep", "keep", "insert", "delete", "replace", "upper"]))
    if op == "keep" or not name:
        return name
    if op == "upper":
        return name.upper()
    i = draw(st.integers(0, len(name) - 1))
    c = draw(st.sampled_from(_EDIT_CHARS))
    if op == "insert":
        return name[:i] + c + name[i:]
    if op == "delete":
        return name[:i] + name[i + 1:]
    return name[:i] + c + name[i + 1:]


DTYPES = [np.float64, np.float32, np.float16, ">f8", ">f4", ">f2", ml_dtypes.bfloat16,
          ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, ml_dtypes.float4_e2m1fn, np.int8,
          np.int64, np.uint16, np.uint64, np.bool_, np.complex128, np.longdouble, "U3", object,
          "M8[s]", ml_dtypes.int4]
SHAPES = [(), (0,), (1,), (5,), (3, 4), (2, 0, 3), (2, 3, 2), (4, 32)]
LAYOUTS = ["c", "fortran", "reversed", "strided", "broadcast", "readonly", "masked"]


def _cast(vals, dtype):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        a = np.array(vals, dtype=np.float64)
        if np.dtype(dtype).kind in "iub":
            a = np.nan_to_num(a, nan=0.0, posinf=100.0, neginf=-100.0).clip(-100, 100)
        if np.dtype(dtype).kind == "M":
            return np.zeros(a.shape, dtype=dtype)
        return a.astype(dtype)


@st.composite
def arrays(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.sampled_from(SHAPES))
    layout = draw(st.sampled_from(LAYOUTS))
    n = int(np.prod(shape))
    vals = draw(st.lists(st.one_of(st.sampled_from(VALUES), st.floats(-1e4, 1e4)),
                         min_size=max(n, 1) * 2, max_size=max(n, 1) * 2))
    base = _cast(np.array(vals[: max(n, 1) * 2]), dtype)
    if layout == "strided":
        x = base[::2][:n].reshape(shape) if n else base[:0].reshape(shape)
    elif layout == "reversed":
        x = base[:n][::-1].reshape(shape) if n else base[:0].reshape(shape)
    elif layout == "broadcast":
        x = np.broadcast_to(base[:1].reshape(()), shape) if n else base[:0].reshape(shape)
    else:
        x = base[:n].reshape(shape)
        if layout == "fortran":
            x = np.asfortranarray(x)
        elif layout == "readonly":
            x = x.copy()
            x.setflags(write=False)
        elif layout == "masked":
            x = np.ma.array(x, mask=np.zeros(x.shape, bool))
    return x


SCALARS = st.one_of(
    st.sampled_from(VALUES), st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70), st.integers(-1000, 1000), st.booleans(),
    st.sampled_from([1 + 2j, "1.0", None, b"x", Fraction(1, 3)]),
    st.sampled_from([np.float32(1.1), np.float16(-3.0), np.float64(2.0**-1074), np.int32(3),
                     np.bool_(True), ml_dtypes.bfloat16(1.5)]),
    st.lists(st.one_of(st.floats(-1e6, 1e6), st.integers(-(2**60), 2**60)), max_size=5),
    st.lists(st.lists(st.floats(-10, 10), min_size=2, max_size=2), min_size=1, max_size=3),
)
INPUTS = st.one_of(arrays(), SCALARS)

ROUNDINGS = st.sampled_from(["rne", "rna", "rtz", "rup", "rdn", "rto", "stochastic", "RNE",
                             "nearest", 3, None])
OPTIONS = st.fixed_dictionaries({}, optional={
    "rounding": ROUNDINGS,
    "overflow": st.sampled_from([None, "saturate", "nan", "inf", "wrap", "Saturate", 1]),
    "subnormals": st.sampled_from([None, True, False, "False", 0, np.False_]),
    "daz": st.sampled_from([False, True, "False", 1]),
    "nan": st.sampled_from([None, "propagate", "zero", "max", "raise", "bad"]),
    "srbits": st.sampled_from([None, 8, 0, 2.5]),
})


def _attempt(fn, *args, **kw):
    """(result, None) or (None, error) for ValueError/TypeError; anything else fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kw), None
        except (ValueError, TypeError) as e:
            assert str(e), f"{type(e).__name__} without a message"
            return None, e


def _seeded(opts):
    o = dict(opts)
    if o.get("rounding") == "stochastic":
        o["seed"] = 7
    return o


def _expected_shape(x):
    return np.shape(np.asarray(x, dtype=object)) if isinstance(x, (list, tuple)) else np.shape(x)


def _expected_dtypes(x, fmt):
    """The result dtypes allowed for an array input (block formats may widen to float64)."""
    dt = np.asarray(x).dtype
    if dt.kind == "f" and not dt.isnative:
        dt = dt.newbyteorder("=")
    if isinstance(x, (list, tuple)) or dt.kind in "iu" or (dt.kind == "f" and dt.itemsize > 8):
        dt = np.dtype(np.float64)  # lists, integer and longdouble arrays are read as float64
    elif dt.itemsize == 1 or dt == np.dtype(ml_dtypes.float4_e2m1fn):
        dt = np.dtype(np.float32)  # ml_dtypes' small floats are read as float32
    allowed = {dt}
    if fmt.kind in ("block", "scaled"):
        allowed.add(np.dtype(np.float64))
    return allowed


def _flat64(v):
    return np.asarray(v, dtype=np.float64).reshape(-1)


# ---------------------------------------------------------------------------------------
# parse
# ---------------------------------------------------------------------------------------

@SETTINGS
@given(format_names())
def test_fuzz_parse(name):
    f, err = _attempt(fpsim.parse, name)
    if err is None:
        assert isinstance(f, fpsim.Format)
        assert fpsim.parse(f.name) == f


# ---------------------------------------------------------------------------------------
# quantize / encode / decode
# ---------------------------------------------------------------------------------------

@SETTINGS
@given(INPUTS, format_names(), OPTIONS)
def test_fuzz_quantize(x, name, opts):
    opts = _seeded(opts)
    q, err = _attempt(fpsim.quantize, x, name, **opts)
    if err is not None:
        return
    fmt = fpsim.parse(name)
    # type and shape
    if isinstance(x, (float, int)) and not isinstance(x, bool):
        assert isinstance(q, (float, np.floating)), type(q)
    elif isinstance(x, np.generic):
        assert isinstance(q, np.generic) and np.shape(q) == ()
    else:
        assert isinstance(q, np.ndarray), type(q)
        assert q.shape == _expected_shape(x)
        assert q.dtype in _expected_dtypes(x, fmt), (q.dtype, np.asarray(x).dtype)
    # value: decode(encode(x)) with the same options
    codes, err2 = _attempt(fpsim.encode, x, name, **opts)
    assert err2 is None, f"quantize worked but encode raised {err2!r}"
    back = fpsim.decode(codes, fmt)
    ref.assert_same(_flat64(q), _flat64(back), _flat64(x) if np.size(x) else None,
                    f"quantize vs decode(encode) {name} {opts}")
    # value: the exact-rational reference for element formats (small inputs)
    if name in ELEMENT and np.size(q) <= 8 and opts.get("rounding") != "stochastic":
        kw = {k: v for k, v in opts.items() if k in ("overflow", "subnormals", "daz", "nan")}
        mode = str(opts.get("rounding", "rne")).lower()
        xs = [float(v) for v in _flat64(np.asarray(x, dtype=np.float64)
                                        if not isinstance(x, np.ndarray) else x.astype(np.float64))]
        want = [ref.round_value(v, fmt, mode=mode, **{k: (bool(v2) if k in ("subnormals", "daz") and
                                                          v2 is not None else v2)
                                                      for k, v2 in kw.items()}) for v in xs]
        ref.assert_same(_flat64(q), np.array(want), np.array(xs), f"quantize vs reference {name} {opts}")


@SETTINGS
@given(st.sampled_from(FORMATS), st.sampled_from([np.uint8, np.uint16, np.int8, np.int64,
                                                  np.uint64, np.float64, np.bool_]),
       st.lists(st.integers(-3, 300), min_size=0, max_size=6),
       st.sampled_from([np.float64, np.float32, np.float16, np.int32, "f8", None]))
def test_fuzz_decode(name, cdt, vals, out):
    fmt = fpsim.parse(name)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codes = np.array(vals).astype(cdt)
    if fmt.kind in ("block", "scaled"):
        pair, err = _attempt(fpsim.encode, np.ones(4), fmt)
        assert err is None
        arg = (codes.reshape(-1)[:4] if codes.size >= 4 else pair[0], pair[1])
    else:
        arg = codes
    kw = {} if out is None else {"dtype": out}
    d, err = _attempt(fpsim.decode, arg, fmt, **kw)
    if err is not None:
        return
    assert isinstance(d, np.ndarray) and d.shape == np.shape(arg[0] if isinstance(arg, tuple) else arg)
    if fmt.kind not in ("block", "scaled") and fmt.bits <= 16:
        want = [ref.decode(int(c), fmt) for c in codes.reshape(-1)]
        ref.assert_same(_flat64(d), np.array(want), codes, f"decode {name}")


# ---------------------------------------------------------------------------------------
# pack / unpack
# ---------------------------------------------------------------------------------------

@SETTINGS
@given(st.lists(st.integers(-300, 300), max_size=12),
       st.sampled_from([np.uint8, np.int8, np.int16, np.uint16, np.int64, np.uint64, np.float64,
                        np.bool_, list]),
       st.sampled_from([1, 2, 3, 4, 5, 8, 0, 9, 2.5, True, "e2m1", "mxfp4", "e4m3", None]))
def test_fuzz_pack_unpack(vals, cdt, bits):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codes = list(vals) if cdt is list else np.array(vals).astype(cdt)
    p, err = _attempt(fpsim.pack, codes, bits)
    if err is not None:
        return
    b = bits if isinstance(bits, int) else fpsim.parse(bits).elem.bits if fpsim.parse(bits).kind == "block" \
        else fpsim.parse(bits).bits
    orig = np.asarray(vals, dtype=object)  # the codes as given, before any dtype cast
    as_given = np.asarray(codes).astype(object)
    assert all(0 <= int(c) < 2**b for c in as_given), "pack accepted an out-of-range code"
    assert p.dtype == np.uint8 and p.size == -(-len(vals) * b // 8)
    u = fpsim.unpack(p, bits, (len(vals),))
    assert u.tolist() == [int(c) for c in as_given]
    del orig


@SETTINGS
@given(st.sampled_from([(-1,), (2, -1), (3,), (0,), 2, (2.0,), None, (True,), "3", (1, 2)]),
       st.sampled_from([4, 2.5, "e2m1", 8]))
def test_fuzz_unpack_args(shape, bits):
    u, err = _attempt(fpsim.unpack, np.array([0x21, 0x0F], np.uint8), bits, shape)
    if err is None:
        want = (shape,) if isinstance(shape, int) else tuple(shape)
        assert u.shape == want and u.dtype == np.uint8


# ---------------------------------------------------------------------------------------
# arithmetic
# ---------------------------------------------------------------------------------------

OPS = {"add": (2, lambda a, b: a + b), "sub": (2, lambda a, b: a - b), "mul": (2, lambda a, b: a * b),
       "div": (2, lambda a, b: a / b if b else None), "fma": (3, lambda a, b, c: a * b + c),
       "sqrt": (1, None)}

OPERANDS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64).filter(lambda v: abs(v) < 1e150),
    st.integers(-(2**64), 2**64), st.sampled_from([0.0, -0.0, 1.0, 3.0, 2.0**-1074]),
    st.sampled_from([True, 1 + 1j, "2", None, np.int64(2), np.float32(0.1)]),
    st.builds(lambda v: np.array(v), st.floats(-1e3, 1e3)),
    st.builds(lambda v: np.array([v, -v]), st.floats(-1e3, 1e3)),
)


@SETTINGS
@given(st.sampled_from(list(OPS)), st.lists(OPERANDS, min_size=3, max_size=3),
       format_names(), st.sampled_from(["rne", "rna", "rtz", "rup", "rdn", "rto", "bad", 0]))
def test_fuzz_arith(op, operands, name, rounding):
    arity, exact = OPS[op]
    args = operands[:arity]
    r, err = _attempt(getattr(fpsim, op), *args, name, rounding=rounding)
    if err is not None:
        return
    fmt = fpsim.parse(name)
    assert fmt.kind in ("float", "int", "fixed"), f"arithmetic into {name} did not refuse"
    arrays_in = [a for a in args if isinstance(a, np.ndarray)]
    if arrays_in:
        assert isinstance(r, np.ndarray)
        assert r.shape == np.broadcast_shapes(*[a.shape for a in arrays_in])
    else:
        assert isinstance(r, float)
    # oracle: the exact rational result rounded once by the reference
    if exact is not None and not arrays_in:
        q = exact(*[Fraction(float(a)) if isinstance(a, np.floating) else Fraction(a) for a in args])
        if q is not None and q != 0:  # the sign of an exact zero has its own rules (tests/test_arith.py)
            want = ref.round_value(q, fmt, mode=str(rounding).lower())
            ref.assert_same(np.array([r]), np.array([want]), None, f"{op}{tuple(args)} {name}")


# ---------------------------------------------------------------------------------------
# torch tensors as inputs: the core refuses them (naming the argument and the torch entry
# point); fpsim.torch.quantize gives the numpy path's values on the same numbers, in the
# tensor's shape and dtype, or refuses the dtype.
# ---------------------------------------------------------------------------------------

try:
    import torch
except ImportError:  # the core fuzzing above runs without torch
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")
if torch is not None:
    _TORCH_DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16,
                     torch.float8_e4m3fn, torch.float8_e5m2, torch.int32, torch.int64, torch.bool]
    _TORCH_FLOAT = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
    # torch formats the numpy oracle reads exactly: element formats, and block formats along -1
    _TORCH_FORMATS = ["e4m3", "e5m2", "bf16", "fp16", "e2m1", "int8", "nf4", "mxfp4", "nvfp4"]
else:
    _TORCH_DTYPES = _TORCH_FLOAT = ()
    _TORCH_FORMATS = ["e4m3"]


@st.composite
def tensors(draw):
    dt = draw(st.sampled_from(_TORCH_DTYPES))
    shape = draw(st.sampled_from([(), (0,), (5,), (3, 4), (2, 0, 3), (2, 40)]))
    n = int(np.prod(shape, dtype=np.int64))
    vals = draw(st.lists(st.sampled_from(VALUES), min_size=n, max_size=n))
    t = torch.tensor(np.array(vals, dtype=np.float64).reshape(shape))
    if dt == torch.bool or not dt.is_floating_point:
        t = torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0).clamp(-1e6, 1e6)
    t = t.to(dt)
    layout = draw(st.sampled_from(["c", "t", "expand", "step", "grad"]))
    if layout == "t" and t.dim() == 2:
        t = t.t()
    elif layout == "expand" and t.dim() >= 1 and t.shape[0] > 0:
        t = t[:1].expand(3, *t.shape[1:])
    elif layout == "step" and t.dim() >= 1:
        t = t[::2]
    elif layout == "grad" and dt in _TORCH_FLOAT:
        t = t.clone().requires_grad_(True)
    return t


def _torch_as_numpy(t):
    """The tensor's numbers as a numpy array of the dtype the core reads them in."""
    a = t.detach()
    ml = {torch.bfloat16: ml_dtypes.bfloat16, torch.float8_e4m3fn: ml_dtypes.float8_e4m3fn,
          torch.float8_e5m2: ml_dtypes.float8_e5m2}
    if a.dtype in ml:  # numpy has no such dtype: through float32 (exact) to ml_dtypes
        return a.float().numpy().astype(ml[a.dtype])
    return a.numpy()


@needs_torch
@SETTINGS
@given(tensors(), st.sampled_from(["e4m3", "mxfp4", "nvfp4"]))
def test_fuzz_core_refuses_torch_tensors(t, name):
    for fn, args in ((fpsim.quantize, (t, name)), (fpsim.encode, (t, name)),
                     (fpsim.add, (t, 1.0, "e4m3")),
                     (fpsim.dot, (t.reshape(-1), t.reshape(-1)))):
        kw = {"model": fpsim.accum.Sequential("fp32")} if fn is fpsim.dot else {}
        with pytest.raises(TypeError, match=r"^\w+: torch tensors go through fpsim\.torch"):
            fn(*args, **kw)


@needs_torch
@SETTINGS
@given(tensors(), st.sampled_from(_TORCH_FORMATS), st.sampled_from(["numba", "torch"]))
def test_fuzz_torch_quantize_matches_numpy(t, name, impl):
    import fpsim.torch as ft
    got, err = _attempt(ft.quantize, t, name, impl=impl)
    want, werr = _attempt(fpsim.quantize, _torch_as_numpy(t), name)
    if err is not None:  # refused: a dtype the torch path does not take, or as numpy refuses
        assert t.dtype not in _TORCH_FLOAT or werr is not None, err
        return
    assert t.dtype in _TORCH_FLOAT, t.dtype
    assert got.shape == t.shape and got.dtype == t.dtype, (got.shape, got.dtype, t.shape, t.dtype)
    assert werr is None, f"numpy path refused what torch gave: {werr}"
    g = got.detach().double().numpy()
    # the result keeps the tensor's dtype (docs/torch.md): a value that needs more bits
    # (NVFP4 on float32: the numpy path returns float64) is that value rounded to the dtype
    w = torch.from_numpy(np.asarray(want, dtype=np.float64).reshape(g.shape)).to(t.dtype)
    w = w.double().numpy()
    assert ((g == w) | (np.isnan(g) & np.isnan(w))).all(), (t, g, w)
