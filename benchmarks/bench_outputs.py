"""Benchmark: the blockwise label outputs (OME-Zarr level 0, its pyramid, the object table, the pyramidal
OME-TIFF) for two chunk layouts of the label store: one chunk per block (``block × block``, the old layout)
against ``blockwise.segment.label_chunk`` (a block wide, one TIFF tile row tall).

``pytest benchmarks/bench_outputs.py -s`` writes a 2,048 × 6,000 label image in blocks of 1,024 (smoke size);
``CPTB_BENCH_SIZE=8192,26139 CPTB_BENCH_BLOCK=4096`` is the measurement of GUIDELINES §10 (two block rows at the
width of the ``wd`` slide). The labels are one generated block of nuclei repeated in every block position (so
label values repeat and the object table sees a few objects spread over the slide: its time compares the
layouts, not a real table). Prints seconds per output and the ratio; asserts that both layouts give the same
TIFF pixels.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import tifffile

from _common import bench_size
from cellpose.blockwise.segment import label_chunk
from cellpose.data.generator import make_image
from cellpose.io.ngff import build_pyramid, create_label_store, open_label_level
from cellpose.io.objects import object_table
from cellpose.io.pyramid import write_pyramid_ome_tiff


def _field(block: int) -> np.ndarray:
    _, labels = make_image((1, block, block), seed=5, diameter=(10, 25))
    return labels


def _outputs(folder: Path, shape, block: int, chunk, field) -> dict:
    times = {}
    t0 = time.perf_counter()
    level0 = create_label_store(folder / "labels.ome.zarr", shape=shape, chunk=chunk, overwrite=True)
    for y0 in range(0, shape[0], block):
        for x0 in range(0, shape[1], block):
            h, w = min(block, shape[0] - y0), min(block, shape[1] - x0)
            level0[y0:y0 + h, x0:x0 + w] = field[:h, :w]
    times["zarr_level0"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_levels = len(build_pyramid(folder / "labels.ome.zarr"))
    times["pyramid"] = time.perf_counter() - t0
    levels = [open_label_level(folder / "labels.ome.zarr", k) for k in range(n_levels)]
    t0 = time.perf_counter()
    object_table(levels[0], folder / "table.csv", chunk=(block, block))
    times["table"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_pyramid_ome_tiff(levels, folder / "labels.ome.tif")
    times["tiff"] = time.perf_counter() - t0
    return times


def test_label_outputs_chunk_layouts(tmp_path):
    shape = bench_size((2048, 6000))
    block = int(os.environ.get("CPTB_BENCH_BLOCK", "1024"))
    field = _field(block)
    layouts = {"block": (block, block), "label_chunk": label_chunk(block)}
    res = {}
    for name, chunk in layouts.items():
        (tmp_path / name).mkdir()
        res[name] = _outputs(tmp_path / name, shape, block, chunk, field)
        print(f"{shape[0]} x {shape[1]}, blocks of {block}, chunks {chunk}: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in res[name].items())
              + f"; all {sum(res[name].values()):.2f} s")
    old, new = sum(res["block"].values()), sum(res["label_chunk"].values())
    print(f"outputs block-chunk / label_chunk: {old / new:.2f}x")
    a = tifffile.imread(tmp_path / "block" / "labels.ome.tif")
    b = tifffile.imread(tmp_path / "label_chunk" / "labels.ome.tif")
    np.testing.assert_array_equal(a, b)
    assert a.max() > 0
