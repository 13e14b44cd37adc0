"""The command line: outputs, input left untouched, and one clear line + non-zero exit for bad input."""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cellpose.cli import main


def _write_ome(path: Path, rng, *, nchan=12, shape=(96, 112)) -> np.ndarray:
    img = rng.integers(0, 4000, size=(nchan, *shape), dtype=np.uint16)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for cy, cx in [(30, 30), (60, 70), (25, 85)]:
        img[0][(yy - cy) ** 2 + (xx - cx) ** 2 < 81] += 20000
    names = [f"M{i}" for i in range(nchan)]
    tifffile.imwrite(path, img, ome=True, metadata={"axes": "CYX", "Channel": {"Name": names}})
    return img


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(directory: Path):
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_segments_ome_tiff_and_leaves_input_untouched(tmp_path, rng, random_weights):
    img_path = tmp_path / "img.ome.tif"
    _write_ome(img_path, rng)
    before = _digest(img_path)
    rc = main(["--dir", str(tmp_path), "--chan", "1", "--pretrained_model", str(random_weights),
               "--diameter", "17", "--save_tif", "--save_flows"])
    assert rc == 0
    assert _digest(img_path) == before
    masks = tifffile.imread(tmp_path / "img.ome_cp_masks.tif")
    assert masks.shape == (96, 112) and masks.dtype in (np.uint16, np.uint32)
    seg = np.load(tmp_path / "img.ome_seg.npy", allow_pickle=True).item()
    np.testing.assert_array_equal(seg["masks"], masks)
    assert (tmp_path / "img.ome_dP_cp_masks.tif").exists() and (tmp_path / "img.ome_flows_cp_masks.tif").exists()
    assert not [p for p in _listing(tmp_path) if Path(p).name.startswith(".")], "temporary files left behind"


def test_empty_directory(tmp_path, capsys, random_weights):
    rc = main(["--dir", str(tmp_path), "--pretrained_model", str(random_weights)])
    err = capsys.readouterr().err
    assert rc != 0
    assert str(tmp_path) in err and "image" in err.lower()
    assert _listing(tmp_path) == []


def test_unreadable_file(tmp_path, capsys, random_weights):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00" + b"\x00garbage" * 10)
    rc = main(["--dir", str(tmp_path), "--pretrained_model", str(random_weights), "--save_tif"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "broken.tif" in err
    assert _listing(tmp_path) == ["broken.tif"]


def test_channel_out_of_range(tmp_path, capsys, rng, random_weights):
    _write_ome(tmp_path / "img.ome.tif", rng, nchan=12)
    rc = main(["--dir", str(tmp_path), "--chan", "13", "--pretrained_model", str(random_weights), "--save_tif"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "13" in err and "12" in err and "out of range" in err
    assert _listing(tmp_path) == ["img.ome.tif"]


def test_unwritable_savedir(tmp_path, capsys, rng, random_weights):
    _write_ome(tmp_path / "img.ome.tif", rng)
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    savedir = blocker / "out"
    rc = main(["--dir", str(tmp_path), "--chan", "1", "--pretrained_model", str(random_weights), "--save_tif",
               "--savedir", str(savedir)])
    err = capsys.readouterr().err
    assert rc != 0
    assert str(savedir) in err
    assert _listing(tmp_path) == ["img.ome.tif", "not_a_dir"]


def test_unknown_model_offline(tmp_path, capsys, rng, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(cache))
    monkeypatch.setenv("CELLPOSE_MODELS_URL", f"http://127.0.0.1:{_closed_port()}/models")
    images = tmp_path / "imgs"
    images.mkdir()
    _write_ome(images / "img.ome.tif", rng)
    rc = main(["--dir", str(images), "--chan", "1", "--pretrained_model", "cyto3", "--save_tif"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "cyto3" in err and str(cache) in err
    assert _listing(cache) == []
    assert _listing(images) == ["img.ome.tif"]


def test_not_a_model_name(tmp_path, capsys, rng):
    _write_ome(tmp_path / "img.ome.tif", rng)
    rc = main(["--dir", str(tmp_path), "--pretrained_model", "no_such_model_xyz"])
    err = capsys.readouterr().err
    assert rc != 0 and "no_such_model_xyz" in err


def test_exit_status_and_single_line_from_python_m(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cellpose", "--dir", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, CELLPOSE_LOCAL_MODELS_PATH=str(tmp_path)))
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "missing" in lines[0], proc.stderr


_EXIT_PROBE = """
import atexit, runpy, sys, threading, time
out = sys.argv[1]
sys.argv = ["cellpose", "--dir", out + "/missing"]
sys.stdout.write("buffered, no newline")
atexit.register(lambda: open(out + "/atexit", "w").close())
threading.Thread(target=lambda: (time.sleep(0.5), open(out + "/thread", "w").close())).start()
runpy.run_module("cellpose", run_name="__main__")
"""


@pytest.mark.parametrize("full_exit", ["0", "1"])
def test_python_m_ends_like_python_without_the_teardown(tmp_path, full_exit):
    """The quick exit of ``python -m cellpose`` keeps what a normal exit does: the status, buffered output,
    ``atexit`` handlers and non-daemon threads finishing their work."""
    proc = subprocess.run([sys.executable, "-c", _EXIT_PROBE, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, CELLPOSE_FULL_EXIT=full_exit,
                                                CELLPOSE_LOCAL_MODELS_PATH=str(tmp_path)))
    assert proc.returncode == 2 and "missing" in proc.stderr
    assert proc.stdout == "buffered, no newline"
    assert (tmp_path / "atexit").exists() and (tmp_path / "thread").exists()


@pytest.mark.parametrize("flag", ["--do_3D", "--save_rois"])
def test_unsupported_flags_are_refused(tmp_path, capsys, flag):
    rc = main(["--dir", str(tmp_path), flag])
    assert rc != 0 and flag in capsys.readouterr().err
