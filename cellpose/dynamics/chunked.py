"""Row-chunked fast dynamics (``--dynamics_chunk ROWS``): bounded temporaries, the same masks as unchunked.

The fast path (``fast.py``, ``fast_masks.py``) holds three image-sized temporaries: the (Ly, Lx, 2) float32
field (8 B/px), the padded int32 histogram of end points and the label grid painted over it (4 B/px). Here
the image is processed in chunks of ``rows`` rows:

* **Integration.** A pixel moves at most ``max |dY / 5|`` rows per step (a bilinear blend never exceeds its
  corners), so the paths of the pixels that start in rows ``[r0, r1)`` stay inside ``[r0 - halo, r1 + halo]``
  with ``halo = ceil(niter * max |dY / 5|) + 2``. Each chunk fills only those rows of a fresh ``np.empty``
  field, so only they take physical memory (large arrays are fresh zero pages from the OS; below about 32 MB
  glibc may reuse heap memory, which bounds the field by that size instead). The arithmetic is unchanged, so
  end points are bit-identical to the unchunked fast path.
* **Seeds.** Pass 1 builds, per chunk, the histogram rows ``[r0 - 7, r1 + 7)`` (all end points are scanned,
  only those rows kept): enough for the 5 × 5 maximum test (±2) and the 11 × 11 growth (±5) of the seeds of
  rows ``[r0, r1)``, which therefore see exactly the global histogram. Seeds, their counts and grown regions
  are kept (121 B per seed).
* **Labels.** Seeds are ranked globally (stable by count, ties in raster order) exactly as unchunked, and
  seed ``order[k]`` labels its region ``k + 1``. So a cell cut by a chunk border has one label on both sides
  by construction: no label has to be stitched afterwards. Pass 2 paints, per chunk, the grid rows that its
  pixels end in with every seed whose region reaches them, in rank order, and looks the labels up.

Size filters, relabelling, flow QC and hole filling work on the finished label image, per mask, as in the
fast path. The masks are identical to ``impl="fast"`` unchunked (``tests/test_dynamics_fast.py``).
"""
from __future__ import annotations

from typing import Optional

import numba
import numpy as np

from .fast import field_rows, follow_rows, row_starts
from .fast_masks import _drop_by_size, _regions
from .masks import GROW_STEPS, PAD, SEED_RADIUS, _seeds, renumber

__all__ = ["follow_flows_chunked", "get_masks_chunked", "halo_rows"]

MARGIN = GROW_STEPS + SEED_RADIUS


@numba.njit(cache=True, nogil=True)
def _max_abs_dy(dP, fg):
    m = np.float32(0.0)
    for y in range(fg.shape[0]):
        for x in range(fg.shape[1]):
            if fg[y, x]:
                m = max(m, abs(dP[0, y, x] / np.float32(5.0)))
    return m


def halo_rows(dP: np.ndarray, fg: np.ndarray, niter: int) -> int:
    """Rows a path can travel in ``niter`` steps, plus 2 (the bilinear corner below and rounding).

    Parameters
    ----------
    dP : ndarray (2, Ly, Lx) float32
    fg : ndarray (Ly, Lx) bool
    niter : int
    """
    return int(np.ceil(int(niter) * float(_max_abs_dy(dP, fg)) * (1.0 + 1e-5))) + 2


def _chunks(Ly: int, rows: int):
    return [(r0, min(r0 + rows, Ly)) for r0 in range(0, Ly, rows)]


def follow_flows_chunked(dP: np.ndarray, fg: np.ndarray, *, niter: int, interp: bool = True,
                         rows: int) -> np.ndarray:
    """``fast.follow_flows_fast``, chunk by chunk of ``rows`` start rows; the same (2, N) int32 end points.

    Parameters
    ----------
    dP : ndarray (2, Ly, Lx) float32
    fg : ndarray (Ly, Lx) bool
    niter : int
    interp : bool
    rows : int
        Start rows per chunk (>= 1). The field of a chunk covers ``rows + 2 * halo_rows`` rows.

    Returns
    -------
    p : ndarray (2, N) int32
    """
    dP = np.ascontiguousarray(dP, dtype=np.float32)
    fg = np.ascontiguousarray(fg, dtype=np.bool_)
    starts = row_starts(fg)
    out = np.empty((2, int(starts[-1])), np.int32)
    halo = halo_rows(dP, fg, niter)
    Ly = fg.shape[0]
    for r0, r1 in _chunks(Ly, rows):
        if starts[r1] == starts[r0]:
            continue
        F = np.empty(fg.shape + (2,), np.float32)
        field_rows(dP, fg, max(0, r0 - halo), min(Ly, r1 + halo + 1), F)
        follow_rows(F, fg, starts, niter=niter, interp=interp, rows=(r0, r1), out=out)
        del F
    return out


@numba.njit(cache=True, nogil=True)
def _histogram_rows(p, Ly, Lx, R0, R1):
    """Rows ``R0 <= r < R1`` of ``masks._histogram(p, Ly, Lx)`` (padded coordinates)."""
    H = np.zeros((R1 - R0, Lx + 2 * PAD), np.int32)
    for k in range(p.shape[1]):
        y = min(max(p[0, k] + PAD, 0), Ly + PAD - 1)
        if R0 <= y < R1:
            H[y - R0, min(max(p[1, k] + PAD, 0), Lx + PAD - 1)] += 1
    return H


def _chunk_seeds(p: np.ndarray, shape, r0: int, r1: int):
    """Seeds of image rows [r0, r1) in padded coordinates (raster order), their counts and (n, 11, 11) regions."""
    R0, R1 = r0 + PAD - MARGIN, r1 + PAD + MARGIN
    H = _histogram_rows(p, shape[0], shape[1], R0, R1)
    seeds = _seeds(H)
    seeds = seeds[(seeds[:, 0] >= MARGIN) & (seeds[:, 0] < MARGIN + r1 - r0)]
    counts = H[seeds[:, 0], seeds[:, 1]]
    regions = _regions(H, seeds)
    seeds[:, 0] += R0
    return seeds, counts, regions


def _all_seeds(p: np.ndarray, shape, rows: int):
    parts = [_chunk_seeds(p, shape, r0, r1) for r0, r1 in _chunks(shape[0], rows)]
    seeds, counts, regions = (np.concatenate([part[i] for part in parts]) for i in range(3))
    return seeds, np.argsort(counts, kind="stable"), regions


@numba.njit(cache=True, nogil=True)
def _paint_rows(grid, G0, seeds, regions, order):
    """Rows ``G0 <= r < G0 + len(grid)`` of the unchunked label grid: every seed's region, in rank order."""
    r = GROW_STEPS
    G1 = G0 + grid.shape[0]
    for k in range(order.size):
        s = order[k]
        y, x = seeds[s, 0] - r, seeds[s, 1] - r
        if y + 2 * r < G0 or y >= G1:
            continue
        for i in range(max(0, G0 - y), min(2 * r + 1, G1 - y)):
            for j in range(2 * r + 1):
                if regions[s, i, j]:
                    grid[y + i - G0, x + j] = k + 1


@numba.njit(cache=True, nogil=True)
def _end_rows(p, k0, k1):
    lo, hi = p[0, k0], p[0, k0]
    for k in range(k0, k1):
        lo, hi = min(lo, p[0, k]), max(hi, p[0, k])
    return lo, hi


@numba.njit(cache=True, nogil=True, parallel=True)
def _lookup_rows(grid, G0, fg, p, starts, r0, r1, out):
    for y in numba.prange(r0, r1):
        k = starts[y]
        for x in range(fg.shape[1]):
            if fg[y, x]:
                out[y, x] = grid[p[0, k] + PAD - G0, p[1, k] + PAD]
                k += 1


def _label_chunk(masks, p, fg, starts, seeds, order, regions, r0: int, r1: int) -> None:
    """Write the labels of the foreground pixels of rows [r0, r1) into ``masks``."""
    k0, k1 = int(starts[r0]), int(starts[r1])
    if k0 == k1:
        return
    e0, e1 = _end_rows(p, k0, k1)
    grid = np.zeros((int(e1) - int(e0) + 1, fg.shape[1] + 2 * PAD), np.uint32)
    _paint_rows(grid, int(e0) + PAD, seeds, regions, order)
    _lookup_rows(grid, int(e0) + PAD, fg, p, starts, r0, r1, masks)


def get_masks_chunked(p: np.ndarray, fg: np.ndarray, *, rows: int, max_size_fraction: float = 0.4,
                      image_pixels: Optional[int] = None) -> np.ndarray:
    """``fast_masks.get_masks_fast`` with the histogram and label grid built ``rows`` rows at a time.

    Parameters
    ----------
    p : ndarray (2, N) int32
        Final (y, x) of the foreground pixels, row-major.
    fg : ndarray (Ly, Lx) bool
    rows : int
        Rows per chunk (>= 1).
    max_size_fraction : float
    image_pixels : int, optional

    Returns
    -------
    masks : ndarray (Ly, Lx) uint32
        Identical to ``get_masks_fast(p, fg, ...)``.
    """
    fg = np.ascontiguousarray(fg, dtype=np.bool_)
    seeds, order, regions = _all_seeds(p, fg.shape, rows)
    masks = np.zeros(fg.shape, np.uint32)
    starts = row_starts(fg)
    for r0, r1 in _chunks(fg.shape[0], rows):
        _label_chunk(masks, p, fg, starts, seeds, order, regions, r0, r1)
    total = masks.size if image_pixels is None else int(image_pixels)
    _drop_by_size(masks, above=max_size_fraction * total)
    renumber(masks)
    return masks
