"""Tiled network pass over one 2D image (spec §2.5, §3.2-3.5), batch by batch.

Memory: only the input image, the (nout, Ly, Lx) float32 output and one batch of tiles are held. The
zero padding of §2.5 is virtual (tiles are cut from the unpadded image and zero-filled where they stick
out), outputs are accumulated only where they land inside the image (padding outputs are discarded by
upstream anyway), and the taper normaliser is the outer product of two per-axis sums. The arithmetic of
every output pixel is upstream's: ``acc = f32(f64(acc) + f64(y) * w)`` over tiles in row-major order, then
``out = f32(f64(acc) / (Wy[y] * Wx[x]))``.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..config import TilingOptions
from ..preprocess.resize import pad_amounts
from ..profiling import stage
from ..progress import Progress, progress_shown
from .tiling import TileGrid, axis_weight_sums, make_grid, taper_profiles

__all__ = ["run_tiled", "padded_grid"]

logger = logging.getLogger(__name__)

_ROWS_PER_BLOCK_PIXELS = 1 << 20


@dataclass(frozen=True, eq=False)
class _Placement:
    """Where tiles fall relative to the unpadded image: the grid plus the image offset in it."""

    grid: TileGrid
    offset: tuple
    size: tuple

    def window(self, k: int) -> tuple[slice, slice, slice, slice]:
        """Image rows/cols and tile rows/cols of the part of tile ``k`` that lies inside the image."""
        y0, x0 = self.grid.origin(k)
        (ly, lx), (oy, ox), (Ly, Lx) = self.grid.tile, self.offset, self.size
        iy0, iy1 = max(y0 - oy, 0), min(y0 - oy + ly, Ly)
        ix0, ix1 = max(x0 - ox, 0), min(x0 - ox + lx, Lx)
        ty0, tx0 = iy0 - (y0 - oy), ix0 - (x0 - ox)
        return (slice(iy0, iy1), slice(ix0, ix1),
                slice(ty0, ty0 + max(iy1 - iy0, 0)), slice(tx0, tx0 + max(ix1 - ix0, 0)))


def padded_grid(Ly: int, Lx: int, *, tiling: TilingOptions) -> tuple[TileGrid, tuple[int, int]]:
    """Tile grid of an (Ly, Lx) image after the §2.5 padding.

    Parameters
    ----------
    Ly, Lx : int
        Image size (after any rescaling).
    tiling : TilingOptions
        ``bsize``, ``tile_overlap`` and ``augment`` are used.

    Returns
    -------
    grid : TileGrid
        Grid over the padded extent.
    offset : (int, int)
        Position of the image's pixel (0, 0) in grid coordinates (the zeros before each axis).
    """
    (py0, py1), (px0, px1) = pad_amounts(Ly), pad_amounts(Lx)
    grid = make_grid(Ly + py0 + py1, Lx + px0 + px1, bsize=tiling.bsize, tile_overlap=tiling.tile_overlap,
                     augment=tiling.augment)
    return grid, (py0, px0)


def run_tiled(net, img: np.ndarray, *, tiling: TilingOptions, device=None,
              skip_empty: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Run ``net`` over an image tile by tile and blend the tiles with taper weights.

    Parameters
    ----------
    net : callable
        ``net(x)`` with ``x`` a float32 tensor (B, C, ly, lx) on ``device`` returns a sequence whose first two
        items are ``out`` (B, nout, ly, lx) and ``style`` (B, S) (CPnet: nout = 3 = dY, dX, cellprob; S = 256).
    img : ndarray (Ly, Lx, C) float32
        Normalised (and rescaled) image, channel-last.
    tiling : TilingOptions
        Tile size, overlap, batch size and test-time augmentation.
    device : str or torch.device, optional
        Where the tiles are sent; default: the device of ``net``'s first parameter, else the CPU.
    skip_empty : bool
        Tiles whose input is constant per channel (all zero in blank regions) are not sent through ``net``:
        they get ``net``'s output for that constant tile, computed once per constant and image. The stages
        ``network`` and ``network.batch`` count them as ``skipped_tiles`` (and ``forwarded_tiles``).

    Returns
    -------
    y : ndarray (nout, Ly, Lx) float32
        Blended network output, C-contiguous.
    style : ndarray (S,) float32
        Sum of the tile styles divided by its L2 norm.
    """
    img = _check_image(img)
    _check_tiling(tiling)
    device = _device_of(net) if device is None else torch.device(device)
    with stage("pad") as s:
        grid, offset = padded_grid(img.shape[0], img.shape[1], tiling=tiling)
        s.add(pixels=grid.shape[0] * grid.shape[1], tiles=grid.ntiles)
    place = _Placement(grid, offset, img.shape[:2])
    acc, style = _network_pass(net, img, place, batch_size=tiling.batch_size, device=device,
                               empties={} if skip_empty else None)
    with stage("tile_average") as s:
        _normalise(acc, place)
        s.add(pixels=acc.shape[1] * acc.shape[2])
    return acc, _unit(style)


def _network_pass(net, img, place: _Placement, *, batch_size: int, device,
                  empties: Optional[dict] = None) -> tuple[np.ndarray, np.ndarray]:
    """Run every batch of tiles and accumulate the weighted outputs and the style sum.

    ``empties`` (a dict, filled here) turns on empty-tile skipping; ``None`` forwards every tile.
    """
    grid, acc, style, skipped = place.grid, None, None, 0
    w = np.outer(*taper_profiles(*grid.tile))
    nbatches = -(-grid.ntiles // batch_size)
    bar = Progress(nbatches, desc="tile batches", unit="batch", enabled=progress_shown() and nbatches > 1)
    with stage("network") as s, contextlib.closing(bar):
        for k0 in range(0, grid.ntiles, batch_size):
            ks = range(k0, min(k0 + batch_size, grid.ntiles))
            with stage("tile"):
                batch = _cut_tiles(img, place, ks, pinned=device.type == "cuda")
            with stage("network.batch") as sb:
                out, sty, nskip = _forward_skipping(net, batch, device, empties)
                del batch
                sb.add(tiles=len(ks), pixels=len(ks) * grid.tile[0] * grid.tile[1])
                if empties is not None:
                    sb.add(skipped_tiles=nskip, forwarded_tiles=len(ks) - nskip)
                    skipped += nskip
            with stage("tile_average.batch"):
                acc = _new_acc(out, img) if acc is None else acc
                _accumulate(acc, out, place, ks, w)
                style = _add_styles(style, sty)
            bar.update()
        s.add(tiles=grid.ntiles, pixels=grid.ntiles * grid.tile[0] * grid.tile[1])
        if empties is not None:
            s.add(skipped_tiles=skipped, forwarded_tiles=grid.ntiles - skipped)
    return acc, style


def _cut_tiles(img: np.ndarray, place: _Placement, ks, *, pinned: bool = False) -> np.ndarray:
    """Tiles ``ks`` as a zero-padded, flipped-as-needed (B, C, ly, lx) float32 batch.

    ``pinned`` (CUDA only) cuts the tiles straight into page-locked host memory, so that ``_forward`` sends
    them with one asynchronous DMA copy instead of a staged, synchronous one.
    """
    ly, lx = place.grid.tile
    shape = (len(ks), img.shape[2], ly, lx)
    batch = torch.zeros(shape, dtype=torch.float32, pin_memory=True).numpy() if pinned else np.zeros(shape, np.float32)
    for b, k in enumerate(ks):
        iy, ix, ty, tx = place.window(k)
        batch[b, :, ty, tx] = img[iy, ix].transpose(2, 0, 1)
        fy, fx = place.grid.flips[k]
        if fy or fx:
            batch[b] = _flip(batch[b], fy, fx)
    return batch


def _flip(a: np.ndarray, fy: bool, fx: bool) -> np.ndarray:
    """Copy of a (C, ly, lx) array flipped along Y and/or X."""
    return np.flip(a, axis=tuple(ax for ax, f in ((1, fy), (2, fx)) if f)).copy()


def _forward(net, batch: np.ndarray, device) -> tuple[np.ndarray, np.ndarray]:
    """One forward pass; returns (out (B, nout, ly, lx), style (B, S)) float32 on the host."""
    with torch.inference_mode():
        y = net(_to_device(batch, device))
        out = y[0].detach().float().cpu().numpy()
        sty = y[1].detach().float().cpu().numpy()
    if out.shape[0] != batch.shape[0] or out.shape[2:] != batch.shape[2:]:
        raise ValueError(f"network output shape {out.shape} does not match its input {batch.shape}")
    return out, sty


def _to_device(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """``batch`` as a tensor on ``device``; a page-locked batch goes to CUDA without blocking the host.

    The outputs are cast to float32 on the device (``_forward``), so no per-tile dtype copy runs on the host.
    The batch's memory is not handed back before the copy has read it: ``_forward``'s blocking copy of the
    outputs to the host waits for the whole stream, this copy included, and only then is the batch dropped.
    """
    x = torch.from_numpy(batch)
    if device.type == "cuda" and x.is_pinned():
        return x.to(device, non_blocking=True)
    return x.to(device)


def _forward_skipping(net, batch: np.ndarray, device, empties: Optional[dict]):
    """``_forward`` of the non-constant tiles of ``batch``; constant tiles get ``empties``' cached outputs.

    Returns
    -------
    out : ndarray (B, nout, ly, lx) float32
    sty : ndarray (B, S) float32
    skipped : int
        Tiles that were not forwarded.
    """
    if empties is None:
        return (*_forward(net, batch, device), 0)
    consts = _constant_values(batch)
    live = [b for b, c in enumerate(consts) if c is None]
    if len(live) == len(consts):
        return (*_forward(net, batch, device), 0)
    rows = [None] * len(consts)
    if live:
        out, sty = _forward(net, batch[live], device)
        for i, b in enumerate(live):
            rows[b] = (out[i], sty[i])
    for b, c in enumerate(consts):
        if c is not None:
            rows[b] = _empty_output(net, c, batch.shape[1:], device, empties)
    return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]), len(consts) - len(live)


def _constant_values(batch: np.ndarray) -> list:
    """Per tile: the tuple of its per-channel values if every channel is constant, else None."""
    flat = batch.reshape(batch.shape[0], batch.shape[1], -1)
    lo, hi = flat.min(axis=2), flat.max(axis=2)
    return [tuple(lo[b].tolist()) if np.array_equal(lo[b], hi[b]) else None for b in range(batch.shape[0])]


def _empty_output(net, values: tuple, tile_shape: tuple, device, empties: dict) -> tuple:
    """(out (nout, ly, lx), style (S,)) of a tile filled with ``values`` per channel, computed once."""
    key = (values, tuple(tile_shape))
    if key not in empties:
        tile = np.empty((1,) + tuple(tile_shape), np.float32)
        tile[0] = np.asarray(values, np.float32)[:, None, None]
        out, sty = _forward(net, tile, device)
        empties[key] = (out[0].copy(), sty[0].copy())
    return empties[key]


def _new_acc(out: np.ndarray, img: np.ndarray) -> np.ndarray:
    """Zeroed (nout, Ly, Lx) float32 accumulator sized from the first network output."""
    return np.zeros((out.shape[1], img.shape[0], img.shape[1]), np.float32)


def _accumulate(acc: np.ndarray, out: np.ndarray, place: _Placement, ks: range, w: np.ndarray) -> None:
    """Add ``out[b] * w`` (float64 product, float32 sum) of tiles ``ks`` into ``acc``, un-flipping first."""
    for b, k in enumerate(ks):
        iy, ix, ty, tx = place.window(k)
        y = out[b]
        fy, fx = place.grid.flips[k]
        if fy or fx:
            y = _unflip_output(y, fy, fx)
        view = acc[:, iy, ix]
        np.add(view, y[:, ty, tx] * w[ty, tx], out=view, casting="same_kind")


def _unflip_output(y: np.ndarray, fy: bool, fx: bool) -> np.ndarray:
    """Flip a (nout, ly, lx) tile output back and negate the flow along each flipped axis."""
    y = _flip(y, fy, fx)
    if fy:
        y[0] = -y[0]
    if fx:
        y[1] = -y[1]
    return y


def _add_styles(total: Optional[np.ndarray], sty: np.ndarray) -> np.ndarray:
    """Running float32 sum of tile styles, added one tile at a time in tile order."""
    if total is None:
        total = np.zeros(sty.shape[1], np.float32)
    for row in sty:
        total += row
    return total


def _unit(style: np.ndarray) -> np.ndarray:
    """``style / sqrt(sum(style ** 2))`` in float32."""
    return style / np.sqrt(np.sum(style ** 2))


def _normalise(acc: np.ndarray, place: _Placement) -> None:
    """Divide ``acc`` in place by the taper weight sum ``outer(Wy, Wx)`` (float64 division), row block-wise."""
    grid, (oy, ox), (Ly, Lx) = place.grid, place.offset, place.size
    wy, wx = taper_profiles(*grid.tile)
    Wy = axis_weight_sums(grid.ystarts, wy, grid.shape[0])[oy: oy + Ly]
    Wx = axis_weight_sums(grid.xstarts, wx, grid.shape[1])[ox: ox + Lx]
    rows = max(1, _ROWS_PER_BLOCK_PIXELS // Lx)
    for r0 in range(0, Ly, rows):
        view = acc[:, r0: r0 + rows]
        np.divide(view, np.outer(Wy[r0: r0 + rows], Wx), out=view, casting="same_kind")


def _check_image(img) -> np.ndarray:
    """Validate a (Ly, Lx, C) image and return it as float32."""
    img = np.asarray(img)
    if img.ndim != 3:
        hint = " (Z stacks / 3D are not supported)" if img.ndim > 3 else ""
        raise ValueError(f"image must be (Ly, Lx, C) channel-last, got shape {img.shape}{hint}")
    if min(img.shape) < 1:
        raise ValueError(f"image has an empty axis: shape {img.shape}")
    if img.dtype.kind not in "uif":
        raise TypeError(f"image must have a real dtype, got {img.dtype}")
    return img.astype(np.float32, copy=False)


def _check_tiling(tiling: TilingOptions) -> None:
    """Reject tile sizes the network cannot take and non-positive batch sizes."""
    if tiling.bsize < 16 or tiling.bsize % 8:
        raise ValueError(f"bsize must be a multiple of 8 and >= 16, got {tiling.bsize}")
    if tiling.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {tiling.batch_size}")
    if not np.isfinite(tiling.tile_overlap):
        raise ValueError(f"tile_overlap must be finite, got {tiling.tile_overlap}")


def _device_of(net) -> torch.device:
    """Device of the network's first parameter, or the CPU for parameter-free callables."""
    params = getattr(net, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    return first.device if first is not None else torch.device("cpu")
