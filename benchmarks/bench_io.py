"""Benchmark: reading the nuclear channel of a multi-channel OME-TIFF: one plane vs the whole stack.

``pytest benchmarks/bench_io.py`` (12 × 1024 × 1024 by default; ``CPTB_BENCH_SIZE=3138,2509`` for the
exemplar size). Each read runs in a fresh child process (``CPTB_BENCH_REPEATS`` times, default 3), which
reports its own wall time and its high-water RSS (VmHWM) minus its RSS just before the read. Prints medians and ratios.
"""
from __future__ import annotations

import os
from pathlib import Path

from _common import bench_size, median, run_child, write_cycif

_CHILD = """
import sys, time
from cellpose.io import tiff
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
rss0 = status("VmRSS:")
t0 = time.perf_counter()
plane = tiff.read_channel(sys.argv[2], 0) if sys.argv[1] == "plane" else tiff.imread(sys.argv[2])[0].copy()
print(time.perf_counter() - t0, status("VmHWM:") - rss0)
"""


def run(workdir: Path, shape, repeats: int) -> dict:
    img = write_cycif(workdir / "cycif.ome.tif", shape)
    out = {}
    for mode in ("plane", "whole"):
        runs = [run_child(["-c", _CHILD, mode, str(img)]) for _ in range(repeats)]
        out[mode] = {"read_s": median([float(r["stdout"].split()[0]) for r in runs]),
                     "peak_rss_mb": median([r["peak_rss"] / 1e6 for r in runs]),
                     "extra_mb": median([float(r["stdout"].split()[1]) / 1e6 for r in runs])}
    return out


def test_read_one_channel_vs_whole(tmp_path):
    shape = bench_size((1024, 1024))
    res = run(tmp_path, shape, int(os.environ.get("CPTB_BENCH_REPEATS", "3")))
    p, w = res["plane"], res["whole"]
    print(f"12 x {shape[0]} x {shape[1]} uint16 OME-TIFF, channel 1: read_channel {p['read_s']:.3f} s, "
          f"peak RSS above the pre-read RSS {p['extra_mb']:.0f} MB; imread whole {w['read_s']:.3f} s, "
          f"{w['extra_mb']:.0f} MB; "
          f"time ratio whole/plane {w['read_s'] / p['read_s']:.1f}x")
    assert p["read_s"] > 0 and w["read_s"] > 0
