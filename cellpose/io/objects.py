"""Per-object table (area, centroid, bounding box) of a whole-slide label image, read chunk by chunk.

``object_table`` never holds the image: it reads one chunk at a time, run-length encodes each row of
the chunk (a run is a stretch of equal labels), reduces the runs to one record per label of the chunk
and merges these records into one per label present (7 numbers each). Memory follows the number of
objects, not the label values, so sparse labels up to 2**32 - 1 cost no more than 1..n. The CSV it
writes has one row per label present, sorted by label::

    label,area,centroid_y,centroid_x,bbox_min_y,bbox_min_x,bbox_max_y,bbox_max_x

Centroids are in pixels (row, column) with 3 decimals; the bounding box maximum is exclusive, as
scikit-image's ``regionprops(...).bbox``. ``object_stats`` computes the same numbers for a small
in-memory array, by a different route (``np.bincount`` and ``scipy.ndimage.find_objects``).

A record is ``(ids, sums, boxes)``: ``ids`` (n,) int64 labels; ``sums`` (n, 3) float64 area, sum of
rows, sum of columns (integers, exact in float64 below 2**53); ``boxes`` (n, 4) int64
``min_y, min_x, -max_y, -max_x``, negated maxima so that merging is a minimum over every column.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from scipy import ndimage

from .atomic import atomic_write

__all__ = ["OBJECT_COLUMNS", "object_table", "object_stats"]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

OBJECT_COLUMNS = ("label", "area", "centroid_y", "centroid_x", "bbox_min_y", "bbox_min_x", "bbox_max_y",
                  "bbox_max_x")
ROW_FORMAT = "%d,%d,%.3f,%.3f,%d,%d,%d,%d\n"
DEFAULT_CHUNK = (2048, 2048)
ROWS_PER_WRITE = 65536
MIN_PENDING_ROWS = 1 << 20
BAND_ROWS = 256

Records = Tuple[np.ndarray, np.ndarray, np.ndarray]


def _row_runs(block: np.ndarray, y0: int, x0: int) -> Records:
    """Records of the runs of equal non-zero labels along the rows of ``block`` (one record per run).

    Parameters
    ----------
    block : (h, w) ndarray
        A window of the label image whose top-left pixel is ``(y0, x0)``.

    Returns
    -------
    ids, sums, boxes : ndarray
        See the module notes; coordinates are image coordinates.
    """
    h, w = block.shape
    change = np.ones((h, w), dtype=bool)
    np.not_equal(block[:, 1:], block[:, :-1], out=change[:, 1:])
    rows, starts = np.nonzero(change)
    ends = np.append(rows[1:] * w + starts[1:], h * w) - rows * w  # a row's last run ends at the row's end
    ids = block[rows, starts].astype(np.int64)
    keep = ids != 0
    ids, rows, starts, ends = ids[keep], rows[keep] + y0, starts[keep] + x0, ends[keep] + x0
    lengths = ends - starts
    sums = np.stack([lengths, lengths * rows, (starts + ends - 1) * lengths // 2], axis=1).astype(np.float64)
    return ids, sums, np.stack([rows, starts, -(rows + 1), -ends], axis=1)


def _reduce(ids: np.ndarray, sums: np.ndarray, boxes: np.ndarray) -> Records:
    """Merge records of equal id: sums add up, boxes take the minimum; the result is sorted by id."""
    if ids.size == 0:
        return ids, sums, boxes
    order = np.argsort(ids, kind="stable")
    ids, sums, boxes = ids[order], sums[order], boxes[order]
    starts = np.flatnonzero(np.diff(ids, prepend=ids[0] - 1))
    return ids[starts], np.add.reduceat(sums, starts, axis=0), np.minimum.reduceat(boxes, starts, axis=0)


def _concatenate(parts: List[Records]) -> Records:
    """One record set holding the records of all ``parts``, in order."""
    return tuple(np.concatenate([part[i] for part in parts]) for i in range(3))


@dataclass
class _Accumulator:
    """Merged records of the chunks read so far, plus records not merged yet (merged in batches)."""

    merged: Records = field(default_factory=lambda: (np.zeros(0, np.int64), np.zeros((0, 3)),
                                                     np.zeros((0, 4), np.int64)))
    pending: List[Records] = field(default_factory=list)
    pending_rows: int = 0

    def add(self, records: Records) -> None:
        """Queue a chunk's records; merge once the queue outgrows the merged table (amortised O(n))."""
        self.pending.append(_reduce(*records))
        self.pending_rows += self.pending[-1][0].size
        if self.pending_rows > max(MIN_PENDING_ROWS, self.merged[0].size):
            self.flush()

    def flush(self) -> None:
        """Merge the queued records into ``merged``."""
        self.merged = _reduce(*_concatenate([self.merged, *self.pending]))
        self.pending, self.pending_rows = [], 0

    def columns(self) -> Dict[str, np.ndarray]:
        """The table: one entry per label present, sorted by label."""
        self.flush()
        ids, sums, boxes = self.merged
        area = sums[:, 0]
        return {"label": ids, "area": area.astype(np.int64), "centroid_y": sums[:, 1] / area,
                "centroid_x": sums[:, 2] / area, "bbox_min_y": boxes[:, 0], "bbox_min_x": boxes[:, 1],
                "bbox_max_y": -boxes[:, 2], "bbox_max_x": -boxes[:, 3]}


def _window_shape(labels, chunk: Optional[Sequence[int]]) -> Tuple[int, int]:
    """``chunk``, else the array's own regular 2-D chunk shape (zarr), else ``DEFAULT_CHUNK``."""
    if chunk is None:
        chunk = getattr(labels, "chunks", None)
        if chunk is None or len(chunk) != 2 or not all(isinstance(c, (int, np.integer)) for c in chunk):
            chunk = DEFAULT_CHUNK
    cy, cx = (int(c) for c in chunk)
    if cy < 1 or cx < 1:
        raise ValueError(f"chunk must be positive, got {tuple(chunk)}")
    return cy, cx


def _accumulate(labels, chunk: Tuple[int, int]) -> _Accumulator:
    """Read ``labels`` one window at a time and add its row runs, ``BAND_ROWS`` rows at a time."""
    ny, nx = labels.shape
    acc = _Accumulator()
    for y0 in range(0, ny, chunk[0]):
        for x0 in range(0, nx, chunk[1]):
            block = np.asarray(labels[y0:min(y0 + chunk[0], ny), x0:min(x0 + chunk[1], nx)])
            for band in range(0, block.shape[0], BAND_ROWS):  # bounds the run temporaries
                acc.add(_row_runs(block[band:band + BAND_ROWS], y0 + band, x0))
    return acc


def _write_csv(path: Path, columns: Dict[str, np.ndarray]) -> None:
    """Header plus one ``ROW_FORMAT`` line per label, formatted in batches of ``ROWS_PER_WRITE``."""
    values = [columns[name] for name in OBJECT_COLUMNS]
    with open(path, "w", encoding="ascii", newline="") as f:
        f.write(",".join(OBJECT_COLUMNS) + "\n")
        for start in range(0, values[0].size, ROWS_PER_WRITE):
            batch = zip(*(v[start:start + ROWS_PER_WRITE].tolist() for v in values))
            f.write("".join(ROW_FORMAT % row for row in batch))


def object_table(labels, path: PathLike, *, chunk: Optional[Sequence[int]] = None) -> int:
    """Write the per-object CSV of a 2-D label image, reading it one chunk at a time.

    Parameters
    ----------
    labels : array-like, (Y, X) non-negative integers
        E.g. a zarr array (``open_label_level``); only ``shape`` and 2-D slicing are used.
    path : str or os.PathLike
        Output CSV; its directory must exist. Written atomically.
    chunk : (int, int), optional
        Window read at a time; default the array's ``chunks``, else ``DEFAULT_CHUNK``.

    Returns
    -------
    n_rows : int
        Number of labels written (labels absent from the image get no row).

    Notes
    -----
    Memory: one window, its row runs, and 8 numbers per label present (about twice that while
    merging).
    """
    if len(labels.shape) != 2:
        raise ValueError(f"labels must be 2-D (Y, X), got shape {tuple(labels.shape)}")
    if not np.issubdtype(np.dtype(labels.dtype), np.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    columns = _accumulate(labels, _window_shape(labels, chunk)).columns()
    with atomic_write(Path(path)) as tmp:
        _write_csv(tmp, columns)
    logger.debug("object table %s: %d objects", path, columns["label"].size)
    return int(columns["label"].size)


def _bounding_boxes(compact: np.ndarray, n: int) -> np.ndarray:
    """``(n, 4)`` int64 ``[min_y, min_x, max_y, max_x]`` (max exclusive) of labels ``1..n`` of ``compact``."""
    slices = ndimage.find_objects(compact, max_label=n)
    return np.array([(s[0].start, s[1].start, s[0].stop, s[1].stop) for s in slices], dtype=np.int64).reshape(-1, 4)


def object_stats(labels_array) -> Dict[str, np.ndarray]:
    """Area, centroid and bounding box of every label of a small in-memory label image.

    Parameters
    ----------
    labels_array : (Y, X) array-like of non-negative integers

    Returns
    -------
    stats : dict of str to ndarray
        Keys ``OBJECT_COLUMNS``; each value has one entry per label present (sorted), centroids
        float64, everything else int64.
    """
    labels = np.asarray(labels_array)
    values, inverse = np.unique(labels.astype(np.int64), return_inverse=True)
    compact = inverse.reshape(labels.shape) + (1 if values[0] != 0 else 0)  # background -> 0, labels -> 1..n
    ids = values[values != 0]
    flat = compact.ravel()
    yy, xx = np.indices(labels.shape)
    area = np.bincount(flat, minlength=ids.size + 1)[1:]
    bbox = _bounding_boxes(compact, ids.size)
    return {"label": ids, "area": area, "centroid_y": np.bincount(flat, weights=yy.ravel())[1:] / area,
            "centroid_x": np.bincount(flat, weights=xx.ravel())[1:] / area, "bbox_min_y": bbox[:, 0],
            "bbox_min_x": bbox[:, 1], "bbox_max_y": bbox[:, 2], "bbox_max_x": bbox[:, 3]}
