"""Synthetic CyCIF generator (cellpose.data): determinism, OME metadata, labels, band rendering."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import tifffile

from cellpose.data import Scene, channel_names, make_image, write_preset
from cellpose.data.__main__ import main as data_main
from cellpose.data.cells import (COL_A, COL_B, COL_BRIGHT, COL_COS, COL_CX, COL_CY, COL_DIVIDING, COL_REACH,
                                 COL_THICK, N_COLS, reach)
from cellpose.data.presets import CYTOPLASM, DNA, MEMBRANE, NUCLEAR, channel_marker
from cellpose.data.render import SEAM_DIP, labels_from, raster, shade
from cellpose.data.features import MAX_SPOTS

SMALL = dict(size=(200, 170), crop=(160, 150))  # a small custom scene of the exemplar layout, 12 channels
OME_NS = "{http://www.openmicroscopy.org/Schemas/OME/2016-06}"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The small 12-channel scene written twice with seed 5 (API and CLI) and once with seed 6."""
    root = tmp_path_factory.mktemp("data")
    a = write_preset("exemplar", root / "a", seed=5, **SMALL)
    rc = data_main(["make", "--preset", "exemplar", "--out", str(root / "b"), "--seed", "5",
                    "--size", "200", "170", "--crop", "160", "150"])
    b = (root / "b" / "exemplar.ome.tif", root / "b" / "exemplar_masks.tif")
    c = write_preset("exemplar", root / "c", seed=6, **SMALL)
    return {"a": a, "b": b, "c": c, "rc": rc, "root": root}


def test_same_seed_gives_identical_bytes(written):
    assert written["rc"] == 0
    for pa, pb in zip(written["a"], written["b"]):
        assert pa.read_bytes() == pb.read_bytes(), pa.name


def test_different_seed_differs(written):
    for pa, pc in zip(written["a"], written["c"]):
        assert pa.read_bytes() != pc.read_bytes(), pa.name
    a, c = tifffile.imread(written["a"][0]), tifffile.imread(written["c"][0])
    assert np.mean(a != c) > 0.5


def test_worker_processes_give_identical_bytes(written, tmp_path):
    paths = write_preset("exemplar", tmp_path, seed=5, tile=64, workers=2, **SMALL)
    serial = write_preset("exemplar", tmp_path / "serial", seed=5, tile=64, **SMALL)
    for pa, pb in zip(paths, serial):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    np.testing.assert_array_equal(tifffile.imread(paths[0]), tifffile.imread(written["a"][0]))


def test_no_temporary_files_left(written):
    names = sorted(p.name for p in (written["root"] / "a").iterdir())
    assert names == ["exemplar.ome.tif", "exemplar_masks.tif"]


def test_ome_metadata(written):
    image_path, labels_path = written["a"]
    with tifffile.TiffFile(image_path) as tf:
        assert tf.is_ome and tf.is_bigtiff
        series = tf.series[0]
        assert series.axes == "CYX" and series.shape == (12, 160, 150) and series.dtype == np.uint16
        page = tf.pages[0]
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (256, 256)
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        pixels = ET.fromstring(tf.ome_metadata).find(f"{OME_NS}Image/{OME_NS}Pixels")
    names = [ch.get("Name") for ch in pixels.findall(f"{OME_NS}Channel")]
    assert names == channel_names(12)
    assert names[:5] == ["DNA_1", "CD45_1", "PanCK_1", "aSMA_1", "DNA_2"] and names[8] == "DNA_3"
    assert float(pixels.get("PhysicalSizeX")) == pytest.approx(0.65)
    assert float(pixels.get("PhysicalSizeY")) == pytest.approx(0.65)
    with tifffile.TiffFile(labels_path) as tf:
        assert tf.pages[0].is_tiled and tf.series[0].shape == (160, 150)
        assert tf.series[0].dtype == np.uint32


def test_files_match_in_memory_scene_and_crop(written):
    image = tifffile.imread(written["a"][0])
    labels = tifffile.imread(written["a"][1])
    scene = Scene((12, 200, 170), seed=5)
    for c in (0, 1, 5, 11):
        np.testing.assert_array_equal(image[c], scene.render(c, 0, 200, 0, 170)[:160, :150])
    np.testing.assert_array_equal(labels, scene.labels(0, 200, 0, 170)[:160, :150])


def test_nuclear_only_is_plane_zero(tmp_path, written):
    image_path, labels_path = write_preset("exemplar", tmp_path, channels="nuclear", seed=5, **SMALL)
    assert image_path.name == "exemplar_nuclear.ome.tif" and labels_path.name == "exemplar_nuclear_masks.tif"
    with tifffile.TiffFile(image_path) as tf:
        assert tf.series[0].shape == (160, 150)  # tifffile squeezes the single channel on reading
        assert len(tf.pages) == 1 and 'SizeC="1"' in tf.ome_metadata and 'Name="DNA_1"' in tf.ome_metadata
        plane = tf.asarray()
    np.testing.assert_array_equal(plane, tifffile.imread(written["a"][0])[0])


def test_make_image_deterministic_and_typed():
    img1, lab1 = make_image((4, 96, 80), seed=3)
    img2, lab2 = make_image((4, 96, 80), seed=3)
    img3, _ = make_image((4, 96, 80), seed=4)
    assert img1.dtype == np.uint16 and img1.shape == (4, 96, 80)
    assert lab1.dtype == np.uint32 and lab1.shape == (96, 80)
    np.testing.assert_array_equal(img1, img2)
    np.testing.assert_array_equal(lab1, lab2)
    assert not np.array_equal(img1, img3)


def test_labels_consistent_with_nuclear_channel():
    img, lab = make_image((1, 256, 256), seed=11)
    inside, outside = img[0][lab > 0].astype(float), img[0][lab == 0].astype(float)
    assert lab.max() > 0 and 20 < len(np.unique(lab)) < 2000
    assert inside.mean() > 3.0 * outside.mean()
    assert np.median(inside) > np.percentile(outside, 90)


@pytest.mark.parametrize("channel", [0, 1, 2, 5])  # DNA, membrane, cytoplasm, nuclear marker
def test_band_rendering_equals_whole(channel):
    kinds = {1: MEMBRANE, 2: CYTOPLASM, 5: NUCLEAR}
    if channel in kinds:
        assert channel_marker(channel)[0].kind == kinds[channel]
    scene = Scene((8, 150, 120), seed=3, diameter=(8, 20))
    whole = scene.render(channel, 0, 150, 0, 120)
    rows = np.concatenate([scene.render(channel, y, min(150, y + 7), 0, 120) for y in range(0, 150, 7)])
    cols = np.concatenate([scene.render(channel, 0, 150, x, min(120, x + 11)) for x in range(0, 120, 11)], 1)
    np.testing.assert_array_equal(rows, whole)
    np.testing.assert_array_equal(cols, whole)
    assert whole.std() > 0


def _round_nuclei(centres, radius=8.0):
    """Parameter table of round, untextured nuclei at ``centres`` (y, x)."""
    P = np.zeros((len(centres), N_COLS))
    for n, (cy, cx) in enumerate(centres):
        P[n, [COL_CY, COL_CX, COL_A, COL_B, COL_COS, COL_THICK]] = cy, cx, radius, radius, 1.0, 3.0
        P[n, COL_REACH] = radius + 3.0 + 1.5
    return P


def _dna(P):
    geom = raster(P, 0, 0, 40, 60)
    n = len(P)
    keys = np.zeros(3, np.uint64)
    spots = np.zeros((n, MAX_SPOTS, 4))
    img = shade(DNA, geom, np.ones(n), np.zeros(n), P[:, COL_THICK].copy(), spots, 0, 0, keys, 1.6, 100.0, 0.0)
    return img, labels_from(geom[0], geom[1], np.arange(1, n + 1))


def test_touching_nuclei_dip_along_their_shared_boundary():
    pair, pair_lab = _dna(_round_nuclei([(20.0, 24.0), (20.0, 36.0)]))  # overlapping: they meet at x = 30
    alone, _ = _dna(_round_nuclei([(20.0, 24.0)]))
    assert pair_lab[20, 29] == 1 and pair_lab[20, 31] == 2
    seam = pair[20, 29:32].min()
    assert seam < (1.0 - 0.8 * SEAM_DIP) * alone[20, 29:32].min()
    assert pair[20, 24] == pytest.approx(alone[20, 24])
    assert pair[20, 26] == pytest.approx(alone[20, 26])


def test_band_labels_equal_whole():
    scene = Scene((1, 180, 160), seed=2)
    whole = scene.labels(0, 180, 0, 160)
    bands = np.concatenate([scene.labels(y, min(180, y + 5), 0, 160) for y in range(0, 180, 5)])
    np.testing.assert_array_equal(bands, whole)
    assert len(np.unique(whole)) > 10


def test_some_tiles_are_empty_background():
    img, lab = make_image((1, 512, 512), seed=0)
    tiles = [(lab[y:y + 64, x:x + 64], img[0, y:y + 64, x:x + 64]) for y in range(0, 512, 64)
             for x in range(0, 512, 64)]
    empty = [im for lb, im in tiles if not lb.any()]
    assert 0 < len(empty) < len(tiles)
    assert max(float(im.mean()) for im in empty) < 600  # camera offset 180 + at most faint tissue glow


def test_nuclei_stay_within_reach():
    scene = Scene((1, 2000, 2000), seed=1)
    P, _, ids = scene.nuclei(0, 2000, 0, 2000)
    g = scene.grid
    nx = math.ceil(2000 / g)
    cell = (ids - 1) // 2
    cy, cx = (cell // nx + 0.5) * g, (cell % nx + 0.5) * g
    dist = np.hypot(P[:, COL_CY] - cy, P[:, COL_CX] - cx) + P[:, COL_REACH]
    assert dist.max() <= reach(scene.diameter[1])
    assert np.all(np.diff(ids) > 0)


def test_population_has_dividing_bright_and_dim_nuclei():
    P, types, _ = Scene((1, 3000, 3000), seed=1).nuclei(0, 3000, 0, 3000)
    n = len(P)
    assert n > 3000
    assert 0.003 < np.mean(P[:, COL_DIVIDING] > 0) < 0.05
    assert 0.01 < np.mean(P[:, COL_BRIGHT] > 2.4) < 0.1
    assert 0.02 < np.mean(P[:, COL_BRIGHT] < 0.4) < 0.1
    assert len(np.unique(types)) == 6


def test_marker_only_in_subset_of_cells():
    img, lab = make_image((2, 384, 384), seed=4)  # channel 1 = CD45 (membrane, immune cells only)
    ids, inv = np.unique(lab, return_inverse=True)
    means = np.bincount(inv.ravel(), weights=img[1].ravel().astype(float))[1:] / np.bincount(inv.ravel())[1:]
    background = np.median(img[1][lab == 0])
    positive = np.mean(means > background + 300)
    assert 0.05 < positive < 0.95


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown preset 'nope'.*exemplar"):
        write_preset("nope", tmp_path)
    with pytest.raises(ValueError, match="crop"):
        write_preset("exemplar", tmp_path, size=(64, 64), crop=(65, 10))
    with pytest.raises(ValueError, match="channels"):
        write_preset("exemplar", tmp_path, channels="dna")
    with pytest.raises(ValueError, match="diameter"):
        make_image((1, 32, 32), seed=0, diameter=(20, 10))
    with pytest.raises(ValueError, match="shape"):
        make_image((32, 32), seed=0)
    assert list(tmp_path.iterdir()) == []


def test_cli_rejects_bad_preset(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        data_main(["make", "--preset", "nope", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("render failed")

    monkeypatch.setattr(Scene, "render", boom)
    with pytest.raises(RuntimeError, match="render failed"):
        write_preset("exemplar", tmp_path, size=(64, 64))
    assert list(tmp_path.iterdir()) == []
