"""``compute_masks``: flows and cell probability → label image (spec §4), stage by stage."""
from __future__ import annotations

from typing import Optional, Tuple

import numba
import numpy as np

from ..config import check_dynamics_impl
from ..preprocess.resize import resize_masks
from ..profiling import annotate, stage
from .fast import follow_flows_fast
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


def _stages(impl: str):
    """(follow, assemble, remove_bad, fill) functions of ``impl``; records the impl and thread count in the
    active profile (``options.dynamics_impl``, ``options.dynamics_threads`` of ``profile.json``)."""
    annotate("dynamics_impl", impl)
    if impl == "fast":
        annotate("dynamics_threads", numba.get_num_threads())
        return follow_flows_fast, get_masks_fast, remove_bad_flow_masks_fast, fill_holes_and_remove_small_masks_fast
    annotate("dynamics_threads", 1)
    return follow_flows, get_masks, remove_bad_flow_masks, fill_holes_and_remove_small_masks


def compute_masks(dP: np.ndarray, cellprob: np.ndarray, *, niter: int = 200, cellprob_threshold: float = 0.0,
                  flow_threshold: Optional[float] = 0.4, min_size: int = 15, max_size_fraction: float = 0.4,
                  interp: bool = True, shape: Optional[Tuple[int, int]] = None,
                  image_pixels: Optional[int] = None, impl: str = "exact") -> np.ndarray:
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

    Returns
    -------
    masks : ndarray uint16 (uint32 when there are more than 65,535 masks)
        Labels 1..n, 0 = background.
    """
    follow, assemble, remove_bad, fill = _stages(check_dynamics_impl(impl))
    dP = np.asarray(dP, dtype=np.float32)
    cellprob = np.asarray(cellprob, dtype=np.float32)
    _check(dP, cellprob)
    out_shape = tuple(shape) if shape is not None else cellprob.shape
    fg = foreground(cellprob, cellprob_threshold)
    n_fg = int(np.count_nonzero(fg))
    if n_fg == 0:
        return np.zeros(out_shape, np.uint16)
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
