"""``Report``: the result of one profiled block, and the ``profile.json`` document of a run."""
from __future__ import annotations

import copy
import dataclasses
import datetime
import json
from functools import reduce
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence

from .schema import FORMAT, SCHEMA_VERSION
from .table import format_number, stage_table
from .trace import write_trace
from .tree import finish_merged, image_cells, image_pixels, merge_nodes, node_to_dict, top_level_coverage

__all__ = ["Report", "build_document", "jsonable", "summarize", "summary_text"]


def jsonable(value: Any) -> Any:
    """Convert options (dataclasses, tuples, paths, numpy scalars...) into JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and callable(value.item):
        return jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def _pixels_from_shape(shape: Optional[Sequence[int]]) -> Optional[int]:
    """Ly * Lx from an image shape: the product of its two largest axes (channel axes are small)."""
    if not shape:
        return None
    dims = sorted((int(s) for s in shape), reverse=True)
    return dims[0] * (dims[1] if len(dims) > 1 else 1)


class Report:
    """Result of one profiled block: the stage tree of one image (CLI) or one notebook block.

    Parameters
    ----------
    profiler : Profiler
        The profiler that records (or recorded) the block.
    path : str, optional
        Image path.
    shape : sequence of int, optional
        Image shape; B/px divides by the product of its two largest axes. Without it the ``pixels`` counter
        of ``eval`` (else ``io.read``) is used.
    options : any, optional
        Options of the run (a dataclass or dict), stored in ``profile.json``.
    """

    def __init__(self, profiler, *, path=None, shape=None, options=None):
        self.profiler = profiler
        self.path = None if path is None else str(path)
        self.shape = None if shape is None else [int(s) for s in shape]
        self.options = jsonable(options) if options is not None else {}
        self.line_profiler = None
        self.torch_profiler = None
        self.extra: dict = {}

    def set_extra(self, key: str, value) -> None:
        """Attach a JSON-able section (``"blockwise"``: per-block rows, estimate) to this image's record."""
        self.extra[str(key)] = jsonable(value)

    def set_shape(self, shape: Sequence[int]) -> None:
        """Record the image shape once it is known (inside the block)."""
        self.shape = [int(s) for s in shape]

    def _tree(self, pixels: Optional[int], cells: Optional[int]) -> dict:
        prof = self.profiler
        return node_to_dict(prof.root, total_ns=prof.total_wall_ns(), baseline=prof.baseline_rss, pixels=pixels,
                            cells=cells)

    def image_dict(self) -> dict:
        """The ``image`` object of ``profile.json`` for this block."""
        draft = self._tree(None, None)
        pixels = _pixels_from_shape(self.shape) or image_pixels(draft)
        cells = image_cells(draft)
        root = self._tree(pixels, cells)
        memory = root["memory"] or {}
        return {
            "label": self.profiler.label, "path": self.path, "shape": self.shape, "pixels": pixels,
            "cells": cells, "options": {**self.options, **jsonable(getattr(self.profiler, "annotations", {}))},
            "memory_mode": self.profiler.memory_mode,
            "wall_s": root["wall_s"], "cpu_s": root["cpu_s"], "coverage": top_level_coverage(root),
            "baseline_rss_bytes": self.profiler.baseline_rss, "peak_rss_bytes": memory.get("peak_rss_bytes"),
            "peak_b_per_px": memory.get("peak_b_per_px"), "stages": root, **self.extra,
        }

    def coverage(self) -> float:
        """Fraction of the block's wall time covered by its top-level stages."""
        return top_level_coverage(self._tree(None, None))

    def table(self) -> str:
        """Per-stage text table of this block, with a one-line header."""
        return image_text(self.image_dict())

    def to_json(self, *, environment: Optional[dict] = None) -> dict:
        """A complete ``profile.json`` document holding this block as its only image."""
        return build_document([self], environment=environment)

    def write_json(self, path) -> Path:
        """Write ``to_json()`` to ``path``."""
        return _dump(self.to_json(), path)

    def write_trace(self, path) -> Path:
        """Write the Chrome trace of this block to ``path``."""
        return write_trace(path, [self.profiler])

    def lines_report(self) -> Optional[str]:
        """line_profiler text of the ``lines`` stage given to ``profile()`` (None when not asked)."""
        return None if self.line_profiler is None else self.line_profiler.report()

    def torch_report(self) -> Optional[str]:
        """torch.profiler tables of the network stage when ``profile(torch=True)`` (else None)."""
        return None if self.torch_profiler is None else self.torch_profiler.report()


def image_text(image: dict) -> str:
    """Header line and stage table of one ``image`` object."""
    shape = "x".join(str(s) for s in image["shape"]) if image["shape"] else "?"
    px = image["pixels"]
    head = (f"profile of {image['path'] or image['label']}: shape {shape}, {px if px else '?'} px, "
            f"wall {image['wall_s']:.3f} s, CPU {image['cpu_s']:.3f} s, "
            f"peak RSS {format_number(_mb(image['peak_rss_bytes']), '{:.1f}')} MB "
            f"({format_number(image['peak_b_per_px'], '{:.1f}')} B/px above start), "
            f"top-level stages cover {100 * image['coverage']:.1f} % of the wall time")
    text = head + "\n" + stage_table(image["stages"])
    if image.get("blockwise"):
        text += "\n" + blockwise_text(image["blockwise"])
    return text


def blockwise_text(info: dict) -> str:
    """Per-block rows (time, peak RSS, cells, skipped) and the estimate next to the measured peak."""
    lines = [f"{'block':>6} {'wall s':>8} {'peak RSS MB':>12} {'cells':>8} {'skipped':>8} {'cut':>5}"]
    for row in info.get("blocks", []):
        lines.append(f"{row['block']:>6} {row['seconds']:>8.2f} {row['peak_rss_mb']:>12.1f} {row['cells']:>8} "
                     f"{'yes' if row['skipped'] else 'no':>8} {row.get('cut', 0):>5}")
    est = info.get("estimate")
    if est:
        lines.append(f"estimated peak RSS per worker {est['peak_worker_mb']:.0f} MB, measured "
                     f"{info.get('measured_peak_worker_mb', float('nan')):.0f} MB; estimated "
                     f"{est['seconds']:.0f} s, measured {info.get('wall_s', float('nan')):.0f} s")
    return "\n".join(lines)


def _mb(value: Optional[int]) -> Optional[float]:
    return None if value is None else value / 1e6


def _sum_known(values: Iterable[Optional[float]]) -> Optional[float]:
    values = list(values)
    return None if not values or any(v is None for v in values) else sum(values)


def summarize(images: List[dict]) -> dict:
    """The ``summary`` object: totals over ``images`` and their stage trees merged by path."""
    pixels = _sum_known(img["pixels"] for img in images)
    cells = _sum_known(img["cells"] for img in images)
    peaks = [img["peak_rss_bytes"] for img in images if img["peak_rss_bytes"] is not None]
    merged = None
    if images:
        merged = reduce(merge_nodes, [copy.deepcopy(img["stages"]) for img in images])
        merged = finish_merged(dict(merged, name="all images"), pixels=pixels, cells=cells)
    wall = sum(img["wall_s"] for img in images)
    return {"images": len(images), "wall_s": wall, "cpu_s": sum(img["cpu_s"] for img in images),
            "pixels": None if pixels is None else int(pixels),
            "px_per_s": pixels / wall if pixels and wall else None,
            "peak_rss_bytes": max(peaks) if peaks else None, "stages": merged}


def summary_text(summary: dict) -> str:
    """Run summary: totals line and the merged stage table."""
    px = summary["pixels"]
    rate = summary["px_per_s"]
    head = (f"run summary: {summary['images']} image(s), {px if px else '?'} px, wall {summary['wall_s']:.3f} s, "
            f"CPU {summary['cpu_s']:.3f} s, {format_number(rate, '{:.0f}')} px/s, "
            f"peak RSS {format_number(_mb(summary['peak_rss_bytes']), '{:.1f}')} MB")
    if summary["stages"] is None:
        return head
    return head + "\n" + stage_table(summary["stages"])


def build_document(reports: Sequence[Report], *, environment: Optional[dict] = None) -> dict:
    """The ``profile.json`` document of ``reports`` (see ``docs/profiling.md`` for the schema)."""
    if environment is None:
        from .environment import collect_environment

        environment = collect_environment()
    images = [r.image_dict() for r in reports]
    return {"format": FORMAT, "version": SCHEMA_VERSION,
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "environment": environment, "images": images, "summary": summarize(images)}


def _dump(doc: dict, path) -> Path:
    path = Path(path)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, allow_nan=False)
        fh.write("\n")
    return path
