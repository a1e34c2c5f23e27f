"""Tensor-core fused multi-term adders: :class:`FusedBlock` (NVIDIA, bit-exact to the GPU).

The instruction-level engines with an fp32 output (AMD's :class:`~fpsim.accum.MFMA`,
Blackwell's :class:`~fpsim.accum.BlockScaledFused`) are in :mod:`fpsim.accum.mma`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from ..formats import FloatFormat, Format, as_format
from ..rounding import quantize
from ._common import C as _C, G as _G, GF as _GF, K as _K
from ._common import check_int, mode, params, raise_nan, set_input_formats
from .models import Model
from .products import ExactProduct

__all__ = ["FusedBlock"]

#: Use the fast tensor-core kernels for finite inputs (tests switch this off to compare
#: them with the general kernel).
_FUSED_FAST = True
#: Among them, the packed-panel kernel where it applies (tests switch it off to compare it
#: with the kernels it replaces).
_PACKED = True


@functools.cache
def _fp32_rne():
    """RoundParams of fp32 round-to-nearest-even with overflow to inf (Sequential("fp32"))."""
    return params(as_format("fp32"), "rne", "inf")


def _clamped(X, emin_in):
    E = np.empty(X.shape, dtype=np.int64)
    _K.clamped_exps(np.ascontiguousarray(X), emin_in, E)
    return E


@dataclass(frozen=True)
class FusedBlock(Model):
    """Tensor-core multi-term fused adder (Fasi et al. 2021; Khattak & Mikaitis 2025).

    For each block of ``n`` products plus the running accumulator c: products are exact;
    a product's exponent is ``ea + eb`` (input exponents clamped at ``in_fmt``'s emin) with
    significand ``sa * sb`` in [0, 4); one extra alignment bit is granted when the largest
    product significand (among the products of largest exponent) is >= 2 and that exponent
    is not below c's; products whose significand is >= 2 are normalised; every term (c
    included) is truncated toward zero at ``2**(E - 23 - neab')``, E the largest exponent
    (no sticky bit); the integers are summed exactly, normalised once and rounded into
    ``out_fmt`` with ``rounding`` (``"rtz"``: truncation, where an overflow gives inf as on
    the GPU); the blocks are chained (c <- d). With ``neab < 0`` (FP8 on Ada) the result
    keeps only ``man_bits + neab`` mantissa bits when ``rounding="rtz"``. c is a value of
    the output format: a subnormal c counts with that format's smallest normal exponent. A
    block whose c or products hold inf or NaN gives their IEEE sum (so an accumulator that
    overflowed to inf meets the next block's infinite products); a nonzero sum that rounds
    to zero gives +0. These details follow MMA-Sim's bit-accurate models (checked against
    them on random inputs, ``tests/test_mmasim.py``).

    ``in_fmt`` is one format, or a pair (A's format, B's format) for mixed operands (then
    stored as ``in_fmt`` and ``in_fmt_b``). ``c_fmt``: the format of the initial C when
    the instruction takes a narrower C than it writes (Volta's ``mma.m8n8k4.f32.f16.f16.f16``:
    C holds fp16 values); C must hold its values, and in the first block a C subnormal in
    ``c_fmt`` counts with ``c_fmt``'s smallest normal exponent (as in MMA-Sim); later blocks
    chain the output format's values as usual.

    >>> import numpy as np, fpsim
    >>> m = fpsim.accum.FusedBlock(4, 0, in_fmt="fp16")      # V100-like
    >>> # no guard digits: 1 + 2**-24 + 2**-24 is truncated at 2**-23 per term
    >>> a = np.array([1.0, 2.0**-12, 2.0**-12, 0.0]); b = np.array([1.0, 2.0**-12, 2.0**-12, 0.0])
    >>> float(fpsim.dot(a, b, model=m))
    1.0
    >>> m.out_fmt.name
    'fp32'
    """

    n: int = 8
    neab: int = 1
    # a field here (every other model derives out_fmt from its fields): the class default
    # shadows Model's abstract property, the instance holds the resolved Format
    out_fmt: Format = "fp32"
    rounding: str = "rtz"
    in_fmt: Format | None = None
    name: str = ""
    in_fmt_b: Format | None = None
    c_fmt: Format | None = None

    def __post_init__(self):
        check_int(self, ("n", "neab"))
        if self.n < 1:
            raise ValueError(f"FusedBlock.n={self.n}: the block size must be >= 1")
        if not -20 <= self.neab <= 8:
            raise ValueError(f"FusedBlock.neab={self.neab}: allowed -20..8 extra alignment bits")
        f = as_format(self.out_fmt)
        if not (isinstance(f, FloatFormat) and f.encoding.ieee_like and f.man_bits <= 23
                and f.exp_bits <= 8):
            raise ValueError(f"FusedBlock output {f.name}: allowed IEEE-style float formats with "
                             "at most fp32's range and precision (fp32, fp16, bf16, ...)")
        object.__setattr__(self, "out_fmt", f)
        object.__setattr__(self, "rounding", mode(self.rounding))
        if isinstance(self.in_fmt, (tuple, list)):  # (A's format, B's format)
            if len(self.in_fmt) != 2 or self.in_fmt_b is not None:
                raise ValueError("FusedBlock in_fmt: one format, or a pair (A's format, B's "
                                 f"format), got {self.in_fmt!r}")
            object.__setattr__(self, "in_fmt_b", self.in_fmt[1])
            object.__setattr__(self, "in_fmt", self.in_fmt[0])
        if self.in_fmt_b is not None and self.in_fmt is None:
            raise ValueError("FusedBlock: in_fmt_b needs in_fmt (A's format) too")
        set_input_formats(self, "FusedBlock", "e4m3, e5m2, e2m1, ...")
        if 23 + self.neab + (self.n.bit_length() + 3) > 60:
            raise ValueError("FusedBlock: n too large for the 64-bit aligned sum")
        if self.c_fmt is not None:
            cf = as_format(self.c_fmt)
            if not (isinstance(cf, FloatFormat) and cf.encoding.ieee_like
                    and cf.man_bits <= f.man_bits and cf.emin >= f.emin and cf.emax <= f.emax):
                raise ValueError(f"FusedBlock c_fmt {cf.name}: allowed IEEE-style float formats "
                                 f"whose values are values of the output format {f.name} "
                                 "(e.g. fp16 for an fp32 output)")
            object.__setattr__(self, "c_fmt", None if cf == f else cf)

    def __repr__(self):
        if self.name:
            return (f"FusedBlock<{self.name}>(n={self.n}, neab={self.neab}, "
                    f"out={self.out_fmt.name}, rounding={self.rounding!r})")
        fi = None if self.in_fmt is None else self.in_fmt.name
        if self.in_fmt_b is not None:
            fi = (fi, self.in_fmt_b.name)
        cf = "" if self.c_fmt is None else f", c_fmt={self.c_fmt.name!r}"
        return (f"FusedBlock(n={self.n}, neab={self.neab}, out_fmt={self.out_fmt.name!r}, "
                f"rounding={self.rounding!r}, in_fmt={fi!r}{cf})")

    @property
    def input_formats(self):
        """(A's format, B's format); both ``in_fmt`` unless ``in_fmt_b`` is set."""
        return self.in_fmt, (self.in_fmt_b if self.in_fmt_b is not None else self.in_fmt)

    def _multiplier(self):
        return ExactProduct()

    def _kernel_args(self):
        """(n, neab, emin_a, emin_b, RoundParams, overflow limit) of the fused kernels."""
        f = self.out_fmt
        p = params(self._eff_fmt(), self.rounding, "inf")
        emin_a, emin_b = (fi.emin if fi is not None else -126 for fi in self.input_formats)
        ovf_lim = 2.0 ** (f.emax + 1) if self.rounding == "rtz" else math.inf
        return int(self.n), int(self.neab), int(emin_a), int(emin_b), p, float(ovf_lim)

    def _rtz_args(self):
        """(mask of dropped float64 fraction bits, smallest normal) for truncating output."""
        if self.rounding != "rtz":
            return 0, 0.0
        f = self.out_fmt
        m_eff = max(f.man_bits + min(self.neab, 0), 0)
        return (1 << (52 - m_eff)) - 1, float(f.min_normal)

    def _kernel_params(self):
        return self._kernel_args() + self._rtz_args()

    def _evaluate(self, T, TA, TB, c, row0=0, salt=0, axis_last=True):
        # summed terms (fpsim.sum, the outer model of Blocked) are products with 1
        A = np.ascontiguousarray(TA if TA is not None else T)
        B = np.ascontiguousarray(TB if TB is not None else np.ones_like(T))
        c = np.ascontiguousarray(c, dtype=np.float64)
        narrow = self._narrow_c(c)
        if narrow is not None and narrow.any():  # their first block aligns c at c_fmt's emin
            out = np.empty(T.shape[0])
            rest = ~narrow
            if rest.any():  # the same model without the floor (it only matters for them)
                out[rest] = dataclasses.replace(self, c_fmt=None)._evaluate(
                    T[rest], A[rest], B[rest], c[rest])
            out[narrow] = self._generic_rows(A[narrow], B[narrow], c[narrow])
            return out
        n, neab, emin_a, emin_b, p, lim = self._kernel_args()
        out = np.empty(T.shape[0])
        if _FUSED_FAST and np.isfinite(A).all() and np.isfinite(B).all() and np.isfinite(c).all():
            err = _K.rows_fused_fast(A, B, _clamped(A, emin_a), _clamped(B, emin_b), c, out,
                                     n, neab, p, lim, *self._rtz_args())
        else:
            err = _K.leaf(A, B, c, out, _C.FUSED, p, n, neab, emin_a, emin_b, lim)
        raise_nan(err, self.out_fmt)
        return out

    def _matmul(self, A, B, C, row0=0):
        narrow = self._narrow_c(C)
        if narrow is not None and narrow.any():  # those outputs: the rows path (c_fmt rule)
            D = FusedBlock._matmul(dataclasses.replace(self, c_fmt=None), A, B, C, row0)
            i, j = np.nonzero(narrow)
            Bt = np.ascontiguousarray(B[:, j].T)
            D[i, j] = self._evaluate(A[i] * Bt, np.ascontiguousarray(A[i]), Bt, C[i, j])
            return D
        if not (_FUSED_FAST and np.isfinite(A).all() and np.isfinite(B).all()
                and np.isfinite(C).all()):
            return super()._matmul(A, B, C, row0)  # inf/NaN: the general kernel, by rows
        D = self._packed(A, B, C, 0, None, self.out_fmt)
        if D is not None:
            return D
        D = np.empty((A.shape[0], B.shape[1]))
        n, neab, emin_a, emin_b, p, lim = self._kernel_args()
        err = _K.gemm_fused_vec(A, np.ascontiguousarray(B), _clamped(A, emin_a),
                                _clamped(B, emin_b), C, D, n, neab, p, lim, *self._rtz_args())
        raise_nan(err, self.out_fmt)
        return D

    def _narrow_c(self, c):
        """None without ``c_fmt``; else where c is a nonzero finite value below c_fmt's
        smallest normal (a ValueError when c holds a value c_fmt lacks)."""
        cf = self.c_fmt
        if cf is None:
            return None
        c = np.asarray(c, dtype=np.float64)
        fin = np.isfinite(c)
        bad = fin & (quantize(np.where(fin, c, 0.0), cf) != np.where(fin, c, 0.0))
        if bad.any():
            raise ValueError(f"C holds {float(c[bad].flat[0])!r}, which is not a value of "
                             f"{self!r}'s C format {cf.name}; round C first with "
                             f"fpsim.quantize(c, {cf.name!r})")
        return fin & (c != 0.0) & (np.abs(c) < cf.min_normal)

    def _generic_rows(self, A, B, c):
        """Rows whose first block aligns c at ``c_fmt``'s smallest normal exponent: the
        generic fused kernel (:mod:`fpsim.kernels.accum_generic`, the rule of
        :class:`~fpsim.accum.FusedDotAdd`) with that first-block exponent floor."""
        n, neab, emin_a, emin_b, p, lim = self._kernel_args()
        fe = self._eff_fmt()
        one = np.ones((A.shape[0], 1))
        out = np.empty(A.shape[0])
        err = _K.rows_generic(np.ascontiguousarray(A), np.ascontiguousarray(B), one, one,
                              np.ascontiguousarray(c, dtype=np.float64), out, n, 0, 1,
                              23 + neab, False, False, False, _K.NO_EXP, _K.NO_EXP,
                              int(self.c_fmt.emin), int(fe.emin), emin_a, emin_b, 0, 0.0, 0.0,
                              p, lim, float(fe.min_normal), False)
        raise_nan(err, self.out_fmt)
        return out

    def _eff_fmt(self):
        """The format the kernels round into (``neab < 0`` with truncation keeps fewer bits)."""
        f = self.out_fmt
        m_eff = f.man_bits + min(self.neab, 0) if self.rounding == "rtz" else f.man_bits
        return FloatFormat(f.exp_bits, max(m_eff, 0), subnormals=f.subnormals)

    def _packed(self, A, B, C, every, outer_params, out_fmt):
        """The packed-panel kernel (:func:`fpsim.kernels.gemm_fused.fused_tiles`) for finite
        inputs, or None where it does not apply: it needs declared input formats (values
        exact in float32) and truncated block terms that sum exactly in float64."""
        if (_PACKED and None not in self.input_formats
                and (self.n + 1).bit_length() + 25 + self.neab <= 53):
            D = np.empty((A.shape[0], B.shape[1]))
            n, neab, emin_a, emin_b, p, lim = self._kernel_args()
            po = p if outer_params is None else outer_params
            native32 = outer_params is not None and outer_params == _fp32_rne()
            err = _GF.fused_tiles(A, B, C, D, n, every, neab, emin_a, emin_b, p, lim,
                                  *self._rtz_args(), po, native32)
            if err >= 0:
                raise_nan(err, out_fmt)
                return D
        return None

    def _matmul_split_k(self, A, B, C, every, outer_params, out_fmt):
        """``A @ B + C`` as chunks of ``every`` products, each by this fused adder, added
        into a deterministic sequential accumulator of format ``out_fmt`` (``outer_params``):
        the one kernel of split-K / promoted chains, or None where it does not apply (then
        the caller takes the general path). It needs the truncated terms of a block to sum
        exactly in float64 (always so for the GPU presets) and finite inputs."""
        if (self.n + 1).bit_length() + 25 + self.neab > 53:
            return None
        if not (_FUSED_FAST and np.isfinite(A).all() and np.isfinite(B).all()):
            return None
        D = self._packed(A, B, C, every, outer_params, out_fmt)
        if D is not None:
            return D
        D = np.empty((A.shape[0], B.shape[1]))
        n, neab, emin_a, emin_b, p, lim = self._kernel_args()
        err = _G.fused_f64(A, B, _clamped(A, emin_a), _clamped(B, emin_b), C, D, n, every,
                           neab, p, lim, *self._rtz_args(), outer_params)
        raise_nan(err, out_fmt)
        return D
