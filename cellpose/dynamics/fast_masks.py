"""Mask assembly and size filters for ``impl="fast"``: the rules of ``masks.py``, without its slow parts.

``masks.get_masks`` and ``masks.fill_holes_and_remove_small_masks`` spend most of their time in
``np.bincount`` + ``np.isin`` over the whole label image (size filters) and in growing the seeds one after
the other. Here:

* label sizes are counted by one numba pass and labels are removed through a lookup table, in parallel rows;
* the region of every seed (``GROW_STEPS`` 3 × 3 dilations in its 11 × 11 window) is computed in parallel
  over seeds, then painted serially in the exact path's order (larger seeds last), so overlaps resolve alike;
* every foreground pixel looks up the label of its end bin in parallel rows.

The output is identical to the exact functions given the same input; none depends on the thread count.
"""
from __future__ import annotations

from typing import Optional

import numba
import numpy as np

from .fast import row_starts
from .flows import label_boxes
from .masks import GROW_MIN_COUNT, GROW_STEPS, PAD, _fill_holes, _histogram, _seeds, renumber, smallest_dtype

__all__ = ["fill_holes_and_remove_small_masks_fast", "get_masks_fast"]


@numba.njit(cache=True, nogil=True)
def _label_counts(masks, n):
    """Pixels per label value 0..n; (n + 1,) int64."""
    counts = np.zeros(n + 1, np.int64)
    for v in masks.ravel():
        counts[v] += 1
    return counts


@numba.njit(cache=True, nogil=True, parallel=True)
def drop_labels(masks, drop):
    """Zero, in place, the pixels whose label ``v`` has ``drop[v]`` (parallel over rows)."""
    for y in numba.prange(masks.shape[0]):
        for x in range(masks.shape[1]):
            if drop[masks[y, x]]:
                masks[y, x] = 0


def _drop_by_size(masks: np.ndarray, *, below: float = 0, above: Optional[float] = None) -> None:
    """Zero labels with fewer than ``below`` or more than ``above`` pixels (background is kept)."""
    counts = _label_counts(masks, int(masks.max()))
    drop = counts < below
    if above is not None:
        drop |= counts > above
    drop[0] = False
    if drop.any():
        drop_labels(masks, drop)


@numba.njit(cache=True, nogil=True)
def _grow_into(H, y, x, out):
    """``masks._grow`` on padded buffers, one separable 3 × 3 dilation per step restricted to the square the
    region can have reached (radius t at step t); writes the (11, 11) region into ``out``."""
    r = GROW_STEPS
    n = 2 * r + 3
    ok = np.zeros((n, n), np.bool_)
    for i in range(1, n - 1):
        for j in range(1, n - 1):
            ok[i, j] = H[y - r - 1 + i, x - r - 1 + j] > GROW_MIN_COUNT
    cur = np.zeros((n, n), np.bool_)
    nxt = np.zeros((n, n), np.bool_)
    tmp = np.zeros((n, n), np.bool_)
    cur[r + 1, r + 1] = True
    for t in range(1, r + 1):
        lo, hi = r + 1 - t, r + 2 + t
        for i in range(lo - 1, hi + 1):
            for j in range(lo, hi):
                tmp[i, j] = cur[i, j - 1] | cur[i, j] | cur[i, j + 1]
        for i in range(lo, hi):
            for j in range(lo, hi):
                nxt[i, j] = ok[i, j] & (tmp[i - 1, j] | tmp[i, j] | tmp[i + 1, j])
        cur, nxt = nxt, cur
    out[:, :] = cur[1:n - 1, 1:n - 1]


@numba.njit(cache=True, nogil=True, parallel=True)
def _regions(H, seeds):
    """Grown region of every seed; (n, 11, 11) bool."""
    n = 2 * GROW_STEPS + 1
    out = np.zeros((seeds.shape[0], n, n), np.bool_)
    for i in numba.prange(seeds.shape[0]):
        _grow_into(H, seeds[i, 0], seeds[i, 1], out[i])
    return out


@numba.njit(cache=True, nogil=True)
def _paint(grid, seeds, regions, order):
    """Zero ``grid``, then paint the region of seed ``order[k]`` with ``k + 1``, in order (later ones on top)."""
    grid[:] = 0
    r = GROW_STEPS
    for k in range(order.size):
        s = order[k]
        y, x = seeds[s, 0] - r, seeds[s, 1] - r
        for i in range(2 * r + 1):
            for j in range(2 * r + 1):
                if regions[s, i, j]:
                    grid[y + i, x + j] = k + 1


@numba.njit(cache=True, nogil=True, parallel=True)
def _lookup(grid, fg, p, starts, out):
    for y in numba.prange(fg.shape[0]):
        k = starts[y]
        for x in range(fg.shape[1]):
            if fg[y, x]:
                out[y, x] = grid[p[0, k] + PAD, p[1, k] + PAD]
                k += 1


def get_masks_fast(p: np.ndarray, fg: np.ndarray, *, max_size_fraction: float = 0.4,
                   image_pixels: Optional[int] = None) -> np.ndarray:
    """Label image from the converged positions of the foreground pixels; same output as ``masks.get_masks``.

    Parameters
    ----------
    p : ndarray (2, N) int32
        Final (y, x) of the foreground pixels, row-major.
    fg : ndarray (Ly, Lx) bool
        Foreground mask with N True pixels.
    max_size_fraction : float
        Masks with more than this fraction of ``image_pixels`` (default ``Ly * Lx``) are removed.
    image_pixels : int, optional

    Returns
    -------
    masks : ndarray (Ly, Lx) uint32
        Labels 1..n in order of first appearance in a raster scan (0 = background).
    """
    fg = np.ascontiguousarray(fg, dtype=np.bool_)
    H = _histogram(p, *fg.shape)
    seeds = _seeds(H)
    order = np.argsort(H[seeds[:, 0], seeds[:, 1]], kind="stable")
    regions = _regions(H, seeds)
    grid = H.view(np.uint32)  # the histogram's memory is reused for the label grid
    _paint(grid, seeds, regions, order)
    del H, regions
    masks = np.zeros(fg.shape, np.uint32)
    _lookup(grid, fg, p, row_starts(fg), masks)
    total = masks.size if image_pixels is None else int(image_pixels)
    _drop_by_size(masks, above=max_size_fraction * total)
    renumber(masks)
    return masks


def fill_holes_and_remove_small_masks_fast(masks: np.ndarray, *, min_size: int = 15,
                                           inplace: bool = False) -> np.ndarray:
    """``masks.fill_holes_and_remove_small_masks`` with the size filters done by ``_drop_by_size``.

    Parameters
    ----------
    masks : ndarray (Ly, Lx) unsigned int
        Label image; labels may have gaps. Modified only with ``inplace`` when it is C-contiguous uint32.
    min_size : int
        Minimum pixel count; ``<= 0`` only fills holes (labels kept as they are).
    inplace : bool
        Work on ``masks`` itself instead of a copy (saves one uint32 label image of memory).

    Returns
    -------
    masks : ndarray (Ly, Lx) uint16 or uint32
        Labels 1..n in raster first-appearance order (when ``min_size > 0``), uint16 when n <= 65535.
    """
    masks = np.ascontiguousarray(masks, dtype=np.uint32) if inplace else np.array(masks, dtype=np.uint32, order="C")
    if masks.ndim != 2:
        raise ValueError(f"masks must be 2D, got shape {masks.shape}")
    if masks.size == 0 or masks.max() == 0:
        return masks.astype(np.uint16)
    if min_size > 0:
        _drop_by_size(masks, below=min_size)
        renumber(masks)
    _fill_holes(masks, label_boxes(masks))
    if min_size > 0:
        _drop_by_size(masks, below=min_size)
        renumber(masks)
    return masks.astype(smallest_dtype(int(masks.max())), copy=False)
