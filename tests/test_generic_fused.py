"""fpsim.accum.FusedDotAdd: the generic fused dot-add kernel against every fast fused model
(FusedBlock, BlockScaledFused presets) on random inputs, and its what-ifs (sticky bit,
rounding to nearest) against an exact-rational reference written from the field rules."""

import dataclasses
from fractions import Fraction

import numpy as np
import pytest

import fpsim
from fpsim import accum as A
from fpsim.accum import generic as G
from fpsim.gpus import GPU_TABLE


def _presets():
    out = {}
    for g in GPU_TABLE:
        for fi in g.inputs:
            for fo in ("fp32", "fp16"):
                try:
                    m = fpsim.hardware.tensor_core(g.name, fi, fo)
                except (ValueError, TypeError):
                    continue
                if isinstance(m, (A.FusedBlock, A.BlockScaledFused)):
                    out.setdefault(A.as_generic(m), m)  # one per distinct configuration
    return list(out.values())


PRESETS = _presets()


def _same(x, y):
    return (x.view(np.uint64) == y.view(np.uint64)) | (np.isnan(x) & np.isnan(y))


def _rows(rng, fmt, R, K):
    f = fpsim.parse(fmt)
    kinds = [rng.standard_normal((R, K)),
             rng.standard_normal((R, K)) * 2.0 ** rng.integers(f.emin - 3, f.emax, (R, K)),
             rng.standard_normal((R, K)) * 2.0 ** (f.emin - rng.integers(0, f.man_bits + 1, (R, K))),
             rng.standard_normal((R, K)) * (rng.random((R, K)) < 0.3)]
    x = np.concatenate([fpsim.quantize(np.clip(k, -f.max, f.max), fmt) for k in kinds])
    x[1::7, 1::2] = -x[1::7, ::2][:, : x[1::7, 1::2].shape[1]]  # cancellation
    return x


@pytest.mark.parametrize("m", PRESETS, ids=[repr(m) for m in PRESETS])
def test_forced_generic_kernel_equals_the_fast_kernels(m, monkeypatch):
    g = A.as_generic(m)
    assert g.fast() == m or isinstance(m, A.FusedBlock)
    rng = np.random.default_rng(len(repr(m)))
    fa, fb = (f.name for f in m.input_formats)
    L = g.L
    K = 2 * L + (0 if g.scale_block else 3)  # K not a multiple of L (unscaled)
    a, b = _rows(rng, fa, 16, K), _rows(rng, fb, 16, K)
    R = len(a)
    c = fpsim.quantize(rng.standard_normal(R) * 2.0 ** rng.integers(-8, 8, R), m.out_fmt)
    c[::5] = 0.0
    kw = {}
    if g.scale_block:
        nb = K // g.scale_block
        sf = g.scale_fmt
        s = lambda: fpsim.quantize(2.0 ** rng.uniform(-8, 8, (R, nb)), sf)  # noqa: E731
        kw = dict(a_scale=s(), b_scale=s())
    else:
        if m.input_formats[0].has_inf:
            a[3, 0] = np.inf
        if m.input_formats[1].has_nan:
            b[5, 1] = np.nan
        c[7] = np.inf
    want = fpsim.dot(a, b, c, model=m, **kw)
    monkeypatch.setattr(G, "FORCE_GENERIC", True)
    got = fpsim.dot(a, b, c, model=g, **kw)
    assert _same(got, want).all(), np.nonzero(~_same(got, want))[0][:5]
    fin = np.isfinite(a).all(1) & np.isfinite(b).all(1) & np.isfinite(c)
    idx = np.nonzero(fin)[0][:24]
    C = np.diag(c[idx])
    if g.scale_block:
        kwm = dict(a_scale=kw["a_scale"][idx], b_scale=kw["b_scale"][idx].T)
    else:
        kwm = {}
    D = fpsim.matmul(a[idx], b[idx].T, C, model=g, **kwm)
    monkeypatch.setattr(G, "FORCE_GENERIC", False)
    D0 = fpsim.matmul(a[idx], b[idx].T, C, model=m, **kwm)
    assert _same(D, D0).all()


# ---- an exact-rational reference of the field rules (unscaled, zero terms drop out) ----

def _exp(x, emin):
    e = Fraction(abs(x)).numerator.bit_length() - Fraction(abs(x)).denominator.bit_length()
    while 2 ** e > abs(Fraction(x)) if e >= 0 else Fraction(1, 2 ** -e) > abs(Fraction(x)):
        e -= 1
    while (Fraction(2) ** (e + 1)) <= abs(Fraction(x)):
        e += 1
    return max(e, emin)


def _trunc(x, u, sticky):
    q = abs(x) / Fraction(2) ** u
    m = q.numerator // q.denominator
    t = Fraction(m) * Fraction(2) ** u
    if sticky and m != q:
        t += Fraction(2) ** (u - 1)
    return t if x >= 0 else -t


def _reference(g, a, b, c):
    fa = g.input_formats[0]
    s = c
    for lo in range(0, len(a), g.L):
        terms = [(Fraction(x) * Fraction(y), _exp(x, fa.emin) + _exp(y, fa.emin))
                 for x, y in zip(a[lo:lo + g.L], b[lo:lo + g.L]) if x != 0 and y != 0]
        es = [e for _, e in terms] + ([_exp(s, g.out_fmt.emin)] if s != 0 else [])
        if not es:
            s = 0.0
            continue
        u = max(es) - g.F
        S = sum((_trunc(t, u, g.sticky) for t, _ in terms), Fraction(0))
        S += _trunc(Fraction(s), u, g.sticky) if s != 0 else 0
        s = float(fpsim.quantize(float(S), g.out_fmt, rounding=g.rounding)) if S else 0.0
        # (float(S) is exact: S has at most F + 2 + log2(L) + 1 significant bits)
    return s


@pytest.mark.parametrize("sticky", [False, True])
@pytest.mark.parametrize("rounding,out", [("rtz", "fp32"), ("rne", "fp32"), ("rne", "fp16")])
def test_what_ifs_equal_an_exact_rational_reference(sticky, rounding, out, monkeypatch):
    monkeypatch.setattr(G, "FORCE_GENERIC", True)
    g = A.FusedDotAdd(L=4, F=12, out_fmt=out, rounding=rounding, in_fmt="fp16", sticky=sticky)
    rng = np.random.default_rng(7)
    a = fpsim.quantize(rng.standard_normal((300, 10)) * 2.0 ** rng.integers(-6, 6, (300, 10)), "fp16")
    b = fpsim.quantize(rng.standard_normal((300, 10)), "fp16")
    c = fpsim.quantize(rng.standard_normal(300), out)
    got = fpsim.dot(a, b, c, model=g)
    want = np.array([_reference(g, a[r], b[r], float(c[r])) for r in range(300)])
    assert _same(got, want).all(), np.nonzero(~_same(got, want))[0][:5]


def test_sticky_changes_a_hand_computed_result():
    # 1 + 2**-11 + 2**-13 with F = 11: the 2**-13 term is truncated away; 1 + 2**-11 is a tie
    # of fp16 (ulp 2**-10) that rounds to even (1.0); the sticky bit of 2**-13 breaks the tie
    # upward: 1 + 2**-10
    a = np.array([1.0, 2.0**-11, 2.0**-13]); b = np.ones(3)
    g = A.FusedDotAdd(L=4, F=11, out_fmt="fp16", rounding="rne", in_fmt="fp16")
    assert float(fpsim.dot(a, b, model=g)) == 1.0
    assert float(fpsim.dot(a, b, model=dataclasses.replace(g, sticky=True))) == 1.0 + 2.0**-10
    assert dataclasses.replace(g, sticky=True).fast() is None


def test_block_scaled_fp16_output_what_if():
    m = fpsim.hardware.tensor_core("B200", "nvfp4", "fp32")
    g = dataclasses.replace(A.as_generic(m), out_fmt="fp16", rounding="rne")
    assert g.fast() is None
    a = np.zeros(64); b = np.zeros(64)
    a[0], b[0] = 1.0, 1.0
    a[16], b[16] = 0.5, 0.5  # 2**-2 scaled by 2**-9: 2**-11 below 1, a tie of fp16 -> 1.0
    a[17], b[17] = 0.5, 1.0  # + 2**-1 * 2**-9 ... the group sum 0.75 * 2**-9
    sa = np.array([1.0, 2.0**-9, 1.0, 1.0]); sb = np.ones(4)
    got = float(fpsim.dot(a, b, 0.0, model=g, a_scale=sa, b_scale=sb))
    exact = 1.0 + 0.75 * 2.0**-9
    assert got == float(fpsim.quantize(exact, "fp16"))  # F = 35 keeps every bit here
    assert float(fpsim.dot(a, b, 0.0, model=m, a_scale=sa, b_scale=sb)) == exact


@pytest.mark.parametrize("kw,msg", [
    (dict(F=0), "F=0"), (dict(L=0), "L=0"), (dict(rounding="rna"), "allowed 'rtz'"),
    (dict(out_fmt="fp64"), "at most fp32"), (dict(group=16), "block-scaled"),
    (dict(scale_block=32, L=16), "dividing L"),
    (dict(scale_block=16, group=16, L=64, in_fmt="e5m2"), "sum exactly"),
    (dict(ftz_inputs=True), "needs in_fmt")])
def test_bad_fields_are_clear_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        A.FusedDotAdd(**kw)


def test_bad_types_and_models():
    with pytest.raises(TypeError, match="sticky"):
        A.FusedDotAdd(sticky=1)
    with pytest.raises(ValueError, match="MFMA"):
        A.as_generic(fpsim.hardware.tensor_core("MI300X", "fp16", "fp32"))
    with pytest.raises(TypeError, match="not a fused"):
        A.as_generic(A.Sequential("fp32"))


def test_c_fmt_floor_runs_the_generic_kernel():
    # Volta's f16 C into f32 D: a C subnormal in fp16 aligns at fp16's emin (-14)
    m = fpsim.hardware.tensor_core("V100", "fp16", "fp32")
    mc = dataclasses.replace(m, c_fmt="fp16")
    assert A.as_generic(mc).c_exp_floor == -14
    # c = 2**-24 (fp16 subnormal) and one product 2**-20 * 2**-20 = 2**-40 (exponent
    # -14 + -14 = -28): with the floor, E = -14 and the product lies below 2**(-14 - 23);
    # without it (c a value of fp32), E = -24 and 2**-40 is kept
    a = np.array([2.0**-20, 0, 0, 0]); b = a.copy()
    c = 2.0**-24
    assert float(fpsim.dot(a, b, c, model=mc)) == 2.0**-24
    assert float(fpsim.dot(a, b, c, model=m)) == 2.0**-24 + 2.0**-40
