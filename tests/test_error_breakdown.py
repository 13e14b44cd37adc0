"""``metrics.error_breakdown``: every unmatched object gets one reason, and the counts add up to AP's."""
from __future__ import annotations

import numpy as np
import pytest

from cellpose.metrics import average_precision, error_breakdown


def _scene():
    """True objects 1-7 and predictions that make one of each kind of error (see the comments)."""
    true = np.zeros((60, 80), np.int32)
    pred = np.zeros_like(true)
    true[2:12, 2:12], true[2:12, 12:22] = 1, 2          # a touching pair ...
    pred[2:13, 2:22] = 1                                 # ... predicted as one mask: merged, merged
    true[20:32, 2:14] = 3                                # one object ...
    pred[20:32, 2:6], pred[20:32, 6:10], pred[20:32, 10:14] = 2, 3, 7  # ... in three pieces: split
    true[40:50, 2:12] = 4                                # not predicted at all: missed
    true[20:30, 30:40] = 5
    pred[24:34, 34:44] = 4                               # IoU 36/164: boundary
    true[40:50, 30:40] = 6
    pred[40:50, 30:40] = 5                               # matched
    true[2:10, 50:58] = 7
    pred[2:10, 50:58] = 9                                # matched, with a gap in the label values
    pred[45:55, 60:70] = 6                               # nothing there: false positive
    return true, pred


def test_each_unmatched_object_has_its_reason():
    true, pred = _scene()
    got = error_breakdown(true, pred)
    assert got == {"n_true": 7, "n_pred": 8, "matched": 2, "merged": 2, "split": 1, "missed": 1, "boundary": 1,
                   "false_positive": 1, "extra_predictions": 5}


def test_counts_agree_with_average_precision_on_random_scenes():
    rng = np.random.default_rng(3)
    for _ in range(5):
        true = rng.integers(0, 6, (40, 40)).repeat(4, 0).repeat(4, 1)
        pred = np.roll(true, int(rng.integers(0, 4)), axis=1) * (rng.random((160, 160)) > 0.05)
        for thr in (0.5, 0.75):
            got, ap = error_breakdown(true, pred, threshold=thr), average_precision(true, pred, thresholds=(thr,))
            assert got["matched"] == ap["tp"][0]
            assert got["merged"] + got["split"] + got["missed"] + got["boundary"] == ap["fn"][0]
            assert got["false_positive"] + got["extra_predictions"] == ap["fp"][0]


def test_ties_at_exactly_half_match_once():
    true = np.zeros((20, 40), np.int32)
    pred = np.zeros_like(true)
    true[0:4, 0:4] = 1
    pred[0:4, 0:2], pred[0:4, 2:4] = 1, 2                 # two halves of one object: IoU 0.5 each
    true[10:14, 0:2], true[10:14, 2:4] = 2, 3
    pred[10:14, 0:4] = 3                                  # one mask over two halves: IoU 0.5 each
    got, ap = error_breakdown(true, pred), average_precision(true, pred, thresholds=(0.5,))
    assert got["matched"] == ap["tp"][0] == 2
    assert got["split"] + got["merged"] + got["missed"] + got["boundary"] == got["n_true"] - 2 == 1
    assert got["false_positive"] + got["extra_predictions"] == got["n_pred"] - 2 == 1
    assert ap["ap"][0] == pytest.approx(2 / 4)


@pytest.mark.parametrize("kw", [dict(threshold=0.4), dict(threshold=1.5), dict(cover=0.0), dict(cover=1.2)])
def test_bad_threshold_or_cover_is_refused(kw):
    true, pred = _scene()
    with pytest.raises(ValueError, match="threshold must be in"):
        error_breakdown(true, pred, **kw)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        error_breakdown(np.zeros((4, 4), int), np.zeros((4, 5), int))
