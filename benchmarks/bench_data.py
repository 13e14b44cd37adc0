"""Benchmark: write the ``lung`` preset (10,101 × 9,666) nuclear channel in bounded memory.

Run with ``pytest benchmarks/bench_data.py -s``.  The writer runs in a child process (one thread) whose peak
resident memory is read from ``os.wait4``'s rusage; it must stay within 1 GB.  Wall time is printed, not
asserted.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import tifffile

PEAK_LIMIT_BYTES = 1 << 30


def _run_child(out_dir):
    """Run the CLI in a single-threaded child; return (exit status, peak RSS bytes, wall seconds, output)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "cellpose.data", "make", "--preset", "lung", "--channels", "nuclear",
           "--out", str(out_dir)]
    with tempfile.TemporaryFile() as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        text = log.read().decode(errors="replace")
    return proc.returncode, usage.ru_maxrss * 1024, wall, text


def test_lung_nuclear_peak_memory(tmp_path):
    rc, peak, wall, err = _run_child(tmp_path)
    assert rc == 0, err[-4000:]
    image, labels = tmp_path / "lung_nuclear.ome.tif", tmp_path / "lung_nuclear_masks.tif"
    size_mb = (image.stat().st_size + labels.stat().st_size) / 1e6
    print(f"\nlung --channels nuclear (1 x 10101 x 9666): peak RSS {peak / 1e6:.0f} MB, wall {wall:.1f} s, "
          f"files {size_mb:.0f} MB")
    assert peak <= PEAK_LIMIT_BYTES, f"peak RSS {peak / 1e6:.0f} MB exceeds 1 GB"
    with tifffile.TiffFile(image) as tf:
        assert tf.series[0].shape == (10101, 9666) and tf.pages[0].is_tiled
    with tifffile.TiffFile(labels) as tf:
        assert tf.series[0].shape == (10101, 9666) and tf.series[0].dtype == "uint32"
