"""The bundled nuclei model ships with the package, is the CLI default, and segments held-out nuclei."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cellpose.cli import build_parser
from cellpose.data.sets import KINDS, held_out
from cellpose.metrics import average_precision
from cellpose.models import CellposeModel
from cellpose.net.weights import bundled_model_path, resolve_model
from cellpose.train import diameter_of


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


#: AP floors on one held-out 384² image of every kind of ``cellpose.data.sets`` (seeds 9000+; training used
#: 1000+), at the true median diameter of its labels. Pooled over eight images per kind the shipped model scores
#: AP@0.5 0.935 (dim) to 0.968 (culture); see GUIDELINES §5 and ``benchmarks/bench_model.py``.
AP50_FLOOR, AP75_FLOOR = 0.88, 0.75


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_held_out_accuracy(model, kind):
    img, labels = held_out(kind, n=1)[0]
    masks, _, _ = model.eval(img, channels=[0, 0], diameter=diameter_of(labels))
    ap = average_precision(labels, masks, thresholds=(0.5, 0.75))
    print(kind, ap["ap"], ap["n_true"], ap["n_pred"])
    assert ap["ap"][0] >= AP50_FLOOR and ap["ap"][1] >= AP75_FLOOR, ap
    assert np.unique(masks).size - 1 == masks.max()


def test_estimated_diameter_segments_as_well_as_the_true_one(model):
    img, labels = held_out("culture", n=1)[0]
    at_true, _, _ = model.eval(img, channels=[0, 0], diameter=diameter_of(labels))
    estimated, _, _ = model.eval(img, channels=[0, 0], diameter=0)
    ap_true = average_precision(labels, at_true, thresholds=(0.5,))["ap"][0]
    ap_est = average_precision(labels, estimated, thresholds=(0.5,))["ap"][0]
    assert ap_est >= AP50_FLOOR and ap_est >= ap_true - 0.03, (ap_true, ap_est)
