"""``python -m cellpose.profiling plot profile.json... -o DIR``: per-stage stacked bars per image and variant.

Needs matplotlib (optional: ``pip install 'cellpose-tb[bench]'`` or ``pip install matplotlib``); without it,
``require_pyplot`` raises an ``ImportError`` that says so. One bar per image of each ``profile.json`` given
(labelled with the image and the network variant that ran), stacked by stage: ``io.read``, the children of
``eval`` (convert, normalize, network, dynamics, ...), the ``io.write.*`` stages, and ``other`` (the rest of
the image's wall time).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

__all__ = ["image_segments", "plot_profiles", "require_pyplot"]

logger = logging.getLogger(__name__)

MATPLOTLIB_MISSING = ("plotting needs matplotlib, an optional dependency: pip install 'cellpose-tb[bench]' "
                      "(or pip install matplotlib)")


def require_pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend.

    Raises
    ------
    ImportError
        With an install hint, when matplotlib is not installed.
    """
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(MATPLOTLIB_MISSING) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_segments(image: dict) -> Dict[str, float]:
    """``{stage: wall s}`` of one image of ``profile.json``: eval expanded one level, plus ``other``."""
    root = image["stages"]
    out: Dict[str, float] = {}
    for child in root["children"]:
        parts = child["children"] if child["name"] == "eval" and child["children"] else [child]
        for part in parts:
            out[part["name"]] = out.get(part["name"], 0.0) + part["wall_s"]
    out["other"] = max(0.0, root["wall_s"] - sum(out.values()))
    return out


def _label(image: dict, source: str) -> str:
    variant = (image.get("options") or {}).get("network_variant") or {}
    tag = f" {variant.get('precision')}/{variant.get('backend')}" if variant else ""
    return f"{Path(source).parent.name or source}:{image['label']}{tag}"


def collect(paths: Sequence[str]) -> List[Tuple[str, Dict[str, float]]]:
    """(bar label, segments) for every image of every file."""
    bars = []
    for path in paths:
        doc = json.loads(Path(path).read_text())
        bars += [(_label(img, path), image_segments(img)) for img in doc.get("images", [])]
    return bars


def stacked_bars(ax, bars: List[Tuple[str, Dict[str, float]]], unit: str = "wall s") -> None:
    """Draw horizontal stacked bars, one per (label, {segment: value}), with a legend of the segments."""
    names = list(dict.fromkeys(k for _, seg in bars for k in seg))
    cmap = __import__("matplotlib").colormaps["tab20"]
    left = [0.0] * len(bars)
    for k, name in enumerate(names):
        widths = [seg.get(name, 0.0) for _, seg in bars]
        ax.barh(range(len(bars)), widths, left=left, color=cmap(k % 20), label=name)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(range(len(bars)), [label for label, _ in bars], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def plot_profiles(paths: Sequence[str], out_dir: str, name: str = "profile_stages.png") -> Path:
    """Write ``out_dir/name``: stacked per-stage bars of every image of ``paths``; return its path."""
    plt = require_pyplot()
    bars = collect(paths)
    if not bars:
        raise ValueError(f"no images in {', '.join(paths)}")
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.35 * len(bars)), dpi=90)
    stacked_bars(ax, bars)
    ax.set_title("wall time per stage", fontsize=9)
    fig.tight_layout()
    out = Path(out_dir) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    logger.info("wrote %s", out)
    return out
