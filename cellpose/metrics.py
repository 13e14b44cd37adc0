"""Segmentation accuracy: IoU matching and average precision as used for Cellpose benchmarks.

Command line: ``python -m cellpose.metrics TRUE_MASKS PRED_MASKS [--annotated]`` reads two label images (TIFF,
or a ``_seg.npy`` for the prediction) and prints AP at IoU 0.5, 0.75 and 0.9 with the object counts.
``--annotated`` also scores against the ground truth as a person would draw it (``cellpose.data.sets.annotated``:
each label's largest 4-connected piece, if it has at least 15 px), for the generator's raw labels, which keep
edge slivers and nuclei cut in two by an overlapping neighbour.
"""
from __future__ import annotations

import sys
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["average_precision", "iou_matrix", "read_labels", "format_scores", "main"]


def iou_matrix(true: np.ndarray, pred: np.ndarray):
    """Sparse IoU between the labels of two label images of the same shape.

    Returns
    -------
    ti, pi : ndarray (K,) int64
        Label pairs (>= 1) that overlap.
    iou : ndarray (K,) float64
    n_true, n_pred : int
        Number of distinct non-zero labels in each image.
    """
    if true.shape != pred.shape:
        raise ValueError(f"label images differ in shape: {true.shape} vs {pred.shape}")
    t = true.ravel().astype(np.int64)
    p = pred.ravel().astype(np.int64)
    t_area = np.bincount(t)
    p_area = np.bincount(p)
    both = (t > 0) & (p > 0)
    pairs, overlap = np.unique(t[both] * (p.max() + 1) + p[both], return_counts=True)
    ti, pi = pairs // (p.max() + 1), pairs % (p.max() + 1)
    iou = overlap / (t_area[ti] + p_area[pi] - overlap)
    return ti, pi, iou, int(np.count_nonzero(t_area[1:])), int(np.count_nonzero(p_area[1:]))


def average_precision(true: np.ndarray, pred: np.ndarray, thresholds: Sequence[float] = (0.5, 0.75, 0.9)) -> dict:
    """AP = TP / (TP + FP + FN) at each IoU threshold, with an optimal one-to-one matching.

    At IoU >= 0.5 a label can overlap at most one partner that much, so matches are counted directly; below
    0.5 the matching is solved with ``linear_sum_assignment`` on the overlapping labels.

    Parameters
    ----------
    true, pred : ndarray (Ly, Lx) integer
        Ground-truth and predicted label images (0 = background; gaps allowed).
    thresholds : sequence of float

    Returns
    -------
    dict
        ``{"ap": [...], "tp": [...], "fp": [...], "fn": [...], "n_true": int, "n_pred": int}``.
    """
    ti, pi, iou, n_true, n_pred = iou_matrix(np.asarray(true), np.asarray(pred))
    out = {"ap": [], "tp": [], "fp": [], "fn": [], "n_true": n_true, "n_pred": n_pred}
    _, tr = np.unique(ti, return_inverse=True)
    _, pr = np.unique(pi, return_inverse=True)
    for thr in thresholds:
        keep = iou >= thr
        tp = 0
        if keep.any() and thr >= 0.5:
            tp = min(np.unique(ti[keep]).size, np.unique(pi[keep]).size)
        elif keep.any():
            cost = np.zeros((tr.max() + 1, pr.max() + 1))
            cost[tr[keep], pr[keep]] = iou[keep]
            r, c = linear_sum_assignment(cost, maximize=True)
            tp = int(np.count_nonzero(cost[r, c] >= thr))
        fp, fn = n_pred - tp, n_true - tp
        denom = tp + fp + fn
        out["ap"].append(tp / denom if denom else 1.0)
        out["tp"].append(tp)
        out["fp"].append(fp)
        out["fn"].append(fn)
    return out


def read_labels(path) -> np.ndarray:
    """Label image from an image file (``io.tiff.imread``) or from the ``masks`` of a ``_seg.npy`` file.

    Raises ``io.tiff.ImageReadError`` (an ``OSError``) for a missing or unreadable image file.
    """
    if str(path).endswith("_seg.npy"):
        return np.asarray(np.load(path, allow_pickle=True).item()["masks"])
    from .io import tiff as io_tiff

    return np.asarray(io_tiff.imread(path))


def format_scores(scores: dict, thresholds: Sequence[float]) -> str:
    """One line: ``AP@0.5 0.953  AP@0.75 ...  (true N, predicted M)``."""
    aps = "  ".join(f"AP@{t:g} {a:.3f}" for t, a in zip(thresholds, scores["ap"]))
    return f"{aps}  (true {scores['n_true']}, predicted {scores['n_pred']})"


def main(argv=None) -> int:
    """Print the average precision of a predicted label image against the ground truth; return 0."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m cellpose.metrics", description="AP of predicted masks.")
    p.add_argument("true", help="ground-truth label image (TIFF)")
    p.add_argument("pred", help="predicted label image (TIFF or _seg.npy)")
    p.add_argument("--annotated", action="store_true",
                   help="also score against each true label's largest connected piece of >= 15 px (2-D only)")
    args = p.parse_args(argv)
    try:
        true, pred = read_labels(args.true), read_labels(args.pred)
        sys.stdout.write(f"{args.pred}: {format_scores(average_precision(true, pred), (0.5, 0.75, 0.9))}\n")
        if args.annotated:
            from .data.sets import annotated

            scores = average_precision(annotated(true), pred)
            sys.stdout.write(f"{args.pred} (annotated ground truth): {format_scores(scores, (0.5, 0.75, 0.9))}\n")
    except (OSError, ValueError, KeyError) as err:
        p.error(f"cannot score {args.pred} against {args.true}: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
