"""One channel of a large image, read window by window: the input side of blockwise segmentation.

``open_plane`` accepts a TIFF/OME-TIFF path (read through ``tifffile``'s zarr store, so only the tiles or
strips that a window touches are decoded), a zarr store path (an OME-Zarr image group or a bare array), or an
array object (numpy, zarr, dask) shaped (Y, X), (C, Y, X) or, for files with that layout, (Y, X, S). The 40-
channel stack and the whole plane are never loaded. A ``Plane`` pickles without its open file handles, so
it can travel to Dask workers, which reopen the file on first use.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

__all__ = ["Plane", "PlaneError", "open_plane"]


class PlaneError(ValueError):
    """The source has no 2-D plane for the asked channel (names the source and the problem)."""


def _is_path(source) -> bool:
    return isinstance(source, (str, os.PathLike))


def _zarr_open(store_or_path):
    import zarr

    return zarr.open(store_or_path, mode="r")


def _first_level(node):
    """Level 0 of an OME-Zarr multiscale group, or the node itself when it is an array."""
    if hasattr(node, "shape"):
        return node
    multiscales = node.attrs.get("multiscales") or node.attrs.get("ome", {}).get("multiscales")
    if multiscales:
        return node[multiscales[0]["datasets"][0]["path"]]
    arrays = sorted(name for name, _ in node.arrays())
    if not arrays:
        raise PlaneError(f"zarr group {node.path or '/'} holds no array")
    return node[arrays[0]]


def _tiff_array(path: Path):
    """(array-like, axes) of level 0 of the first series of a TIFF, through tifffile's zarr store."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        axes = tif.series[0].axes
    store = tifffile.imread(path, aszarr=True, series=0, level=0)
    return _zarr_open(store), axes


def _squeeze_axes(arr, axes: str):
    """Drop leading singleton axes other than Y/X/C/S (T, Z, Q of size 1); return (arr, axes)."""
    keep = [i for i, a in enumerate(axes) if arr.shape[i] != 1 or a in "YX"]
    if len(keep) == len(axes):
        return arr, axes
    index = tuple(slice(None) if i in keep else 0 for i in range(len(axes)))
    return _Indexed(arr, index), "".join(axes[i] for i in keep)


class _Indexed:
    """A lazily indexed view of an array-like (fixes some leading axes)."""

    def __init__(self, arr, index):
        self.arr, self.index = arr, index
        self.shape = tuple(n for n, ix in zip(arr.shape, index) if isinstance(ix, slice))
        self.dtype = arr.dtype

    def __getitem__(self, key):
        key = iter(key if isinstance(key, tuple) else (key,))
        full = tuple(next(key, slice(None)) if isinstance(ix, slice) else ix for ix in self.index)
        return self.arr[full]


def _guess_axes(shape) -> str:
    if len(shape) == 2:
        return "YX"
    if len(shape) == 3:
        return "YXS" if shape[-1] in (3, 4) and shape[0] > 4 else "CYX"
    return "Q" * (len(shape) - 2) + "YX"


class Plane:
    """Channel ``channel`` of a source, as a lazily read (Y, X) array.

    Attributes
    ----------
    shape : (int, int)
        Plane size (Y, X).
    dtype : numpy.dtype
        Stored pixel type.
    channel : int
        0-based channel index along the source's channel axis.
    name : str
        File name or ``"<array>"``, for messages and output names.
    """

    def __init__(self, source, *, channel: int = 0):
        self._source = source if not _is_path(source) else Path(source)
        self.channel = int(channel)
        self.name = self._source.name if isinstance(self._source, Path) else "<array>"
        self._arr = None
        arr, caxis = self._open()
        self.shape = tuple(int(n) for n in (arr.shape[1:] if caxis == 0 else arr.shape[:2]))
        self.dtype = np.dtype(arr.dtype)

    def __getstate__(self):
        state = dict(self.__dict__)
        if isinstance(self._source, Path):
            state["_arr"] = None
        return state

    def _open(self):
        if self._arr is None:
            self._arr = _select(self._source, self.channel)
        return self._arr

    def read(self, box: Tuple[int, int, int, int]) -> np.ndarray:
        """Pixels ``[y0, y1) x [x0, x1)`` of the plane, as stored (a new C-contiguous ndarray)."""
        y0, y1, x0, x1 = (int(v) for v in box)
        arr, caxis = self._open()
        if caxis == 0:
            data = arr[self.channel, y0:y1, x0:x1]
        elif caxis == 2:
            data = arr[y0:y1, x0:x1, self.channel]
        else:
            data = arr[y0:y1, x0:x1]
        data = data.compute(scheduler="synchronous") if hasattr(data, "compute") else data
        return np.ascontiguousarray(np.asarray(data))

    def read_strided(self, step: Tuple[int, int], *, rows: int = 1024) -> np.ndarray:
        """``plane[::sy, ::sx]`` read band by band (``rows`` source rows at a time)."""
        sy, sx = (int(s) for s in step)
        band = max(sy, rows - rows % sy)
        parts = [self.read((y0, min(y0 + band, self.shape[0]), 0, self.shape[1]))[::sy, ::sx]
                 for y0 in range(0, self.shape[0], band)]
        return np.concatenate(parts, axis=0)

    def fingerprint(self) -> dict:
        """What identifies the input for ``--resume``: file identity, or a hash of sampled pixels."""
        info = {"name": self.name, "shape": list(self.shape), "dtype": str(self.dtype), "channel": self.channel}
        if isinstance(self._source, Path):
            st = self._source.stat()
            info.update(path=str(self._source.resolve()), size=st.st_size, mtime_ns=st.st_mtime_ns)
        else:
            step = tuple(max(1, n // 64) for n in self.shape)
            sample = self.read_strided(step, rows=max(step[0], min(self.shape[0], 1024)))
            info["sample_sha1"] = hashlib.sha1(np.ascontiguousarray(sample).tobytes()).hexdigest()
        return info


def _select(source, channel: int):
    """(array-like, channel axis or None) for a source, checking that a 2-D plane exists."""
    if isinstance(source, Path):
        if not source.exists():
            raise PlaneError(f"{source}: no such file or store")
        if source.is_dir():
            arr = _first_level(_zarr_open(str(source)))
            arr, axes = _squeeze_axes(arr, _ome_axes(source, arr))
        else:
            arr, axes = _tiff_array(source)
            arr, axes = _squeeze_axes(arr, axes)
    else:
        arr, axes = source, _guess_axes(getattr(source, "shape", ()))
    return arr, _channel_axis(arr, axes, channel, source)


def _ome_axes(path: Path, arr) -> str:
    node = _zarr_open(str(path))
    multiscales = getattr(node, "attrs", {}).get("multiscales") if not hasattr(node, "shape") else None
    if multiscales and "axes" in multiscales[0]:
        names = [a["name"] if isinstance(a, dict) else a for a in multiscales[0]["axes"]]
        return "".join(n.upper() for n in names)
    return _guess_axes(arr.shape)


def _channel_axis(arr, axes: str, channel: int, source) -> Optional[int]:
    """Axis of the channels (0, 2) or None for a single plane; raises ``PlaneError`` for other layouts."""
    name = source.name if isinstance(source, Path) else "array"
    axes = axes.replace("I", "C").replace("Q", "C")
    if axes == "YX":
        if channel != 0:
            raise PlaneError(f"{name}: channel {channel + 1} asked, but the image has a single channel")
        return None
    if len(axes) != 3 or axes not in ("CYX", "YXS", "SYX", "YXC"):
        raise PlaneError(f"{name}: expected a 2-D plane per channel, got axes {axes} with shape {tuple(arr.shape)} "
                         "(Z stacks and time series are not supported)")
    caxis = 0 if axes[0] in "CS" else 2
    if not 0 <= channel < arr.shape[caxis]:
        raise PlaneError(f"{name}: channel {channel + 1} is out of range: the image has {arr.shape[caxis]} "
                         f"channel(s) (1..{arr.shape[caxis]})")
    return caxis


def open_plane(source, *, chan: int = 1) -> Plane:
    """Open channel ``chan`` (1-based; 0 = a single-channel image) of a path or an array, lazily.

    Parameters
    ----------
    source : str, os.PathLike, numpy/zarr/dask array
        TIFF/OME-TIFF file, zarr/OME-Zarr store folder, or an array (Y, X) / (C, Y, X).
    chan : int
        1-based channel; 0 only for single-channel sources.

    Returns
    -------
    plane : Plane

    Raises
    ------
    PlaneError
        Missing file, missing channel, or no 2-D plane (Z/T stacks).
    """
    return Plane(source, channel=max(int(chan) - 1, 0))
