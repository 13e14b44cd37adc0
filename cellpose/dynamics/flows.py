"""Reference flow fields of a label image: per-mask heat diffusion from the mask centre (spec §4.5, CPU path).

Every mask is diffused on its own grid: its bounding box grown by one pixel on each side, where only the
mask's pixels conduct heat (other masks and background stay at zero). The flow is the normalised central
difference of the heat. The kernels work one mask at a time, so nothing bigger than one bounding box is
allocated besides the output.
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["label_boxes", "masks_to_flows"]


@numba.njit(cache=True, nogil=True)
def label_boxes(masks):
    """Bounding boxes of labels ``1..masks.max()`` in one raster pass.

    Parameters
    ----------
    masks : ndarray (Ly, Lx) unsigned or signed int, labels >= 0

    Returns
    -------
    boxes : ndarray (n, 4) int64
        ``y0, y1, x0, x1`` (half-open) of label ``k + 1`` in row ``k``; ``y1 == 0`` for absent labels.
    """
    n = 0
    for v in masks.ravel():
        if v > n:
            n = v
    boxes = np.zeros((int(n), 4), np.int64)
    boxes[:, 0] = masks.shape[0]
    boxes[:, 2] = masks.shape[1]
    for y in range(masks.shape[0]):
        for x in range(masks.shape[1]):
            v = masks[y, x]
            if v > 0:
                b = boxes[v - 1]
                b[0] = min(b[0], y)
                b[1] = max(b[1], y + 1)
                b[2] = min(b[2], x)
                b[3] = max(b[3], x + 1)
    return boxes


@numba.njit(cache=True, nogil=True)
def _pixels(masks, label, box):
    """Row-major local coordinates (offset +1 inside the grown box) of the pixels of ``label``."""
    y0, y1, x0, x1 = box[0], box[1], box[2], box[3]
    n = 0
    for y in range(y0, y1):
        for x in range(x0, x1):
            if masks[y, x] == label:
                n += 1
    ys = np.empty(n, np.int64)
    xs = np.empty(n, np.int64)
    k = 0
    for y in range(y0, y1):
        for x in range(x0, x1):
            if masks[y, x] == label:
                ys[k] = y - y0 + 1
                xs[k] = x - x0 + 1
                k += 1
    return ys, xs


@numba.njit(cache=True, nogil=True)
def _centre(ys, xs):
    """Index of the pixel nearest the mean position (first minimum in row-major order)."""
    ym = ys.mean()
    xm = xs.mean()
    best = 0
    dbest = np.inf
    for k in range(ys.size):
        d = (ys[k] - ym) ** 2 + (xs[k] - xm) ** 2
        if d < dbest:
            dbest = d
            best = k
    return best


@numba.njit(cache=True, nogil=True)
def _heat(ys, xs, h, w):
    """Diffuse unit heat from the centre for ``2 * (h + w)`` steps on an (h, w) grid; return the heat map."""
    T = np.zeros((h, w), np.float64)
    new = np.empty(ys.size, np.float64)
    c = _centre(ys, xs)
    cy, cx = ys[c], xs[c]
    ninth = 1.0 / 9.0
    for _ in range(2 * (h + w)):
        T[cy, cx] += 1.0
        for k in range(ys.size):
            y, x = ys[k], xs[k]
            s = T[y, x] + T[y - 1, x] + T[y + 1, x] + T[y, x - 1] + T[y, x + 1]
            s = s + T[y - 1, x - 1] + T[y - 1, x + 1] + T[y + 1, x - 1] + T[y + 1, x + 1]
            new[k] = s * ninth
        for k in range(ys.size):
            T[ys[k], xs[k]] = new[k]
    return T


@numba.njit(cache=True, nogil=True)
def label_gradient(masks, label, box):
    """Normalised heat gradient of one label.

    Returns
    -------
    ys, xs : ndarray (n,) int64
        Local coordinates (box origin minus one) of the label's pixels, row-major.
    gy, gx : ndarray (n,) float64
        Unit flow (zero where the gradient vanishes).
    """
    ys, xs = _pixels(masks, label, box)
    T = _heat(ys, xs, box[1] - box[0] + 2, box[3] - box[2] + 2)
    gy = np.empty(ys.size, np.float64)
    gx = np.empty(ys.size, np.float64)
    for k in range(ys.size):
        y, x = ys[k], xs[k]
        dy = T[y + 1, x] - T[y - 1, x]
        dx = T[y, x + 1] - T[y, x - 1]
        norm = 1e-60 + np.sqrt(dy * dy + dx * dx)
        gy[k] = dy / norm
        gx[k] = dx / norm
    return ys, xs, gy, gx


@numba.njit(cache=True, nogil=True)
def _flows_kernel(masks, boxes, out):
    for i in range(boxes.shape[0]):
        box = boxes[i]
        if box[1] == 0:
            continue
        ys, xs, gy, gx = label_gradient(masks, i + 1, box)
        for k in range(ys.size):
            out[0, ys[k] + box[0] - 1, xs[k] + box[2] - 1] = gy[k]
            out[1, ys[k] + box[0] - 1, xs[k] + box[2] - 1] = gx[k]


def masks_to_flows(masks: np.ndarray) -> np.ndarray:
    """Unit flow field pointing to each mask's centre, as Cellpose trains and checks against.

    Parameters
    ----------
    masks : ndarray (Ly, Lx) integer
        Label image, 0 = background. Labels need not be consecutive.

    Returns
    -------
    flows : ndarray (2, Ly, Lx) float64
        ``(dY, dX)``: unit vectors inside masks (the network is trained on ``5 * flows``), zero outside.
    """
    masks = np.asarray(masks)
    if masks.ndim != 2:
        raise ValueError(f"masks must be a 2D label image, got shape {masks.shape}")
    if masks.dtype.kind not in "ui":
        raise TypeError(f"masks must have an integer dtype, got {masks.dtype}")
    if masks.size and masks.min() < 0:
        raise ValueError("masks must not contain negative labels")
    out = np.zeros((2,) + masks.shape, np.float64)
    if masks.size:
        _flows_kernel(masks, label_boxes(masks), out)
    return out
