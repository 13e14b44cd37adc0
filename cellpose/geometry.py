"""Index maths shared by tiled inference, resizing windows and blockwise segmentation; no pixels here.

Contract
--------
A :class:`BlockGrid` cuts an image of ``shape = (Ly, Lx)`` into *cores*: the half-open rectangles
``[ys[j], ys[j + 1]) x [xs[i], xs[i + 1])`` with ``ys = 0, B, 2B, ..., Ly`` (the last core may be shorter). Cores
tile the image exactly: every pixel lies in exactly one core. Each core grows by ``halo`` pixels on every side,
clipped to the image, into the block's *region*; a block is segmented on its region and keeps the objects
whose anchor pixel lies in its core (see ``cellpose.blockwise``).

:func:`linear_source_span` inverts OpenCV's bilinear ``resize`` (half-pixel centres): the source rows that
output rows ``[o0, o1)`` read. :func:`tiles_touching` lists the tiles of a :class:`~cellpose.inference.tiling.
TileGrid` whose footprint meets a rectangle of the image. Together they tell which source pixels a window of
the network output depends on, so that a block can run exactly the tiles of the whole-image grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Tuple

import numpy as np

__all__ = ["Box", "BlockGrid", "block_starts", "linear_source_span", "tiles_touching", "tile_footprint"]

Box = Tuple[int, int, int, int]
"""``(y0, y1, x0, x1)``: a half-open rectangle of pixels."""


def block_starts(length: int, block: int) -> np.ndarray:
    """Core boundaries along one axis: ``0, block, 2 * block, ..., length``.

    Parameters
    ----------
    length : int
        Axis length (>= 1).
    block : int
        Core size (>= 1).

    Returns
    -------
    edges : ndarray (n + 1,) int64
        ``n = ceil(length / block)`` cores; core ``k`` is ``[edges[k], edges[k + 1])``.
    """
    if length < 1 or block < 1:
        raise ValueError(f"length and block must be >= 1, got {length}, {block}")
    return np.append(np.arange(0, length, block, dtype=np.int64), np.int64(length))


@dataclass(frozen=True)
class BlockGrid:
    """Cores and halo regions of one image.

    Attributes
    ----------
    shape : (int, int)
        Image size (Ly, Lx).
    block : int
        Core edge in pixels.
    halo : int
        Margin added around each core (clipped at the image border).
    """

    shape: Tuple[int, int]
    block: int
    halo: int

    def __post_init__(self):
        if self.halo < 0:
            raise ValueError(f"halo must be >= 0, got {self.halo}")
        object.__setattr__(self, "_ys", block_starts(int(self.shape[0]), int(self.block)))
        object.__setattr__(self, "_xs", block_starts(int(self.shape[1]), int(self.block)))

    @property
    def counts(self) -> Tuple[int, int]:
        """Number of cores along Y and X."""
        return len(self._ys) - 1, len(self._xs) - 1

    @property
    def nblocks(self) -> int:
        """Total number of blocks."""
        ny, nx = self.counts
        return ny * nx

    def index(self, k: int) -> Tuple[int, int]:
        """Row and column ``(j, i)`` of block ``k`` (row-major)."""
        return divmod(int(k), self.counts[1])

    def core(self, k: int) -> Box:
        """Core rectangle of block ``k``."""
        j, i = self.index(k)
        return int(self._ys[j]), int(self._ys[j + 1]), int(self._xs[i]), int(self._xs[i + 1])

    def region(self, k: int) -> Box:
        """Core of block ``k`` grown by ``halo`` and clipped to the image."""
        y0, y1, x0, x1 = self.core(k)
        h, (Ly, Lx) = self.halo, self.shape
        return max(y0 - h, 0), min(y1 + h, Ly), max(x0 - h, 0), min(x1 + h, Lx)

    def neighbours(self, k: int) -> Iterator[int]:
        """Blocks whose region can reach into the core of block ``k`` (itself included), row-major."""
        j, i = self.index(k)
        reach = max(1, math.ceil(self.halo / self.block))
        ny, nx = self.counts
        for jj in range(max(j - reach, 0), min(j + reach + 1, ny)):
            for ii in range(max(i - reach, 0), min(i + reach + 1, nx)):
                yield jj * nx + ii

    def block_of(self, y: int, x: int) -> int:
        """The block whose core holds pixel ``(y, x)``."""
        return (int(y) // self.block) * self.counts[1] + int(x) // self.block


def linear_source_span(o0: int, o1: int, *, src: int, dst: int) -> Tuple[int, int]:
    """Source pixels read by output pixels ``[o0, o1)`` of a bilinear resize from ``src`` to ``dst`` pixels.

    Output pixel ``o`` samples the source at ``(o + 0.5) * src / dst - 0.5`` (OpenCV ``INTER_LINEAR``) and
    reads its floor and the next pixel, clamped to ``[0, src)``.

    Returns
    -------
    (s0, s1) : (int, int)
        Half-open source span, within ``[0, src)``.
    """
    ratio = src / dst
    first = math.floor((o0 + 0.5) * ratio - 0.5)
    last = math.floor((o1 - 1 + 0.5) * ratio - 0.5) + 1
    return max(min(first, src - 1), 0), min(max(last, 0), src - 1) + 1


def tile_footprint(grid, offset: Tuple[int, int], k: int, shape: Tuple[int, int]) -> Box:
    """Image pixels covered by tile ``k`` of ``grid`` (grid coordinates minus ``offset``), clipped to ``shape``."""
    y0, x0 = grid.origin(k)
    ly, lx = grid.tile
    oy, ox = offset
    return (max(y0 - oy, 0), min(y0 - oy + ly, shape[0]), max(x0 - ox, 0), min(x0 - ox + lx, shape[1]))


def tiles_touching(grid, offset: Tuple[int, int], shape: Tuple[int, int], box: Box) -> np.ndarray:
    """Row-major indices of the tiles whose image footprint meets ``box``.

    Parameters
    ----------
    grid : TileGrid
        Whole-image tile grid (``cellpose.inference.tiling``).
    offset : (int, int)
        Image pixel (0, 0) in grid coordinates.
    shape : (int, int)
        Image size.
    box : Box
        Rectangle of image pixels.

    Returns
    -------
    ks : ndarray (m,) int64
        Sorted tile indices.
    """
    y0, y1, x0, x1 = box
    ly, lx = grid.tile
    ty = np.asarray(grid.ystarts) - offset[0]
    tx = np.asarray(grid.xstarts) - offset[1]
    rows = np.flatnonzero((ty < y1) & (ty + ly > y0) & (ty + ly > 0) & (ty < shape[0]))
    cols = np.flatnonzero((tx < x1) & (tx + lx > x0) & (tx + lx > 0) & (tx < shape[1]))
    return (rows[:, None] * len(tx) + cols[None, :]).ravel().astype(np.int64)
