"""Segmentation accuracy: IoU matching and average precision as used for Cellpose benchmarks.

Command line: ``python -m cellpose.metrics TRUE_MASKS PRED_MASKS [--annotated] [--errors]`` reads two label images
(TIFF, or a ``_seg.npy`` for the prediction) and prints AP at IoU 0.5, 0.75 and 0.9 with the object counts.
``--errors`` adds why the unmatched objects at IoU 0.5 are unmatched (``error_breakdown``).
``--annotated`` also scores against the ground truth as a person would draw it (``cellpose.data.sets.annotated``:
each label's largest 4-connected piece, if it has at least 15 px), for the generator's raw labels, which keep
edge slivers and nuclei cut in two by an overlapping neighbour.
"""
from __future__ import annotations

import sys
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["average_precision", "error_breakdown", "iou_matrix", "matched_pairs", "read_labels", "format_scores",
           "main"]


def _overlaps(true: np.ndarray, pred: np.ndarray):
    """Overlapping label pairs ``ti, pi`` (>= 1), their overlap in pixels and the areas of every label value."""
    if true.shape != pred.shape:
        raise ValueError(f"label images differ in shape: {true.shape} vs {pred.shape}")
    t = true.ravel().astype(np.int64)
    p = pred.ravel().astype(np.int64)
    both = (t > 0) & (p > 0)
    base = p.max() + 1
    pairs, overlap = np.unique(t[both] * base + p[both], return_counts=True)
    return pairs // base, pairs % base, overlap, np.bincount(t), np.bincount(p)


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
    ti, pi, overlap, t_area, p_area = _overlaps(true, pred)
    iou = overlap / (t_area[ti] + p_area[pi] - overlap)
    return ti, pi, iou, int(np.count_nonzero(t_area[1:])), int(np.count_nonzero(p_area[1:]))


def matched_pairs(ti: np.ndarray, pi: np.ndarray, iou: np.ndarray, *, threshold: float) -> np.ndarray:
    """One-to-one matches among overlapping label pairs at an IoU threshold >= 0.5.

    Parameters
    ----------
    ti, pi : ndarray (K,) int
        Overlapping (true, predicted) label pairs, as from ``iou_matrix``.
    iou : ndarray (K,) float
    threshold : float
        At least 0.5: a label then reaches that IoU with two partners only in a tie at exactly 0.5, and the pairs
        so tied form stars (an object and its two halves); the greedy pick in decreasing IoU keeps one per star.

    Returns
    -------
    ndarray (K,) bool
        The pairs that match; no label appears in two of them.
    """
    keep = iou >= threshold
    if np.unique(ti[keep]).size == np.unique(pi[keep]).size == np.count_nonzero(keep):
        return keep
    out = np.zeros_like(keep)
    used_t, used_p = set(), set()
    for k in np.flatnonzero(keep)[np.argsort(-iou[keep], kind="stable")]:
        if ti[k] not in used_t and pi[k] not in used_p:
            out[k] = True
            used_t.add(ti[k])
            used_p.add(pi[k])
    return out


def average_precision(true: np.ndarray, pred: np.ndarray, thresholds: Sequence[float] = (0.5, 0.75, 0.9)) -> dict:
    """AP = TP / (TP + FP + FN) at each IoU threshold, with an optimal one-to-one matching.

    At IoU >= 0.5 a label can overlap more than one partner that much only in a tie at exactly 0.5 (an object cut
    into two equal halves), so matches are taken greedily (``matched_pairs``); below 0.5 the matching is solved
    with ``linear_sum_assignment`` on the overlapping labels.

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
            tp = int(np.count_nonzero(matched_pairs(ti, pi, iou, threshold=thr)))
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


def error_breakdown(true: np.ndarray, pred: np.ndarray, *, threshold: float = 0.5, cover: float = 0.3) -> dict:
    """Why the unmatched objects at one IoU threshold are unmatched.

    A true object is matched when a predicted mask has IoU >= ``threshold`` with it (one-to-one,
    ``matched_pairs``). An unmatched true object is *merged* when the predicted mask with the largest overlap
    covers at least ``cover`` of it and at least ``cover`` of another true object; otherwise *split* when two or
    more predicted masks each cover ``cover`` of it; *missed* when none does; else *boundary* (one mask found
    it, with the outline too far off). An unmatched predicted mask is a *false positive* when no true object
    overlaps ``cover`` or more of its area; the others (merged masks, pieces of split objects, masks with a poor
    outline, the second half of a tie) are ``extra_predictions``.
    Of masks tied for the largest overlap, the lowest label counts.

    Parameters
    ----------
    true, pred : ndarray (Ly, Lx) integer
        Ground-truth and predicted label images (0 = background; gaps allowed); any shape, the same for both.
    threshold : float
        IoU for a match, in [0.5, 1].
    cover : float
        Fraction of an object's area, in (0, 1], that counts as covering it.

    Returns
    -------
    dict of int
        ``n_true, n_pred, matched, merged, split, missed, boundary, false_positive, extra_predictions``;
        ``matched`` equals ``average_precision``'s ``tp`` at ``threshold``,
        ``merged + split + missed + boundary == n_true - matched`` and
        ``false_positive + extra_predictions == n_pred - matched``.
    """
    if not 0.5 <= threshold <= 1.0 or not 0.0 < cover <= 1.0:
        raise ValueError(f"threshold must be in [0.5, 1] and cover in (0, 1], got {threshold} and {cover}")
    ti, pi, overlap, t_area, p_area = _overlaps(np.asarray(true), np.asarray(pred))
    hit = matched_pairs(ti, pi, overlap / (t_area[ti] + p_area[pi] - overlap), threshold=threshold)
    t_cov = overlap / t_area[ti]
    true_ids, pred_ids = np.flatnonzero(t_area[1:]) + 1, np.flatnonzero(p_area[1:]) + 1
    out = _unmatched_true(np.setdiff1d(true_ids, ti[hit]), ti, pi, overlap, t_cov >= cover, p_area.size)
    lone = np.setdiff1d(pred_ids, pi[hit])
    fp = int(np.count_nonzero(~np.isin(lone, pi[overlap / p_area[pi] >= cover])))
    out.update(n_true=int(true_ids.size), n_pred=int(pred_ids.size), matched=int(np.count_nonzero(hit)),
               false_positive=fp, extra_predictions=int(lone.size) - fp)
    return out


def _unmatched_true(todo, ti, pi, overlap, covers, n_pred_values) -> dict:
    """Counts of "merged", "split", "missed", "boundary" among the unmatched true labels ``todo``.

    ``covers[k]``: pair k's predicted mask covers ``cover`` of its true object (see ``error_breakdown``).
    """
    out = dict.fromkeys(("merged", "split", "missed", "boundary"), 0)
    order = np.lexsort((pi, -overlap, ti))          # by true label, largest overlap (then lowest label) first
    ti, pi, covers = ti[order], pi[order], covers[order]
    objects_covered = np.bincount(pi[covers], minlength=n_pred_values)
    first, last = np.searchsorted(ti, todo, "left"), np.searchsorted(ti, todo, "right")
    for a, b in zip(first, last):
        n_covering = int(np.count_nonzero(covers[a:b]))
        if b > a and covers[a] and objects_covered[pi[a]] >= 2:
            out["merged"] += 1
        else:
            out["split" if n_covering >= 2 else ("missed" if n_covering == 0 else "boundary")] += 1
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


def _format_errors(counts: dict) -> str:
    """``merged 2, split 1, missed 1, boundary 1 (true objects); false positive 1`` from ``error_breakdown``."""
    true_side = ", ".join(f"{key} {counts[key]}" for key in ("merged", "split", "missed", "boundary"))
    return f"{true_side} (true objects); false positive {counts['false_positive']}"


def _report(name, what: str, true, pred, errors: bool) -> None:
    """Write the AP line and, with ``errors``, the reasons for the misses at IoU 0.5."""
    sys.stdout.write(f"{name}{what}: {format_scores(average_precision(true, pred), (0.5, 0.75, 0.9))}\n")
    if errors:
        sys.stdout.write(f"{name}{what} misses at IoU 0.5: {_format_errors(error_breakdown(true, pred))}\n")


def main(argv=None) -> int:
    """Print the average precision of a predicted label image against the ground truth; return 0."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m cellpose.metrics", description="AP of predicted masks.")
    p.add_argument("true", help="ground-truth label image (TIFF)")
    p.add_argument("pred", help="predicted label image (TIFF or _seg.npy)")
    p.add_argument("--annotated", action="store_true",
                   help="also score against each true label's largest connected piece of >= 15 px (2-D only)")
    p.add_argument("--errors", action="store_true",
                   help="also count the misses at IoU 0.5 by reason (merged, split, missed, boundary; false "
                        "positives are the unmatched masks over no true object, so fewer than AP's FP)")
    args = p.parse_args(argv)
    try:
        true, pred = read_labels(args.true), read_labels(args.pred)
        _report(args.pred, "", true, pred, args.errors)
        if args.annotated:
            from .data.sets import annotated

            _report(args.pred, " (annotated ground truth)", annotated(true), pred, args.errors)
    except (OSError, ValueError, KeyError) as err:
        p.error(f"cannot score {args.pred} against {args.true}: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
