"""Parity of flows → masks with upstream cellpose 3.1.1.3 (run as a black box by ``_ref_dyn.py``).

Flows are realistic: ``5 × masks_to_flows`` of generator nuclei plus Gaussian noise; cell probability is
±3 plus noise. Upstream's ``compute_masks`` works on the same arrays.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_reference

from cellpose.data import make_image
from cellpose.dynamics import compute_masks, fill_holes_and_remove_small_masks, flows_to_rgb, masks_to_flows
from cellpose.dynamics.masks import renumber
from cellpose.metrics import average_precision

HERE = Path(__file__).parent

#: case id: (shape, seed, diameter range, flow noise, cellprob noise, niter, cellprob_threshold, flow_thr, min_size)
CASES = {
    "small": ((300, 280), 1, (10, 25), 0.5, 1.0, 200, 0.0, 0.4, 15),
    "crowded": ((512, 512), 2, (12, 22), 0.5, 1.0, 200, 0.0, 0.4, 15),
    "noisy_qc": ((400, 360), 3, (10, 25), 1.1, 1.5, 120, 0.1, 0.4, 30),
    "odd_niter": ((257, 301), 4, (15, 25), 1.0, 1.5, 353, -0.5, 0.8, 15),
    "no_min_size": ((256, 256), 5, (10, 20), 1.0, 1.5, 200, 0.0, 0.0, 0),
}


def _case(shape, seed, diameter, flow_noise, prob_noise):
    _, labels = make_image((1,) + shape, seed=seed, diameter=diameter)
    labels = labels.astype(np.uint32)
    renumber(labels)
    rng = np.random.default_rng(seed)
    flows = masks_to_flows(labels)
    dP = (5 * flows + rng.normal(0, flow_noise, flows.shape)).astype(np.float32)
    cellprob = (np.where(labels > 0, 3.0, -3.0) + rng.normal(0, prob_noise, shape)).astype(np.float32)
    return labels.astype(np.uint16), flows, dP, cellprob


@pytest.fixture(scope="module")
def results(reference_python, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dyn")
    ours, inputs = {}, {}
    for key, (shape, seed, diam, fn, pn, niter, cp_thr, flow_thr, min_size) in CASES.items():
        labels, flows, dP, cellprob = _case(shape, seed, diam, fn, pn)
        ours[key] = (labels, flows, dP, cellprob, dict(niter=niter, cellprob_threshold=cp_thr,
                                                      flow_threshold=flow_thr, min_size=min_size))
        inputs.update({f"{key}/labels": labels, f"{key}/dP": dP, f"{key}/cellprob": cellprob,
                       f"{key}/params": np.array([niter, cp_thr, flow_thr, min_size], np.float64)})
    np.savez(tmp / "in.npz", **inputs)
    run_reference(reference_python, HERE / "_ref_dyn.py", tmp / "in.npz", tmp / "out.npz")
    ref = np.load(tmp / "out.npz")
    return ours, {k: ref[k] for k in ref.files}


@pytest.mark.parametrize("key", list(CASES))
def test_masks_to_flows_matches_upstream(results, key):
    ours, ref = results
    assert np.array_equal(ours[key][1], ref[f"{key}/flows"])


@pytest.mark.parametrize("key", list(CASES))
def test_compute_masks_matches_upstream(results, key):
    ours, ref = results
    labels, _, dP, cellprob, params = ours[key]
    masks = compute_masks(dP, cellprob, **params)
    theirs = ref[f"{key}/masks"]
    ap = average_precision(theirs, masks, thresholds=(0.5, 0.9))
    print(f"{key}: ours {ap['n_pred']} cells, upstream {ap['n_true']}, truth {len(np.unique(labels)) - 1}, "
          f"AP@0.9 {ap['ap'][1]:.4f}, identical pixels {np.mean(masks == theirs):.6f}")
    assert masks.dtype == theirs.dtype
    assert ap["ap"][1] >= 0.99, ap


@pytest.mark.parametrize("key", list(CASES))
def test_flows_to_rgb_matches_upstream(results, key):
    ours, ref = results
    assert np.array_equal(flows_to_rgb(ours[key][2]), ref[f"{key}/rgb"])


@pytest.mark.parametrize("key", list(CASES))
def test_fill_holes_matches_upstream_on_consecutive_labels(results, key):
    ours, ref = results
    labels, params = ours[key][0], ours[key][4]
    out = fill_holes_and_remove_small_masks(labels, min_size=params["min_size"])
    assert np.array_equal(out, ref[f"{key}/filled"])
