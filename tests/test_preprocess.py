"""Pre-processing (``cellpose.preprocess``): channel selection, normalisation, resizing, padding."""
from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest
import torch

from cellpose.config import NormalizeOptions
from cellpose.preprocess import (convert_image, nearest_indices, normalize_image, pad_amounts, percentile_range,
                                 resize_image, resize_masks, yxc_view)
from cellpose.preprocess import normalize as norm_mod
from cellpose.preprocess.normalize import percentiles_f32


# ------------------------------------------------------------------------------------------ convert_image

def test_gray_image_gets_zero_second_channel(rng):
    x = rng.integers(0, 4000, (30, 40), dtype=np.uint16)
    out = convert_image(x, channels=(0, 0))
    assert out.shape == (30, 40, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :, 0], x.astype(np.float32))
    assert not out[:, :, 1].any()


def test_single_channel_ignores_channel_indices(rng):
    x = rng.integers(0, 4000, (30, 40, 1), dtype=np.uint16)
    np.testing.assert_array_equal(convert_image(x, channels=(2, 3))[:, :, 0], x[:, :, 0])


def test_channel_last_selection(rng):
    x = rng.integers(0, 4000, (30, 40, 3), dtype=np.uint16)
    out = convert_image(x, channels=(2, 3))
    np.testing.assert_array_equal(out, x[:, :, [1, 2]].astype(np.float32))
    assert not convert_image(x, channels=(3, 0))[:, :, 1].any()


def test_channel_first_is_detected(rng):
    x = rng.integers(0, 4000, (4, 30, 40), dtype=np.uint16)
    np.testing.assert_array_equal(convert_image(x, channels=(4, 1)), np.stack([x[3], x[0]], -1))


def test_explicit_channel_axis_with_many_channels(rng):
    x = rng.integers(0, 4000, (44, 30, 40), dtype=np.uint16)
    out = convert_image(x, channels=(40, 7), channel_axis=0)
    np.testing.assert_array_equal(out, np.stack([x[39], x[6]], -1))


def test_only_used_channels_are_cast(rng):
    """Picking 2 of 44 uint16 channels allocates the output only, not a float32 copy of the stack."""
    x = rng.integers(0, 4000, (44, 200, 300), dtype=np.uint16)
    tracemalloc.start()
    try:
        convert_image(x, channels=(3, 5), channel_axis=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 200 * 300 * 4 + (1 << 20)  # output (Ly, Lx, 2) f32 plus 1 MiB, << 44 * 4 B/px


def test_mean_of_channels_matches_float32_mean(rng):
    x = rng.integers(0, 60000, (60, 70, 12), dtype=np.uint16)
    out = convert_image(x, channels=(0, 0), channel_axis=-1)
    np.testing.assert_array_equal(out[:, :, 0], x.astype(np.float32).mean(axis=-1))
    assert not out[:, :, 1].any()


def test_short_images_are_not_transposed(rng):
    """Upstream's [quirk] transposes (Ly < 8, Lx, C) images; ours keeps them."""
    x = rng.integers(0, 4000, (5, 70, 2), dtype=np.uint16)
    np.testing.assert_array_equal(convert_image(x, channels=(1, 2)), x.astype(np.float32))


def test_singleton_axes_are_dropped_and_torch_accepted(rng):
    x = rng.integers(0, 4000, (1, 30, 40, 3), dtype=np.int32)
    out = convert_image(torch.from_numpy(x), channels=(1, 3))
    np.testing.assert_array_equal(out, x[0][:, :, [0, 2]].astype(np.float32))


def test_all_channels_mode(rng):
    x = rng.normal(size=(30, 40, 3))
    np.testing.assert_array_equal(convert_image(x, channels=None, nchan=2), x[:, :, :2].astype(np.float32))
    one = convert_image(x[:, :, :1], channels=None, nchan=3)
    assert one.shape == (30, 40, 3) and not one[:, :, 1:].any()
    assert yxc_view(np.zeros((12, 30, 40)), all_channels=True).shape == (30, 40, 12)


@pytest.mark.parametrize("shape", [(12, 60, 70), (2, 3, 60, 70), (30,)])
def test_z_stacks_and_bad_shapes_are_rejected(shape):
    with pytest.raises(ValueError, match="Z stack|dimensions"):
        convert_image(np.zeros(shape, np.uint8), channels=(0, 0))


@pytest.mark.parametrize("channels, match", [((4, 0), "channel to segment 4.*3 channels"),
                                             ((1, 5), "nuclear channel 5.*3 channels"),
                                             ((-1, 0), ">= 0"), ((1, 2, 3), r"\[c1, c2\]")])
def test_bad_channels_raise(channels, match):
    with pytest.raises(ValueError, match=match):
        convert_image(np.zeros((30, 40, 3), np.uint8), channels=channels)


def test_bad_channel_axis_and_dtype():
    with pytest.raises(ValueError, match="channel_axis 3"):
        convert_image(np.zeros((3, 30, 40)), channels=(1, 0), channel_axis=3)
    with pytest.raises(TypeError, match="real dtype"):
        convert_image(np.zeros((30, 40), complex), channels=(0, 0))


# ------------------------------------------------------------------------------------------ percentiles

def test_percentiles_f32_hand_values():
    vals = np.array([4, 0, 3, 1, 2], np.float32)
    lo, mid, hi, top = percentiles_f32(vals.copy(), [1.0, 50.0, 99.0, 100.0])
    assert mid == 2 and top == 4 and lo.dtype == np.float32
    # v = f32(4) * f32(0.01); below 0.5: a + (b - a) * g; above: b - (b - a) * (1 - g)
    g_lo = np.float32(4) * (np.float32(1) / np.float32(100))
    assert lo == np.float32(0) + np.float32(1) * g_lo
    g_hi = np.float32(4) * (np.float32(99) / np.float32(100)) - np.float32(3)
    assert hi == np.float32(4) - np.float32(1) * (np.float32(1) - g_hi)


def test_percentiles_f32_close_to_float64(rng):
    a = rng.gamma(2.0, 300.0, 12345).astype(np.float32)
    ours = percentiles_f32(a.copy(), [0.0, 1.0, 37.5, 99.0, 100.0])
    ref = np.percentile(a.astype(np.float64), [0.0, 1.0, 37.5, 99.0, 100.0])
    np.testing.assert_allclose(np.array(ours, np.float64), ref, rtol=1e-5)
    assert ours[0] == a.min() and ours[-1] == a.max()


def test_large_channels_use_strided_subsample(rng, monkeypatch):
    monkeypatch.setattr(norm_mod, "SUBSAMPLE_LIMIT", 1000)
    monkeypatch.setattr(norm_mod, "SUBSAMPLE_TARGET", 10)
    ch = rng.gamma(2.0, 30.0, (100, 95)).astype(np.float32)
    expected = percentiles_f32(ch[::10, ::9].ravel().copy(), [1.0, 99.0])
    assert list(percentile_range(ch, percentile=(1.0, 99.0))) == expected
    assert list(percentile_range(ch[:30, :30], percentile=(1.0, 99.0))) == percentiles_f32(
        ch[:30, :30].ravel().copy(), [1.0, 99.0])


# ------------------------------------------------------------------------------------------ normalize_image

def _image(rng, shape=(64, 48, 2)):
    return rng.gamma(2.0, 300.0, shape).astype(np.float32)


def test_percentile_normalisation(rng):
    x = _image(rng)
    x[:, :, 1] = 7.0
    out = normalize_image(x, options=NormalizeOptions())
    lo, hi = percentiles_f32(x[:, :, 0].ravel().copy(), [1.0, 99.0])
    np.testing.assert_array_equal(out[:, :, 0], (x[:, :, 0] - lo) / (hi - lo))
    np.testing.assert_array_equal(out[:, :, 1], 0.0)  # constant channel -> 0 (fixed [quirk]: upstream keeps the 7s)
    assert x[0, 0, 1] == 7.0 and out is not x


def test_constant_and_all_nan_channels_normalise_to_zero(rng):
    from cellpose.preprocess.normalize import is_flat

    x = _image(rng)
    x[:, :, 0] = np.nan
    x[:, :, 1] = 1000.0
    x[3, 4, 1] = np.nan
    assert is_flat(x[:, :, 0]) and is_flat(x[:, :, 1]) and not is_flat(_image(rng)[:, :, 0])
    out = normalize_image(x, options=NormalizeOptions())
    assert not out.any()


def test_inplace_and_copy(rng):
    x = _image(rng)
    before = x.copy()
    copy = normalize_image(x, options=NormalizeOptions())
    np.testing.assert_array_equal(x, before)
    same = normalize_image(x, options=NormalizeOptions(), inplace=True)
    assert same is x
    np.testing.assert_array_equal(x, copy)
    with pytest.raises(ValueError, match="float32"):
        normalize_image(before.astype(np.float64), options=NormalizeOptions(), inplace=True)


def test_invert_and_tiny_range(rng):
    x = _image(rng)
    x[:, :, 1] = 0.0
    x[3, 4, 1] = 1e-4
    plain = normalize_image(x, options=NormalizeOptions())
    inv = normalize_image(x, options=NormalizeOptions(invert=True))
    np.testing.assert_array_equal(inv[:, :, 0], np.float32(1) - plain[:, :, 0])
    assert not plain[:, :, 1].any() and (inv[:, :, 1] == 1).all()
    with pytest.raises(ValueError, match="invert"):
        normalize_image(x, options=NormalizeOptions(normalize=False, invert=True))
    np.testing.assert_array_equal(normalize_image(x, options=NormalizeOptions(normalize=False)), x)


def test_lowhigh(rng):
    x = _image(rng)
    x[:, :, 1] = 3.0
    out = normalize_image(x, options=NormalizeOptions(lowhigh=((10.0, 20.0), (1.0, 5.0)), invert=True))
    expected0 = ((x[:, :, 0].astype(np.float64) - 10).astype(np.float32) / 10.0).astype(np.float32)
    np.testing.assert_array_equal(out[:, :, 0], np.float32(1) - expected0)
    assert (out[:, :, 1] == 0.5).all()  # constant channels are scaled too
    flat = normalize_image(x, options=NormalizeOptions(lowhigh=(0.0, 2.0), normalize=False))
    np.testing.assert_array_equal(flat[:, :, 1], 1.5)


@pytest.mark.parametrize("options, match", [
    (NormalizeOptions(lowhigh=((0.0, 1.0),) * 3), "one pair per channel"),
    (NormalizeOptions(lowhigh=((1.0, 1.0), (0.0, 1.0))), "high != low"),
    (NormalizeOptions(percentile=(99.0, 1.0)), "percentile"),
    (NormalizeOptions(smooth_radius=-1.0), "radius"),
    (NormalizeOptions(tile_norm_blocksize=-5), "tile_norm_blocksize"),
])
def test_bad_normalize_options(rng, options, match):
    with pytest.raises(ValueError, match=match):
        normalize_image(_image(rng), options=options)


def test_smoothing_and_sharpening(rng):
    x = rng.normal(size=(80, 80, 1)).astype(np.float32) + 5
    smooth = normalize_image(x, options=NormalizeOptions(smooth_radius=3.0))
    plain = normalize_image(x, options=NormalizeOptions())

    def high_freq(a):
        return np.abs(np.diff(a[:, :, 0], axis=1)).mean()

    assert high_freq(smooth) < 0.3 * high_freq(plain)
    ramp = np.tile(np.linspace(0, 100, 80, dtype=np.float32), (80, 1))[:, :, None]
    ramp[40, 40] += 50.0
    sharp = normalize_image(ramp, options=NormalizeOptions(sharpen_radius=2.0))
    assert np.unravel_index(np.argmax(sharp[:, :, 0]), (80, 80)) == (40, 40)  # the ramp is removed, the spot kept


def test_tile_normalisation_flattens_gradients(rng):
    gain = np.linspace(1.0, 20.0, 256, dtype=np.float32)
    x = (rng.gamma(2.0, 50.0, (256, 256, 1)) * gain[None, :, None]).astype(np.float32)
    tiled = normalize_image(x, options=NormalizeOptions(tile_norm_blocksize=64))
    glob = normalize_image(x, options=NormalizeOptions())

    def contrast(a):
        p99 = np.percentile(a[:, :, 0], 99, axis=0)
        return p99[-48:-16].mean() / p99[16:48].mean()

    assert contrast(tiled) < 0.5 * contrast(glob)
    assert np.isfinite(tiled).all()


def test_tile_normalisation_is_transpose_symmetric(rng):
    """Grid smoothing runs along block rows *and* columns (upstream's row-only [quirk] is fixed)."""
    x = (rng.gamma(2.0, 50.0, (200, 200, 1)) * np.linspace(1, 30, 200, dtype=np.float32)[None, :, None])
    x = x.astype(np.float32)
    opts = NormalizeOptions(tile_norm_blocksize=48)
    a = normalize_image(x, options=opts)[:, :, 0]
    b = normalize_image(np.ascontiguousarray(x.transpose(1, 0, 2)), options=opts)[:, :, 0]
    np.testing.assert_allclose(a, b.T, rtol=1e-5, atol=1e-5)


def test_tile_normalisation_replaces_flat_blocks(rng):
    x = _image(rng, (192, 192, 1))
    x[:96, :96] = 5.0  # flat blocks borrow the range of their nearest textured neighbour
    out = normalize_image(x, options=NormalizeOptions(tile_norm_blocksize=64))
    assert np.isfinite(out).all() and np.abs(out).max() < 50
    flat = normalize_image(np.full((100, 100, 1), 2.0, np.float32), options=NormalizeOptions(tile_norm_blocksize=32))
    assert (flat == 0.0).all()  # constant channel -> 0 (fixed [quirk], docs/upstream-differences.md)


# ------------------------------------------------------------------------------------------ resize / pad

@pytest.mark.parametrize("shape", [(61, 47), (61, 47, 2), (61, 47, 3)])
def test_resize_image_is_opencv_bilinear(rng, shape):
    img = rng.random(shape, dtype=np.float32)
    out = resize_image(img, Ly=90, Lx=31)
    np.testing.assert_array_equal(out, cv2.resize(img, (31, 90), interpolation=cv2.INTER_LINEAR))
    assert out.shape == (90, 31) + shape[2:]


def test_resize_image_keeps_single_channel_axis_and_casts(rng):
    img = rng.integers(0, 100, (20, 30, 1)).astype(np.uint16)
    out = resize_image(img, Ly=40, Lx=60)
    assert out.shape == (40, 60, 1) and out.dtype == np.float32
    same = resize_image(img, Ly=20, Lx=30)
    np.testing.assert_array_equal(same, img.astype(np.float32))
    with pytest.raises(ValueError, match=">= 1"):
        resize_image(img, Ly=0, Lx=3)


@pytest.mark.parametrize("src, dst", [((61, 47), (100, 30)), ((1000, 999), (567, 1713)), ((3, 10007), (7, 5003))])
def test_resize_masks_is_opencv_nearest(rng, src, dst):
    masks = rng.integers(0, 65535, src, dtype=np.uint16)
    out = resize_masks(masks, Ly=dst[0], Lx=dst[1])
    np.testing.assert_array_equal(out, cv2.resize(masks, dst[::-1], interpolation=cv2.INTER_NEAREST))


def test_resize_masks_keeps_large_labels_exact(rng):
    masks = rng.integers(1 << 30, (1 << 30) + 1000, (40, 50), dtype=np.int64) * 3 + 1
    for dtype in (np.uint32, np.int64):
        out = resize_masks(masks.astype(dtype), Ly=77, Lx=33)
        assert out.dtype == dtype
        rows, cols = nearest_indices(40, 77), nearest_indices(50, 33)
        np.testing.assert_array_equal(out, masks[np.ix_(rows, cols)].astype(dtype))
    with pytest.raises(TypeError):
        resize_masks(masks.astype(np.float32), Ly=3, Lx=3)
    with pytest.raises(ValueError, match="2D"):
        resize_masks(masks[None], Ly=3, Lx=3)


def test_pad_amounts():
    assert [pad_amounts(L) for L in (10000, 1000, 100, 37)] == [(8, 8), (12, 12), (14, 14), (13, 14)]
    for L in range(1, 300):
        before, after = pad_amounts(L)
        assert (L + before + after) % 16 == 0 and 8 <= before <= after <= before + 1
        assert L + before + after == 16 * -(-L // 16) + 16
    with pytest.raises(ValueError):
        pad_amounts(0)
