"""Streamed whole-slide label outputs: NGFF label store + pyramid, pyramidal OME-TIFF, per-object table."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellpose.io import ngff, objects, pyramid

SHAPE = (1000, 1300)
CHUNK = (256, 384)
PIXEL_SIZE = 0.65
N_LEVELS = 4  # 1000 x 1300 -> 500 x 650 -> 250 x 325 -> 125 x 163 (<= 256)


# ----------------------------------------------------------------------------------------------- helpers

def _disk_labels(seed: int, shape=SHAPE, n_cells: int = 900) -> np.ndarray:
    """Overlapping random disks with distinct uint32 labels, a third of them above 65,535.

    Later disks cut into earlier ones, so objects are non-convex, some vanish, and many cross chunks.
    """
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint32)
    ids = rng.choice(np.arange(1, 200_000), size=n_cells, replace=False).astype(np.uint32)
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    for label, cy, cx, r in zip(ids, rng.integers(0, shape[0], n_cells), rng.integers(0, shape[1], n_cells),
                                rng.integers(3, 30, n_cells)):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = label
    labels[500:503, :] = 4_000_000_000  # one thin object spanning every chunk column
    return labels


class _RecordingArray:
    """A 2-D array-like over an ndarray that records every read and can fail on the n-th one."""

    def __init__(self, data: np.ndarray, *, chunks=None, fail_on_read=None):
        self.data, self.chunks, self.fail_on_read = data, chunks, fail_on_read
        self.shape, self.dtype = data.shape, data.dtype
        self.reads = []

    def __getitem__(self, key):
        self.reads.append(self.data[key].shape)
        if self.fail_on_read is not None and len(self.reads) >= self.fail_on_read:
            raise RuntimeError("simulated read failure")
        return self.data[key]


def _fill_store(path: Path, labels: np.ndarray, *, chunk=CHUNK, block=(300, 500), **kwargs):
    """Create a store and fill level 0 in blocks that are not chunk-aligned, like a blockwise writer."""
    level0 = ngff.create_label_store(path, shape=labels.shape, chunk=chunk, **kwargs)
    for window in ngff.chunk_windows(labels.shape, block):
        level0[window] = labels[window]
    return level0


def _tree_bytes(root: Path) -> dict:
    """``{relative path: bytes}`` of every file under ``root``."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return _disk_labels(seed=20261130)


@pytest.fixture(scope="module")
def store(tmp_path_factory, labels) -> Path:
    """A store with level 0 filled and the pyramid built (read-only for the tests)."""
    path = tmp_path_factory.mktemp("ngff") / "slide.zarr"
    _fill_store(path, labels, pixel_size=PIXEL_SIZE)
    ngff.build_pyramid(path)
    return path


# ----------------------------------------------------------------------------------------------- NGFF store

def test_label_image_exercises_uint32_and_partial_chunks(labels):
    assert labels.max() > 65535 and np.count_nonzero(np.unique(labels) > 65535) > 100
    assert SHAPE[0] % CHUNK[0] and SHAPE[1] % CHUNK[1]


def test_level0_round_trip_and_array_format(store, labels):
    level0 = ngff.open_label_level(store, 0)
    np.testing.assert_array_equal(level0[:], labels)
    assert level0.dtype == np.uint32 and level0.chunks == CHUNK and level0.shape == SHAPE
    zarray = _read_json(store / "labels" / "cells" / "0" / ".zarray")
    assert zarray["zarr_format"] == 2 and zarray["dtype"] == "<u4" and zarray["fill_value"] == 0
    assert zarray["compressor"]["id"] == "zlib" and zarray["dimension_separator"] == "/"
    assert (store / "labels" / "cells" / "0" / "3" / "3").is_file()  # partial corner chunk, "/" key


def test_pyramid_levels_are_strided_downsamples(store, labels):
    for k in range(N_LEVELS):
        level = ngff.open_label_level(store, k)
        assert level.chunks == tuple(min(c, s) for c, s in zip(CHUNK, level.shape)) and level.dtype == np.uint32
        np.testing.assert_array_equal(level[:], labels[::2 ** k, ::2 ** k])
    with pytest.raises(Exception):
        ngff.open_label_level(store, N_LEVELS)


def test_ngff_labels_layout_and_multiscales(store):
    assert _read_json(store / ".zgroup") == {"zarr_format": 2}
    assert _read_json(store / "labels" / ".zattrs") == {"labels": ["cells"]}
    attrs = _read_json(store / "labels" / "cells" / ".zattrs")
    assert attrs["image-label"]["version"] == "0.4"
    (multiscale,) = attrs["multiscales"]
    assert multiscale["version"] == "0.4"
    assert [(a["name"], a["type"], a["unit"]) for a in multiscale["axes"]] == [
        ("y", "space", "micrometer"), ("x", "space", "micrometer")]
    datasets = multiscale["datasets"]
    assert [d["path"] for d in datasets] == [str(k) for k in range(N_LEVELS)]
    for k, dataset in enumerate(datasets):
        (transform,) = dataset["coordinateTransformations"]
        assert transform["type"] == "scale"
        np.testing.assert_allclose(transform["scale"], [PIXEL_SIZE * 2 ** k] * 2)


def test_metadata_lists_only_existing_levels(tmp_path, labels):
    path = tmp_path / "s.zarr"
    _fill_store(path, labels)
    attrs = _read_json(path / "labels" / "cells" / ".zattrs")
    assert [d["path"] for d in attrs["multiscales"][0]["datasets"]] == ["0"]
    assert "unit" not in attrs["multiscales"][0]["axes"][0]
    assert ngff.build_pyramid(path, min_size=100) == [(1000, 1300), (500, 650), (250, 325), (125, 163),
                                                        (63, 82)]
    assert ngff.build_pyramid(path, min_size=700) == [(1000, 1300), (500, 650)]
    attrs = _read_json(path / "labels" / "cells" / ".zattrs")
    assert [d["path"] for d in attrs["multiscales"][0]["datasets"]] == ["0", "1"]
    assert sorted(p.name for p in (path / "labels" / "cells").iterdir() if not p.name.startswith(".")) == ["0", "1"]
    assert ngff.build_pyramid(path, min_size=5000) == [(1000, 1300)]


@pytest.mark.parametrize("chunk", [(255, 383), (97, 64)])
def test_pyramid_with_odd_and_small_chunks(tmp_path, chunk):
    image = _disk_labels(seed=7, shape=(613, 451), n_cells=200)
    path = tmp_path / "odd.zarr"
    _fill_store(path, image, chunk=chunk, name="nuclei")
    shapes = ngff.build_pyramid(path, name="nuclei", min_size=40)
    assert max(shapes[-1]) <= 40 < max(shapes[-2])
    for k, shape in enumerate(shapes):
        expected = image[::2 ** k, ::2 ** k]
        assert shape == expected.shape
        np.testing.assert_array_equal(ngff.open_label_level(path, k, name="nuclei")[:], expected)


def test_zarr_store_is_byte_identical_when_rebuilt(tmp_path, labels):
    trees = []
    for run in ("a", "b"):
        path = tmp_path / run / "slide.zarr"
        path.parent.mkdir()
        _fill_store(path, labels, pixel_size=PIXEL_SIZE, block=(400, 333) if run == "a" else (1000, 1300))
        ngff.build_pyramid(path)
        trees.append(_tree_bytes(path))
    assert len(trees[0]) > 4 * N_LEVELS and trees[0].keys() == trees[1].keys()
    assert all(trees[0][name] == trees[1][name] for name in trees[0])


def test_create_refuses_existing_store_unless_overwrite(tmp_path, labels):
    path = tmp_path / "s.zarr"
    _fill_store(path, labels[:300, :300], chunk=(128, 128))
    with pytest.raises(FileExistsError):
        ngff.create_label_store(path, shape=(10, 10), chunk=(8, 8))
    level0 = ngff.create_label_store(path, shape=(10, 10), chunk=(8, 8), overwrite=True)
    assert level0.shape == (10, 10) and not level0[:].any()
    assert not (path / "labels" / "cells" / "0" / "2").exists()  # old chunks gone


def test_chunk_windows_tile_the_image_once():
    cover = np.zeros((10, 13), dtype=int)
    for window in ngff.chunk_windows(cover.shape, (4, 5)):
        cover[window] += 1
    assert (cover == 1).all() and len(list(ngff.chunk_windows((10, 13), (4, 5)))) == 9


# ----------------------------------------------------------------------------------------------- OME-TIFF

@pytest.fixture(scope="module")
def zarr_levels(store):
    return [ngff.open_label_level(store, k) for k in range(N_LEVELS)]


def test_pyramid_ome_tiff_reads_back_level_by_level(tmp_path, zarr_levels):
    path = pyramid.write_pyramid_ome_tiff(zarr_levels, tmp_path / "cells.ome.tif", tile=(128, 256),
                                          pixel_size=PIXEL_SIZE)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and tif.is_bigtiff
        series = tif.series[0]
        assert len(series.levels) == N_LEVELS and len(tif.pages) == 1
        for k, level in enumerate(series.levels):
            page = level.pages[0]
            assert page.dtype == np.uint32 and page.is_tiled and (page.tilelength, page.tilewidth) == (128, 256)
            assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
            assert 306 not in page.tags  # no DateTime
            assert page.resolution == pytest.approx((1e4 / (PIXEL_SIZE * 2 ** k),) * 2)  # pixels per cm
            np.testing.assert_array_equal(level.asarray(), zarr_levels[k][:])
        assert 'PhysicalSizeX="0.65"' in tif.ome_metadata
    for got, level in zip(pyramid.read_pyramid_ome_tiff(path), zarr_levels):
        np.testing.assert_array_equal(got, level[:])


def test_pyramid_ome_tiff_is_byte_identical_and_leaves_no_temporary(tmp_path, zarr_levels):
    first = pyramid.write_pyramid_ome_tiff(zarr_levels, tmp_path / "a.ome.tif")
    second = pyramid.write_pyramid_ome_tiff(zarr_levels, tmp_path / "b.ome.tif")
    assert first.read_bytes() == second.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["a.ome.tif", "b.ome.tif"]
    other = pyramid.write_pyramid_ome_tiff(zarr_levels, tmp_path / "c.ome.tif", name="nuclei")
    assert other.read_bytes() != first.read_bytes()  # the UUID follows the name


def test_pyramid_ome_tiff_streams_one_tile_row(tmp_path, labels):
    levels = [_RecordingArray(labels[::2 ** k, ::2 ** k], chunks=CHUNK) for k in range(3)]
    pyramid.write_pyramid_ome_tiff(levels, tmp_path / "r.ome.tif", tile=(64, 64), max_strip_bytes=0)
    for level in levels:
        assert max(rows for rows, _ in level.reads) <= 64 and max(cols for _, cols in level.reads) <= CHUNK[1]
        assert sum(rows * cols for rows, cols in level.reads) == level.data.size  # each pixel read once
    np.testing.assert_array_equal(pyramid.read_pyramid_ome_tiff(tmp_path / "r.ome.tif")[2], labels[::4, ::4])


def test_pyramid_ome_tiff_reads_each_chunk_once_when_a_chunk_row_fits(tmp_path, labels):
    levels = [_RecordingArray(labels[::2 ** k, ::2 ** k], chunks=CHUNK) for k in range(3)]
    pyramid.write_pyramid_ome_tiff(levels, tmp_path / "c.ome.tif", tile=(64, 64))
    for level in levels:
        n_chunks = -(-level.data.shape[0] // CHUNK[0]) * -(-level.data.shape[1] // CHUNK[1])
        assert len(level.reads) == n_chunks  # one read per chunk, not one per tile row it spans
        assert sum(rows * cols for rows, cols in level.reads) == level.data.size
    pyramid.write_pyramid_ome_tiff([_RecordingArray(lev.data, chunks=CHUNK) for lev in levels],
                                   tmp_path / "r.ome.tif", tile=(64, 64), max_strip_bytes=0)
    assert (tmp_path / "c.ome.tif").read_bytes() == (tmp_path / "r.ome.tif").read_bytes()


def test_tile_rows_that_straddle_chunk_rows_are_assembled(tmp_path, labels):
    chunks = (100, 384)  # tile rows of 48 cross the chunk rows at 100, 200, ...
    banded = [_RecordingArray(labels[::2 ** k, ::2 ** k], chunks=chunks) for k in range(2)]
    pyramid.write_pyramid_ome_tiff(banded, tmp_path / "b.ome.tif", tile=(48, 64))
    assert all(max(rows for rows, _ in level.reads) == 100 for level in banded)
    assert all(sum(r * c for r, c in level.reads) == level.data.size for level in banded)
    plain = [level.data for level in banded]
    pyramid.write_pyramid_ome_tiff(plain, tmp_path / "p.ome.tif", tile=(48, 64))
    assert (tmp_path / "b.ome.tif").read_bytes() == (tmp_path / "p.ome.tif").read_bytes()
    np.testing.assert_array_equal(pyramid.read_pyramid_ome_tiff(tmp_path / "b.ome.tif")[0], labels)


def test_failed_tiff_write_leaves_nothing_and_keeps_old_file(tmp_path, labels):
    target = tmp_path / "cells.ome.tif"
    target.write_bytes(b"previous result")
    levels = [_RecordingArray(labels, fail_on_read=20), _RecordingArray(labels[::2, ::2])]
    with pytest.raises(RuntimeError, match="simulated"):
        pyramid.write_pyramid_ome_tiff(levels, target, tile=(32, 32))
    assert len(levels[0].reads) == 20  # failed mid-way through level 0
    assert target.read_bytes() == b"previous result" and os.listdir(tmp_path) == ["cells.ome.tif"]
    with pytest.raises(FileNotFoundError):
        pyramid.write_pyramid_ome_tiff([labels], tmp_path / "missing" / "cells.ome.tif")
    assert os.listdir(tmp_path) == ["cells.ome.tif"]


def test_pyramid_ome_tiff_rejects_bad_input(tmp_path, labels):
    with pytest.raises(TypeError):
        pyramid.write_pyramid_ome_tiff([labels.astype(np.int64)], tmp_path / "x.ome.tif")
    with pytest.raises(ValueError):
        pyramid.write_pyramid_ome_tiff([labels], tmp_path / "x.ome.tif", tile=(100, 100))
    assert not (tmp_path / "x.ome.tif").exists()


# ----------------------------------------------------------------------------------------------- object table

def _read_table(path: Path) -> dict:
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return {name: table[:, i] for i, name in enumerate(objects.OBJECT_COLUMNS)}


def test_object_stats_matches_brute_force(labels):
    stats = objects.object_stats(labels)
    present = np.unique(labels)[1:]
    np.testing.assert_array_equal(stats["label"], present)
    for i in np.random.default_rng(3).choice(present.size, 25, replace=False).tolist() + [present.size - 1]:
        ys, xs = np.nonzero(labels == present[i])
        assert stats["area"][i] == ys.size
        assert stats["centroid_y"][i] == pytest.approx(ys.mean()) and stats["centroid_x"][i] == pytest.approx(xs.mean())
        assert [stats[f"bbox_{e}_{a}"][i] for e in ("min", "max") for a in ("y", "x")] == [
            ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]


def test_object_table_matches_in_memory_stats(store, labels, tmp_path):
    path = tmp_path / "objects.csv"
    level0 = ngff.open_label_level(store, 0)
    n_rows = objects.object_table(level0, path)
    expected = objects.object_stats(labels)
    assert n_rows == expected["label"].size > 500
    lines = path.read_text().splitlines()
    assert lines[0] == "label,area,centroid_y,centroid_x,bbox_min_y,bbox_min_x,bbox_max_y,bbox_max_x"
    assert len(lines) == n_rows + 1 and lines[-1].startswith("4000000000,3900,501.000,649.500,500,0,503,1300")
    table = _read_table(path)
    for name in objects.OBJECT_COLUMNS:
        if name.startswith("centroid"):
            np.testing.assert_allclose(table[name], expected[name], atol=5e-4, rtol=0)
            assert all(len(line.split(",")[2].split(".")[1]) == 3 for line in lines[1:])
        else:
            np.testing.assert_array_equal(table[name], expected[name])


def test_object_table_reads_by_chunk_and_is_deterministic(labels, tmp_path):
    source = _RecordingArray(labels, chunks=CHUNK)
    objects.object_table(source, tmp_path / "a.csv")
    assert max(source.reads) <= CHUNK and len(source.reads) == 4 * 4
    objects.object_table(labels, tmp_path / "b.csv", chunk=(101, 77))
    objects.object_table(labels, tmp_path / "c.csv", chunk=SHAPE)  # one window, several row bands
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "c.csv").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["a.csv", "b.csv", "c.csv"]


def test_object_table_empty_image_and_failed_read(tmp_path, labels):
    assert objects.object_table(np.zeros((50, 60), np.uint32), tmp_path / "empty.csv") == 0
    assert (tmp_path / "empty.csv").read_text() == ",".join(objects.OBJECT_COLUMNS) + "\n"
    with pytest.raises(RuntimeError, match="simulated"):
        objects.object_table(_RecordingArray(labels, chunks=CHUNK, fail_on_read=5), tmp_path / "bad.csv")
    assert os.listdir(tmp_path) == ["empty.csv"]
