"""Tile grid and taper weights (``cellpose.inference.tiling``)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cellpose.inference.tiling import (augment_starts, axis_weight_sums, make_grid, taper_mask, taper_profiles,
                                       tile_starts)


def test_tile_starts_spec_examples():
    big = tile_starts(10016, bsize=224, overlap=0.1)
    assert len(big) == 54 and big.dtype == np.int64
    assert list(big[:6]) == [0, 184, 369, 554, 739, 923] and big[-1] == 9792
    assert list(tile_starts(1016, bsize=224, overlap=0.1)) == [0, 158, 316, 475, 633, 792]
    assert list(tile_starts(224, bsize=224, overlap=0.1)) == [0]
    assert list(tile_starts(48, bsize=224, overlap=0.1)) == [0]


@pytest.mark.parametrize("overlap, clamped", [(0.0, 0.05), (0.01, 0.05), (0.9, 0.5), (3.0, 0.5)])
def test_overlap_is_clamped_before_counting(overlap, clamped):
    for Lp in (240, 1016, 5000):
        starts = tile_starts(Lp, bsize=224, overlap=overlap)
        np.testing.assert_array_equal(starts, tile_starts(Lp, bsize=224, overlap=clamped))
        assert len(starts) == math.ceil((1 + 2 * clamped) * Lp / 224)


@pytest.mark.parametrize("bsize, overlap", [(224, 0.1), (224, 0.5), (128, 0.05), (96, 0.3)])
def test_tiles_cover_every_pixel(bsize, overlap):
    for Lp in list(range(32, 700, 16)) + [10016]:
        starts = tile_starts(Lp, bsize=bsize, overlap=overlap)
        length = min(bsize, Lp)
        assert starts[0] == 0 and starts[-1] + length == Lp
        assert np.all(np.diff(starts) > 0) and np.all(np.diff(starts) <= length)


def test_augment_starts():
    for Lp in (224, 240, 512, 1000):
        starts = augment_starts(Lp, bsize=224)
        assert len(starts) == max(2, math.ceil(2 * Lp / 224))
        assert starts[0] == 0 and starts[-1] == Lp - 224
    with pytest.raises(ValueError, match="shorter"):
        augment_starts(100, bsize=224)


def test_make_grid_plain_and_small():
    grid = make_grid(320, 64, bsize=224, tile_overlap=0.1, augment=False)
    assert grid.shape == (320, 64) and grid.tile == (224, 64)
    assert grid.ntiles == 2 and grid.origin(1) == (96, 0)
    assert not grid.flips.any() and grid.flips.shape == (2, 2)


def test_make_grid_augment_flip_pattern():
    grid = make_grid(64, 480, bsize=224, tile_overlap=0.1, augment=True)
    assert grid.shape == (224, 480) and grid.tile == (224, 224)
    ny, nx = len(grid.ystarts), len(grid.xstarts)
    assert (ny, nx) == (2, 5)
    for k in range(grid.ntiles):
        j, i = divmod(k, nx)
        assert tuple(grid.flips[k]) == (i % 2 == 1, j % 2 == 1)


def test_taper_values():
    w = taper_mask(224, 224)
    wy, wx = taper_profiles(224, 224)
    np.testing.assert_allclose(wy[[0, 5, 10, 19, 20, 30]], [0.069, 0.126, 0.220, 0.483, 0.517, 0.802], atol=1e-3)
    assert w.dtype == np.float64 and w.shape == (224, 224)
    assert w[112, 112] > 0.9999 and abs(w[0, 112] - 0.0691) < 1e-4 and abs(w[0, 0] - 0.00478) < 1e-5
    np.testing.assert_array_equal(w, w[::-1, ::-1])
    np.testing.assert_array_equal(w, np.outer(wy, wx))


def test_taper_crops_are_central():
    wy, wx = taper_profiles(100, 240)
    full, _ = taper_profiles(240, 240)
    np.testing.assert_array_equal(wx, full)
    np.testing.assert_array_equal(wy, full[70:170])
    assert taper_mask(37, 240).shape == (37, 240) and (taper_mask(37, 240) > 0).all()


def _brute_weights(grid):
    """Sum of the 2D taper masks of every tile, float64 (what upstream stores as Navg)."""
    navg = np.zeros(grid.shape)
    w = taper_mask(*grid.tile)
    for k in range(grid.ntiles):
        y0, x0 = grid.origin(k)
        navg[y0: y0 + grid.tile[0], x0: x0 + grid.tile[1]] += w
    return navg


@pytest.mark.parametrize("shape, augment", [((528, 400), False), ((64, 48), False), ((320, 272), True)])
def test_axis_weight_sums_factorise_the_normaliser(shape, augment):
    grid = make_grid(*shape, bsize=224, tile_overlap=0.1, augment=augment)
    wy, wx = taper_profiles(*grid.tile)
    Wy = axis_weight_sums(grid.ystarts, wy, grid.shape[0])
    Wx = axis_weight_sums(grid.xstarts, wx, grid.shape[1])
    navg = _brute_weights(grid)
    assert (navg > 0).all()
    np.testing.assert_allclose(np.outer(Wy, Wx), navg, rtol=1e-14)


def test_averaging_a_constant_gives_the_constant():
    grid = make_grid(528, 400, bsize=224, tile_overlap=0.1, augment=False)
    w = taper_mask(*grid.tile)
    acc = np.zeros(grid.shape, np.float32)
    value = np.float32(0.7)
    for k in range(grid.ntiles):
        y0, x0 = grid.origin(k)
        view = acc[y0: y0 + grid.tile[0], x0: x0 + grid.tile[1]]
        view += value * w
    wy, wx = taper_profiles(*grid.tile)
    out = (acc / np.outer(axis_weight_sums(grid.ystarts, wy, 528), axis_weight_sums(grid.xstarts, wx, 400)))
    np.testing.assert_allclose(out.astype(np.float32), value, rtol=2e-7)


@pytest.mark.parametrize("bad", [dict(Lp=0), dict(bsize=0)])
def test_bad_sizes_raise(bad):
    kwargs = dict(Lp=100, bsize=224, overlap=0.1) | bad
    with pytest.raises(ValueError):
        tile_starts(kwargs.pop("Lp"), **kwargs)
