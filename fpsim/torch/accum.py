"""The accumulation models of :mod:`fpsim.accum` written with torch tensor ops (any device).

:func:`matmul` evaluates ``A @ B + C`` under a model on whatever device the tensors live on,
bit for bit like :func:`fpsim.matmul` (the Numba kernels): the same float64 domain, the same
kernel parameters (:func:`fpsim.accum.kernel_params`) and the same rounding kernel
(:func:`fpsim.torch.quantize.round_bits`, the torch twin of ``round_bits``). The work is
vectorised across the output elements (all ``M x N`` lanes at once, in row chunks) with a
Python loop over K (Sequential, Pairwise) or over K blocks (FusedBlock):

* ``Sequential`` (float accumulators up to 51 bits in every deterministic rounding mode, fp64
  round-to-nearest-even; exact or rounded products): every addition is ``two_sum``,
  round-to-odd into float64 and one rounding into the accumulator, as the kernels do; an fp32
  round-to-nearest-even accumulator whose products are fp32 values (``fma=False``, or bf16
  products that are exact in fp32) adds natively in float32, which is the same correctly
  rounded result.
* ``FusedBlock`` (tensor-core presets, mixed input formats): block maximum exponent, the
  extra alignment bit, truncation of every term (c included) to ``2**q``, an exact int64 sum,
  one rounding (truncation overflow gives inf); blocks with inf/NaN give their IEEE sum.
* ``Blocked``/``Promoted`` (split-K, the FP8 promotion recipe), ``Pairwise``, and
  ``Permuted`` with a permutation order or seed.
* the instruction-level engines: ``BlockScaledFused`` (Blackwell MXFP8/6/4 and NVFP4 with
  their block scales, ``a_scale=``/``b_scale=``; :mod:`fpsim.torch.accum_scaled`) and
  ``MFMA`` (AMD CDNA1-3, every variant; :mod:`fpsim.torch.accum_mfma`).

Other models (Exact, Kahan, NumpyOrder, Integer, stochastic rounding, L-Mul products,
tree orders) are not written here: :func:`supports` says False and the torch bridge runs
them on the CPU kernels. The device must have float64 (CPU and CUDA do, MPS does not).

>>> import torch, fpsim
>>> from fpsim.torch import accum as ta
>>> A = torch.tensor([[1.0, 2.0**-12]]); B = torch.tensor([[1.0], [2.0**-12]])
>>> ta.matmul(A, B, model=fpsim.accum.Sequential("fp32", fma=True)).item()
1.0
>>> ta.matmul(A, B, model=fpsim.hardware.tensor_core("A100", "bf16")).item()
1.0
"""

from __future__ import annotations

import math
import os

import torch

from .. import accum as _A
from ..formats import FloatFormat
from ..kernels import _modes as _C
from .accum_lanes import SENT as _SENT, exp_of as _exp_of, f64 as _f64, odd_sum as _odd_sum
from .accum_lanes import pow2_normal as _pow2, round_into as _round
from .accum_mfma import mfma as _mfma
from .accum_scaled import check_scales as _check_scales, scaled_gemm as _scaled_gemm
from .quantize import quantize

__all__ = ["matmul", "supports", "backend", "BACKENDS", "ENV"]

#: Environment variable choosing the bridge's GEMM backend (see :func:`backend`).
ENV = "FPSIM_TORCH_ACCUM"
#: Its allowed values.
BACKENDS = ("auto", "torch", "numba")

#: Lanes x terms per chunk of products (float64 elements): bounds the memory of one step.
_CHUNK_ELEMS = 1 << 22
_FP32 = _A.as_format("fp32")


# ---------------------------------------------------------------------------------------
# what runs here
# ---------------------------------------------------------------------------------------

def _float_acc(fmt) -> bool:
    return isinstance(fmt, FloatFormat)


def _sum_ok(m) -> bool:
    """``m`` can sum given terms here (products are not formed: the outer model of Blocked)."""
    if isinstance(m, _A.Sequential):
        return _float_acc(m.fmt) and m.rounding != "stochastic"
    if isinstance(m, _A.Pairwise):
        return _float_acc(m.fmt)
    if isinstance(m, (_A.FusedBlock, _A.MFMA)):
        return True
    if isinstance(m, _A.Blocked):
        return _sum_ok(m.inner) and _sum_ok(m.outer)
    return False


def _mult_ok(mult) -> bool:
    return isinstance(mult, (_A.ExactProduct, _A.RoundedProduct))


def supports(model) -> bool:
    """Whether :func:`matmul` evaluates ``model`` (else the torch bridge uses the CPU kernels).

    >>> import fpsim
    >>> supports(fpsim.hardware.fp8_promoted("H100", "e4m3", 128)), supports(fpsim.accum.Exact("fp32"))
    (True, False)
    >>> supports(fpsim.hardware.tensor_core("B200", "nvfp4")), supports(fpsim.hardware.tensor_core("MI300X", "e4m3fnuz"))
    (True, True)
    """
    # block-scaled models take their scales at the top level only (nested, fpsim refuses them)
    return isinstance(model, _A.BlockScaledFused) or _nested_ok(model)


def _nested_ok(model) -> bool:
    if isinstance(model, _A.Permuted):  # a periodic order pads K: left to the CPU kernels
        return not model._is_tree() and model.period is None and _nested_ok(model.inner)
    if isinstance(model, _A.Blocked):
        return _nested_ok(model.inner) and _sum_ok(model.outer)
    if isinstance(model, (_A.Sequential, _A.Pairwise)):
        return _sum_ok(model) and _mult_ok(model._multiplier())
    if isinstance(model, _A.FusedBlock):  # a narrower C (Volta's f16 C): the CPU kernels
        return model.c_fmt is None
    return isinstance(model, _A.MFMA)


def backend(device, model) -> str:
    """``"torch"`` or ``"numba"``: which implementation the bridge uses for a GEMM of
    ``model`` on ``device``.

    ``$FPSIM_TORCH_ACCUM`` (:data:`ENV`): ``auto`` (default) keeps tensors that are not on
    the CPU on their device (CPU tensors use the Numba kernels); ``torch`` forces this module
    on every device (how the test suite compares both on CPU); ``numba`` always copies to
    the CPU kernels. Models :func:`supports` rejects and devices without float64 (MPS)
    always use the CPU kernels.

    >>> import torch, fpsim
    >>> backend(torch.device("cpu"), fpsim.accum.Sequential("fp32"))
    'numba'
    """
    choice = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if choice not in BACKENDS:
        raise ValueError(f"${ENV}={choice!r}: allowed {', '.join(BACKENDS)}")
    dev = torch.device(device)
    if choice == "numba" or dev.type == "mps" or not supports(model):
        return "numba"
    if choice == "torch" or dev.type != "cpu":
        return "torch"
    return "numba"


def _clamped(x, emin):
    """Exponents clamped below at the input format's emin; zeros and non-finite: _SENT."""
    ok = (x != 0) & torch.isfinite(x)
    e = torch.clamp(_exp_of(torch.where(ok, x, torch.ones_like(x))), min=emin)
    return torch.where(ok, e, torch.full_like(e, _SENT))


# ---------------------------------------------------------------------------------------
# term sources: products of a GEMM, or given terms (the partial sums of Blocked)
# ---------------------------------------------------------------------------------------

class _Gemm:
    """Products ``A[..., m, k] * B[..., k, n]`` with lanes (..., M, N)."""

    def __init__(self, A, B):
        self.A, self.B = A, B
        self.K = A.shape[-1]
        self.lanes = (*A.shape[:-1], B.shape[-1])
        self._exps = {}

    def factors(self, lo, hi):
        """The factors of products lo..hi-1: (k, ..., M, 1) and (k, ..., 1, N)."""
        return (self.A[..., lo:hi].movedim(-1, 0).unsqueeze(-1),
                self.B[..., lo:hi, :].movedim(-2, 0).unsqueeze(-2))

    def prod(self, lo, hi):
        a, b = self.factors(lo, hi)
        return a * b  # exact for inputs of <= 26 significant bits (checked)

    def exps(self, lo, hi, emin_a, emin_b):
        """Clamped exponent sums ea + eb of the products (_SENT-ish for zero factors)."""
        if (emin_a, emin_b) not in self._exps:
            self._exps[(emin_a, emin_b)] = (_clamped(self.A, emin_a), _clamped(self.B, emin_b))
        ea, eb = self._exps[(emin_a, emin_b)]
        return (ea[..., lo:hi].movedim(-1, 0).unsqueeze(-1)
                + eb[..., lo:hi, :].movedim(-2, 0).unsqueeze(-2))

    def sub(self, lo, hi):
        return _Gemm(self.A[..., lo:hi], self.B[..., lo:hi, :])

    def take(self, perm):
        return _Gemm(self.A[..., perm], self.B[..., perm, :])


class _Terms:
    """Given terms T (K, *lanes): a fused block sees them as ``T * 1.0``."""

    def __init__(self, T):
        self.T = T
        self.K = T.shape[0]
        self.lanes = tuple(T.shape[1:])

    def prod(self, lo, hi):
        return self.T[lo:hi]

    def factors(self, lo, hi):
        return self.T[lo:hi], torch.ones_like(self.T[lo:hi])

    def exps(self, lo, hi, emin_a, emin_b):
        return _clamped(self.T[lo:hi], emin_a) + max(0, emin_b)  # exponent of 1.0 is 0

    def sub(self, lo, hi):
        return _Terms(self.T[lo:hi])

    def take(self, perm):
        return _Terms(self.T[perm])


def _step(src):
    """Terms per chunk of products, so that a chunk holds about _CHUNK_ELEMS lanes x terms."""
    return max(1, _CHUNK_ELEMS // max(1, math.prod(src.lanes)))


def _products(src, lo, hi, mult):
    P = src.prod(lo, hi)
    if isinstance(mult, _A.RoundedProduct):
        P = _round(P, _A.kernel_params(mult), mult.fmt)
    return P


# ---------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------

def _is_f32(x):
    return bool(((x.to(torch.float32).to(torch.float64) == x) | torch.isnan(x)).all())


def _f32_gemm_ok(src, mult):
    """Whether ``s = fl32(s + fl32(a * b))`` in float32 arithmetic is the model's arithmetic:
    a GEMM whose inputs are fp32 values, with products rounded into fp32 (RNE, as a float32
    multiply does), or with exact products that fp32 holds (<= 12 significant bits per input
    and every product normal in fp32: bf16, fp16, tf32, fp8 inputs in a sane range)."""
    if not isinstance(src, _Gemm):
        return False
    A, B = src.A, src.B
    if isinstance(mult, _A.RoundedProduct):
        return (mult.fmt == _FP32 and mult.rounding == "rne" and _is_f32(A) and _is_f32(B))
    if not isinstance(mult, _A.ExactProduct):
        return False

    def narrow(x):
        fin = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
        m = torch.frexp(fin)[0] * 4096.0
        ax = fin.abs()
        nz = ax[ax != 0]
        lo = float(nz.min()) if nz.numel() else 1.0
        return bool((m == torch.round(m)).all()), lo, float(ax.max()) if ax.numel() else 0.0
    okA, loA, hiA = narrow(A)
    okB, loB, hiB = narrow(B)
    return okA and okB and loA * loB >= 2.0**-126 and hiA * hiB < 2.0**127


def _seq(model, src, c, mult):
    kind, p = _A.kernel_params(model)
    fmt = model.fmt
    native32 = (fmt == _FP32 and model.rounding == "rne" and model.overflow in (None, "inf"))
    if native32 and src.K and _is_f32(c) and _f32_gemm_ok(src, mult):
        # no products in memory: one float32 multiply (exact, or the model's fp32 product
        # rounding) and one float32 addition (the correctly rounded round(s + t)) per k
        A32, B32 = src.A.to(torch.float32), src.B.to(torch.float32)
        s32 = c.to(torch.float32)
        for k in range(src.K):
            s32 = s32 + A32[..., k:k + 1] * B32[..., k:k + 1, :]
        return s32.to(torch.float64)
    s = c
    step = _step(src)
    for lo in range(0, src.K, step):
        P = _products(src, lo, min(src.K, lo + step), mult)
        if kind == _C.NATIVE:  # fp64 round-to-nearest-even: float64 addition itself
            for t in P:
                s = s + t
            continue
        # fp32 values (rounded or exact products) add in float32 with the correctly
        # rounded result round(s + t); anything else takes two_sum + round-to-odd
        P32 = P.to(torch.float32) if native32 else None
        if native32 and bool((P32.to(torch.float64) == P).all()):
            s32 = s.to(torch.float32)
            for t in P32:
                s32 = s32 + t
            s = s32.to(torch.float64)
            continue
        for t in P:
            x = _odd_sum(s, t)
            s = x.to(torch.float32).to(torch.float64) if native32 else _round(x, p, fmt)
    return s


def _pair(model, src, c, mult):
    _, p = _A.kernel_params(model)
    fmt = model.fmt
    if src.K == 0:
        return c
    def tree(lo, hi):  # recursive halves, left half (hi - lo) // 2 (as tree_sum)
        if hi - lo == 1:
            return _products(src, lo, hi, mult)[0]
        mid = lo + (hi - lo) // 2
        return _round(_odd_sum(tree(lo, mid), tree(mid, hi)), p, fmt)

    return _round(_odd_sum(c, tree(0, src.K)), p, fmt)


def _fused(model, src, c, specials):
    """Blocks of n chained through c (fused_row / fused_block / gemm_fused_vec)."""
    n, neab, emin_a, emin_b, p, ovf_lim, rtz_mask, min_normal = _A.kernel_params(model)
    fmt = model.out_fmt
    s = c
    for lo in range(0, src.K, n):
        hi = min(src.K, lo + n)
        P = src.prod(lo, hi)
        EP = src.exps(lo, hi, emin_a, emin_b)
        bad = ~torch.isfinite(s)
        if specials:  # a block holding inf/NaN gives the IEEE sum of c and its products
            fin = torch.isfinite(P)
            bad = bad | ~fin.all(0)
            t = s
            for x in P:
                t = t + x
            special = _round(t, p, fmt)
            P = torch.where(fin, P, torch.zeros_like(P))
        else:  # only an accumulator that overflowed to inf: finite products keep it
            special = s
        cf = torch.where(bad, torch.zeros_like(s), s)
        # key = 2 * (ea + eb) + (significand product >= 2), as the fast kernels: its maximum
        # gives the largest product exponent emaxp and whether the extra bit applies, and
        # the largest normalised exponent is emaxp + big (a significand product is < 4).
        # Products of inputs up to fp32's range are normal float64 numbers (exponent field);
        # zero products have a _SENT factor exponent, so their keys stay far below
        key = 2 * EP + ((((P.view(torch.int64) >> 52) & 0x7FF) - 1023) > EP).to(torch.int64)
        maxkey = key.amax(0)
        anyp = maxkey > -(1 << 32)
        emaxp = torch.where(anyp, maxkey >> 1, _SENT)
        big = anyp & ((maxkey & 1) == 1)
        has_c = cf != 0
        ec = torch.where(has_c, torch.clamp(_exp_of(torch.where(has_c, cf, torch.ones_like(cf))),
                                            min=p.emin), _SENT)
        E = torch.maximum(torch.where(anyp, emaxp + big.to(torch.int64), _SENT), ec)
        extra = big & (~has_c | (emaxp >= ec))
        q = torch.where(E > _SENT // 2, E - 23 - neab - extra.to(torch.int64), 0)
        sc = _pow2(-q)
        # truncation toward zero of every term at 2**q: float -> int64 conversion truncates
        S = (cf * sc).to(torch.int64) + (P * sc).to(torch.int64).sum(0)
        v = S.to(torch.float64) * _pow2(q)
        av = v.abs()
        if rtz_mask:  # truncating a normal result clears the dropped fraction bits (as the
            # Numba fast kernels do: the same bits as the rounding kernel)
            r = _f64(v.view(torch.int64) & ~rtz_mask)
            slow = (av < min_normal) | (av >= ovf_lim)
            if bool(slow.any()):
                r = torch.where(slow, _round(v, p, fmt), r)
        else:
            r = _round(v, p, fmt)
        r = torch.where(r == 0, torch.zeros_like(r), r)  # +0, also for S == 0
        if math.isfinite(ovf_lim):  # truncating output: an overflow gives inf, as the GPU
            r = torch.where(av >= ovf_lim, torch.copysign(torch.full_like(v, math.inf), v), r)
        s = torch.where(bad, special, r)
    return s


def _eval(model, src, c, specials, mult=None, outer=False):
    """``model`` over the terms of ``src`` from c (float64 lanes). ``outer``: the terms are
    given sums, not products (no multiplier)."""
    if isinstance(model, _A.Permuted):
        return _eval(model.inner, src.take(torch.as_tensor(model._perm(src.K), device=c.device)),
                     c, specials)
    if isinstance(model, _A.FusedBlock):
        return _fused(model, src, c, specials)
    if isinstance(model, _A.MFMA):
        return _mfma(model, src, c)
    if isinstance(model, _A.Blocked):
        k, K = model.k, src.K
        z = torch.zeros_like(c)
        parts = [_eval(model.inner, src.sub(lo, min(K, lo + k)), z, specials, outer=outer)
                 for lo in range(0, K, k)]
        T = torch.stack(parts) if parts else c.new_zeros((0, *c.shape))
        return _eval(model.outer, _Terms(T), c, True, outer=True)
    m = None if outer else model._multiplier()
    if isinstance(model, _A.Pairwise):
        return _pair(model, src, c, m)
    return _seq(model, src, c, m)


# ---------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------

def _width(model):
    """Products per step the model holds at once (fused blocks; others chunk by _step)."""
    if isinstance(model, (_A.FusedBlock, _A.MFMA)):
        return max(32, model.n if isinstance(model, _A.FusedBlock) else model.L)
    if isinstance(model, _A.Blocked):
        return max(_width(model.inner), _width(model.outer))
    if isinstance(model, _A.Permuted):
        return _width(model.inner)
    return 32


def _check_inputs(model, A, B):
    """The checks of fpsim.matmul: values of the model's input format(s), <= 26 bits."""
    for what, x, fin in (("A", A, model.input_formats[0]), ("B", B, model.input_formats[1])):
        if x.numel() == 0:
            continue
        nan = torch.isnan(x)
        if fin is not None:
            if not fin.has_nan and bool(nan.any()):
                raise ValueError(f"{what} holds NaN but the model's input format {fin.name} has "
                                 "no NaN")
            x0 = torch.where(nan, torch.zeros_like(x), x)
            q = quantize(x0, fin, impl="torch", backward="none",
                         nan="zero" if not fin.has_nan else None)
            bad = (q != x0) & ~nan
            if bool(bad.any()):
                v = x[bad].reshape(-1)[0].item()
                raise ValueError(f"{what} holds {v!r}, which is not a value of the model's input "
                                 f"format {fin.name}; round the inputs first with "
                                 f"fpsim.torch.quantize(x, {fin.name!r})")
        fm = torch.frexp(torch.where(torch.isfinite(x), x, torch.zeros_like(x)))[0] * 2.0**26
        if not bool((fm == torch.round(fm)).all()):
            raise ValueError(f"{what} has values with more than 26 significant bits: products "
                             "are formed exactly in float64, which needs inputs of at most 26 "
                             "bits (fp32 and narrower); round the inputs first")


def matmul(A, B, C=None, *, model, a_scale=None, b_scale=None):
    """``D = A @ B + C`` under ``model`` with torch ops on the tensors' device; float64 result.

    Same contract and bits as :func:`fpsim.matmul`: ``A`` (..., M, K) and ``B`` (..., K, N)
    broadcast their batch dimensions, ``C`` (optional) broadcasts to (..., M, N); inputs must
    hold values of the model's input format(s); a block-scaled model takes ``a_scale``
    (..., M, K // block) and ``b_scale`` (..., K // block, N), tensors on the same device.
    Raises ``NotImplementedError`` for a model :func:`supports` rejects.

    >>> import torch, fpsim
    >>> A = torch.tensor([[1.0, 2.0**-24, 2.0**-24]]); B = torch.ones(3, 1)
    >>> matmul(A, B, model=fpsim.accum.Sequential("fp32")).item()
    1.0
    >>> matmul(A, B, model=fpsim.accum.Pairwise("fp32")).item()
    1.0000001192092896
    """
    if not (isinstance(A, torch.Tensor) and isinstance(B, torch.Tensor)):
        raise TypeError(f"fpsim.torch.accum.matmul takes torch tensors, got {type(A).__name__} "
                        f"and {type(B).__name__} (use fpsim.matmul for numpy arrays)")
    if not isinstance(model, _A.Model):
        raise TypeError(f"model={model!r} is not an accumulation model (fpsim.accum, "
                        "fpsim.hardware.tensor_core)")
    if not supports(model):
        raise NotImplementedError(f"{model!r} is not written in torch ops (supported: "
                                  "Sequential, Pairwise, FusedBlock, Blocked/Promoted, Permuted "
                                  "orders, MFMA, BlockScaledFused); use fpsim.matmul on CPU "
                                  "arrays")
    if A.device != B.device or (C is not None and C.device != A.device):
        raise ValueError("A, B (and C) must be on one device")
    if A.dim() < 2 or B.dim() < 2:
        raise ValueError(f"matmul needs A (..., M, K) and B (..., K, N); got shapes "
                         f"{tuple(A.shape)} and {tuple(B.shape)}")
    if A.shape[-1] != B.shape[-2]:
        raise ValueError(f"matmul: A has K={A.shape[-1]} columns but B has {B.shape[-2]} rows "
                         f"(shapes {tuple(A.shape)} and {tuple(B.shape)})")
    for what, x in (("A", A), ("B", B), ("C", C)):
        if x is not None and not x.is_floating_point():
            raise TypeError(f"{what}: floating-point tensors only, got {x.dtype}")
    batch = torch.broadcast_shapes(A.shape[:-2], B.shape[:-2])
    M, K, N = A.shape[-2], A.shape[-1], B.shape[-1]
    shape_a, shape_b = tuple(A.shape), tuple(B.shape)
    A = A.detach().to(torch.float64).expand(*batch, M, K)
    B = B.detach().to(torch.float64).expand(*batch, K, N)
    _check_inputs(model, A, B)
    if C is None:
        Cb = A.new_zeros((*batch, M, N))
    else:
        try:
            Cb = C.detach().to(torch.float64).expand(*batch, M, N)
        except RuntimeError:
            raise ValueError(f"C with shape {tuple(C.shape)} does not broadcast to the result "
                             f"shape {(*batch, M, N)}") from None
    if isinstance(model, _A.BlockScaledFused):  # the checks of its fpsim.matmul, in order
        kb = model._blocks(K, "matmul")
        SA = _check_scales(model, a_scale, "a_scale", shape_a[:-1] + (kb,), A.device)
        SB = _check_scales(model, b_scale, "b_scale", shape_b[:-2] + (kb, N), A.device)
        return _scaled_gemm(model, A, B, Cb, SA.expand(*batch, M, kb), SB.expand(*batch, kb, N))
    model._no_scales(a_scale, b_scale)
    specials = not (bool(torch.isfinite(A).all()) and bool(torch.isfinite(B).all())
                    and bool(torch.isfinite(Cb).all()))
    D = torch.empty((*batch, M, N), dtype=torch.float64, device=A.device)
    # every output is independent: chunks of rows bound the memory of one block of products
    rows = max(1, _CHUNK_ELEMS // (_width(model) * max(1, N) * max(1, math.prod(batch))))
    with torch.no_grad():
        for r0 in range(0, M, rows):
            r1 = min(M, r0 + rows)
            src = _Gemm(A[..., r0:r1, :], B)
            D[..., r0:r1, :] = _eval(model, src, Cb[..., r0:r1, :].contiguous(), specials)
    return D

