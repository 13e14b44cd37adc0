"""Per-channel intensity normalisation (spec §2.2), float32 throughout, in place on one working image.

Percentiles use numpy's "linear" method written out in float32 (the numpy >= 2 arithmetic), on a strided
subsample for channels with more than ``SUBSAMPLE_LIMIT`` pixels, so that results match upstream bit for
bit independently of the installed numpy.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from ..config import NormalizeOptions
from ..inference.tiling import tile_starts
from .resize import resize_image

__all__ = ["is_flat", "normalize_image", "normalize_channel", "percentile_range", "percentiles_f32",
           "percentiles_from_histogram", "SUBSAMPLE_LIMIT", "SUBSAMPLE_TARGET", "MIN_RANGE"]

SUBSAMPLE_TARGET = 224
"""Percentiles of a large channel are taken every ``max(1, L // SUBSAMPLE_TARGET)`` pixels per axis."""

SUBSAMPLE_LIMIT = SUBSAMPLE_TARGET ** 3
"""Channels with more pixels than this are subsampled for the percentiles."""

MIN_RANGE = 1e-3
"""A channel whose percentile range is not above this is set to 0 (tile blocks below it are replaced)."""

_TILE_OVERLAP = 0.1
_GRID_SIGMA = 1.0


def normalize_image(img: np.ndarray, *, options: NormalizeOptions, inplace: bool = False) -> np.ndarray:
    """Normalise every channel of an image (percentiles, fixed ranges or tile-wise; spec §2.2).

    Parameters
    ----------
    img : ndarray (Ly, Lx, C) or (Ly, Lx), real dtype
        Channel-last image.
    options : NormalizeOptions
        ``lowhigh`` (fixed ranges, then nothing else) wins over ``normalize``; otherwise, per non-constant
        channel: optional smoothing/sharpening, then tile or percentile normalisation, then ``invert``.
    inplace : bool
        Overwrite ``img`` (which must then be a writable float32 array) instead of working on a copy.

    Returns
    -------
    out : ndarray, same shape as ``img``, float32
        ``img`` itself when ``inplace``; channels with max == min are left as they are (percentile mode).
    """
    x = _working_array(img, inplace)
    x3 = x if x.ndim == 3 else x[:, :, np.newaxis]
    _check_options(options, x3.shape[2])
    if options.lowhigh is not None:
        _apply_lowhigh(x3, options.lowhigh, invert=options.invert)
    elif options.normalize:
        for c in range(x3.shape[2]):
            normalize_channel(x3[:, :, c], options=options)
    elif options.invert:
        raise ValueError("invert=True needs normalisation (normalize=False was given)")
    return x


def normalize_channel(ch: np.ndarray, *, options: NormalizeOptions) -> None:
    """Normalise one channel in place (``lowhigh`` and ``normalize`` are not looked at).

    Parameters
    ----------
    ch : ndarray (Ly, Lx) float32, writable (may be a strided view)
        Channel; set to 0 when it is constant or all NaN (upstream leaves such a channel's raw values, so a
        constant image of value 7 reaches the network as 7s; see docs/upstream-differences.md).
    options : NormalizeOptions
        Smoothing/sharpening radii, percentiles, tile block size and ``invert``.
    """
    if is_flat(ch):
        ch[...] = 0
        return
    if options.smooth_radius > 0 or options.sharpen_radius > 0:
        _smooth_sharpen(ch, smooth=options.smooth_radius, sharpen=options.sharpen_radius)
    if options.tile_norm_blocksize > 0:
        _tile_normalize(ch, blocksize=options.tile_norm_blocksize, percentile=options.percentile)
    else:
        _percentile_normalize(ch, options.percentile)
    if options.invert:
        np.subtract(np.float32(1), ch, out=ch)


def is_flat(ch: np.ndarray) -> bool:
    """True when a channel holds one value only, or nothing but NaN."""
    lo, hi = ch.min(), ch.max()
    if not (np.isnan(lo) or np.isnan(hi)):
        return bool(lo == hi)
    finite = ch[~np.isnan(ch)]
    return bool(finite.size == 0 or finite.min() == finite.max())


def _percentile_normalize(ch: np.ndarray, percentile) -> None:
    """``(x - p_lo) / (p_hi - p_lo)`` in float32, or zeros when the range is not above ``MIN_RANGE``."""
    lo, hi = percentile_range(ch, percentile=percentile)
    spread = hi - lo
    if spread > MIN_RANGE:
        ch -= lo
        ch /= spread
    else:
        ch[...] = 0


def percentile_range(ch: np.ndarray, *, percentile=(1.0, 99.0)) -> tuple[np.float32, np.float32]:
    """Low and high percentiles of a channel, on the strided subsample when it is large.

    Parameters
    ----------
    ch : ndarray (Ly, Lx), real dtype
        Channel. More than ``SUBSAMPLE_LIMIT`` pixels: ``ch[::sy, ::sx]`` with ``s = max(1, L // 224)``.
    percentile : (float, float)
        Percentiles in [0, 100].

    Returns
    -------
    lo, hi : numpy.float32
    """
    sample = ch
    if ch.size > SUBSAMPLE_LIMIT:
        sample = ch[tuple(slice(None, None, max(1, n // SUBSAMPLE_TARGET)) for n in ch.shape)]
    values = np.array(sample, dtype=np.float32, copy=True).reshape(-1)
    lo, hi = percentiles_f32(values, percentile)
    return lo, hi


def percentiles_f32(values: np.ndarray, percentiles) -> list:
    """numpy "linear" percentiles computed in float32, as numpy >= 2 does for float32 data.

    Parameters
    ----------
    values : ndarray (n,) float32
        Scratch copy of the data: it is partially sorted in place.
    percentiles : sequence of float
        Each in [0, 100].

    Returns
    -------
    out : list of numpy.float32
        ``a + (b - a) * g`` if ``g < 0.5`` else ``b - (b - a) * (1 - g)``, with ``v = f32(n - 1) * f32(p) / 100``,
        ``i = floor(v)``, ``g = v - i``, ``a, b`` the i-th and (i+1)-th order statistics.
    """
    n = values.size
    if n == 0:
        raise ValueError("percentiles of an empty array")
    idx = [_virtual_index(n, p) for p in percentiles]
    kth = sorted({k for i, _ in idx for k in (i, min(i + 1, n - 1))})
    values.partition(kth)
    return [_lerp(values[i], values[min(i + 1, n - 1)], g) for i, g in idx]


def percentiles_from_histogram(counts: np.ndarray, percentiles) -> list:
    """``percentiles_f32`` of the integer values a histogram counts, without the values.

    Parameters
    ----------
    counts : ndarray (V,) int
        ``counts[v]`` = how many pixels have the value ``v`` (a streamed ``np.bincount`` of a uint8/uint16 image).
    percentiles : sequence of float

    Returns
    -------
    out : list of numpy.float32
        Equal to ``percentiles_f32(values.astype(float32), percentiles)`` of the counted values.
    """
    cum = np.cumsum(np.asarray(counts, np.int64))
    n = int(cum[-1]) if cum.size else 0
    if n == 0:
        raise ValueError("percentiles of an empty histogram")

    def kth(k: int) -> np.float32:
        return np.float32(np.searchsorted(cum, k, side="right"))

    out = []
    for p in percentiles:
        i, g = _virtual_index(n, p)
        out.append(_lerp(kth(i), kth(min(i + 1, n - 1)), g))
    return out


def _virtual_index(n: int, p: float) -> tuple[int, np.float32]:
    """Integer part and float32 fraction of the "linear" virtual index ``(n - 1) * p / 100``."""
    v = np.float32(n - 1) * (np.float32(p) / np.float32(100))
    i = min(int(math.floor(v)), n - 1)
    return i, np.float32(v - np.float32(i))


def _lerp(a: np.float32, b: np.float32, g: np.float32) -> np.float32:
    """numpy's float32 interpolation between neighbouring order statistics."""
    diff = b - a
    if g < 0.5:
        return a + diff * g
    return b - diff * (np.float32(1) - g)


def _apply_lowhigh(x3: np.ndarray, lowhigh, *, invert: bool) -> None:
    """``x = f32(f32(x - low) / (high - low))`` with float64 scalars, every channel (constant ones too)."""
    pairs = _lowhigh_pairs(lowhigh, x3.shape[2])
    for c, (low, high) in enumerate(pairs):
        ch = x3[:, :, c]
        np.subtract(ch, np.float64(low), out=ch, casting="same_kind")
        np.divide(ch, np.float64(high) - np.float64(low), out=ch, casting="same_kind")
        if invert:
            np.subtract(np.float32(1), ch, out=ch)


def _lowhigh_pairs(lowhigh, nchan: int) -> list:
    """``lowhigh`` as one (low, high) pair per channel (a single pair applies to every channel)."""
    arr = np.asarray(lowhigh, dtype=np.float64)
    if arr.shape == (2,):
        arr = np.broadcast_to(arr, (nchan, 2))
    if arr.shape != (nchan, 2):
        raise ValueError(f"lowhigh must be (low, high) or one pair per channel ({nchan}), got shape {arr.shape}")
    if np.any(arr[:, 1] == arr[:, 0]) or not np.all(np.isfinite(arr)):
        raise ValueError(f"lowhigh ranges must be finite with high != low, got {arr.tolist()}")
    return [tuple(row) for row in arr]


def _smooth_sharpen(ch: np.ndarray, *, smooth: float, sharpen: float) -> None:
    """Band-pass a channel in place: ``G_smooth * x - G_sharpen * x`` (``x`` for a radius of 0).

    Gaussians have sigma = radius pixels, reflect boundaries and are truncated at 4 sigma.
    """
    low = gaussian_filter(ch, smooth, mode="reflect", truncate=4.0) if smooth > 0 else ch.copy()
    if sharpen > 0:
        low -= gaussian_filter(ch, sharpen, mode="reflect", truncate=4.0)
    ch[...] = low


def _tile_normalize(ch: np.ndarray, *, blocksize: int, percentile) -> None:
    """Normalise with per-block percentiles smoothed over the block grid and interpolated per pixel."""
    lo, hi = _block_percentiles(ch, blocksize=blocksize, percentile=percentile)
    _replace_bad_blocks(lo, hi)
    Ly, Lx = ch.shape
    low = resize_image(_smooth_grid(lo), Ly=Ly, Lx=Lx)
    high = resize_image(_smooth_grid(hi), Ly=Ly, Lx=Lx)
    high -= low
    ch -= low
    ch /= high


def _block_percentiles(ch: np.ndarray, *, blocksize: int, percentile) -> tuple[np.ndarray, np.ndarray]:
    """(ny, nx) float32 grids of the low/high percentiles of overlapping blocks (§3.1 placement)."""
    ys = tile_starts(ch.shape[0], bsize=blocksize, overlap=_TILE_OVERLAP)
    xs = tile_starts(ch.shape[1], bsize=blocksize, overlap=_TILE_OVERLAP)
    by, bx = min(blocksize, ch.shape[0]), min(blocksize, ch.shape[1])
    lo = np.empty((len(ys), len(xs)), np.float32)
    hi = np.empty_like(lo)
    for j, y0 in enumerate(ys):
        for i, x0 in enumerate(xs):
            block = np.array(ch[y0: y0 + by, x0: x0 + bx], dtype=np.float32).reshape(-1)
            lo[j, i], hi[j, i] = percentiles_f32(block, percentile)
    return lo, hi


def _replace_bad_blocks(lo: np.ndarray, hi: np.ndarray) -> None:
    """Give blocks with ``hi - lo < MIN_RANGE`` the values of the nearest good block (all bad: 0 and 1)."""
    bad = (hi - lo) < MIN_RANGE
    if not bad.any():
        return
    if bad.all():
        lo[...], hi[...] = 0, 1
        return
    good = np.argwhere(~bad)
    for j, i in np.argwhere(bad):
        nearest = good[np.argmin((good[:, 0] - j) ** 2 + (good[:, 1] - i) ** 2)]
        lo[j, i], hi[j, i] = lo[tuple(nearest)], hi[tuple(nearest)]


def _smooth_grid(grid: np.ndarray) -> np.ndarray:
    """Gaussian (sigma 1 block, reflect, 4 sigma) along block rows and block columns, float32."""
    out = gaussian_filter1d(grid, _GRID_SIGMA, axis=0, mode="reflect", truncate=4.0)
    return gaussian_filter1d(out, _GRID_SIGMA, axis=1, mode="reflect", truncate=4.0)


def _working_array(img, inplace: bool) -> np.ndarray:
    """The float32 array to normalise: ``img`` itself when ``inplace``, else a fresh copy."""
    if inplace:
        if not isinstance(img, np.ndarray) or img.dtype != np.float32 or not img.flags.writeable:
            raise ValueError("inplace=True needs a writable float32 ndarray")
        x = img
    else:
        if np.asarray(img).dtype.kind not in "uifb":
            raise TypeError(f"image must have a real dtype, got {np.asarray(img).dtype}")
        x = np.array(img, dtype=np.float32, copy=True)
    if x.ndim not in (2, 3) or min(x.shape) < 1:
        raise ValueError(f"image must be (Ly, Lx) or (Ly, Lx, C), got shape {x.shape}")
    return x


def _check_options(options: NormalizeOptions, nchan: int) -> None:
    """Validate percentiles, radii and block size at the public boundary."""
    lo, hi = (float(p) for p in options.percentile)
    if not 0.0 <= lo < hi <= 100.0:
        raise ValueError(f"percentile must be (low, high) with 0 <= low < high <= 100, got {options.percentile}")
    if options.smooth_radius < 0 or options.sharpen_radius < 0:
        raise ValueError("smooth_radius and sharpen_radius must be >= 0")
    if options.tile_norm_blocksize < 0:
        raise ValueError(f"tile_norm_blocksize must be >= 0, got {options.tile_norm_blocksize}")
    if options.lowhigh is not None:
        _lowhigh_pairs(options.lowhigh, nchan)
