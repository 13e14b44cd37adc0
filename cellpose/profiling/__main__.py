"""``python -m cellpose.profiling compare A.json B.json``, ``... validate FILE...``, ``... show FILE`` and
``... plot FILE... -o DIR`` (per-stage stacked bars; needs matplotlib)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from .report import summary_text
from .schema import validate
from .table import compare_table

__all__ = ["main"]


def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cellpose.profiling", description="cellpose-tb profile tools")
    sub = p.add_subparsers(dest="command", required=True)
    cmp_ = sub.add_parser("compare", help="ratio B/A of wall time, CPU time and peak RSS per stage")
    cmp_.add_argument("a", metavar="A.json")
    cmp_.add_argument("b", metavar="B.json")
    val = sub.add_parser("validate", help="check profile.json files against the documented schema")
    val.add_argument("files", nargs="+", metavar="FILE")
    show = sub.add_parser("show", help="print the run summary table of a profile.json")
    show.add_argument("file", metavar="FILE")
    plot = sub.add_parser("plot", help="per-stage stacked bars per image/variant (PNG; needs matplotlib)")
    plot.add_argument("files", nargs="+", metavar="FILE")
    plot.add_argument("-o", "--out", default=".", metavar="DIR", help="output folder (default: .)")
    return p


def _compare(a_path: str, b_path: str) -> int:
    a, b = _load(a_path), _load(b_path)
    for name, doc in (("A", a), ("B", b)):
        if doc.get("summary", {}).get("stages") is None:
            sys.stderr.write(f"{name} ({a_path if name == 'A' else b_path}) holds no stages\n")
            return 2
    sys.stdout.write(f"A = {a_path}\nB = {b_path}\n")
    sys.stdout.write(compare_table(a["summary"]["stages"], b["summary"]["stages"]) + "\n")
    return 0


def _validate(files: List[str]) -> int:
    status = 0
    for path in files:
        problems = validate(_load(path))
        sys.stdout.write(f"{path}: {'valid' if not problems else f'{len(problems)} problem(s)'}\n")
        for problem in problems:
            sys.stdout.write(f"  {problem}\n")
        status = status or (1 if problems else 0)
    return status


def _plot(files: List[str], out: str) -> int:
    from .plot import plot_profiles

    try:
        path = plot_profiles(files, out)
    except ImportError as err:
        sys.stderr.write(f"{err}\n")
        return 2
    sys.stdout.write(f"wrote {path}\n")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "compare":
        return _compare(args.a, args.b)
    if args.command == "validate":
        return _validate(args.files)
    if args.command == "plot":
        return _plot(args.files, args.out)
    sys.stdout.write(summary_text(_load(args.file)["summary"]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
