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


#: (nucleus diameter range, --diameter, AP@0.5 floor, AP@0.75 floor): the target of the "offline default"
#: issue (0.90 / 0.75) on all three sets. Measured on this image (seed 9100, 384²): mixed 0.977 / 0.966,
#: d12 0.973 / 0.924, d22 0.966 / 0.923.
CASES = [((10, 25), None, 0.90, 0.75), ((11, 13), 12.0, 0.90, 0.75), ((20, 24), 22.0, 0.90, 0.75)]


@pytest.mark.parametrize("drange, diameter, ap50, ap75", CASES)
def test_held_out_accuracy(model, drange, diameter, ap50, ap75):
    img, labels = make_image((1, 384, 384), seed=9100, diameter=drange)
    masks, _, _ = model.eval(img[0], channels=[0, 0], diameter=diameter)
    ap = average_precision(labels, masks, thresholds=(0.5, 0.75))
    print(drange, diameter, ap)
    assert ap["ap"][0] >= ap50 and ap["ap"][1] >= ap75, ap
    assert np.unique(masks).size - 1 == masks.max()
