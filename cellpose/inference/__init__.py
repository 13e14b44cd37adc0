"""Tiled network inference over one 2D image (spec §3): tile grid, taper weights, batch-by-batch pass."""
from .run_net import padded_grid, run_tiled
from .tiling import TileGrid, axis_weight_sums, make_grid, taper_mask, taper_profiles, tile_starts

__all__ = ["run_tiled", "padded_grid", "TileGrid", "make_grid", "tile_starts", "taper_mask", "taper_profiles",
           "axis_weight_sums"]
