"""``compute_masks``: flows and cell probability → label image (spec §4), stage by stage."""
from __future__ import annotations

import contextlib
from functools import partial
from typing import Optional, Tuple

import numpy as np

from ..config import check_dynamics_chunk, check_dynamics_impl
from ..preprocess.resize import resize_masks
from ..profiling import annotate, stage
from .chunked import follow_flows_chunked, get_masks_chunked
from .fast import follow_flows_fast, thread_limit
from .fast_masks import fill_holes_and_remove_small_masks_fast, get_masks_fast
from .fast_qc import remove_bad_flow_masks_fast
from .integrate import follow_flows, foreground
from .masks import fill_holes_and_remove_small_masks, get_masks, smallest_dtype
from .qc import remove_bad_flow_masks

__all__ = ["compute_masks"]


def _check(dP: np.ndarray, cellprob: np.ndarray) -> None:
    if cellprob.ndim != 2:
        raise ValueError(f"cellprob must be 2D (Ly, Lx), got shape {cellprob.shape}")
    if dP.shape != (2,) + cellprob.shape:
        raise ValueError(f"dP must have shape (2, Ly, Lx) = {(2,) + cellprob.shape}, got {dP.shape}")


def _stages(impl: str, chunk_rows: int):
    """(follow, assemble, remove_bad, fill) functions of ``impl`` and ``chunk_rows``, which are recorded in the
    active profile (``dynamics_impl``, ``dynamics_chunk_rows`` in its ``options``)."""
    annotate("dynamics_impl", impl)
    annotate("dynamics_chunk_rows", chunk_rows)
    finish = (partial(remove_bad_flow_masks_fast, inplace=True),
              partial(fill_holes_and_remove_small_masks_fast, inplace=True))  # the masks are ours to change
    if chunk_rows > 0:
        return (partial(follow_flows_chunked, rows=chunk_rows), partial(get_masks_chunked, rows=chunk_rows)) + finish
    if impl == "fast":
        return (follow_flows_fast, get_masks_fast) + finish
    return follow_flows, get_masks, remove_bad_flow_masks, fill_holes_and_remove_small_masks


@contextlib.contextmanager
def _threads(impl: str, pixels: int):
    """Numba threads for ``impl`` (``fast.thread_limit``; exact is single-threaded), recorded in the active
    profile (``dynamics_threads`` in its ``options``)."""
    with thread_limit(pixels if impl == "fast" else 0) as threads:
        annotate("dynamics_threads", threads)
        yield


def compute_masks(dP: np.ndarray, cellprob: np.ndarray, *, niter: int = 200, cellprob_threshold: float = 0.0,
                  flow_threshold: Optional[float] = 0.4, min_size: int = 15, max_size_fraction: float = 0.4,
                  interp: bool = True, shape: Optional[Tuple[int, int]] = None,
                  image_pixels: Optional[int] = None, impl: str = "exact", chunk_rows: int = 0) -> np.ndarray:
    """Segment cells from the network's flows and cell probability.

    Parameters
    ----------
    dP : ndarray (2, Ly, Lx) float32
        Flows (dY, dX) as predicted (about 5 × unit vectors inside cells).
    cellprob : ndarray (Ly, Lx) float32
        Cell probability logits; pixels ``> cellprob_threshold`` are followed.
    niter : int
        Euler steps.
    cellprob_threshold, flow_threshold : float
        ``flow_threshold`` ``<= 0`` or None skips the flow-consistency check.
    min_size : int
        Masks with fewer pixels are removed, then holes are filled and labels made consecutive. ``<= 0``
        skips that whole step (no hole filling, labels left as they are), as upstream's compute_masks does.
    max_size_fraction : float
        Masks larger than this fraction of the image are removed.
    interp : bool
        Bilinear flow sampling (False: nearest, ``--no_interp``).
    shape : (int, int) or None
        Output size. When it differs from (Ly, Lx), labels are resized (nearest neighbour) before holes
        are filled and small masks removed, as upstream does with ``resample=False``.
    image_pixels : int, optional
        Pixel count that ``max_size_fraction`` refers to; default ``Ly * Lx``. Blockwise segmentation passes
        the whole slide's count so that a block removes the same masks as the whole image would.
    impl : {"exact", "fast"}
        ``"exact"``: upstream's arithmetic, single-threaded. ``"fast"``: float32 Euler integration fused per
        pixel, mask assembly and flow QC parallel over numba's threads (``fast.py``, ``fast_masks.py``,
        ``fast_qc.py``); the masks do not depend on the thread count. Another value raises ValueError.
    chunk_rows : int
        ``> 0`` needs ``impl="fast"``: integrate and assemble the masks this many rows at a time
        (``chunked.py``), bounding the field, histogram and label grid by a chunk plus its halo. The masks are
        identical to unchunked. 0 (default) = off.

    Returns
    -------
    masks : ndarray uint16 (uint32 when there are more than 65,535 masks)
        Labels 1..n, 0 = background.
    """
    follow, assemble, remove_bad, fill = _stages(check_dynamics_impl(impl), check_dynamics_chunk(chunk_rows, impl))
    dP = np.asarray(dP, dtype=np.float32)
    cellprob = np.asarray(cellprob, dtype=np.float32)
    _check(dP, cellprob)
    out_shape = tuple(shape) if shape is not None else cellprob.shape
    fg = foreground(cellprob, cellprob_threshold)
    n_fg = int(np.count_nonzero(fg))
    if n_fg == 0:
        return np.zeros(out_shape, np.uint16)
    with _threads(impl, n_fg):
        with stage("dynamics.follow_flows", pixels=n_fg, steps=int(niter) * n_fg):
            p = follow(dP, fg, niter=niter, interp=interp)
        with stage("dynamics.get_masks") as s:
            masks = assemble(p, fg, max_size_fraction=max_size_fraction, image_pixels=image_pixels)
            del p, fg
            s.add(cells=int(masks.max()))
        if flow_threshold is not None and flow_threshold > 0 and masks.max() > 0:
            with stage("dynamics.flow_qc", cells=int(masks.max())):
                masks = remove_bad(masks, dP, threshold=flow_threshold)
        if masks.shape != out_shape:
            with stage("dynamics.resize_masks"):
                masks = resize_masks(masks, Ly=out_shape[0], Lx=out_shape[1])
        if min_size <= 0:
            return masks.astype(smallest_dtype(int(masks.max())), copy=False)
        with stage("dynamics.fill_holes") as s:
            masks = fill(masks, min_size=min_size)
            s.add(cells=int(masks.max()))
        return masks
