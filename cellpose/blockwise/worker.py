"""Segment one block: read its window, normalise globally, run the whole-image tiles, follow flows, keep owned.

``segment_block`` is what a Dask task (or the serial loop) runs. Its result is a :class:`BlockResult`: the
block's owned objects, numbered ``1..n`` in the raster order of their anchors, cut into *pieces* by the cores
they fall in, so that the stitcher reads, for each output chunk, only the pieces that land in it.
"""
from __future__ import annotations

import logging
import os
import resource
import time
from dataclasses import dataclass, field
from typing import Dict, Tuple

import numba
import numpy as np

from ..dynamics import compute_masks
from ..geometry import Box, linear_source_span
from ..inference.window import plan_window, run_window
from ..preprocess.resize import resize_window
from ..profiling import stage
from .blocks import HALO_DIAMETERS, BlockPlan

__all__ = ["BlockResult", "segment_block", "owned_labels"]

logger = logging.getLogger(__name__)


@dataclass
class BlockResult:
    """What one block produced.

    Attributes
    ----------
    k : int
        Block index (row-major).
    n : int
        Number of objects the block owns (labels ``1..n``).
    pieces : dict
        ``{target block: (box, labels)}``: ``labels`` (h, w) uint32 local labels (0 = none) over ``box``
        (global ``(y0, y1, x0, x1)``, inside the target block's core).
    stats : dict
        ``seconds``, ``peak_rss_mb``, ``cells``, ``skipped``, ``cut`` (owned objects that reach the halo edge).
    """

    k: int
    n: int
    pieces: Dict[int, Tuple[Box, np.ndarray]] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


def network_target(plan: BlockPlan, region: Box) -> Box:
    """Network output pixels (scaled image) that the flows over an image region are resized from."""
    if not plan.rescaled:
        return region
    y0, y1, x0, x1 = region
    ry = linear_source_span(y0, y1, src=plan.scaled[0], dst=plan.shape[0])
    rx = linear_source_span(x0, x1, src=plan.scaled[1], dst=plan.shape[1])
    return ry[0], ry[1], rx[0], rx[1]


def _read_normalised(plane, plan: BlockPlan, box: Box) -> np.ndarray:
    """Image pixels of ``box`` as float32, normalised with the global percentiles (spec §2.2 arithmetic)."""
    with stage("io.read_block") as s:
        raw = plane.read(box)
        s.add(pixels=int(raw.size))
    with stage("normalize"):
        x = raw.astype(np.float32)
        if plan.flat:
            return np.zeros_like(x)
        x -= np.float32(plan.lo)
        x /= np.float32(plan.hi) - np.float32(plan.lo)
        np.nan_to_num(x, copy=False, nan=0.0)
        return x


def _network_input(plane, plan: BlockPlan, wplan) -> np.ndarray:
    """The (h, w, 2) float32 image of the tiles' window (rescaled when the plan rescales)."""
    wy0, wy1, wx0, wx1 = wplan.window
    if not plan.rescaled:
        img = _read_normalised(plane, plan, wplan.window)
    else:
        sy = linear_source_span(wy0, wy1, src=plan.shape[0], dst=plan.scaled[0])
        sx = linear_source_span(wx0, wx1, src=plan.shape[1], dst=plan.scaled[1])
        src = _read_normalised(plane, plan, (sy[0], sy[1], sx[0], sx[1]))
        if not (src > 0).any():
            return None
        with stage("resize"):
            img = resize_window(src, origin=(sy[0], sx[0]), full_src=plan.shape, full_dst=plan.scaled,
                                box=wplan.window)
    if not (img > 0).any():
        return None
    return np.stack([img, np.zeros_like(img)], axis=-1)


def _flows(model, plane, plan: BlockPlan, region: Box):
    """(dP (2, h, w), cellprob (h, w)) over ``region``, or None when the block's input is empty."""
    target = network_target(plan, region)
    wplan = plan_window(plan.scaled, target, tiling=plan.tiling)
    img = _network_input(plane, plan, wplan)
    if img is None:
        return None
    net = model.net if plan.variant is None else model.network_for(plan.variant)
    skip = bool(getattr(plan.variant, "skip_empty", False))
    y = run_window(net, img, wplan, batch_size=plan.tiling.batch_size, device=model.device, skip_empty=skip)
    del img
    if plan.rescaled:
        with stage("resize_back"):
            y = resize_window(y.transpose(1, 2, 0), origin=(target[0], target[2]), full_src=plan.scaled,
                              full_dst=plan.shape, box=region).transpose(2, 0, 1)
    return np.ascontiguousarray(y[:2]), np.ascontiguousarray(y[2])


def _masks(plan: BlockPlan, dP, cellprob) -> np.ndarray:
    dyn = plan.dynamics
    with stage("dynamics"):
        return compute_masks(dP, cellprob, niter=plan.niter, cellprob_threshold=dyn.cellprob_threshold,
                             flow_threshold=dyn.flow_threshold, min_size=dyn.min_size,
                             max_size_fraction=dyn.max_size_fraction, interp=dyn.interp,
                             image_pixels=int(plan.shape[0]) * int(plan.shape[1]), impl=dyn.impl,
                             chunk_rows=dyn.chunk_rows)


@numba.njit(cache=True, nogil=True)
def _first_pixels(masks, n):
    """Flat index of the first pixel (raster order) of labels 1..n; -1 for absent labels."""
    first = np.full(n + 1, -1, np.int64)
    flat = masks.ravel()
    for i in range(flat.size):
        v = flat[i]
        if v > 0 and first[v] < 0:
            first[v] = i
    return first


@numba.njit(cache=True, nogil=True)
def _edge_labels(masks, top, bottom, left, right, n):
    """Labels touching the region sides flagged True (sides inside the image, where objects may be cut)."""
    hit = np.zeros(n + 1, np.bool_)
    h, w = masks.shape
    for x in range(w):
        if top:
            hit[masks[0, x]] = True
        if bottom:
            hit[masks[h - 1, x]] = True
    for y in range(h):
        if left:
            hit[masks[y, 0]] = True
        if right:
            hit[masks[y, w - 1]] = True
    hit[0] = False
    return hit


def owned_labels(masks: np.ndarray, *, region: Box, core: Box, shape) -> Tuple[np.ndarray, int, int]:
    """Keep the objects anchored in ``core``; renumber them ``1..n`` in anchor raster order.

    Parameters
    ----------
    masks : ndarray (h, w) unsigned int
        Labels over ``region`` (global box).
    region, core : Box
        The block's region and core.
    shape : (int, int)
        Whole image size (a region side on the image border cannot cut an object).

    Returns
    -------
    owned : ndarray (h, w) uint32
        Owned objects only, labels ``1..n``.
    n : int
    cut : int
        Owned objects that touch a region side inside the image (larger than the halo allows).
    """
    n = int(masks.max()) if masks.size else 0
    first = _first_pixels(masks, n)
    ys, xs = np.divmod(first, masks.shape[1])
    ys, xs = ys + region[0], xs + region[2]
    keep = (first >= 0) & (ys >= core[0]) & (ys < core[1]) & (xs >= core[2]) & (xs < core[3])
    keep[0] = False
    lut = np.zeros(n + 1, np.uint32)
    order = np.flatnonzero(keep)
    order = order[np.argsort(first[order], kind="stable")]
    lut[order] = np.arange(1, order.size + 1, dtype=np.uint32)
    sides = (region[0] > 0, region[1] < shape[0], region[2] > 0, region[3] < shape[1])
    cut = int(np.count_nonzero(_edge_labels(masks, *sides, n) & keep))
    return lut[masks], int(order.size), cut


def _pieces(owned: np.ndarray, plan: BlockPlan, k: int, region: Box) -> dict:
    """Cut the owned labels by the cores of the blocks they fall in."""
    grid, pieces = plan.grid, {}
    for t in grid.neighbours(k):
        c = grid.core(t)
        box = (max(c[0], region[0]), min(c[1], region[1]), max(c[2], region[2]), min(c[3], region[3]))
        if box[0] >= box[1] or box[2] >= box[3]:
            continue
        part = owned[box[0] - region[0]: box[1] - region[0], box[2] - region[2]: box[3] - region[2]]
        if part.any():
            pieces[t] = (box, np.ascontiguousarray(part))
    return pieces


def segment_block(model, plane, plan: BlockPlan, k: int) -> BlockResult:
    """Segment block ``k`` of ``plane`` with ``model`` (a ``CellposeModel``) under ``plan``.

    Returns
    -------
    result : BlockResult
        ``stats["skipped"]`` is True when the block's normalised input is empty (no network pass).
    """
    t0 = time.perf_counter()
    grid = plan.grid
    region, core = grid.region(k), grid.core(k)
    with stage("block") as s:
        flows = None if plan.flat else _flows(model, plane, plan, region)
        if flows is None:
            result = BlockResult(k, 0, stats={"skipped": True, "cut": 0})
        else:
            masks = _masks(plan, *flows)
            del flows
            owned, n, cut = owned_labels(masks, region=region, core=core, shape=plan.shape)
            result = BlockResult(k, n, _pieces(owned, plan, k, region), {"skipped": False, "cut": cut})
        s.add(cells=result.n)
    if result.stats["cut"]:
        logger.warning("block %d: %d object(s) reach the halo edge (larger than %.1f diameters); they may be "
                       "cut", k, result.stats["cut"], HALO_DIAMETERS)
    result.stats.update(seconds=time.perf_counter() - t0, cells=result.n, block=int(k), pid=os.getpid(),
                        model_id=id(model),
                        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    return result
