"""The exponent block-scaled MMA gives zero terms (``BlockScaledFused.e_zero``), pinned by
MMA-Sim (Xie et al. 2025, ``mmasim``).

A zero product, an all-zero group, a zero scale or a zero accumulator c joins the fused sum
as a term of exponent ``e_zero``, so when every other term lies below ``2**e_zero`` the
alignment (and the truncation at ``2**(E - F)``) is set by the zero terms. The random suite
of ``tests/test_mmasim.py`` rarely reaches that corner; here every dot product has c = 0 and
products scaled to the bottom of the fp32 range, where the preset's ``e_zero`` must agree
with MMA-Sim on every row *and* a different value (a few exponents either way, or none at
all) must not: the test fails if the parameter stops mattering or drifts.
"""

import dataclasses

import numpy as np
import pytest

import fpsim

torch = pytest.importorskip("torch")
sim = pytest.importorskip("mmasim.nv_ptx.sim")

# (MMA-Sim short form, fpsim PTX spelling, element format, scale format, block, K, scale
# product exponent: near the truncation point 2**(e_zero - F) of each kind, F = 25 / 35).
# UE4M3 scales (NVFP4) cannot reach that corner: their products are >= 2**-18, so the
# zero-term exponent cannot change an NVFP4 result and is not tested with them; nor can FP4
# operands of kind::mxf8f6f4 pin it (their products carry too few bits to reach the cut).
CASES = [
    ("m128n8k32.kind::mxf8f6f4.block32.f32.e4m3.e4m3.ue8m0",
     "tcgen05.mma.cta_group::1.m128n256k32.kind::mxf8f6f4.block32.f32.e4m3.e4m3.ue8m0",
     "e4m3", "ue8m0", 32, 32, -150),
    ("m128n8k64.kind::mxf4.block32.f32.e2m1.e2m1.ue8m0",
     "tcgen05.mma.cta_group::1.m128n256k64.kind::mxf4.block32.f32.e2m1.e2m1.ue8m0",
     "e2m1", "ue8m0", 32, 64, -172),
    ("m128n8k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue8m0",
     "tcgen05.mma.cta_group::1.m128n256k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue8m0",
     "e2m1", "ue8m0", 16, 64, -172),
]
ROWS = 1024


def _elements(rng, fmt):
    f = fpsim.parse(fmt)
    x = rng.standard_normal((ROWS, CASES[0][5] * 2)) * 2.0 ** rng.integers(f.emin, f.emax, (ROWS, 64))
    x *= rng.random(x.shape) < 0.8  # zero products among the tiny ones
    return fpsim.quantize(np.clip(x, -f.max, f.max), fmt)


def _scales(rng, nb, target):
    """UE8M0 scale pairs whose product is about ``2**target`` (spread over +-8 binades)."""
    ea = rng.integers(-127, -20, (ROWS, nb))
    eb = np.clip(target - ea + rng.integers(-8, 8, (ROWS, nb)), -127, 127)
    return 2.0 ** ea.astype(float), 2.0 ** eb.astype(float)


def _sim_operand(x, fmt, packed):
    codes = fpsim.encode(x, fmt).astype(np.uint8)
    if packed:  # MMA-Sim's mxf4 kinds take two FP4 codes per byte, the first in the high nibble
        return torch.tensor((codes[:, ::2] << 4) | codes[:, 1::2])
    if fmt == "e4m3":
        return torch.tensor(codes).view(torch.float8_e4m3fn)
    return torch.tensor(codes << 2)  # kind::mxf8f6f4 takes an FP4 code in bits 5:2 of a byte


def _sim_scales(s, sc):
    codes = fpsim.encode(s, "e8m0" if sc == "ue8m0" else "ue4m3").astype(np.uint8)
    return torch.tensor(codes).view(torch.float8_e8m0fnu if sc == "ue8m0" else torch.float8_e4m3fn)


@pytest.mark.parametrize("short,full,fmt,sc,block,K,target", CASES, ids=[c[0] for c in CASES])
def test_zero_term_exponent_is_mmasims(short, full, fmt, sc, block, K, target):
    m = fpsim.hardware.mma("Blackwell", full)
    rng = np.random.default_rng(sum(map(ord, full)))
    a = _elements(rng, fmt)[:, :K]
    b = _elements(rng, fmt)[:, :K]
    sa, sb = _scales(rng, K // block, target)
    c = np.zeros(ROWS)
    op = sim.TCGen05MMABlockScale("Blackwell", short)
    packed = m.group > 1
    ta, tb = _sim_operand(a, fmt, packed), _sim_operand(b, fmt, packed)
    want = op.dpa(ta, tb, torch.tensor(c, dtype=torch.float32), _sim_scales(sa, sc),
                  _sim_scales(sb, sc)).double().numpy()
    got = fpsim.dot(a, b, c, model=m, a_scale=sa, b_scale=sb)
    assert np.array_equal(got, want), np.flatnonzero(got != want)[:5]
    # the corner is really reached: other zero-term exponents give other bits
    for e in (m.e_zero - 3, m.e_zero + 3, -1000):
        other = fpsim.dot(a, b, c, model=dataclasses.replace(m, e_zero=e), a_scale=sa, b_scale=sb)
        assert not np.array_equal(other, want), f"e_zero={e} gives the same bits: untested"
