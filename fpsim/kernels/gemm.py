"""Register-blocked GEMM kernels of the accumulation models (issue 12).

The tensor-core models run :mod:`fpsim.kernels.gemm_fused` (packed panels, an LLVM IR
block micro-kernel, float32/int32 lanes where exact) wherever it applies; ``fused_f64``
below is the fallback of their split-K / promoted chains (inputs without a declared
format, C beyond that kernel's exponent range), and
:func:`fpsim.kernels.accum.gemm_fused_vec` that of plain FusedBlock GEMMs.

Same bits as the reference kernels of :mod:`fpsim.kernels.accum` (the tests compare them),
but organised like a BLAS micro-kernel: the output is cut into tiles of ``_MR`` rows by
``_NB`` columns, a tile's accumulators stay in a small buffer in L1 for the whole K loop,
and the innermost loop runs over the tile's columns so that it is SIMD. The K loop of every
output element is sequential and never split, and ``prange`` runs over tiles only, so the
results are identical for any thread count.

Exactness used:

* Sequential fp32 (round to nearest even): when A, B and C hold float32 values, one step
  ``s = fp32(s + fp32(a * b))`` is exactly native float32 arithmetic (IEEE multiplication
  and addition are correctly rounded; Numba does not contract ``a * b + s`` into an FMA
  without ``fastmath``), and ``fma=True``'s ``s = fp32(s + a * b)`` is the float32 fused
  multiply-add instruction (``llvm.fma.f32``).
* Tensor-core blocks (:func:`fpsim.kernels.accum.fused_block`): every term is truncated at
  the quantum ``2**q`` of its block, so each term is a multiple of ``2**q`` below
  ``2**(q + 25 + neab)`` in magnitude; ``n + 1`` of them sum *exactly* in float64 when
  ``bit_length(n) + 25 + neab <= 53`` (checked by the caller, which otherwise uses the
  integer kernel). Truncation is a mask on the float64 bit pattern (no float -> int64
  conversion, which AVX2 lacks).
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .accum import radd, rnd1
from .eft import bits_f64, f64_bits

_MR = 6  # rows of a tile
_NR = 16  # columns of a tile: two 8-lane float32 vectors
_VW = 8


def _make_micro(use_fma):
    """An intrinsic ``micro(ap, bp, ct, K)``: ``ct[r, j] = fp32(ct[r, j] + Ap[k, r] Bp[k, j])``
    for k = 0..K-1 (``use_fma``: one rounding, else the product is rounded first).

    ``ap``/``bp``/``ct``: addresses of contiguous float32 arrays (K, _MR), (K, _NR) and
    (_MR, _NR). Written in LLVM IR because Numba's loop vectoriser cannot keep a tile of
    accumulators in registers: here the 12 accumulators are <8 x float> values (SSA phis)
    for the whole K loop, as in a BLAS micro-kernel. IEEE float32 ``fmul``/``fadd`` and
    ``llvm.fma`` are correctly rounded (no fast-math flags), on any target.
    """
    nv = _NR // _VW

    @intrinsic
    def micro(typingctx, ap, bp, ct, K):
        sig = types.void(types.intp, types.intp, types.intp, types.intp)

        def codegen(context, builder, signature, args):
            ap_i, bp_i, ct_i, kk = args
            f32 = ir.FloatType()
            vt = ir.VectorType(f32, _VW)
            i32, i64 = ir.IntType(32), ir.IntType(64)
            ap_p = builder.inttoptr(ap_i, f32.as_pointer())
            bp_p = builder.inttoptr(bp_i, f32.as_pointer())
            ct_p = builder.inttoptr(ct_i, f32.as_pointer())
            fma_fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vt, [vt, vt, vt]), "llvm.fma.v8f32")

            def vptr(p, off):
                return builder.bitcast(builder.gep(p, [off]), vt.as_pointer())

            def const(v):
                return ir.Constant(i64, v)

            init = [[builder.load(vptr(ct_p, const(r * _NR + v * _VW)), align=4)
                     for v in range(nv)] for r in range(_MR)]
            pre = builder.block
            loop = builder.append_basic_block("micro.loop")
            done = builder.append_basic_block("micro.done")
            builder.cbranch(builder.icmp_signed(">", kk, const(0)), loop, done)
            builder.position_at_end(loop)
            k = builder.phi(i64)
            acc = [[builder.phi(vt) for v in range(nv)] for r in range(_MR)]
            bv = [builder.load(vptr(bp_p, builder.add(builder.mul(k, const(_NR)),
                                                      const(v * _VW))), align=4)
                  for v in range(nv)]
            undef = ir.Constant(vt, ir.Undefined)
            zeros = ir.Constant(ir.VectorType(i32, _VW), [0] * _VW)
            new = []
            for r in range(_MR):
                a = builder.load(builder.gep(ap_p, [builder.add(builder.mul(k, const(_MR)),
                                                                const(r))]))
                av = builder.shuffle_vector(
                    builder.insert_element(undef, a, ir.Constant(i32, 0)), undef, zeros)
                if use_fma:
                    new.append([builder.call(fma_fn, [av, bv[v], acc[r][v]]) for v in range(nv)])
                else:
                    new.append([builder.fadd(acc[r][v], builder.fmul(av, bv[v]))
                                for v in range(nv)])
            k1 = builder.add(k, const(1))
            k.add_incoming(const(0), pre)
            k.add_incoming(k1, loop)
            for r in range(_MR):
                for v in range(nv):
                    acc[r][v].add_incoming(init[r][v], pre)
                    acc[r][v].add_incoming(new[r][v], loop)
            builder.cbranch(builder.icmp_signed("<", k1, kk), loop, done)
            builder.position_at_end(done)
            res = [[builder.phi(vt) for v in range(nv)] for r in range(_MR)]
            for r in range(_MR):
                for v in range(nv):
                    res[r][v].add_incoming(init[r][v], pre)
                    res[r][v].add_incoming(new[r][v], loop)
                    builder.store(res[r][v], vptr(ct_p, const(r * _NR + v * _VW)), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return micro


_micro_fma = _make_micro(True)
_micro_mul_add = _make_micro(False)


@njit(cache=True, inline="always")
def _f32_exact(x):
    """float32(x), and whether it equals x (NaN counts as exact: it stays NaN)."""
    f = np.float32(x)
    return f, (np.float64(f) == x) | (x != x)


@njit(cache=True, parallel=True)
def seq_f32(A, B, C, D, fma):
    """Sequential fp32 (RNE) GEMM: ``D = C; D[i, j] = fp32(D[i, j] + A[i, k] B[k, j])`` for
    k = 0..K-1 (``fma=False`` rounds each product to fp32 first), float64 in and out.

    Returns 1 without touching D when A, B or C hold a value that is not a float32 (the
    caller then uses the float64 kernel), else 0. Packs A into row panels (K, _MR) and B
    into column panels (K, _NR) of float32, zero-padded: besides D, the only memory used.
    """
    M, K = A.shape
    N = B.shape[1]
    nti = (M + _MR - 1) // _MR
    ntj = (N + _NR - 1) // _NR
    bad = 0
    for i in prange(M):
        for j in range(N):
            f, ok = _f32_exact(C[i, j])
            bad += 0 if ok else 1
    Bp = np.zeros((ntj, K, _NR), dtype=np.float32)
    for tj in prange(ntj):
        j0 = tj * _NR
        nb = min(N, j0 + _NR) - j0
        for k in range(K):
            for j in range(nb):
                f, ok = _f32_exact(B[k, j0 + j])
                Bp[tj, k, j] = f
                bad += 0 if ok else 1
    Ap = np.zeros((nti, K, _MR), dtype=np.float32)
    for ti in prange(nti):
        i0 = ti * _MR
        mr = min(M, i0 + _MR) - i0
        for k in range(K):
            for r in range(mr):
                f, ok = _f32_exact(A[i0 + r, k])
                Ap[ti, k, r] = f
                bad += 0 if ok else 1
    if bad:
        return 1
    # tiles of one column panel are consecutive: a thread reuses that panel of B from L2
    for t in prange(nti * ntj):
        ti = t % nti
        tj = t // nti
        i0 = ti * _MR
        j0 = tj * _NR
        mr = min(M, i0 + _MR) - i0
        nb = min(N, j0 + _NR) - j0
        ct = np.zeros((_MR, _NR), dtype=np.float32)
        for r in range(mr):
            for j in range(nb):
                ct[r, j] = C[i0 + r, j0 + j]
        if fma:
            _micro_fma(Ap[ti].ctypes.data, Bp[tj].ctypes.data, ct.ctypes.data, K)
        else:
            _micro_mul_add(Ap[ti].ctypes.data, Bp[tj].ctypes.data, ct.ctypes.data, K)
        for r in range(mr):
            for j in range(nb):
                D[i0 + r, j0 + j] = ct[r, j]
    return 0


# ---------------------------------------------------------------------------------------
# Tensor-core blocks (FusedBlock) and their split-K / promoted chains, in float64
# ---------------------------------------------------------------------------------------

_FR = 4  # rows of a tensor-core tile
_FN = 64  # columns of a tensor-core tile (float64 SIMD lanes run over them)


@njit(cache=True, inline="always")
def _drop_bits(sh):
    """How many low bits of a float64 pattern to clear for a truncation that drops ``sh``
    bits of its significand: none when sh <= 0; 63 (all but the sign: a zero) when the
    whole significand goes (sh > 52), so the exponent field is never touched."""
    return 63 if sh > 52 else max(sh, 0)


@njit(cache=True, parallel=True)
def fused_f64(A, B, EA, EB, C, D, n, every, neab, p, ovf_lim, rtz_mask, min_normal, po):
    """Tensor-core GEMM for finite inputs: the arithmetic of
    :func:`fpsim.kernels.accum.gemm_fused_vec` (bit-identical), on tiles of _FR x _FN outputs
    whose blocks of B stay in L1 for _FR rows.

    ``every == 0``: the blocks of ``n`` are chained over all of K from ``C``. ``every > 0``
    (:class:`fpsim.accum.Blocked` / ``Promoted`` with a FusedBlock inner model): chunks of
    ``every`` products each start from 0 with blocks of ``n`` counted from the chunk start,
    and every chunk's result is added into an accumulator started at ``C`` with one
    rounding ``po`` (the outer Sequential model). EA/EB: clamped input exponents (zeros: a
    huge negative value). The caller guarantees ``bit_length(n + 1) + 25 + neab <= 53``,
    so a block's truncated terms sum exactly in float64. Returns the NaN error count.
    """
    M, K = A.shape
    N = B.shape[1]
    nti = (M + _FR - 1) // _FR
    ntj = (N + _FN - 1) // _FN
    chunk = every if every > 0 else max(K, 1)
    keep = np.int64(~np.uint64(rtz_mask))
    emin_out = np.int64(p.emin)
    err = 0
    for t in prange(nti * ntj):
        i0 = (t % nti) * _FR
        j0 = (t // nti) * _FN
        mr = min(M, i0 + _FR) - i0
        nb = min(N, j0 + _FN) - j0
        pr = np.empty((n, _FN), dtype=np.float64)
        mk = np.empty(_FN, dtype=np.int64)
        qb = np.empty(_FN, dtype=np.int64)
        S = np.empty(_FN, dtype=np.float64)
        fix = np.empty(_FN, dtype=np.int64)
        cc = np.zeros((_FR, _FN), dtype=np.float64)  # running value of the blocks
        ss = np.zeros((_FR, _FN), dtype=np.float64)  # outer accumulator (every > 0)
        e_t = 0
        for r in range(mr):
            for j in range(nb):
                if every > 0:
                    ss[r, j] = C[i0 + r, j0 + j]
                else:
                    cc[r, j] = C[i0 + r, j0 + j]
        for k0 in range(0, K, chunk):
            k1 = min(K, k0 + chunk)
            if every > 0:
                cc[:, :] = 0.0
            for lo in range(k0, k1, n):
                hi = min(k1, lo + n)
                for r in range(mr):
                    i = i0 + r
                    c = cc[r]
                    for j in range(nb):
                        mk[j] = -(1 << 40)
                    # pass 1: products and key = 2 (ea + eb) + (significand product >= 2);
                    # its maximum gives the largest exponent and the extra alignment bit
                    for k in range(lo, hi):
                        a = A[i, k]
                        ea = EA[i, k]
                        Bk = B[k, j0:j0 + nb]  # views: Bk[j] vectorises, Bk[j0 + j] not
                        EBk = EB[k, j0:j0 + nb]
                        prk = pr[k - lo]
                        for j in range(nb):
                            v = a * Bk[j]
                            prk[j] = v
                            ep = ea + EBk[j]
                            ne = np.int64((f64_bits(v) >> np.uint64(52)) & np.uint64(0x7FF)) - 1023
                            mk[j] = max(mk[j], 2 * ep + (1 if ne > ep else 0))
                    # the quantum 2**q of each output's block, and c truncated at it
                    for j in range(nb):
                        m = mk[j]
                        big = m & 1
                        E = (m >> 1) + big  # the largest normalised product exponent
                        if m < -(1 << 30):  # only zero products
                            E = np.int64(-100000)
                        cj = c[j]
                        cb = np.int64(f64_bits(cj))
                        ec = max(((cb >> 52) & 0x7FF) - 1023, emin_out)
                        if cj != 0.0:
                            E = max(E, ec)
                            if (m >> 1) < ec:
                                big = 0
                        qb[j] = E - 23 - neab - big + 1075
                        fix[j] = 2 if cj - cj != 0.0 else 0  # inf from an earlier block stays
                        sh = _drop_bits(qb[j] - ((cb >> 52) & 0x7FF))
                        S[j] = bits_f64(np.uint64(cb & ((-1) << sh)))
                    # pass 2: every product truncated toward zero at 2**q (a mask on its bit
                    # pattern) and summed; exact in float64 (see the docstring)
                    for k in range(hi - lo):
                        prk = pr[k]
                        for j in range(nb):
                            b = np.int64(f64_bits(prk[j]))
                            sh = _drop_bits(qb[j] - ((b >> 52) & 0x7FF))
                            S[j] += bits_f64(np.uint64(b & ((-1) << sh)))
                    for j in range(nb):
                        v = S[j]
                        av = abs(v)
                        if fix[j] == 2:
                            pass
                        elif rtz_mask != 0 and av >= min_normal and av < ovf_lim:
                            c[j] = bits_f64(np.uint64(np.int64(f64_bits(v)) & keep))
                        elif av >= ovf_lim:
                            c[j] = -np.inf if v < 0.0 else np.inf
                        else:
                            fix[j] = 1
                    for j in range(nb):
                        if fix[j] == 1:
                            rv, e1 = rnd1(S[j], p)  # also a zero sum: +0 as the GPU model
                            c[j] = 0.0 if rv == 0.0 else rv  # +0 when a nonzero sum rounds to 0
                            e_t += e1
            if every > 0:
                for r in range(mr):
                    for j in range(nb):
                        s, e1 = radd(ss[r, j], cc[r, j], po)
                        ss[r, j] = s
                        e_t += e1
        for r in range(mr):
            for j in range(nb):
                D[i0 + r, j0 + j] = ss[r, j] if every > 0 else cc[r, j]
        err += e_t
    return err
