"""Shared helpers of the benchmarks: sizes, synthetic inputs, child processes with peak RSS."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import tifffile

from cellpose.data import make_image

__all__ = ["bench_size", "run_child", "write_cycif"]


def bench_size(default: Tuple[int, int]) -> Tuple[int, int]:
    """Image size (Y, X) from ``$CPTB_BENCH_SIZE`` ("3138,2509") or ``default``."""
    text = os.environ.get("CPTB_BENCH_SIZE")
    if not text:
        return default
    y, x = (int(v) for v in text.replace("x", ",").split(","))
    return y, x


def write_cycif(path: Path, shape: Tuple[int, int], *, nchan: int = 12, seed: int = 0) -> Path:
    """A (nchan, Y, X) uint16 OME-TIFF with DNA in channels 0, 4, 8, ... (tiled, zlib)."""
    if path.exists():
        return path
    img, labels = make_image((nchan,) + tuple(shape), seed=seed)
    tifffile.imwrite(path, img, ome=True, tile=(256, 256), compression="zlib", metadata={"axes": "CYX"})
    tifffile.imwrite(path.with_name(path.name.split(".")[0] + "_masks.tif"), labels, compression="zlib")
    return path


def run_child(args: Sequence[str], *, env=None) -> dict:
    """Run ``python args...`` in a child; return wall seconds, its own peak RSS (bytes, ``os.wait4``), output."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{args} failed:\n{stderr[-3000:]}")
    return {"wall_s": wall, "peak_rss": usage.ru_maxrss * 1024, "stdout": stdout, "stderr": stderr}


def median(values: List[float]) -> float:
    """Median of a non-empty list."""
    return float(np.median(np.asarray(values, dtype=float)))
