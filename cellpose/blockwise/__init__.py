"""Whole-slide segmentation in bounded memory: block by block, on Dask or in this process.

``segment(source, model, chan=1, block_size=None, out=None, client=None, resume=False)`` is the entry point
(see ``cellpose.blockwise.segment`` for the contract with whole-image ``eval``); ``estimate`` predicts the
peak memory and time of a run before it starts.
"""
from .blocks import BlockPlan, default_block_size, halo_for
from .estimate import Estimate, estimate
from .segment import BlockwiseResult, output_paths, run, segment

__all__ = ["BlockPlan", "BlockwiseResult", "Estimate", "default_block_size", "estimate", "halo_for", "output_paths",
           "run", "segment"]
