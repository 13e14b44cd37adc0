"""Remove masks that touch the image border (``--exclude_on_edges``)."""
from __future__ import annotations

import numpy as np

__all__ = ["remove_edge_masks"]


def remove_edge_masks(masks: np.ndarray) -> np.ndarray:
    """Zero every mask whose bounding box touches the border, then relabel 1..n keeping the order of label values.

    Parameters
    ----------
    masks : ndarray (Ly, Lx) unsigned int
        Label image, 0 = background.

    Returns
    -------
    ndarray (Ly, Lx), same dtype as ``masks``
        Upstream returns int32 here; the dtype is kept so that large label counts stay exact.
    """
    if masks.ndim != 2:
        raise ValueError(f"masks must be 2D, got shape {masks.shape}")
    border = np.concatenate([masks[0], masks[-1], masks[:, 0], masks[:, -1]])
    touching = np.unique(border)
    lut = np.zeros(int(masks.max()) + 1, dtype=masks.dtype)
    kept = np.setdiff1d(np.unique(masks), touching)
    kept = kept[kept > 0]
    lut[kept] = np.arange(1, kept.size + 1, dtype=masks.dtype)
    return lut[masks]
