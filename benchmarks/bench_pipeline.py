"""Benchmark: where time and memory go in the exact pipeline, and what ``--profile`` costs.

``pytest benchmarks/bench_pipeline.py`` (1024 × 1024 by default; ``CPTB_BENCH_SIZE=3138,2509`` for the exemplar
size) writes a 12-channel CyCIF OME-TIFF, then runs ``python -m cellpose --image_path IMG --chan 1 --save_tif``
with the bundled model, alternating runs with and without ``--profile`` (``CPTB_BENCH_REPEATS`` pairs, default
2). It prints the profile table of the last profiled run and the median wall time of each variant with their
ratio (the overhead of profiling). Nothing about time is asserted.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from _common import bench_size, median, run_child, write_cycif


def _cli(img: Path, out: Path, *extra: str):
    return ["-m", "cellpose", "--image_path", str(img), "--chan", "1", "--save_tif", "--savedir", str(out),
            "--no_npy", *extra]


def run(workdir: Path, shape, repeats: int) -> dict:
    img = write_cycif(workdir / "cycif.ome.tif", shape)
    walls = {"off": [], "on": []}
    last = None
    for _ in range(repeats):
        walls["off"].append(run_child(_cli(img, workdir))["wall_s"])
        last = run_child(_cli(img, workdir, "--profile"))
        walls["on"].append(last["wall_s"])
    doc = json.loads((workdir / "profile.json").read_text())
    off, on = median(walls["off"]), median(walls["on"])
    return {"shape": list(shape), "walls": walls, "median_off_s": off, "median_on_s": on, "ratio_on_off": on / off,
            "table": last["stdout"], "profile": doc}


def test_pipeline_profile_and_overhead(tmp_path):
    shape = bench_size((1024, 1024))
    res = run(tmp_path, shape, int(os.environ.get("CPTB_BENCH_REPEATS", "2")))
    print(res["table"])
    print(f"image {shape[0]}x{shape[1]}: median wall without --profile {res['median_off_s']:.2f} s, "
          f"with --profile {res['median_on_s']:.2f} s, ratio {res['ratio_on_off']:.3f} "
          f"(runs: {res['walls']})")
    assert res["profile"]["images"], "profile.json has no image"
