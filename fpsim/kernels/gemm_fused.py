"""Register-blocked tensor-core GEMM (issue 12): :class:`fpsim.accum.FusedBlock` and its
split-K / promoted chains at a few times BLAS's cost.

Same bits as :func:`fpsim.kernels.accum.gemm_fused_vec` and
:func:`fpsim.kernels.gemm.fused_f64` (the tests compare them, and all of them with the
general integer kernel and MMA-Sim), organised like a BLAS micro-kernel: A and B are packed
into zero-padded panels of ``_TR`` rows and ``_TN`` columns (float32 values and int32
clamped exponents), and one block of ``n`` products of a ``_TR`` x ``_TN`` output tile is an
LLVM IR intrinsic whose accumulators stay in vector registers.

Arithmetic used (every statement is checked by the tests against the general kernel):

* The quantum of a block does not depend on the products' significands: the kernels form
  ``q = E - 23 - neab - big`` with ``E`` the largest normalised product exponent (or c's)
  and ``big`` the extra alignment bit, and ``E`` includes ``big`` exactly when the bit is
  granted, so ``q = max(max_k (ea_k + eb_k), ec) - 23 - neab`` (``ec``: c's exponent,
  clamped at the output emin; zeros count for nothing). Pass 1 is therefore a max of
  integer sums of the input exponents (int32 lanes), no product is formed twice.
* Truncation at ``2**q`` is ``trunc(a * b * 2**-q)``. In float32 with int32 sums (16
  lanes; ``fptosi`` truncates) when every lane of the tile's block has ``q`` in
  [-125, 90] and ``n * 2**(25 + neab) <= 2**31``: the inputs are float32 values of at most
  11 significant bits (the caller passes declared input formats only; packing checks it),
  so a product is exact in float32 unless it lies below the normal range, where it is
  below ``2**q`` and truncates to 0 however it rounds, and every truncated term is below
  ``2**31``. Else in float64 (``llvm.trunc``, 8 lanes): exact products, exact scaling by a
  power of two, integers that sum exactly when ``bit_length(n + 1) + 25 + neab <= 53``
  (the caller checks it, else the earlier kernels run). c's term is always float64.
* The result ``S * 2**q`` is written back by the truncating output rounding of the GPU
  presets (a mask on the float64 pattern) when it is a normal number, as +0 when it is
  zero; any other lane (inf from an earlier block, overflow, a subnormal result, an output
  rounding other than truncation) keeps its exact value and :func:`_finish` rounds it.
* fp32 round-to-nearest-even outer accumulators of a chain add two finite float32 values
  natively (correctly rounded); any other outer rounding goes through :func:`radd`.

The K loop of every output element is sequential and never split, and ``prange`` runs over
output tiles only, so the results are identical for any thread count. Memory: the output
and the packed panels (8 bytes per element of A and B: float32 value, int32 exponent).
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .accum_leaves import radd, rnd1
from .eft import f64_bits

_TR = 8  # rows of a tile
_VW = 8  # float64 lanes of one vector
_NV = 2  # vectors per tile row
_TN = _VW * _NV  # columns of a tile
#: clamped exponent of a zero input: the sum of two stays far below any real exponent in int32
_ZERO_E = -(1 << 29)
#: inputs whose exponents exceed this fall back to the other kernels (2**-q must stay normal)
_E_LIM = 300


@intrinsic
def _block(typingctx, ap, bp, eap, ebp, ct, nk, qoff, emin_out, keep, min_normal, ovf_lim,
           i32ok):
    """One block of ``nk`` (>= 1) products of a tile: ``ct <- round(trunc(ct) + sum_k
    trunc(Ap[k, r] Bp[k, j]))`` at each lane's quantum (see the module docstring).

    ``ap``/``bp``: addresses of float32 panels (nk, _TR) and (nk, _TN); ``eap``/``ebp`` of
    their int32 clamped exponents; ``ct``: the (_TR, _TN) float64 accumulators, updated in
    place: the rounded result, or the exact sum where :func:`_finish` has to round it
    (``min_normal``: inf when the output rounding is not a truncation).
    ``i32ok``: the ``nk`` truncated products of a lane cannot overflow int32 (the float32
    pass is allowed). Returns nonzero when a lane needs :func:`_finish`.
    """
    ip, i64t, f64t = types.intp, types.int64, types.float64
    sig = i64t(ip, ip, ip, ip, ip, ip, i64t, i64t, i64t, f64t, f64t, i64t)

    def codegen(context, builder, signature, args):
        ap_i, bp_i, eap_i, ebp_i, ct_i, kk, qoff_s, emin_s, keep_s, mn_s, ol_s, i32ok_s = args
        f32, f64, i32, i64 = ir.FloatType(), ir.DoubleType(), ir.IntType(32), ir.IntType(64)
        vd, vi = ir.VectorType(f64, _VW), ir.VectorType(i64, _VW)
        wf, wi, wd = (ir.VectorType(t, _TN) for t in (f32, i32, f64))  # one tile row
        ap_p = builder.inttoptr(ap_i, f32.as_pointer())
        bp_p = builder.inttoptr(bp_i, f32.as_pointer())
        eap_p = builder.inttoptr(eap_i, i32.as_pointer())
        ebp_p = builder.inttoptr(ebp_i, i32.as_pointer())
        ct_p = builder.inttoptr(ct_i, f64.as_pointer())
        trunc_fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vd, [vd]), "llvm.trunc.v8f64")
        fabs_fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vd, [vd]), "llvm.fabs.v8f64")
        undef_i = ir.Constant(vi, ir.Undefined)
        undef_d = ir.Constant(vd, ir.Undefined)
        undef_wi, undef_wf = ir.Constant(wi, ir.Undefined), ir.Constant(wf, ir.Undefined)

        def c64(v):
            return ir.Constant(i64, v)

        def splat(x, undef, lanes=_VW):
            return builder.shuffle_vector(builder.insert_element(undef, x, ir.Constant(i32, 0)),
                                          undef, ir.Constant(ir.VectorType(i32, lanes),
                                                             [0] * lanes))

        def cvi(v):
            return ir.Constant(vi, [v] * _VW)

        def cwi(v):
            return ir.Constant(wi, [v] * _TN)

        def half(x, v):  # lanes v*_VW .. of a tile-row vector
            return builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(i32, _VW),
                                                            list(range(v * _VW, (v + 1) * _VW))))

        def vptr(p, off, t):
            return builder.bitcast(builder.gep(p, [off]), t.as_pointer())

        def smax(a, b):
            return builder.select(builder.icmp_signed(">", a, b), a, b)

        def smin(a, b):
            return builder.select(builder.icmp_signed("<", a, b), a, b)

        def elem(p, k, r):  # p[k * _TR + r]
            return builder.load(builder.gep(p, [builder.add(builder.mul(k, c64(_TR)), c64(r))]))

        def counted_loop(name, init, body):
            """A do-while loop k = 0..kk-1 (kk >= 1) carrying the values ``init``."""
            pre = builder.block
            loop = builder.append_basic_block(name)
            builder.branch(loop)
            builder.position_at_end(loop)
            k = builder.phi(i64)
            acc = [builder.phi(x.type) for x in init]
            new = body(k, acc)
            k1 = builder.add(k, c64(1))
            k.add_incoming(c64(0), pre)
            k.add_incoming(k1, builder.block)
            for a, x0, x1 in zip(acc, init, new):
                a.add_incoming(x0, pre)
                a.add_incoming(x1, builder.block)
            done = builder.append_basic_block(name + ".done")
            builder.cbranch(builder.icmp_signed("<", k1, kk), loop, done)
            builder.position_at_end(done)
            return new  # the last iteration's values dominate the exit (kk >= 1)

        # pass 1: the largest ea + eb of each lane (int32, one vector per tile row)
        def pass1(k, acc):
            eb = builder.load(vptr(ebp_p, builder.mul(k, c64(_TN)), wi), align=4)
            return [smax(acc[r], builder.add(splat(elem(eap_p, k, r), undef_wi, _TN), eb))
                    for r in range(_TR)]

        emax = counted_loop("blk.p1", [cwi(2 * _ZERO_E)] * _TR, pass1)

        # the quantum of each lane (int32, one vector per tile row): c's exponent from the
        # high words of its float64 halves (a zero c has a zero exponent field: the caller
        # keeps float64 subnormals out of C, and later values of c are output values)
        cs = [[builder.load(vptr(ct_p, c64(r * _TN + v * _VW), vd), align=8)
               for v in range(_NV)] for r in range(_TR)]
        odd = ir.Constant(ir.VectorType(i32, _TN), list(range(1, 2 * _TN, 2)))
        w2 = ir.VectorType(i32, 2 * _VW)
        qs = []
        mask16 = ir.IntType(_TN)
        inwin = ir.Constant(mask16, -1)
        for r in range(_TR):
            hi = builder.shuffle_vector(builder.bitcast(cs[r][0], w2),
                                        builder.bitcast(cs[r][1], w2), odd)
            ef = builder.and_(builder.lshr(hi, cwi(20)), cwi(0x7FF))
            ec = builder.select(builder.icmp_signed("==", ef, cwi(0)), cwi(2 * _ZERO_E),
                                smax(builder.sub(ef, cwi(1023)), splat(builder.trunc(emin_s, i32),
                                                                      undef_wi, _TN)))
            m = smax(emax[r], ec)
            # only zero terms: any quantum gives 0; 0 keeps the float32 pass open. Else q
            # lies in [-631, 1021] (inputs within 2**+-300, C within 2**+-900, an infinite
            # c: 1024): 2**q and 2**-q are normal float64 numbers
            q = builder.select(builder.icmp_signed("<", m, cwi(-(1 << 20))), cwi(0),
                               builder.sub(m, splat(builder.trunc(qoff_s, i32), undef_wi, _TN)))
            qs.append(q)
            w = builder.and_(builder.icmp_signed(">=", q, cwi(-125)),
                             builder.icmp_signed("<=", q, cwi(90)))
            inwin = builder.and_(inwin, builder.bitcast(w, mask16))
        zero_d = ir.Constant(vd, [0.0] * _VW)

        # pass 2 in float32 when every lane's quantum lies in [2**-125, 2**90]: a product of
        # inputs of at most 11 bits is exact in float32 (below its normal range it is < 2**q
        # and truncates to 0, even rounded), times 2**-q it is below 2**31 and fptosi
        # truncates it; i32ok says that the nk int32 terms cannot overflow
        mask8 = ir.IntType(_VW)
        use32 = builder.and_(builder.icmp_signed("!=", i32ok_s, c64(0)),
                             builder.icmp_signed("==", inwin, ir.Constant(mask16, -1)))
        b32 = builder.append_basic_block("blk.f32")
        b64 = builder.append_basic_block("blk.f64")
        merge = builder.append_basic_block("blk.merge")
        builder.cbranch(use32, b32, b64)

        builder.position_at_end(b32)
        s32, sq32 = [], []
        for r in range(_TR):
            s32.append(builder.bitcast(builder.shl(builder.sub(cwi(127), qs[r]), cwi(23)), wf))
            sq32.append(builder.bitcast(builder.shl(builder.add(cwi(127), qs[r]), cwi(23)), wf))

        def pass2_32(k, acc):
            b = builder.load(vptr(bp_p, builder.mul(k, c64(_TN)), wf), align=4)
            return [builder.add(acc[r], builder.fptosi(
                builder.fmul(builder.fmul(splat(elem(ap_p, k, r), undef_wf, _TN), b), s32[r]),
                wi)) for r in range(_TR)]

        isum = counted_loop("blk.p2f", [cwi(0)] * _TR, pass2_32)
        S32, SQ32 = [], []
        for r in range(_TR):
            d = builder.sitofp(isum[r], wd)
            sd, sqd = builder.fpext(s32[r], wd), builder.fpext(sq32[r], wd)  # exact
            for v in range(_NV):
                c0 = builder.call(trunc_fn, [builder.fmul(cs[r][v], half(sd, v))])
                S32.append(builder.fadd(c0, half(d, v)))
                SQ32.append(half(sqd, v))
        end32 = builder.block
        builder.branch(merge)

        # pass 2 in float64: every product truncated at its lane's quantum, summed exactly
        builder.position_at_end(b64)
        s, sq, s0 = [], [], []
        for r in range(_TR):
            for v in range(_NV):
                q = builder.sext(half(qs[r], v), vi)
                sv = builder.bitcast(builder.shl(builder.sub(cvi(1023), q), cvi(52)), vd)
                s.append(sv)
                sq.append(builder.bitcast(builder.shl(builder.add(cvi(1023), q), cvi(52)), vd))
                s0.append(builder.call(trunc_fn, [builder.fmul(cs[r][v], sv)]))  # inf stays

        def pass2(k, acc):
            b = builder.fpext(builder.load(vptr(bp_p, builder.mul(k, c64(_TN)), wf), align=4), wd)
            bh = [half(b, v) for v in range(_NV)]
            out = []
            for r in range(_TR):
                a = splat(builder.fpext(elem(ap_p, k, r), f64), undef_d)
                for v in range(_NV):
                    t = builder.call(trunc_fn, [builder.fmul(builder.fmul(a, bh[v]),
                                                             s[r * _NV + v])])
                    out.append(builder.fadd(acc[r * _NV + v], t))
            return out

        S64 = counted_loop("blk.p2", s0, pass2)
        end64 = builder.block
        builder.branch(merge)
        builder.position_at_end(merge)
        S, sq_m = [], []
        for x32, x64, y32, y64 in zip(S32, S64, SQ32, sq):
            ph = builder.phi(vd)
            ph.add_incoming(x32, end32)
            ph.add_incoming(x64, end64)
            S.append(ph)
            ph = builder.phi(vd)
            ph.add_incoming(y32, end32)
            ph.add_incoming(y64, end64)
            sq_m.append(ph)
        sq = sq_m

        # the output rounding: a normal truncated result or a zero here; any other lane
        # (inf stays inf, overflow, a subnormal result, a rounding other than truncation:
        # min_normal is inf then) keeps its exact value for the caller to finish
        keep_v = splat(keep_s, undef_i)
        mn_v, ol_v = splat(mn_s, undef_d), splat(ol_s, undef_d)
        anyslow = ir.Constant(ir.VectorType(ir.IntType(1), _VW), [0] * _VW)
        for r in range(_TR):
            for v in range(_NV):
                x = r * _NV + v
                val = builder.fmul(S[x], sq[x])
                av = builder.call(fabs_fn, [val])
                normal = builder.and_(builder.fcmp_ordered(">=", av, mn_v),
                                      builder.fcmp_ordered("<", av, ol_v))
                zero = builder.fcmp_ordered("==", val, zero_d)
                res = builder.select(normal, builder.bitcast(
                    builder.and_(builder.bitcast(val, vi), keep_v), vd), val)
                res = builder.select(zero, zero_d, res)  # +0 as the GPU model
                builder.store(res, vptr(ct_p, c64(r * _TN + v * _VW), vd), align=8)
                anyslow = builder.or_(anyslow, builder.not_(builder.or_(normal, zero)))
        return builder.zext(builder.bitcast(anyslow, mask8), i64)

    return sig, codegen


@njit(cache=True, inline="always")
def _exp32(x, emin_in):
    """The clamped exponent of one input as int32 (zeros: _ZERO_E), and 1 when the input
    lies outside this kernel's range (not a float32 value, a float64 subnormal or
    |exponent| > _E_LIM).
    Branch-free, so that packing vectorises."""
    ef = np.int64((f64_bits(x) >> np.uint64(52)) & np.uint64(0x7FF))
    e = max(ef - 1023, emin_in)
    zero = x == 0.0
    bad = (not zero) & ((ef == 0) | (e > _E_LIM) | (e < -_E_LIM))
    bad |= np.float64(np.float32(x)) != x
    return np.int32(_ZERO_E if zero else e), 1 if bad else 0


@njit(cache=True, inline="always")
def _c_bad1(c):
    # branch-free (the loop vectorises; it was a quarter of a 128x32x128 call): a finite
    # nonzero c has |exponent| <= 900 exactly when its biased exponent field ef has
    # |ef - 1023| <= 900 (a float64 subnormal, ef = 0, lies below 2**-1022 and is out)
    ef = np.int64((f64_bits(c) >> np.uint64(52)) & np.uint64(0x7FF))
    return 1 if (c != 0.0) & (abs(ef - 1023) > 900) else 0


@njit(cache=True, parallel=True)
def c_bad(C):
    """How many elements of C lie outside this kernel's range (|exponent| > 900: 2**-q
    must stay normal; C is finite)."""
    bad = 0
    for i in prange(C.shape[0]):
        ci = C[i]
        b_i = 0
        for j in range(C.shape[1]):
            b_i += _c_bad1(ci[j])
        bad += b_i
    return bad


@njit(cache=True, parallel=True)
def pack_panels(X, w, emin_in):
    """X (K, L) as zero-padded panels (ceil(L / w), K, w) of float32 values and of int32
    clamped exponents, and how many inputs lie outside this kernel's range."""
    K, L = X.shape
    nt = (L + w - 1) // w
    P = np.zeros((nt, K, w), dtype=np.float32)
    E = np.full((nt, K, w), _ZERO_E, dtype=np.int32)
    bad = 0
    for t in prange(nt):
        l0 = t * w
        nb = min(L, l0 + w) - l0
        b_t = 0
        for k in range(K):
            xs = X[k, l0:l0 + nb]  # views: the inner loop vectorises
            pk, ek = P[t, k], E[t, k]
            for j in range(nb):
                x = xs[j]
                e, b1 = _exp32(x, emin_in)
                pk[j] = np.float32(x)
                ek[j] = e
                b_t += b1
        bad += b_t
    return P, E, bad


@njit(cache=True, parallel=True)
def fused_tiles(A, B, C, D, n, every, neab, emin_a, emin_b, p, ovf_lim, rtz_mask, min_normal,
                po, native32):
    """Tensor-core GEMM of finite inputs on packed panels: the arithmetic of
    :func:`fpsim.kernels.gemm.fused_f64` (``every == 0``: blocks of ``n`` chained over all
    of K from C; ``every > 0``: chunks of ``every`` products from 0, each added into an
    accumulator started at C with one rounding ``po``; ``native32``: ``po`` is fp32
    round-to-nearest-even with overflow to inf, so that adding two finite float32 values is
    native float32 addition, correctly rounded).

    The caller guarantees finite inputs and ``bit_length(n + 1) + 25 + neab <= 53``.
    Returns -1 without touching D when an input is not a float32 value or an exponent of
    the inputs or of C lies outside this kernel's range (the caller then uses the other
    kernels), else the NaN error count.
    """
    M, K = A.shape
    N = B.shape[1]
    nti = (M + _TR - 1) // _TR
    ntj = (N + _TN - 1) // _TN
    if c_bad(C) != 0:
        return -1
    Ap, EAp, bad_a = pack_panels(A.T, _TR, emin_a)
    Bp, EBp, bad_b = pack_panels(B, _TN, emin_b)
    if bad_a or bad_b:
        return -1
    keep = np.int64(~np.uint64(rtz_mask))
    mn = min_normal if rtz_mask != 0 else np.inf  # no truncating shortcut: every lane to rnd1
    qoff = np.int64(23 + neab)
    emin_out = np.int64(p.emin)
    # the float32 pass sums n terms below 2**(25 + neab) in int32
    i32ok = np.int64(1 if n * (np.int64(1) << (25 + neab)) <= (np.int64(1) << 31) else 0)
    err = 0
    # tiles of one column panel are consecutive: a thread reuses that panel of B from L2
    for t in prange(nti * ntj):
        err += _tile(Ap, Bp, EAp, EBp, C, D, t % nti, t // nti, n, every, qoff, emin_out,
                     keep, mn, ovf_lim, p, po, i32ok, native32)
    return err


@njit(cache=True)
def _finish(ct, mn, ovf_lim, p):
    """The lanes of a block that :func:`_block` left unrounded (finite, nonzero, not a
    normal truncated result): overflow of a truncating output to inf, else :func:`rnd1`.
    Returns the NaN error count."""
    e = 0
    for r in range(_TR):
        for j in range(_TN):
            v = ct[r, j]
            av = abs(v)
            if v == 0.0 or av == np.inf or (av >= mn and av < ovf_lim):
                continue
            if av >= ovf_lim:
                ct[r, j] = -np.inf if v < 0.0 else np.inf
            else:
                rv, e1 = rnd1(v, p)
                ct[r, j] = 0.0 if rv == 0.0 else rv  # +0 when a nonzero sum rounds to 0
                e += e1
    return e


@njit(cache=True)
def _tile(Ap, Bp, EAp, EBp, C, D, ti, tj, n, every, qoff, emin_out, keep, mn, ovf_lim, p, po,
          i32ok, native32):
    """One output tile of :func:`fused_tiles`; returns its NaN error count."""
    M, N = D.shape
    K = Ap.shape[1]
    chunk = every if every > 0 else max(K, 1)
    i0 = ti * _TR
    j0 = tj * _TN
    mr = min(M, i0 + _TR) - i0
    nb = min(N, j0 + _TN) - j0
    ct = np.zeros((_TR, _TN), dtype=np.float64)  # running value of the blocks
    ss = np.zeros((_TR, _TN), dtype=np.float64)  # outer accumulator (every > 0)
    acc = ss if every > 0 else ct
    for r in range(mr):
        for j in range(nb):
            acc[r, j] = C[i0 + r, j0 + j]
    a0, b0 = np.int64(Ap[ti].ctypes.data), np.int64(Bp[tj].ctypes.data)
    ea0, eb0 = np.int64(EAp[ti].ctypes.data), np.int64(EBp[tj].ctypes.data)
    cp = np.int64(ct.ctypes.data)
    e_t = 0
    for k0 in range(0, K, chunk):
        k1 = min(K, k0 + chunk)
        if every > 0:
            ct[:, :] = 0.0
        for lo in range(k0, k1, n):
            nk = min(k1, lo + n) - lo
            if _block(a0 + lo * (_TR * 4), b0 + lo * (_TN * 4), ea0 + lo * (_TR * 4),
                      eb0 + lo * (_TN * 4), cp, nk, qoff, emin_out, keep, mn, ovf_lim, i32ok):
                e_t += _finish(ct, mn, ovf_lim, p)
        if every > 0:
            for r in range(mr):
                for j in range(nb):
                    sj, cj = ss[r, j], ct[r, j]  # cj: a value of the inner (<= fp32) format
                    f = np.float32(sj)
                    if native32 and np.float64(f) == sj and abs(sj) < np.inf and abs(cj) < np.inf:
                        ss[r, j] = np.float64(f + np.float32(cj))
                    else:
                        sv, e1 = radd(sj, cj, po)
                        ss[r, j] = sv
                        e_t += e1
    for r in range(mr):
        for j in range(nb):
            D[i0 + r, j0 + j] = acc[r, j]
    return e_t
