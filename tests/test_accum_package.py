"""fpsim.accum as a package: the model protocol, FusedBlock as a plain dataclass, the
error-growth numbers and their figure (drawn by fpsim.analysis, never by the core)."""

import dataclasses
import pickle
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

import fpsim
from fpsim import accum as A


@dataclass(frozen=True)
class _Reversed(A.Model):
    """A model written outside fpsim: the terms summed last to first by ``inner``."""

    inner: A.Model

    @property
    def out_fmt(self):
        return self.inner.out_fmt

    def _multiplier(self):
        return self.inner._multiplier()

    def _evaluate(self, T, TA, TB, c, row0=0, salt=0, axis_last=True):
        rev = (lambda X: None if X is None else X[:, ::-1])
        return self.inner._evaluate(rev(T), rev(TA), rev(TB), c, row0=row0, salt=salt)


def test_a_new_model_is_one_dataclass_with_its_evaluation():
    rng = np.random.default_rng(0)
    a = fpsim.quantize(rng.standard_normal((5, 70)), "bf16")
    b = fpsim.quantize(rng.standard_normal((70, 3)), "bf16")
    seq = A.Sequential("bf16", fma=True)
    want = A.Permuted(seq, order=list(range(69, -1, -1)))
    m = _Reversed(seq)
    assert np.array_equal(fpsim.matmul(a, b, model=m), fpsim.matmul(a, b, model=want))
    assert np.array_equal(fpsim.dot(a, b.T[:, None], model=m), fpsim.dot(a, b.T[:, None], model=want))
    assert np.array_equal(fpsim.sum(a, model=m), fpsim.sum(a, model=want))
    # composable like any model: reversing inside each split-K chunk is a permutation
    a64, b64 = a[:, :64], b[:64]
    perm = [16 * j + 15 - i for j in range(4) for i in range(16)]
    got = fpsim.matmul(a64, b64, model=A.Blocked(16, m, A.Exact("fp32")))
    assert np.array_equal(got, fpsim.matmul(
        a64, b64, model=A.Permuted(A.Blocked(16, seq, A.Exact("fp32")), order=perm)))
    with pytest.raises(TypeError, match="not a leaf model"):
        A.kernel_params(m)


def test_fusedblock_is_a_plain_dataclass():
    m = fpsim.hardware.tensor_core("H100", "e4m3")
    assert isinstance(m.out_fmt, fpsim.FloatFormat) and m.out_fmt.name == "fp32"
    assert [f.name for f in dataclasses.fields(A.FusedBlock)] == [
        "n", "neab", "out_fmt", "rounding", "in_fmt", "name", "in_fmt_b", "c_fmt"]
    m2 = pickle.loads(pickle.dumps(m))
    assert m2 == m and hash(m2) == hash(m) and repr(m2) == repr(m)
    r = dataclasses.replace(m, n=16)
    assert (r.n, r.out_fmt, r.name) == (16, m.out_fmt, m.name)
    assert A.FusedBlock(8, 1, "bf16") == A.FusedBlock(n=8, neab=1, out_fmt="bf16")
    assert repr(A.FusedBlock(4, 0, in_fmt=("fp16", "bf16"))) == (
        "FusedBlock(n=4, neab=0, out_fmt='fp32', rounding='rtz', in_fmt=('fp16', 'bf16'))")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.out_fmt = "fp16"
    with pytest.raises(ValueError, match="FusedBlock output e4m3"):
        A.FusedBlock(out_fmt="e4m3")


def test_error_growth_takes_models_and_a_statistic():
    models = {"seq bf16": A.Sequential("bf16", fma=True), "exact": A.Exact("fp32")}
    mean = A.error_growth(models, Ks=(16, 64), trials=6)
    median = A.error_growth(models, Ks=(16, 64), trials=6, statistic="median")
    assert set(mean) == set(models) and mean["seq bf16"].shape == (2,)
    assert np.all(mean["seq bf16"] > 0) and not np.array_equal(mean["seq bf16"], median["seq bf16"])
    # the reference is the correctly rounded dot product: Exact fp32 errs by < 2**-24
    assert np.all(mean["exact"] <= 2.0**-24)
    with pytest.raises(TypeError, match="error_growth_models"):
        A.error_growth(None)
    with pytest.raises(ValueError, match="statistic"):
        A.error_growth(models, statistic="max")


def test_error_growth_figure_is_detached_and_the_core_draws_nothing():
    code = """
import sys, fpsim
e = fpsim.accum.error_growth({"s": fpsim.accum.Sequential("fp32")}, Ks=(8,), trials=2)
assert 'matplotlib' not in sys.modules, 'the core imported matplotlib'
assert not hasattr(fpsim.accum, 'plot_error_growth')
import fpsim.analysis as fa
fig = fa.plot_error_growth({"s": fpsim.accum.Sequential("fp32")}, Ks=(8, 16), trials=2)
from matplotlib.figure import Figure
assert type(fig) is Figure and 'matplotlib.pyplot' not in sys.modules
assert len(fig.axes[0].lines) == 2  # the model and the K*u guide
print(sorted(fa.error_growth_models())[0])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[0] == "A100 tensor core (bf16)"


def test_permuted_period_tiles_the_order_and_pads_k_with_zeros():
    """A periodic order is the full-K order tiled per chunk (oracle: the explicit
    permutation), and a partial last chunk is the same as zero-padded inputs."""
    rng = np.random.default_rng(5)
    fused = A.Blocked(8, A.FusedBlock(4, 0, out_fmt="fp16", rounding="rne", in_fmt="e4m3"),
                      A.Sequential("fp16"))
    base = (0, 1, 4, 5, 2, 3, 6, 7)
    per = A.Permuted(fused, order=base, period=8)
    a = fpsim.quantize(rng.standard_normal((64, 24)) * 4, "e4m3")
    b = fpsim.quantize(rng.standard_normal((64, 24)) * 4, "e4m3")
    c = fpsim.quantize(rng.standard_normal(64), "fp16")
    full = A.Permuted(fused, order=[8 * j + i for j in range(3) for i in base])
    assert np.array_equal(fpsim.dot(a, b, c, model=per), fpsim.dot(a, b, c, model=full))
    a20, b20 = a[:, :20], b[:, :20]  # K = 20: padded to 24 with zero products
    z = np.zeros((64, 4))
    padded = fpsim.dot(np.hstack([a20, z]), np.hstack([b20, z]), c, model=full)
    assert np.array_equal(fpsim.dot(a20, b20, c, model=per), padded)
    assert np.array_equal(fpsim.matmul(a20[:4], b20[:4].T, model=per)[0],
                          fpsim.matmul(np.hstack([a20, z])[:4], np.hstack([b20, z])[:4].T,
                                       model=full)[0])
    with pytest.raises(ValueError, match="period"):
        A.Permuted(fused, seed=1, period=8)
    with pytest.raises(ValueError, match="permutation of range"):
        A.Permuted(fused, order=(0, 1, 2), period=8)


def test_fusedblock_c_fmt():
    """c_fmt: a C format narrower than the output (Volta's f16 C into f32 D); the same
    format as the output means none, a format the output cannot hold is refused, C values
    outside c_fmt are refused, and the torch path leaves the model to the CPU kernels."""
    assert A.FusedBlock(4, 0, c_fmt="fp32").c_fmt is None
    with pytest.raises(ValueError, match="c_fmt fp32: allowed"):
        A.FusedBlock(4, 0, out_fmt="fp16", c_fmt="fp32")
    m = A.FusedBlock(4, 0, in_fmt="fp16", c_fmt="fp16")
    assert "c_fmt='fp16'" in repr(m)
    # C = 2**-20 (an fp16 subnormal) and one product 2**-28 + 2**-30 + 2**-38 + 2**-40:
    # fp16's emin (-14) sets the quantum 2**-37, which drops the product's two low bits;
    # the fp32 rule (c's own exponent -20, quantum 2**-43) keeps them
    a = np.array([(1 + 2.0**-10) * 2.0**-14, 0, 0, 0])
    b = np.array([1.25 * 2.0**-14, 0, 0, 0])
    c = np.array(2.0**-20)
    exact = 2.0**-20 + a[0] * b[0]
    got, f32 = (float(fpsim.dot(a, b, c, model=x)) for x in (m, A.FusedBlock(4, 0, in_fmt="fp16")))
    assert f32 == float(np.float32(exact)) and got != f32
    q = 2.0**-37  # the first block's terms truncated at 2**(-14 - 23)
    assert got == 2.0**-20 + np.floor(a[0] * b[0] / q) * q
    with pytest.raises(ValueError, match="C format fp16"):
        fpsim.dot(a, b, np.array(0.1), model=m)
    torch_accum = pytest.importorskip("fpsim.torch.accum")
    assert not torch_accum.supports(m) and torch_accum.supports(A.FusedBlock(4, 0, in_fmt="fp16"))
