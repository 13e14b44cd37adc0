"""Benchmark: writing ``_seg.npy``: its outlines, then the file.

``pytest benchmarks/bench_seg.py -s`` uses a 1,024² label image of generated nuclei; ``CPTB_BENCH_SIZE=3138,2509``
is the exemplar size of GUIDELINES §7. It times, in this process, best of ``CPTB_BENCH_REPEAT`` (default 3):

* outlines: ``masks_to_outlines`` (one compiled flood per bounding box) against one OpenCV external-contour
  trace per label (how upstream, and this package until 2026-11-30, found them);
* the file: ``save_seg_npy`` (pickle protocol 5, flows passed as views of one (3, Ly, Lx) array as ``eval``
  returns them) against ``np.save`` of the same dictionary (protocol 4).

Prints the CPU model and flags beside the numbers; asserts that both outline methods give the same pixels.
"""
from __future__ import annotations

import os
import time

import numpy as np
from scipy import ndimage

from _common import bench_size
from cellpose.data.generator import make_image
from cellpose.io import masks_to_outlines, outputs
from cellpose.profiling.environment import hardware, hardware_line


def opencv_outlines(masks: np.ndarray) -> np.ndarray:
    """One ``cv2.findContours`` (external, all points) per label on its bounding box."""
    out = np.zeros(masks.shape, bool)
    for label, box in enumerate(ndimage.find_objects(masks), start=1):
        if box is None:
            continue
        for xy in outputs._external_contours(masks[box] == label):
            out[xy[:, 1] + box[0].start, xy[:, 0] + box[1].start] = True
    return out


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _labels(shape) -> np.ndarray:
    """Generated nuclei (1,024² or smaller) repeated over ``shape``, each copy with its own label values."""
    tile = make_image((1, min(shape[0], 1024), min(shape[1], 1024)), seed=7, diameter=(12, 24))[1].astype(np.uint32)
    ty, tx = tile.shape
    out = np.zeros(shape, np.uint32)
    for k, (y0, x0) in enumerate((y, x) for y in range(0, shape[0], ty) for x in range(0, shape[1], tx)):
        part = tile[:shape[0] - y0, :shape[1] - x0]
        out[y0:y0 + ty, x0:x0 + tx] = np.where(part > 0, part + np.uint32(k * int(tile.max())), 0)
    return out


def test_seg_outputs(tmp_path):
    shape = bench_size((1024, 1024))
    repeats = int(os.environ.get("CPTB_BENCH_REPEAT", "3"))
    masks = _labels(shape)
    rng = np.random.default_rng(0)
    y = rng.normal(size=(3,) + shape).astype(np.float32)
    flows = [rng.integers(0, 255, shape + (3,), dtype=np.uint8), y[:2], y[2]]
    masks_to_outlines(masks[:64, :64])
    fast = _best(lambda: masks_to_outlines(masks), repeats)
    ref = _best(lambda: opencv_outlines(masks), repeats)
    assert np.array_equal(masks_to_outlines(masks), opencv_outlines(masks))
    views = outputs.build_seg("x.tif", masks=masks, flows=flows, diameter=20.0, channels=[0, 0])
    copies = [flows[0], flows[1].copy(), flows[2].copy()]
    build_views = _best(lambda: outputs.build_seg("x.tif", masks=masks, flows=flows, diameter=20.0,
                                                  channels=[0, 0]), repeats)
    build_copies = _best(lambda: outputs.build_seg("x.tif", masks=masks, flows=copies, diameter=20.0,
                                                   channels=[0, 0]), repeats)
    p5 = _best(lambda: outputs._save_pickled(tmp_path / "p5_seg.npy", views), repeats)
    p4 = _best(lambda: np.save(tmp_path / "p4_seg.npy", views, allow_pickle=True), repeats)
    print(f"\n{hardware_line(hardware())}")
    print(f"{shape[0]} x {shape[1]}, {int(masks.max())} labels (best of {repeats}): outlines {fast:.3f} s against "
          f"OpenCV per label {ref:.3f} s ({ref / fast:.1f}x); build_seg with eval's flow views {build_views:.3f} s, "
          f"with separate flow arrays {build_copies:.3f} s; file write protocol 5 {p5:.3f} s, np.save "
          f"(protocol 4) {p4:.3f} s")
    assert fast > 0 and ref > 0 and views["flows"][4] is y
