"""The plan of a blockwise run: block grid, halo, scale, global normalisation; all derived, none hard-coded.

Halo
----
A block keeps the objects whose *anchor* (first pixel in raster order) lies in its core, so every object
must fit, whole, inside the core grown by the halo: ``halo >= the largest object extent``. Cells are taken to
span at most ``HALO_DIAMETERS`` diameters; on top come the reach of mask assembly around an end-point cluster
(``SEED_RADIUS + GROW_STEPS`` pixels, spec §4.4) and one pixel for the bilinear flow resize::

    halo = ceil(HALO_DIAMETERS * diameter) + SEED_RADIUS + GROW_STEPS + 1

The network's context needs no halo: a block runs the whole image's own tiles (``inference.window``), so the
tile size only sets how much *input* a block reads around its region (up to one tile per side).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from ..config import DynamicsOptions, TilingOptions
from ..dynamics.masks import GROW_STEPS, SEED_RADIUS
from ..geometry import BlockGrid
from ..preprocess.normalize import (MIN_RANGE, SUBSAMPLE_LIMIT, SUBSAMPLE_TARGET, percentiles_f32,
                                    percentiles_from_histogram)

__all__ = ["BlockPlan", "HALO_DIAMETERS", "MIN_BLOCK", "default_block_size", "exact_percentiles",
           "global_percentiles", "halo_for", "make_plan"]

HALO_DIAMETERS = 2.0
"""Largest object extent, in diameters, that a block is guaranteed to keep whole."""

MIN_BLOCK = 256
"""Smallest block edge accepted (smaller blocks spend most of their time in halo)."""

_DEFAULT_BLOCK_DIAMETERS = 256
_DEFAULT_BLOCK_RANGE = (1024, 4096)


def halo_for(diameter: float) -> int:
    """Halo in image pixels for objects of ``diameter`` image pixels (see the module docstring)."""
    if not diameter > 0:
        raise ValueError(f"diameter must be > 0, got {diameter}")
    return int(math.ceil(HALO_DIAMETERS * float(diameter))) + SEED_RADIUS + GROW_STEPS + 1


def default_block_size(diameter: float) -> int:
    """About 256 diameters, a multiple of 256, within 1024..4096 (4096 for the usual 10-20 px nuclei)."""
    size = int(round(_DEFAULT_BLOCK_DIAMETERS * float(diameter) / 256.0)) * 256
    return int(min(max(size, _DEFAULT_BLOCK_RANGE[0]), _DEFAULT_BLOCK_RANGE[1]))


def global_percentiles(plane, percentile=(1.0, 99.0)) -> Tuple[np.float32, np.float32]:
    """The low/high percentiles that whole-image ``eval`` would use for this plane, read band by band.

    ``eval`` takes the percentiles of the whole channel, or of ``channel[::s, ::s]`` with
    ``s = L // 224`` per axis when it has more than ``224 ** 3`` pixels (spec §2.2). The same pixels are read
    here, so the block normalisation equals the whole-image one bit for bit.

    Returns
    -------
    lo, hi : numpy.float32
        NaN when every sampled value is NaN.
    """
    Ly, Lx = plane.shape
    step = (1, 1)
    if Ly * Lx > SUBSAMPLE_LIMIT:
        step = (max(1, Ly // SUBSAMPLE_TARGET), max(1, Lx // SUBSAMPLE_TARGET))
    values = np.asarray(plane.read_strided(step), dtype=np.float32).reshape(-1)
    if np.isnan(values).all():
        return np.float32(np.nan), np.float32(np.nan)
    lo, hi = percentiles_f32(values, percentile)
    return np.float32(lo), np.float32(hi)


def exact_percentiles(plane, percentile=(1.0, 99.0), *, rows: int = 1024) -> Tuple[np.float32, np.float32]:
    """Percentiles of *every* pixel of a uint8/uint16 plane, from a histogram streamed band by band.

    ``eval`` uses every pixel only up to ``224 ** 3`` pixels and a strided sample above; this is the exact
    alternative for slides (``--exact_percentiles``). Equal to ``percentiles_f32`` of all pixels.

    Raises
    ------
    ValueError
        For other dtypes (a float histogram would not be exact).
    """
    if plane.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"exact percentiles need a uint8 or uint16 image, got {plane.dtype}")
    counts = np.zeros(np.iinfo(plane.dtype).max + 1, np.int64)
    for y0 in range(0, plane.shape[0], rows):
        band = plane.read((y0, min(y0 + rows, plane.shape[0]), 0, plane.shape[1]))
        counts += np.bincount(band.ravel(), minlength=counts.size)
    lo, hi = percentiles_from_histogram(counts, percentile)
    return np.float32(lo), np.float32(hi)


@dataclass(frozen=True)
class BlockPlan:
    """Everything a worker needs to segment block ``k`` the way whole-image ``eval`` would.

    Attributes
    ----------
    shape : (int, int)
        Plane size (Ly, Lx).
    scaled : (int, int)
        Size the network sees, ``int(L * scale)`` per axis as in ``eval``.
    scale : float
        ``diam_mean / diameter`` (float32 for weight files, as ``eval``).
    block, halo : int
        Core edge and halo in image pixels.
    lo, hi : float
        Global normalisation percentiles (NaN: the plane is all NaN).
    niter : int
        Euler steps.
    tiling, dynamics
        As for ``eval``.
    variant : cellpose.variants.NetVariant or None
        The network variant, resolved for the device (None: the exact network).
    """

    shape: Tuple[int, int]
    scaled: Tuple[int, int]
    scale: float
    block: int
    halo: int
    lo: float
    hi: float
    niter: int
    tiling: TilingOptions = field(default_factory=TilingOptions)
    dynamics: DynamicsOptions = field(default_factory=DynamicsOptions)
    variant: Optional[object] = None

    @property
    def grid(self) -> BlockGrid:
        """The block grid."""
        return BlockGrid(tuple(self.shape), int(self.block), int(self.halo))

    @property
    def flat(self) -> bool:
        """True when global normalisation maps the whole plane to zero (constant or all-NaN plane)."""
        return not (float(self.hi) - float(self.lo) > MIN_RANGE)

    @property
    def rescaled(self) -> bool:
        """True when the network runs at another size than the image."""
        return tuple(self.scaled) != tuple(self.shape)

    def settings(self) -> dict:
        """JSON-able identity of the plan (for the resume manifest)."""
        return {"shape": list(self.shape), "scaled": list(self.scaled), "scale": float(self.scale),
                "block": int(self.block), "halo": int(self.halo), "lo": float(self.lo), "hi": float(self.hi),
                "niter": int(self.niter), "tiling": vars(self.tiling), "dynamics": vars(self.dynamics),
                "variant": None if self.variant is None else {k: str(v) for k, v in vars(self.variant).items()}}


def make_plan(shape, *, scale, block: Optional[int], diameter: float, lo, hi, niter: int,
              tiling: TilingOptions, dynamics: DynamicsOptions, variant=None) -> BlockPlan:
    """Build and check a plan (raises ValueError for a block smaller than its halo or ``MIN_BLOCK``)."""
    halo = halo_for(diameter)
    block = default_block_size(diameter) if not block else int(block)
    if block < max(halo, MIN_BLOCK):
        raise ValueError(f"block size {block} is too small: it must be at least {max(halo, MIN_BLOCK)} pixels "
                         f"(the halo for diameter {diameter:.1f} is {halo} pixels)")
    kind = type(scale)
    scaled = tuple(int(kind(n) * scale) for n in shape)
    if min(scaled) < 1:
        raise ValueError(f"diameter gives a rescaled image of {scaled[0]}x{scaled[1]} pixels")
    return BlockPlan(tuple(int(n) for n in shape), scaled, scale, block, halo, float(lo), float(hi), int(niter),
                     tiling, dynamics, variant)
