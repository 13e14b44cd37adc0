"""OME-Zarr (NGFF 0.4, zarr format 2) label stores for whole-slide label images, written chunk by chunk.

On-disk layout of a store at ``<path>`` for the label image ``<name>`` (default ``"cells"``)::

    <path>/.zgroup                     root group (no attributes of its own)
    <path>/labels/.zattrs              {"labels": ["<name>"]}
    <path>/labels/<name>/.zattrs       {"multiscales": [...], "image-label": {"version": "0.4"}}
    <path>/labels/<name>/0/.zarray     level 0: (Y, X) uint32, zlib, fill 0, "/" chunk keys
    <path>/labels/<name>/0/<i>/<j>     chunk (i, j); chunks that are all background are not stored
    <path>/labels/<name>/1/ ...        level k = level k-1 [::2, ::2], same chunk shape (clipped to the level)

Level 0 is filled by the caller (``create_label_store`` returns it); ``build_pyramid`` then adds the
reduced levels and writes the ``multiscales`` metadata that lists them. Nothing in the store depends on
the clock or on random numbers, so the same level-0 data always gives byte-identical files. ``zarr`` is
imported inside the functions, so importing this module stays cheap.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ["chunk_windows", "create_label_store", "open_label_level", "build_pyramid"]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
PixelSize = Union[None, float, Sequence[float]]
Window = Tuple[slice, slice]

NGFF_VERSION = "0.4"
ZLIB_LEVEL = 5
LABEL_DTYPE = np.uint32


def chunk_windows(shape: Sequence[int], chunk: Sequence[int]) -> Iterator[Window]:
    """Yield the ``(rows, cols)`` slices that tile a 2-D ``shape`` in row-major chunk order.

    Parameters
    ----------
    shape : (int, int)
        Image shape ``(Y, X)``.
    chunk : (int, int)
        Window shape ``(cy, cx)``; the last row/column of windows is clipped to ``shape``.

    Yields
    ------
    window : (slice, slice)
    """
    ny, nx = (int(s) for s in shape)
    cy, cx = (int(c) for c in chunk)
    if cy < 1 or cx < 1:
        raise ValueError(f"chunk must be positive, got {tuple(chunk)}")
    for y0 in range(0, ny, cy):
        for x0 in range(0, nx, cx):
            yield slice(y0, min(y0 + cy, ny)), slice(x0, min(x0 + cx, nx))


def _scale_yx(pixel_size: PixelSize) -> Tuple[List[float], Optional[str]]:
    """Level-0 ``[sy, sx]`` scale and the axis unit (``"micrometer"``, or ``None`` for pixels)."""
    if pixel_size is None:
        return [1.0, 1.0], None
    sizes = np.broadcast_to(np.asarray(pixel_size, dtype=float), (2,))
    if not np.all(np.isfinite(sizes) & (sizes > 0)):
        raise ValueError(f"pixel_size must be positive, got {pixel_size!r}")
    return [float(sizes[0]), float(sizes[1])], "micrometer"


def _axes(unit: Optional[str]) -> List[dict]:
    """NGFF axes ``y``, ``x`` of type space (with ``unit`` when known)."""
    extra = {} if unit is None else {"unit": unit}
    return [{"name": axis, "type": "space", **extra} for axis in ("y", "x")]


def _multiscales(name: str, n_levels: int, scale0: Sequence[float], unit: Optional[str]) -> dict:
    """The ``labels/<name>`` group attributes for ``n_levels`` levels, level k scaled by ``2**k``."""
    datasets = [{"path": str(k), "coordinateTransformations": [
        {"type": "scale", "scale": [s * 2 ** k for s in scale0]}]} for k in range(n_levels)]
    multiscale = {"version": NGFF_VERSION, "name": name, "axes": _axes(unit), "datasets": datasets,
                  "type": "nearest", "metadata": {"method": "stride-2 subsampling: level[k] = level[k-1][::2, ::2]"}}
    return {"multiscales": [multiscale], "image-label": {"version": NGFF_VERSION}}


def _create_level(group, level: int, *, shape: Sequence[int], chunk: Sequence[int]):
    """Create (or replace) array ``str(level)`` of ``group``: uint32, zlib, fill 0, "/" keys.

    The chunk is clipped to the shape: a level smaller than one chunk is one chunk of its own size, so no
    padding is encoded, decoded or stored (chunk-aligned writes stay chunk-aligned).
    """
    import numcodecs

    shape = tuple(int(s) for s in shape)
    chunks = tuple(max(1, min(int(c), s)) for c, s in zip(chunk, shape))
    return group.create_array(str(level), shape=shape, chunks=chunks,
                              dtype=LABEL_DTYPE, compressors=numcodecs.Zlib(level=ZLIB_LEVEL), fill_value=0,
                              chunk_key_encoding={"name": "v2", "separator": "/"}, overwrite=True)


def _check_new_store(path: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``path`` unless ``overwrite``, in which case remove it."""
    if not path.exists():
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(f"label store already exists: {path} (pass overwrite=True to replace it)")
    if path.is_dir():
        shutil.rmtree(path)
    else:
        os.remove(path)


def create_label_store(path: PathLike, *, shape: Sequence[int], chunk: Sequence[int], name: str = "cells",
                       pixel_size: PixelSize = None, overwrite: bool = False):
    """Create an NGFF 0.4 label store at ``path`` and return its empty level-0 array.

    Parameters
    ----------
    path : str or os.PathLike
        Directory of the store (``.zarr`` by convention); missing parent folders are created.
    shape : (int, int)
        Label image shape ``(Y, X)``.
    chunk : (int, int)
        Chunk shape ``(cy, cx)`` of every level (clipped to the level's shape).
    name : str
        Name of the label image inside ``labels/``.
    pixel_size : float or (float, float), optional
        Pixel size in micrometres (``(y, x)`` or one value for both); ``None`` gives pixel units.
    overwrite : bool
        Replace an existing non-empty ``path``; otherwise that raises ``FileExistsError``.

    Returns
    -------
    level0 : zarr.Array
        ``(Y, X)`` uint32, all 0; write blocks into it (chunk-aligned writes avoid read-modify-write).

    Notes
    -----
    The ``multiscales`` metadata lists level 0 only until ``build_pyramid`` adds the reduced levels.
    """
    import zarr

    store_path = Path(path)
    if len(shape) != 2 or len(chunk) != 2:
        raise ValueError(f"shape and chunk must be (Y, X) pairs, got {tuple(shape)} and {tuple(chunk)}")
    _check_new_store(store_path, overwrite)
    scale0, unit = _scale_yx(pixel_size)
    root = zarr.open_group(str(store_path), mode="w", zarr_format=2)
    labels = root.create_group("labels", attributes={"labels": [name]})
    image = labels.create_group(name, attributes=_multiscales(name, 1, scale0, unit))
    logger.debug("created label store %s: %s chunks %s", store_path, tuple(shape), tuple(chunk))
    return _create_level(image, 0, shape=shape, chunk=chunk)


def _label_group(path: PathLike, name: str, mode: str):
    """Open group ``labels/<name>`` of the store at ``path``."""
    import zarr

    return zarr.open_group(str(Path(path)), path=f"labels/{name}", mode=mode, zarr_format=2)


def open_label_level(path: PathLike, level: int = 0, name: str = "cells", *, mode: str = "r"):
    """Open level ``level`` of label image ``name`` in the store at ``path``.

    Parameters
    ----------
    path : str or os.PathLike
    level : int
        0 is full resolution; level k is downsampled by ``2**k``.
    name : str
    mode : {"r", "r+"}
        Read-only (default) or read/write.

    Returns
    -------
    level : zarr.Array
        ``(Y_k, X_k)`` uint32.
    """
    import zarr

    return zarr.open_array(str(Path(path)), path=f"labels/{name}/{int(level)}", mode=mode, zarr_format=2)


def _pyramid_shapes(shape: Sequence[int], min_size: int) -> List[Tuple[int, int]]:
    """Level shapes: halve (rounding up) until the larger side is ``<= min_size``; level 0 always."""
    shapes = [(int(shape[0]), int(shape[1]))]
    while max(shapes[-1]) > min_size:
        ny, nx = shapes[-1]
        shapes.append(((ny + 1) // 2, (nx + 1) // 2))
    return shapes


def _downsample_window(prev, window: Window, chunk: Sequence[int]) -> np.ndarray:
    """``prev[::2, ::2]`` restricted to the output ``window``, reading one source chunk at a time."""
    rows, cols = window
    out = np.zeros((rows.stop - rows.start, cols.stop - cols.start), dtype=LABEL_DTYPE)
    src_rows = range(2 * rows.start, min(2 * rows.stop, prev.shape[0]), chunk[0])
    src_cols = range(2 * cols.start, min(2 * cols.stop, prev.shape[1]), chunk[1])
    for gy in src_rows:
        for gx in src_cols:
            piece = prev[gy:min(gy + chunk[0], prev.shape[0]), gx:min(gx + chunk[1], prev.shape[1])]
            sub = piece[gy % 2::2, gx % 2::2]
            dy, dx = (gy + gy % 2) // 2 - rows.start, (gx + gx % 2) // 2 - cols.start
            out[dy:dy + sub.shape[0], dx:dx + sub.shape[1]] = sub
    return out


def _write_level(prev, cur) -> None:
    """Fill ``cur`` with ``prev[::2, ::2]``, one chunk of ``cur`` at a time."""
    for window in chunk_windows(cur.shape, cur.chunks):
        cur[window] = _downsample_window(prev, window, prev.chunks)


def _remove_reduced_levels(group) -> None:
    """Delete levels 1, 2, ... left by an earlier ``build_pyramid`` (a new one may have fewer)."""
    for key in sorted(k for k in group.array_keys() if k.isdigit() and k != "0"):
        del group[key]


def _level0_scale(group) -> Tuple[List[float], Optional[str]]:
    """Level-0 scale and axis unit recorded by ``create_label_store``."""
    multiscale = group.attrs["multiscales"][0]
    scale = multiscale["datasets"][0]["coordinateTransformations"][0]["scale"]
    return [float(s) for s in scale], multiscale["axes"][0].get("unit")


def build_pyramid(path: PathLike, *, name: str = "cells", min_size: int = 256) -> List[Tuple[int, int]]:
    """Add the 2x nearest-neighbour levels 1, 2, ... to a label store and record them in ``multiscales``.

    Parameters
    ----------
    path : str or os.PathLike
        Store made by ``create_label_store`` whose level 0 is filled.
    name : str
    min_size : int
        Stop at the first level whose larger side is ``<= min_size`` (level 0 is always kept).

    Returns
    -------
    shapes : list of (int, int)
        Shape of every level, level 0 first.

    Notes
    -----
    Level k is ``level[k-1][::2, ::2]`` (labels stay valid integers), with level 0's chunk shape (clipped to
    the level's shape). Each level-k chunk is assembled from the 2 x 2 level-(k-1) chunks under it, read one
    at a time, so memory is two chunks. Re-running replaces the reduced levels.
    """
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1, got {min_size}")
    group = _label_group(path, name, "r+")
    prev = group["0"]
    shapes = _pyramid_shapes(prev.shape, min_size)
    _remove_reduced_levels(group)
    for level, shape in enumerate(shapes[1:], start=1):
        cur = _create_level(group, level, shape=shape, chunk=prev.chunks)
        _write_level(prev, cur)
        logger.debug("pyramid level %d of %s: %s", level, path, shape)
        prev = cur
    scale0, unit = _level0_scale(group)
    group.attrs.update(_multiscales(name, len(shapes), scale0, unit))
    return shapes
