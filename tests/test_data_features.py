"""Realism features of the synthetic nuclei (issue 14): spots, debris, defocus, culture layout, image kinds."""
from __future__ import annotations

import numpy as np
import pytest

from cellpose.data import Scene, cells, generator, sets
from cellpose.data.cells import (COL_A, COL_B, COL_BRIGHT, COL_CONDENSED, COL_COS, COL_CX, COL_CY, COL_DIVIDING,
                                 COL_H, COL_REACH, COL_TEX, COL_THICK, N_COLS)
from cellpose.data.features import MAX_SPOTS, debris, focus_mix, nucleus_spots, spot_factor
from cellpose.data.noise import stream_key
from cellpose.data.presets import DNA
from cellpose.data.render import raster, shade

_AMP = np.array(cells._AMP)  # harmonic amplitude per cell type

# A window of seed 1 (2000 × 2000 scene) that is half in focus, half out of focus (found by scanning the map).
FOCUS_SEED, FOCUS_WIN = 1, (608, 864, 128, 384)


def _grid_nuclei(n_side, radius, spacing):
    """Round nuclei of ``radius`` on an ``n_side`` × ``n_side`` grid; rows in label order."""
    P = np.zeros((n_side * n_side, N_COLS))
    for n in range(n_side * n_side):
        cy, cx = spacing * (n // n_side + 0.5), spacing * (n % n_side + 0.5)
        P[n, [COL_CY, COL_CX, COL_A, COL_B, COL_COS, COL_THICK]] = cy, cx, radius, radius, 1.0, 3.0
        P[n, COL_REACH] = radius + 3.0 + 1.5
    return P


def _shade_dna(P, spots, size):
    geom = raster(P, 0, 0, size, size)
    n = len(P)
    img = shade(DNA, geom, np.ones(n), np.zeros(n), P[:, COL_THICK].copy(), spots, 0, 0, np.zeros(3, np.uint64),
                1.6, 100.0, 0.0)
    return img, geom[0]


def test_nucleoli_darken_and_chromocentres_brighten():
    P = _grid_nuclei(6, 20.0, 50.0)  # 36 round nuclei of radius 20 in a 300 × 300 window
    S = nucleus_spots(P, np.arange(1, 37, dtype=np.int64), stream_key(7, 10))
    with_spots, owner = _shade_dna(P, S, 300)
    plain, _ = _shade_dna(P, np.zeros_like(S), 300)
    n_dark = n_bright = 0
    for i in range(len(P)):
        for k in range(MAX_SPOTS):
            amp = S[i, k, 3]
            if amp == 0.0:
                continue
            y, x = int(round(S[i, k, 0])), int(round(S[i, k, 1]))
            assert owner[y, x] == i  # spots lie inside their nucleus
            ratio = with_spots[y, x] / plain[y, x]
            assert ratio == pytest.approx(spot_factor(S, i, float(y), float(x)), rel=1e-5)
            others = S[i, :, 3][np.arange(MAX_SPOTS) != k]
            if amp < 0 and not (others > 0).any():  # a nucleolus, no chromocentre that could overlap it
                assert ratio < 0.8  # nucleoli are 30-60 % darker at their centre
                n_dark += 1
            if amp > 0 and not (others < 0).any():
                assert ratio > 1.15  # chromocentres are 40-100 % brighter at their centre
                n_bright += 1
    assert n_dark >= 3 and n_bright >= 3
    # away from every spot the signal is unchanged
    far = np.ones(with_spots.shape, bool)
    yy, xx = np.mgrid[:300, :300]
    for i, k in zip(*np.nonzero(S[:, :, 3])):
        far &= (yy - S[i, k, 0]) ** 2 + (xx - S[i, k, 1]) ** 2 >= 1.0 / S[i, k, 2]
    np.testing.assert_array_equal(with_spots[far], plain[far])
    assert (with_spots != plain).any()


def test_spot_counts_and_ranges():
    P = _grid_nuclei(40, 10.0, 30.0)  # 1600 nuclei
    S = nucleus_spots(P, np.arange(1, 1601, dtype=np.int64), stream_key(3, 10))
    amp = S[:, :, 3]
    nucleoli, chromo = (amp < 0).sum(1), (amp > 0).sum(1)
    assert nucleoli.max() == 3 and chromo.max() == 2
    assert 0.2 < np.mean(nucleoli == 0) < 0.3  # 0, 1, 2, 3 nucleoli with 25 % each
    assert 0.2 < np.mean(chromo == 0) < 0.3  # each of the two chromocentres with 50 %
    assert np.all((amp[amp < 0] >= -0.6) & (amp[amp < 0] < -0.3))
    assert np.all((amp[amp > 0] >= 0.4) & (amp[amp > 0] < 1.0))
    radius = 1.0 / np.sqrt(S[:, :, 2][amp != 0]) / 10.0  # in units of the minor semi-axis
    assert radius.min() >= 0.06 - 1e-9 and radius.max() < 0.22
    off = np.hypot(S[:, :, 0] - P[:, None, COL_CY], S[:, :, 1] - P[:, None, COL_CX])[amp != 0]
    assert off.max() <= 0.55 * 10.0 + 1e-9


def test_condensed_and_dividing_nuclei_get_no_spots():
    P = _grid_nuclei(10, 10.0, 30.0)
    P[:30, COL_CONDENSED] = 1.0
    P[30:60, COL_DIVIDING] = 1.0
    S = nucleus_spots(P, np.arange(1, 101, dtype=np.int64), stream_key(0, 10))
    assert not S[:60].any()
    assert (S[60:, :, 3] != 0).any(1).mean() > 0.8
    # in a generated scene too
    P, _, ids = Scene((1, 1500, 1500), seed=2).nuclei(0, 1500, 0, 1500)
    S = nucleus_spots(P, ids, stream_key(2, 10))
    special = (P[:, COL_CONDENSED] > 0) | (P[:, COL_DIVIDING] > 0)
    assert special.sum() >= 10
    assert not S[special].any()
    assert (S[~special, :, 3] != 0).any(1).mean() > 0.8


def test_debris_is_unlabelled_signal(monkeypatch):
    scene = Scene((1, 600, 600), seed=5, defocus=0.0)
    labels = scene.labels(0, 600, 0, 600)
    img = scene.render(0, 0, 600, 0, 600).astype(np.float64)
    monkeypatch.setattr(generator, "debris", lambda *args: None)
    clean = scene.render(0, 0, 600, 0, 600).astype(np.float64)
    np.testing.assert_array_equal(scene.labels(0, 600, 0, 600), labels)  # debris is never labelled
    lo, hi = scene.diameter
    r = generator.BLUR_RADIUS  # debris within r pixels of a pixel reaches it through the blur
    field = np.zeros((600 + 2 * r, 600 + 2 * r), np.float32)
    debris(field, -r, -r, stream_key(5, 11), 3.0 * hi, 0.15 * lo + 0.5, scene.dna_level, 0.12)
    assert field.max() > 0.3 * scene.dna_level
    reached = np.zeros((600, 600), bool)  # pixels whose blur kernel (a (2r+1)² square) touches debris
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            reached |= field[dy:dy + 600, dx:dx + 600] > 0
    added = img - clean
    np.testing.assert_array_equal(added[~reached], 0.0)
    assert 0.0 < reached.mean() < 0.02
    bright = (added > 0.03 * scene.dna_level) & (labels == 0)  # clearly brighter background, unlabelled
    assert bright.sum() >= 5
    assert img[bright].mean() > 2.0 * np.median(img[labels == 0])


def test_debris_window_independent():
    key = stream_key(9, 11)
    whole = np.zeros((120, 150), np.float32)
    debris(whole, -30, 40, key, 12.0, 8.0, 5000.0, 0.6)
    assert (whole > 0).mean() > 0.3  # overlapping blobs that cross the band edges
    bands = []
    for y in range(0, 120, 7):
        band = np.zeros((min(120, y + 7) - y, 150), np.float32)
        debris(band, -30 + y, 40, key, 12.0, 8.0, 5000.0, 0.6)
        bands.append(band)
    cols = []
    for x in range(0, 150, 11):
        col = np.zeros((120, min(150, x + 11) - x), np.float32)
        debris(col, -30, 40 + x, key, 12.0, 8.0, 5000.0, 0.6)
        cols.append(col)
    assert np.concatenate(bands).tobytes() == whole.tobytes()
    assert np.concatenate(cols, 1).tobytes() == whole.tobytes()


def _focus_weight(seed, y0, y1, x0, x1):
    z = np.zeros((y1 - y0, x1 - x0), np.float32)
    return focus_mix(z, np.ones_like(z), y0, x0, stream_key(seed, 12), generator._FOCUS_SCALE)


def _gradient_energy(img, mask):
    gy, gx = np.gradient(img.astype(np.float64))
    return float((gy ** 2 + gx ** 2)[mask].mean())


def test_defocus_blurs_only_out_of_focus_regions():
    sharp = Scene((1, 2000, 2000), seed=FOCUS_SEED, culture=0.8, defocus=0.0)
    soft = Scene((1, 2000, 2000), seed=FOCUS_SEED, culture=0.8, defocus=4.0)
    w = _focus_weight(FOCUS_SEED, *FOCUS_WIN)
    in_focus, out_focus = w == 0.0, w >= 0.99
    assert in_focus.mean() > 0.2 and out_focus.mean() > 0.2  # the window straddles the focus map's edge
    np.testing.assert_array_equal(sharp.labels(*FOCUS_WIN), soft.labels(*FOCUS_WIN))
    a, b = sharp.render(0, *FOCUS_WIN), soft.render(0, *FOCUS_WIN)
    np.testing.assert_array_equal(a[in_focus], b[in_focus])
    assert _gradient_energy(b, out_focus) < 0.5 * _gradient_energy(a, out_focus)
    assert abs(float(b[out_focus].mean()) / float(a[out_focus].mean()) - 1.0) < 0.05  # blur keeps the signal


def test_focus_map_fraction():
    w = _focus_weight(0, 0, 500, 0, 4000)[::5, ::5]
    w = np.concatenate([w] + [_focus_weight(0, y, y + 500, 0, 4000)[::5, ::5] for y in range(500, 4000, 500)])
    assert 0.1 < (w > 0.5).mean() < 0.4 and (w == 0).mean() > 0.4


def test_defocus_window_independent():
    scene = Scene((1, 2000, 2000), seed=FOCUS_SEED, defocus=4.0, culture=0.8)
    y0, x0 = FOCUS_WIN[0] + 60, FOCUS_WIN[2] + 60
    assert scene.halo > generator.BLUR_RADIUS
    w = _focus_weight(FOCUS_SEED, y0, y0 + 120, x0, x0 + 110)
    assert (w > 0.5).any() and (w == 0).any()
    whole = scene.render(0, y0, y0 + 120, x0, x0 + 110)
    rows = np.concatenate([scene.render(0, y, min(y0 + 120, y + 7), x0, x0 + 110) for y in range(y0, y0 + 120, 7)])
    cols = np.concatenate([scene.render(0, y0, y0 + 120, x, min(x0 + 110, x + 11))
                           for x in range(x0, x0 + 110, 11)], 1)
    assert rows.tobytes() == whole.tobytes() and cols.tobytes() == whole.tobytes()


def _tiles_with_nuclei(labels, t=64):
    Y, X = labels.shape
    return np.mean([labels[y:y + t, x:x + t].any() for y in range(0, Y, t) for x in range(0, X, t)])


def test_culture_monolayer_covers_the_image():
    for seed in (0, 1):
        culture = Scene((1, 768, 768), seed=seed, culture=0.6).labels(0, 768, 0, 768)
        tissue = Scene((1, 768, 768), seed=seed).labels(0, 768, 0, 768)
        assert _tiles_with_nuclei(culture) > 0.9
        assert _tiles_with_nuclei(tissue) < 0.85
        assert (culture > 0).mean() > (tissue > 0).mean()


def test_population_has_condensed_lobed_and_spindle_nuclei():
    P, types, _ = Scene((1, 2000, 2000), seed=1).nuclei(0, 2000, 0, 2000)
    assert len(P) > 2000
    condensed = P[:, COL_CONDENSED] > 0
    assert 0.008 < condensed.mean() < 0.04  # 2 % of non-dividing nuclei
    assert not (condensed & (P[:, COL_DIVIDING] > 0)).any()
    ratio = P[:, COL_B] / P[:, COL_A]
    assert ratio[condensed].min() >= 0.85 - 1e-9  # round
    assert np.all(P[condensed, COL_TEX] == 0.1)  # smooth
    assert np.median(P[condensed, COL_BRIGHT]) > 2.0 * np.median(P[~condensed, COL_BRIGHT])  # bright
    d = 2.0 * np.sqrt(P[:, COL_A] * P[:, COL_B])
    assert np.median(d[condensed]) < 0.6 * np.median(d[~condensed])  # small
    assert 0.03 < np.mean(ratio < 0.3) < 0.2  # spindles (stroma, endothelium); no ordinary nucleus is below 0.4
    hmax = np.abs(P[:, COL_H:COL_H + 6]).max(1)
    lobed = hmax > _AMP[types] + 1e-12  # only lobed outlines exceed their type's harmonic amplitude
    assert 0.02 < lobed.mean() < 0.2
    assert lobed[types == 4].mean() > 0.2  # macrophages are lobed most often (35 %)
    assert not (lobed & condensed).any()


# ---------------------------------------------------------------- sets


def test_held_out_and_training_seeds_never_overlap(monkeypatch):
    seen = []
    monkeypatch.setattr(sets, "kind_image", lambda name, *, seed, size, jitter=False: seen.append(
        (name, seed, jitter)) or (None, None))
    sets.training_images(per_kind=100, size=8)
    train = [s for _, s, j in seen]
    assert all(j for _, _, j in seen) and len(train) == 100 * len(sets.KINDS) == len(set(train))
    seen.clear()
    for name in sets.KINDS:
        sets.held_out(name, n=100, size=8)
    held = [s for _, s, j in seen]
    assert not any(j for _, _, j in seen) and len(held) == len(set(held))
    seen.clear()
    for name in sets.KINDS:
        sets.validation(name, n=100, size=8)
    val = [s for _, s, j in seen]
    assert not any(j for _, _, j in seen) and len(val) == len(set(val))
    assert not set(train) & set(held) and not set(val) & (set(train) | set(held))
    assert min(held) >= sets.HELD_OUT_SEED and min(train) >= sets.TRAIN_SEED and min(val) >= sets.VALIDATION_SEED
    seen.clear()
    sets.training_images(per_kind=60, size=8, extra={"crowded": 40, "dim": 5})
    counts = {name: sum(n == name for n, _, _ in seen) for name in sets.KINDS}
    assert counts["crowded"] == 100 and counts["dim"] == 65 and counts["large"] == 60
    assert {s for _, s, _ in seen} <= set(train)
    with pytest.raises(ValueError, match="extra"):
        sets.training_images(per_kind=61, size=8, extra={"crowded": 40})
    with pytest.raises(ValueError, match="'bogus'"):
        sets.training_images(per_kind=1, size=8, extra={"bogus": 1})
    with pytest.raises(ValueError, match=">= 0"):
        sets.training_images(per_kind=5, size=8, extra={"dim": -1})


def test_kind_image_deterministic_and_jitter_changes_intensity():
    a, la = sets.kind_image("crowded", seed=1003, size=96)
    b, lb = sets.kind_image("crowded", seed=1003, size=96)
    assert a.dtype == np.uint16 and la.dtype == np.uint32 and a.shape == la.shape == (96, 96)
    assert a.tobytes() == b.tobytes() and la.tobytes() == lb.tobytes()
    assert (la > 0).mean() > 0.2
    j, lj = sets.kind_image("crowded", seed=1003, size=96, jitter=True)
    np.testing.assert_array_equal(lj, la)  # jitter changes brightness and blur, not the nuclei
    fg = la > 0
    assert abs(np.log((j[fg].mean() - 180.0) / (a[fg].mean() - 180.0))) > np.log(1.3)


@pytest.mark.parametrize("name", sorted(sets.KINDS))
def test_every_kind_renders(name):
    img, lab = sets.kind_image(name, seed=9000, size=64)
    assert img.shape == lab.shape == (64, 64) and img.dtype == np.uint16 and lab.dtype == np.uint32
    assert img.std() > 0


def test_sets_reject_bad_arguments():
    with pytest.raises(ValueError, match="'bogus'.*crowded"):
        sets.kind_image("bogus", seed=0)
    with pytest.raises(ValueError, match="'bogus'"):
        sets.held_out("bogus")
    for n in (0, 101):
        with pytest.raises(ValueError, match="per_kind"):
            sets.training_images(per_kind=n)
        with pytest.raises(ValueError, match="n must"):
            sets.held_out("dim", n=n)


@pytest.mark.parametrize("field, value", [("dna_level", 0.5), ("dna_level", 70000.0), ("dna_level", float("nan")),
                                          ("defocus", -0.1), ("defocus", 8.5), ("culture", -0.01),
                                          ("culture", 1.5), ("culture", float("nan"))])
def test_scene_rejects_out_of_range(field, value):
    with pytest.raises(ValueError, match=field):
        Scene((1, 32, 32), **{field: value})


def test_annotated_keeps_the_largest_piece_of_each_label_and_drops_small_ones():
    lab = np.zeros((12, 20), np.uint32)
    lab[1:6, 1:6] = 7            # 25 px piece of label 7 ...
    lab[8:10, 1:3] = 7           # ... and a 4 px piece cut off by a neighbour
    lab[1:4, 10:14] = 3          # 12 px: under the default minimum
    lab[5:11, 10:19] = 900000    # 54 px, a large label value
    before = lab.copy()
    out = sets.annotated(lab)
    assert out.dtype == lab.dtype and np.array_equal(lab, before)
    expect = np.zeros_like(lab)
    expect[1:6, 1:6] = 7
    expect[5:11, 10:19] = 900000
    np.testing.assert_array_equal(out, expect)
    np.testing.assert_array_equal(sets.annotated(lab, min_area=12)[1:4, 10:14], 3)


def test_annotated_without_background_with_huge_values_and_bad_input():
    lab = np.full((6, 6), 5, np.uint16)
    lab[:, 4:] = 9
    np.testing.assert_array_equal(sets.annotated(lab, min_area=1), lab)
    big = np.zeros((4, 4), np.uint64)
    big[:2, :2], big[2:, 2:] = 2 ** 60, 2 ** 60 + 1  # beyond float64's integers: must stay two labels
    np.testing.assert_array_equal(sets.annotated(big, min_area=1), big)
    assert sets.annotated(np.zeros((0, 3), np.uint32)).shape == (0, 3)
    for bad in (np.full((3, 3), -1), np.zeros((3, 3), np.float32), np.zeros((2, 3, 3), np.uint32)):
        with pytest.raises(ValueError, match="non-negative integers"):
            sets.annotated(bad)


@pytest.mark.parametrize("name", ["crowded", "tissue"])
def test_kind_labels_are_connected_and_not_smaller_than_min_size(name):
    from scipy import ndimage as ndi
    _, lab = sets.kind_image(name, seed=9001, size=128)
    values, areas = np.unique(lab[lab > 0], return_counts=True)
    assert len(values) > 5 and areas.min() >= sets.MIN_LABEL_AREA
    assert all(ndi.label(lab == v)[1] == 1 for v in values)
