"""Image and label resizing (spec §2.4) and the pad-to-16 rule (spec §2.5).

Images are resized with OpenCV's bilinear interpolation on float32 so that the result is the same as
upstream's, bit for bit (OpenCV picks its code path from the channel count, so the channel count of the
array handed to OpenCV matters). Label images use the nearest-neighbour index rule of OpenCV's
``INTER_NEAREST``, computed with numpy so that any integer dtype (uint16, uint32, int64) is exact.
"""
from __future__ import annotations

import math

import cv2
import numba
import numpy as np

__all__ = ["resize_image", "resize_window", "linear_taps", "resize_masks", "nearest_indices", "pad_amounts"]

_CV_MAX_CHANNELS = 512


def resize_image(img: np.ndarray, *, Ly: int, Lx: int) -> np.ndarray:
    """Resize an image with bilinear interpolation (OpenCV ``INTER_LINEAR``, half-pixel centres).

    Parameters
    ----------
    img : ndarray (Ly0, Lx0) or (Ly0, Lx0, C), real dtype
        Image, channel-last. It is cast to float32 first (a copy only when it is not float32 already).
    Ly, Lx : int
        Output size in pixels (>= 1).

    Returns
    -------
    out : ndarray (Ly, Lx) or (Ly, Lx, C) float32
        New array; the channel axis is kept even when C == 1.
    """
    img = _as_float_image(img)
    Ly, Lx = _check_size(Ly, Lx)
    if img.shape[:2] == (Ly, Lx):
        return img.copy()
    if img.ndim == 3 and img.shape[2] > _CV_MAX_CHANNELS:
        parts = [_cv_linear(img[:, :, c0:c0 + _CV_MAX_CHANNELS], Ly, Lx)
                 for c0 in range(0, img.shape[2], _CV_MAX_CHANNELS)]
        return np.concatenate(parts, axis=2)
    return _cv_linear(img, Ly, Lx)


def _cv_linear(img: np.ndarray, Ly: int, Lx: int) -> np.ndarray:
    """OpenCV bilinear resize of a float32 (h, w[, c]) array, keeping a channel axis of size 1."""
    out = cv2.resize(np.ascontiguousarray(img), (Lx, Ly), interpolation=cv2.INTER_LINEAR)
    if img.ndim == 3 and out.ndim == 2:
        out = out[:, :, np.newaxis]
    return out


def linear_taps(o0: int, o1: int, *, src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of output pixels ``[o0, o1)`` of OpenCV's bilinear resize along one axis.

    Output ``o`` samples ``f = (o + 0.5) * (1 / (dst / src)) - 0.5`` (float64); ``i = floor(f)``, weight
    ``a = f - i`` of pixel ``i + 1``; before the first pixel and from the last pixel on, ``a = 0`` and ``i``
    is clamped.

    Returns
    -------
    i0, i1 : ndarray (o1 - o0,) int64
        The two source pixels of each output pixel (``i1 = min(i0 + 1, src - 1)``).
    a : ndarray (o1 - o0,) float32
        Weight of ``i1``; ``1 - a`` is the weight of ``i0``.
    """
    scale = 1.0 / (dst / src)
    f = (np.arange(o0, o1, dtype=np.float64) + 0.5) * scale - 0.5
    i0 = np.floor(f).astype(np.int64)
    a = (f - i0).astype(np.float32)
    low, high = i0 < 0, i0 >= src - 1
    a[low | high] = 0
    i0 = np.clip(i0, 0, src - 1)
    return i0, np.minimum(i0 + 1, src - 1), a


def resize_window(window: np.ndarray, *, origin: tuple, full_src: tuple, full_dst: tuple, box: tuple) -> np.ndarray:
    """A window of the bilinear resize of a large image, computed from a window of that image.

    ``resize_image(full, Ly=full_dst[0], Lx=full_dst[1])[y0:y1, x0:x1]`` without the full image: the result
    agrees with OpenCV's to float32 rounding (the same sample positions and weights, separable rows then
    columns), so a block of a slide sees the pixels the whole-image resize would give it.

    Parameters
    ----------
    window : ndarray (h, w) or (h, w, C), real dtype
        Source pixels ``[origin[0], origin[0] + h) x [origin[1], origin[1] + w)`` of the full image; it must
        hold every source pixel the output box reads (see ``geometry.linear_source_span``).
    origin : (int, int)
        Top-left of ``window`` in the full source image.
    full_src, full_dst : (int, int)
        Full image size before and after resizing.
    box : (y0, y1, x0, x1)
        Output pixels wanted, in full output coordinates.

    Returns
    -------
    out : ndarray (y1 - y0, x1 - x0[, C]) float32
    """
    y0, y1, x0, x1 = box
    iy0, iy1, ay = linear_taps(y0, y1, src=full_src[0], dst=full_dst[0])
    ix0, ix1, ax = linear_taps(x0, x1, src=full_src[1], dst=full_dst[1])
    iy0, iy1, ix0, ix1 = iy0 - origin[0], iy1 - origin[0], ix0 - origin[1], ix1 - origin[1]
    if min(iy0.min(), ix0.min()) < 0 or iy1.max() >= window.shape[0] or ix1.max() >= window.shape[1]:
        raise ValueError(f"window at {origin} of shape {window.shape[:2]} does not hold the pixels of box {box}")
    w = np.ascontiguousarray(window, dtype=np.float32)
    w3 = w if w.ndim == 3 else w[:, :, np.newaxis]
    out = np.empty((y1 - y0, x1 - x0, w3.shape[2]), np.float32)
    _linear_window(w3, iy0, iy1, ay, ix0, ix1, ax, out)
    return out if w.ndim == 3 else out[:, :, 0]


@numba.njit(cache=True)
def _linear_window(w, iy0, iy1, ay, ix0, ix1, ax, out):
    """Separable bilinear interpolation in float32: rows (x) first, then columns (y), as OpenCV orders it.

    Each output row blends two source rows, each first interpolated along x; the same float32 products and
    sums as the vectorised numpy form, so results are bit-identical to it (and 10× faster, no temporaries).
    """
    one = np.float32(1)
    h, wd, C = out.shape
    r0 = np.empty((wd, C), np.float32)
    r1 = np.empty((wd, C), np.float32)
    for y in range(h):
        for x in range(wd):
            for c in range(C):
                r0[x, c] = w[iy0[y], ix0[x], c] * (one - ax[x]) + w[iy0[y], ix1[x], c] * ax[x]
                r1[x, c] = w[iy1[y], ix0[x], c] * (one - ax[x]) + w[iy1[y], ix1[x], c] * ax[x]
        for x in range(wd):
            for c in range(C):
                out[y, x, c] = r0[x, c] * (one - ay[y]) + r1[x, c] * ay[y]


def resize_masks(masks: np.ndarray, *, Ly: int, Lx: int) -> np.ndarray:
    """Resize a label image with nearest-neighbour sampling, exactly like OpenCV ``INTER_NEAREST``.

    Parameters
    ----------
    masks : ndarray (Ly0, Lx0), integer or bool dtype
        Label image. Every integer dtype is supported without loss (no float round trip).
    Ly, Lx : int
        Output size in pixels (>= 1).

    Returns
    -------
    out : ndarray (Ly, Lx), same dtype as ``masks``
        ``out[i, j] = masks[ry[i], rx[j]]`` with ``ry, rx`` from :func:`nearest_indices`.
    """
    masks = np.asarray(masks)
    if masks.ndim != 2:
        raise ValueError(f"masks must be 2D (Ly, Lx), got shape {masks.shape}")
    if masks.dtype.kind not in "uib":
        raise TypeError(f"masks must have an integer or bool dtype, got {masks.dtype}")
    Ly, Lx = _check_size(Ly, Lx)
    rows = nearest_indices(masks.shape[0], Ly)
    cols = nearest_indices(masks.shape[1], Lx)
    return np.take(np.take(masks, rows, axis=0), cols, axis=1)


def nearest_indices(src: int, dst: int) -> np.ndarray:
    """Source index of every destination pixel for nearest-neighbour resizing along one axis.

    Parameters
    ----------
    src, dst : int
        Source and destination lengths (>= 1).

    Returns
    -------
    idx : ndarray (dst,) int64
        ``min(floor(d * (1 / (dst / src))), src - 1)`` evaluated in float64, OpenCV's rule (no half-pixel
        shift).
    """
    step = 1.0 / (dst / src)
    idx = np.floor(np.arange(dst, dtype=np.float64) * step).astype(np.int64)
    return np.minimum(idx, src - 1)


def pad_amounts(L: int) -> tuple[int, int]:
    """Zeros added before and after an axis of length ``L`` before the network (spec §2.5).

    Parameters
    ----------
    L : int
        Axis length (>= 1).

    Returns
    -------
    before, after : int
        ``8 + floor(p / 2)`` and ``8 + p - floor(p / 2)`` with ``p = 16 * ceil(L / 16) - L``, so the padded
        length ``L + before + after = 16 * ceil(L / 16) + 16`` is a multiple of 16 with >= 8 zeros each side.
    """
    L = int(L)
    if L < 1:
        raise ValueError(f"axis length must be >= 1, got {L}")
    extra = 16 * math.ceil(L / 16) - L
    return 8 + extra // 2, 8 + extra - extra // 2


def _as_float_image(img) -> np.ndarray:
    """Check a (h, w) or (h, w, c) real image and return it as float32 (no copy when already float32)."""
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be (Ly, Lx) or (Ly, Lx, C), got shape {img.shape}")
    if img.dtype.kind not in "uifb":
        raise TypeError(f"image must have a real dtype, got {img.dtype}")
    if min(img.shape) < 1:
        raise ValueError(f"image has an empty axis: shape {img.shape}")
    return img.astype(np.float32, copy=False)


def _check_size(Ly, Lx) -> tuple[int, int]:
    """Validate an output size and return it as Python ints."""
    Ly, Lx = int(Ly), int(Lx)
    if Ly < 1 or Lx < 1:
        raise ValueError(f"output size must be >= 1 pixel per axis, got ({Ly}, {Lx})")
    return Ly, Lx
