"""The ``fpsim`` command line.

``fpsim formats [NAME ...]``  table of format properties
``fpsim values NAME``         every value of a format with its code
``fpsim report [--out DIR]``  fpsim's main job: writes a report folder
``fpsim warmup [--all | FAMILY ...] [--list]``  compile kernels ahead of time
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from .analysis.tables import format_table, to_markdown
from .formats import MAX_TABLE_BITS, parse
from .report import write_report
from .warmup import FAMILIES, warmup


def _cmd_formats(args) -> int:
    print(to_markdown(format_table(args.names or None)))
    return 0


def _cmd_values(args) -> int:
    fmt = parse(args.name)
    if fmt.kind == "block":  # list the element values, say what scales them
        print(f"# {fmt.name}: block format, {fmt.block} elements share one {fmt.scale.name} "
              f"scale; element values ({fmt.elem.name}) below, times the block scale "
              f"(fpsim values {fmt.scale.name} lists the scales)")
        fmt = fmt.elem
    elif fmt.kind == "scaled":  # same idea: one scale per tensor/channel/group
        per = f"group of {fmt.group}" if fmt.group else fmt.granularity
        print(f"# {fmt.name}: scaled format, one {fmt.scale.name} scale per {per}; element "
              f"values ({fmt.elem.name}) below, times the scale (fpsim values {fmt.scale.name} "
              "lists the scales)")
        fmt = fmt.elem
    if fmt.bits > MAX_TABLE_BITS:
        print(f"{fmt.name} has {fmt.bits} bits: too many values to list (at most {MAX_TABLE_BITS} bits)",
              file=sys.stderr)
        return 2
    codes = np.arange(2**fmt.bits, dtype=np.uint64)
    vals = fmt.code_table()  # NaN for NaN codes and for unused ones (codebooks, narrow ints)
    flushed = np.zeros(codes.size, dtype=bool)
    if fmt.subnormals is False:
        # subnormal codes of a format without subnormals: decode reads them as zero
        flushed = (vals == 0) & (fmt.replace(subnormals=True).code_table() != 0)
    width = (fmt.bits + 3) // 4
    print(f"# {fmt.name}: {fmt.bits} bits")
    if flushed.any():
        print(f"# {fmt.name} has no subnormals: its {int(flushed.sum())} subnormal codes are "
              "never produced and decode as zero (marked 'flushed')")
    print("code      bits" + " " * max(fmt.bits - 4, 0) + "  value")
    for c, v in zip(codes, vals):
        if np.isnan(v) and not fmt.has_nan:  # an unused code
            continue
        note = "  (flushed: subnormal code)" if flushed[c] else ""
        print(f"0x{int(c):0{width}x}  {int(c):0{fmt.bits}b}  {float(v)!r}{note}")
    return 0


def _cmd_report(args) -> int:
    if not (args.quick or args.no_warmup):
        # the README's first command: compile the common kernel families first (with a
        # progress bar; milliseconds when warm), so that they are warm afterwards
        warmup()
    path = write_report(args.out, quick=args.quick)
    print(f"report written to {path}")
    return 0


def _cmd_warmup(args) -> int:
    if args.list:
        for f in FAMILIES.values():
            tags = ", ".join(t for t, on in (("default", f.common), ("needs torch", f.torch)) if on)
            print(f"{f.name:18s} about {f.estimate:3.0f} s cold  {f.what}"
                  + (f" [{tags}]" if tags else ""))
        return 0
    if args.all and args.families:
        raise ValueError("give --all or family names, not both (fpsim warmup --list names them)")
    times = warmup("all" if args.all else (args.families or None), progress=not args.no_progress)
    total = sum(times.values())
    print(f"compiled {len(times)} kernel families in {total:.1f} s (cached for later runs)")
    return 0


def main(argv=None) -> int:
    """Entry point of the ``fpsim`` console script.

    >>> main(["formats", "e2m1"])  # doctest: +NORMALIZE_WHITESPACE
    | name | bits | max | min_normal | min_subnormal | eps | values | specials |
    |---|---|---|---|---|---|---|---|
    | e2m1 | 4 | 6 | 1 | 0.5 | 0.5 | 15 | -0 |
    0
    """
    ap = argparse.ArgumentParser(prog="fpsim", description="Emulate number formats and hardware arithmetic.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("formats", help="table of format properties")
    p.add_argument("names", nargs="*", help="format names (default: the well-known formats)")
    p.set_defaults(func=_cmd_formats)
    p = sub.add_parser("values", help="list every value of a format with its code")
    p.add_argument("name")
    p.set_defaults(func=_cmd_values)
    p = sub.add_parser("report", help="write fpsim's report: formats, rounding errors, accumulation "
                                      "models, tensor-core validation, reproducibility audit")
    p.add_argument("--out", default="fpsim-report", help="output folder (default: fpsim-report)")
    p.add_argument("--quick", action="store_true", help="small sizes: about a minute instead of a few "
                                                        "(and no warmup)")
    p.add_argument("--no-warmup", action="store_true",
                   help="do not compile the common kernel families first (fpsim warmup)")
    p.set_defaults(func=_cmd_report)
    p = sub.add_parser("warmup", help="compile fpsim's Numba kernels ahead of time (default: the "
                                      "families fpsim report uses)")
    p.add_argument("families", nargs="*", help="kernel families (fpsim warmup --list)")
    p.add_argument("--all", action="store_true", help="every family (torch ones if installed)")
    p.add_argument("--list", action="store_true", help="list the families and their cold times")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_warmup)
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as e:
        print(f"fpsim: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `fpsim values fp16 | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a path that cannot be written (a file in the way, no permission)
        where = f" {e.filename!r}" if e.filename else ""
        print(f"fpsim: error:{where} {e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
