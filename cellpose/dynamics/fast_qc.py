"""Flow-consistency check for ``impl="fast"``: the same test as ``qc.py``, parallel over masks.

Each mask's reference flow is again the normalised gradient of heat diffused from its centre pixel for
``2 * (h + w)`` steps on its bounding box grown by one pixel, with only the mask conducting. The difference
is how one diffusion step is evaluated: on the dense box, as a separable 3 × 3 sum (a row pass, then a column
pass multiplied by the 0/1 mask) that the compiler vectorises, instead of nine gathers per mask pixel. The
sums are added in another order, so errors agree with ``qc.flow_errors`` to rounding (about 1e-12), not bit
for bit. Masks are spread over numba's threads; each writes only its own error, so the result does not
depend on the thread count.
"""
from __future__ import annotations

import numba
import numpy as np

from .fast_masks import drop_labels
from .flows import _centre, _pixels, label_boxes

__all__ = ["flow_errors_fast", "remove_bad_flow_masks_fast"]

_NINTH = 1.0 / 9.0


@numba.njit(cache=True, nogil=True)
def _inside(masks, label, box):
    """(h + 2, w + 2) float64 map, 1.0 on the pixels of ``label`` (offset by one), 0.0 elsewhere."""
    y0, y1, x0, x1 = box[0], box[1], box[2], box[3]
    m = np.zeros((y1 - y0 + 2, x1 - x0 + 2), np.float64)
    for y in range(y0, y1):
        for x in range(x0, x1):
            if masks[y, x] == label:
                m[y - y0 + 1, x - x0 + 1] = 1.0
    return m


@numba.njit(cache=True, nogil=True)
def _diffuse(m, cy, cx):
    """Heat after ``2 * (h + w)`` steps of: add 1 at (cy, cx), then 3 × 3 mean on the mask, 0 off it."""
    h, w = m.shape
    T = np.zeros((h, w), np.float64)
    R = np.zeros((h, w), np.float64)
    for _ in range(2 * (h + w)):
        T[cy, cx] += 1.0
        for y in range(h):
            for x in range(1, w - 1):
                R[y, x] = T[y, x - 1] + T[y, x] + T[y, x + 1]
        for y in range(1, h - 1):
            for x in range(w):
                T[y, x] = (R[y - 1, x] + R[y, x] + R[y + 1, x]) * _NINTH * m[y, x]
    return T


@numba.njit(cache=True, nogil=True)
def _mask_error(masks, label, box, dP):
    """Mean squared difference between the mask's unit heat gradient and ``dP / 5`` on its pixels."""
    ys, xs = _pixels(masks, label, box)
    c = _centre(ys, xs)
    T = _diffuse(_inside(masks, label, box), ys[c], xs[c])
    five = np.float32(5.0)
    sy = 0.0
    sx = 0.0
    for k in range(ys.size):
        y, x = ys[k], xs[k]
        gy = T[y + 1, x] - T[y - 1, x]
        gx = T[y, x + 1] - T[y, x - 1]
        norm = 1e-60 + np.sqrt(gy * gy + gx * gx)
        sy += (gy / norm - np.float64(dP[0, y + box[0] - 1, x + box[2] - 1] / five)) ** 2
        sx += (gx / norm - np.float64(dP[1, y + box[0] - 1, x + box[2] - 1] / five)) ** 2
    return sy / ys.size + sx / ys.size


@numba.njit(cache=True, nogil=True, parallel=True)
def _errors(masks, boxes, dP, out):
    for i in numba.prange(boxes.shape[0]):
        if boxes[i, 1] > 0:
            out[i] = _mask_error(masks, i + 1, boxes[i], dP)


def flow_errors_fast(masks: np.ndarray, dP: np.ndarray) -> np.ndarray:
    """Per-mask flow error, as ``qc.flow_errors`` (to rounding), parallel over masks.

    Parameters
    ----------
    masks : ndarray (Ly, Lx) unsigned int
        Label image (gaps allowed).
    dP : ndarray (2, Ly, Lx) float32
        Network flows (dY, dX), compared as ``dP / 5``.

    Returns
    -------
    errors : ndarray (masks.max(),) float64
        NaN for absent labels.
    """
    masks = np.ascontiguousarray(masks)
    dP = np.ascontiguousarray(dP, dtype=np.float32)
    if masks.ndim != 2 or dP.shape != (2,) + masks.shape:
        raise ValueError(f"dP must be (2, Ly, Lx) matching masks {masks.shape}, got {dP.shape}")
    boxes = label_boxes(masks)
    out = np.full(boxes.shape[0], np.nan)
    _errors(masks, boxes, dP, out)
    return out


def remove_bad_flow_masks_fast(masks: np.ndarray, dP: np.ndarray, *, threshold: float = 0.4,
                               inplace: bool = False) -> np.ndarray:
    """Zero the masks whose flow error exceeds ``threshold`` (labels are not renumbered).

    Parameters
    ----------
    masks : ndarray (Ly, Lx) unsigned int
        Label image. Modified (and returned) only with ``inplace`` and when C-contiguous.
    dP : ndarray (2, Ly, Lx) float32
    threshold : float
    inplace : bool
        Work on ``masks`` itself instead of a copy (saves one label image of memory).

    Returns
    -------
    masks : ndarray (Ly, Lx), same dtype
    """
    errors = flow_errors_fast(masks, dP)
    bad = np.zeros(errors.size + 1, np.bool_)
    bad[1:] = errors > threshold
    masks = np.ascontiguousarray(masks) if inplace else np.array(masks, order="C")
    if bad.any():
        drop_labels(masks, bad)
    return masks
