"""Stage trees as plain JSON-ready dicts: conversion from ``StageNode``, merging, flattening.

Everything downstream (tables, ``profile.json``, ``compare``) works on these dicts, so a loaded ``profile.json``
and a live profiler print the same way.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Tuple

__all__ = ["finish_merged", "flatten", "image_cells", "image_pixels", "merge_nodes", "node_to_dict",
           "top_level_coverage"]

_NS = 1e-9
_MEMORY_MAX = ("peak_rss_bytes", "peak_above_entry_bytes", "peak_above_baseline_bytes", "peak_b_per_px",
               "peak_above_entry_b_per_px", "tracemalloc_peak_above_entry_bytes", "cuda_peak_bytes",
               "cuda_peak_above_entry_bytes")


def _ratio(num, den) -> Optional[float]:
    if num is None or not den:
        return None
    return float(num) / float(den)


def _memory_dict(node, *, baseline: Optional[int], pixels: Optional[int]) -> Optional[dict]:
    """Memory counters of ``node`` (bytes and bytes per input pixel), or None when nothing was measured."""
    if node.peak_rss is None and node.py_peak_above is None and node.cuda_peak is None:
        return None
    above_base = None if node.peak_rss is None or baseline is None else node.peak_rss - baseline
    return {
        "rss_before_bytes": node.rss_before,
        "rss_after_bytes": node.rss_after,
        "rss_delta_bytes": node.rss_delta if node.peak_rss is not None else None,
        "peak_rss_bytes": node.peak_rss,
        "peak_above_entry_bytes": node.peak_above_entry,
        "peak_above_baseline_bytes": above_base,
        "peak_b_per_px": _ratio(above_base, pixels),
        "peak_above_entry_b_per_px": _ratio(node.peak_above_entry, pixels),
        "tracemalloc_peak_above_entry_bytes": node.py_peak_above,
        "cuda_peak_bytes": node.cuda_peak,
        "cuda_peak_above_entry_bytes": node.cuda_peak_above,
    }


def _throughput(node: dict, pixels: Optional[int], cells: Optional[int]) -> None:
    wall = node["wall_s"]
    px = node["counters"].get("pixels", pixels)
    nc = node["counters"].get("cells", cells)
    node["px_per_s"] = _ratio(px, wall)
    node["cells_per_s"] = _ratio(nc, wall)


def node_to_dict(node, *, total_ns: int, baseline: Optional[int], pixels: Optional[int],
                 cells: Optional[int]) -> dict:
    """Return ``node`` and its descendants as a dict (the ``stage`` object of ``docs/profiling.md``).

    Parameters
    ----------
    node : StageNode
    total_ns : int
        Wall time of the root, the 100 % of ``pct_of_total``.
    baseline : int or None
        RSS at the start of the image (bytes), reference of ``peak_above_baseline_bytes`` and ``peak_b_per_px``.
    pixels, cells : int or None
        Input pixels (Ly * Lx) and cells of the image; B/px divides by ``pixels``.
    """
    out = {
        "name": node.name,
        "path": list(node.path),
        "calls": int(node.calls),
        "wall_s": node.wall_ns * _NS,
        "cpu_s": node.cpu_ns * _NS,
        "pct_of_total": 100.0 * node.wall_ns / total_ns if total_ns else 0.0,
        "counters": {k: _plain(v) for k, v in node.counters.items()},
        "memory": _memory_dict(node, baseline=baseline, pixels=pixels),
        "trace_events_dropped": int(node.dropped),
    }
    _throughput(out, pixels, cells)
    out["children"] = [node_to_dict(c, total_ns=total_ns, baseline=baseline, pixels=pixels, cells=cells)
                       for c in list(node.children.values())]
    return out


def _plain(value):
    """Counters as JSON numbers (ints stay ints)."""
    return int(value) if float(value).is_integer() else float(value)


def flatten(node: dict, depth: int = 0) -> Iterator[Tuple[int, dict]]:
    """Yield ``(depth, node)`` for the descendants of ``node`` depth first (the root itself excluded)."""
    for child in node["children"]:
        yield depth, child
        yield from flatten(child, depth + 1)


def top_level_coverage(root: dict) -> float:
    """Fraction of the root's wall time covered by its direct children."""
    if not root["wall_s"]:
        return 0.0
    return sum(c["wall_s"] for c in root["children"]) / root["wall_s"]


def _find(root: dict, name: str) -> List[dict]:
    return [n for _, n in flatten(root) if n["name"] == name]


def image_pixels(root: dict) -> Optional[int]:
    """Input pixels of an image from its tree: ``eval``'s (else ``io.read``'s) pixels counter per call."""
    for name in ("eval", "io.read"):
        for node in _find(root, name):
            px = node["counters"].get("pixels")
            if px and node["calls"]:
                return int(px // node["calls"])
    return None


def image_cells(root: dict) -> Optional[int]:
    """Cells found in an image: the ``cells`` counter of ``eval`` (summed over its calls)."""
    found = [n["counters"]["cells"] for n in _find(root, "eval") if "cells" in n["counters"]]
    return int(sum(found)) if found else None


def _merge_memory(a: Optional[dict], b: Optional[dict]) -> Optional[dict]:
    if a is None or b is None:
        return a if b is None else dict(b)
    out = dict(a)
    for key in _MEMORY_MAX:
        vals = [v for v in (a.get(key), b.get(key)) if v is not None]
        out[key] = max(vals) if vals else None
    deltas = [v for v in (a.get("rss_delta_bytes"), b.get("rss_delta_bytes")) if v is not None]
    out["rss_delta_bytes"] = sum(deltas) if deltas else None
    out["rss_after_bytes"] = b.get("rss_after_bytes")
    return out


def merge_nodes(a: dict, b: dict) -> dict:
    """Merge two trees of the same stage: calls, times and counters summed, memory peaks maxed.

    ``pct_of_total``, ``px_per_s`` and ``cells_per_s`` are recomputed by ``finish_merged``.
    """
    out = dict(a)
    out["calls"] = a["calls"] + b["calls"]
    out["wall_s"] = a["wall_s"] + b["wall_s"]
    out["cpu_s"] = a["cpu_s"] + b["cpu_s"]
    out["trace_events_dropped"] = a.get("trace_events_dropped", 0) + b.get("trace_events_dropped", 0)
    counters: Dict[str, float] = dict(a["counters"])
    for key, value in b["counters"].items():
        counters[key] = counters.get(key, 0) + value
    out["counters"] = counters
    out["memory"] = _merge_memory(a["memory"], b["memory"])
    children = {c["name"]: c for c in a["children"]}
    for child in b["children"]:
        children[child["name"]] = merge_nodes(children[child["name"]], child) if child["name"] in children else child
    out["children"] = list(children.values())
    return out


def finish_merged(root: dict, *, pixels: Optional[int], cells: Optional[int]) -> dict:
    """Recompute the relative figures of a merged tree in place and return it."""
    total = root["wall_s"]

    def visit(node: dict) -> None:
        node["pct_of_total"] = 100.0 * node["wall_s"] / total if total else 0.0
        _throughput(node, pixels, cells)
        for child in node["children"]:
            visit(child)

    visit(root)
    return root
