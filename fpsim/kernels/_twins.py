"""Serial and parallel twins of an element loop, generated from one body (cpfloat's style).

Why: every element-wise kernel exists twice, a plain loop for small arrays (no thread
start-up) and a ``prange`` loop for large ones. Written by hand, the two copies differ only
in ``range`` vs ``prange`` and can drift apart. Here the work on element ``i`` is written
once, as a plain function whose last statement returns an integer count (NaN errors), and
:func:`twins` writes both loops around its statements::

    def _quantize_one(i, xb, ob, p, seed):
        rnd = random_bits(seed, i) if p.mode == SR else np.uint64(0)
        o, e = round_bits(np.uint64(xb[i]), p, rnd)
        ob[i] = o
        return e

    quantize_serial, quantize_parallel = twins("quantize", _quantize_one, over="xb")

compiles, with ``njit(cache=True)``, the function

    def quantize_serial(xb, ob, p, seed):
        acc = 0
        for i in range(xb.size):
            rnd = random_bits(seed, i) if p.mode == SR else np.uint64(0)
            o, e = round_bits(np.uint64(xb[i]), p, rnd)
            ob[i] = o
            acc += e
        return acc

and ``quantize_parallel``, the same with ``prange``, with ``njit(cache=True,
parallel=True)``: the hand-written loops, statement for statement. The body's statements
are spliced in (its syntax tree), not called: an ``inline="always"`` body would make Numba
deep-copy the whole inlined kernel once more, which cost about 2 CPU seconds on the first
quantize. Results never depend on the thread count: each ``i`` is independent and the
count is an integer sum.

The loops run in the body's module (its globals, which must include ``prange``) and keep
the body's line numbers, so error messages point at the body. Numba's on-disk cache names
an entry after the function's file, qualified name and first line, and drops it when that
file's contents change: each twin has its own name (two entries, never a shared one) and
the body's file, so editing the body's module invalidates both twins, as it did the
hand-written loops.

>>> twins("x", len, over="a")
Traceback (most recent call last):
...
TypeError: twins() takes a plain Python function as the body, got builtin_function_or_method
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap

from numba import njit, prange

_TEMPLATE = """\
def {name}({args}):
    acc = 0
    for i in {loop}({over}.size):
        pass
    return acc
"""

_RESERVED = ("acc", "i")


def _returns(node):
    """The Return statements of ``node``'s own body (not those of nested functions)."""
    out = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(child, ast.Return):
            out.append(child)
        out += _returns(child)
    return out


def _parse_body(body):
    """(the body's FunctionDef with its file's line numbers, its parameter names)."""
    if not inspect.isfunction(body):
        raise TypeError("twins() takes a plain Python function as the body, got "
                        f"{type(body).__name__}")
    tree = ast.parse(textwrap.dedent(inspect.getsource(body)))
    ast.increment_lineno(tree, body.__code__.co_firstlineno - 1)
    fdef = tree.body[0]
    a = fdef.args
    params = [x.arg for x in a.args]
    if a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs or a.defaults:
        raise ValueError(f"the body {body.__name__} must take plain positional parameters")
    if not params or params[0] != "i":
        raise ValueError(f"the body {body.__name__} must take the element index i first, "
                         f"got ({', '.join(params)})")
    rets = _returns(fdef)
    if not (rets and rets[-1] is fdef.body[-1] and len(rets) == 1 and rets[0].value):
        raise ValueError(f"the body {body.__name__} must end with its only return statement, "
                         "which returns the element's count")
    names = {n.id for n in ast.walk(fdef) if isinstance(n, ast.Name)}
    stored = {n.id for n in ast.walk(fdef) if isinstance(n, ast.Name)
              and isinstance(n.ctx, ast.Store)}
    if "acc" in names or "i" in stored:
        raise ValueError(f"the body {body.__name__} may not use the name acc nor assign i "
                         "(the generated loop's own variables)")
    return fdef, params


def twins(stem: str, body, over: str):
    """``(stem_serial, stem_parallel)``: Numba kernels that run the statements of ``body``
    for every ``i`` in ``range(over.size)`` and return the sum of what it returns; they take
    the body's parameters after ``i`` (``over`` names one of them, an array).

    ``body`` is a module-level plain function ``body(i, ...)`` ending with its only
    ``return``; the module docstring has a worked example.

    >>> from fpsim.kernels import float_round
    >>> float_round.quantize_serial.__name__, float_round.quantize_parallel.__name__
    ('quantize_serial', 'quantize_parallel')
    """
    fdef, params = _parse_body(body)
    args = params[1:]
    if over not in args:
        raise ValueError(f"twins({stem!r}): over={over!r} is not a parameter of "
                         f"{body.__name__} {tuple(args)}")
    glb = vars(sys.modules[body.__module__])
    if glb.get("prange") is not prange:
        raise ValueError(f"{body.__module__} must import numba's prange (the parallel twin "
                         "of its loop uses it)")
    out = []
    for kind, loop in (("serial", "range"), ("parallel", "prange")):
        name = f"{stem}_{kind}"
        gen = ast.parse(_TEMPLATE.format(name=name, args=", ".join(args), loop=loop, over=over))
        for node in ast.walk(gen):  # the loop's own lines: the body's def line
            if "lineno" in node._attributes:
                node.lineno = node.end_lineno = fdef.lineno
        fn_def = gen.body[0]
        ret = fdef.body[-1]
        add = ast.AugAssign(target=ast.Name(id="acc", ctx=ast.Store()), op=ast.Add(),
                            value=ret.value)
        stmts = fdef.body[:-1]
        if stmts and isinstance(stmts[0], ast.Expr) and isinstance(stmts[0].value, ast.Constant):
            stmts = stmts[1:]  # the docstring
        fn_def.body[1].body = stmts + [ast.copy_location(add, ret)]
        ast.fix_missing_locations(gen)
        made = {}
        exec(compile(gen, inspect.getfile(body), "exec"), glb, made)  # noqa: S102 - ours
        fn = made[name]
        fn.__doc__ = (f"Parallel twin of {stem}_serial (identical results for any thread "
                      "count; generated by fpsim.kernels._twins)." if kind == "parallel" else
                      f"The loop of {body.__name__} over {over}, returning the sum of its "
                      f"results (generated by fpsim.kernels._twins). {inspect.getdoc(body) or ''}"
                      .strip())
        out.append(njit(cache=True, parallel=True)(fn) if kind == "parallel"
                   else njit(cache=True)(fn))
    return tuple(out)
