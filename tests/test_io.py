"""Image I/O and output writers (``cellpose.io``): readers, listing, atomic writes, output files, parity."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from cellpose.io import atomic, files, outputs, tiff
from conftest import run_reference

NCHAN, LY, LX = 12, 96, 80
NAMES = [f"marker{i}" for i in range(NCHAN)]


# ----------------------------------------------------------------------------------------------- fixtures

@pytest.fixture
def ome_stack(rng):
    """(C, Y, X) uint16 stack with distinct content per channel."""
    return rng.integers(0, 60000, (NCHAN, LY, LX), dtype=np.uint16)


def _write_ome(path, data, **kwargs):
    tifffile.imwrite(path, data, ome=True, photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": NAMES[: data.shape[0]]}, "PhysicalSizeX": 0.65,
                               "PhysicalSizeY": 0.65}, **kwargs)
    return path


@pytest.fixture
def ome_file(tmp_path, ome_stack):
    return _write_ome(tmp_path / "stack.ome.tif", ome_stack, compression="zlib", tile=(32, 32))


def _seg_inputs(rng, ly=LY, lx=LX):
    """Masks with a holed cell, a split cell and a border cell plus matching random flows."""
    masks = np.zeros((ly, lx), np.uint16)
    masks[5:25, 5:25] = 1
    masks[12:16, 12:16] = 0
    masks[30:40, 10:20] = 2
    masks[45:50, 10:20] = 2
    masks[60:ly, 50:lx] = 3
    dp = rng.normal(size=(2, ly, lx)).astype(np.float32)
    cellprob = rng.normal(size=(ly, lx)).astype(np.float32) * 4
    rgb = rng.integers(0, 256, (ly, lx, 3), dtype=np.uint8)
    return masks, [rgb, dp, cellprob]


# ----------------------------------------------------------------------------------------------- atomic

def test_atomic_write_renames_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.tif"
    with atomic.atomic_write(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith(".tif")
        tifffile.imwrite(tmp, np.ones((4, 4), np.uint8))
    assert np.array_equal(tifffile.imread(target), np.ones((4, 4)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_atomic_write_failure_leaves_nothing_and_keeps_old_file(tmp_path):
    target = tmp_path / "masks.png"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic.atomic_write(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"old")
    with pytest.raises(KeyError):
        with atomic.atomic_write(target) as tmp:
            tmp.write_bytes(b"new, half")
            raise KeyError("x")
    assert target.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1


def test_atomic_write_suffix_and_missing_output(tmp_path):
    with atomic.atomic_write(tmp_path / "a.dat", suffix=".npy") as tmp:
        assert tmp.suffix == ".npy"
        np.save(tmp, np.arange(3))
    assert np.array_equal(np.load(tmp_path / "a.dat"), np.arange(3))
    with pytest.raises(FileNotFoundError, match="b.tif"):
        with atomic.atomic_write(tmp_path / "b.tif"):
            pass


def test_imsave_failure_in_writer_leaves_no_file(tmp_path, monkeypatch):
    def broken(path, *args, **kwargs):
        Path(path).write_bytes(b"II*\0 half a tiff")
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", broken)
    with pytest.raises(OSError, match="disk full"):
        tiff.imsave(tmp_path / "x.tif", np.zeros((4, 4), np.uint16))
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------- reading

def test_imread_ome_tiff_as_stored(ome_file, ome_stack):
    img = tiff.imread(ome_file)
    assert img.shape == (NCHAN, LY, LX) and img.dtype == np.uint16
    assert np.array_equal(img, ome_stack)


def test_image_info_reads_metadata_only(ome_file, monkeypatch):
    def no_pixels(*args, **kwargs):
        raise AssertionError("pixel data were read")

    for cls in (tifffile.TiffPage, tifffile.TiffFrame, tifffile.TiffPageSeries):
        monkeypatch.setattr(cls, "asarray", no_pixels)
    info = tiff.image_info(ome_file)
    assert info.shape == (NCHAN, LY, LX) and info.dtype == np.uint16 and info.axes == "CYX"
    assert info.channel_names == tuple(NAMES) and info.pixel_size == pytest.approx(0.65)


def _poison_pages_except(path, keep):
    """Overwrite the compressed tiles of every page but ``keep`` with garbage bytes."""
    with tifffile.TiffFile(path) as tif:
        spans = [(off, n) for i, page in enumerate(tif.series[0].pages) if i != keep
                 for off, n in zip(page.dataoffsets, page.databytecounts)]
    with open(path, "r+b") as fh:
        for offset, count in spans:
            fh.seek(offset)
            fh.write(b"\xff" * count)


@pytest.mark.parametrize("index", [0, 5, NCHAN - 1])
def test_read_channel_equals_full_read_plane(ome_file, ome_stack, index):
    plane = tiff.read_channel(ome_file, index)
    assert plane.shape == (LY, LX) and plane.dtype == np.uint16
    assert np.array_equal(plane, tiff.imread(ome_file)[index])


def test_read_channel_decodes_only_its_plane(ome_file, ome_stack):
    _poison_pages_except(ome_file, keep=7)
    assert np.array_equal(tiff.read_channel(ome_file, 7), ome_stack[7])
    with pytest.raises(tiff.ImageReadError, match="stack.ome.tif"):
        tiff.imread(ome_file)


def test_read_channel_other_layouts(tmp_path, rng):
    stack = rng.integers(0, 255, (3, 40, 50), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "planar.tif", stack, photometric="rgb", planarconfig="separate")
    tifffile.imwrite(tmp_path / "inter.tif", np.moveaxis(stack, 0, -1), photometric="rgb")
    np.save(tmp_path / "arr.npy", stack)
    cv2.imwrite(str(tmp_path / "rgb.png"), np.moveaxis(stack, 0, -1)[..., ::-1])
    for name in ("planar.tif", "inter.tif", "arr.npy", "rgb.png"):
        assert np.array_equal(tiff.read_channel(tmp_path / name, 2), stack[2]), name
    with pytest.raises(tiff.ImageReadError, match="out of range"):
        tiff.read_channel(tmp_path / "planar.tif", 3)


def test_imread_png_rgb_order_and_16_bit(tmp_path, rng):
    rgb = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])
    cv2.imwrite(str(tmp_path / "g.png"), np.full((20, 30), 40000, np.uint16))
    assert np.array_equal(tiff.imread(tmp_path / "c.png"), rgb)
    gray = tiff.imread(tmp_path / "g.png")
    assert gray.dtype == np.uint16 and gray.max() == 40000
    info = tiff.image_info(tmp_path / "c.png")
    assert info.shape == (20, 30, 3) and info.axes == "YXS"


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("keep", [0.05, 0.5, 0.9])
def test_truncated_tiff_raises_naming_file(tmp_path, ome_stack, compression, keep):
    path = _write_ome(tmp_path / "cut.tif", ome_stack[:4], compression=compression)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(tiff.ImageReadError, match="cut.tif") as err:
        tiff.imread(path)
    assert isinstance(err.value, OSError) and err.value.reason


def test_unreadable_files_raise_image_read_error(tmp_path):
    png = tmp_path / "half.png"
    ok, enc = cv2.imencode(".png", np.arange(400, dtype=np.uint16).reshape(20, 20))
    png.write_bytes(enc.tobytes()[: len(enc) // 2])
    (tmp_path / "notes.txt").write_text("hello")
    cases = {png: "decode", tmp_path / "missing.tif": "not found", tmp_path / "notes.txt": "unsupported",
             tmp_path: "regular file"}
    for path, reason in cases.items():
        with pytest.raises(tiff.ImageReadError, match=reason) as err:
            tiff.imread(path)
        assert str(path) in str(err.value)


# ----------------------------------------------------------------------------------------------- imsave

def test_imsave_round_trips(tmp_path, rng):
    labels = rng.integers(0, 70000, (30, 40)).astype(np.uint32)
    path = tiff.imsave(tmp_path / "l.tif", labels)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    assert np.array_equal(tiff.imread(path), labels)
    rgb = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    assert np.array_equal(tiff.imread(tiff.imsave(tmp_path / "c.png", rgb)), rgb)
    assert np.array_equal(tiff.imread(tiff.imsave(tmp_path / "c.tif", rgb)), rgb)
    with pytest.raises(ValueError, match="uint8/uint16"):
        tiff.imsave(tmp_path / "f.png", rgb.astype(np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "c.tif", "l.tif"]


# ----------------------------------------------------------------------------------------------- listing

def _touch(folder, names):
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_list_images_filters_and_natural_sort(tmp_path, caplog):
    _touch(tmp_path, ["img10.tif", "img2.tif", "img1.png", "Img3.TIF", "b.Tiff", "c.jpeg", "d.JPG", "e.flex",
                      "a_masks.tif", "a_cp_masks.png", "a_cp_output.png", "a_flows.tif", "a_flows_1.tif",
                      "a_flows_3.tif", "a_cellprob.tif", "a_seg.tif", "a_seg.npy", "x.npy", "notes.txt",
                      ".a.tif.1234.tmp.tif", "q.nd2", "sub/z.tif", "sub/deep/w.tif"])
    names = [os.path.relpath(p, tmp_path) for p in files.list_images(tmp_path)]
    assert names == ["Img3.TIF", "a_flows_3.tif", "b.Tiff", "c.jpeg", "d.JPG", "e.flex", "img1.png", "img2.tif",
                     "img10.tif"]
    assert "q.nd2" in caplog.text
    deep = [os.path.relpath(p, tmp_path) for p in files.list_images(tmp_path, look_one_level_down=True)]
    assert deep == names + [os.path.join("sub", "z.tif")]


def test_list_images_img_and_mask_filters(tmp_path):
    _touch(tmp_path, ["a_img.tif", "b_img.tif", "b_lbl.tif", "c.tif"])
    assert [Path(p).name for p in files.list_images(tmp_path, img_filter="_img")] == ["a_img.tif", "b_img.tif"]
    assert [Path(p).name for p in files.list_images(tmp_path, mask_filter="_lbl")] == ["a_img.tif", "b_img.tif",
                                                                                        "c.tif"]


def test_list_images_errors_name_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        files.list_images(tmp_path / "nowhere")
    _touch(tmp_path, ["only_masks.tif", "readme.md"])
    with pytest.raises(files.NoImagesError, match=str(tmp_path)):
        files.list_images(tmp_path)


# ----------------------------------------------------------------------------------------------- outlines

def test_masks_to_outlines_definition():
    masks = np.zeros((12, 12), np.uint16)
    masks[1:8, 1:8] = 1
    masks[3:6, 3:6] = 2          # label 2 sits in label 1's hole
    masks[9:11, 9:12] = 3        # touches the right border
    out = outputs.masks_to_outlines(masks)
    ring = np.zeros((7, 7), bool)
    ring[[0, -1], :] = ring[:, [0, -1]] = True
    assert np.array_equal(out[1:8, 1:8] & (masks[1:8, 1:8] == 1), ring)   # hole rim of label 1 is no outline
    assert out[3:6, 3:6].sum() == 8 and not out[4, 4]
    assert out[9:11, 9:12].all()


def test_outlines_list_points_lie_on_outlines(rng):
    masks, _ = _seg_inputs(rng)
    contours = outputs.outlines_list(masks)
    out = outputs.masks_to_outlines(masks)
    assert len(contours) == 3
    for label, pts in enumerate(contours, start=1):
        assert len(pts) and out[pts[:, 1], pts[:, 0]].all() and (masks[pts[:, 1], pts[:, 0]] == label).all()


# ----------------------------------------------------------------------------------------------- outputs

def test_seg_npy_round_trip(tmp_path, rng):
    masks, flows = _seg_inputs(rng)
    image = tmp_path / "cells.tif"
    path = outputs.save_seg_npy(image, masks=masks, flows=flows, diameter=25.0, channels=[2, 1])
    assert path == tmp_path / "cells_seg.npy"
    seg = np.load(path, allow_pickle=True).item()
    assert set(seg) == {"masks", "outlines", "chan_choose", "ismanual", "filename", "diameter", "flows"}
    assert seg["masks"].dtype == np.uint16 and np.array_equal(seg["masks"], masks)
    assert seg["outlines"].dtype == np.uint16
    assert np.array_equal(seg["outlines"], outputs.masks_to_outlines(masks) * masks)
    assert seg["chan_choose"] == [2, 1] and seg["filename"] == str(image) and seg["diameter"] == 25.0
    assert seg["ismanual"].dtype == bool and seg["ismanual"].shape == (3,) and not seg["ismanual"].any()
    rgb, prob, zeros, empty, dp3 = seg["flows"]
    assert rgb.shape == (1, LY, LX, 3) and rgb.dtype == np.uint8 and np.array_equal(rgb[0], flows[0])
    assert prob.shape == (1, LY, LX) and prob.dtype == np.uint8 and prob.min() == 0 and prob.max() == 255
    assert zeros.shape == (1, LY, LX, 3) and zeros.dtype == np.uint8 and not zeros.any() and empty == []
    assert dp3.dtype == np.float32 and np.array_equal(dp3, np.concatenate([flows[1], flows[2][None]]))


def test_seg_flows_of_one_eval_output_are_not_copied(tmp_path, rng):
    masks, flows = _seg_inputs(rng)
    y = np.ascontiguousarray(np.concatenate([flows[1], flows[2][None]]))
    seg = outputs.build_seg("x.tif", masks=masks, flows=[flows[0], y[:2], y[2]], diameter=20, channels=None)
    assert seg["flows"][4] is y
    swapped = outputs.build_seg("x.tif", masks=masks, flows=[flows[0], y[1:], y[0]], diameter=20, channels=None)
    assert not np.shares_memory(swapped["flows"][4], y)
    assert np.array_equal(swapped["flows"][4], np.concatenate([y[1:], y[:1]]))
    not_next = outputs.build_seg("x.tif", masks=masks, flows=[flows[0], y[:2], y[1]], diameter=20, channels=None)
    assert not np.shares_memory(not_next["flows"][4], y) and np.array_equal(not_next["flows"][4][2], y[1])
    strided = np.ascontiguousarray(np.concatenate([y, y]))[::2]
    every_other = outputs.build_seg("x.tif", masks=masks, flows=[flows[0], strided[:2], strided[2]], diameter=20,
                                    channels=None)
    assert np.array_equal(every_other["flows"][4], strided[:3])
    path = outputs.save_seg_npy(tmp_path / "x.tif", masks=masks, flows=[flows[0], y[:2], y[2]], diameter=20,
                                channels=None)
    assert np.array_equal(np.load(path, allow_pickle=True).item()["flows"][4], y)
    for array in (y, masks, flows[0]):
        array.flags.writeable = False
    path = outputs.save_seg_npy(tmp_path / "x.tif", masks=masks, flows=[flows[0], y[:2], y[2]], diameter=20,
                                channels=None)
    back = np.load(path, allow_pickle=True).item()
    assert all(a.flags.writeable for a in (back["masks"], back["outlines"], back["flows"][0], back["flows"][4]))


@pytest.mark.parametrize("top, dtype", [(65534, np.uint16), (65535, np.uint32), (70000, np.uint32)])
def test_seg_npy_label_limit(top, dtype):
    masks = np.zeros((30, 30), np.uint32)
    masks[2:9, 2:9], masks[12:20, 12:20] = 1, top
    flows = [np.zeros((30, 30, 3), np.uint8), np.zeros((2, 30, 30), np.float32), np.zeros((30, 30), np.float32)]
    seg = outputs.build_seg("x.tif", masks=masks, flows=flows, diameter=30, channels=None)
    assert seg["masks"].dtype == dtype and seg["outlines"].dtype == dtype and seg["outlines"].max() == top
    assert seg["ismanual"].shape == (top,) and seg["chan_choose"] == [0, 0]
    assert not seg["flows"][1].any()
    with pytest.raises(ValueError, match="do not match"):
        outputs.build_seg("x.tif", masks=masks[:10], flows=flows, diameter=30, channels=None)


def test_save_masks_png_tif_round_trip(tmp_path, rng):
    masks, _ = _seg_inputs(rng)
    paths = outputs.save_masks(tmp_path / "a.tif", masks, png=True, tif=True)
    assert [p.name for p in paths] == ["a_cp_masks.png", "a_cp_masks.tif"]
    png = cv2.imread(str(paths[0]), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and np.array_equal(png, masks)
    with tifffile.TiffFile(paths[1]) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert np.array_equal(tif.asarray(), masks)
    sub = outputs.save_masks(tmp_path / "b.png", masks.astype(np.int32), tif=True, in_folders=True,
                             savedir=tmp_path, suffix="_x")
    assert sub == [tmp_path / "masks" / "b_x.tif"] and tiff.imread(sub[0]).dtype == np.int32


def test_save_masks_many_labels_and_empty(tmp_path):
    big = np.arange(1, 300 * 300 + 1, dtype=np.uint32).reshape(300, 300)
    paths = outputs.save_masks(tmp_path / "big.tif", big, png=True)
    assert [p.name for p in paths] == ["big_cp_masks.tif"]
    back = tiff.imread(paths[0])
    assert back.dtype == np.uint32 and np.array_equal(back, big)
    empty = np.zeros((10, 10), np.uint16)
    assert outputs.save_masks(tmp_path / "e.tif", empty, png=True) == []
    assert [p.name for p in outputs.save_masks(tmp_path / "e.tif", empty, png=True, tif=True)] == ["e_cp_masks.tif"]


def test_save_flows_writes_uint8_rgb_and_float_dp(tmp_path, rng):
    _, flows = _seg_inputs(rng)
    flow_path, dp_path = outputs.save_flows(tmp_path / "a.tif", flows=flows, in_folders=True)
    assert flow_path == tmp_path / "flows" / "a_flows_cp_masks.tif"
    rgb = tiff.imread(flow_path)
    assert rgb.dtype == np.uint8 and np.array_equal(rgb, flows[0])
    dp = tiff.imread(dp_path)
    assert dp_path.name == "a_dP_cp_masks.tif" and dp.dtype == np.float32 and np.array_equal(dp, flows[1])


def test_save_outlines_png(tmp_path, rng):
    masks, _ = _seg_inputs(rng)
    path = outputs.save_outlines_png(tmp_path / "a.tif", masks, image=rng.random((LY, LX)))
    picture = tiff.imread(path)
    red = np.all(picture == (255, 0, 0), axis=-1)
    assert path.name == "a_outlines_cp_masks.png" and np.array_equal(red, outputs.masks_to_outlines(masks))
    assert outputs.save_outlines_png(tmp_path / "b.tif", np.zeros_like(masks)) is None


def test_unwritable_or_missing_savedir(tmp_path, rng, monkeypatch):
    masks, flows = _seg_inputs(rng)
    blocker = tmp_path / "file"
    blocker.write_text("")
    for bad, reason in [(blocker / "out", "does not exist"), (blocker, "not a directory"),
                        (tmp_path / "missing", "does not exist")]:
        with pytest.raises(outputs.OutputDirError, match=reason) as err:
            outputs.save_masks(tmp_path / "a.tif", masks, tif=True, savedir=bad)
        assert str(bad) in str(err.value) and isinstance(err.value, OSError)

    def denied(folder):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(outputs, "_probe_write", denied)
    with pytest.raises(outputs.OutputDirError, match="not writable"):
        outputs.save_seg_npy(tmp_path / "a.tif", masks=masks, flows=flows, diameter=30, channels=[0, 0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_savedir(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(outputs.OutputDirError, match="not writable"):
            outputs.check_output_dir(locked)
    finally:
        locked.chmod(0o755)


# ----------------------------------------------------------------------------------------------- parity

_UPSTREAM_SCRIPT = textwrap.dedent("""
    import sys, os
    import numpy as np
    from cellpose import io, utils
    d = np.load(sys.argv[1])
    out = sys.argv[2]
    masks, blobs = d["masks"], d["blobs"]
    flows = [d["rgb"], d["dp"], d["cellprob"]]
    io.masks_flows_to_seg(np.zeros(masks.shape, np.float32), masks, flows, os.path.join(out, "up.tif"),
                          diams=25.0, channels=[2, 1])
    np.save(os.path.join(out, "up_outlines.npy"), np.stack([utils.masks_to_outlines(m) for m in blobs]))
    io.save_masks(np.zeros(masks.shape, np.float32), masks, flows, os.path.join(out, "up.tif"), png=True,
                  tif=True, save_outlines=True)
""")


def _blob_masks(rng, n_images=3, size=128, n_cells=40):
    """Overlapping irregular blobs with speckle holes: a hard case for contour tracing."""
    yy, xx = np.mgrid[:size, :size]
    stack = np.zeros((n_images, size, size), np.uint16)
    for masks in stack:
        for label in range(1, n_cells + 1):
            cy, cx = rng.integers(0, size, 2)
            radius = rng.uniform(2, 12) * (1 + 0.3 * np.sin(np.arctan2(yy - cy, xx - cx) * rng.integers(2, 6)))
            masks[(yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2] = label
        masks[rng.random((size, size)) < 0.03] = 0
    return stack


def test_outputs_match_upstream(tmp_path, rng, reference_python):
    masks, flows = _seg_inputs(rng, 200, 180)
    flows[2] = rng.normal(size=masks.shape).astype(np.float32) * 3
    blobs = _blob_masks(rng)
    np.savez(tmp_path / "in.npz", masks=masks, rgb=flows[0], dp=flows[1], cellprob=flows[2], blobs=blobs)
    script = tmp_path / "upstream_io.py"
    script.write_text(_UPSTREAM_SCRIPT)
    run_reference(reference_python, script, tmp_path / "in.npz", tmp_path)
    assert np.array_equal(outputs.masks_to_outlines(blobs), np.load(tmp_path / "up_outlines.npy"))
    up = np.load(tmp_path / "up_seg.npy", allow_pickle=True).item()
    ours = outputs.build_seg(tmp_path / "up.tif", masks=masks, flows=flows, diameter=25.0, channels=[2, 1])
    assert set(up) == set(ours)
    for key in ("masks", "outlines", "ismanual"):
        assert up[key].dtype == ours[key].dtype and np.array_equal(up[key], ours[key]), key
    assert up["chan_choose"] == ours["chan_choose"] and float(up["diameter"]) == ours["diameter"]
    for mine, theirs in zip(ours["flows"], up["flows"]):
        assert isinstance(mine, list) or (mine.dtype == theirs.dtype and np.array_equal(mine, theirs))
    ours_paths = outputs.save_masks(tmp_path / "ours.tif", masks, png=True, tif=True)
    for path in ours_paths:
        theirs = tmp_path / path.name.replace("ours", "up")
        assert np.array_equal(tiff.imread(path), tiff.imread(theirs)), path.name
    our_outline = tiff.imread(outputs.save_outlines_png(tmp_path / "ours.tif", masks))
    assert np.array_equal(our_outline, tiff.imread(tmp_path / "up_outlines_cp_masks.png"))
