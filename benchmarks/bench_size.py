"""Error and cost of ``--diameter 0`` (``cellpose.sizing.estimate_diameter``) with the bundled model.

Run with ``pytest benchmarks/bench_size.py -s`` or ``.venv/bin/python benchmarks/bench_size.py``.

Truth: the median equivalent-circle diameter of the nuclei wholly inside the image (labels cut by the image
edge look smaller). Images:

* ``CPTB_BENCH_N`` (default 2) held-out 384² images of every kind of ``cellpose.data.sets`` (seeds 9000+;
  ``CPTB_BENCH_SET=validation`` takes the validation images, seeds 5000+, instead);
* the four nominal size ranges of ``tests/test_size.py`` (9-11 to 48-52 px, 384² to 896²);
* the StarDist wheel's DSB-2018 crop where ``CPTB_STARDIST_DIR`` (or an installed ``stardist``) has it
  (``bench_model._stardist_files``); an outside check only.

Per image: the window estimate (``sizing.estimate_prepared``), its error in % of the truth, its wall seconds and
ladder steps, and the diameter that ``eval(diameter=0)`` ends at (the estimate, or the whole image's median at
it where that differs by more than 5 %, ``CellposeModel.resolve_diameter(refine=True)``). Per kind: median,
minimum and maximum error of the window estimate, how many images were refined and the range of the final
error. Prints the CPU line with the numbers.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from bench_model import _stardist_files
from cellpose.config import EvalOptions
from cellpose.data import make_image
from cellpose.data.sets import KINDS, held_out, validation
from cellpose.dynamics.edges import remove_edge_masks
from cellpose.models import CellposeModel
from cellpose.profiling.environment import hardware, hardware_line
from cellpose.train import diameter_of

N_IMAGES = int(os.environ.get("CPTB_BENCH_N", "2"))
#: (diameter range, image edge, seed) of ``tests/test_size.py``.
NOMINAL = [((9, 11), 384, 9103), ((19, 21), 512, 9102), ((38, 42), 768, 9102), ((48, 52), 896, 9103)]


def _error(diameter, true):
    return None if diameter is None else round(100.0 * (diameter / true - 1.0), 2)


def _one(model, img, labels) -> dict:
    """Window estimate and the diameter ``eval(diameter=0)`` ends at, against the median of the whole nuclei.

    Both from ``CellposeModel.resolve_diameter(refine=True)``: the final diameter is the window estimate, or the
    median of the whole image's masks at it where that differs by more than ``sizing.REFINE_TOLERANCE``.
    """
    true = diameter_of(remove_edge_masks(np.asarray(labels)))
    used, est = model.resolve_diameter(img, EvalOptions(channels=(0, 0), diameter=0), refine=True)
    final = used.diameter
    return {"true": round(true, 3), "estimate": est.diameter and round(est.diameter, 3),
            "error_percent": _error(est.diameter, true), "final": final and round(final, 3),
            "final_error_percent": _error(final, true), "refined": final != est.diameter,
            "seconds": round(est.seconds, 3), "steps": len(est.candidates)}


def _summary(rows) -> dict:
    errors = [r["error_percent"] for r in rows if r["error_percent"] is not None]
    final = [r["final_error_percent"] for r in rows if r["final_error_percent"] is not None]
    if not errors:
        return {"n": len(rows), "failed": len(rows)}
    return {"n": len(rows), "failed": len(rows) - len(errors), "median_error": float(np.median(errors)),
            "min_error": min(errors), "max_error": max(errors), "final_min_error": min(final),
            "final_max_error": max(final), "refined": sum(r["refined"] for r in rows),
            "median_seconds": float(np.median([r["seconds"] for r in rows]))}


def _cases():
    """(group, image, labels) of every image measured."""
    pick = validation if os.environ.get("CPTB_BENCH_SET") == "validation" else held_out
    for kind in sorted(KINDS):
        for img, labels in pick(kind, n=N_IMAGES):
            yield kind, img, labels
    for drange, edge, seed in NOMINAL:
        img, labels = make_image((1, edge, edge), seed=seed, diameter=drange)
        yield f"nominal {drange[0]}-{drange[1]} px", img[0], labels
    files = _stardist_files()
    if files is not None and files[0].exists():
        import tifffile
        yield "DSB crop", tifffile.imread(files[0]), tifffile.imread(files[1])


def run() -> dict:
    model = CellposeModel(pretrained_model=os.environ.get("CPTB_BENCH_MODEL", "cptb_nuclei"))
    groups = {}
    for group, img, labels in _cases():
        groups.setdefault(group, []).append(_one(model, img, labels))
    return {"hardware": hardware_line(hardware()), "images": groups,
            "summary": {group: _summary(rows) for group, rows in groups.items()}}


def _table(res: dict) -> str:
    lines = [res["hardware"], "| set | images | window: median error % | window: range % | window: median s | "
             "refined | final: range % |", "|---|---|---|---|---|---|---|"]
    for group, s in res["summary"].items():
        if s["failed"] == s["n"]:
            lines.append(f"| {group} | {s['n']} | no estimate | | | | |")
            continue
        lines.append(f"| {group} | {s['n']} | {s['median_error']:+.1f} | {s['min_error']:+.1f} to "
                     f"{s['max_error']:+.1f} | {s['median_seconds']:.1f} | {s['refined']} | "
                     f"{s['final_min_error']:+.1f} to {s['final_max_error']:+.1f} |")
    return "\n".join(lines)


def test_size_estimate_error():
    res = run()
    print(json.dumps(res["images"], indent=1))
    print(_table(res))
    assert set(KINDS) <= set(res["summary"])
    assert all(s["failed"] == 0 for s in res["summary"].values()), res["summary"]


if __name__ == "__main__":
    result = run()
    print(_table(result), file=sys.stderr)
    json.dump(result, sys.stdout, indent=1)
