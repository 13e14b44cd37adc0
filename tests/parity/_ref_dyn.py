"""Reference side of the dynamics parity tests; run with the upstream interpreter.

Usage: ``python _ref_dyn.py INPUTS.npz OUTPUTS.npz``. For every case ``k`` the inputs hold ``k/labels``
(ground truth), ``k/dP``, ``k/cellprob`` and ``k/params`` (niter, cellprob_threshold, flow_threshold, min_size);
the outputs hold upstream's ``k/flows`` (masks_to_flows of the labels), ``k/masks`` (compute_masks),
``k/rgb`` (dx_to_circ) and ``k/filled`` (fill_holes_and_remove_small_masks of the labels).
"""
from __future__ import annotations

import sys

import numpy as np
from cellpose import dynamics, plot, utils


def main(src: str, dst: str) -> None:
    data = np.load(src)
    cases = sorted({k.split("/")[0] for k in data.files})
    out = {}
    for case in cases:
        labels, dP, cellprob = data[f"{case}/labels"], data[f"{case}/dP"], data[f"{case}/cellprob"]
        niter, cp_thr, flow_thr, min_size = data[f"{case}/params"].tolist()
        out[f"{case}/flows"] = dynamics.masks_to_flows(labels.astype(np.int64))
        masks = dynamics.compute_masks(dP, cellprob, niter=int(niter), cellprob_threshold=cp_thr,
                                       flow_threshold=flow_thr, min_size=int(min_size))
        out[f"{case}/masks"] = masks[0] if isinstance(masks, tuple) else masks
        out[f"{case}/rgb"] = plot.dx_to_circ(dP)
        out[f"{case}/filled"] = utils.fill_holes_and_remove_small_masks(labels.copy(), min_size=int(min_size))
    np.savez(dst, **out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
