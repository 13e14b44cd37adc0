"""Tile grid and taper weights of the tiled network pass (spec §3.1, §3.3, §3.4); pure index maths.

Contract
--------
A :class:`TileGrid` covers a (padded) image of ``shape = (Lyg, Lxg)`` with square-ish tiles of size
``tile = (ly, lx)`` whose top-left corners are every combination of ``ystarts`` x ``xstarts``, enumerated
row-major (y-start outer, x-start inner). Every pixel of the grid extent is covered by at least one tile:
the first start is 0 and the last is ``L - l``.

Overlapping network outputs are blended with the taper weights ``w = outer(wy, wx)`` of
:func:`taper_profiles`: ``out = sum_j y_j * w / sum_j w``. Because ``w`` factorises, the denominator is
``outer(Wy, Wx)`` with the per-axis sums of :func:`axis_weight_sums`, so no image-sized float64 buffer
is needed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["TileGrid", "make_grid", "tile_starts", "augment_starts", "taper_profiles", "taper_mask",
           "axis_weight_sums", "OVERLAP_RANGE"]

OVERLAP_RANGE = (0.05, 0.5)
_TAPER_MIN = 224
_TAPER_MARGIN = 20.0
_TAPER_SIGMA = 7.5


@dataclass(frozen=True, eq=False)
class TileGrid:
    """Where the tiles of one image lie.

    Attributes
    ----------
    shape : (int, int)
        Grid extent (Lyg, Lxg): the padded image, plus bottom/right zeros up to one tile when augmenting.
    tile : (int, int)
        Tile size (ly, lx), the same for every tile.
    ystarts, xstarts : ndarray (ny,), (nx,) int64
        Top-left corners along each axis.
    flips : ndarray (ny * nx, 2) bool
        Per tile (row-major), whether the network sees it flipped along Y and along X (augment only).
    """

    shape: tuple
    tile: tuple
    ystarts: np.ndarray
    xstarts: np.ndarray
    flips: np.ndarray

    @property
    def ntiles(self) -> int:
        """Number of tiles, ``ny * nx``."""
        return len(self.ystarts) * len(self.xstarts)

    def origin(self, k: int) -> tuple[int, int]:
        """Top-left corner (y, x) of tile ``k`` (row-major index)."""
        j, i = divmod(int(k), len(self.xstarts))
        return int(self.ystarts[j]), int(self.xstarts[i])


def tile_starts(Lp: int, *, bsize: int, overlap: float) -> np.ndarray:
    """Tile starts along one axis of the non-augmented grid (spec §3.1).

    Parameters
    ----------
    Lp : int
        Padded axis length.
    bsize : int
        Nominal tile size; the tile is ``min(bsize, Lp)`` long.
    overlap : float
        Fraction of overlap, clamped to ``OVERLAP_RANGE`` *before* the tile count is computed.

    Returns
    -------
    starts : ndarray (n,) int64
        ``trunc(linspace(0, Lp - l, n))`` with ``n = 1`` if ``Lp <= bsize`` else
        ``ceil((1 + 2 * overlap) * Lp / bsize)``.
    """
    Lp, bsize = _positive(Lp, "Lp"), _positive(bsize, "bsize")
    overlap = min(max(float(overlap), OVERLAP_RANGE[0]), OVERLAP_RANGE[1])
    if Lp <= bsize:
        return np.zeros(1, np.int64)
    n = math.ceil((1.0 + 2.0 * overlap) * Lp / bsize)
    return np.linspace(0.0, Lp - bsize, n).astype(np.int64)


def augment_starts(Lp: int, *, bsize: int) -> np.ndarray:
    """Tile starts along one axis of the augmented grid, about 50 % overlap (spec §3.4).

    Parameters
    ----------
    Lp : int
        Axis length, already at least ``bsize``.
    bsize : int
        Tile size.

    Returns
    -------
    starts : ndarray (n,) int64
        ``trunc(linspace(0, Lp - bsize, n))`` with ``n = max(2, ceil(2 * Lp / bsize))``.
    """
    Lp, bsize = _positive(Lp, "Lp"), _positive(bsize, "bsize")
    if Lp < bsize:
        raise ValueError(f"augmented axis length {Lp} is shorter than the tile size {bsize}")
    n = max(2, math.ceil(2.0 * Lp / bsize))
    return np.linspace(0.0, Lp - bsize, n).astype(np.int64)


def make_grid(Lyp: int, Lxp: int, *, bsize: int, tile_overlap: float, augment: bool) -> TileGrid:
    """Build the tile grid of a padded image.

    Parameters
    ----------
    Lyp, Lxp : int
        Padded image size.
    bsize : int
        Tile size (tiles are smaller along an axis shorter than ``bsize`` unless augmenting).
    tile_overlap : float
        Overlap fraction of the non-augmented grid (ignored when augmenting).
    augment : bool
        Half-overlapping, flipped tiles; the extent grows to ``max(L, bsize)`` per axis.

    Returns
    -------
    grid : TileGrid
    """
    Lyp, Lxp = _positive(Lyp, "Lyp"), _positive(Lxp, "Lxp")
    if augment:
        shape = (max(Lyp, bsize), max(Lxp, bsize))
        ys, xs = (augment_starts(L, bsize=bsize) for L in shape)
        return TileGrid(shape, (bsize, bsize), ys, xs, _augment_flips(len(ys), len(xs)))
    ys = tile_starts(Lyp, bsize=bsize, overlap=tile_overlap)
    xs = tile_starts(Lxp, bsize=bsize, overlap=tile_overlap)
    flips = np.zeros((len(ys) * len(xs), 2), bool)
    return TileGrid((Lyp, Lxp), (min(bsize, Lyp), min(bsize, Lxp)), ys, xs, flips)


def _augment_flips(ny: int, nx: int) -> np.ndarray:
    """Flip pattern of augmented tiles: Y flip on odd columns, X flip on odd rows (row-major)."""
    rows, cols = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    return np.stack([cols.ravel() % 2 == 1, rows.ravel() % 2 == 1], axis=1)


def taper_profiles(ly: int, lx: int) -> tuple[np.ndarray, np.ndarray]:
    """1D taper weights whose outer product is the tile weight mask (spec §3.3).

    Parameters
    ----------
    ly, lx : int
        Tile size.

    Returns
    -------
    wy, wx : ndarray (ly,), (lx,) float64
        Central crops of ``1 / (1 + exp((|i - (M - 1) / 2| - (M / 2 - 20)) / 7.5))``, ``i = 0..M-1``,
        ``M = max(224, ly, lx)``; all strictly positive.
    """
    ly, lx = _positive(ly, "ly"), _positive(lx, "lx")
    M = max(_TAPER_MIN, ly, lx)
    dist = np.abs(np.arange(M, dtype=np.float64) - (M - 1) / 2.0)
    prof = 1.0 / (1.0 + np.exp((dist - (M / 2.0 - _TAPER_MARGIN)) / _TAPER_SIGMA))
    return _central(prof, ly), _central(prof, lx)


def _central(prof: np.ndarray, n: int) -> np.ndarray:
    """Crop ``[M//2 - n//2, M//2 + n//2 + n%2)`` of a length-M profile."""
    mid = len(prof) // 2
    return prof[mid - n // 2: mid + n // 2 + n % 2].copy()


def taper_mask(ly: int, lx: int) -> np.ndarray:
    """Tile weight mask ``w[r, c] = wy[r] * wx[c]``.

    Parameters
    ----------
    ly, lx : int
        Tile size.

    Returns
    -------
    w : ndarray (ly, lx) float64
    """
    wy, wx = taper_profiles(ly, lx)
    return np.outer(wy, wx)


def axis_weight_sums(starts: np.ndarray, profile: np.ndarray, length: int) -> np.ndarray:
    """Sum of the 1D taper profiles of all tiles along one axis.

    Parameters
    ----------
    starts : ndarray (n,) int
        Tile starts along the axis.
    profile : ndarray (l,) float64
        Taper profile of one tile along the axis.
    length : int
        Axis length of the grid extent (``starts[-1] + l <= length``).

    Returns
    -------
    W : ndarray (length,) float64
        ``W[p] = sum_s profile[p - s]`` over tiles covering ``p``; the 2D weight sum is ``outer(Wy, Wx)``.
    """
    W = np.zeros(int(length), np.float64)
    for s in np.asarray(starts, np.int64):
        W[s: s + len(profile)] += profile
    return W


def _positive(value, name: str) -> int:
    """Return ``value`` as an int, raising ValueError unless it is >= 1."""
    value = int(value)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value
