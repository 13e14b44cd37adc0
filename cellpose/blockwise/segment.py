"""``segment``: a slide of any size, block by block, in memory that does not grow with the slide.

Contract
--------
The result equals whole-image ``CellposeModel.eval`` on the same plane, up to label numbering, because

* normalisation uses the global percentiles that ``eval`` would use (the same pixel sample, read band by
  band; ``blocks.global_percentiles``), never per-block ones;
* each block runs the *whole image's* network tiles over its region (``inference.window``), so its flows
  equal the whole-image flows there; rescaling uses the whole image's sample positions
  (``preprocess.resize.resize_window``);
* the dynamics run on the block's region (core + halo, ``blocks.halo_for``) with the whole image's
  pixel count for ``max_size_fraction``;
* each object is kept by exactly one block, the one whose core holds its anchor (first pixel in raster
  order); labels become global by per-block counts and prefix-sum offsets (``stitch``).

Where it may still differ
-------------------------
* objects larger than ``HALO_DIAMETERS`` diameters can be cut at the halo edge (counted as ``cut`` in the
  block statistics and logged);
* rescaled images: the window resize agrees with OpenCV's to float32 rounding, not bit for bit; and the
  network's arithmetic can differ in the last bits with the batch composition; either can move a boundary
  pixel or, rarely, split/merge a marginal object;
* where two blocks see an object slightly differently, pixels claimed twice go to the home block's object;
* ``eval``'s ``styles`` output has no blockwise counterpart.

Outputs (next to the label store ``<stem>_cp_masks.ome.zarr``): ``<stem>_cp_masks.ome.tif`` (tiled pyramidal
OME-TIFF, uint32, zlib) and ``<stem>_cp_masks.csv`` (label, area, centroid, bbox). Each appears only when
complete. Finished blocks are recorded in ``<store>.work/`` until every output is in place, so a killed run
continues with ``resume=True`` and ends with byte-identical outputs.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..config import EvalOptions
from ..io.lazy import Plane, open_plane
from ..io.outputs import check_output_dir
from ..profiling import stage
from .blocks import BlockPlan, global_percentiles, make_plan
from .blocks import exact_percentiles as exact_percentiles_of
from ..progress import Progress
from .records import WorkFolder
from .stitch import assemble_chunk, label_offsets

__all__ = ["BlockwiseResult", "segment", "output_paths", "plan_for"]

logger = logging.getLogger(__name__)

_STORE_SUFFIX = "_cp_masks.ome.zarr"
#: Edge (pixels) of the central window that a diameter of 0 is estimated from.
SIZE_SAMPLE = 2048


@dataclass(frozen=True)
class BlockwiseResult:
    """Paths and numbers of a finished run."""

    store: Path
    tiff: Path
    table: Path
    cells: int
    blocks: list
    plan: BlockPlan
    wall_s: float = 0.0


def _stem(name: str) -> str:
    for ext in (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr", ".npy"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return os.path.splitext(name)[0]


def output_paths(source, out=None) -> dict:
    """``store``, ``tiff``, ``table`` and ``work`` paths for a source path (or an explicit store path)."""
    if out is None:
        if not isinstance(source, (str, os.PathLike)):
            raise ValueError("out= (the label store path) is required when the source is an array")
        src = Path(source)
        out = src.with_name(_stem(src.name) + _STORE_SUFFIX)
    store = Path(out)
    base = store.name[: -len(".ome.zarr")] if store.name.endswith(".ome.zarr") else _stem(store.name)
    return {"store": store, "tiff": store.with_name(base + ".ome.tif"), "table": store.with_name(base + ".csv"),
            "work": store.with_name(store.name + ".work")}


def plan_for(plane: Plane, model, *, options: EvalOptions, block_size: Optional[int] = None,
             exact_percentiles: bool = False, read_pixels: bool = True) -> BlockPlan:
    """The run's plan: scale and niter as ``eval`` derives them, halo, block size, global percentiles.

    ``exact_percentiles`` takes the percentiles of every pixel (streamed histogram, uint8/uint16) instead of
    the sample whole-image ``eval`` uses; ``read_pixels=False`` skips the percentile pass (lo, hi = 0, 1), for
    ``--estimate``, which reads no pixels.
    """
    if not options.resample:
        raise ValueError("blockwise segmentation needs resample=True (--no_resample is not supported)")
    if options.normalize.tile_norm_blocksize or options.normalize.lowhigh is not None:
        raise ValueError("blockwise segmentation supports percentile normalisation only")
    scale = model.rescale_for(options.diameter)
    diameter = float(model.diam_mean) / float(scale)
    niter = options.dynamics.niter or (200 if scale == 1.0 else _niter_for(scale))
    percentiles = exact_percentiles_of if exact_percentiles else global_percentiles
    lo, hi = np.float32(0), np.float32(1)
    if options.normalize.normalize and read_pixels:
        with stage("normalize.percentiles"):
            lo, hi = percentiles(plane, options.normalize.percentile)
    _, variant = model.resolve_variant()
    return make_plan(plane.shape, scale=scale, block=block_size, diameter=diameter, lo=lo, hi=hi, niter=niter,
                     tiling=options.tiling, dynamics=options.dynamics, variant=variant)


def _fixed_diameter(plane: Plane, model, options: EvalOptions) -> EvalOptions:
    """``options`` with ``diameter=0`` replaced by one estimate from the central sample window of the plane.

    Every block then uses that diameter (the halo depends on it). The window is at most
    ``SIZE_SAMPLE`` × ``SIZE_SAMPLE`` pixels, read lazily; it is normalised on its own percentiles, sized, then
    segmented at that size for the median diameter of its masks, as ``eval(diameter=0)`` does
    (``CellposeModel.resolve_diameter(refine=True)``): a plane no larger than the window gets ``eval``'s
    diameter.
    """
    if options.diameter != 0:
        return options
    (Ly, Lx), side = plane.shape, SIZE_SAMPLE
    y0, x0 = max(0, (Ly - side) // 2), max(0, (Lx - side) // 2)
    with stage("io.read.size_sample"):
        sample = plane.read((y0, min(Ly, y0 + side), x0, min(Lx, x0 + side)))
    options, _ = model.resolve_diameter(sample, replace(options, channels=(0, 0), channel_axis=None), refine=True)
    logger.info("%s: diameter for all blocks %.1f px (from the central %dx%d window)", plane.name,
                options.diameter or model.diam_labels, sample.shape[0], sample.shape[1])
    return options


def _niter_for(scale) -> int:
    from ..models import _niter_for as eval_niter

    return eval_niter(scale)


def _manifest(plane: Plane, plan: BlockPlan, model) -> dict:
    weights = Path(model.pretrained_model)
    return {"input": plane.fingerprint(), "plan": plan.settings(),
            "model": {"path": str(weights.resolve()), "size": weights.stat().st_size}}


def _run_blocks(todo, *, model, plane, plan, work: WorkFolder, client, progress: Progress) -> list:
    """Segment the blocks ``todo``; record each; return their statistics in completion order.

    ``client`` None, or a ``LazyClient`` with at most one block to do: here, with the loaded model.
    """
    if client is not None:
        from .cluster import LazyClient

        if isinstance(client, LazyClient):
            client = client.get() if len(todo) > 1 else None
    if client is None:
        from .worker import segment_block

        stats = []
        for k in todo:
            result = segment_block(model, plane, plan, k)
            work.save(result)
            stats.append(result.stats)
            progress.update(cells=result.n, skipped=result.stats["skipped"])
        return stats
    return _run_on_dask(todo, model=model, plane=plane, plan=plan, work=work, client=client, progress=progress)


def _run_on_dask(todo, *, model, plane, plan, work, client, progress) -> list:
    from distributed import as_completed

    from .cluster import ModelPlugin, ModelSpec, block_task, worker_threads

    nworkers = max(1, len(client.scheduler_info().get("workers", {})))
    spec = ModelSpec(str(model.pretrained_model), str(model.device), worker_threads(nworkers),
                     tuple(sorted(model.variant_settings.items())))
    client.register_plugin(ModelPlugin(spec), name=ModelPlugin.name)
    concurrency = min(nworkers, len(todo)) if client.cluster is not None else 0
    futures = [client.submit(block_task, plane, plan, k, str(work.path), concurrency, pure=False) for k in todo]
    stats = []
    for fut in as_completed(futures):
        s = fut.result()
        stats.append(s)
        progress.update(cells=s["cells"], skipped=s["skipped"])
    return stats


def label_chunk(block: int) -> Tuple[int, int]:
    """Chunk shape of the label store for blocks of ``block`` px: a block wide and at most one TIFF tile row tall.

    Parameters
    ----------
    block : int
        Block core edge in pixels.

    Returns
    -------
    (rows, cols) : (int, int)
        ``cols = block``; ``rows`` = 512 (the pyramidal TIFF's tile height) when ``block`` is a multiple of 512,
        else 256 when it is a multiple of 256 (every default block size is), else ``block``.

    Notes
    -----
    Blocks stay chunk-aligned (no read-modify-write). With 512 or 256 rows the TIFF writer decodes every chunk
    once while holding one row of tiles, however wide the slide; a ``block`` that is not a multiple of 256
    keeps whole-block chunks, which a wide slide decodes once per tile row they span.
    """
    rows = next((r for r in (512, 256) if block % r == 0), block)
    return rows, block


def _write_store(tmp: Path, plan: BlockPlan, work: WorkFolder, offsets) -> list:
    """Level 0 block by block (``label_chunk`` chunks), then the pyramid; returns the opened levels."""
    from ..io.ngff import build_pyramid, create_label_store, open_label_level

    grid = plan.grid
    level0 = create_label_store(tmp, shape=plan.shape, chunk=label_chunk(plan.block), overwrite=True)
    for t in range(grid.nblocks):
        y0, y1, x0, x1 = grid.core(t)
        level0[y0:y1, x0:x1] = assemble_chunk(t, grid=grid, offsets=offsets, piece=work.piece)
    return [open_label_level(tmp, k) for k in range(len(build_pyramid(tmp)))]


def _replace_dir(tmp: Path, final: Path) -> None:
    """Put the finished folder ``tmp`` at ``final`` (an older ``final`` is moved aside, then removed)."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def _write_outputs(paths: dict, plan: BlockPlan, work: WorkFolder) -> int:
    from ..io.objects import object_table
    from ..io.pyramid import write_pyramid_ome_tiff

    offsets = label_offsets(work.count(k) for k in range(plan.grid.nblocks))
    tmp = paths["store"].with_name(paths["store"].name + ".partial")
    with stage("io.write.labels_zarr"):
        levels = _write_store(tmp, plan, work, offsets)
    with stage("io.write.labels_tiff"):
        write_pyramid_ome_tiff(levels, paths["tiff"])
    with stage("io.write.object_table"):
        object_table(levels[0], paths["table"], chunk=(plan.block, plan.block))
    _replace_dir(tmp, paths["store"])
    return int(offsets[-1])


def segment(source, model, *, chan: int = 1, block_size: Optional[int] = None, out=None, client=None,
            resume: bool = False, options: Optional[EvalOptions] = None, diameter: Optional[float] = None,
            progress: bool = True, keep_work: bool = False, exact_percentiles: bool = False) -> Path:
    """Segment one channel of a slide block by block; write OME-Zarr labels, a pyramidal OME-TIFF and a table.

    Parameters
    ----------
    source : str, os.PathLike, or array (Y, X) / (C, Y, X) (numpy, zarr, dask)
        TIFF/OME-TIFF file or zarr store; read lazily, one window at a time.
    model : CellposeModel
        The model (a Dask run rebuilds it once per worker from ``model.pretrained_model``).
    chan : int
        1-based channel to segment (0 for a single-channel source).
    block_size : int, optional
        Core edge in pixels; default ``blocks.default_block_size`` of the diameter.
    out : path-like, optional
        Label store path (``.ome.zarr``); default ``<stem>_cp_masks.ome.zarr`` next to a source file.
    client : distributed.Client or cluster.LazyClient, optional
        Run blocks on this cluster; None runs them here, one after the other. A ``LazyClient`` starts its
        cluster only when more than one block is to be done.
    resume : bool
        Continue an interrupted run (its work folder must match this input and these settings).
    options : EvalOptions, optional
        Normalisation, tiling and dynamics as for ``eval`` (channels are ignored: ``chan`` is used).
    diameter : float, optional
        Overrides ``options.diameter`` (0: estimated once from the central window of the plane).
    progress : bool
        Show a bar (terminal) or periodic log lines.
    keep_work : bool
        Keep the block records after success.
    exact_percentiles : bool
        Normalise with the percentiles of every pixel (uint8/uint16, streamed histogram) instead of the pixel
        sample whole-image ``eval`` uses (the default, which gives ``eval``'s answer).

    Returns
    -------
    store : pathlib.Path
        The OME-Zarr label store.
    """
    return run(source, model, chan=chan, block_size=block_size, out=out, client=client, resume=resume,
               options=options, diameter=diameter, progress=progress, keep_work=keep_work,
               exact_percentiles=exact_percentiles).store


def _prepare(source, model, *, chan, block_size, out, resume, options, diameter, exact_percentiles):
    options = options or EvalOptions()
    if diameter is not None:
        options = replace(options, diameter=diameter)
    plane = open_plane(source, chan=chan)
    paths = output_paths(source, out)
    check_output_dir(paths["store"].parent)
    options = _fixed_diameter(plane, model, options)
    plan = plan_for(plane, model, options=options, block_size=block_size, exact_percentiles=exact_percentiles)
    if plan.flat:
        logger.warning("%s: the plane is constant or all NaN after normalisation: no objects", plane.name)
    work = WorkFolder(paths["work"])
    work.start(_manifest(plane, plan, model), resume=resume)
    return plane, paths, plan, work


def run(source, model, *, chan: int = 1, block_size=None, out=None, client=None, resume=False, options=None,
        diameter=None, progress=True, keep_work=False, exact_percentiles=False) -> BlockwiseResult:
    """``segment`` returning a :class:`BlockwiseResult` (paths, cell count, per-block statistics, plan)."""
    t0 = time.perf_counter()
    plane, paths, plan, work = _prepare(source, model, chan=chan, block_size=block_size, out=out,
                                        resume=resume, options=options, diameter=diameter,
                                        exact_percentiles=exact_percentiles)
    done = work.done()
    todo = [k for k in range(plan.grid.nblocks) if k not in done]
    logger.info("%s: %d blocks of %d px (halo %d), %d to do", plane.name, plan.grid.nblocks, plan.block,
                plan.halo, len(todo))
    bar = Progress(plan.grid.nblocks, done=len(done), enabled=progress)
    bar.cells = sum(int(s.get("cells", 0)) for s in done.values())
    try:
        stats = list(done.values()) + _run_blocks(todo, model=model, plane=plane, plan=plan, work=work,
                                                  client=client, progress=bar)
    finally:
        bar.close()
    cells = _write_outputs(paths, plan, work)
    if not keep_work:
        work.remove()
    wall = time.perf_counter() - t0
    logger.info("%s: %d objects in %.1f s", plane.name, cells, wall)
    stats.sort(key=lambda s: s["block"])
    return BlockwiseResult(paths["store"], paths["tiff"], paths["table"], cells, stats, plan, wall)
