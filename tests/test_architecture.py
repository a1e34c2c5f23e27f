"""The architecture guarantees of issue 13 ("a spine"), checked on the source with ``ast``.

Nothing of fpsim is imported: every module of ``fpsim/`` is parsed and the test fails, naming
file and line, on

- an import cycle between fpsim modules (module-level imports; ``if TYPE_CHECKING:`` aside);
- a cross-module use of an underscore name: ``from fpsim.x import _y``, ``x._y`` on a name
  bound to an fpsim module, or a package's private submodule (``fpsim.accum._common``) used
  outside its package. A module's ``_names`` are its own (a package's are shared by its
  submodules); dunder names are public. The kernels are internal by design: their modules
  use each other's ``_names``, and three of their private modules serve all of fpsim
  (``SHARED_PRIVATE_MODULES``);
- a function-level import of an fpsim module. Kernels load lazily through
  ``fpsim.kernels._lazy`` (``kernel(...)``/``lazy_module(...)``: a call, not an import, and
  ``importlib.import_module`` nowhere else); the layers above the torch bridge (analysis,
  report, warmup) import ``fpsim.torch`` inside functions, because torch is optional;
  anything else is in ``FUNCTION_IMPORTS`` with its reason;
- a module over 550 lines (``LONG_MODULES`` names exceptions with a reason; none today);
- torch (or ``fpsim.torch``) imported outside ``fpsim/torch/`` other than lazily by the
  layers above it, a core module reaching the torch twin of the rounding kernel, and
  matplotlib anywhere but inside functions of ``fpsim/analysis/`` and ``fpsim/report.py``.

Each checker also runs on small synthetic packages, so that each is seen to fail.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 550

#: Modules allowed over MAX_LINES (generated tables would go here), path -> reason.
LONG_MODULES: dict = {}

#: Function-level imports of fpsim modules outside the rules above: (path, function) -> reason.
#: Empty today: cli, report and warmup import at module level since issue 13's check.
FUNCTION_IMPORTS: dict = {}

#: Modules above the torch bridge: they may import torch and fpsim.torch inside functions.
ABOVE_TORCH = ("fpsim.analysis", "fpsim.report", "fpsim.warmup", "fpsim.cli")

#: Modules outside fpsim/torch/ that import torch at module level, path -> reason.
TORCH_MODULES = {
    "fpsim/kernels/float_round_torch.py":
        "the torch twin of the rounding kernel, beside the Numba one; only fpsim.torch loads it",
}

#: Where matplotlib may be imported (inside functions only: figures are drawn on demand).
MATPLOTLIB_USERS = ("fpsim.analysis", "fpsim.report")

#: The one place an fpsim module is imported by name at run time (the lazy kernels);
#: importlib.import_module("ml_dtypes") and the like are lazy third-party imports, not checked.
DYNAMIC_IMPORTS = {("fpsim/kernels/_lazy.py", "_load")}

#: fpsim.kernels is internal by design: its modules use each other's underscore names
#: (block_round reads fast_round's _fast_one/_rne32_one, one rounding body for both).
INTERNAL_PACKAGE = "fpsim.kernels"

#: Private modules of fpsim.kernels that the rest of fpsim uses, module -> reason.
SHARED_PRIVATE_MODULES = {
    "fpsim.kernels._lazy": "kernel()/lazy_module(): numba loads on first use, not on import fpsim",
    "fpsim.kernels._modes": "the kernel codes of modes, rules and leaves (options, lowering, "
                            "arith, accum, block, scaling and the torch twin name them)",
    "fpsim.kernels._notice": "warmup silences the first-use compile notice while it compiles",
}


# ---------------------------------------------------------------------------------------
# Reading the package
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Module:
    name: str  # dotted: "fpsim.accum.models", "fpsim.accum" for fpsim/accum/__init__.py
    path: str  # "fpsim/accum/models.py"
    is_pkg: bool
    tree: ast.Module
    nlines: int


@dataclass(frozen=True)
class Use:
    """One thing an import statement (or a lazy-kernel call) takes from a module."""

    importer: str  # the importing module
    path: str
    line: int
    target: str  # the module imported, or the module a name is taken from
    name: str | None  # the name taken from ``target`` (None: the module itself)
    binds: tuple | None  # (local name, fpsim-or-other module it is bound to), module imports
    function: str | None  # the enclosing function (None: runs at import)
    type_checking: bool = False
    lazy: bool = False  # kernel("m", ...) / lazy_module("m") of fpsim.kernels._lazy

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def load(sources: dict) -> dict:
    """``{path: source}`` -> ``{module name: Module}``."""
    mods = {}
    for path, text in sources.items():
        parts = path[:-3].split("/")
        is_pkg = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_pkg else parts)
        mods[name] = Module(name, path, is_pkg, ast.parse(text, filename=path), len(text.splitlines()))
    return mods


def read_fpsim() -> dict:
    return {p.relative_to(ROOT).as_posix(): p.read_text()
            for p in sorted((ROOT / "fpsim").rglob("*.py"))}


def _is_fpsim(name: str) -> bool:
    return name == "fpsim" or name.startswith("fpsim.")


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not _is_dunder(name)


def _within(importer: str, owner: str) -> bool:
    return importer == owner or importer.startswith(owner + ".")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Collector(ast.NodeVisitor):
    """The uses of one module, each with its enclosing function (if any)."""

    def __init__(self, mod: Module, known):
        self.mod, self.known, self.uses, self.calls = mod, known, [], []
        self.names, self.depth, self.tc = [], 0, False  # qualified name, function depth

    @property
    def function(self):
        return ".".join(self.names) if self.depth else None

    def _use(self, node, target, name=None, binds=None, lazy=False):
        self.uses.append(Use(self.mod.name, self.mod.path, node.lineno, target, name, binds,
                             self.function, self.tc, lazy))

    def _scope(self, node, name, function):
        self.names.append(name)
        self.depth += function
        self.generic_visit(node)
        self.depth -= function
        self.names.pop()

    def visit_FunctionDef(self, node):
        self._scope(node, node.name, True)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        self._scope(node, "<lambda>", True)

    def visit_ClassDef(self, node):  # a class body runs at import
        self._scope(node, node.name, False)

    def visit_If(self, node):
        if _is_type_checking(node.test):
            tc, self.tc = self.tc, True
            for n in node.body:
                self.visit(n)
            self.tc = tc
            for n in node.orelse:
                self.visit(n)
        else:
            self.generic_visit(node)

    def visit_Import(self, node):
        for a in node.names:  # import a.b.c binds a (to a); import a.b.c as x binds x to a.b.c
            top = a.name.split(".")[0]
            self._use(node, a.name, binds=(a.asname, a.name) if a.asname else (top, top))

    def visit_ImportFrom(self, node):
        if node.level:
            base = self.mod.name.split(".")
            base = base if self.mod.is_pkg else base[:-1]
            base = base[:len(base) - (node.level - 1)]
            src = ".".join(base + ([node.module] if node.module else []))
        else:
            src = node.module
        for a in node.names:
            if f"{src}.{a.name}" in self.known:  # from package import submodule
                self._use(node, f"{src}.{a.name}", binds=(a.asname or a.name, f"{src}.{a.name}"))
            else:
                self._use(node, src, name=a.name)

    def visit_Call(self, node):
        f = node.func
        fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if fname in ("kernel", "lazy_module") and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            self._use(node, f"fpsim.kernels.{node.args[0].value}", lazy=True)
        if fname in ("import_module", "__import__"):
            arg = node.args[0] if node.args else None
            name = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None
            if name is None or name.startswith(".") or _is_fpsim(name):  # ml_dtypes & co: fine
                self.calls.append((node.lineno, self.function))
        self.generic_visit(node)


def analyse(mods: dict):
    """``(uses, run-time imports of fpsim modules or of names not known before run time)``."""
    uses, calls = [], []
    for m in mods.values():
        c = _Collector(m, mods)
        c.visit(m.tree)
        uses += c.uses
        calls += [(m.path, line, fn) for line, fn in c.calls]
    return uses, calls


# ---------------------------------------------------------------------------------------
# The checkers: each returns a list of messages (empty: the rule holds)
# ---------------------------------------------------------------------------------------

def import_graph(mods: dict) -> dict:
    """``{(importer, imported): "path:line"}`` of the module-level imports between fpsim
    modules. Importing ``fpsim.a.b`` also runs the package ``fpsim.a`` (unless the importer
    is inside it, when that package is already running)."""
    uses, _ = analyse(mods)
    edges = {}  # (importer, imported) -> where
    for u in uses:
        if u.function or u.type_checking or u.lazy or not _is_fpsim(u.target):
            continue
        parts = u.target.split(".")
        for i in range(2, len(parts) + 1):
            t = ".".join(parts[:i])
            if t in mods and t != u.importer and (t == u.target or not _within(u.importer, t)):
                edges.setdefault((u.importer, t), u.where)
        if u.target == "fpsim" and u.importer != "fpsim":  # from fpsim import <name>
            edges.setdefault((u.importer, "fpsim"), u.where)
    return edges


def import_cycles(mods: dict) -> list:
    """Cycles of the module-level import graph, each with the lines that close it."""
    edges = import_graph(mods)
    graph = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
    found, seen, state, stack = [], set(), {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                cyc = stack[stack.index(m):] + [m]
                if frozenset(cyc) not in seen:
                    seen.add(frozenset(cyc))
                    found.append("import cycle: " + " -> ".join(
                        f"{edges[(a, b)]} imports {b}" for a, b in zip(cyc, cyc[1:])))
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def _private_use(importer: str, target: str, name, mods: dict):
    """Why ``importer`` may not use ``name`` of ``target`` (None when it may)."""
    full = f"{target}.{name}" if name else target
    parts = full.split(".")
    for i in range(1, len(parts)):
        if not _is_private(parts[i]):
            continue
        owner, here = ".".join(parts[:i]), ".".join(parts[:i + 1])
        if here not in mods:  # a name of module `owner` (shared with a package's submodules)
            pkg = owner in mods and mods[owner].is_pkg
            kernels = _within(owner, INTERNAL_PACKAGE) and _within(importer, INTERNAL_PACKAGE)
            if not (importer == owner or (pkg and _within(importer, owner)) or kernels):
                return f"uses {parts[i]} of {owner}"
        elif not (_within(importer, owner) or here in SHARED_PRIVATE_MODULES):
            return f"uses the private module {here} of {owner}"
    return None


def private_names(mods: dict) -> list:
    """Cross-module uses of underscore names."""
    uses, _ = analyse(mods)
    out = []
    bound = {}  # module -> {local name: fpsim module}
    for u in uses:
        if not _is_fpsim(u.target) or u.lazy:
            continue
        why = _private_use(u.importer, u.target, u.name, mods)
        if why:
            out.append(f"{u.where}: {u.importer} {why}")
        if u.binds and _is_fpsim(u.binds[1]):
            bound.setdefault(u.importer, {})[u.binds[0]] = u.binds[1]
    for m in mods.values():
        names = bound.get(m.name, {})

        def module_of(node):
            if isinstance(node, ast.Name):
                return names.get(node.id)
            if isinstance(node, ast.Attribute):
                base = module_of(node.value)
                if base and f"{base}.{node.attr}" in mods:
                    return f"{base}.{node.attr}"
            return None

        for node in ast.walk(m.tree):
            if isinstance(node, ast.Attribute) and _is_private(node.attr):
                base = module_of(node.value)
                why = base and _private_use(m.name, base, node.attr, mods)
                if why:
                    out.append(f"{m.path}:{node.lineno}: {m.name} {why} ({base}.{node.attr})")
    return out


def function_imports(mods: dict) -> list:
    """Imports of fpsim modules inside functions, and run-time imports by name."""
    uses, calls = analyse(mods)
    out = []
    for u in uses:
        if not u.function or u.lazy or not _is_fpsim(u.target):
            continue
        if (u.path, u.function) in FUNCTION_IMPORTS:
            continue
        if _within(u.target, "fpsim.torch") and any(_within(u.importer, a) for a in ABOVE_TORCH):
            continue  # torch is optional: the layers above the bridge load it on demand
        what = u.target + (f".{u.name}" if u.name else "")
        out.append(f"{u.where}: function-level import of {what} in {u.function}()")
    for path, line, fn in calls:
        if (path, fn) not in DYNAMIC_IMPORTS:
            out.append(f"{path}:{line}: a module imported by name at run time in {fn}() "
                       "(kernels load through fpsim.kernels._lazy)")
    return out


def long_modules(mods: dict) -> list:
    return [f"{m.path}:{m.nlines}: {m.nlines} lines (at most {MAX_LINES}; split it by concept)"
            for m in mods.values() if m.nlines > MAX_LINES and m.path not in LONG_MODULES]


def optional_dependencies(mods: dict) -> list:
    """torch only in the bridge (lazily above it), matplotlib only inside functions of the
    analysis and the report; no core module reaches a torch-importing fpsim module."""
    uses, _ = analyse(mods)
    out = []
    torchy = {"fpsim.torch"} | {m.name for m in mods.values() if m.path in TORCH_MODULES}
    for u in uses:
        top = u.target.split(".")[0]
        in_bridge = _within(u.importer, "fpsim.torch")
        above = any(_within(u.importer, a) for a in ABOVE_TORCH)
        if top == "torch" and not in_bridge and u.path not in TORCH_MODULES and \
                not (above and u.function):
            out.append(f"{u.where}: {u.importer} imports torch (only fpsim/torch/ does; the "
                       "layers above it inside functions)")
        if _is_fpsim(u.target) and not in_bridge and not (above and u.function) and \
                any(_within(u.target, t) for t in torchy) and u.target != u.importer:
            out.append(f"{u.where}: {u.importer} imports {u.target}, which imports torch")
        if top == "matplotlib" and (u.function is None or
                                    not any(_within(u.importer, a) for a in MATPLOTLIB_USERS)):
            out.append(f"{u.where}: {u.importer} imports matplotlib (only inside functions of "
                       f"{', '.join(MATPLOTLIB_USERS)})")
    return out


CHECKS = [import_cycles, private_names, function_imports, long_modules, optional_dependencies]


# ---------------------------------------------------------------------------------------
# The rules hold for fpsim
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fpsim_modules():
    mods = load(read_fpsim())
    assert {"fpsim", "fpsim.accum", "fpsim.kernels._lazy", "fpsim.torch.quantize"} <= set(mods)
    return mods


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_fpsim_follows_the_rule(check, fpsim_modules):
    problems = check(fpsim_modules)
    assert not problems, f"{check.__name__}:\n" + "\n".join(problems)


def test_allow_lists_name_what_exists(fpsim_modules):
    """An allow-list entry that matches nothing is stale: remove it."""
    paths = {m.path for m in fpsim_modules.values()}
    uses, calls = analyse(fpsim_modules)
    assert set(LONG_MODULES) <= paths and set(TORCH_MODULES) <= paths
    sites = {(u.path, u.function) for u in uses if u.function and _is_fpsim(u.target)}
    assert set(FUNCTION_IMPORTS) <= sites, set(FUNCTION_IMPORTS) - sites
    assert DYNAMIC_IMPORTS == {(p, fn) for p, _, fn in calls}


def test_the_checkers_see_the_real_imports(fpsim_modules):
    """The resolver reads what the code imports (so that an empty answer means something)."""
    uses, _ = analyse(fpsim_modules)
    got = {(u.importer, u.target, u.name) for u in uses}
    assert {("fpsim", "fpsim.accum", None),  # from . import accum
            ("fpsim.report", "fpsim", "__version__"),  # from . import __version__
            ("fpsim.torch.quantize", "fpsim.kernels.float_round_torch", "round_bits"),
            ("fpsim.block.engine", "fpsim.kernels._modes", None),  # from ..kernels import _modes
            ("fpsim.kernels.block_round", "fpsim.kernels.fast_round", "_fast_one")} <= got
    assert any(u.lazy and u.target == "fpsim.kernels.float_round" for u in uses)
    assert any(u.function and u.target == "torch" for u in uses)  # warmup's torch families
    edges = import_graph(fpsim_modules)
    assert {("fpsim.cli", "fpsim.report"), ("fpsim.hardware", "fpsim.accum"),
            ("fpsim.block.engine", "fpsim.lowering"), ("fpsim.torch.quantize", "fpsim.lowering")} \
        <= set(edges) and len(edges) > 150
    # every private module used outside its package is a listed one, and each listed is used
    outside = {u.target for u in uses if u.target in SHARED_PRIVATE_MODULES
               and not _within(u.importer, INTERNAL_PACKAGE)}
    assert outside == set(SHARED_PRIVATE_MODULES)


# ---------------------------------------------------------------------------------------
# Each checker fails on a synthetic violation
# ---------------------------------------------------------------------------------------

def _pkg(**files):
    return load({k.replace("__", "/").replace("/init", "/__init__") + ".py": v
                 for k, v in files.items()})


def test_synthetic_package_paths():
    mods = _pkg(fpsim__init="", fpsim__sub__init="", fpsim__sub__a="")
    assert set(mods) == {"fpsim", "fpsim.sub", "fpsim.sub.a"} and mods["fpsim.sub"].is_pkg


def test_cycle_is_found():
    mods = _pkg(fpsim__init="from . import a\n", fpsim__a="import numpy\nfrom .b import f\n",
                fpsim__b="from .a import g\n")
    (msg,) = import_cycles(mods)
    assert "fpsim/a.py:2 imports fpsim.b" in msg and "fpsim/b.py:1 imports fpsim.a" in msg


def test_cycle_through_a_package_init():
    # fpsim.x -> fpsim.p.q runs fpsim/p/__init__.py, which imports fpsim.x
    mods = _pkg(fpsim__init="", fpsim__x="from .p.q import f\n", fpsim__p__init="from ..x import g\n",
                fpsim__p__q="")
    assert import_cycles(mods) and "fpsim/p/__init__.py:1 imports fpsim.x" in import_cycles(mods)[0]
    # absolute spelling too
    mods = _pkg(fpsim__init="", fpsim__x="import fpsim.y as y\n", fpsim__y="from fpsim import x\n")
    assert import_cycles(mods)


def test_no_cycle_when_lazy_or_type_checking_or_inside_the_package():
    mods = _pkg(fpsim__init="from . import a\n",
                fpsim__a="def f():\n    from .b import g\n",
                fpsim__b="from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n"
                         "from . import c\n",
                fpsim__c="from .b import h\n" if False else "x = 1\n",
                fpsim__p__init="from .q import z\n", fpsim__p__q="from . import r\n", fpsim__p__r="")
    assert import_cycles(mods) == []
    # a submodule taking a name from its own package's __init__ that imports it: a cycle
    mods = _pkg(fpsim__init="", fpsim__p__init="from .q import z\nY = 1\n",
                fpsim__p__q="from . import Y\nz = Y\n")
    assert import_cycles(mods)


def test_private_names_are_found():
    mods = _pkg(fpsim__init="", fpsim__a="_x = 1\n__version__ = '1'\n",
                fpsim__b="from .a import _x, __version__\n",
                fpsim__c="from . import a\nimport fpsim.a as aa\nimport fpsim\n"
                         "y = a._x + aa._x + fpsim.a._x + a.__version__\n",
                fpsim__p__init="", fpsim__p___common="def f(): pass\n",
                fpsim__p__m="from ._common import f\nfrom . import _common\n",
                fpsim__d="from .p._common import f\nfrom .p import _common\n",
                fpsim__kernels__init="", fpsim__kernels___lazy="def kernel(): pass\n",
                fpsim__kernels___threads="", fpsim__kernels__fast="def _one(): pass\n",
                fpsim__kernels__block="from .fast import _one\nfrom . import _threads\n",
                fpsim__e="from .kernels._lazy import kernel\nfrom .kernels import _lazy\n",
                fpsim__f="from .kernels import _threads\nfrom .kernels.fast import _one\n")
    got = private_names(mods)
    assert "fpsim/b.py:1: fpsim.b uses _x of fpsim.a" in got
    assert sum(g.startswith("fpsim/c.py:4") for g in got) == 3  # a._x, aa._x, fpsim.a._x
    assert sum(g.startswith("fpsim/d.py") and "private module fpsim.p._common" in g
               for g in got) == 2
    assert "fpsim/f.py:1: fpsim.f uses the private module fpsim.kernels._threads of " \
        "fpsim.kernels" in got and "fpsim/f.py:2: fpsim.f uses _one of fpsim.kernels.fast" in got
    # own package; a shared kernels module; kernels among themselves; dunders
    assert not any(g.startswith(("fpsim/p/", "fpsim/e.py", "fpsim/kernels/")) for g in got)
    assert not any("__version__" in g for g in got)
    assert len(got) == 8


def test_function_level_imports_are_found():
    mods = _pkg(fpsim__init="", fpsim__a="import os\ndef f():\n    import numpy\n    from . import b\n",
                fpsim__b="class C:\n    def m(self):\n        import fpsim.a\n",
                fpsim__c="import importlib\ndef g():\n    return importlib.import_module('fpsim.a')\n",
                fpsim__analysis__init="", fpsim__analysis__x="def f():\n    import fpsim.torch\n",
                fpsim__torch__init="",
                fpsim__d="from .kernels._lazy import kernel\nk = kernel('float_round', 'q')\n",
                fpsim__e="import importlib\ndef h():\n    return importlib.import_module('ml_dtypes')\n")
    got = function_imports(mods)
    assert got == ["fpsim/a.py:4: function-level import of fpsim.b in f()",
                   "fpsim/b.py:3: function-level import of fpsim.a in C.m()",
                   "fpsim/c.py:3: a module imported by name at run time in g() "
                   "(kernels load through fpsim.kernels._lazy)"]


def test_long_module_is_found():
    mods = _pkg(fpsim__init="", fpsim__big="x = 1\n" * (MAX_LINES + 1), fpsim__ok="x = 1\n" * MAX_LINES)
    assert long_modules(mods) == [f"fpsim/big.py:{MAX_LINES + 1}: {MAX_LINES + 1} lines "
                                  f"(at most {MAX_LINES}; split it by concept)"]


def test_torch_and_matplotlib_are_found():
    mods = _pkg(fpsim__init="", fpsim__a="import torch.nn\n", fpsim__b="def f():\n    from torch import nn\n",
                fpsim__c="from .torch import quantize\n", fpsim__torch__init="import torch\n",
                fpsim__torch__quantize="import torch\n",
                fpsim__kernels__init="", fpsim__kernels__float_round_torch="import torch\n",
                fpsim__d="from .kernels.float_round_torch import round_bits\n",
                fpsim__e="from .kernels._lazy import lazy_module\nk = lazy_module('float_round_torch')\n",
                fpsim__analysis__init="", fpsim__analysis__f="import matplotlib\n",
                fpsim__analysis__g="def f():\n    import torch\n    from matplotlib.figure import Figure\n",
                fpsim__h="def f():\n    import matplotlib.pyplot\n")
    got = "\n".join(optional_dependencies(mods))
    for where in ("fpsim/a.py:1", "fpsim/b.py:2", "fpsim/c.py:1", "fpsim/d.py:1", "fpsim/e.py:2",
                  "fpsim/analysis/f.py:1", "fpsim/h.py:2"):
        assert where in got, where
    assert not any(line.startswith(("fpsim/torch/", "fpsim/kernels/", "fpsim/analysis/g.py"))
                   for line in got.splitlines())
