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
from numba import njit, prange

from ._modes import SR
from ._rng import random_bits
from .eft import bits_f64, f64_bits, to_odd_bits, two_prod
from .fast_round import _fast_one
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


@njit(cache=True, inline="always")
def _pow2(s):
    """2.0**s for -1074 <= s <= 1023, from bits."""
    if s >= -1022:
        return bits_f64(np.uint64(s + 1023) << np.uint64(52))
    return bits_f64(np.uint64(1) << np.uint64(s + 1074))


@njit(cache=True, inline="always")
def _div_odd_bits(a, d):
    """float64 bits of round-to-odd(a / d) for d > 0 finite."""
    q = a / d
    if q != q or q == 0.0 or abs(q) > _F64_MAX:
        return f64_bits(q)
    p, e = two_prod(q, d)
    r = (a - p) - e  # exact remainder a - q*d (Sterbenz: p is within a factor 2 of a)
    return to_odd_bits(q, r)


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
    return _pow2(s)


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


@njit(cache=True, inline="always")
def _span(x, out, ebits, lo, hi, step, sval, q, ep, fp, seed):
    """Round the elements ``x[lo:hi:step]`` of one block whose scale is ``sval``.

    The per-block cases are decided once, outside the loops, so the common loop (a power-of-
    two scale, a deterministic mode) is branch-free and LLVM vectorises it.
    """
    tot, inv = _prep(sval, q.g)
    if tot != tot or tot == 0.0:  # NaN block (decodes to NaN) or zero scale (all zeros)
        v = np.nan if tot != tot else 0.0
        rb = f64_bits(q.elem_nan) if tot != tot else np.uint64(0)
        for i in range(lo, hi, step):
            if q.want_codes == 1:
                ebits[i] = rb
            else:
                out[i] = v
        return 0
    err = 0
    if q.fast == 1 and inv != 0.0 and q.want_codes == 0:
        for i in range(lo, hi, step):
            r, e = _fast_one(np.int64(f64_bits(np.float64(x[i]) * inv)), fp)
            out[i] = bits_f64(np.uint64(r)) * tot
            err += e
        return err
    for i in range(lo, hi, step):
        xv = np.float64(x[i])
        if inv != 0.0:
            yb = f64_bits(xv * inv)  # exact: multiply by a power of two
        else:
            yb = _div_odd_bits(xv, tot)
        if q.fast == 1:  # deterministic modes: the branch-free twin of round_bits
            r, e = _fast_one(np.int64(yb), fp)
            rb = np.uint64(r)
        else:
            rnd = random_bits(seed, i) if ep.mode == SR else np.uint64(0)
            rb, e = round_bits(yb, ep, rnd)
        if q.want_codes == 1:
            ebits[i] = rb
        else:
            out[i] = bits_f64(rb) * tot
        err += e
    return err


_CHUNK = 64  # blocks per task of block_round_rows


@njit(cache=True, parallel=True)
def block_round_rows(x, out, ebits, scales, given, gstride, A, L, k, q, ep, fp, sp, seed):
    """Blocks of ``k`` contiguous elements along rows of length ``L`` (``x`` flat, ``A*L``).

    A task takes up to ``_CHUNK`` blocks of one row: their scales first, then (when every
    scale is a normal power of two and the mode is deterministic) one branch-free sweep.
    """
    nb = (L + k - 1) // k
    nch = (nb + _CHUNK - 1) // _CHUNK
    errs = np.zeros(A * nch, dtype=np.int64)  # per task: no cross-thread reduction
    for t in prange(A * nch):
        a = t // nch
        j0 = (t - a * nch) * _CHUNK
        j1 = min(j0 + _CHUNK, nb)
        tot = np.empty(_CHUNK)
        inv = np.empty(_CHUNK)
        fast = q.fast == 1 and q.want_codes == 0
        for j in range(j0, j1):
            lo = a * L + j * k
            hi = a * L + min(j * k + k, L)
            if q.rule == RULE_GIVEN:
                sval = given[a * gstride[0] + j * gstride[1]]
            else:
                amax = 0.0
                bad = 0
                for i in range(lo, hi):  # branch-free: NaN and inf only set ``bad``
                    v = abs(np.float64(x[i]))
                    ok = v <= _F64_MAX
                    bad |= 0 if ok else 1
                    amax = max(amax, v if ok else 0.0)
                sval = block_scale(amax, bad, q, sp)
            scales[a * nb + j] = sval
            tot[j - j0], inv[j - j0] = _prep(sval, q.g)
            fast = fast and inv[j - j0] != 0.0
        e_t = 0
        for j in range(j0, j1):
            lo = a * L + j * k
            hi = a * L + min(j * k + k, L)
            if fast:
                tt, iv = tot[j - j0], inv[j - j0]
                for i in range(lo, hi):
                    r, e = _fast_one(np.int64(f64_bits(np.float64(x[i]) * iv)), fp)
                    out[i] = bits_f64(np.uint64(r)) * tt
                    e_t += e
            else:
                e_t += _span(x, out, ebits, lo, hi, 1, scales[a * nb + j], q, ep, fp, seed)
        errs[t] = e_t
    return errs.sum()


@njit(cache=True, parallel=True)
def block_round_cols(x, out, ebits, scales, given, gstride, A, L, B, k, q, ep, fp, sp, seed):
    """Blocks of ``k`` rows of an ``(A, L, B)`` array, one scale per ``(a, block, b)``."""
    nb = (L + k - 1) // k
    errs = np.zeros(A * nb, dtype=np.int64)
    for t in prange(A * nb):
        a = t // nb
        j = t - a * nb
        l0 = j * k
        l1 = min(l0 + k, L)
        sv = np.empty(B)
        if q.rule == RULE_GIVEN:
            for b in range(B):
                sv[b] = given[a * gstride[0] + j * gstride[1] + b * gstride[2]]
        else:
            amax = np.zeros(B)
            bad = np.zeros(B, dtype=np.int64)
            for l in range(l0, l1):  # b innermost: contiguous reads
                base = (a * L + l) * B
                for b in range(B):
                    v = abs(np.float64(x[base + b]))
                    ok = v <= _F64_MAX
                    bad[b] |= 0 if ok else 1
                    amax[b] = max(amax[b], v if ok else 0.0)
            for b in range(B):
                sv[b] = block_scale(amax[b], bad[b], q, sp)
        e_t = 0
        tot = np.empty(B)
        inv = np.empty(B)
        fast = q.fast == 1 and q.want_codes == 0
        for b in range(B):
            scales[t * B + b] = sv[b]
            tot[b], inv[b] = _prep(sv[b], q.g)
            fast = fast and inv[b] != 0.0
        if fast:  # every scale a normal power of two: one contiguous, branch-free sweep
            for l in range(l0, l1):
                base = (a * L + l) * B
                for b in range(B):
                    r, e = _fast_one(np.int64(f64_bits(np.float64(x[base + b]) * inv[b])), fp)
                    out[base + b] = bits_f64(np.uint64(r)) * tot[b]
                    e_t += e
        else:
            for b in range(B):  # the block's rows are in cache: a strided walk per column
                e_t += _span(x, out, ebits, (a * L + l0) * B + b, (a * L + l1) * B + b, B,
                             sv[b], q, ep, fp, seed)
        errs[t] = e_t
    return errs.sum()
