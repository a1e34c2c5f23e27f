"""The entry points: :func:`dot`, :func:`matmul`, :func:`sum` and :func:`kernel_params`.

They convert and check the inputs and hand the model its rows; the model evaluates itself
(:mod:`fpsim.accum.models` describes the protocol).
"""

from __future__ import annotations

import math

import numpy as np

from .inputs import Rounded, check_inputs, exact_float64
from .models import Model

__all__ = ["dot", "kernel_params", "matmul", "sum"]


def dot(A, B, C=None, *, model, a_scale=None, b_scale=None):
    """Batched dot products over the last axis: ``D[...] = sum_k A[..., k] B[..., k] + C[...]``.

    ``A`` and ``B`` broadcast against each other; ``C`` (optional) broadcasts to the result.
    Values must already be in the model's input format (when it has one); the result holds
    values of ``model.out_fmt`` as float64. Block-scaled models (:class:`BlockScaledFused`)
    take ``a_scale`` shaped ``A.shape[:-1] + (K // block,)`` and ``b_scale`` likewise: one
    scale per ``block`` consecutive elements along K, as the hardware consumes them - or
    ``A``/``B`` as the block codes ``fpsim.encode`` returns (blocked along K; the scales come
    with them).

    >>> import numpy as np, fpsim
    >>> a = np.array([1.0, 2.0**-12, 2.0**-12]); b = np.array([1.0, 2.0**-12, 2.0**-12])
    >>> float(fpsim.dot(a, b, model=fpsim.accum.Sequential("fp32", fma=True)))
    1.0
    >>> float(fpsim.dot(a, b, model=fpsim.accum.Exact("fp32")))
    1.0000001192092896
    """
    A, B, a_scale, b_scale, proofs = _operands(model, A, B, a_scale, b_scale, (-1, -1))
    if A.ndim == 0 or B.ndim == 0:
        raise ValueError("dot needs arrays with at least one axis (the summed last axis)")
    if A.shape[-1] != B.shape[-1]:
        raise ValueError(f"dot: the last axes differ: A has {A.shape[-1]} and B has "
                         f"{B.shape[-1]} elements (shapes {A.shape} and {B.shape})")
    shp = _batch("dot", A.shape[:-1], B.shape[:-1])
    c = _c_rows(C, shp).reshape(-1)
    check_inputs(model, [("A", proofs[0] or A), ("B", proofs[1] or B)])
    return model._dot(A, B, c, shp, a_scale, b_scale).reshape(shp)


def sum(x, *, model, axis=-1):
    """Sum ``x`` along ``axis`` with an accumulation model (no products).

    With :class:`NumpyOrder` the order depends on the axis exactly as in numpy (pairwise
    along the last axis of a C-contiguous array, sequential along the others);
    ``axis=None`` sums the flattened array.

    >>> import numpy as np, fpsim
    >>> x = np.array([[1.0, 2.0**-24, 2.0**-24], [3.0, 0.0, 1.0]])
    >>> fpsim.sum(x, model=fpsim.accum.Sequential("fp32")).tolist()
    [1.0, 4.0]

    Integer (and longdouble) inputs are taken exactly or refused, never rounded:

    >>> float(fpsim.sum(np.array([2**53, 1]), model=fpsim.accum.Exact("fp32")))
    9007199254740992.0
    >>> try:
    ...     fpsim.sum(np.array([2**60 + 1, -2**60]), model=fpsim.accum.Exact("fp32"))
    ... except ValueError as e:
    ...     print(str(e)[:78])
    x holds the integer 1152921504606846977, which is not exactly representable in
    """
    _check_model(model)
    x = exact_float64(x, "x")
    if axis is None:
        x = x.reshape(-1)
        axis = 0
    if x.ndim == 0:
        raise ValueError("sum needs an array with at least one axis")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis={axis!r} is not valid for an array with {x.ndim} dimension(s)")
    axis = int(axis) % x.ndim
    last = axis == x.ndim - 1
    xm = np.moveaxis(x, axis, -1)
    shp = xm.shape[:-1]
    K = xm.shape[-1]
    check_inputs(model, [("x", x)], multiplied=False)  # the terms are not multiplied
    T = np.ascontiguousarray(xm).reshape(math.prod(shp), K)
    return model._evaluate(T, None, None, np.zeros(T.shape[0]), axis_last=last).reshape(shp)


def matmul(A, B, C=None, *, model, a_scale=None, b_scale=None):
    """``D = A @ B + C`` with every output element a dot product evaluated by ``model``.

    ``A`` (..., M, K) and ``B`` (..., K, N) with broadcast batch dimensions; ``C``
    (optional) broadcasts to (..., M, N). Inputs must hold values of the model's input
    format; the result is float64 holding values of ``model.out_fmt``. Sequential fp32
    round-to-nearest-even and tensor-core models run fused kernels without materialising
    the products; other models process the products in chunks. Block-scaled models
    (:class:`BlockScaledFused`) take ``a_scale`` (..., M, K // block) and ``b_scale``
    (..., K // block, N): one scale per K-block of each row of A and column of B - or ``A``
    and ``B`` as block codes (``fpsim.encode``, A blocked along its last axis, B along K).

    >>> import numpy as np, fpsim
    >>> A = np.array([[1.0, 2.0**-12], [0.5, 0.25]]); B = np.array([[1.0], [2.0**-12]])
    >>> fpsim.matmul(A, B, model=fpsim.accum.Sequential("fp32", fma=True)).ravel().tolist()
    [1.0, 0.50006103515625]

    ml_dtypes' FP8/FP6/FP4 arrays are read exactly, as :func:`fpsim.quantize` reads them:

    >>> import ml_dtypes
    >>> A8 = np.array([[1.5, -2.0]]).astype(ml_dtypes.float8_e4m3fn)
    >>> fpsim.matmul(A8, A8.T, model=fpsim.accum.Exact("fp32")).tolist()
    [[6.25]]
    """
    A, B, a_scale, b_scale, proofs = _operands(model, A, B, a_scale, b_scale, (-1, -2))
    if A.ndim < 2 or B.ndim < 2:
        raise ValueError(f"matmul needs A (..., M, K) and B (..., K, N) with at least 2 "
                         f"dimensions; got shapes {A.shape} and {B.shape} (use fpsim.dot for "
                         "vectors)")
    if A.shape[-1] != B.shape[-2]:
        raise ValueError(f"matmul: A has K={A.shape[-1]} columns but B has {B.shape[-2]} rows "
                         f"(shapes {A.shape} and {B.shape})")
    batch = _batch("matmul", A.shape[:-2], B.shape[:-2])
    M, N = A.shape[-2], B.shape[-1]
    Cb = _c_rows(C, batch + (M, N))
    check_inputs(model, [("A", proofs[0] or A), ("B", proofs[1] or B)])
    return model._gemm(A, B, Cb, batch, a_scale, b_scale)


def kernel_params(obj):
    """The rounding parameters the kernels use for ``obj``, for other implementations of the
    same arithmetic (the torch path, :mod:`fpsim.torch.accum`): one source of truth.

    A leaf model (Sequential, Pairwise, Kahan, Exact, NumpyOrder, Integer) gives
    ``(kind, RoundParams)``; a :class:`RoundedProduct` its RoundParams; a :class:`FusedBlock`
    the tuple ``(n, neab, emin_a, emin_b, RoundParams, ovf_lim, rtz_mask, min_normal)``
    (the last two: the truncating shortcut of the fast kernels, 0 without truncation).

    >>> import fpsim
    >>> from fpsim.accum import kernel_params
    >>> kind, p = kernel_params(fpsim.accum.Sequential("bf16"))
    >>> p.M, p.emin
    (7, -126)
    >>> kernel_params(fpsim.hardware.tensor_core("H100", "bf16"))[:4]
    (16, 2, -126, -126)
    """
    method = getattr(obj, "_kernel_params", None)
    if method is None:
        raise TypeError(f"{obj!r} is not a leaf model: kernel parameters exist for Sequential, "
                        "Pairwise, Kahan, Exact, NumpyOrder, Integer, RoundedProduct and "
                        "FusedBlock")
    return method()


def _check_model(model):
    if not isinstance(model, Model):
        raise TypeError(f"model= must be an accumulation model from fpsim.accum or "
                        f"fpsim.hardware.tensor_core(...), got {model!r}")


def _operands(model, A, B, a_scale, b_scale, axes):
    """The model checked; A, B (block codes decoded by a block-scaled model, their scales
    taken out: ``axes`` are the K axes of A and B) under the input rule (float64 arrays),
    and the :class:`Rounded` each came as (or None) for :func:`check_inputs`."""
    _check_model(model)
    proofs = tuple(x if isinstance(x, Rounded) else None for x in (A, B))
    A, B = (x.values if isinstance(x, Rounded) else x for x in (A, B))
    A, B, a_scale, b_scale = model._coded(A, B, a_scale, b_scale, axes)
    return exact_float64(A, "A"), exact_float64(B, "B"), a_scale, b_scale, proofs


def _batch(what, sa, sb):
    """The broadcast batch shape of two operands (or a ValueError naming both)."""
    try:
        return np.broadcast_shapes(sa, sb)
    except ValueError:
        raise ValueError(f"{what}: batch shapes {sa} and {sb} do not broadcast") from None


def _c_rows(C, shape, what="C"):
    if C is None:
        return np.zeros(shape)
    c = exact_float64(C, what)
    try:
        return np.ascontiguousarray(np.broadcast_to(c, shape), dtype=np.float64)
    except ValueError:
        raise ValueError(f"{what} with shape {c.shape} does not broadcast to the result shape "
                         f"{shape}") from None
