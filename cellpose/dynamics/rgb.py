"""Flow field as an RGB image (upstream "dx_to_circ"): hue = direction, brightness = normalised magnitude."""
from __future__ import annotations

import numpy as np

from ..preprocess.normalize import percentiles_f32

__all__ = ["flows_to_rgb"]

ROWS_PER_CHUNK = 512


def _magnitude(dP: np.ndarray) -> np.ndarray:
    mag = np.empty(dP.shape[1:], np.float32)
    for r in range(0, mag.shape[0], ROWS_PER_CHUNK):
        sl = slice(r, r + ROWS_PER_CHUNK)
        np.sqrt(dP[0, sl] * dP[0, sl] + dP[1, sl] * dP[1, sl], out=mag[sl])
    return mag


def flows_to_rgb(dP: np.ndarray) -> np.ndarray:
    """Colour image of a flow field.

    Parameters
    ----------
    dP : ndarray (2, Ly, Lx) float32
        Flows (dY, dX).

    Returns
    -------
    rgb : ndarray (Ly, Lx, 3) uint8
        ``mag = 255 * clip((|dP| - p1) / (p99 - p1), 0, 1) / 2`` (1st/99th percentiles of |dP|; zero if they
        are equal), ``angle = atan2(dX, dY) + pi``, channel k = ``clip(mag * (cos(angle + 2 pi k / 3) + 1),
        0, 255)``. Computed in row chunks of ``ROWS_PER_CHUNK``.
    """
    dP = np.asarray(dP, dtype=np.float32)
    if dP.ndim != 3 or dP.shape[0] != 2:
        raise ValueError(f"dP must have shape (2, Ly, Lx), got {dP.shape}")
    mag = _magnitude(dP)
    rgb = np.zeros(mag.shape + (3,), np.uint8)
    if mag.size == 0:
        return rgb
    lo, hi = percentiles_f32(mag.reshape(-1).copy(), (1.0, 99.0))
    if not hi > lo:
        return rgb
    for r in range(0, mag.shape[0], ROWS_PER_CHUNK):
        sl = slice(r, r + ROWS_PER_CHUNK)
        m = np.clip((mag[sl] - lo) / (hi - lo), 0, 1)
        m = 255 * m / 2
        angle = np.arctan2(dP[1, sl], dP[0, sl]) + np.pi
        for k in range(3):
            c = np.clip(m * (np.cos(angle + 2 * np.pi / 3 * k) + 1), 0, 255)
            rgb[sl, :, k] = c.astype(np.uint8)
    return rgb
