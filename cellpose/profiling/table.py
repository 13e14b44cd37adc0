"""Plain-text tables of stage trees (per image, run summary, comparison of two profiles)."""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

from .tree import flatten

__all__ = ["format_number", "render", "stage_table", "compare_table"]

_MB = 1e6


def format_number(value: Optional[float], fmt: str = "{:.3f}") -> str:
    """Format ``value`` with ``fmt``; ``-`` for None."""
    return "-" if value is None else fmt.format(value)


def _si(value: Optional[float]) -> str:
    """Compact rate: 1.23G, 45.6M, 789k, 12.3."""
    if value is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _mem(node: dict, key: str, scale: float = _MB, fmt: str = "{:.1f}") -> str:
    memory = node.get("memory") or {}
    value = memory.get(key)
    return format_number(None if value is None else value / scale, fmt)


def _has(nodes: Sequence[dict], key: str) -> bool:
    return any((n.get("memory") or {}).get(key) is not None for n in nodes)


def render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Align ``rows`` under ``header``: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = str(cells[0]).ljust(widths[0])
        rest = [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _columns(nodes: Sequence[dict]) -> List[Tuple[str, Callable[[dict], str]]]:
    cols: List[Tuple[str, Callable[[dict], str]]] = [
        ("calls", lambda n: str(n["calls"])),
        ("wall s", lambda n: format_number(n["wall_s"])),
        ("%", lambda n: format_number(n["pct_of_total"], "{:.1f}")),
        ("CPU s", lambda n: format_number(n["cpu_s"])),
        ("peak RSS MB", lambda n: _mem(n, "peak_rss_bytes")),
        ("+MB", lambda n: _mem(n, "peak_above_entry_bytes")),
        ("B/px", lambda n: _mem(n, "peak_b_per_px", 1.0)),
        ("px/s", lambda n: _si(n.get("px_per_s"))),
        ("cells/s", lambda n: _si(n.get("cells_per_s"))),
    ]
    if _has(nodes, "tracemalloc_peak_above_entry_bytes"):
        cols.append(("py +MB", lambda n: _mem(n, "tracemalloc_peak_above_entry_bytes")))
    if _has(nodes, "cuda_peak_bytes"):
        cols.append(("CUDA MB", lambda n: _mem(n, "cuda_peak_bytes")))
        cols.append(("CUDA +MB", lambda n: _mem(n, "cuda_peak_above_entry_bytes")))
    return cols


def stage_table(root: dict) -> str:
    """Table of ``root`` (the total row first) and all its stages, indented by nesting depth.

    Columns: calls, wall s, % of the total wall time, process CPU s, peak RSS MB (absolute), +MB (peak above the
    stage's entry RSS), B/px (peak above the image's start RSS per input pixel), px/s and cells/s (the stage's
    own counters, else the image's), then tracemalloc and CUDA peaks when measured.
    """
    rows_nodes = [(0, root)] + [(d + 1, n) for d, n in flatten(root)]
    cols = _columns([n for _, n in rows_nodes])
    rows = [["  " * depth + node["name"]] + [fn(node) for _, fn in cols] for depth, node in rows_nodes]
    return render(["stage"] + [name for name, _ in cols], rows)


def _by_path(root: dict) -> dict:
    return {tuple(node["path"]): node for _, node in flatten(root)}


def _ratio_text(a: Optional[float], b: Optional[float]) -> str:
    if a is None or b is None or a == 0:
        return "-"
    return f"{b / a:.2f}x"


def compare_table(root_a: dict, root_b: dict) -> str:
    """Per-stage ratios B/A of wall time, CPU time and peak RSS between two stage trees (matched by path)."""
    a_nodes, b_nodes = _by_path(root_a), _by_path(root_b)
    paths = list(a_nodes) + [p for p in b_nodes if p not in a_nodes]
    rows = [["total", format_number(root_a["wall_s"]), format_number(root_b["wall_s"]),
             _ratio_text(root_a["wall_s"], root_b["wall_s"]), _ratio_text(root_a["cpu_s"], root_b["cpu_s"]),
             _mem(root_a, "peak_rss_bytes"), _mem(root_b, "peak_rss_bytes"), _peak_ratio(root_a, root_b)]]
    for path in paths:
        a, b = a_nodes.get(path), b_nodes.get(path)
        rows.append(["  " * len(path) + path[-1],
                     format_number(a["wall_s"]) if a else "-", format_number(b["wall_s"]) if b else "-",
                     _ratio_text(a["wall_s"], b["wall_s"]) if a and b else "-",
                     _ratio_text(a["cpu_s"], b["cpu_s"]) if a and b else "-",
                     _mem(a, "peak_rss_bytes") if a else "-", _mem(b, "peak_rss_bytes") if b else "-",
                     _peak_ratio(a, b) if a and b else "-"])
    header = ["stage", "A wall s", "B wall s", "wall B/A", "CPU B/A", "A peak MB", "B peak MB", "peak B/A"]
    return render(header, rows)


def _peak_ratio(a: dict, b: dict) -> str:
    pa = (a.get("memory") or {}).get("peak_rss_bytes")
    pb = (b.get("memory") or {}).get("peak_rss_bytes")
    return _ratio_text(pa, pb)
