"""Accuracy of the bundled nuclei model (``cptb_nuclei``) on held-out synthetic images and, if available,
on StarDist's annotated nuclei image.

Run with ``pytest benchmarks/bench_model.py`` or ``.venv/bin/python benchmarks/bench_model.py``. Held-out
images use seeds 9000+ (training used 1000-1023). Three sets:

* ``mixed``: nucleus diameters 10-25 px, evaluated with the model's default diameter (``diameter=None``);
* ``d12``: diameters 11-13 px, evaluated with ``diameter=12``;
* ``d22``: diameters 20-24 px, evaluated with ``diameter=22``.

Real data: the StarDist wheel (PyPI ``stardist``) ships ``stardist/data/images/img2d.tif`` and ``mask2d.tif``
(a fluorescence nuclei image from the 2018 Data Science Bowl with its annotation). Point ``CPTB_STARDIST_DIR``
at a folder holding those two files (e.g. ``pip download stardist --no-deps`` and unzip the wheel), or install
``stardist``; otherwise that case is skipped. The model was not tuned on it.

``CPTB_BENCH_MODEL`` (a model name or weight file) scores another model, e.g. a candidate from
``scripts/train_bundled.py --out``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from cellpose.data import make_image
from cellpose.metrics import average_precision
from cellpose.models import CellposeModel
from cellpose.train import diameter_of

SETS = {"mixed": ((10, 25), None), "d12": ((11, 13), 12.0), "d22": ((20, 24), 22.0)}
SEEDS = (9000, 9001, 9002)
SIZE = 512
THRESHOLDS = (0.5, 0.75, 0.9)


def _evaluate(model, img, labels, diameter):
    masks, _, _ = model.eval(img, channels=[0, 0], diameter=diameter)
    return average_precision(labels, masks, thresholds=THRESHOLDS)


def synthetic_scores(model) -> dict:
    out = {}
    for name, (drange, diameter) in SETS.items():
        tp = fp = fn = 0
        tps = np.zeros(len(THRESHOLDS))
        for seed in SEEDS:
            img, labels = make_image((1, SIZE, SIZE), seed=seed, diameter=drange)
            r = _evaluate(model, img[0], labels, diameter)
            tps += r["tp"]
            fp += r["n_pred"]
            fn += r["n_true"]
        n_pred, n_true = fp, fn
        out[name] = {"ap": [float(t / (n_pred + n_true - t)) for t in tps], "n_true": n_true, "n_pred": n_pred}
    return out


def _stardist_files():
    folder = os.environ.get("CPTB_STARDIST_DIR")
    if folder:
        return Path(folder) / "img2d.tif", Path(folder) / "mask2d.tif"
    try:
        import stardist
    except ImportError:
        return None
    base = Path(stardist.__file__).parent / "data" / "images"
    return base / "img2d.tif", base / "mask2d.tif"


def stardist_scores(model) -> dict:
    files = _stardist_files()
    if files is None or not files[0].exists():
        return {}
    import tifffile
    img, labels = tifffile.imread(files[0]), tifffile.imread(files[1])
    d = diameter_of(labels)
    out = {"diameter_from_labels": d}
    for key, diameter in (("default_diameter", None), ("labels_diameter", d)):
        r = _evaluate(model, img, labels, diameter)
        out[key] = {"ap": r["ap"], "n_true": r["n_true"], "n_pred": r["n_pred"]}
    return out


def run() -> dict:
    model = CellposeModel(pretrained_model=os.environ.get("CPTB_BENCH_MODEL", "cptb_nuclei"))
    t0 = time.perf_counter()
    res = {"thresholds": THRESHOLDS, "synthetic": synthetic_scores(model), "stardist": stardist_scores(model),
           "diam_labels": model.diam_labels}
    res["seconds"] = time.perf_counter() - t0
    return res


def test_bundled_model_accuracy():
    res = run()
    print(json.dumps(res, indent=1))
    assert set(res["synthetic"]) == set(SETS)


if __name__ == "__main__":
    json.dump(run(), sys.stdout, indent=1)
