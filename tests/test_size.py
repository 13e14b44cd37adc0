"""``diameter=0`` estimates the median object diameter from the image (``cellpose.sizing``)."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import tifffile

from types import SimpleNamespace

from cellpose import profiling
from cellpose.blockwise.segment import run as run_blockwise
from cellpose.cli import main
from cellpose.config import EvalOptions, TilingOptions
from cellpose.data import make_image
from cellpose.data.sets import held_out
from cellpose.dynamics.edges import remove_edge_masks
from cellpose.inference.run_net import padded_grid
from cellpose.io.ngff import open_label_level
from cellpose.metrics import average_precision
from cellpose.models import CellposeModel
from cellpose.sizing import (DEFAULT_LADDER, MAX_UPSCALE, SizeCandidate, _consistent_diameter, _side,
                             estimate_diameter, whole_image_diameter)
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


def test_tissue_with_smaller_nuclei_in_its_centre(model):
    """Held-out tissue image 3: its central 302² px hold smaller nuclei (12.4 px) than the whole image (14.0 px).

    A window that shrank with the assumed diameter measured 12.7 px at 16 px and settled on 11.7 px (-16.5 %);
    with the first step's window kept for the steps below it, every step measures the same nuclei.
    """
    img, labels = held_out("tissue", n=4)[3]
    true = diameter_of(remove_edge_masks(labels))
    est = estimate_diameter(model, img, channels=[0, 0])
    assert est.diameter is not None and abs(est.diameter - true) <= 0.05 * true, (true, est)


def _tiles(side: int, assumed: float, diam_mean: float) -> int:
    rescaled = int(side * (diam_mean / assumed))
    grid, _ = padded_grid(rescaled, rescaled, tiling=TilingOptions())
    return len(grid.ystarts) * len(grid.xstarts)


def test_steps_below_the_first_keep_its_window():
    net = SimpleNamespace(diam_mean=17.0)
    first, big = DEFAULT_LADDER[3], (10000, 10000)
    side_first = _side(net, first, 320, big, floor=first)
    assert side_first == _side(net, first, 320, big) and _tiles(side_first[0], first, 17.0) == 4
    below = [_side(net, d, 320, big, floor=first)[0] for d in DEFAULT_LADDER[:3]]
    assert below == [248, 351, 426]             # 16 px keeps the first window; the cap cuts 8 and 11.3 px
    for d, side in zip(DEFAULT_LADDER[:3], below):
        assert side * 17.0 / d <= MAX_UPSCALE * 320 and _tiles(side, d, 17.0) == 9
        assert side >= _side(net, d, 320, big)[0]                     # never narrower than its own window
    above = [_side(net, d, 320, big, floor=first)[0] for d in DEFAULT_LADDER[4:]]
    assert above == sorted(above) and above[0] > side_first[0]       # steps above widen with the diameter
    assert _side(net, 8.0, 320, (100, 90), floor=first) == (100, 90)   # clipped to the image
    assert _side(net, 1.0, 8, big, floor=first) == (1, 1)            # a tiny window is never empty


def test_whole_image_diameter_only_where_it_differs():
    labels = np.zeros((200, 200), np.int32)
    for k in range(25):                                   # 25 squares of 10 px: diameter 2 * 10 / sqrt(pi)
        y, x = 20 + 35 * (k // 5), 20 + 35 * (k % 5)
        labels[y:y + 10, x:x + 10] = k + 1
    labels[:5, :5] = 26                                   # cut by the edge: not counted
    d = 20 / np.sqrt(np.pi)
    assert whole_image_diameter(labels, d * 1.04) is None
    assert whole_image_diameter(labels, d * 1.3) == pytest.approx(d)
    assert whole_image_diameter(labels, d * 0.7) == pytest.approx(d)
    assert whole_image_diameter(np.where(labels <= 4, labels, 0), d * 2) is None     # too few masks


def test_eval_refines_a_window_that_is_not_the_image(model, tmp_path):
    """A 512² field of 10-12 px nuclei whose central 426² px (the first ladder step's window) hold 17-19 px ones.

    The window's estimate describes the centre; the masks of the whole image at it measure every nucleus, and
    ``eval`` segments again at their median. A blockwise run (its size sample is the whole plane here) ends at
    the same diameter, and masks that match ``eval``'s.
    """
    img, labels = make_image((1, 512, 512), seed=71, diameter=(10, 12))
    centre_img, centre_labels = make_image((1, 426, 426), seed=72, diameter=(17, 19))
    img, labels = img[0].copy(), labels.astype(np.int64)
    img[43:469, 43:469] = centre_img[0]
    labels[43:469, 43:469] = np.where(centre_labels > 0, centre_labels + labels.max(), 0)
    true = diameter_of(remove_edge_masks(labels))
    with profiling.profile(memory="off") as rep:
        (masks, _, _), used = model.eval_resolved(img, options=EvalOptions(channels=(0, 0), diameter=0))
    recorded = rep.to_json()["images"][0]["options"]
    window = recorded["diameter_estimate"]["diameter"]
    assert window > 1.15 * true, (window, true)                   # the window alone is far off
    assert recorded["diameter_refined"] == {"window": pytest.approx(window, abs=1e-3),
                                            "diameter": pytest.approx(used.diameter, abs=1e-3)}
    assert abs(used.diameter - true) <= 0.08 * true, (used.diameter, true)
    assert masks.max() > 300
    tifffile.imwrite(tmp_path / "field.ome.tif", img[None], ome=True, metadata={"axes": "CYX"})
    # one block: the seams are tests/test_blockwise.py's; this is about the diameter the run settles on
    blocks = run_blockwise(tmp_path / "field.ome.tif", model, chan=1, block_size=512, diameter=0, progress=False)
    assert blocks.plan.scale == pytest.approx(model.rescale_for(used.diameter, None), rel=1e-6)
    labels_b = np.asarray(open_label_level(blocks.store, 0)[:]).astype(np.int64)
    ap = average_precision(masks.astype(np.int64), labels_b, thresholds=(0.5, 0.9))["ap"]
    assert ap[0] >= 0.99 and ap[1] >= 0.98, ap


def test_eval_diameter_zero_equals_eval_at_the_diameter_it_used(model):
    img, _ = make_image((1, 192, 192), seed=9104, diameter=(14, 16))
    est = estimate_diameter(model, img[0], channels=[0, 0])
    (masks0, _, _), used = model.eval_resolved(img[0], options=EvalOptions(channels=(0, 0), diameter=0))
    assert used.diameter == est.diameter or abs(used.diameter / est.diameter - 1.0) > 0.05
    masks1, _, _ = model.eval(img[0], channels=[0, 0], diameter=used.diameter)
    np.testing.assert_array_equal(masks0, masks1)
    assert masks0.max() > 0


def test_cli_default_diameter_is_estimated_and_recorded(tmp_path, model):
    img, _ = make_image((1, 192, 192), seed=9105, diameter=(24, 26))
    tifffile.imwrite(tmp_path / "img.tif", img[0])
    assert main(["--dir", str(tmp_path), "--chan", "0", "--profile"]) == 0
    image = json.loads((tmp_path / "profile.json").read_text())["images"][0]
    recorded = image["options"]["diameter_estimate"]
    used = image["options"].get("diameter_refined", recorded)["diameter"]
    seg = np.load(tmp_path / "img_seg.npy", allow_pickle=True).item()
    assert recorded["diameter"] is not None and recorded["candidates"]
    assert seg["diameter"] == pytest.approx(used, abs=1e-3)
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
