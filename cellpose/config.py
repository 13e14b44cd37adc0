"""Frozen option dataclasses shared by the API, the CLI and the pipeline stages.

Every stage takes one of these instead of a long list of loose keyword arguments, so that the
CLI can build them once (``cli.py``) and ``models.CellposeModel.eval`` can build them from its
upstream-compatible keywords.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Optional, Tuple


@dataclass(frozen=True)
class NormalizeOptions:
    """Per-channel intensity normalisation (spec §2.2).

    Attributes
    ----------
    normalize : bool
        Apply percentile normalisation at all.
    percentile : (float, float)
        Low and high percentiles mapped to 0 and 1.
    invert : bool
        Replace each normalised channel ``x`` by ``1 - x``.
    lowhigh : ((float, float), ...) or None
        Fixed (low, high) per channel instead of percentiles.
    sharpen_radius, smooth_radius : float
        Gaussian sharpening / smoothing radii (0 = off).
    tile_norm_blocksize : int
        Block size of tile normalisation (0 = whole image).
    """

    normalize: bool = True
    percentile: Tuple[float, float] = (1.0, 99.0)
    invert: bool = False
    lowhigh: Optional[Tuple[Tuple[float, float], ...]] = None
    sharpen_radius: float = 0.0
    smooth_radius: float = 0.0
    tile_norm_blocksize: int = 0


@dataclass(frozen=True)
class TilingOptions:
    """How the network sees the image (spec §3).

    Attributes
    ----------
    bsize : int
        Tile edge in pixels (upstream hard-codes 224).
    tile_overlap : float
        Fraction of overlap between neighbouring tiles, clamped to [0.05, 0.5].
    batch_size : int
        Tiles per forward pass; also the number of tiles held in memory at once.
    augment : bool
        Test-time augmentation with flipped, half-overlapping tiles.
    """

    bsize: int = 224
    tile_overlap: float = 0.1
    batch_size: int = 8
    augment: bool = False


DYNAMICS_IMPLS = ("exact", "fast")


def check_dynamics_impl(impl) -> str:
    """Return ``impl`` if it is one of ``DYNAMICS_IMPLS``, else raise ValueError naming the valid values."""
    if not isinstance(impl, str) or impl not in DYNAMICS_IMPLS:
        raise ValueError(f"dynamics implementation must be one of {', '.join(DYNAMICS_IMPLS)}; got {impl!r}")
    return impl


def check_dynamics_chunk(rows, impl: str) -> int:
    """Return ``rows`` (>= 0; 0 = no chunking) if valid with ``impl``, else raise ValueError."""
    if isinstance(rows, bool) or not isinstance(rows, numbers.Integral) or rows < 0:
        raise ValueError(f"dynamics chunk must be a number of rows >= 0 (0 = off); got {rows!r}")
    if rows > 0 and impl != "fast":
        raise ValueError(f"dynamics chunk ({rows} rows) needs the fast dynamics implementation; got {impl!r}")
    return int(rows)


@dataclass(frozen=True)
class DynamicsOptions:
    """Flows → masks (spec §4).

    Attributes
    ----------
    niter : int or None
        Euler steps; ``None``/0 means 200 / rescale (200 when ``resample`` is off).
    cellprob_threshold : float
        Pixels with cell-probability logit strictly above it are followed.
    flow_threshold : float
        Maximum flow error of a kept mask; ``<= 0`` disables the QC.
    min_size : int
        Masks smaller than this are removed (``<= 0``: no removal).
    max_size_fraction : float
        Masks larger than this fraction of the image are removed.
    interp : bool
        Bilinear (True) or nearest-pixel (False) flow sampling during integration.
    impl : str
        ``"exact"`` (default: upstream's arithmetic, single-threaded) or ``"fast"`` (float32 integration and
        flow QC parallel over numba's threads; masks agree with exact to AP@0.9 >= 0.99). Checked on
        construction: another value raises ValueError listing ``DYNAMICS_IMPLS``.
    chunk_rows : int
        ``> 0`` (fast only): integrate and assemble masks this many rows at a time, so that the field,
        histogram and label grid are bounded by a chunk plus its halo; the masks are identical. 0 = off.
    """

    niter: Optional[int] = None
    cellprob_threshold: float = 0.0
    flow_threshold: float = 0.4
    min_size: int = 15
    max_size_fraction: float = 0.4
    interp: bool = True
    impl: str = "exact"
    chunk_rows: int = 0

    def __post_init__(self):
        check_dynamics_impl(self.impl)
        check_dynamics_chunk(self.chunk_rows, self.impl)


@dataclass(frozen=True)
class EvalOptions:
    """Everything ``CellposeModel.eval`` needs besides the image.

    Attributes
    ----------
    channels : (int, int) or None
        ``[chan, chan2]`` 1-based channel indices (0 = grayscale / none).
    channel_axis : int or None
        Axis of the channels in the input array, if known.
    diameter : float or None
        Object diameter in pixels; ``None`` → the model's own (``diam_labels``); 0 → estimated from the
        image (``cellpose.sizing``).
    resample : bool
        Run the dynamics at the original size (True) or the rescaled size.
    compute_masks : bool
        Stop after the network when False.
    """

    channels: Optional[Tuple[int, int]] = (0, 0)
    channel_axis: Optional[int] = None
    diameter: Optional[float] = None
    resample: bool = True
    compute_masks: bool = True
    normalize: NormalizeOptions = field(default_factory=NormalizeOptions)
    tiling: TilingOptions = field(default_factory=TilingOptions)
    dynamics: DynamicsOptions = field(default_factory=DynamicsOptions)


@dataclass(frozen=True)
class BlockwiseOptions:
    """Whole-slide, block-by-block segmentation (``cellpose.blockwise``; CLI ``--blockwise`` and friends).

    Attributes
    ----------
    enabled : bool or None
        True: always blockwise; False: never; None: blockwise when a plane has more than ``auto_pixels``.
    block_size : int or None
        Core edge in pixels (None: chosen from the diameter).
    workers : int
        Worker processes of the ``LocalCluster`` (0: run blocks in this process, one after the other).
    scheduler : str or None
        Address of an existing Dask scheduler (wins over ``workers``).
    resume : bool
        Continue an interrupted run from its work folder.
    estimate : bool
        Print the predicted peak RSS and time, then stop.
    auto_pixels : int
        Plane size above which ``enabled=None`` switches to blockwise.
    exact_percentiles : bool
        Normalise with the percentiles of every pixel (streamed histogram; uint8/uint16) rather than the
        pixel sample whole-image ``eval`` uses.
    """

    enabled: Optional[bool] = None
    block_size: Optional[int] = None
    workers: int = 0
    scheduler: Optional[str] = None
    resume: bool = False
    estimate: bool = False
    auto_pixels: int = 64 * 1024 * 1024
    exact_percentiles: bool = False
