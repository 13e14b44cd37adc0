"""Flow-consistency check (spec §4.5): drop masks whose predicted flow disagrees with their own shape.

For each mask, the reference unit flow is recomputed from the mask alone (``flows.label_gradient``) and compared
with the network flow ``dP / 5`` on the mask's pixels. The error is computed mask by mask inside its bounding
box, so no full-image float64 flow array is allocated (upstream holds 2 × 8 B/px plus temporaries here).
"""
from __future__ import annotations

import numba
import numpy as np

from .flows import label_boxes, label_gradient

__all__ = ["flow_errors", "remove_bad_flow_masks"]


@numba.njit(cache=True, nogil=True)
def _errors(masks, boxes, dP, out):
    five = np.float32(5.0)
    for i in range(boxes.shape[0]):
        box = boxes[i]
        if box[1] == 0:
            continue
        ys, xs, gy, gx = label_gradient(masks, i + 1, box)
        sy = 0.0
        sx = 0.0
        for k in range(ys.size):
            y = ys[k] + box[0] - 1
            x = xs[k] + box[2] - 1
            sy += (gy[k] - np.float64(dP[0, y, x] / five)) ** 2
            sx += (gx[k] - np.float64(dP[1, y, x] / five)) ** 2
        out[i] = sy / ys.size + sx / ys.size


def flow_errors(masks: np.ndarray, dP: np.ndarray) -> np.ndarray:
    """Mean squared difference between each mask's reference flow and the network flow.

    Parameters
    ----------
    masks : ndarray (Ly, Lx) unsigned int
        Label image (gaps allowed).
    dP : ndarray (2, Ly, Lx) float32
        Network flows (dY, dX), compared as ``dP / 5``.

    Returns
    -------
    errors : ndarray (masks.max(),) float64
        ``errors[l - 1]`` = mean over label l of (gy - dY/5)² plus the same for x; NaN for absent labels.
    """
    masks = np.ascontiguousarray(masks)
    dP = np.ascontiguousarray(dP, dtype=np.float32)
    if masks.ndim != 2 or dP.shape != (2,) + masks.shape:
        raise ValueError(f"dP must be (2, Ly, Lx) matching masks {masks.shape}, got {dP.shape}")
    boxes = label_boxes(masks)
    out = np.full(boxes.shape[0], np.nan)
    _errors(masks, boxes, dP, out)
    return out


def remove_bad_flow_masks(masks: np.ndarray, dP: np.ndarray, *, threshold: float = 0.4) -> np.ndarray:
    """Zero the masks whose flow error exceeds ``threshold`` (labels are not renumbered).

    Parameters
    ----------
    masks : ndarray (Ly, Lx) unsigned int
        Label image. Not modified.
    dP : ndarray (2, Ly, Lx) float32
    threshold : float

    Returns
    -------
    masks : ndarray (Ly, Lx), same dtype
    """
    errors = flow_errors(masks, dP)
    bad = np.flatnonzero(errors > threshold) + 1
    masks = masks.copy()
    if bad.size:
        masks[np.isin(masks, bad)] = 0
    return masks
