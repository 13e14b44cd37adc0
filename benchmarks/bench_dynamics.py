"""Dynamics (flows → masks): ``impl="exact"`` against ``impl="fast"`` on noisy oracle flows, stage by stage.

Run with ``pytest benchmarks/bench_dynamics.py`` or ``.venv/bin/python benchmarks/bench_dynamics.py``.
The image is the synthetic ``exemplar``-like label image of ``cellpose.data.make_image`` at ``CPTB_BENCH_SIZE``
(default 1024,1024; the exemplar preset is ``3138,2509``). Its flows are ``5 * masks_to_flows(labels)`` plus
N(0, 0.5) noise (seed 0) and cellprob is +5 inside / -5 outside. ``compute_masks`` runs with its defaults
(niter 200, flow_threshold 0.4, min_size 15) once to warm up and then ``CPTB_BENCH_RUNS`` times (default 3)
per configuration, alternating, inside ``cellpose.profiling.profile(memory="off")``: exact, fast, and fast with
``chunk_rows=CPTB_BENCH_CHUNK`` (default 512; 0 leaves it out). The medians of the wall time of each profiling
stage are printed, with the CPU model, its flags, numba's thread count, the load and the agreement of the
results (cell counts, AP@0.9 of fast with exact as reference, chunked identical to fast). No timing is
asserted.
"""
from __future__ import annotations

import os
import platform
import statistics
import time

import numba
import numpy as np

from cellpose.data import make_image
from cellpose.dynamics import compute_masks, masks_to_flows
from cellpose.metrics import average_precision
from cellpose.profiling import profile
from cellpose.profiling.environment import cpu_model
from _common import bench_size

IMPLS = ("exact", "fast")
CHUNK_ROWS = int(os.environ.get("CPTB_BENCH_CHUNK", "512"))


def cpu_flags(path: str = "/proc/cpuinfo") -> str:
    """The ``flags`` line of the first CPU in ``/proc/cpuinfo`` ('' when unreadable)."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith("flags"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def oracle(size, *, seed: int = 0, noise: float = 0.5):
    """Labels (Y, X) uint32, dP (2, Y, X) float32 and cellprob (Y, X) float32 of a synthetic image."""
    _, labels = make_image((1,) + tuple(size), seed=seed)
    dP = (5 * masks_to_flows(labels)).astype(np.float32)
    dP += np.random.default_rng(seed).normal(0, noise, dP.shape).astype(np.float32)
    cellprob = np.where(labels > 0, 5.0, -5.0).astype(np.float32)
    return labels, dP, cellprob


def _stage_times(rep) -> dict:
    """{stage path: wall s} of one profiled block."""
    return {" > ".join(node.path): node.wall_ns / 1e9 for _, node in rep.profiler.root.walk()}


def _configs() -> dict:
    """Column name → ``compute_masks`` keywords: exact, fast and fast chunked by ``CPTB_BENCH_CHUNK`` rows."""
    out = {impl: {"impl": impl} for impl in IMPLS}
    if CHUNK_ROWS > 0:
        out[f"chunk{CHUNK_ROWS}"] = {"impl": "fast", "chunk_rows": CHUNK_ROWS}
    return out


def timed_run(dP, cellprob, config: dict):
    """Masks and {stage path: wall s} (plus ``total`` and its process CPU time) of one ``compute_masks`` call."""
    with profile(memory="off") as rep:
        t0, c0 = time.perf_counter(), time.process_time()
        masks = compute_masks(dP, cellprob, **config)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
    times = _stage_times(rep)
    times["total"], times["total (CPU s, all threads)"] = total, cpu
    return masks, times


def run_benchmark(size, *, runs: int = 3) -> dict:
    """Time both impls ``runs`` times (after one warm-up each); return medians, raw times and agreement."""
    labels, dP, cellprob = oracle(size)
    configs = _configs()
    masks = {name: timed_run(dP, cellprob, config)[0] for name, config in configs.items()}
    raw = {name: [] for name in configs}
    for _ in range(runs):
        for name, config in configs.items():
            raw[name].append(timed_run(dP, cellprob, config)[1])
    medians = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for name, rows in raw.items()}
    ap = average_precision(masks["exact"], masks["fast"], thresholds=(0.9,))["ap"][0]
    return {"size": list(size), "runs": runs, "labels": int(np.unique(labels).size - 1), "medians": medians,
            "raw": raw, "cells": {name: int(m.max()) for name, m in masks.items()}, "ap90_fast_vs_exact": float(ap),
            "chunked_identical": all(np.array_equal(m, masks["fast"]) for n, m in masks.items() if n not in IMPLS)}


def report_text(result: dict) -> str:
    """Table of median wall seconds per stage, exact and fast, with the environment."""
    med = result["medians"]
    lines = [f"image {result['size'][0]} x {result['size'][1]}, {result['labels']} labels; median of "
             f"{result['runs']} runs; numba threads {numba.get_num_threads()} "
             f"(NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'unset')}), load {os.getloadavg()}",
             f"cpu: {cpu_model()} ({os.cpu_count()} logical CPUs, {platform.machine()})",
             f"cpu flags: {cpu_flags()}", "",
             f"{'stage (median wall s)':<44}" + "".join(f"{name:>12}" for name in med) + f"{'exact/fast':>12}"]
    keys = list(dict.fromkeys(k for times in med.values() for k in times))
    for key in sorted(keys, key=lambda k: k.startswith("total")):
        e, f = med["exact"].get(key), med["fast"].get(key)
        cells = "".join(f"{'-' if times.get(key) is None else format(times[key], '.3f'):>12}" for times in med.values())
        lines.append(f"{key:<44}{cells}{f'{e / f:.1f}' if e and f else '-':>12}")
    lines.append(f"\ncells: {result['cells']}; AP@0.9 fast vs exact {result['ap90_fast_vs_exact']:.4f}; "
                 f"chunked masks identical to fast: {result['chunked_identical']}")
    return "\n".join(lines)


def test_bench_dynamics():
    """Print the comparison at ``CPTB_BENCH_SIZE`` (default 1024,1024); assert only that both impls ran."""
    result = run_benchmark(bench_size((1024, 1024)), runs=int(os.environ.get("CPTB_BENCH_RUNS", "3")))
    print("\n" + report_text(result))
    assert all(n > 0 for n in result["cells"].values())


if __name__ == "__main__":
    test_bench_dynamics()
