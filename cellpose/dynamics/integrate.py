"""Euler integration of foreground pixels along the predicted flow (spec §4.2–4.3, CPU path).

The field is ``F = float32(dP / 5)`` on foreground pixels and 0 elsewhere. It is evaluated on the fly from
``dP`` and the foreground mask, so no (2, Ly, Lx) copy is made, and each pixel is followed for all ``niter``
steps before the next one starts (pixels do not interact), so positions live in registers: the only array
allocated is the (2, N) int32 result.
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["follow_flows", "foreground"]

_FIVE = np.float32(5.0)


def foreground(cellprob: np.ndarray, threshold: float) -> np.ndarray:
    """``cellprob > threshold`` with the threshold rounded to float32, as numpy 2 compares float32 data.

    Returns
    -------
    fg : ndarray (Ly, Lx) bool
    """
    return np.greater(cellprob, np.float32(threshold))


@numba.njit(cache=True, nogil=True, inline="always")
def _field(dP, fg, c, y, x):
    if fg[y, x]:
        return dP[c, y, x] / _FIVE
    return np.float32(0.0)


@numba.njit(cache=True, nogil=True, inline="always")
def _blend(a, b, c, d, fy, fx):
    """Bilinear blend of corner values a..d (float32) in upstream's float32/float64 evaluation order."""
    t1 = np.float64(a) * (1.0 - np.float64(fy)) * (1.0 - np.float64(fx))
    t2 = np.float64(b) * (1.0 - np.float64(fy)) * np.float64(fx)
    t3 = np.float64(np.float32(c * fy)) * (1.0 - np.float64(fx))
    t4 = np.float32(np.float32(d * fy) * fx)
    return np.float32(((t1 + t2) + t3) + np.float64(t4))


@numba.njit(cache=True, nogil=True, inline="always")
def _bilinear(dP, fg, py, px):
    """Bilinear sample of both channels of F at (py, px); corners are clamped to the image."""
    Ly, Lx = fg.shape
    y0 = min(max(int(py), 0), Ly - 1)
    x0 = min(max(int(px), 0), Lx - 1)
    y1 = min(y0 + 1, Ly - 1)
    x1 = min(x0 + 1, Lx - 1)
    fy = py - np.float32(int(py))
    fx = px - np.float32(int(px))
    dy = _blend(_field(dP, fg, 0, y0, x0), _field(dP, fg, 0, y0, x1), _field(dP, fg, 0, y1, x0),
                _field(dP, fg, 0, y1, x1), fy, fx)
    dx = _blend(_field(dP, fg, 1, y0, x0), _field(dP, fg, 1, y0, x1), _field(dP, fg, 1, y1, x0),
                _field(dP, fg, 1, y1, x1), fy, fx)
    return dy, dx


@numba.njit(cache=True, nogil=True, inline="always")
def _step(dP, fg, py, px, interp):
    if interp:
        return _bilinear(dP, fg, py, px)
    iy, ix = int(py), int(px)
    return _field(dP, fg, 0, iy, ix), _field(dP, fg, 1, iy, ix)


@numba.njit(cache=True, nogil=True)
def _follow(dP, fg, niter, interp, out):
    """Integrate every foreground pixel; a pixel that stops moving exactly (a fixed point) is done early."""
    Ly, Lx = fg.shape
    ymax = np.float32(Ly - 1)
    xmax = np.float32(Lx - 1)
    k = 0
    for y in range(Ly):
        for x in range(Lx):
            if not fg[y, x]:
                continue
            py = np.float32(y)
            px = np.float32(x)
            for _ in range(niter):
                dy, dx = _step(dP, fg, py, px, interp)
                ny = min(max(np.float32(py + dy), np.float32(0.0)), ymax)
                nx = min(max(np.float32(px + dx), np.float32(0.0)), xmax)
                if ny == py and nx == px:
                    break
                py, px = ny, nx
            out[0, k] = np.int32(py)
            out[1, k] = np.int32(px)
            k += 1


def checked_flow_inputs(dP, fg, *, niter: int) -> tuple[np.ndarray, np.ndarray]:
    """``dP`` as C-contiguous float32 (2, Ly, Lx) and ``fg`` as bool (Ly, Lx); ValueError for bad shapes/niter."""
    dP = np.ascontiguousarray(dP, dtype=np.float32)
    fg = np.ascontiguousarray(fg, dtype=np.bool_)
    if dP.ndim != 3 or dP.shape[0] != 2 or dP.shape[1:] != fg.shape:
        raise ValueError(f"dP must be (2, Ly, Lx) matching fg {fg.shape}, got {dP.shape}")
    if niter < 0:
        raise ValueError(f"niter must be >= 0, got {niter}")
    return dP, fg


def follow_flows(dP: np.ndarray, fg: np.ndarray, *, niter: int, interp: bool = True) -> np.ndarray:
    """Final positions of the foreground pixels after ``niter`` Euler steps along ``dP / 5``.

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
    out = np.empty((2, int(np.count_nonzero(fg))), np.int32)
    _follow(dP, fg, int(niter), bool(interp), out)
    return out
