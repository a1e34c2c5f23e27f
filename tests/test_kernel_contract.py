"""The rounding kernel's contract: every parameter field is implemented by every kernel.

``RoundParams`` (built by :func:`fpsim.lowering.round_params`) is read by several
implementations of one rounding: the Numba general kernel (``float_round.round_bits`` and
its helpers), its torch twin (``float_round_torch.round_bits``) and the builders of the fast
paths' parameters (``fast_round.fast_params``, ``rne32_params``), which must turn every
field into a constant of their own or refuse the case (return None: the general kernel
runs). A field added to ``RoundParams`` and implemented in one place only would be ignored
silently elsewhere - a silent wrong answer on one path. These tests read the sources (the
attribute reads ``p.<field>`` in each implementation's functions, following the calls that
pass ``p`` on) and fail naming the field and the implementation. ``CodeParams``,
``DecodeParams``, ``FastParams`` and ``Rne32Params`` are checked against their kernels the
same way.

A field that matters in one case only (stochastic bits, wrap-around) may go unread by an
implementation that refuses that case; :data:`CASE_OF` says which, and the refusals are
checked by running them.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

import fpsim
from fpsim import lowering as L
from fpsim.kernels import fast_round, float_round

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "fpsim" / "kernels"


# ---------------------------------------------------------------------------------------
# the checker
# ---------------------------------------------------------------------------------------

def field_reads(source: str, entry: str, param: str = "p") -> set:
    """Attributes read on ``param`` in the module-level function ``entry`` of ``source``
    (nested functions included) and, transitively, in the module's functions it passes
    ``param`` to. Any other use of ``param`` (passed to a function of another module,
    stored, unpacked) is an error: the checker could not see what is read there."""
    defs = {n.name: n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}
    if entry not in defs:
        raise LookupError(f"no function {entry} in the source")
    reads, seen, todo = set(), set(), [(entry, param)]
    while todo:
        name, var = todo.pop()
        if (name, var) in seen:
            continue
        seen.add((name, var))
        fn = defs[name]
        followed = set()  # ids of the Name nodes accounted for
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == var:
                reads.add(node.attr)
                followed.add(id(node.value))
            elif isinstance(node, ast.Call):
                pos = [(k, a) for k, a in enumerate(node.args)
                       if isinstance(a, ast.Name) and a.id == var]
                kws = [(k.arg, k.value) for k in node.keywords
                       if isinstance(k.value, ast.Name) and k.value.id == var]
                if not (pos or kws):
                    continue
                callee = node.func.id if isinstance(node.func, ast.Name) else None
                if callee not in defs:
                    raise ValueError(f"{name} passes {var} to {ast.unparse(node.func)}, "
                                     "outside the module: its reads cannot be checked")
                cparams = [a.arg for a in defs[callee].args.args]
                for k, a in pos:
                    todo.append((callee, cparams[k]))
                    followed.add(id(a))
                for kw, a in kws:
                    todo.append((callee, kw))
                    followed.add(id(a))
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and node.id == var and id(node) not in followed:
                raise ValueError(f"{name} uses {var} as a whole (line {node.lineno}): "
                                 "its reads cannot be checked")
    return reads


class Impl(NamedTuple):
    name: str  # for messages
    file: str  # under fpsim/kernels
    entry: str  # the function whose reads (and its callees') count
    params: str  # the NamedTuple it implements
    refuses: tuple = ()  # cases of CASE_OF it refuses (checked in test_refusals)


#: RoundParams fields that matter in one case only: an implementation that refuses the case
#: need not read them.
CASE_OF = {"srbits": "stochastic", "wrap_bits": "wrap", "frac_bits": "wrap",
           "signed_int": "wrap"}

IMPLS = [
    Impl("the Numba general kernel (float_round.round_bits)", "float_round.py", "round_bits",
         "RoundParams"),
    Impl("the torch twin (float_round_torch.round_bits)", "float_round_torch.py", "round_bits",
         "RoundParams", ("wrap",)),
    Impl("the fast-path builder (fast_round.fast_params)", "fast_round.py", "fast_params",
         "RoundParams", ("stochastic", "wrap")),
    Impl("the float32 fast-path builder (fast_round.rne32_params)", "fast_round.py",
         "rne32_params", "RoundParams", ("stochastic", "wrap")),
    Impl("the code kernel (float_round.codes_from_bits)", "float_round.py", "codes_from_bits",
         "CodeParams"),
    Impl("the decode kernel (float_round.decode_codes)", "float_round.py", "decode_codes",
         "DecodeParams"),
    Impl("the fast kernel (fast_round._fast_one)", "fast_round.py", "_fast_one", "FastParams"),
    Impl("the float32 fast kernel (fast_round._rne32_one)", "fast_round.py", "_rne32_one",
         "Rne32Params"),
]

FIELDS = {"RoundParams": float_round.RoundParams._fields,
          "CodeParams": float_round.CodeParams._fields,
          "DecodeParams": float_round.DecodeParams._fields,
          "FastParams": fast_round.FastParams._fields,
          "Rne32Params": fast_round.Rne32Params._fields}


def contract_problems(impl: Impl, fields, source: str) -> list:
    """One message per field of ``fields`` that ``impl`` neither reads nor may skip."""
    reads = field_reads(source, impl.entry)
    out = []
    for f in fields:
        if f in reads:
            continue
        case = CASE_OF.get(f) if impl.params == "RoundParams" else None
        if case is not None and case in impl.refuses:
            continue
        out.append(f"{impl.params}.{f} is not read by {impl.name}: implement it there, or "
                   f"refuse the case it serves (and declare the refusal in {Path(__file__).name})")
    return out


def _source(impl: Impl) -> str:
    return (KERNELS / impl.file).read_text()


# ---------------------------------------------------------------------------------------
# the contract
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS, ids=[f"{i.params}-{i.entry}-{i.file}" for i in IMPLS])
def test_every_field_is_implemented(impl):
    problems = contract_problems(impl, FIELDS[impl.params], _source(impl))
    assert not problems, "\n".join(problems)


def test_no_reads_of_fields_that_do_not_exist():
    """A typo (``p.maxpoz``) would fail at compile time in Numba but silently in a
    builder reading a missing attribute inside a branch; and a removed field must go."""
    for impl in IMPLS:
        extra = {r for r in field_reads(_source(impl), impl.entry)
                 if not r.startswith("_")} - set(FIELDS[impl.params])
        assert not extra, f"{impl.name} reads {sorted(extra)}, not fields of {impl.params}"


def _wrap_params():
    fmt = fpsim.as_format("int8")
    return L.round_params(fmt, L.F64, *L.options(fmt, "rne", "wrap", None, None, False, None))


def _sr_params(dtype):
    fmt = fpsim.as_format("e4m3")
    return L.round_params(fmt, L.DTYPES[np.dtype(dtype)],
                          *L.options(fmt, "stochastic", None, None, None, False, 8))


def _torch_refuses_wrap():
    torch = pytest.importorskip("torch")
    from fpsim.kernels.float_round_torch import round_bits

    b = torch.tensor([300.0, 1.0], dtype=torch.float64).view(torch.int64)
    with pytest.raises(ValueError, match="wrap"):
        round_bits(b, _wrap_params())
    return True


REFUSALS = {  # (implementation entry, case) -> does it refuse the case?
    ("fast_params", "wrap"): lambda: fast_round.fast_params(_wrap_params()) is None,
    ("fast_params", "stochastic"): lambda: all(
        fast_round.fast_params(_sr_params(d)) is None for d in (np.float32, np.float64)),
    ("rne32_params", "wrap"): lambda: fast_round.rne32_params(_wrap_params()) is None,
    ("rne32_params", "stochastic"): lambda: fast_round.rne32_params(_sr_params(np.float32)) is None,
    ("round_bits", "wrap"): _torch_refuses_wrap,
}


@pytest.mark.parametrize("impl,case", [(i, c) for i in IMPLS for c in i.refuses],
                         ids=lambda v: getattr(v, "entry", v))
def test_refusals(impl, case):
    """Every refusal declared above is real (each has a probe that runs it)."""
    probe = REFUSALS.get((impl.entry, case))
    assert probe is not None, f"{impl.name} declares it refuses {case!r}: add its probe"
    assert probe(), f"{impl.name} does not refuse {case!r}"


# ---------------------------------------------------------------------------------------
# the checker catches what it must (run on modified sources)
# ---------------------------------------------------------------------------------------

def _impl(entry, file):
    return next(i for i in IMPLS if i.entry == entry and i.file == file)


@pytest.mark.parametrize("entry,file,field", [
    ("round_bits", "float_round.py", "no_negzero"),
    ("round_bits", "float_round.py", "wrap_bits"),  # read by a helper; no refusal excuses it
    ("round_bits", "float_round_torch.py", "ftz"),
    ("round_bits", "float_round_torch.py", "srbits"),  # read by _increment
    ("fast_params", "fast_round.py", "daz"),
    ("rne32_params", "fast_round.py", "nan_action"),  # read through fast_params
    ("codes_from_bits", "float_round.py", "negzero_is_code"),
    ("_fast_one", "fast_round.py", "ftz_lim"),
])
def test_a_field_left_out_is_caught(entry, file, field):
    impl = _impl(entry, file)
    src = _source(impl)
    read = re.compile(rf"\bp\.{field}\b")
    assert read.search(src)
    cut = read.sub("0", src)  # the implementation forgets the field
    problems = contract_problems(impl, FIELDS[impl.params], cut)
    assert len(problems) == 1 and f".{field} " in problems[0] and impl.name in problems[0]


def test_a_new_field_is_caught_everywhere():
    """A field added to RoundParams fails the contract for every implementation until each
    reads it (or refuses its case)."""
    for impl in IMPLS:
        if impl.params != "RoundParams":
            continue
        problems = contract_problems(impl, FIELDS["RoundParams"] + ("new_mode_bits",),
                                     _source(impl))
        assert problems == [f"RoundParams.new_mode_bits is not read by {impl.name}: implement "
                            f"it there, or refuse the case it serves (and declare the refusal "
                            f"in {Path(__file__).name})"]


def test_the_checker_follows_calls_and_refuses_to_guess():
    src = '''
def entry(x, p):
    a = p.one + helper(x, q=p)
    return nested(p) + a

def helper(x, q):
    def inner():
        return q.two
    return inner()

def nested(r):
    return r.three
'''
    assert field_reads(src, "entry") == {"one", "two", "three"}
    with pytest.raises(ValueError, match="outside the module"):
        field_reads("def f(p):\n    return g(p)\n", "f")
    with pytest.raises(ValueError, match="as a whole"):
        field_reads("def f(p):\n    a, b = p\n    return a\n", "f")


# ---------------------------------------------------------------------------------------
# serial / parallel twins: one body each (fpsim/kernels/_twins.py)
# ---------------------------------------------------------------------------------------

TWINS = [("float_round", "quantize"), ("fast_round", "fast"), ("fast_round", "rne32"),
         ("table_round", "table"), ("arith", "arith")]


@pytest.mark.parametrize("module,stem", TWINS)
def test_twins_are_generated_from_one_body(module, stem):
    mod = importlib.import_module(f"fpsim.kernels.{module}")
    ser, par = getattr(mod, f"{stem}_serial"), getattr(mod, f"{stem}_parallel")
    cs, cp = ser.py_func.__code__, par.py_func.__code__
    # two cache entries (distinct names), both invalidated by an edit of the body's module
    assert (cs.co_qualname, cp.co_qualname) == (f"{stem}_serial", f"{stem}_parallel")
    assert cs.co_filename == cp.co_filename == mod.__file__
    assert not ser.targetoptions.get("parallel") and par.targetoptions["parallel"]
    # the same statements: the code differs only in the loop's range / prange
    assert cs.co_code == cp.co_code
    assert [n for n in cs.co_names if n != "range"] == [n for n in cp.co_names if n != "prange"]


def test_twins_take_only_bodies_they_can_splice():
    from fpsim.kernels._twins import twins

    def early(i, x):
        if x[i] != x[i]:
            return 1
        return 0

    def no_index(x):
        return 0

    with pytest.raises(ValueError, match="only return"):
        twins("t", early, over="x")
    with pytest.raises(ValueError, match="index i first"):
        twins("t", no_index, over="x")
    def ok(i, x):
        x[i] = 0
        return 0

    with pytest.raises(ValueError, match="over='y'"):
        twins("t", ok, over="y")
    with pytest.raises(ValueError, match="prange"):  # this module does not import it
        twins("t", ok, over="x")


# ---------------------------------------------------------------------------------------
# the torch twin stays out of the core
# ---------------------------------------------------------------------------------------

def _imports(path: Path) -> set:
    """Module names an ``import`` / ``from ... import`` statement of ``path`` mentions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            out |= {f"{node.module or ''}.{a.name}" for a in node.names} | {node.module or ""}
    return out


def test_no_core_module_imports_the_torch_twin():
    core = [p for p in (ROOT / "fpsim").rglob("*.py") if p.name != "float_round_torch.py"
            and "torch" not in p.relative_to(ROOT / "fpsim").parts]
    assert len(core) > 20
    bad = [str(p.relative_to(ROOT)) for p in core
           if any("float_round_torch" in m for m in _imports(p))]
    assert not bad, f"core modules import the torch twin (only fpsim.torch may): {bad}"
    # ... and fpsim.torch does (the check above is not vacuous)
    assert any("float_round_torch" in m for m in _imports(ROOT / "fpsim" / "torch" / "quantize.py"))


def test_quantize_loads_neither_torch_nor_its_twin():
    code = ("import sys, fpsim, numpy as np; fpsim.quantize(np.ones(3), 'e4m3'); "
            "print('torch' in sys.modules, 'fpsim.kernels.float_round_torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.split() == ["False", "False"]
