"""Reference side of the ``CellposeModel.eval`` parity tests; run with the upstream interpreter.

Usage: ``python _ref_eval.py WEIGHTS INPUTS.npz OUTPUTS.npz``. ``WEIGHTS`` is a CPnet weight file loaded with
``models.CellposeModel(pretrained_model=WEIGHTS)`` on the CPU. For every case ``k`` the inputs hold
``k/image`` (a 2D image) and ``k/params`` (diameter, augment as 0/1); the outputs hold upstream's
``k/dP`` (2, Ly, Lx), ``k/cellprob`` (Ly, Lx) and ``k/styles`` (256,) from ``eval(image, channels=[0, 0],
diameter=diameter, augment=augment, compute_masks=False)``.
"""
from __future__ import annotations

import sys

import numpy as np
from cellpose import models


def main(weights: str, src: str, dst: str) -> None:
    data = np.load(src)
    model = models.CellposeModel(gpu=False, pretrained_model=weights)
    cases = sorted({k.split("/")[0] for k in data.files})
    out = {}
    for case in cases:
        diameter, augment = data[f"{case}/params"].tolist()
        _, flows, styles = model.eval(data[f"{case}/image"], channels=[0, 0], diameter=diameter,
                                      augment=bool(augment), compute_masks=False)
        out[f"{case}/dP"] = flows[1]
        out[f"{case}/cellprob"] = flows[2]
        out[f"{case}/styles"] = styles
    np.savez(dst, **out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
