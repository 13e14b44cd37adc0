"""Fast Euler integration (``impl="fast"``): float32, fused per pixel, parallel over pixels.

The exact path (``integrate.py``) evaluates the bilinear blend in upstream's mixed float32/float64 order and
reads ``dP`` and the foreground mask at every corner. Here:

* the field ``F = float32(dP / 5)`` (0 off the foreground) is built once, interleaved as (Ly, Lx, 2) so one
  corner read brings both components;
* the blend is plain float32 with the same sampling semantics (corners ``int(p)`` and ``int(p) + 1`` clamped
  to the image, positions clamped to ``[0, L - 1]`` after each step);
* a pixel stops when a step leaves it exactly where it was (a fixed point, as the exact path) or when it
  comes back exactly to where it was two steps before: the map is deterministic, so it then alternates
  between two positions and the one reached after ``niter`` steps follows from the parity of the steps left;
* each thread works through its rows in ``LANES`` interleaved lanes (independent dependency chains that the
  CPU overlaps; a finished lane takes the next pixel);
* rows are spread over numba's threads (``numba.get_num_threads()``) in an interleaved order, and every
  pixel writes its result at its own precomputed index, so the output does not depend on the thread count.
  ``compute_masks`` runs the fast path inside ``thread_limit`` (fewer threads for small images).

Results can differ from the exact path in the last bits of a position (float32 blend), which moves a few
end points by one pixel; ``tests/test_dynamics_fast.py`` bounds the effect on the masks.
"""
from __future__ import annotations

import contextlib

import numba
import numpy as np

from ..profiling import stage
from ..threads import numba_threads
from .integrate import checked_flow_inputs

__all__ = ["field_rows", "follow_flows_fast", "follow_rows", "row_starts", "thread_limit"]

_FIVE = np.float32(5.0)
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
ROW_GROUPS_PER_THREAD = 16
#: foreground pixels per thread below which fewer threads are used: waking a thread costs more than it saves
#: on small images (a loaded 2-core machine measured 40-70 ms with 2 threads vs 31 ms with 1 at 384²)
MIN_PIXELS_PER_THREAD = 250_000
LANES = 4


@contextlib.contextmanager
def thread_limit(pixels: int):
    """Within the block, numba runs at most one thread per ``MIN_PIXELS_PER_THREAD`` foreground pixels (at
    least one, at most ``numba.get_num_threads()``, which follows ``NUMBA_NUM_THREADS`` and
    ``numba.set_num_threads``); yields that count. Results do not depend on it. Torch's thread count is left
    as it was (``cellpose.threads``)."""
    before = numba_threads()
    numba.set_num_threads(max(1, min(before, int(pixels) // MIN_PIXELS_PER_THREAD)))
    try:
        yield numba.get_num_threads()
    finally:
        numba.set_num_threads(before)


@numba.njit(cache=True, nogil=True, parallel=True)
def field_rows(dP, fg, lo, hi, F):
    """Fill rows ``lo <= y < hi`` of ``F`` (Ly, Lx, 2) float32 with ``dP / 5`` on the foreground, 0 elsewhere.

    Other rows are not touched: a fresh ``np.empty`` F then holds physical memory for these rows only."""
    Lx = fg.shape[1]
    for y in numba.prange(lo, hi):
        for x in range(Lx):
            if fg[y, x]:
                F[y, x, 0] = dP[0, y, x] / _FIVE
                F[y, x, 1] = dP[1, y, x] / _FIVE
            else:
                F[y, x, 0] = _ZERO
                F[y, x, 1] = _ZERO


@numba.njit(cache=True, nogil=True)
def row_starts(fg):
    """Index of the first foreground pixel of each row in row-major order; (Ly + 1,) int64."""
    Ly, Lx = fg.shape
    starts = np.zeros(Ly + 1, np.int64)
    for y in range(Ly):
        n = 0
        for x in range(Lx):
            n += fg[y, x]
        starts[y + 1] = starts[y] + n
    return starts


@numba.njit(cache=True, nogil=True, inline="always")
def _sample(F, py, px, interp):
    """Flow at (py, px): bilinear over clamped corners, or the value at the truncated position."""
    Ly, Lx = F.shape[0], F.shape[1]
    iy = int(py)
    ix = int(px)
    if not interp:
        return F[iy, ix, 0], F[iy, ix, 1]
    y1 = min(iy + 1, Ly - 1)
    x1 = min(ix + 1, Lx - 1)
    fy = py - np.float32(iy)
    fx = px - np.float32(ix)
    gy = _ONE - fy
    gx = _ONE - fx
    dy = (F[iy, ix, 0] * gx + F[iy, x1, 0] * fx) * gy + (F[y1, ix, 0] * gx + F[y1, x1, 0] * fx) * fy
    dx = (F[iy, ix, 1] * gx + F[iy, x1, 1] * fx) * gy + (F[y1, ix, 1] * gx + F[y1, x1, 1] * fx) * fy
    return dy, dx


@numba.njit(cache=True, nogil=True, inline="always")
def _step(F, pos, it, ln, niter, interp):
    """Advance lane ``ln`` by one step; return (done, y, x) with (y, x) its position after ``niter`` steps if done.

    ``pos[ln]`` holds (y, x) now and (y, x) one step earlier; ``it[ln]`` the steps taken. A step that lands on
    the earlier position closes a 2-cycle.
    """
    py, px = pos[ln, 0], pos[ln, 1]
    i = it[ln]
    if i >= niter:
        return True, py, px
    dy, dx = _sample(F, py, px, interp)
    ny = min(max(py + dy, _ZERO), np.float32(F.shape[0] - 1))
    nx = min(max(px + dx, _ZERO), np.float32(F.shape[1] - 1))
    if ny == py and nx == px:
        return True, py, px
    if ny == pos[ln, 2] and nx == pos[ln, 3]:
        if (niter - i - 1) % 2 == 0:
            return True, ny, nx
        return True, py, px
    pos[ln, 0], pos[ln, 1], pos[ln, 2], pos[ln, 3] = ny, nx, py, px
    it[ln] = i + 1
    return False, ny, nx


@numba.njit(cache=True, nogil=True)
def _next_pixel(fg, starts, groups, y, x, k, stop):
    """The foreground pixel after (y, x) (index k) in row order y, y + groups, ... < stop; y >= stop when none
    is left."""
    Lx = fg.shape[1]
    x += 1
    k += 1
    while y < stop:
        while x < Lx:
            if fg[y, x]:
                return y, x, k
            x += 1
        y += groups
        x = 0
        if y < stop:
            k = starts[y]
    return y, x, k


@numba.njit(cache=True, nogil=True, inline="always")
def _load(pos, it, idx, ln, y, x, k):
    pos[ln, 0], pos[ln, 1] = np.float32(y), np.float32(x)
    pos[ln, 2], pos[ln, 3] = np.float32(-1.0), np.float32(-1.0)
    it[ln] = 0
    idx[ln] = k


@numba.njit(cache=True, nogil=True)
def _follow_group(F, fg, starts, niter, interp, groups, g, stop, out):
    """Integrate the pixels of rows g, g + groups, ... < stop in LANES interleaved lanes (independent
    dependency chains that the CPU overlaps); a finished lane takes the next pixel."""
    pos = np.empty((LANES, 4), np.float32)
    it = np.zeros(LANES, np.int64)
    idx = np.full(LANES, -1, np.int64)
    y, x, k = _next_pixel(fg, starts, groups, g, -1, starts[g] - 1, stop)
    for ln in range(LANES):
        if y < stop:
            _load(pos, it, idx, ln, y, x, k)
            y, x, k = _next_pixel(fg, starts, groups, y, x, k, stop)
    active = np.count_nonzero(idx >= 0)
    while active > 0:
        for ln in range(LANES):
            if idx[ln] < 0:
                continue
            done, ey, ex = _step(F, pos, it, ln, niter, interp)
            if not done:
                continue
            out[0, idx[ln]], out[1, idx[ln]] = np.int32(ey), np.int32(ex)
            idx[ln] = -1
            if y < stop:
                _load(pos, it, idx, ln, y, x, k)
                y, x, k = _next_pixel(fg, starts, groups, y, x, k, stop)
            else:
                active -= 1


@numba.njit(cache=True, nogil=True, parallel=True)
def _follow(F, fg, starts, niter, interp, r0, r1, groups, out):
    """Integrate the foreground pixels of rows ``r0 <= y < r1``; row group ``g`` takes rows ``r0 + g,
    r0 + g + groups, ...``."""
    for g in numba.prange(groups):
        _follow_group(F, fg, starts, niter, interp, groups, r0 + np.int64(g), r1, out)


def follow_rows(F: np.ndarray, fg: np.ndarray, starts: np.ndarray, *, niter: int, interp: bool, rows, out) -> None:
    """Integrate the foreground pixels starting in image rows ``rows[0] <= y < rows[1]`` into ``out``.

    Parameters
    ----------
    F : ndarray (Ly, Lx, 2) float32
        Field (``field_rows``); only the rows the paths reach are read.
    fg : ndarray (Ly, Lx) bool
    starts : ndarray (Ly + 1,) int64
        ``row_starts(fg)``: output index of each row's first foreground pixel.
    niter : int
    interp : bool
    rows : (int, int)
    out : ndarray (2, N) int32
        End positions, written at the indices of the pixels of ``rows``.
    """
    r0, r1 = int(rows[0]), int(rows[1])
    groups = max(1, min(r1 - r0, ROW_GROUPS_PER_THREAD * numba.get_num_threads()))
    _follow(F, fg, starts, int(niter), bool(interp), r0, r1, groups, out)


def follow_flows_fast(dP: np.ndarray, fg: np.ndarray, *, niter: int, interp: bool = True) -> np.ndarray:
    """Final positions of the foreground pixels after ``niter`` Euler steps along ``dP / 5`` (fast path).

    Parameters
    ----------
    dP : ndarray (2, Ly, Lx) float32
        Network flows (dY, dX).
    fg : ndarray (Ly, Lx) bool
        Foreground (``cellprob > threshold``); the field is zero outside it.
    niter : int
        Number of steps (>= 0).
    interp : bool
        Bilinear sampling (default) or the value at the truncated position (``--no_interp``).

    Returns
    -------
    p : ndarray (2, N) int32
        Truncated final (y, x) of the N foreground pixels, in row-major order of their start.
    """
    dP, fg = checked_flow_inputs(dP, fg, niter=niter)
    starts = row_starts(fg)
    out = np.empty((2, int(starts[-1])), np.int32)
    if out.shape[1] == 0:
        return out
    with stage("dynamics.fast_field"):
        F = np.empty(fg.shape + (2,), np.float32)
        field_rows(dP, fg, 0, fg.shape[0], F)
    follow_rows(F, fg, starts, niter=niter, interp=interp, rows=(0, fg.shape[0]), out=out)
    return out
