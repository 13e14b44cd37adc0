"""``python -m cellpose.metrics TRUE PRED`` prints AP of a predicted label image (README command 1 uses it)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import tifffile

from cellpose.metrics import average_precision, main


def _labels():
    true = np.zeros((40, 60), np.uint16)
    true[2:12, 2:12], true[20:30, 20:30], true[5:15, 40:50] = 1, 2, 3
    pred = true.copy()
    pred[5:15, 40:50] = 0          # one object missed
    pred[30:38, 50:58] = 9         # one false positive
    return true, pred


def test_cli_prints_the_average_precision_of_tiff_and_seg_npy(tmp_path, capsys):
    true, pred = _labels()
    tifffile.imwrite(tmp_path / "t.tif", true)
    tifffile.imwrite(tmp_path / "p.tif", pred)
    np.save(tmp_path / "p_seg.npy", {"masks": pred}, allow_pickle=True)
    expected = average_precision(true, pred)["ap"][0]
    assert expected == 0.5                              # 2 TP, 1 FP, 1 FN
    for name in ("p.tif", "p_seg.npy"):
        assert main([str(tmp_path / "t.tif"), str(tmp_path / name)]) == 0
        out = capsys.readouterr().out
        assert "AP@0.5 0.500" in out and "(true 3, predicted 3)" in out


def test_cli_annotated_drops_slivers_and_second_pieces(tmp_path, capsys):
    true, pred = _labels()
    true[38:40, 0:3] = 7            # a 6-px sliver at the edge: no segmenter reports it
    true[20:30, 32:36] = 2          # a second piece of label 2, cut off by a neighbour
    tifffile.imwrite(tmp_path / "t.tif", true)
    tifffile.imwrite(tmp_path / "p.tif", pred)
    assert main([str(tmp_path / "t.tif"), str(tmp_path / "p.tif"), "--annotated"]) == 0
    raw, fixed = capsys.readouterr().out.strip().splitlines()
    assert "(true 4, predicted 3)" in raw and "annotated ground truth" in fixed
    assert "AP@0.5 0.500" in fixed and "(true 3, predicted 3)" in fixed


def test_cli_errors_names_why_objects_are_unmatched(tmp_path, capsys):
    true, pred = _labels()
    pred[20:30, 20:23], pred[20:30, 23:26], pred[20:30, 26:30] = 4, 5, 6   # label 2 in three pieces
    tifffile.imwrite(tmp_path / "t.tif", true)
    tifffile.imwrite(tmp_path / "p.tif", pred)
    assert main([str(tmp_path / "t.tif"), str(tmp_path / "p.tif"), "--errors"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "misses at IoU 0.5: merged 0, split 1, missed 1, boundary 0 (true objects); false positive 1" in line
    true[38:40, 0:3] = 7            # a 6-px sliver: missed against the raw labels, gone from the annotated ones
    tifffile.imwrite(tmp_path / "t.tif", true)
    assert main([str(tmp_path / "t.tif"), str(tmp_path / "p.tif"), "--errors", "--annotated"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and "annotated ground truth) misses" in lines[3]
    assert "missed 2," in lines[1] and "missed 1," in lines[3]


def test_cli_missing_file_is_a_clear_error(tmp_path):
    tifffile.imwrite(tmp_path / "t.tif", _labels()[0])
    run = subprocess.run([sys.executable, "-m", "cellpose.metrics", str(tmp_path / "t.tif"),
                          str(tmp_path / "missing.tif")], capture_output=True, text=True)
    assert run.returncode == 2
    assert "cannot score" in run.stderr and "missing.tif" in run.stderr
