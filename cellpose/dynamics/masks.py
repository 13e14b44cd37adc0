"""Masks from converged pixel positions (spec §4.4) and the finishing steps (spec §4.6).

* ``get_masks``: histogram of final positions on a grid padded by ``PAD``; seeds are local maxima (5×5) with
  more than ``SEED_MIN_COUNT`` pixels; each seed grows ``GROW_STEPS`` 3×3 dilations inside its 11×11 window,
  restricted to bins with more than ``GROW_MIN_COUNT`` pixels; larger seeds are written last. Every
  foreground pixel takes the label of the bin it converged to.
* ``fill_holes_and_remove_small_masks``: size filter by true label value, hole filling per mask (4-connected
  background), size filter again, consecutive relabelling.
"""
from __future__ import annotations

from typing import Optional

import numba
import numpy as np

from .flows import label_boxes

__all__ = ["fill_holes_and_remove_small_masks", "get_masks", "remove_big_masks", "renumber", "smallest_dtype"]

PAD = 20
SEED_RADIUS = 2
SEED_MIN_COUNT = 10
GROW_STEPS = 5
GROW_MIN_COUNT = 2


def smallest_dtype(max_label: int) -> np.dtype:
    """uint16 when ``max_label`` fits (<= 65535), else uint32."""
    return np.dtype(np.uint16) if max_label <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


@numba.njit(cache=True, nogil=True)
def _histogram(p, Ly, Lx):
    H = np.zeros((Ly + 2 * PAD, Lx + 2 * PAD), np.int32)
    for k in range(p.shape[1]):
        y = min(max(p[0, k] + PAD, 0), Ly + PAD - 1)
        x = min(max(p[1, k] + PAD, 0), Lx + PAD - 1)
        H[y, x] += 1
    return H


@numba.njit(cache=True, nogil=True)
def _seeds(H):
    """Row-major (y, x) of bins above SEED_MIN_COUNT that equal the max of their clipped 5×5 window."""
    Hy, Hx = H.shape
    out = []
    for y in range(Hy):
        for x in range(Hx):
            v = H[y, x]
            if v <= SEED_MIN_COUNT:
                continue
            ok = True
            for yy in range(max(y - SEED_RADIUS, 0), min(y + SEED_RADIUS + 1, Hy)):
                for xx in range(max(x - SEED_RADIUS, 0), min(x + SEED_RADIUS + 1, Hx)):
                    if H[yy, xx] > v:
                        ok = False
            if ok:
                out.append((y, x))
    seeds = np.empty((len(out), 2), np.int64)
    for i in range(len(out)):
        seeds[i, 0] = out[i][0]
        seeds[i, 1] = out[i][1]
    return seeds


@numba.njit(cache=True, nogil=True)
def _grow(H, y, x):
    """Region grown from (y, x) inside its 11×11 window; returns a (11, 11) bool map."""
    r = GROW_STEPS
    n = 2 * r + 1
    win = H[y - r:y + r + 1, x - r:x + r + 1]
    cur = np.zeros((n, n), np.bool_)
    nxt = np.zeros((n, n), np.bool_)
    cur[r, r] = True
    for _ in range(GROW_STEPS):
        for i in range(n):
            for j in range(n):
                hit = False
                for di in range(max(i - 1, 0), min(i + 2, n)):
                    for dj in range(max(j - 1, 0), min(j + 2, n)):
                        hit = hit or cur[di, dj]
                nxt[i, j] = hit and win[i, j] > GROW_MIN_COUNT
        cur, nxt = nxt, cur
    return cur


@numba.njit(cache=True, nogil=True)
def _label_grid(H, seeds, order):
    grid = np.zeros(H.shape, np.uint32)
    r = GROW_STEPS
    for k in range(order.size):
        y, x = seeds[order[k], 0], seeds[order[k], 1]
        region = _grow(H, y, x)
        for i in range(2 * r + 1):
            for j in range(2 * r + 1):
                if region[i, j]:
                    grid[y - r + i, x - r + j] = k + 1
    return grid


@numba.njit(cache=True, nogil=True)
def _lookup(grid, fg, p, out):
    k = 0
    for y in range(fg.shape[0]):
        for x in range(fg.shape[1]):
            if fg[y, x]:
                out[y, x] = grid[p[0, k] + PAD, p[1, k] + PAD]
                k += 1


@numba.njit(cache=True, nogil=True)
def _renumber(masks, lut):
    n = 0
    for y in range(masks.shape[0]):
        for x in range(masks.shape[1]):
            v = masks[y, x]
            if v == 0:
                continue
            if lut[v] == 0:
                n += 1
                lut[v] = n
            masks[y, x] = lut[v]
    return n


def renumber(masks: np.ndarray) -> int:
    """Relabel in place to 1..n in order of first appearance in a raster scan; return n.

    Parameters
    ----------
    masks : ndarray (Ly, Lx) unsigned int, C-contiguous
    """
    if masks.size == 0:
        return 0
    lut = np.zeros(int(masks.max()) + 1, masks.dtype)
    return int(_renumber(masks, lut))


def _counts(masks: np.ndarray) -> np.ndarray:
    return np.bincount(masks.ravel(), minlength=int(masks.max()) + 1)


def remove_big_masks(masks: np.ndarray, *, max_size_fraction: float, image_pixels: Optional[int] = None) -> None:
    """Zero, in place, labels covering more than ``max_size_fraction`` of the image.

    ``image_pixels`` is the pixel count the fraction refers to (default ``masks.size``); a block of a larger
    image passes the whole image's count so that it removes the same masks as the whole image would.
    """
    counts = _counts(masks)
    total = masks.size if image_pixels is None else int(image_pixels)
    big = np.flatnonzero(counts > max_size_fraction * total)
    big = big[big > 0]
    if big.size:
        masks[np.isin(masks, big)] = 0


def get_masks(p: np.ndarray, fg: np.ndarray, *, max_size_fraction: float = 0.4,
              image_pixels: Optional[int] = None) -> np.ndarray:
    """Label image from the converged positions of the foreground pixels.

    Parameters
    ----------
    p : ndarray (2, N) int32
        Final (y, x) of the foreground pixels, row-major (``follow_flows``).
    fg : ndarray (Ly, Lx) bool
        Foreground mask with N True pixels.
    max_size_fraction : float
        Masks with more than this fraction of the image's pixels are removed.
    image_pixels : int, optional
        Pixel count of the whole image (default ``Ly * Lx``), for a block cut from a larger image.

    Returns
    -------
    masks : ndarray (Ly, Lx) uint32
        Labels 1..n in order of first appearance in a raster scan (0 = background).
    """
    Ly, Lx = fg.shape
    H = _histogram(p, Ly, Lx)
    seeds = _seeds(H)
    counts = H[seeds[:, 0], seeds[:, 1]] if seeds.size else np.zeros(0, np.int32)
    order = np.argsort(counts, kind="stable")
    grid = _label_grid(H, seeds, order)
    del H
    masks = np.zeros((Ly, Lx), np.uint32)
    _lookup(grid, fg, p, masks)
    del grid
    remove_big_masks(masks, max_size_fraction=max_size_fraction, image_pixels=image_pixels)
    renumber(masks)
    return masks


@numba.njit(cache=True, nogil=True)
def _fill_one(masks, label, box, seen, stack):
    """Fill the holes of ``label`` inside its box: background not 4-connected to the box border."""
    y0, y1, x0, x1 = box[0], box[1], box[2], box[3]
    h, w = y1 - y0, x1 - x0
    seen[:h, :w] = False
    top = 0
    for y in range(h):
        for x in range(w):
            border = y == 0 or x == 0 or y == h - 1 or x == w - 1
            if border and masks[y0 + y, x0 + x] != label:
                seen[y, x] = True
                stack[top, 0] = y
                stack[top, 1] = x
                top += 1
    while top > 0:
        top -= 1
        y, x = stack[top, 0], stack[top, 1]
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            yy, xx = y + dy, x + dx
            if 0 <= yy < h and 0 <= xx < w and not seen[yy, xx] and masks[y0 + yy, x0 + xx] != label:
                seen[yy, xx] = True
                stack[top, 0] = yy
                stack[top, 1] = xx
                top += 1
    for y in range(h):
        for x in range(w):
            if not seen[y, x]:
                masks[y0 + y, x0 + x] = label


@numba.njit(cache=True, nogil=True)
def _fill_holes(masks, boxes):
    hmax = 1
    wmax = 1
    for i in range(boxes.shape[0]):
        hmax = max(hmax, boxes[i, 1] - boxes[i, 0])
        wmax = max(wmax, boxes[i, 3] - boxes[i, 2])
    seen = np.zeros((hmax, wmax), np.bool_)
    stack = np.empty((hmax * wmax, 2), np.int64)
    for i in range(boxes.shape[0]):
        if boxes[i, 1] > 0:
            _fill_one(masks, i + 1, boxes[i], seen, stack)


def _remove_small(masks: np.ndarray, min_size: int) -> None:
    counts = _counts(masks)
    small = np.flatnonzero(counts < min_size)
    small = small[small > 0]
    if small.size:
        masks[np.isin(masks, small)] = 0


def fill_holes_and_remove_small_masks(masks: np.ndarray, *, min_size: int = 15) -> np.ndarray:
    """Remove masks below ``min_size`` pixels, fill holes in each mask, remove small ones again, relabel.

    Parameters
    ----------
    masks : ndarray (Ly, Lx) unsigned int
        Label image; labels may have gaps. Not modified.
    min_size : int
        Minimum pixel count; ``<= 0`` only fills holes (labels kept as they are).

    Returns
    -------
    masks : ndarray (Ly, Lx) uint16 or uint32
        Labels 1..n in raster first-appearance order (when ``min_size > 0``), uint16 when n <= 65535.
        Holes are 4-connected background regions not reaching the mask's bounding box; pixels of other
        masks enclosed by a mask are taken over by it (labels processed in increasing order).
    """
    masks = np.array(masks, dtype=np.uint32, copy=True, order="C")
    if masks.ndim != 2:
        raise ValueError(f"masks must be 2D, got shape {masks.shape}")
    if masks.size == 0 or masks.max() == 0:
        return masks.astype(np.uint16)
    if min_size > 0:
        _remove_small(masks, min_size)
        renumber(masks)
    _fill_holes(masks, label_boxes(masks))
    if min_size > 0:
        _remove_small(masks, min_size)
        renumber(masks)
    return masks.astype(smallest_dtype(int(masks.max())), copy=False)
