"""The network output over one window of a large image, from the tiles of the whole-image grid.

A block of a slide must see what the whole image would give it. ``run_tiled`` on a crop would lay its own
tile grid over the crop, so the tiles (and with them the network's context at every pixel) would differ
from the whole-image pass. :func:`run_window` instead runs exactly those tiles of the *whole-image* grid
that cover the target box, in the whole-image order, and divides by the whole-image taper sums: every
output pixel inside the box is the same weighted average of the same tiles as in ``run_tiled`` on the whole
image (bit for bit, up to the network's own batch-size-dependent rounding).
"""
from __future__ import annotations

import numpy as np
import torch

from ..config import TilingOptions
from ..geometry import Box, tile_footprint, tiles_touching
from ..profiling import stage
from .run_net import _accumulate, _check_image, _cut_tiles, _forward_skipping, _normalise, _Placement, padded_grid
from .tiling import taper_profiles

__all__ = ["WindowPlan", "plan_window", "run_window"]


class WindowPlan:
    """Which whole-image tiles a target box needs, and the image window they read.

    Attributes
    ----------
    grid : TileGrid
        Whole-image (padded) tile grid.
    offset : (int, int)
        Image pixel (0, 0) in grid coordinates.
    shape : (int, int)
        Whole image size (after any rescaling).
    tiles : ndarray (m,) int64
        Row-major indices of the tiles that meet ``target``.
    window : Box
        Union of those tiles' footprints in the image: the pixels to read.
    target : Box
        Output pixels wanted.
    """

    def __init__(self, grid, offset, shape, tiles, window: Box, target: Box):
        self.grid, self.offset, self.shape = grid, tuple(offset), tuple(shape)
        self.tiles, self.window, self.target = tiles, window, target


def plan_window(shape, target: Box, *, tiling: TilingOptions) -> WindowPlan:
    """Plan the tiles and the input window for the network output over ``target``.

    Parameters
    ----------
    shape : (int, int)
        Whole image size as the network sees it (after rescaling).
    target : Box
        ``(y0, y1, x0, x1)`` within ``shape``.
    tiling : TilingOptions
        The whole-image tiling (tile size, overlap, augment).

    Returns
    -------
    plan : WindowPlan
    """
    grid, offset = padded_grid(int(shape[0]), int(shape[1]), tiling=tiling)
    tiles = tiles_touching(grid, offset, shape, target)
    boxes = np.array([tile_footprint(grid, offset, int(k), shape) for k in tiles], np.int64)
    window = (int(boxes[:, 0].min()), int(boxes[:, 1].max()), int(boxes[:, 2].min()), int(boxes[:, 3].max()))
    return WindowPlan(grid, offset, shape, tiles, window, tuple(int(v) for v in target))


def run_window(net, img: np.ndarray, plan: WindowPlan, *, batch_size: int = 8, device=None,
               skip_empty: bool = False) -> np.ndarray:
    """Network output over ``plan.target`` from the image pixels of ``plan.window``.

    Parameters
    ----------
    net : callable
        As for ``run_tiled``.
    img : ndarray (h, w, C) float32
        Normalised image pixels of ``plan.window`` (``h, w`` its height and width).
    plan : WindowPlan
        From :func:`plan_window`.
    batch_size : int
        Tiles per forward pass.
    device : torch.device, optional
        Default: the CPU.
    skip_empty : bool
        Constant tiles get the network's cached output for that constant instead of a forward pass.

    Returns
    -------
    y : ndarray (nout, ty1 - ty0, tx1 - tx0) float32
        Blended output over the target box, as ``run_tiled`` on the whole image gives it there.
    """
    img = _check_image(img)
    wy0, wy1, wx0, wx1 = plan.window
    if img.shape[:2] != (wy1 - wy0, wx1 - wx0):
        raise ValueError(f"window image has shape {img.shape[:2]}, the plan needs {(wy1 - wy0, wx1 - wx0)}")
    device = torch.device("cpu") if device is None else torch.device(device)
    place = _Placement(plan.grid, (plan.offset[0] + wy0, plan.offset[1] + wx0), img.shape[:2])
    acc = _window_pass(net, img, place, plan.tiles, batch_size=batch_size, device=device,
                       empties={} if skip_empty else None)
    _normalise(acc, place)
    ty0, ty1, tx0, tx1 = plan.target
    return np.ascontiguousarray(acc[:, ty0 - wy0: ty1 - wy0, tx0 - wx0: tx1 - wx0])


def _window_pass(net, img, place, tiles, *, batch_size: int, device, empties) -> np.ndarray:
    """Accumulate the weighted outputs of ``tiles`` (in order) over the window."""
    w = np.outer(*taper_profiles(*place.grid.tile))
    acc = None
    with stage("network") as s:
        for b0 in range(0, len(tiles), batch_size):
            ks = [int(k) for k in tiles[b0: b0 + batch_size]]
            with stage("tile"):
                batch = _cut_tiles(img, place, ks, pinned=torch.device(device).type == "cuda")
            with stage("network.batch") as sb:
                out, _, nskip = _forward_skipping(net, batch, device, empties)
                sb.add(tiles=len(ks), pixels=batch.shape[0] * batch.shape[2] * batch.shape[3])
                if empties is not None:
                    sb.add(skipped_tiles=nskip, forwarded_tiles=len(ks) - nskip)
            with stage("tile_average.batch"):
                if acc is None:
                    acc = np.zeros((out.shape[1],) + img.shape[:2], np.float32)
                _accumulate(acc, out, place, ks, w)
        s.add(tiles=len(tiles))
    return acc
