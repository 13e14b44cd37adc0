"""Block geometry and the windowed stages that make a block see what the whole image would give it."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cellpose.blockwise.blocks import (HALO_DIAMETERS, default_block_size, exact_percentiles, global_percentiles,
                                       halo_for, make_plan)
from cellpose.config import DynamicsOptions, TilingOptions
from cellpose.geometry import BlockGrid, block_starts, linear_source_span, tile_footprint, tiles_touching
from cellpose.inference.run_net import padded_grid, run_tiled
from cellpose.inference.window import plan_window, run_window
from cellpose.io.lazy import open_plane
from cellpose.preprocess.normalize import percentile_range, percentiles_f32
from cellpose.preprocess.resize import resize_image, resize_window


@pytest.mark.parametrize("shape,block,halo", [((1000, 1300), 256, 40), ((97, 64), 32, 50), ((5, 5), 8, 0)])
def test_cores_tile_the_image_exactly_and_regions_hold_them(shape, block, halo):
    grid = BlockGrid(shape, block, halo)
    owner = np.full(shape, -1)
    for k in range(grid.nblocks):
        y0, y1, x0, x1 = grid.core(k)
        assert (owner[y0:y1, x0:x1] == -1).all(), "cores overlap"
        owner[y0:y1, x0:x1] = k
        r = grid.region(k)
        assert r[0] <= y0 and r[1] >= y1 and r[2] <= x0 and r[3] >= x1
        assert r[0] == max(0, y0 - halo) and r[1] == min(shape[0], y1 + halo)
        assert grid.block_of(y0, x0) == k and grid.block_of(y1 - 1, x1 - 1) == k
        reach = {t for t in range(grid.nblocks) if _overlaps(grid.region(t), grid.core(k))}
        assert reach <= set(grid.neighbours(k))
    assert (owner >= 0).all()
    assert block_starts(shape[0], block)[-1] == shape[0]


def _overlaps(a, b) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


@pytest.mark.parametrize("src,dst", [(300, 349), (301, 259), (100, 200), (512, 595)])
def test_resize_window_equals_the_whole_image_resize_there(rng, src, dst):
    img = rng.random((src, src + 7), dtype=np.float32) * 100
    full = resize_image(img, Ly=dst, Lx=dst + 9)
    box = (dst // 5, dst - dst // 7, 3, dst + 9)
    sy = linear_source_span(box[0], box[1], src=src, dst=dst)
    sx = linear_source_span(box[2], box[3], src=src + 7, dst=dst + 9)
    window = img[sy[0]:sy[1], sx[0]:sx[1]]
    out = resize_window(window, origin=(sy[0], sx[0]), full_src=img.shape, full_dst=full.shape, box=box)
    ref = full[box[0]:box[1], box[2]:box[3]]
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-6 * np.abs(ref).max())
    with pytest.raises(ValueError, match="does not hold"):
        resize_window(window[1:], origin=(sy[0] + 1, sx[0]), full_src=img.shape, full_dst=full.shape, box=box)


def test_tiles_touching_a_box_are_exactly_those_whose_footprint_meets_it():
    tiling = TilingOptions()
    grid, offset = padded_grid(700, 900, tiling=tiling)
    box = (150, 420, 333, 334)
    ks = set(tiles_touching(grid, offset, (700, 900), box).tolist())
    for k in range(grid.ntiles):
        meets = _overlaps(tile_footprint(grid, offset, k, (700, 900)), box)
        assert meets == (k in ks)


def test_run_window_equals_the_whole_image_pass_over_its_target(rng):
    from cellpose.net.cpnet import random_cpnet

    net = random_cpnet(seed=3).eval()
    img = rng.random((420, 500, 2), dtype=np.float32)
    tiling = TilingOptions()
    full, _ = run_tiled(net, img, tiling=tiling)
    for target in [(100, 300, 250, 480), (0, 420, 0, 500), (410, 420, 0, 12)]:
        plan = plan_window(img.shape[:2], target, tiling=tiling)
        y0, y1, x0, x1 = plan.window
        out = run_window(net, img[y0:y1, x0:x1], plan)
        ref = full[:, target[0]:target[1], target[2]:target[3]]
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * np.abs(full).max())


def test_halo_and_block_size_come_from_the_diameter():
    assert halo_for(10) < halo_for(20) < halo_for(40)
    assert halo_for(15) >= HALO_DIAMETERS * 15
    assert default_block_size(15) % 256 == 0 and 1024 <= default_block_size(15) <= 4096
    with pytest.raises(ValueError, match="too small"):
        make_plan((5000, 5000), scale=1.0, block=64, diameter=30, lo=0, hi=1, niter=200,
                  tiling=TilingOptions(), dynamics=DynamicsOptions())


@pytest.mark.parametrize("shape", [(600, 700), (3400, 3350)])
def test_global_percentiles_are_evals_and_exact_ones_use_every_pixel(tmp_path, rng, shape):
    plane_data = rng.integers(0, 60000, size=shape, dtype=np.uint16)
    plane_data[: shape[0] // 3] //= 7
    path = tmp_path / "p.tif"
    tifffile.imwrite(path, plane_data[None], tile=(256, 256), metadata={"axes": "CYX"})
    plane = open_plane(path, chan=1)
    lo, hi = global_percentiles(plane)
    ref = percentile_range(plane_data.astype(np.float32), percentile=(1.0, 99.0))
    assert (lo, hi) == (ref[0], ref[1])
    exact = exact_percentiles(plane, rows=333)
    assert list(exact) == percentiles_f32(plane_data.astype(np.float32).ravel(), (1.0, 99.0))


def test_progress_is_a_bar_on_a_terminal_and_log_lines_otherwise(caplog):
    import io
    import logging
    import os

    from cellpose.progress import PROGRESS_LOGGER, Progress

    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with os.fdopen(slave, "w") as tty:
        bar = Progress(3, stream=tty)
        bar.update(cells=10)
        bar.update(cells=5, skipped=True)
        bar.close()
    import select

    chunks = []
    while select.select([master], [], [], 0.2)[0]:
        try:
            chunks.append(os.read(master, 4096))
        except OSError:
            break
    os.close(master)
    text = b"".join(chunks).decode(errors="replace")
    assert "2/3" in text and "cells=15" in text and "skipped=1" in text

    caplog.set_level(logging.INFO, logger=PROGRESS_LOGGER)
    plain = Progress(4, done=1, stream=io.StringIO(), interval=0.0)
    for _ in range(3):
        plain.update(cells=7)
    lines = [r.getMessage() for r in caplog.records if r.name == PROGRESS_LOGGER]
    assert lines[-1].startswith("blocks 4/4, 21 cells, 0 skipped, ETA")
    assert plain.eta() == 0


def test_local_workers_get_thread_counts_and_no_malloc_trim():
    from cellpose.blockwise.cluster import worker_environ, worker_threads

    env = worker_environ(2)
    assert "MALLOC_TRIM_THRESHOLD_" not in env
    assert env["OMP_NUM_THREADS"] == worker_threads(2) >= 1


def test_estimate_adds_openvino_memory_and_fast_dynamics_saves_time():
    import importlib

    from cellpose.variants import NetVariant

    est = importlib.import_module("cellpose.blockwise.estimate")  # the package exports the function by this name

    def plan(variant=None, impl="exact"):
        return make_plan((6000, 5000), scale=1.0, block=2048, diameter=17, lo=0, hi=1, niter=200,
                         tiling=TilingOptions(), dynamics=DynamicsOptions(impl=impl), variant=variant)

    exact = est.estimate(plan(), workers=2, threads=1)
    ov = est.estimate(plan(NetVariant(precision="bf16", backend="openvino")), workers=2, threads=1)
    torch_bf16 = est.estimate(plan(NetVariant(precision="bf16", backend="torch")), workers=2, threads=1)
    fast_dyn = est.estimate(plan(impl="fast"), workers=2, threads=1)
    assert ov.peak_worker_mb == pytest.approx(exact.peak_worker_mb + est.OPENVINO_MB)
    assert ov.peak_total_mb == pytest.approx(exact.peak_total_mb + 2 * est.OPENVINO_MB)
    assert torch_bf16.peak_worker_mb == pytest.approx(exact.peak_worker_mb)
    assert ov.seconds < torch_bf16.seconds < exact.seconds
    cuda_like = est.estimate(plan(NetVariant(precision="fp16", backend="torch")), workers=2, threads=1)
    assert cuda_like.seconds == pytest.approx(exact.seconds)  # not measured: exact's time, an upper bound
    assert est.network_speedup(NetVariant(precision="bf16", backend="torch", channels_last=True)) \
        > est.network_speedup(NetVariant(precision="bf16", backend="torch"))
    assert fast_dyn.seconds < exact.seconds and fast_dyn.peak_worker_mb == pytest.approx(exact.peak_worker_mb)


def test_label_chunk_is_a_block_wide_and_a_tiff_tile_row_tall():
    from cellpose.blockwise.segment import label_chunk
    from cellpose.io.pyramid import write_pyramid_ome_tiff
    import inspect
    tile_rows = inspect.signature(write_pyramid_ome_tiff).parameters["tile"].default[0]
    assert label_chunk(4096) == (tile_rows, 4096) == (512, 4096)
    assert label_chunk(3840) == (256, 3840) and label_chunk(1024) == (512, 1024)
    assert label_chunk(300) == (300, 300) and label_chunk(256) == (256, 256)
    for block in (256, 300, 768, 1024, 3840, 4096):
        rows, cols = label_chunk(block)
        assert block % rows == 0 and cols == block  # blocks stay chunk-aligned
