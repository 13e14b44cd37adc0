"""Tiled pyramidal OME-TIFF of a label image, streamed tile row by tile row from its (zarr) levels.

The file is a BigTIFF: level 0 is the main IFD and levels 1, 2, ... are its SubIFDs (the layout
tifffile, Bio-Formats, QuPath and napari read as one pyramidal series), uint32, tiled and
zlib-compressed. Only one row of tiles of one level (or one row of source chunks, when that fits
``max_strip_bytes``) is in memory at a time. The output is written to a
hidden temporary file and renamed onto its name at the end (``atomic_write``), and it is
byte-reproducible: the OME ``UUID`` is derived from the name and shapes, and no date is written.
"""
from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import tifffile

from .atomic import atomic_write

__all__ = ["write_pyramid_ome_tiff", "read_pyramid_ome_tiff"]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
PixelSize = Union[None, float, Sequence[float]]

LABEL_DTYPE = np.uint32
#: Default ``max_strip_bytes``: rows of chunks up to 64 MiB are decoded once (a 4,096-row band 4,096 wide).
STRIP_BYTES = 64 * 2 ** 20


def _check_levels(levels: Sequence) -> None:
    """At least one 2-D level, each of a dtype that casts to uint32 without loss."""
    if len(levels) == 0:
        raise ValueError("levels is empty: need at least level 0")
    for k, level in enumerate(levels):
        if len(level.shape) != 2:
            raise ValueError(f"level {k} must be 2-D (Y, X), got shape {tuple(level.shape)}")
        if not np.can_cast(np.dtype(level.dtype), LABEL_DTYPE, casting="safe"):
            raise TypeError(f"level {k} has dtype {level.dtype}, which does not fit uint32 labels")


def _check_tile(tile: Sequence[int]) -> Tuple[int, int]:
    """TIFF tiles are multiples of 16 pixels on each side."""
    ty, tx = (int(t) for t in tile)
    if ty <= 0 or tx <= 0 or ty % 16 or tx % 16:
        raise ValueError(f"tile sides must be positive multiples of 16, got {tuple(tile)}")
    return ty, tx


def _chunk_yx(level) -> Optional[Tuple[int, int]]:
    """The chunk shape of ``level``, or None when it is not chunked (an in-memory array)."""
    chunks = getattr(level, "chunks", None)
    if chunks is not None and len(chunks) == 2 and all(isinstance(c, (int, np.integer)) for c in chunks):
        return int(chunks[0]), int(chunks[1])
    return None


def _read_strip(level, rows: slice) -> np.ndarray:
    """``level[rows, :]`` as uint32, read one chunk column at a time when ``level`` is chunked.

    Piecewise reads keep the transient memory of a chunked store (which decodes whole chunks) at one
    chunk instead of the full row of chunks that a single full-width read would decode at once.
    """
    nx = level.shape[1]
    step = (_chunk_yx(level) or level.shape)[1]
    strip = np.empty((rows.stop - rows.start, nx), dtype=LABEL_DTYPE)
    for x0 in range(0, nx, step):
        strip[:, x0:x0 + step] = np.asarray(level[rows, x0:min(x0 + step, nx)])
    return strip


def _band_rows(level, tile_rows: int, max_bytes: int) -> int:
    """Rows to read at once: a whole row of chunks when it is taller than a tile row and fits ``max_bytes``
    (each chunk is then decoded once, not once per tile row it spans), else one row of tiles."""
    chunk = _chunk_yx(level)
    chunk_rows = min(chunk[0], level.shape[0]) if chunk else 0
    if chunk_rows > tile_rows and chunk_rows * level.shape[1] * 4 <= max_bytes:
        return chunk_rows
    return tile_rows


def _strips(level, tile_rows: int, max_bytes: int) -> Iterator[np.ndarray]:
    """Yield the full-width strips of ``tile_rows`` rows of ``level``, top to bottom, each pixel read once."""
    ny = level.shape[0]
    band = _band_rows(level, tile_rows, max_bytes)
    start, cache = 0, np.empty((0, level.shape[1]), dtype=LABEL_DTYPE)
    for y0 in range(0, ny, tile_rows):
        y1, pieces = min(y0 + tile_rows, ny), []
        while y0 < y1:
            if not start <= y0 < start + len(cache):
                start = y0 - y0 % band  # a band is a row of chunks, or the tile row itself
                cache = _read_strip(level, slice(start, min(start + band, ny)))
            stop = min(y1, start + len(cache))
            pieces.append(cache[y0 - start:stop - start])
            y0 = stop
        yield pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def _tiles(level, tile: Tuple[int, int], max_bytes: int = 0) -> Iterator[np.ndarray]:
    """Yield the tiles of ``level`` in TIFF order, one full-width row of tiles at a time.

    Edge tiles are yielded partial; tifffile pads them with zeros.
    """
    for strip in _strips(level, tile[0], max_bytes):
        for x0 in range(0, level.shape[1], tile[1]):
            yield strip[:, x0:x0 + tile[1]]


def _deterministic_uuid(name: str, shapes: Sequence[Tuple[int, int]], tile: Tuple[int, int]) -> str:
    """A UUID that depends only on the label name, the level shapes and the tile shape."""
    key = f"cellpose-labels:{name}:{[tuple(s) for s in shapes]}:{tile}".encode()
    return str(uuid.UUID(bytes=hashlib.sha256(key).digest()[:16], version=4))


def _pixel_size_yx(pixel_size: PixelSize) -> Tuple[float, float]:
    """``(sy, sx)`` in micrometres from one value or a ``(y, x)`` pair; both must be positive."""
    sy, sx = (float(s) for s in np.broadcast_to(np.asarray(pixel_size, dtype=float), (2,)))
    if not (sy > 0 and sx > 0 and np.isfinite(sy) and np.isfinite(sx)):
        raise ValueError(f"pixel_size must be positive, got {pixel_size!r}")
    return sy, sx


def _ome_metadata(name: str, shapes: Sequence[Tuple[int, int]], tile: Tuple[int, int],
                  pixel_size: PixelSize) -> dict:
    """tifffile ``metadata`` of level 0: axes, name, fixed UUID and the physical pixel size."""
    metadata = {"axes": "YX", "Name": name, "UUID": _deterministic_uuid(name, shapes, tile)}
    if pixel_size is not None:
        sy, sx = _pixel_size_yx(pixel_size)
        metadata.update(PhysicalSizeY=sy, PhysicalSizeX=sx)  # OME's default unit: µm
    return metadata


def _resolution(pixel_size: PixelSize, level: int) -> dict:
    """TIFF resolution options (pixels per centimetre) of ``level``, or none without a pixel size."""
    if pixel_size is None:
        return {}
    sy, sx = (s * 2 ** level for s in _pixel_size_yx(pixel_size))
    return {"resolution": (1e4 / sx, 1e4 / sy), "resolutionunit": "CENTIMETER"}


def _write_levels(tif: tifffile.TiffWriter, levels: Sequence, *, tile: Tuple[int, int], compression: str,
                  metadata: dict, pixel_size: PixelSize, max_bytes: int) -> None:
    """Level 0 with ``len(levels) - 1`` SubIFDs, then each reduced level into the next SubIFD."""
    options = dict(dtype=LABEL_DTYPE, tile=tile, compression=compression, photometric="minisblack",
                   datetime=None, software="cellpose")
    tif.write(_tiles(levels[0], tile, max_bytes), shape=tuple(levels[0].shape), subifds=len(levels) - 1,
              metadata=metadata, **_resolution(pixel_size, 0), **options)
    for k, level in enumerate(levels[1:], start=1):
        tif.write(_tiles(level, tile, max_bytes), shape=tuple(level.shape), subfiletype=1, metadata=None,
                  **_resolution(pixel_size, k), **options)


def write_pyramid_ome_tiff(levels: Sequence, path: PathLike, *, tile: Sequence[int] = (512, 512),
                           compression: str = "zlib", pixel_size: PixelSize = None, name: str = "cells",
                           max_strip_bytes: int = STRIP_BYTES) -> Path:
    """Write the label pyramid ``levels`` as one tiled, pyramidal, byte-reproducible OME-TIFF.

    Parameters
    ----------
    levels : sequence of array-like
        2-D label images, level 0 (full resolution) first, e.g. the arrays of an NGFF label store
        (``open_label_level``). Anything with ``shape``, ``dtype`` and 2-D slicing works; dtypes must
        cast safely to uint32.
    path : str or os.PathLike
        Output file (``.ome.tif`` by convention); its directory must exist. Replaced atomically.
    tile : (int, int)
        Tile shape ``(ty, tx)``, multiples of 16.
    compression : str
        tifffile compression name (default ``"zlib"``).
    pixel_size : float or (float, float), optional
        Level-0 pixel size in micrometres (``(y, x)`` or one value), stored as OME ``PhysicalSize``.
    name : str
        OME image name.
    max_strip_bytes : int
        A chunked level whose full-width row of chunks fits in this many bytes (as uint32) is read one row of
        chunks at a time, so each chunk is decoded once; otherwise one row of tiles at a time.

    Returns
    -------
    path : pathlib.Path

    Notes
    -----
    Memory is one full-width row of tiles of one level (``ty * X * 4`` bytes at level 0) or, where it fits
    ``max_strip_bytes``, one row of chunks; one decoded chunk of the source (rows are read one chunk column
    at a time) and tifffile's compression buffers. Chunks taller than ``ty`` whose row does not fit are
    decoded once per tile row they span.
    """
    final = Path(path)
    _check_levels(levels)
    tile_yx = _check_tile(tile)
    shapes = [tuple(int(s) for s in level.shape) for level in levels]
    metadata = _ome_metadata(name, shapes, tile_yx, pixel_size)
    with atomic_write(final) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=True, ome=True) as tif:
            _write_levels(tif, levels, tile=tile_yx, compression=compression, metadata=metadata,
                          pixel_size=pixel_size, max_bytes=int(max_strip_bytes))
    logger.debug("wrote pyramidal OME-TIFF %s: levels %s, tile %s", final, shapes, tile_yx)
    return final


def read_pyramid_ome_tiff(path: PathLike) -> List[np.ndarray]:
    """Read every level of the first series of a pyramidal TIFF (small images only: all in memory).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    levels : list of ndarray
        Level 0 first, each ``(Y_k, X_k)`` in the stored dtype.
    """
    with tifffile.TiffFile(Path(path)) as tif:
        return [level.asarray() for level in tif.series[0].levels]
