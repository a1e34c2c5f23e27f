"""Register-blocked GEMM kernels of the accumulation models (issue 12).

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

