"""The bundled nuclei model ships with the package, is the CLI default, and segments held-out nuclei."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cellpose.cli import build_parser
from cellpose.data import make_image
from cellpose.metrics import average_precision
from cellpose.models import CellposeModel
from cellpose.net.weights import bundled_model_path, resolve_model


def test_bundled_model_is_default_and_stored_as_float16():
    assert build_parser().parse_args(["--dir", "x"]).pretrained_model == "cptb_nuclei"
    path = bundled_model_path("cptb_nuclei")
    assert resolve_model("cptb_nuclei") == path
    state = torch.load(path, weights_only=True)
    assert len(state) == 313
    assert state["output.2.weight"].dtype == torch.float16 and state["diam_mean"].item() == 17.0
    model = CellposeModel(pretrained_model="cptb_nuclei")
    assert next(model.net.parameters()).dtype == torch.float32


@pytest.fixture(scope="module")
def model():
    return CellposeModel(pretrained_model="cptb_nuclei")


#: (nucleus diameter range, --diameter, AP@0.5 floor, AP@0.75 floor). The first row is the target of the
#: "offline default" issue (0.90 / 0.75), which the shipped model meets. The crowded small-nuclei (d12) and
#: large-nuclei (d22) sets do not reach it yet (measured 0.777 / 0.640 and 0.873 / 0.730 on this image); their
#: floors guard against regressions until the model is trained further.
CASES = [((10, 25), None, 0.90, 0.75), ((11, 13), 12.0, 0.72, 0.58), ((20, 24), 22.0, 0.82, 0.68)]


@pytest.mark.parametrize("drange, diameter, ap50, ap75", CASES)
def test_held_out_accuracy(model, drange, diameter, ap50, ap75):
    img, labels = make_image((1, 384, 384), seed=9100, diameter=drange)
    masks, _, _ = model.eval(img[0], channels=[0, 0], diameter=diameter)
    ap = average_precision(labels, masks, thresholds=(0.5, 0.75))
    print(drange, diameter, ap)
    assert ap["ap"][0] >= ap50 and ap["ap"][1] >= ap75, ap
    assert np.unique(masks).size - 1 == masks.max()
