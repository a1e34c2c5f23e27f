"""Instruction-level matrix engines with an fp32 output: AMD's :class:`MFMA` and
Blackwell's block-scaled :class:`BlockScaledFused` (the models of MMA-Sim).

:func:`fpsim.hardware.mma` builds both from instruction names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..block.descriptor import BlockCodes, BlockFormat
from ..formats import FloatFormat, Format, as_format
from ..rounding import decode, quantize
from ._common import FP32, check_int, dot_rows, params, raise_nan, set_input_formats
from ._common import K as _K
from .inputs import exact_float64
from .models import Model
from .products import ExactProduct

__all__ = ["BlockScaledFused", "MFMA"]


class _Fp32Engine(Model):
    """What the instruction-level engines share: fp32 output, exact products, (A, B) formats."""

    @property
    def out_fmt(self):
        return FP32

    @property
    def input_formats(self):
        return self.in_fmt, (self.in_fmt_b if self.in_fmt_b is not None else self.in_fmt)

    def _multiplier(self):
        return ExactProduct()


@dataclass(frozen=True)
class BlockScaledFused(_Fp32Engine):
    """Block-scaled tensor-core dot-add (Blackwell ``kind::mxf8f6f4``, ``kind::mxf4``,
    ``kind::mxf4nvf4``; the model of MMA-Sim, Xie et al. 2025, checked bit for bit in
    ``tests/test_mmasim.py``).

    The operands come with one scale per ``block`` consecutive elements along K
    (``a_scale``/``b_scale`` of :func:`dot` and :func:`matmul`), values of ``scale_fmt``
    (``e8m0``: UE8M0 powers of two, NaN for code 0xFF; ``ue4m3``). Each instruction takes
    ``L`` products and the accumulator c:

    * ``group == 1`` (kind::mxf8f6f4): each product is scaled by its two block scales and
      joins the fused sum with exponent ``ea + eb + log2(sa) + log2(sb)`` (operand exponents
      clamped at their formats' smallest normal exponent);
    * ``group == 16`` (kind::mxf4, mxf4nvf4): each group of 16 products is summed exactly,
      the group sum scaled, and aligned at the exponent of its scales' product
      (``floor(log2 sa) + floor(log2 sb)``), whatever the magnitude of the sum.

    Zero terms (a zero product, an all-zero group, a zero scale, a zero c) count with
    exponent ``e_zero``; every term is truncated toward zero at ``2**(E - F)``, E the
    largest exponent; the sum is rounded once toward zero into fp32 (an overflow gives
    inf); instructions chain through c. An instruction holding inf or NaN (a NaN scale
    included) gives their IEEE sum. :func:`fpsim.hardware.mma` builds these models from
    PTX names. The operands may also be the block codes :func:`fpsim.encode` returns (a
    block format of the model's block size, blocked along K, without a per-tensor scale):
    their elements and scales are decoded and checked as values.

    >>> import numpy as np, fpsim
    >>> m = fpsim.hardware.mma("Blackwell", "tcgen05.mma.m128n256k32.kind::mxf8f6f4.block32.f32.e4m3.e4m3.ue8m0")
    >>> a = np.ones(32); b = np.full(32, 0.5)
    >>> float(fpsim.dot(a, b, 1.0, model=m, a_scale=[2.0**-4], b_scale=[1.0]))
    2.0
    >>> ca, cb = fpsim.encode(a, "mxfp8_e4m3"), fpsim.encode(b, "mxfp8_e4m3")
    >>> float(fpsim.dot(ca, cb, 1.0, model=m))  # block codes: scales 1 and 2**-1
    17.0
    """

    L: int = 32
    F: int = 25
    block: int = 32
    group: int = 1
    e_zero: int = -133
    in_fmt: Format = "e4m3"
    in_fmt_b: Format | None = None
    scale_fmt: Format = "e8m0"
    name: str = ""

    def __post_init__(self):
        check_int(self, ("L", "F", "block", "group", "e_zero"))
        if self.group not in (1, 16) or self.block % self.group or self.L % self.block:
            raise ValueError(f"BlockScaledFused: group={self.group}, block={self.block}, "
                             f"L={self.L}: allowed group 1 or 16 dividing the block, and a "
                             "block dividing L")
        if not 0 < self.F <= 40:
            raise ValueError(f"BlockScaledFused.F={self.F}: allowed 1..40 fraction bits")
        for nm in ("in_fmt", "in_fmt_b", "scale_fmt"):
            if getattr(self, nm) is not None:
                object.__setattr__(self, nm, as_format(getattr(self, nm)))
        for f in (self.in_fmt, self.in_fmt_b):
            if f is not None and not (isinstance(f, FloatFormat) and f.bits <= 8):
                raise ValueError(f"BlockScaledFused input {f.name}: allowed 8/6/4-bit floats "
                                 "(e4m3, e5m2, e3m2, e2m3, e2m1)")
        sf = self.scale_fmt
        if not (isinstance(sf, FloatFormat) and not sf.signed and sf.bits <= 8):
            raise ValueError(f"BlockScaledFused scale format {sf.name}: allowed e8m0 (UE8M0) "
                             "and ue4m3")
        if self.in_fmt_b is not None and self.in_fmt_b == self.in_fmt:
            object.__setattr__(self, "in_fmt_b", None)

    def __repr__(self):
        return (f"BlockScaledFused<{self.name}>" if self.name else "BlockScaledFused") + (
            f"(L={self.L}, F={self.F}, block={self.block}, group={self.group}, "
            f"scale={self.scale_fmt.name})")

    def _evaluate(self, T, TA, TB, c, row0=0, salt=0, axis_last=True):
        raise TypeError(f"{self!r} needs its block scales: use it directly in fpsim.dot or "
                        "fpsim.matmul with a_scale=/b_scale= (it cannot be nested in another "
                        "model or used by fpsim.sum)")

    def _coded(self, A, B, a_scale, b_scale, k_axes):
        """Block codes (``fpsim.encode`` of a block format, blocked along K) as values and
        scales; values and scales given apart pass through."""
        (A, a_scale), (B, b_scale) = (
            self._decoded(what, x, s, kax) if isinstance(x, BlockCodes) else (x, s)
            for what, x, s, kax in (("A", A, a_scale, k_axes[0]), ("B", B, b_scale, k_axes[1])))
        return A, B, a_scale, b_scale

    def _decoded(self, what, x, s, kax):
        """Element values and scales of the block codes ``x`` (checked against the model)."""
        sname = what.lower() + "_scale"
        f = getattr(x, "fmt", None)
        if s is not None:
            raise ValueError(f"{what} is block-encoded (its scales come with the codes): pass no "
                             f"{sname}")
        if not isinstance(f, BlockFormat):
            raise TypeError(f"{what}: block codes of {'no known format' if f is None else f.name} "
                            "(pass what fpsim.encode(x, block format) returned, or values with "
                            f"{sname}=)")
        if f.block != self.block:
            raise ValueError(f"{what}: codes of {f.name} have blocks of {f.block}; {self!r} "
                             f"takes one scale per {self.block} elements")
        ndim = max(np.ndim(x.elements), 1)
        if x.axis % ndim != (ndim + kax) % ndim:
            raise ValueError(f"{what}: the codes are blocked along axis {x.axis % ndim}; the "
                             f"instruction needs the blocks along K (axis {(ndim + kax) % ndim} "
                             f"of {what}; encode with axis=)")
        if f.tensor_scale is not None and decode(np.asarray(x.tensor_scale),
                                                 f.tensor_scale) != 1.0:
            raise ValueError(f"{what}: the codes of {f.name} carry a per-tensor scale, which the "
                             "instruction has no operand for (it is applied after the MMA, "
                             "e.g. as the GEMM's alpha): encode with a block format without "
                             "one (fpsim.BlockFormat('e2m1', 16, 'ue4m3')) and scale the "
                             "result")
        return decode(x.elements, f.elem), decode(x.scales, f.scale)

    def _blocks(self, K, what):
        """The number of scale blocks along K (a whole number, or a ValueError)."""
        if K % self.block:
            raise ValueError(f"{what}: K={K} is not a multiple of the scale block {self.block} "
                             "(pad the operands with zeros to a whole number of blocks)")
        return K // self.block

    def _scales(self, s, what, shape):
        """``s`` as float64 of ``shape``: values of the scale format (or a ValueError)."""
        if s is None:
            raise ValueError(f"{self!r} is block-scaled: pass a_scale= and b_scale=, one "
                             f"{self.scale_fmt.name} scale per {self.block} elements along K")
        v = exact_float64(s, what)
        try:
            v = np.ascontiguousarray(np.broadcast_to(v, shape), dtype=np.float64)
        except ValueError:
            raise ValueError(f"{what} has shape {v.shape}; expected {shape} (one scale per "
                             f"{self.block} consecutive elements along K)") from None
        sf = self.scale_fmt
        nan = np.isnan(v)
        fin = np.where(nan, 1.0, v)
        bad = (fin < 0) | (fin == 0 if not sf.has_zero else False) | ~np.isfinite(fin)
        bad |= quantize(np.abs(fin), sf) != np.abs(fin)
        if bad.any():
            raise ValueError(f"{what} holds {float(fin[bad].flat[0])!r}, which is not a scale of "
                             f"format {sf.name} "
                             + ("(powers of two 2**-127 .. 2**127, or NaN)" if sf.name == "e8m0"
                                else f"(values of {sf.name}: 0 .. {sf.max}, or NaN)"))
        return v

    def _dot(self, A, B, c, shp, a_scale, b_scale):
        nb = self._blocks(A.shape[-1], "dot")
        R = math.prod(shp)
        SA = self._scales(a_scale, "a_scale", A.shape[:-1] + (nb,))
        SB = self._scales(b_scale, "b_scale", B.shape[:-1] + (nb,))
        SA = np.ascontiguousarray(np.broadcast_to(SA, shp + (nb,))).reshape(R, nb)
        SB = np.ascontiguousarray(np.broadcast_to(SB, shp + (nb,))).reshape(R, nb)
        A2, B2 = dot_rows(A, B, shp)
        pad = -A2.shape[1] % self.L  # K not a whole number of instructions: zeros, as padded
        if pad:
            z = np.zeros((R, pad))
            A2, B2 = np.concatenate([A2, z], 1), np.concatenate([B2, z], 1)
            one = np.ones((R, pad // self.block))
            SA, SB = np.concatenate([SA, one], 1), np.concatenate([SB, one], 1)
        out = np.empty(R)
        ea, eb = (int(f.emin) for f in self.input_formats)
        # the terms are formed inside the kernel (as in _gemm): no term matrix in memory
        err = _K.rows_scaled(A2, B2, SA, SB, np.ascontiguousarray(c, dtype=np.float64), out,
                             int(self.L), int(self.block), int(self.group), int(self.F),
                             int(self.e_zero), ea, eb, int(self.scale_fmt.emin),
                             params(FP32, "rtz", "inf"), 2.0 ** 128)
        raise_nan(err, FP32)
        return out

    def _gemm(self, A, B, Cb, batch, a_scale, b_scale):
        M, K, N = A.shape[-2], A.shape[-1], B.shape[-1]
        kb = self._blocks(K, "matmul")
        SA = self._scales(a_scale, "a_scale", A.shape[:-1] + (kb,))
        SB = self._scales(b_scale, "b_scale", B.shape[:-2] + (kb, N))
        nb = math.prod(batch)
        Ab = np.broadcast_to(A, batch + (M, K)).reshape(nb, M, K)
        Bb = np.broadcast_to(B, batch + (K, N)).reshape(nb, K, N)
        SAb = np.broadcast_to(SA, batch + (M, kb)).reshape(nb, M, kb)
        SBb = np.broadcast_to(SB, batch + (kb, N)).reshape(nb, kb, N)
        Cb = Cb.reshape(nb, M, N)
        D = np.empty((nb, M, N))
        pad = -K % self.L  # zeros up to a whole number of instructions, as in _dot
        ea, eb = (int(f.emin) for f in self.input_formats)
        p = params(FP32, "rtz", "inf")
        for t in range(nb):
            A2, BT = Ab[t], Bb[t].T
            SA2, SBT = SAb[t], SBb[t].T
            if pad:
                A2 = np.concatenate([A2, np.zeros((M, pad))], 1)
                BT = np.concatenate([BT, np.zeros((N, pad))], 1)
                SA2 = np.concatenate([SA2, np.ones((M, pad // self.block))], 1)
                SBT = np.concatenate([SBT, np.ones((N, pad // self.block))], 1)
            c = np.ascontiguousarray
            err = _K.gemm_scaled(c(A2), c(BT), c(SA2), c(SBT), c(Cb[t]), D[t], int(self.L),
                                 int(self.block), int(self.group), int(self.F),
                                 int(self.e_zero), ea, eb, int(self.scale_fmt.emin), p, 2.0 ** 128)
            raise_nan(err, FP32)
        return D.reshape(batch + (M, N))


@dataclass(frozen=True)
class MFMA(_Fp32Engine):
    """AMD matrix-core dot-add (CDNA1-3 ``v_mfma_*``; the models of MMA-Sim, Xie et al.
    2025, checked bit for bit in ``tests/test_mmasim.py``). Blocks of ``L`` products and the
    accumulator c are chained (c <- d); the result is fp32. ``variant``:

    * ``"exact"`` (CDNA1 fp16/bf16): the exact sum of the block and c, rounded to nearest;
    * ``"ftz"`` (CDNA2 fp16/bf16): fp32 products added pairwise in fp32 (``L`` = 2 or 4
      products per step, then into c), every step rounding to nearest; subnormal inputs and
      c flush to +0, subnormal products and sums to a zero of their sign;
    * ``"tr"`` (CDNA3 fp16/bf16/xf32): the products fused with ``F`` fraction bits below the
      largest product exponent (truncated; an fp32 product overflow is inf), then c added:
      the fused sum floored at ``F2 + 1`` bits and c at ``F`` bits below the larger
      exponent, the sum floored to ``F2`` bits below its leading one and rounded to nearest
      fp32;
    * ``"gtr"`` (CDNA3 FP8, fnuz operands): the even and the odd products fused apart as in
      ``"tr"``, their sums floored at ``F`` bits below the larger and added, then c as in
      ``"tr"`` (a c more than ``F + 1`` binades below is dropped).

    An input or product inf/NaN gives the IEEE sum of the block. :func:`fpsim.hardware.mma`
    builds these from AMD ISA names (``v_mfma_f32_32x32x8_bf16``).

    >>> import numpy as np, fpsim
    >>> m = fpsim.hardware.mma("CDNA3", "v_mfma_f32_16x16x16_f16")
    >>> m.variant, m.L, m.F, m.F2
    ('tr', 8, 24, 31)
    >>> # 1 + 2**-25: the product 2**-25 lies below the 24 bits kept after alignment
    >>> float(fpsim.dot(np.array([1.0, 2.0**-12]), np.array([1.0, 2.0**-13]), 0.0, model=m))
    1.0
    """

    variant: str = "tr"
    L: int = 8
    F: int = 24
    F2: int = 31
    in_fmt: Format = "fp16"
    in_fmt_b: Format | None = None
    name: str = ""

    _VARIANTS = {"exact": 0, "ftz": 1, "tr": 2, "gtr": 3}  # kernels.accum.MFMA_*

    def __post_init__(self):
        if self.variant not in self._VARIANTS:
            raise ValueError(f"MFMA.variant={self.variant!r}: allowed {', '.join(self._VARIANTS)}")
        for nm in ("L", "F", "F2"):
            v = getattr(self, nm)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (nm == "L"):
                raise TypeError(f"MFMA.{nm} must be a {'positive' if nm == 'L' else 'non-negative'} "
                                f"int, got {v!r}")
        if self.variant == "ftz" and self.L not in (2, 4):
            raise ValueError(f"MFMA(variant='ftz'): L={self.L}, allowed 2 or 4 products per step")
        if self.variant == "gtr" and self.L % 2:
            raise ValueError(f"MFMA(variant='gtr'): L={self.L} must be even (odd/even halves)")
        if not (self.F <= 40 and self.F2 <= 40):
            raise ValueError(f"MFMA: F={self.F}, F2={self.F2}: allowed at most 40 bits")
        set_input_formats(self, "MFMA", "e4m3fnuz, e5m2fnuz")

    def __repr__(self):
        return (f"MFMA<{self.name}>" if self.name else "MFMA") + (
            f"(variant={self.variant!r}, L={self.L}, F={self.F}, F2={self.F2})")

    def _evaluate(self, T, TA, TB, c, row0=0, salt=0, axis_last=True):
        # summed terms (fpsim.sum, the outer model of Blocked) are products with 1
        TA = TA if TA is not None else T
        TB = TB if TB is not None else np.ones_like(T)
        fa, fb = self.input_formats
        out = np.empty(TA.shape[0])
        err = _K.mfma_rows(np.ascontiguousarray(TA), np.ascontiguousarray(TB),
                           np.ascontiguousarray(c, dtype=np.float64), out,
                           self._VARIANTS[self.variant], int(self.L), int(self.F),
                           int(self.F2), int(fa.emin), int(fb.emin), float(fa.min_normal),
                           params(FP32, "rne"))
        raise_nan(err, FP32)
        return out
