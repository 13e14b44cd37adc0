"""Global labels without a global table: prefix-sum offsets, then one output chunk per block core.

Block ``k`` numbers its owned objects ``1..n_k``; object ``l`` of block ``k`` becomes ``offsets[k] + l`` with
``offsets = cumsum([0, n_0, n_1, ...])`` (row-major block order). The only table is ``offsets``, one integer
per block. Chunk ``t`` (the core of block ``t``) is the union of the pieces that block ``t`` and its
neighbours recorded for it. Objects never overlap when neighbouring blocks agree; where two blocks' owned
objects do claim the same pixel, the home block ``t`` wins (it is pasted last), then later blocks in
row-major order.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

__all__ = ["assemble_chunk", "label_offsets"]


def label_offsets(counts: Iterable[int]) -> np.ndarray:
    """``offsets[k]``: labels before block ``k``; ``offsets[-1]`` is the total.

    Raises
    ------
    OverflowError
        More objects than uint32 labels can hold.
    """
    offsets = np.concatenate([[0], np.cumsum(np.fromiter(counts, np.int64))]).astype(np.int64)
    if offsets[-1] > np.iinfo(np.uint32).max:
        raise OverflowError(f"{offsets[-1]} objects do not fit in uint32 labels")
    return offsets


def assemble_chunk(t: int, *, grid, offsets: np.ndarray, piece) -> np.ndarray:
    """The global labels of block ``t``'s core.

    Parameters
    ----------
    t : int
        Block index.
    grid : BlockGrid
        The run's block grid.
    offsets : ndarray (nblocks + 1,) int64
        From :func:`label_offsets`.
    piece : callable
        ``piece(k, t)`` returns ``(box, labels)`` of block ``k``'s objects inside core ``t``, or None.

    Returns
    -------
    chunk : ndarray (h, w) uint32
    """
    y0, y1, x0, x1 = grid.core(t)
    out = np.zeros((y1 - y0, x1 - x0), np.uint32)
    order = [k for k in grid.neighbours(t) if k != t] + [t]
    for k in order:
        found = piece(k, t)
        if found is None:
            continue
        (by0, by1, bx0, bx1), labels = found
        view = out[by0 - y0: by1 - y0, bx0 - x0: bx1 - x0]
        hit = labels > 0
        view[hit] = labels[hit].astype(np.uint32) + np.uint32(offsets[k])
    return out
