"""Block (scaled) quantization in one pass: per-block amax, the block's scale, then every
element of the block rounded with :func:`fpsim.kernels.float_round.round_bits`.

The array is viewed as ``(A, L, B)``: ``L`` is the blocked axis, ``A`` the product of the
axes before it and ``B`` of those after it. Block ``j`` covers ``l`` in ``[j*k, j*k + k)``
(the last one may be shorter). Two drivers share the scalar helpers below:

* :func:`block_round_rows` for ``B == 1`` (blocks are contiguous runs), parallel over blocks;
* :func:`block_round_cols` for ``B > 1``: one task per ``(a, j)`` walks the ``k`` rows of the
  block with ``b`` innermost, so memory is read contiguously whatever the axis.

Scaling an element never uses a per-element ``log2``/``ldexp``: the scale exponent comes
from the bits of the block's amax, a power-of-two scale is applied by an exact float64
multiply, and a general scale by a float64 division made *round-to-odd* (with the exact
remainder from :func:`fpsim.kernels.eft.two_prod`), which the element rounding then rounds
correctly (Boldo & Melquiond) — so the element is the exact quotient rounded once.
"""

from typing import NamedTuple

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from ._modes import SR
from ._rng import random_bits
from .eft import bits_f64, f64_bits, pow2, to_odd_bits, two_prod
from .fast_round import _fast_one, _rne32_one
from .float_round import round_bits

# Scale rules (the kernel's view of BlockFormat.scale_rounding).
from ._modes import (RULE_CEIL, RULE_EVEN, RULE_FLOOR, RULE_GIVEN, RULE_RCEIL,  # noqa: E402,F401
                     RULE_VALUE)

_FMASK = (np.int64(1) << 52) - 1
_F64_MAX = np.finfo(np.float64).max


class BlockParams(NamedTuple):
    """Per-call constants of the block kernels (built by :mod:`fpsim.block`)."""

    rule: int  # one of RULE_*
    emax_elem: int  # floor(log2(max_elem))
    mbits: int  # element fraction bits (RULE_EVEN)
    max_frac: int  # 52-bit fraction field of max_elem (RULE_RCEIL)
    smin: int  # smallest / largest scale exponent of the power-of-two rules
    smax: int
    zero_scale: float  # scale of a block whose amax is 0
    div: float  # RULE_VALUE: scale = amax * clip / div (div = max_elem * tensor scale)
    clip: float  # clipping ratio applied to amax (1.0 = none)
    g: float  # tensor scale multiplied into every block scale
    elem_nan: float  # element whose code a NaN block stores (NaN, or 0.0 without NaN)
    want_codes: int  # 1: write element float64 bits to ``ebits``; 0: values to ``out``
    fast: int  # 1: round elements with fast_round._fast_one (same results, deterministic modes)
    f32: int  # 1: blocks may round in float32 lanes with fast_round._rne32_one (see _f32_ok)


@njit(cache=True, inline="always")
def _div_odd_bits(a, d):
    """float64 bits of round-to-odd(a / d) for d > 0 finite."""
    q = a / d
    if q != q or q == 0.0 or abs(q) > _F64_MAX:
        return f64_bits(q)
    p, e = two_prod(q, d)
    r = (a - p) - e  # exact remainder a - q*d (Sterbenz: p is within a factor 2 of a)
    return to_odd_bits(q, r)


# block_scale, _lanes and _span are plain calls, not inline="always": inlined, each copy (with
# round_bits / _fast_one / _rne32_one inside) went through Numba's parfor passes as part of the
# prange bodies below, and the first MXFP4 quantize compiled for about 3 CPU minutes instead
# of under one. The statements, hence the bits, are the same; the cost is a call per block.
@njit(cache=True)
def block_scale(amax, bad, q, sp):
    """Scale value of a block from its amax (``bad``: the block holds a NaN or an inf)."""
    if bad != 0:
        return np.nan
    if amax == 0.0:
        return q.zero_scale
    a = amax * q.clip if q.clip != 1.0 else amax
    if q.rule == RULE_VALUE:
        sb, _ = round_bits(_div_odd_bits(a, q.div), sp, np.uint64(0))
        return bits_f64(sb)
    # floor(log2 a) and the normalised 52-bit fraction, from the bits
    b = np.int64(f64_bits(a))
    ef = b >> 52
    f = b & _FMASK
    if ef > 0:
        fl = ef - 1023
    else:  # float64 subnormal
        fl = -1022
        while f < (np.int64(1) << 52):
            f <<= 1
            fl -= 1
        f &= _FMASK
    if q.rule == RULE_FLOOR:
        s = fl - q.emax_elem
    elif q.rule == RULE_CEIL:
        s = fl - q.emax_elem + (1 if f != 0 else 0)
    elif q.rule == RULE_EVEN:
        s = fl - q.emax_elem + ((f + (np.int64(1) << (51 - q.mbits))) >> 52)
    else:  # RCEIL: smallest s with max_elem * 2**s >= a (same binade: compare fractions)
        s = fl - q.emax_elem + (1 if f > q.max_frac else 0)
    s = min(max(s, q.smin), q.smax)
    return pow2(s)


@njit(cache=True, parallel=True)
def div_odd(x, d, out):
    """``out = round_to_odd(x / d)`` elementwise (``d > 0`` finite), for table elements."""
    for i in prange(x.size):
        out[i] = bits_f64(_div_odd_bits(x[i], d[i]))


@njit(cache=True)
def scales_from_amax(amax, bad, q, sp, out):
    """Vectorised :func:`block_scale` (used by the per-tensor / per-channel scaling)."""
    for i in range(amax.size):
        out[i] = block_scale(amax[i], bad[i], q, sp)


@njit(cache=True, inline="always")
def _prep(sval, g):
    """(total scale, reciprocal if it is a power of two else 0)."""
    tot = sval * g
    b = np.int64(f64_bits(tot))
    if tot == tot and tot > 0.0 and (b & _FMASK) == 0 and (b >> 52) > 1 and (b >> 52) < 2046:
        return tot, 1.0 / tot
    return tot, 0.0


# float32 lanes (see _f32_ok): powers of two float32 holds exactly, and its overflow threshold
_P2_LO = 2.0 ** -149
_P2_HI = 2.0 ** 127
_F32_LIM = 2.0 ** 128


@njit(cache=True, inline="always")
def _f32_ok(q, amax, tot, inv):
    """May this block round in float32 lanes (:func:`fast_round._rne32_one`)?

    ``q.f32`` (set by :mod:`fpsim.block`) says the input and output are float32, the mode is
    rne, the element format has a float32 fast path and its smallest positive value is far
    above float32's normal range limit — so a scaled element that lands in float32's
    subnormal range rounds to zero either way. Per block: both scales are float32 powers of
    two (``x * inv`` and ``r * tot`` are then exact, or the single rounding of the cast the
    float64 path makes) and the scaled amax stays finite.
    """
    return (q.f32 == 1 and inv != 0.0 and _P2_LO <= inv <= _P2_HI and _P2_LO <= tot <= _P2_HI
            and amax * inv < _F32_LIM)


def _amax(xs):
    """(largest finite |x|, 1 if the view ``xs`` holds a NaN or an inf) — branch-free."""


@overload(_amax, inline="always")
def _amax_impl(xs):
    # A floating-point max reduction does not vectorise (NaN ordering); for float32 the
    # magnitude bits order like the magnitudes, and an integer max does.
    if xs.dtype == types.float32 and xs.layout == "C":
        def amax_f32(xs):
            xi = xs.view(np.uint32)
            m = np.uint32(0)
            for i in range(xi.size):
                m = max(m, xi[i] & np.uint32(0x7FFFFFFF))
            if np.int64(m) >= 0x7F800000:  # a NaN or an inf
                return 0.0, 1
            return np.float64(np.uint32(m).view(np.float32)), 0
        return amax_f32

    def amax_any(xs):
        amax = 0.0
        bad = 0
        for i in range(xs.size):
            v = abs(np.float64(xs[i]))
            ok = v <= _F64_MAX
            bad |= 0 if ok else 1
            amax = max(amax, v if ok else 0.0)
        return amax, bad
    return amax_any


def _amax_cols(xs, B, amax, bad):
    """Per column of the rows ``xs`` (``B`` wide, flat): largest finite |x| into ``amax``, 1
    into ``bad`` where the column holds a NaN or an inf (as :func:`_amax`)."""


@overload(_amax_cols, inline="always")
def _amax_cols_impl(xs, B, amax, bad):
    if xs.dtype == types.float32 and xs.layout == "C":
        def cols_f32(xs, B, amax, bad):  # b innermost: contiguous, 16 lanes
            m = np.zeros(B, dtype=np.uint32)
            xi = xs.view(np.uint32)
            for r in range(xs.size // B):
                xr = xi[r * B:(r + 1) * B]
                for b in range(B):
                    m[b] = max(m[b], xr[b] & np.uint32(0x7FFFFFFF))
            for b in range(B):
                big = np.int64(m[b]) >= 0x7F800000
                bad[b] = 1 if big else 0
                amax[b] = 0.0 if big else np.float64(np.uint32(m[b]).view(np.float32))
        return cols_f32

    def cols_any(xs, B, amax, bad):
        for r in range(xs.size // B):
            xr = xs[r * B:(r + 1) * B]
            for b in range(B):
                v = abs(np.float64(xr[b]))
                ok = v <= _F64_MAX
                bad[b] |= 0 if ok else 1
                amax[b] = max(amax[b], v if ok else 0.0)
    return cols_any


@njit(cache=True)
def _lanes(xs, os, inv, tot, p32):
    """Round ``xs`` (blocks sharing the power-of-two scale ``tot = 1 / inv``) into ``os`` in
    float32 lanes: the plain float32 quantize kernel on ``x * inv``, times ``tot``."""
    i32 = np.float32(inv)
    t32 = np.float32(tot)
    err = 0
    for i in range(xs.size):
        r, e = _rne32_one(np.float32(xs[i]) * i32, p32)
        os[i] = r * t32
        err += e
    return err


@njit(cache=True)
def _span(xs, os, es, base, step, sval, amax, q, ep, fp, p32, seed):
    """Round the elements of one block, ``xs`` (a view), into ``os`` (values) or ``es`` (float64
    bits of the element); ``base + i * step`` is element ``i``'s flat index (stochastic bits).

    The per-block cases are decided once, outside the loops, so the common loops (a power-of-
    two scale, a deterministic mode) are branch-free and LLVM vectorises them. Loops index
    views from 0: a counter numba cannot prove non-negative carries a wrap-around select
    that stops vectorisation.
    """
    tot, inv = _prep(sval, q.g)
    if tot != tot or tot == 0.0:  # NaN block (decodes to NaN) or zero scale (all zeros)
        if q.want_codes == 1:
            rb = f64_bits(q.elem_nan) if tot != tot else np.uint64(0)
            for i in range(xs.size):
                es[i] = rb
        else:
            v = np.nan if tot != tot else 0.0
            for i in range(xs.size):
                os[i] = v
        return 0
    err = 0
    if q.want_codes == 0 and _f32_ok(q, amax, tot, inv):
        return _lanes(xs, os, inv, tot, p32)
    if q.fast == 1 and inv != 0.0 and q.want_codes == 0:
        for i in range(xs.size):
            r, e = _fast_one(np.int64(f64_bits(np.float64(xs[i]) * inv)), fp)
            os[i] = bits_f64(np.uint64(r)) * tot
            err += e
        return err
    for i in range(xs.size):
        xv = np.float64(xs[i])
        if inv != 0.0:
            yb = f64_bits(xv * inv)  # exact: multiply by a power of two
        else:
            yb = _div_odd_bits(xv, tot)
        if q.fast == 1:  # deterministic modes: the branch-free twin of round_bits
            r, e = _fast_one(np.int64(yb), fp)
            rb = np.uint64(r)
        else:
            rnd = random_bits(seed, base + i * step) if ep.mode == SR else np.uint64(0)
            rb, e = round_bits(yb, ep, rnd)
        if q.want_codes == 1:
            es[i] = rb
        else:
            os[i] = bits_f64(rb) * tot
        err += e
    return err


_NO_FLOOR32 = 9999


@njit(cache=True, inline="always")
def _floor32_on(q):
    """Use :func:`_floor32` (float32 lanes, OCP MX's floor rule, no tensor scale, no clip)?"""
    return (q.f32 == 1 and q.want_codes == 0 and q.rule == RULE_FLOOR and q.g == 1.0
            and q.clip == 1.0)


@njit(cache=True, inline="always")
def _floor32(amax, bad, q):
    """The scale exponent ``s`` that :func:`block_scale` gives a float32 block under the floor
    rule, read from the bits of a float32-normal ``amax``, when float32 lanes then apply
    (``2**s`` and ``2**-s`` float32 normals, ``amax * 2**-s`` finite); else ``_NO_FLOOR32``.
    A few integer operations instead of block_scale + _prep + _f32_ok per block."""
    if bad != 0 or amax < 2.0 ** -126:
        return _NO_FLOOR32
    ea = (np.int64(f64_bits(amax)) >> 52) - 1023
    s = min(max(ea - q.emax_elem, q.smin), q.smax)
    if -126 <= s <= 126 and s >= ea - 127:
        return s
    return _NO_FLOOR32


_CHUNK = 64  # blocks per task of block_round_rows


@njit(cache=True, parallel=True)
def block_round_rows(x, out, ebits, scales, given, gstride, A, L, k, q, ep, fp, p32, sp, seed):
    """Blocks of ``k`` contiguous elements along rows of length ``L`` (``x`` flat, ``A*L``).

    A task takes up to ``_CHUNK`` blocks of one row: first every block's amax and scale, then
    the elements. Consecutive blocks with the same scale that may use float32 lanes are rounded
    in one sweep: a loop of only ``k`` (16, 32) iterations runs mostly in LLVM's scalar
    remainder, a run of several blocks in its vector body.
    """
    nb = (L + k - 1) // k
    nch = (nb + _CHUNK - 1) // _CHUNK
    codes = q.want_codes == 1
    floor32 = _floor32_on(q)
    errs = np.zeros(A * nch, dtype=np.int64)  # per task: no cross-thread reduction
    for t in prange(A * nch):
        a = t // nch
        j0 = (t - a * nch) * _CHUNK
        j1 = min(j0 + _CHUNK, nb)
        tots = np.empty(j1 - j0)
        invs = np.empty(j1 - j0)
        amaxs = np.empty(j1 - j0)
        lanes = np.empty(j1 - j0, dtype=np.bool_)  # float32 lanes allowed
        for j in range(j0, j1):
            lo = a * L + j * k
            hi = a * L + min(j * k + k, L)
            if q.rule == RULE_GIVEN:
                sval = given[a * gstride[0] + j * gstride[1]]
                amax = np.inf  # unknown: no float32 lanes
            else:
                amax, bad = _amax(x[lo:hi])
                sf = _floor32(amax, bad, q) if floor32 else _NO_FLOOR32
                if sf != _NO_FLOOR32:
                    sval = pow2(sf)
                    scales[a * nb + j] = sval
                    amaxs[j - j0] = amax
                    tots[j - j0] = sval
                    invs[j - j0] = pow2(-sf)
                    lanes[j - j0] = True
                    continue
                sval = block_scale(amax, bad, q, sp)
            scales[a * nb + j] = sval
            amaxs[j - j0] = amax
            tots[j - j0], invs[j - j0] = _prep(sval, q.g)
            lanes[j - j0] = not codes and _f32_ok(q, amax, tots[j - j0], invs[j - j0])
        e_t = 0
        j = j0
        while j < j1:
            lo = a * L + j * k
            if lanes[j - j0]:
                tot, inv = tots[j - j0], invs[j - j0]
                j2 = j + 1
                while j2 < j1 and lanes[j2 - j0] and tots[j2 - j0] == tot:
                    j2 += 1
                hi = a * L + min(j2 * k, L)
                e_t += _lanes(x[lo:hi], out[lo:hi], inv, tot, p32)
                j = j2
                continue
            hi = a * L + min(j * k + k, L)
            os = out[0:0] if codes else out[lo:hi]
            es = ebits[lo:hi] if codes else ebits[0:0]
            e_t += _span(x[lo:hi], os, es, lo, 1, scales[a * nb + j], amaxs[j - j0], q, ep, fp,
                         p32, seed)
            j += 1
        errs[t] = e_t
    return errs.sum()


@njit(cache=True, parallel=True)
def block_round_cols(x, out, ebits, scales, given, gstride, A, L, B, k, q, ep, fp, p32, sp, seed):
    """Blocks of ``k`` rows of an ``(A, L, B)`` array, one scale per ``(a, block, b)``.

    One task per ``(a, block)`` walks the block's rows with ``b`` innermost (contiguous).
    """
    nb = (L + k - 1) // k
    codes = q.want_codes == 1
    floor32 = _floor32_on(q)
    errs = np.zeros(A * nb, dtype=np.int64)
    for t in prange(A * nb):
        a = t // nb
        j = t - a * nb
        l0 = j * k
        l1 = min(l0 + k, L)
        sv = np.empty(B)
        amax = np.zeros(B)
        bad = np.zeros(B, dtype=np.int64)
        if q.rule == RULE_GIVEN:
            for b in range(B):
                sv[b] = given[a * gstride[0] + j * gstride[1] + b * gstride[2]]
                amax[b] = np.inf
                bad[b] = 1  # (no _floor32)
        else:
            _amax_cols(x[(a * L + l0) * B:(a * L + l1) * B], B, amax, bad)
        tot = np.empty(B)
        inv = np.empty(B)
        fast = q.fast == 1 and not codes
        f32 = not codes
        for b in range(B):
            sf = _floor32(amax[b], bad[b], q) if floor32 else _NO_FLOOR32
            if sf != _NO_FLOOR32:
                sv[b] = pow2(sf)
                tot[b] = sv[b]
                inv[b] = pow2(-sf)
                fast = fast and q.fast == 1
            else:
                if q.rule != RULE_GIVEN:
                    sv[b] = block_scale(amax[b], bad[b], q, sp)
                tot[b], inv[b] = _prep(sv[b], q.g)
                fast = fast and inv[b] != 0.0
                f32 = f32 and _f32_ok(q, amax[b], tot[b], inv[b])
            scales[t * B + b] = sv[b]
        e_t = 0
        if f32:  # every scale a float32 power of two: float32 lanes, one contiguous sweep
            i32 = inv.astype(np.float32)
            t32 = tot.astype(np.float32)
            for l in range(l0, l1):
                xr = x[(a * L + l) * B:(a * L + l + 1) * B]
                orow = out[(a * L + l) * B:(a * L + l + 1) * B]
                for b in range(B):
                    r, e = _rne32_one(np.float32(xr[b]) * i32[b], p32)
                    orow[b] = r * t32[b]
                    e_t += e
        elif fast:  # every scale a normal power of two: one contiguous, branch-free sweep
            for l in range(l0, l1):
                xr = x[(a * L + l) * B:(a * L + l + 1) * B]
                orow = out[(a * L + l) * B:(a * L + l + 1) * B]
                for b in range(B):
                    r, e = _fast_one(np.int64(f64_bits(np.float64(xr[b]) * inv[b])), fp)
                    orow[b] = bits_f64(np.uint64(r)) * tot[b]
                    e_t += e
        else:
            for b in range(B):  # the block's rows are in cache: a strided walk per column
                lo = (a * L + l0) * B + b
                hi = (a * L + l1) * B + b
                os = out[0:0] if codes else out[lo:hi:B]
                es = ebits[lo:hi:B] if codes else ebits[0:0]
                e_t += _span(x[lo:hi:B], os, es, lo, B, sv[b], amax[b], q, ep, fp, p32, seed)
        errs[t] = e_t
    return errs.sum()
