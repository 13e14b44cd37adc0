"""``diameter=0`` estimates the median object diameter from the image (``cellpose.sizing``)."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import tifffile

from cellpose.cli import main
from cellpose.data import make_image
from cellpose.dynamics.edges import remove_edge_masks
from cellpose.models import CellposeModel
from cellpose.sizing import SizeCandidate, _consistent_diameter, estimate_diameter
from cellpose.train import diameter_of


@pytest.fixture(scope="module")
def model():
    return CellposeModel(pretrained_model="cptb_nuclei")


#: (diameter range, image edge, seed): held-out images (generator seeds 9100+), small to bound the run time.
#: Median diameters of their whole nuclei: 9.1, 16.3, 33.1 and 43.6 px.
CASES = [((9, 11), 384, 9103), ((19, 21), 512, 9102), ((38, 42), 768, 9102), ((48, 52), 896, 9103)]


@pytest.mark.parametrize("drange, edge, seed", CASES)
def test_estimate_within_15_percent(model, drange, edge, seed):
    img, labels = make_image((1, edge, edge), seed=seed, diameter=drange)
    # the truth is the median of the nuclei that lie wholly in the image: those cut by its edge look smaller
    # (with 40 px nuclei in 896² they pull the median of all labels from 43.6 down to 39.6 px)
    true = diameter_of(remove_edge_masks(labels))
    est = estimate_diameter(model, img[0], channels=[0, 0])
    assert est.diameter is not None and abs(est.diameter - true) <= 0.15 * true, (true, est)
    assert est.candidates and json.dumps(est.as_dict())


def test_eval_diameter_zero_equals_eval_at_the_estimate(model):
    img, _ = make_image((1, 192, 192), seed=9104, diameter=(14, 16))
    est = estimate_diameter(model, img[0], channels=[0, 0])
    masks0, _, _ = model.eval(img[0], channels=[0, 0], diameter=0)
    masks1, _, _ = model.eval(img[0], channels=[0, 0], diameter=est.diameter)
    np.testing.assert_array_equal(masks0, masks1)
    assert masks0.max() > 0


def test_cli_default_diameter_is_estimated_and_recorded(tmp_path, model):
    img, _ = make_image((1, 192, 192), seed=9105, diameter=(24, 26))
    tifffile.imwrite(tmp_path / "img.tif", img[0])
    assert main(["--dir", str(tmp_path), "--chan", "0", "--profile"]) == 0
    image = json.loads((tmp_path / "profile.json").read_text())["images"][0]
    recorded = image["options"]["diameter_estimate"]
    seg = np.load(tmp_path / "img_seg.npy", allow_pickle=True).item()
    assert recorded["diameter"] is not None and recorded["candidates"]
    assert seg["diameter"] == pytest.approx(recorded["diameter"], abs=1e-3)
    assert abs(seg["diameter"] - model.diam_labels) > 1.0


def test_blank_image_falls_back_to_the_model_diameter(model, caplog):
    with caplog.at_level(logging.INFO, logger="cellpose.models"):
        masks, _, _ = model.eval(np.full((64, 64), 7, np.uint16), channels=[0, 0], diameter=0)
    assert masks.max() == 0
    assert "no objects found to estimate the size" in caplog.text


def test_negative_or_nan_diameter_is_rejected(model, tmp_path, capsys):
    img = np.zeros((32, 32), np.float32)
    for bad in (-5.0, float("nan")):
        with pytest.raises(ValueError, match="diameter must be"):
            model.eval(img, diameter=bad)
    tifffile.imwrite(tmp_path / "img.tif", img)
    assert main(["--dir", str(tmp_path), "--diameter", "-5"]) == 2
    assert "--diameter must be" in capsys.readouterr().err


def test_consistent_diameter_rule():
    # largest consistent step (16: 18/16 >= 1) interpolated with the one above (22.6: 19/22.6 < 1)
    steps = [SizeCandidate(22.6, 19.0, 50), SizeCandidate(16.0, 18.0, 60)]
    d = _consistent_diameter(steps)
    assert 16.0 < d < 22.6 and abs(d - 18.4) < 0.5
    assert _consistent_diameter([SizeCandidate(22.6, 0.0, 0)]) is None
    assert _consistent_diameter([SizeCandidate(64.0, 80.0, 30)]) == 80.0
