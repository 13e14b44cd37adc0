"""Outline pixels: the compiled flood (``cellpose.io.outlines``) against OpenCV's external contours, label by label."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from cellpose.data import make_image
from cellpose.io import masks_to_outlines


def opencv_outlines(masks: np.ndarray) -> np.ndarray:
    """Reference: every pixel of ``cv2.findContours(masks == L, RETR_EXTERNAL, CHAIN_APPROX_NONE)`` for each L."""
    out = np.zeros(masks.shape, bool)
    for label in np.unique(masks[masks > 0]):
        padded = np.pad((masks == label).astype(np.uint8), 1)
        contours, _ = cv2.findContours(padded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        for contour in contours:
            xy = contour.reshape(-1, 2) - 1
            out[xy[:, 1], xy[:, 0]] = True
    return out


def random_blobs(seed: int, shape=(64, 80), n=12, density=0.55):
    """Ragged labels: thresholded noise split into labels, with holes, diagonal contacts and slivers."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape), 1.0)
    fg = field > np.quantile(field, 1 - density)
    seeds = np.zeros(shape, np.int32)
    seeds[rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)] = np.arange(1, n + 1)
    _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    return np.where(fg, seeds[iy, ix], 0)


@pytest.mark.parametrize("seed", range(12))
def test_outlines_match_opencv_on_ragged_labels(seed):
    masks = random_blobs(seed)
    assert np.array_equal(masks_to_outlines(masks), opencv_outlines(masks))


def test_outlines_match_opencv_on_generated_nuclei():
    _, labels = make_image((1, 256, 256), seed=4, diameter=(8, 30))
    assert labels.max() > 50
    assert np.array_equal(masks_to_outlines(labels), opencv_outlines(labels))


def test_hole_rims_and_pieces_inside_holes_are_not_outlines():
    masks = np.zeros((20, 20), np.uint16)
    masks[2:17, 2:17] = 5
    masks[5:14, 5:14] = 0
    masks[8:11, 8:11] = 5
    masks[0:2, 18:20] = 7
    out = masks_to_outlines(masks)
    assert out[2, 2:17].all() and out[16, 2:17].all() and not out[5:14, 5:14].any()
    assert not out[4, 6] and out[0:2, 18:20].all()
    assert np.array_equal(out, opencv_outlines(masks))


def test_sparse_huge_labels_and_planes():
    masks = np.zeros((2, 30, 30), np.uint64)
    masks[0, 3:12, 3:12] = 2 ** 40
    masks[1, 10:25, 5:9] = 3
    masks[1, 0:30, 20:30] = 2 ** 33
    out = masks_to_outlines(masks)
    for z in range(2):
        compact = np.unique(masks[z], return_inverse=True)[1].reshape(30, 30)
        assert np.array_equal(out[z], opencv_outlines(compact))
    assert out[1, 0, 20:30].all() and out[1, 29, 20:30].all() and not out[1, 15, 25]


@pytest.mark.parametrize("dtype", [">u2", ">i4", "<i8", "u1"])
def test_byte_orders_and_small_dtypes(dtype):
    masks = random_blobs(3, n=10).astype(dtype)
    assert np.array_equal(masks_to_outlines(masks), opencv_outlines(masks.astype(np.int64)))


def test_empty_inputs():
    assert masks_to_outlines(np.zeros((0, 0), np.uint16)).shape == (0, 0)
    assert not masks_to_outlines(np.zeros((5, 7), np.uint16)).any()
