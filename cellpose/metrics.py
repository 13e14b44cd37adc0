"""Segmentation accuracy: IoU matching and average precision as used for Cellpose benchmarks."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["average_precision", "iou_matrix"]


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
