"""Accuracy of the bundled nuclei model (``cptb_nuclei``) on held-out synthetic images and, if available,
on StarDist's annotated nuclei image.

Run with ``pytest benchmarks/bench_model.py -s`` or ``.venv/bin/python benchmarks/bench_model.py``.

Synthetic: two held-out 384² images of every kind of ``cellpose.data.sets`` (seeds 9000+; training uses
1000+; ``CPTB_BENCH_N=8`` takes eight, the first two being the same), each segmented twice: at the true
median diameter of its labels (``at_true``) and with ``diameter=0`` (``estimated``, the size is estimated from
the image). AP is pooled over the images of a kind, and so are the reasons for the misses at the true diameter
(``errors_at_true``, ``cellpose.metrics.error_breakdown`` at IoU 0.5: merged, split, missed, boundary, false
positive).

Real data: the StarDist wheel (PyPI ``stardist``) ships ``stardist/data/images/img2d.tif`` and ``mask2d.tif``
(a fluorescence nuclei crop from the 2018 Data Science Bowl with its annotation, 125 nuclei). Point
``CPTB_STARDIST_DIR`` at a folder holding those two files (e.g. ``pip download stardist --no-deps`` and unzip
the wheel), or install ``stardist``; otherwise that case is skipped. It is scored at ``diameter=24`` and with
``diameter=0``. The model was neither trained nor selected on it.

``CPTB_BENCH_SET=validation`` scores the validation images (seeds 5000+, for choosing between trained models)
instead of the held-out ones.

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

from cellpose.data.sets import KINDS, held_out, validation
from cellpose.metrics import average_precision, error_breakdown
from cellpose.models import CellposeModel
from cellpose.train import diameter_of

THRESHOLDS = (0.5, 0.75, 0.9)
N_IMAGES = int(os.environ.get("CPTB_BENCH_N", "2"))
SIZE = 384


def _evaluate(model, img, labels, diameter, errors=None):
    """AP of one image; with ``errors`` (a dict), add the image's ``error_breakdown`` counts to it."""
    masks, _, _ = model.eval(img, channels=[0, 0], diameter=diameter)
    if errors is not None:
        for key, count in error_breakdown(labels, masks).items():
            errors[key] = errors.get(key, 0) + count
    return average_precision(labels, masks, thresholds=THRESHOLDS)


def _pooled(results) -> dict:
    """AP pooled over images: sum of TP / (sum of TP + FP + FN) per threshold."""
    tp = np.sum([r["tp"] for r in results], axis=0)
    n_pred = sum(r["n_pred"] for r in results)
    n_true = sum(r["n_true"] for r in results)
    return {"ap": [float(t / (n_pred + n_true - t)) for t in tp], "tp": [int(t) for t in tp], "n_true": n_true,
            "n_pred": n_pred}


def synthetic_scores(model) -> dict:
    out = {}
    pick = validation if os.environ.get("CPTB_BENCH_SET") == "validation" else held_out
    for name in sorted(KINDS):
        pairs, errors = pick(name, n=N_IMAGES, size=SIZE), {}
        at_true = _pooled([_evaluate(model, img, lab, diameter_of(lab), errors) for img, lab in pairs])
        out[name] = {"at_true": at_true, "errors_at_true": errors,
                     "estimated": _pooled([_evaluate(model, img, lab, 0) for img, lab in pairs]),
                     "true_diameters": [diameter_of(lab) for _, lab in pairs]}
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
    for key, diameter in (("diameter_24", 24.0), ("estimated", 0), ("labels_diameter", d)):
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
    assert set(res["synthetic"]) == set(KINDS)
    for scores in res["synthetic"].values():
        errors, pooled = scores["errors_at_true"], scores["at_true"]
        assert errors["n_true"] == pooled["n_true"] and errors["n_pred"] == pooled["n_pred"]
        assert errors["matched"] == pooled["tp"][0]


if __name__ == "__main__":
    json.dump(run(), sys.stdout, indent=1)
