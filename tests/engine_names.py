"""Instruction names the tests build from rows of ``fpsim.engines.ENGINES`` (shared by
tests/test_mmasim.py and tests/test_torch_engines.py, which enumerate the same kinds)."""

#: fpsim operand formats -> the type suffixes of AMD's v_mfma names
AMD_TYPES = {"fp32": "f32", "tf32": "xf32", "fp16": "f16", "bf16": "bf16", "e4m3fnuz": "fp8",
             "e5m2fnuz": "bf8"}


def mfma_suffix(e, fa, fb, k):
    """The v_mfma suffix (after ``v_mfma_``, as MMA-Sim spells it) of the fp32-output row
    ``e`` for A/B formats ``fa``/``fb`` and K = ``k``."""
    ta, tb = AMD_TYPES[fa], AMD_TYPES[fb]
    if e.arch == "CDNA3":
        mn = {1: "32x32", 2: "32x32", 4: "16x16", 8: "16x16", 16: "32x32", 32: "16x16"}[k]
        if fa == "tf32":
            mn = "16x16" if k == 8 else "32x32"
        if fa in ("fp16", "bf16") and k == 16:
            mn = "16x16"
        return f"f32_{mn}x{k}_{ta}" + (f"_{tb}" if len(e.inputs) > 1 else "")
    mn = {1: "32x32", 2: "32x32", 4: "16x16", 8: "32x32", 16: "16x16"}[k]
    if fa == "bf16" and not e.kind:
        mn = {2: "32x32", 4: "32x32", 8: "16x16"}[k]
    return f"f32_{mn}x{k}{ta}" + ("_1k" if e.kind else "")
