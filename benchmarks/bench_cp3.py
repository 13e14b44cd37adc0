"""asv benchmark class whose "variant" is upstream Cellpose 3 (cellpose 3.1.1.3 in ``.reference/venv``).

``setup_cache`` runs ``bench_upstream.run_benchmark`` once per size: our CLI and upstream's CLI, each in a fresh
process, on the same generated nuclear image with the same random CPnet weights (see ``bench_upstream.py``
for why random weights and which thresholds). The ``track_*`` methods report, per stage, upstream's and our
seconds and peak RSS from that run, upstream's mask count and the AP of our masks against upstream's (same
weights). Both sides are measured out of process, so this is the one class where the numbers come from
``setup_cache`` and not from a timed method. The tables of ``pytest benchmarks/`` show it as the ``cp3`` row,
its "vs exact" being upstream / ours from the same run.

Skipped, with a message, when ``.reference/venv`` is missing (``bash scripts/reference_env.sh`` makes it).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import _fixtures as fx
import bench_upstream as up

__all__ = ["UpstreamCP3"]

#: Our stage names -> rows of ``bench_upstream.compare`` summed into that stage.
STAGE_ROWS = {"read": ("read",), "normalize": ("convert", "normalize"), "network": ("network (tiling + avg)",),
              "dynamics": ("dynamics",), "write": ("write outputs",), "whole": ("total (process)",)}
MISSING = f"reference env missing ({up.REFERENCE_PYTHON}): run bash scripts/reference_env.sh"


def _stage(rows: list, names) -> dict:
    picked = [r for r in rows if r["stage"] in names]
    peak = (lambda key: max((r[key] or 0) for r in picked))  # noqa: E731 - short local accessor
    return {"cp3_s": sum(r["upstream_wall_s"] for r in picked), "ours_s": sum(r["ours_wall_s"] for r in picked),
            "cp3_rss": peak("upstream_peak_rss_bytes"), "ours_rss": peak("ours_peak_rss_bytes")}


def summarize(result: dict) -> dict:
    """The numbers the track methods need from one ``run_benchmark`` result.

    The ``whole`` peak RSS is the largest peak measured inside each child over its stages, not the ``wait4``
    peak of the child: a child started (vfork + exec) by a large parent, such as a pytest session that already
    ran other benchmarks, reports the parent's high-water mark there.
    """
    masks, rows = result["masks"], result["rows"]
    stages = {st: _stage(rows, names) for st, names in STAGE_ROWS.items()}
    inner = [r for r in rows if r["stage"] != "total (process)"]
    for side in ("cp3", "ours"):
        key = "upstream_peak_rss_bytes" if side == "cp3" else "ours_peak_rss_bytes"
        stages["whole"][f"{side}_rss"] = max((r[key] or 0) for r in inner)
    return {"stages": stages,
            "ap50": masks["ap"][0], "ap90": masks["ap"][2], "cells_cp3": masks["n_upstream"],
            "cells_ours": masks["n_ours"]}


class UpstreamCP3:
    """Upstream CP3 against ours, per stage: seconds, peak RSS, masks (random weights, same for both)."""

    params = (fx.sizes(), list(STAGE_ROWS))
    param_names = ("size", "stage")
    timeout = 3600

    def setup_cache(self):
        """Run both CLIs once per size (or record that the reference environment is missing)."""
        if not up.REFERENCE_PYTHON.exists():
            return {"missing": MISSING}
        out = {}
        for size in fx.sizes():
            with tempfile.TemporaryDirectory(prefix="cptb_cp3_") as tmp:
                out[size] = summarize(up.run_benchmark(fx.shape_of(size), Path(tmp)))
        return out

    def setup(self, cache, size, stage):
        """Skip (asv and pytest) when the reference environment is missing."""
        if "missing" in cache:
            raise NotImplementedError(cache["missing"])
        self.run, self.row = cache[size], cache[size]["stages"][stage]

    def track_cp3_seconds(self, cache, size, stage):
        """Upstream CP3 wall seconds of the stage."""
        return self.row["cp3_s"]

    track_cp3_seconds.unit = "seconds"

    def track_ours_seconds(self, cache, size, stage):
        """Our wall seconds of the stage, same run (exact path, same random weights)."""
        return self.row["ours_s"]

    track_ours_seconds.unit = "seconds"

    def track_cp3_peak_rss_mb(self, cache, size, stage):
        """Upstream's peak RSS during the stage (whole: the process), MB."""
        return self.row["cp3_rss"] / 1e6

    track_cp3_peak_rss_mb.unit = "MB"

    def track_ours_peak_rss_mb(self, cache, size, stage):
        """Our peak RSS during the stage (whole: the process), MB."""
        return self.row["ours_rss"] / 1e6

    track_ours_peak_rss_mb.unit = "MB"

    def track_ap50_ours_vs_cp3(self, cache, size, stage):
        """AP@0.5 of our masks with upstream's as the truth (same weights and thresholds)."""
        return self.run["ap50"]

    track_ap50_ours_vs_cp3.unit = "AP"

    def track_cells_cp3(self, cache, size, stage):
        """Upstream's mask count."""
        return self.run["cells_cp3"]

    track_cells_cp3.unit = "cells"
