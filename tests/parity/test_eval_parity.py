"""Network parity through the whole ``CellposeModel.eval`` with upstream cellpose 3.1.1.3.

The same random full-size CPnet (``random_weights``, diam_mean 30) and the same synthetic nuclear image
(channel 0 of ``make_image``, uint16) go through our ``eval`` and upstream's (``_ref_eval.py``, one subprocess
for all cases), grayscale (``channels=[0, 0]``), ``compute_masks=False``: random weights make the dynamics
meaningless, so only the network outputs are compared. The cases cover one tile smaller than ``bsize``, a size
that is not a multiple of 16, several overlapping tiles, up- and down-scaling (diameter 17 and 45 against
diam_mean 30), a rescaled size that depends on upstream computing ``int(L * rescale)`` in float32 (diameter 13)
and test-time augmentation.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_reference

from cellpose.data import make_image
from cellpose.models import CellposeModel

HERE = Path(__file__).parent

#: case id: ((Ly, Lx), seed, diameter, augment). Tile counts are for bsize 224, overlap 0.1.
CASES = {
    "one_tile_100x128": ((100, 128), 11, 30.0, False),     # padded 128x144, run as one tile
    "odd_tiles_300x420": ((300, 420), 13, 30.0, False),    # not multiples of 16; padded 320x448, 2x3 tiles
    "upscale_d17_160x200": ((160, 200), 14, 17.0, False),  # rescaled to 282x352, 2x2 tiles
    "downscale_d45_250x333": ((250, 333), 15, 45.0, False),  # rescaled to 166x222, 1x2 tiles
    # 30/13 in float32 (upstream: diam_mean of a weight file is a float32 scalar) gives 240x330; in float64
    # 104 * 30/13 = 239.99999999999997 would truncate to 239x329
    "f32_rescale_d13_104x143": ((104, 143), 17, 13.0, False),
    "augment_150x170": ((150, 170), 16, 30.0, True),       # padded to 224x224, 2x2 flipped tiles
}

#: max |ours - upstream| allowed, as a fraction of max |upstream| and (stricter for the nearly constant cell
#: probability of a random network) as a fraction of the upstream peak-to-peak range
REL_TOL = 1e-3
MIN_COSINE = 0.9999


def _image(shape, seed):
    img, _ = make_image((1,) + shape, seed=seed, diameter=(10, 25))
    return img[0]


@pytest.fixture(scope="module")
def results(reference_python, random_weights, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    model = CellposeModel(gpu=False, pretrained_model=random_weights)
    assert model.diam_mean == 30.0
    ours, inputs = {}, {}
    for key, (shape, seed, diameter, augment) in CASES.items():
        img = _image(shape, seed)
        t0 = time.perf_counter()
        _, flows, styles = model.eval(img, channels=[0, 0], diameter=diameter, augment=augment,
                                      compute_masks=False)
        print(f"\n{key}: ours {time.perf_counter() - t0:.1f} s")
        ours[key] = (flows[1], flows[2], styles)
        inputs[f"{key}/image"] = img
        inputs[f"{key}/params"] = np.array([diameter, float(augment)], np.float64)
    np.savez(tmp / "in.npz", **inputs)
    t0 = time.perf_counter()
    run_reference(reference_python, HERE / "_ref_eval.py", random_weights, tmp / "in.npz", tmp / "out.npz")
    print(f"upstream (all cases, incl. start-up) {time.perf_counter() - t0:.1f} s")
    ref = np.load(tmp / "out.npz")
    return ours, {k: ref[k] for k in ref.files}


@pytest.mark.parametrize("key", list(CASES))
def test_flows_match_upstream(results, key):
    ours, ref = results
    dP, cellprob, _ = ours[key]
    ref_dP, ref_cellprob = ref[f"{key}/dP"], ref[f"{key}/cellprob"]
    shape = CASES[key][0]
    assert ref_dP.shape == dP.shape == (2,) + shape and ref_cellprob.shape == cellprob.shape == shape
    assert dP.dtype == np.float32 and cellprob.dtype == np.float32
    pairs = {"dY": (dP[0], ref_dP[0]), "dX": (dP[1], ref_dP[1]), "cellprob": (cellprob, ref_cellprob)}
    # the random network must produce spatially varying outputs, or the comparison says little
    assert min(np.ptp(r) for _, r in pairs.values()) > 0.05
    diff = {k: float(np.abs(a.astype(np.float64) - r).max()) for k, (a, r) in pairs.items()}
    of_max = {k: diff[k] / float(np.abs(r).max()) for k, (_, r) in pairs.items()}
    of_ptp = {k: diff[k] / float(np.ptp(r)) for k, (_, r) in pairs.items()}
    print(f"{key}: max |diff| / max |upstream|: " + ", ".join(f"{k} {v:.1e}" for k, v in of_max.items())
          + "; / upstream range: " + ", ".join(f"{k} {v:.1e}" for k, v in of_ptp.items()))
    assert max(of_max.values()) <= REL_TOL, of_max
    assert max(of_ptp.values()) <= REL_TOL, of_ptp


@pytest.mark.parametrize("key", list(CASES))
def test_styles_match_upstream(results, key):
    ours, ref = results
    styles, ref_styles = ours[key][2], ref[f"{key}/styles"]
    assert styles.shape == ref_styles.shape == (256,)
    cos = float(styles @ ref_styles / (np.linalg.norm(styles) * np.linalg.norm(ref_styles)))
    print(f"{key}: style cosine {cos:.8f}")
    assert cos >= MIN_COSINE
