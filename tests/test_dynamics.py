"""Unit tests of flows → masks (cellpose.dynamics); upstream parity lives in tests/parity/."""
import numpy as np
import pytest

from cellpose.data import make_image
from cellpose.dynamics import (compute_masks, fill_holes_and_remove_small_masks, flow_errors, flows_to_rgb,
                               follow_flows, get_masks, masks_to_flows, remove_bad_flow_masks)
from cellpose.dynamics.masks import renumber
from cellpose.metrics import average_precision


def _disk(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.fixture(scope="module")
def synthetic():
    _, labels = make_image((1, 256, 240), seed=3, diameter=(12, 22))
    labels = labels.astype(np.uint32)
    renumber(labels)
    return labels


def _perfect_outputs(labels, rng, noise=0.0):
    dP = (5 * masks_to_flows(labels)).astype(np.float32)
    dP += rng.normal(0, noise, dP.shape).astype(np.float32) if noise else 0
    cellprob = np.where(labels > 0, 4.0, -4.0).astype(np.float32)
    return dP, cellprob


def test_masks_to_flows_unit_inside_zero_outside_and_points_to_centre():
    m = _disk((41, 43), 20, 21, 12).astype(np.uint16)
    f = masks_to_flows(m)
    assert f.shape == (2, 41, 43) and f.dtype == np.float64
    norm = np.hypot(f[0], f[1])
    assert np.all(norm[m == 0] == 0)
    assert np.allclose(norm[(m > 0)], 1.0, atol=1e-9) or np.mean(np.isclose(norm[m > 0], 1.0)) > 0.99
    yy, xx = np.nonzero(m)
    far = np.hypot(yy - 20, xx - 21) > 3
    dots = f[0, yy, xx] * (20 - yy) + f[1, yy, xx] * (21 - xx)
    assert np.all(dots[far] > 0)


def test_masks_to_flows_ignores_label_gaps_and_neighbours():
    a = np.zeros((30, 60), np.uint16)
    a[5:25, 5:25] = 1
    a[5:25, 25:45] = 7
    b = np.zeros_like(a)
    b[5:25, 25:45] = 1
    fa, fb = masks_to_flows(a), masks_to_flows(b)
    assert np.array_equal(fa[:, :, 25:], fb[:, :, 25:])


def test_masks_to_flows_rejects_bad_input():
    with pytest.raises(ValueError, match="2D"):
        masks_to_flows(np.zeros((2, 3, 4), np.uint16))
    with pytest.raises(TypeError, match="integer"):
        masks_to_flows(np.zeros((3, 4), np.float32))


def test_compute_masks_recovers_ground_truth_from_ideal_flows(synthetic, rng):
    dP, cellprob = _perfect_outputs(synthetic, rng, noise=0.3)
    masks = compute_masks(dP, cellprob)
    ap = average_precision(synthetic, masks, thresholds=(0.5, 0.9))
    assert masks.dtype == np.uint16
    assert ap["ap"][0] >= 0.98 and ap["ap"][1] >= 0.9, ap
    labels = np.unique(masks)
    assert np.array_equal(labels, np.arange(labels.size))


def test_compute_masks_empty_foreground_gives_zeros():
    masks = compute_masks(np.zeros((2, 20, 30), np.float32), np.full((20, 30), -1, np.float32))
    assert masks.shape == (20, 30) and masks.dtype == np.uint16 and masks.max() == 0


def test_compute_masks_threshold_is_strict_and_float32(rng):
    m = _disk((40, 40), 20, 20, 8).astype(np.uint16)
    dP, _ = _perfect_outputs(m, rng)
    cellprob = np.where(m > 0, np.float32(0.1), np.float32(-1)).astype(np.float32)
    assert compute_masks(dP, cellprob, cellprob_threshold=0.1).max() == 0
    assert compute_masks(dP, cellprob, cellprob_threshold=0.09).max() == 1


def test_compute_masks_resizes_to_shape_before_min_size(rng):
    m = _disk((40, 40), 20, 20, 8).astype(np.uint16)
    dP, cp = _perfect_outputs(m, rng)
    out = compute_masks(dP, cp, shape=(80, 80), min_size=250)
    assert out.shape == (80, 80) and out.max() == 1
    assert compute_masks(dP, cp, min_size=250).max() == 0


def test_compute_masks_validates_shapes():
    with pytest.raises(ValueError, match="dP must have shape"):
        compute_masks(np.zeros((3, 10, 10), np.float32), np.zeros((10, 10), np.float32))
    with pytest.raises(ValueError, match="cellprob must be 2D"):
        compute_masks(np.zeros((2, 10, 10), np.float32), np.zeros((1, 10, 10), np.float32))


def test_more_than_65535_masks_are_uint32():
    pitch, side = 6, 5
    n = 262
    labels = np.zeros((n * pitch, n * pitch), np.uint32)
    ids = np.arange(1, n * n + 1, dtype=np.uint32).reshape(n, n)
    for dy in range(side):
        for dx in range(side):
            labels[dy::pitch, dx::pitch] = ids
    dP = (5 * masks_to_flows(labels)).astype(np.float32)
    cellprob = np.where(labels > 0, 1.0, -1.0).astype(np.float32)
    masks = compute_masks(dP, cellprob, niter=30, min_size=10, flow_threshold=0.0)
    assert masks.dtype == np.uint32 and int(masks.max()) == n * n
    ap = average_precision(labels, masks, thresholds=(0.9,))
    assert ap["ap"][0] == 1.0


def test_follow_flows_zero_field_keeps_positions():
    fg = np.zeros((5, 6), bool)
    fg[1, 2] = fg[3, 4] = True
    p = follow_flows(np.zeros((2, 5, 6), np.float32), fg, niter=10)
    assert p.dtype == np.int32 and p.tolist() == [[1, 3], [2, 4]]


def test_follow_flows_moves_along_constant_field_and_clamps():
    fg = np.ones((10, 10), bool)
    dP = np.zeros((2, 10, 10), np.float32)
    dP[1] = 5.0
    p = follow_flows(dP, fg, niter=3, interp=True)
    assert np.array_equal(p[1], np.minimum(np.tile(np.arange(10), 10) + 3, 9))
    assert np.array_equal(follow_flows(dP, fg, niter=3, interp=False), p)


def test_get_masks_needs_more_than_ten_pixels_per_seed():
    fg = np.zeros((30, 30), bool)
    fg[0, :11] = True
    p = np.tile(np.array([[15], [15]], np.int32), (1, 11))
    assert get_masks(p, fg).max() == 1
    assert get_masks(p[:, :10], _first(fg, 10)).max() == 0


def _first(fg, n):
    out = np.zeros_like(fg)
    yy, xx = np.nonzero(fg)
    out[yy[:n], xx[:n]] = True
    return out


def test_get_masks_removes_masks_over_max_size_fraction():
    fg = np.ones((10, 10), bool)
    p = np.full((2, 100), 5, np.int32)
    assert get_masks(p, fg, max_size_fraction=0.4).max() == 0
    assert get_masks(p, fg, max_size_fraction=1.0).max() == 1


def test_fill_holes_fills_ring_and_takes_enclosed_label():
    m = np.zeros((20, 20), np.uint16)
    m[_disk((20, 20), 10, 10, 7)] = 1
    m[_disk((20, 20), 10, 10, 4)] = 0
    m[10, 10] = 2
    out = fill_holes_and_remove_small_masks(m, min_size=0)
    assert np.array_equal(out > 0, _disk((20, 20), 10, 10, 7))
    assert set(np.unique(out)) == {0, 1}
    assert m[10, 10] == 2


def test_small_mask_removal_uses_true_label_values():
    m = np.zeros((30, 30), np.uint16)
    m[0:5, 0:5] = 1
    m[0:5, 10:15] = 2
    m[10:15, 0:5] = 4
    m[20:23, 20:23] = 5
    out = fill_holes_and_remove_small_masks(m, min_size=15)
    assert out.max() == 3
    assert np.all(out[10:15, 0:5] == 3) and np.all(out[20:23, 20:23] == 0)


def test_flow_qc_removes_masks_with_inconsistent_flows(rng):
    m = np.zeros((40, 80), np.uint16)
    m[_disk((40, 80), 20, 20, 10)] = 1
    m[_disk((40, 80), 20, 60, 10)] = 2
    dP = (5 * masks_to_flows(m)).astype(np.float32)
    dP[:, :, 40:] = rng.normal(0, 5, (2, 40, 40)).astype(np.float32)
    err = flow_errors(m, dP)
    assert err[0] < 1e-6 and err[1] > 0.4
    out = remove_bad_flow_masks(m, dP, threshold=0.4)
    assert set(np.unique(out)) == {0, 1} and m.max() == 2


def test_flows_to_rgb_hue_follows_direction():
    dP = np.zeros((2, 8, 8), np.float32)
    dP[0, :4] = 1.0
    dP[1, 4:] = 1.0
    dP[:, 0, 0] = 0.5
    rgb = flows_to_rgb(dP)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert not np.array_equal(rgb[1, 1], rgb[5, 5])
    assert flows_to_rgb(np.zeros((2, 4, 4), np.float32)).max() == 0
