"""One generic fused dot-add (:class:`FusedDotAdd`), parameterised by what the published
tensor-core models vary, and :func:`as_generic`: the NVIDIA :class:`FusedBlock` and the
Blackwell :class:`BlockScaledFused` as configurations of it.

A configuration that equals an existing model runs that model's fast kernel
(:meth:`FusedDotAdd.fast`); every other one (the what-ifs: a sticky bit, an fp16 output of
a block-scaled kind, normalised products, ...) runs the one generic kernel
(:mod:`fpsim.kernels.accum_generic`), written from the field definitions.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from ..formats import FloatFormat, Format, as_format
from ._common import K as _K
from ._common import check_int, dot_rows, params, raise_nan, set_input_formats
from .fused import FusedBlock
from .mma import MFMA, BlockScaledFused
from .models import Model
from .products import ExactProduct

__all__ = ["FusedDotAdd", "as_generic"]

#: Run every FusedDotAdd through the generic kernel, also where a fast kernel exists (tests
#: switch this on to compare the generic kernel with the fast ones).
FORCE_GENERIC = False

_ROUNDINGS = ("rtz", "rne")


@dataclass(frozen=True)
class FusedDotAdd(Model):
    """The generic tensor-core fused dot-add: ``d = c + a . b`` in instructions of ``L``
    products chained through c (c <- d), every field one thing the hardware varies.

    Per instruction: each product ``a_k * b_k`` is exact (inputs of at most 26 bits); with
    ``scale_block`` each is multiplied by the scales of its blocks, and with ``group > 1``
    each group of ``group`` consecutive products is summed exactly into one term. A term's
    exponent is ``ea + eb`` (operand exponents clamped at their formats' smallest normal
    exponent; significand in [1, 4)) or, with ``normalize``, its product's leading-bit
    exponent; scales add their exponents; a group aligns at its scales' exponent alone. c's
    exponent is its leading bit's, clamped at the output format's smallest normal exponent
    (``c_exp_floor`` in the first instruction, when set). ``E`` is the largest of these, of
    ``zero_exp`` for each zero term and a zero c (None: zero terms drop out) and of
    ``min_align_exp``; every term and c is truncated toward zero at ``2**(E - F)`` (with
    ``sticky``, one more bit below it per term, set when any dropped bit was nonzero); the
    integers are summed exactly and rounded once into ``out_fmt`` with ``rounding``
    (``"rtz"``: an overflow gives inf, as on the GPU; ``"rne"``). A zero sum or one that
    rounds to zero gives +0; an instruction holding inf or NaN gives their IEEE sum.

    ======================= ================================================================
    field                   meaning
    ======================= ================================================================
    ``L``                   products per fused instruction (group)
    ``F``                   fraction bits kept below E after alignment (23 + neab)
    ``out_fmt``/``rounding`` the final rounding: ``"rtz"`` or ``"rne"`` into an IEEE-style
                            format of at most fp32's range and precision (fp32, e8m13, fp16)
    ``in_fmt``/``in_fmt_b`` A's and B's formats (their emin clamps exponents; fnuz allowed)
    ``normalize``           product exponents from the exact product (else ``ea + eb``)
    ``zero_exp``            exponent of a zero term and a zero c (None: they drop out)
    ``min_align_exp``       the lowest alignment exponent E (None: no floor)
    ``c_exp_floor``         emin of c's exponent in the first instruction (a narrower C)
    ``sticky``              a sticky bit below each truncated term
    ``scale_block``         block-scaled: one scale per ``scale_block`` elements (0: none)
    ``group``               products summed exactly per term (block-scaled kinds only)
    ``scale_fmt``           the scales' format (e8m0, ue4m3)
    ``ftz_inputs``          inputs below their format's smallest normal flush to +0
    ``ftz_output``          results below ``out_fmt``'s smallest normal flush to +0
    ======================= ================================================================

    >>> import numpy as np, fpsim
    >>> v100 = fpsim.accum.as_generic(fpsim.accum.FusedBlock(4, 0, in_fmt="fp16"))
    >>> v100.L, v100.F, v100.rounding
    (4, 23, 'rtz')
    >>> a = np.array([1.0, 2.0**-12, 2.0**-12, 0.0])
    >>> float(fpsim.dot(a, a, model=v100))     # 2 * 2**-24 truncated away
    1.0
    >>> import dataclasses
    >>> # with a sticky bit (at 2**-24) per term, the two sticky bits sum to 2**-23
    >>> float(fpsim.dot(a, a, model=dataclasses.replace(v100, sticky=True, rounding="rne")))
    1.0000001192092896
    >>> float(fpsim.dot(a, a, model=dataclasses.replace(v100, F=25, rounding="rne")))
    1.0000001192092896
    """

    L: int = 8
    F: int = 24
    out_fmt: Format = "fp32"
    rounding: str = "rtz"
    in_fmt: Format | None = None
    in_fmt_b: Format | None = None
    normalize: bool = False
    zero_exp: int | None = None
    min_align_exp: int | None = None
    c_exp_floor: int | None = None
    sticky: bool = False
    scale_block: int = 0
    group: int = 1
    scale_fmt: Format | None = None
    ftz_inputs: bool = False
    ftz_output: bool = False
    name: str = field(default="", compare=False)

    def __post_init__(self):
        who = "FusedDotAdd"
        check_int(self, ("L", "F", "scale_block", "group"))
        for nm in ("zero_exp", "min_align_exp", "c_exp_floor"):
            v = getattr(self, nm)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
                raise TypeError(f"{who}.{nm} must be an int or None, got {v!r}")
            if v is not None and not -1000 <= v <= 1000:
                raise ValueError(f"{who}.{nm}={v}: allowed -1000..1000 or None")
        for nm in ("normalize", "sticky", "ftz_inputs", "ftz_output"):
            if not isinstance(getattr(self, nm), bool):
                raise TypeError(f"{who}.{nm} must be True or False, got {getattr(self, nm)!r}")
        if self.L < 1:
            raise ValueError(f"{who}.L={self.L}: allowed L >= 1 products per instruction")
        if not 1 <= self.F <= 40:
            raise ValueError(f"{who}.F={self.F}: allowed 1..40 fraction bits after alignment")
        if self.rounding not in _ROUNDINGS:
            raise ValueError(f"{who}.rounding={self.rounding!r}: allowed 'rtz' (truncation, "
                             "an overflow gives inf) and 'rne'")
        f = as_format(self.out_fmt)
        if not (isinstance(f, FloatFormat) and f.encoding.ieee_like and f.man_bits <= 23
                and f.exp_bits <= 8):
            raise ValueError(f"{who} output {f.name}: allowed IEEE-style float formats with at "
                             "most fp32's range and precision (fp32, e8m13, fp16, bf16, ...)")
        object.__setattr__(self, "out_fmt", f)
        set_input_formats(self, who, "e4m3, e5m2, e4m3fnuz, e2m1, ...")
        if self.in_fmt_b is not None and self.in_fmt is None:
            raise ValueError(f"{who}: in_fmt_b needs in_fmt (A's format) too")
        if self.ftz_inputs and self.in_fmt is None:
            raise ValueError(f"{who}(ftz_inputs=True) needs in_fmt: the flush threshold is "
                             "the input format's smallest normal")
        self._check_scaling(who)
        if self.F + 2 + self.L.bit_length() + (1 if self.sticky else 0) > 60:
            raise ValueError(f"{who}: L={self.L} with F={self.F} overflows the 64-bit sum")

    def _check_scaling(self, who):
        if self.scale_block < 0:
            raise ValueError(f"{who}.scale_block={self.scale_block}: allowed 0 (no scales) "
                             "or a positive block size")
        if self.scale_block == 0:
            if self.group != 1 or self.scale_fmt is not None:
                raise ValueError(f"{who}: group={self.group}, scale_fmt={self.scale_fmt!r} "
                                 "are for block-scaled kinds: set scale_block too (else "
                                 "group=1, scale_fmt=None)")
            return
        sf = as_format(self.scale_fmt if self.scale_fmt is not None else "e8m0")
        if not (isinstance(sf, FloatFormat) and not sf.signed and sf.bits <= 8):
            raise ValueError(f"{who} scale format {sf.name}: allowed e8m0 (UE8M0) and ue4m3")
        object.__setattr__(self, "scale_fmt", sf)
        if self.group < 1 or self.scale_block % self.group or self.L % self.scale_block:
            raise ValueError(f"{who}: group={self.group}, scale_block={self.scale_block}, "
                             f"L={self.L}: allowed a group dividing the block and a block "
                             "dividing L")
        if self.group > 1:
            fa, fb = self.input_formats
            if fa is None or fb is None or not _group_exact(fa, fb, self.group):
                raise ValueError(f"{who}(group={self.group}): the exact group sums need "
                                 "declared input formats whose products sum exactly in "
                                 "float64 (e2m1, e2m3, e3m2)")

    def __repr__(self):
        if self.name:
            return f"FusedDotAdd<{self.name}>(L={self.L}, F={self.F}, out={self.out_fmt.name})"
        extra = [f"{nm}={getattr(self, nm)!r}" for nm in (
            "normalize", "zero_exp", "min_align_exp", "c_exp_floor", "sticky", "scale_block",
            "group", "ftz_inputs", "ftz_output") if getattr(self, nm) != _DEFAULTS[nm]]
        fi = [f.name for f in self.input_formats if f is not None]
        return (f"FusedDotAdd(L={self.L}, F={self.F}, out_fmt={self.out_fmt.name!r}, "
                f"rounding={self.rounding!r}, in_fmt={tuple(fi)!r}"
                + "".join(", " + e for e in extra) + ")")

    @property
    def input_formats(self):
        """(A's format, B's format); both ``in_fmt`` unless ``in_fmt_b`` is set."""
        return self.in_fmt, (self.in_fmt_b if self.in_fmt_b is not None else self.in_fmt)

    def _multiplier(self):
        return ExactProduct()

    def fast(self):
        """The existing model with the same bits and a fast kernel (a :class:`FusedBlock`
        or :class:`BlockScaledFused`), or None for a configuration only the generic kernel
        evaluates.

        >>> import fpsim
        >>> g = fpsim.accum.as_generic(fpsim.accum.FusedBlock(8, 2, in_fmt="bf16"))
        >>> g.fast()
        FusedBlock(n=8, neab=2, out_fmt='fp32', rounding='rtz', in_fmt='bf16')
        >>> import dataclasses
        >>> dataclasses.replace(g, sticky=True).fast() is None
        True
        """
        return _fast(self)

    def _run(self):
        return None if FORCE_GENERIC else _fast(self)

    # ---- evaluation --------------------------------------------------------------------

    def _args(self, first_floor=True):
        f = self.out_fmt
        fa, fb = self.input_formats
        emin_a, emin_b = (int(x.emin) if x is not None else -126 for x in (fa, fb))
        ftz_a, ftz_b = ((float(x.min_normal) if self.ftz_inputs else 0.0) for x in (fa, fb))
        p = params(f, self.rounding, "inf")
        lim = 2.0 ** (f.emax + 1) if self.rounding == "rtz" else math.inf
        floor = int(f.emin)
        floor0 = floor if self.c_exp_floor is None else int(self.c_exp_floor)
        nz = _K.NO_EXP
        emin_s = int(self.scale_fmt.emin) if self.scale_fmt is not None else 0
        return (int(self.L), int(self.scale_block), int(self.group), int(self.F),
                bool(self.sticky), bool(self.normalize), self.zero_exp is not None,
                int(self.zero_exp if self.zero_exp is not None else nz),
                int(self.min_align_exp if self.min_align_exp is not None else nz),
                floor0 if first_floor else floor, floor, emin_a, emin_b, emin_s, ftz_a, ftz_b,
                p, float(lim), float(f.min_normal), bool(self.ftz_output))

    def _evaluate(self, T, TA, TB, c, row0=0, salt=0, axis_last=True):
        fm = self._run()
        if fm is not None:
            return fm._evaluate(T, TA, TB, c, row0, salt, axis_last)
        if self.scale_block:
            raise TypeError(f"{self!r} needs its block scales: use it directly in fpsim.dot "
                            "or fpsim.matmul with a_scale=/b_scale=")
        A = np.ascontiguousarray(TA if TA is not None else T)
        B = np.ascontiguousarray(TB if TB is not None else np.ones_like(T))
        one = np.ones((A.shape[0], 1))
        out = np.empty(A.shape[0])
        err = _K.rows_generic(A, B, one, one, np.ascontiguousarray(c, dtype=np.float64), out,
                              *self._args())
        raise_nan(err, self.out_fmt)
        return out

    def _matmul(self, A, B, C, row0=0):
        fm = self._run()
        if fm is not None:
            return fm._matmul(A, B, C, row0)
        D = np.empty((A.shape[0], B.shape[1]))
        one = np.ones((max(A.shape[0], B.shape[1]), 1))
        err = _K.gemm_generic(np.ascontiguousarray(A), np.ascontiguousarray(B.T), one, one,
                              np.ascontiguousarray(C, dtype=np.float64), D, *self._args())
        raise_nan(err, self.out_fmt)
        return D

    def _coded(self, A, B, a_scale, b_scale, k_axes):
        if self.scale_block:
            return self._checker()._coded(A, B, a_scale, b_scale, k_axes)
        return super()._coded(A, B, a_scale, b_scale, k_axes)

    def _checker(self):
        """A BlockScaledFused of the same block and scale format: it checks scales/codes."""
        return BlockScaledFused(L=self.L, F=self.F, block=self.scale_block, group=1,
                                in_fmt=self.in_fmt or "e4m3", in_fmt_b=self.in_fmt_b,
                                scale_fmt=self.scale_fmt)

    def _dot(self, A, B, c, shp, a_scale, b_scale):
        fm = self._run()
        if fm is not None:
            return fm._dot(A, B, c, shp, a_scale, b_scale)
        if not self.scale_block:
            return super()._dot(A, B, c, shp, a_scale, b_scale)
        chk = self._checker()
        nb = chk._blocks(A.shape[-1], "dot")
        R = math.prod(shp)
        SA = chk._scales(a_scale, "a_scale", A.shape[:-1] + (nb,))
        SB = chk._scales(b_scale, "b_scale", B.shape[:-1] + (nb,))
        SA = np.ascontiguousarray(np.broadcast_to(SA, shp + (nb,))).reshape(R, nb)
        SB = np.ascontiguousarray(np.broadcast_to(SB, shp + (nb,))).reshape(R, nb)
        A2, B2 = dot_rows(A, B, shp)
        out = np.empty(R)
        err = _K.rows_generic(A2, B2, SA, SB, np.ascontiguousarray(c, dtype=np.float64), out,
                              *self._args())
        raise_nan(err, self.out_fmt)
        return out

    def _gemm(self, A, B, Cb, batch, a_scale, b_scale):
        fm = self._run()
        if fm is not None:
            return fm._gemm(A, B, Cb, batch, a_scale, b_scale)
        if not self.scale_block:
            return super()._gemm(A, B, Cb, batch, a_scale, b_scale)
        chk = self._checker()
        M, K, N = A.shape[-2], A.shape[-1], B.shape[-1]
        kb = chk._blocks(K, "matmul")
        SA = chk._scales(a_scale, "a_scale", A.shape[:-1] + (kb,))
        SB = chk._scales(b_scale, "b_scale", B.shape[:-2] + (kb, N))
        nb = math.prod(batch)
        Ab = np.broadcast_to(A, batch + (M, K)).reshape(nb, M, K)
        Bb = np.broadcast_to(B, batch + (K, N)).reshape(nb, K, N)
        SAb = np.broadcast_to(SA, batch + (M, kb)).reshape(nb, M, kb)
        SBb = np.broadcast_to(SB, batch + (kb, N)).reshape(nb, kb, N)
        Cb = Cb.reshape(nb, M, N)
        D = np.empty((nb, M, N))
        c = np.ascontiguousarray
        for t in range(nb):
            err = _K.gemm_generic(c(Ab[t]), c(Bb[t].T), c(SAb[t]), c(SBb[t].T), c(Cb[t]), D[t],
                                  *self._args())
            raise_nan(err, self.out_fmt)
        return D.reshape(batch + (M, N))


_DEFAULTS = {f.name: f.default for f in FusedDotAdd.__dataclass_fields__.values()}


def _group_exact(fa, fb, group):
    """True when sums of ``group`` products of fa and fb values are exact in float64."""
    span = (math.log2(fa.max * fb.max) - math.log2(fa.min_subnormal * fb.min_subnormal)
            + math.log2(group) + 1)
    return span <= 53


def as_generic(model) -> FusedDotAdd:
    """``model`` as a :class:`FusedDotAdd` configuration with the same bits: a
    :class:`FusedBlock` (NVIDIA; ``c_fmt`` becomes ``c_exp_floor``), a
    :class:`BlockScaledFused` (Blackwell block-scaled kinds) or a FusedDotAdd itself.

    >>> import fpsim
    >>> m = fpsim.hardware.mma("Blackwell", "tcgen05.mma.m128n256k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue4m3")
    >>> g = fpsim.accum.as_generic(m)
    >>> g.L, g.F, g.group, g.scale_block, g.zero_exp, g.scale_fmt.name
    (64, 35, 16, 16, -139, 'ue4m3fn')
    """
    if isinstance(model, FusedDotAdd):
        return model
    if isinstance(model, FusedBlock):
        fa, fb = model.input_formats
        return FusedDotAdd(L=model.n, F=23 + model.neab, out_fmt=_fb_out(model),
                           rounding=model.rounding, in_fmt=fa,
                           in_fmt_b=fb if fb is not fa else None,
                           c_exp_floor=None if model.c_fmt is None else int(model.c_fmt.emin),
                           name=model.name)
    if isinstance(model, BlockScaledFused):
        fa, fb = model.input_formats
        return FusedDotAdd(L=model.L, F=model.F, out_fmt="fp32", rounding="rtz", in_fmt=fa,
                           in_fmt_b=fb if fb is not fa else None, zero_exp=model.e_zero,
                           scale_block=model.block, group=model.group,
                           scale_fmt=model.scale_fmt, name=model.name)
    if isinstance(model, MFMA):
        raise ValueError(f"{model!r}: AMD's MFMA variants (c added after the fused sum, "
                         "odd/even halves, floors toward -inf) are not yet configurations of "
                         "FusedDotAdd; allowed: FusedBlock, BlockScaledFused, FusedDotAdd")
    raise TypeError(f"as_generic: {model!r} is not a fused tensor-core model; allowed "
                    "FusedBlock, BlockScaledFused, FusedDotAdd")


def _fb_out(model):
    """The format a FusedBlock's kernels round into (fewer mantissa bits for neab < 0 with
    truncation, as on Ada's FP8 path: e8m13)."""
    f, e = model.out_fmt, model._eff_fmt()
    return f if e.man_bits == f.man_bits else e


@functools.lru_cache(maxsize=256)
def _fast(g):
    """The fast model with g's bits (as_generic of it equals g), or None."""
    for cand in _candidates(g):
        try:
            m = cand()
        except (TypeError, ValueError):
            continue
        if as_generic(m) == g:
            return m
    return None


def _candidates(g):
    fa, fb = g.input_formats
    pair = None if fa is None else (fa, fb)
    neab = g.F - 23
    f = g.out_fmt
    # e8m13 of a truncating FusedBlock with neab < 0 is fp32 with fewer bits
    fb_out = (FloatFormat(f.exp_bits, f.man_bits - neab, subnormals=f.subnormals)
              if g.rounding == "rtz" and neab < 0 and f.man_bits - neab <= 23 else f)
    yield lambda: FusedBlock(g.L, neab, out_fmt=fb_out, rounding=g.rounding, in_fmt=pair,
                             name=g.name)
    if g.scale_block and fa is not None:
        yield lambda: BlockScaledFused(L=g.L, F=g.F, block=g.scale_block, group=g.group,
                                       e_zero=g.zero_exp if g.zero_exp is not None else 0,
                                       in_fmt=fa, in_fmt_b=fb, scale_fmt=g.scale_fmt,
                                       name=g.name)
