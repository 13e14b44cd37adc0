"""Flows → masks: Euler integration, mask assembly, flow QC, hole filling (spec §4), and flow display.

Public surface (upstream names): ``masks_to_flows``, ``compute_masks``, ``follow_flows``, ``get_masks``,
``flow_errors``, ``remove_bad_flow_masks``, ``fill_holes_and_remove_small_masks``, ``flows_to_rgb``,
``remove_edge_masks``.

Two implementations, chosen by ``compute_masks(..., impl=)``: ``"exact"`` (default; ``integrate.py``,
``masks.py``, ``qc.py``: upstream's arithmetic) and ``"fast"`` (``fast.py``, ``fast_masks.py``, ``fast_qc.py``:
float32 integration, parallel over numba's threads), optionally row-chunked with ``chunk_rows=``
(``chunked.py``: the same masks with bounded temporaries).
"""
from .compute import compute_masks
from .edges import remove_edge_masks
from .flows import masks_to_flows
from .integrate import follow_flows
from .masks import fill_holes_and_remove_small_masks, get_masks
from .qc import flow_errors, remove_bad_flow_masks
from .rgb import flows_to_rgb

__all__ = ["compute_masks", "fill_holes_and_remove_small_masks", "flow_errors", "flows_to_rgb", "follow_flows",
           "get_masks", "masks_to_flows", "remove_bad_flow_masks", "remove_edge_masks"]
