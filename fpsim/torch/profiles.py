"""Named emulation profiles: ``fpsim.torch.profiles.get(name)`` returns a :class:`Policy`.

=============== ==========================================================================
``fp32``        nothing rounded: plain fp32 torch (the reference)
``tf32``        GEMM inputs rounded to TF32 (e8m10), fp32 accumulation (Ampere+ default)
``bf16``        bf16 GEMM inputs, gradients and outputs, fp32 accumulation; softmax/norms
                in fp32 (what ``torch.autocast(dtype=bfloat16)`` does on a GPU)
``fp16``        the same with fp16 (no loss scaling: small gradients underflow)
``layercast``   weights stored in bf16, upcast: all arithmetic in fp32
``h100_fp8``    per-tensor-scaled E4M3 forward operands, E5M2 gradients, H100 FP8 tensor
                core (13-bit fused accumulation) promoted into fp32 every 128 products
                (the DeepSeek-V3 recipe)
``mxfp8``       OCP MX E4M3 blocks of 32 along K for weights and activations, MX E5M2
                gradients, fp32 accumulation
``mxfp4``       OCP MX E2M1 blocks of 32, MX E5M2 gradients, fp32 accumulation
``nvfp4``       NVFP4 (E2M1 blocks of 16, E4M3 scales, fp32 tensor scale), fp32 accum
``b200_mxfp8``  MX E4M3 weights and activations, MX E5M2 gradients, every GEMM on the B200
                block-scaled tensor core (``tensor_core("B200", "mxfp8")``, bit-exact)
``b200_nvfp4``  NVFP4 weights, activations and gradients on ``tensor_core("B200", "nvfp4")``
``mi300x_fp8``  per-tensor-scaled E4M3FNUZ forward, E5M2FNUZ gradients, the MI300X FP8
                matrix core (``tensor_core("MI300X", "e4m3fnuz")``)
``lmul3``       L-Mul multiplier (Luo & Sun 2024) on 3-bit-mantissa inputs (e8m3), fp32 sum
``lmul4``       the same with 4-bit mantissas (e8m4)
``dint4_w4a8``  dINT4 weights (per-output-channel scale), int8 activations (per-token
                scale), exact products, fp32 accumulation
``{gpu}_{fmt}`` the tensor core of ``gpu`` on ``fmt`` inputs, bit-exact
                (``fpsim.hardware.tensor_core``): one profile per row of
                ``fpsim.hardware.GPU_TABLE`` (the name without spaces: ``rtx4090``) and
                each of its inputs among fp16, bf16, tf32, e4m3, e5m2
=============== ==========================================================================

>>> from fpsim.torch import profiles
>>> profiles.get("bf16").weight.name
'bf16'
>>> "h100_bf16" in profiles.names()
True
"""

from __future__ import annotations

from .. import accum as _A
from .. import hardware as _H
from ..formats import as_format
from .policy import Policy, Scaled, named, named_policies, register_named

__all__ = ["get", "names", "describe", "describe_validation", "validation", "TENSOR_CORE_GPUS",
           "register", "CAPTURED"]

#: Tensor-core input formats per GPU profile name (``rtx4090``), from
#: ``fpsim.hardware.GPU_TABLE``: the ``<gpu>_<fmt>`` profiles.
TENSOR_CORE_GPUS = {g.profile: tuple(f for f in g.inputs if f in _H.IN_FORMATS)
                    for g in _H.GPU_TABLE}
#: (gpu, input) of tensor-core profiles whose preset reproduces captured GPU outputs
#: (fp32 output; from the ``captured`` field of ``fpsim.hardware.GPU_TABLE``;
#: tests/test_tensor_cores.py checks it against the data).
CAPTURED = frozenset((g.profile, f) for g in _H.GPU_TABLE for f, o in g.captured
                     if o == "fp32")

_FP8 = ("e4m3", "e5m2")


def _fp32():
    return Policy(name="fp32", description="reference: no rounding, torch's fp32 arithmetic")


def _tf32():
    return Policy(weight="tf32", activation="tf32", name="tf32",
                  description="GEMM inputs rounded to TF32 (e8m10), fp32 accumulation")


def _half(fmt):
    def make():
        return Policy(weight=fmt, activation=fmt, gradient=fmt, output=fmt, name=fmt,
                      description=f"{fmt} GEMM inputs, gradients and outputs, fp32 accumulation, "
                                  "softmax/norms in fp32 (autocast)")
    return make


def _layercast():
    return Policy(weight="bf16", name="layercast",
                  description="weights stored in bf16 and upcast; all arithmetic in fp32")


def _mixed(model):
    """The same tensor core accepting any <= 26-bit inputs (e4m3 x e5m2 backward GEMMs)."""
    return _A.FusedBlock(model.n, model.neab, out_fmt=model.out_fmt, rounding=model.rounding,
                 in_fmt=None, name=(model.name or "tensor core") + " mixed fp8")


def _h100_fp8():
    what = "h100_fp8"
    fwd = _H.fp8_promoted("H100", "e4m3", 128)
    bwd = _A.Promoted(_mixed(fwd.inner), every=128, outer=fwd.outer)
    return Policy(weight=Scaled("e4m3"), activation=Scaled("e4m3"), gradient=Scaled("e5m2"),
                  accum=fwd, backward_accum=bwd, name=what,
                  description="per-tensor-scaled E4M3 forward, E5M2 gradients, H100 FP8 tensor "
                              "core (13-bit accumulation) promoted into fp32 every 128 products "
                              "(DeepSeek-V3 recipe)")


def _b200_block(kind, grad, backward, desc):
    """B200 block-scaled profile: weights and activations in the block format ``kind``
    (mxfp8, nvfp4), the GEMMs on the B200's ``tcgen05.mma`` block-scaled kind."""
    def make():
        fmt = as_format("mxfp8_e4m3" if kind == "mxfp8" else kind)
        return Policy(weight=fmt, activation=fmt, gradient=as_format(grad),
                      accum=_H.tensor_core("B200", kind), backward_accum=backward(),
                      name=f"b200_{kind}", description=desc)
    return make


def _mi300x_fp8():
    fwd = _H.tensor_core("MI300X", "e4m3fnuz")
    bwd = _H.tensor_core("MI300X", ("e5m2fnuz", "e4m3fnuz"))
    return Policy(weight=Scaled("e4m3fnuz"), activation=Scaled("e4m3fnuz"),
                  gradient=Scaled("e5m2fnuz"), accum=fwd, backward_accum=bwd, name="mi300x_fp8",
                  description="per-tensor-scaled E4M3FNUZ forward, E5M2FNUZ gradients, the "
                              "MI300X FP8 matrix core (v_mfma_f32_16x16x32_fp8_fp8; backward "
                              "GEMMs on the mixed bf8 x fp8 instructions)")


def _block(name, elem, grad=None, desc=""):
    def make():
        gfmt = None if grad is None else as_format(grad)
        return Policy(weight=as_format(elem), activation=as_format(elem), gradient=gfmt,
                      name=name, description=desc)
    return make


def _lmul(m):
    def make():
        what = f"lmul{m}"
        fmt = f"e8m{m}"
        return Policy(weight=fmt, activation=fmt,
                      accum=_A.Sequential("fp32", multiply=_A.LMulProduct(m)), name=what,
                      description=f"L-Mul (Luo & Sun 2024, 'int' semantics) on e8m{m} inputs, "
                                  "products summed sequentially in fp32 (RNE)")
    return make


def _dint4_w4a8():
    return Policy(weight=Scaled("dint4", per="row"), activation=Scaled("int8", per="row"),
                  name="dint4_w4a8",
                  description="dINT4 weights with a per-output-channel scale, int8 activations "
                              "with a per-token scale, exact products, fp32 accumulation")


def _tc_profile(gpu, fmt):
    def make():
        what = f"{gpu}_{fmt}"
        model = _H.tensor_core(gpu, fmt)
        grad = "e5m2" if fmt in _FP8 else fmt
        op = Scaled(fmt) if fmt in _FP8 else fmt
        gop = Scaled(grad) if fmt in _FP8 else grad
        bwd = _mixed(model) if fmt in _FP8 else None
        return Policy(weight=op, activation=op, gradient=gop, accum=model, backward_accum=bwd,
                      name=what,
                      description=f"{gpu.upper()} tensor core on {fmt} inputs (bit-exact fused "
                                  "multi-term accumulation, SPEC §4)")
    return make


_BASE = {
    "fp32": _fp32, "tf32": _tf32, "bf16": _half("bf16"), "fp16": _half("fp16"),
    "layercast": _layercast, "h100_fp8": _h100_fp8,
    "mxfp8": _block("mxfp8", "mxfp8e4m3", "mxfp8e5m2",
                    desc="OCP MX E4M3 blocks of 32 along K (weights, activations), MX E5M2 "
                         "gradients, fp32 accumulation"),
    "mxfp4": _block("mxfp4", "mxfp4", "mxfp8e5m2",
                    desc="OCP MX E2M1 blocks of 32 along K (weights, activations), MX E5M2 "
                         "gradients, fp32 accumulation"),
    "nvfp4": _block("nvfp4", "nvfp4", "mxfp8e5m2",
                    desc="NVFP4: E2M1 blocks of 16 with E4M3 scales and an fp32 tensor scale "
                         "(weights, activations), MX E5M2 gradients, fp32 accumulation"),
    "lmul3": _lmul(3), "lmul4": _lmul(4), "dint4_w4a8": _dint4_w4a8,
    "b200_mxfp8": _b200_block(
        "mxfp8", "mxfp8_e5m2", lambda: _H.tensor_core("B200", ("mxfp8_e5m2", "mxfp8")),
        desc="OCP MX E4M3 blocks of 32 along K (weights, activations), MX E5M2 gradients, "
             "every GEMM on the B200 tcgen05.mma kind::mxf8f6f4 block32 model (backward: "
             "E5M2 x E4M3 operands)"),
    "b200_nvfp4": _b200_block(
        "nvfp4", "nvfp4", lambda: None,
        desc="NVFP4 (E2M1 blocks of 16, E4M3 scales, fp32 tensor scale) weights, activations "
             "and gradients, every GEMM on the B200 tcgen05.mma kind::mxf4nvf4 block16 model, "
             "the tensor scales applied to its fp32 result"),
    "mi300x_fp8": _mi300x_fp8,
}
def _register_catalogue():
    """Fill the registry of named policies (fpsim.torch.policy) with this module's profiles."""
    for name, make in _BASE.items():
        register_named(name, make)
    for gpu, fmts in TENSOR_CORE_GPUS.items():
        for f in fmts:
            register_named(f"{gpu}_{f}", _tc_profile(gpu, f))


_register_catalogue()


def names() -> list:
    """All profile names.

    >>> from fpsim.torch import profiles
    >>> profiles.names()[:4]
    ['fp32', 'tf32', 'bf16', 'fp16']
    """
    return named_policies()


_V_FORMATS = ("formats only: the roundings are bit-exact against independent oracles "
              "(ml_dtypes, torch, gfloat, exact rationals); the fp32 accumulation is torch's "
              "(no hardware claim)")


def validation(name: str) -> str:
    """What the hardware claim of profile ``name`` stands on: captured GPU data, MMA-Sim
    agreement, published parameters only, or (no hardware model) the format oracles.

    >>> from fpsim.torch import profiles
    >>> profiles.validation("a100_bf16").split(":")[0]
    'captured GPU data'
    >>> profiles.validation("b200_bf16").split(":")[0]
    'MMA-Sim agreement'
    """
    p = get(name)
    key = p.name.lower()
    gpu, _, fmt = key.partition("_")
    if fmt in TENSOR_CORE_GPUS.get(gpu, ()):
        return _H.evidence(gpu, fmt, "fp32")
    if key in ("b200_mxfp8", "b200_nvfp4", "mi300x_fp8"):
        gpu, fmt = {"b200_mxfp8": ("B200", "mxfp8"), "b200_nvfp4": ("B200", "nvfp4"),
                    "mi300x_fp8": ("MI300X", "e4m3fnuz")}[key]
        return _H.evidence(gpu, fmt, "fp32")
    if key == "h100_fp8":
        inner = _H.evidence("h100", "e4m3", "fp32")
        return (inner + " (the H100 e4m3 core; the promotion into fp32 every 128 products is "
                "DeepSeek-V3's published recipe)")
    if not p.is_native:
        return "published formula: " + (p.description or "custom accumulation model")
    return _V_FORMATS


def get(name: str) -> Policy:
    """The :class:`Policy` of profile ``name``.

    >>> from fpsim.torch import profiles
    >>> profiles.get("dint4_w4a8").weight
    Scaled('dint4', per='row')
    """
    if isinstance(name, Policy):
        return name
    return named(name)


def describe(name: str) -> str:
    """What profile ``name`` emulates (one paragraph).

    >>> from fpsim.torch import profiles
    >>> profiles.describe("layercast")
    'layercast: weights stored in bf16 and upcast; all arithmetic in fp32'
    """
    p = get(name)
    return f"{p.name}: {p.description}"


def describe_validation(name: str) -> str:
    """:func:`describe` plus what its hardware claim stands on (:func:`validation`).

    >>> from fpsim.torch import profiles
    >>> print(profiles.describe_validation("v100_fp16").splitlines()[1])
      validation: captured GPU data: the model reproduces every captured line of V100 fp16 -> fp32 outputs; bit-identical to MMA-Sim's Volta mma model on random inputs
    """
    return f"{describe(name)}\n  validation: {validation(name)}"


def register(name: str, policy_or_factory) -> None:
    """Add a profile (a Policy or a zero-argument function returning one).

    >>> from fpsim.torch import profiles, Policy
    >>> profiles.register("my_e4m3", Policy(weight="e4m3", name="my_e4m3"))
    >>> profiles.get("my_e4m3").weight.name
    'e4m3'
    >>> profiles.describe("my_e4m3")  # no description given: derived from the policy
    'my_e4m3: weight=e4m3 activation=None gradient=None output=None accum=native compute=None'
    """
    key = str(name).lower()
    if not (callable(policy_or_factory) or isinstance(policy_or_factory, Policy)):
        raise TypeError(f"register({name!r}, ...) takes a Policy or a zero-argument function "
                        f"returning one, not {type(policy_or_factory).__name__}")
    factory = policy_or_factory if callable(policy_or_factory) else (lambda: policy_or_factory)

    def make():
        p = factory()
        if not isinstance(p, Policy):
            raise TypeError(f"profile {name!r}: the factory returned {type(p).__name__}, not a Policy")
        if not p.description:  # derived from the policy's settings
            p = p.replace(description=p.summary().split(": ", 1)[1].split("\n")[0])
        return p
    register_named(key, make)
