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
* rows are spread over numba's threads (``numba.get_num_threads()``) in an interleaved order, and every
  pixel writes its result at its own precomputed index, so the output does not depend on the thread count.

Results can differ from the exact path in the last bits of a position (float32 blend), which moves a few
end points by one pixel; ``tests/test_dynamics_fast.py`` bounds the effect on the masks.
"""
from __future__ import annotations

import numba
import numpy as np

from ..profiling import stage

__all__ = ["follow_flows_fast"]

_FIVE = np.float32(5.0)
_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)
ROW_GROUPS_PER_THREAD = 16
LANES = 4


@numba.njit(cache=True, nogil=True, parallel=True)
def _field(dP, fg):
    """(Ly, Lx, 2) float32 field ``dP / 5`` on the foreground, 0 elsewhere."""
    Ly, Lx = fg.shape
    F = np.empty((Ly, Lx, 2), np.float32)
    for y in numba.prange(Ly):
        for x in range(Lx):
            if fg[y, x]:
                F[y, x, 0] = dP[0, y, x] / _FIVE
                F[y, x, 1] = dP[1, y, x] / _FIVE
            else:
                F[y, x, 0] = _ZERO
                F[y, x, 1] = _ZERO
    return F


@numba.njit(cache=True, nogil=True)
def _row_starts(fg):
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
def _step(F, pos, it, l, niter, interp):
    """Advance lane ``l`` by one step; return (done, y, x) with (y, x) its position after ``niter`` steps if done.

    ``pos[l]`` holds (y, x, y two steps ago, x two steps ago); ``it[l]`` the steps taken.
    """
    py, px = pos[l, 0], pos[l, 1]
    i = it[l]
    if i >= niter:
        return True, py, px
    dy, dx = _sample(F, py, px, interp)
    ny = min(max(py + dy, _ZERO), np.float32(F.shape[0] - 1))
    nx = min(max(px + dx, _ZERO), np.float32(F.shape[1] - 1))
    if ny == py and nx == px:
        return True, py, px
    if ny == pos[l, 2] and nx == pos[l, 3]:
        if (niter - i - 1) % 2 == 0:
            return True, ny, nx
        return True, py, px
    pos[l, 0], pos[l, 1], pos[l, 2], pos[l, 3] = ny, nx, py, px
    it[l] = i + 1
    return False, ny, nx


@numba.njit(cache=True, nogil=True)
def _next_pixel(fg, starts, groups, y, x, k):
    """The foreground pixel after (y, x) (index k) in row order y, y + groups, ...; y >= Ly when none is left."""
    Ly, Lx = fg.shape
    x += 1
    k += 1
    while y < Ly:
        while x < Lx:
            if fg[y, x]:
                return y, x, k
            x += 1
        y += groups
        x = 0
        if y < Ly:
            k = starts[y]
    return y, x, k


@numba.njit(cache=True, nogil=True, inline="always")
def _load(pos, it, idx, l, y, x, k):
    pos[l, 0], pos[l, 1] = np.float32(y), np.float32(x)
    pos[l, 2], pos[l, 3] = np.float32(-1.0), np.float32(-1.0)
    it[l] = 0
    idx[l] = k


@numba.njit(cache=True, nogil=True)
def _follow_group(F, fg, starts, niter, interp, groups, g, out):
    """Integrate the pixels of rows g, g + groups, ... in LANES interleaved lanes (independent dependency
    chains that the CPU overlaps); a finished lane takes the next pixel."""
    Ly = fg.shape[0]
    pos = np.empty((LANES, 4), np.float32)
    it = np.zeros(LANES, np.int64)
    idx = np.full(LANES, -1, np.int64)
    y, x, k = _next_pixel(fg, starts, groups, g, -1, starts[g] - 1)
    for l in range(LANES):
        if y < Ly:
            _load(pos, it, idx, l, y, x, k)
            y, x, k = _next_pixel(fg, starts, groups, y, x, k)
    active = np.count_nonzero(idx >= 0)
    while active > 0:
        for l in range(LANES):
            if idx[l] < 0:
                continue
            done, ey, ex = _step(F, pos, it, l, niter, interp)
            if not done:
                continue
            out[0, idx[l]], out[1, idx[l]] = np.int32(ey), np.int32(ex)
            idx[l] = -1
            if y < Ly:
                _load(pos, it, idx, l, y, x, k)
                y, x, k = _next_pixel(fg, starts, groups, y, x, k)
            else:
                active -= 1


@numba.njit(cache=True, nogil=True, parallel=True)
def _follow(F, fg, starts, niter, interp, groups, out):
    """Integrate every foreground pixel; row group ``g`` takes rows ``g, g + groups, ...``."""
    for g in numba.prange(groups):
        _follow_group(F, fg, starts, niter, interp, groups, np.int64(g), out)


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
    dP = np.ascontiguousarray(dP, dtype=np.float32)
    fg = np.ascontiguousarray(fg, dtype=np.bool_)
    if dP.ndim != 3 or dP.shape[0] != 2 or dP.shape[1:] != fg.shape:
        raise ValueError(f"dP must be (2, Ly, Lx) matching fg {fg.shape}, got {dP.shape}")
    if niter < 0:
        raise ValueError(f"niter must be >= 0, got {niter}")
    starts = _row_starts(fg)
    out = np.empty((2, int(starts[-1])), np.int32)
    if out.shape[1] == 0:
        return out
    with stage("dynamics.fast_field"):
        F = _field(dP, fg)
    groups = max(1, min(fg.shape[0], ROW_GROUPS_PER_THREAD * numba.get_num_threads()))
    _follow(F, fg, starts, int(niter), bool(interp), groups, out)
    return out
