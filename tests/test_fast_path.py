"""The fast quantize paths (fpsim/kernels/fast_round.py) against independent oracles.

``quantize`` sends the common cases (rne/rna/rtz/rup/rdn, signed formats with a zero) to
branch-free kernels; float32 + rne goes to a kernel where the FPU does the rounding. These
tests feed them (through the public ``quantize``) every 4099th float32 bit pattern plus
dense sweeps around the formats' tiny, tie and overflow regions, and compare with
ml_dtypes (rne, every family) and gfloat 0.5.2 (every mode). A last test checks that the
fast kernels and the general kernel agree on everything else the fast paths accept
(DAZ/FTZ, NaN policies, fixed point, float16/bfloat16/float64 inputs): the general kernel is
itself checked against the oracles in the other test files.
"""

from __future__ import annotations

import numpy as np
import pytest

import fpsim
from fpsim import lowering as L

ml_dtypes = pytest.importorskip("ml_dtypes")


def _patterns() -> np.ndarray:
    """Strided float32 bit patterns plus dense bands where the target grids change."""
    strided = np.arange(0, 2**32, 4099, dtype=np.uint64).astype(np.uint32)
    bands = []
    for lo in (0x00000000, 0x33000000, 0x3A000000, 0x3B800000, 0x3C800000, 0x3F800000,
               0x43E00000, 0x47600000, 0x7F7F0000, 0x7F800000):
        bands.append(np.arange(lo, min(lo + 2**16, 2**32 - 1), dtype=np.uint64).astype(np.uint32))
    # every exponent with every top-8 fraction (ties of all formats with M < 8), and +-1 ulp
    ef = np.arange(256, dtype=np.uint32)[:, None] << np.uint32(23)
    top = np.arange(256, dtype=np.uint32)[None, :] << np.uint32(15)
    grid = (ef | top).reshape(-1)
    bands += [grid, grid + np.uint32(1), grid - np.uint32(1)]
    b = np.concatenate([strided] + bands)
    return np.concatenate([b, b | np.uint32(0x80000000)]).view(np.float32)


X32 = _patterns()


def _same(a, b) -> np.ndarray:
    a, b = np.asarray(a), np.asarray(b)
    return (a == b) & (np.signbit(a) == np.signbit(b)) | (np.isnan(a) & np.isnan(b))


ML_CASES = [  # fpsim name, ml_dtypes type, overflow that matches ml_dtypes' cast
    ("e4m3", "float8_e4m3fn", "nan"),
    ("e5m2", "float8_e5m2", "inf"),
    ("e4m3fnuz", "float8_e4m3fnuz", "nan"),
    ("e5m2fnuz", "float8_e5m2fnuz", "nan"),
    ("e4m3b11fnuz", "float8_e4m3b11fnuz", "nan"),
    ("e3m4", "float8_e3m4", "inf"),
    ("fp16", None, "inf"),
    ("bf16", "bfloat16", "inf"),
    ("e2m1", "float4_e2m1fn", "saturate"),
    ("e2m3", "float6_e2m3fn", "saturate"),
    ("e3m2", "float6_e3m2fn", "saturate"),
]


@pytest.mark.parametrize("name,mlname,ovf", ML_CASES, ids=[c[0] for c in ML_CASES])
def test_rne_float32_matches_ml_dtypes(name, mlname, ovf):
    dt = np.float16 if mlname is None else getattr(ml_dtypes, mlname)
    x = X32 if fpsim.parse(name).has_nan else X32[~np.isnan(X32)]
    with np.errstate(all="ignore"):
        want = x.astype(dt).astype(np.float32)
    got = fpsim.quantize(x, name, overflow=ovf)
    ok = _same(got, want)
    if fpsim.parse(name).family == "finite":  # ml_dtypes saturates NaN-less types... and
        ok |= np.isinf(x)  # maps inf differently (fpsim saturates, SPEC 2); checked below
    assert ok.all(), (x[~ok][:5], got[~ok][:5], want[~ok][:5])


GF_MODES = ["rne", "rna", "rtz", "rup", "rdn"]


@pytest.mark.parametrize("mode", GF_MODES)
@pytest.mark.parametrize("name", ["e4m3", "e5m2", "e2m1", "e3m2"])
def test_modes_match_gfloat(name, mode):
    gfloat = pytest.importorskip("gfloat")
    import gfloat.formats as gff

    fi = getattr(gff, f"format_info_ocp_{name}")
    rnd = {"rne": gfloat.RoundMode.TiesToEven, "rna": gfloat.RoundMode.TiesToAway,
           "rtz": gfloat.RoundMode.TowardZero, "rup": gfloat.RoundMode.TowardPositive,
           "rdn": gfloat.RoundMode.TowardNegative}[mode]
    x = X32[np.isfinite(X32)][::7].astype(np.float64)
    want = gfloat.round_ndarray(fi, x, rnd=rnd, sat=True)
    got = fpsim.quantize(x.astype(np.float32), name, rounding=mode, overflow="saturate")
    ok = _same(got.astype(np.float64), want)
    assert ok.all(), (x[~ok][:5], got[~ok][:5], want[~ok][:5])


def _general(x, fmt, **kw):
    """The general kernel only (what quantize ran before the fast paths existed)."""
    from fpsim.kernels.float_round import quantize_serial

    fmt = fpsim.as_format(fmt)
    arr = np.ascontiguousarray(x)
    spec = L.options(fmt, kw.get("rounding", "rne"), kw.get("overflow"), kw.get("nan"),
                     kw.get("subnormals"), kw.get("daz", False), None)
    dt = L.DTYPES[arr.dtype]
    p = L.round_params(fmt, dt, spec)
    if p is None:
        return None
    xb = arr.reshape(-1).view(dt.uint)
    ob = np.empty_like(xb)
    err = quantize_serial(xb, ob, p, np.uint64(0))
    return ob.view(dt.dtype), err


CONSISTENCY = [
    ("e4m3", {}), ("e4m3", {"daz": True}), ("e4m3", {"subnormals": False}),
    ("e5m2", {"overflow": "saturate"}), ("e5m2", {"rounding": "rtz", "overflow": "inf"}),
    ("e5m2", {"rounding": "rup", "overflow": "inf"}), ("e5m2", {"rounding": "rdn", "overflow": "inf"}),
    ("e4m3", {"rounding": "rna", "overflow": "nan"}), ("e4m3fnuz", {"rounding": "rdn"}),
    ("e2m1", {"nan": "zero"}), ("e2m1", {"nan": "max", "rounding": "rup"}),
    ("int8", {}), ("int8", {"rounding": "rna"}), ("int4", {"rounding": "rdn"}),
    ("fixed8f4", {}), ("fixed16f3", {"rounding": "rup"}), ("bf16", {}), ("tf32", {}),
    ("fp16", {"subnormals": False, "daz": True}), ("e6m9", {"rounding": "rtz"}),
]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
@pytest.mark.parametrize("name,kw", CONSISTENCY, ids=[f"{n}-{k}" for n, k in CONSISTENCY])
def test_fast_paths_agree_with_general_kernel(name, kw, dtype):
    dt = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
    with np.errstate(all="ignore"):
        x = X32[::3].astype(dt)
    ref = _general(x, name, **kw)
    if ref is None:  # this dtype cannot hold the format's limits: quantize goes via float64
        return
    want, err = ref
    if err:
        with pytest.raises(ValueError, match="NaN"):
            fpsim.quantize(x, name, **kw)
        x = x[~np.isnan(x.astype(np.float32))]
        want, _ = _general(x, name, **kw)
    got = fpsim.quantize(x, name, **kw)
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8))


def test_small_and_large_arrays_agree():
    """Serial (small) and parallel (large) kernels give the same bits."""
    x = X32[np.isfinite(X32)][: 3 * L.PARALLEL_THRESHOLD]
    small = np.concatenate([fpsim.quantize(c, "e4m3") for c in np.array_split(x, 300)])
    assert np.array_equal(small.view(np.uint32), fpsim.quantize(x, "e4m3").view(np.uint32))
