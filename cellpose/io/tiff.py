"""Reading and writing single images: TIFF/OME-TIFF (tifffile), PNG/JPEG (OpenCV) and ``.npy``.

Arrays come back as stored, with no axis guessing: an OME-TIFF with axes ``CYX`` is ``(C, Y, X)``, an
RGB PNG is ``(Y, X, 3)`` in RGB order. ``image_info`` answers shape/dtype/axes questions from metadata and
``read_channel`` reads one channel plane of a multi-channel TIFF without loading the others, so a
40-channel whole-slide OME-TIFF costs one plane of memory. Every failure to read becomes an
``ImageReadError`` that names the file and the reason.
"""
from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple, Union

import cv2
import numpy as np
import tifffile

from ..profiling import stage
from .atomic import atomic_write

__all__ = [
    "ImageInfo",
    "ImageReadError",
    "TIFF_EXTENSIONS",
    "CV2_EXTENSIONS",
    "READABLE_EXTENSIONS",
    "imread",
    "image_info",
    "read_channel",
    "imsave",
]

PathLike = Union[str, os.PathLike]

TIFF_EXTENSIONS = (".tif", ".tiff", ".flex")
CV2_EXTENSIONS = (".png", ".jpg", ".jpeg")
READABLE_EXTENSIONS = TIFF_EXTENSIONS + CV2_EXTENSIONS + (".npy",)


class ImageReadError(OSError):
    """An image file is missing, unreadable, corrupt or of an unsupported format.

    Attributes
    ----------
    path : str
        The file.
    reason : str
        What went wrong, in words.
    """

    def __init__(self, path: PathLike, reason: str):
        super().__init__(f"cannot read image {os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


@dataclass(frozen=True)
class ImageInfo:
    """What an image file holds, from its metadata.

    Attributes
    ----------
    shape : tuple of int
        Array shape ``imread`` returns (singleton axes squeezed for TIFF, as tifffile does).
    dtype : numpy.dtype
        Pixel type.
    axes : str
        One letter per axis in tifffile's vocabulary (``"CYX"``, ``"YXS"``, ``"QYX"``, ...); ``Q`` = unknown.
    channel_names : tuple of str
        OME channel names in order (empty when the file has none).
    pixel_size : float or None
        OME ``PhysicalSizeX`` (usually micrometres), or None.
    """

    shape: Tuple[int, ...]
    dtype: np.dtype
    axes: str
    channel_names: Tuple[str, ...] = ()
    pixel_size: Optional[float] = None


# Exceptions that the decoders raise for bad files (imagecodecs errors derive from RuntimeError,
# tifffile.TiffFileError from ValueError).
_READ_ERRORS = (OSError, ValueError, RuntimeError, EOFError, IndexError, KeyError, struct.error, cv2.error)


class _TiffErrorCollector(logging.Handler):
    """Collect ERROR records that tifffile logs from this thread (it logs, not raises, on broken IFDs)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.thread = threading.get_ident()
        self.messages = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[object]:
    """Run a read inside the "io.read" stage and turn every failure into ``ImageReadError``."""
    collector = _TiffErrorCollector()
    tiff_logger = logging.getLogger("tifffile")
    tiff_logger.addHandler(collector)
    try:
        with stage("io.read") as handle:
            yield handle
    except ImageReadError:
        raise
    except FileNotFoundError as err:
        raise ImageReadError(path, "file not found") from err
    except IsADirectoryError as err:
        raise ImageReadError(path, "is a directory") from err
    except _READ_ERRORS as err:
        raise ImageReadError(path, f"{type(err).__name__}: {err}") from err
    finally:
        tiff_logger.removeHandler(collector)
    if collector.messages:
        raise ImageReadError(path, f"corrupt or truncated TIFF ({collector.messages[0]})")


def _kind(path: Path) -> str:
    ext = path.suffix.lower()
    if ext in TIFF_EXTENSIONS:
        return "tiff"
    if ext in CV2_EXTENSIONS:
        return "cv2"
    if ext == ".npy":
        return "npy"
    raise ImageReadError(path, f"unsupported extension {path.suffix!r} (readable: {', '.join(READABLE_EXTENSIONS)})")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if not path.is_file():
        raise ImageReadError(path, "not a regular file")


def _decode_cv2(path: Path) -> np.ndarray:
    """Decode a PNG/JPEG as stored (bit depth, alpha kept); colour comes back RGB(A), not BGR(A)."""
    buffer = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(path, "OpenCV could not decode it (corrupt, truncated or not a PNG/JPEG)")
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


def _read_tiff(path: Path) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        return tif.series[0].asarray()


def _read_any(path: Path) -> np.ndarray:
    kind = _kind(path)
    if kind == "tiff":
        return _read_tiff(path)
    if kind == "cv2":
        return _decode_cv2(path)
    return np.load(path, allow_pickle=False)


def imread(path: PathLike) -> np.ndarray:
    """Read a whole image as stored.

    Parameters
    ----------
    path : str or os.PathLike
        ``.tif``/``.tiff``/``.flex`` (first series, via tifffile), ``.png``/``.jpg``/``.jpeg`` (OpenCV,
        ``IMREAD_UNCHANGED``, colour converted to RGB order) or ``.npy``. Extensions in any case.

    Returns
    -------
    img : ndarray
        E.g. (Y, X) uint16, (C, Y, X) for an OME-TIFF with axes CYX, (Y, X, 3) uint8 for an RGB PNG.

    Raises
    ------
    ImageReadError
        Missing, unreadable, corrupt or truncated file, or unsupported extension.
    """
    path = Path(path)
    with _reading(path) as handle:
        _check_file(path)
        img = _read_any(path)
        handle.add(pixels=int(np.prod(img.shape[-2:])) if img.ndim >= 2 else int(img.size))
    return img


def _axes_guess(shape: Tuple[int, ...]) -> str:
    """Axes letters for a format without axis metadata (tifffile's vocabulary; ``Q`` = unknown)."""
    if len(shape) == 3 and shape[-1] in (3, 4):
        return "YXS"
    return "Q" * max(len(shape) - 2, 0) + "YX"[-len(shape):]


def _ome_details(xml_text: Optional[str]) -> Tuple[Tuple[str, ...], Optional[float]]:
    """Channel names and ``PhysicalSizeX`` of the first OME ``Image`` (namespace-agnostic)."""
    if not xml_text:
        return (), None
    root = ElementTree.fromstring(xml_text)
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return (), None
    channels = [el for el in pixels if el.tag.rsplit("}", 1)[-1] == "Channel"]
    names = tuple(el.get("Name", "") for el in channels)
    size = pixels.get("PhysicalSizeX")
    return (names if any(names) else ()), (float(size) if size is not None else None)


def _tiff_info(path: Path) -> ImageInfo:
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        names, pixel_size = _ome_details(tif.ome_metadata if tif.is_ome else None)
        return ImageInfo(shape=tuple(int(n) for n in series.shape), dtype=np.dtype(series.dtype),
                         axes=series.axes, channel_names=names, pixel_size=pixel_size)


def _npy_info(path: Path) -> ImageInfo:
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return ImageInfo(shape=tuple(arr.shape), dtype=arr.dtype, axes=_axes_guess(arr.shape))


def image_info(path: PathLike) -> ImageInfo:
    """Shape, dtype, axes, OME channel names and pixel size of an image.

    TIFF and ``.npy`` are answered from metadata without reading pixels; PNG/JPEG have to be decoded
    (OpenCV has no header-only read), which is cheap at the sizes those formats hold.

    Parameters
    ----------
    path : str or os.PathLike
        Any file ``imread`` accepts.

    Returns
    -------
    info : ImageInfo
        ``info.shape``/``info.dtype`` equal those of ``imread(path)``.

    Raises
    ------
    ImageReadError
        As ``imread``; also for malformed OME-XML.
    """
    path = Path(path)
    with _reading(path):
        _check_file(path)
        kind = _kind(path)
        if kind == "tiff":
            return _tiff_info(path)
        if kind == "npy":
            return _npy_info(path)
        img = _decode_cv2(path)
        return ImageInfo(shape=tuple(img.shape), dtype=img.dtype, axes=_axes_guess(img.shape))


def _check_index(path: Path, index: int, nchan: int) -> None:
    if not 0 <= index < nchan:
        raise ImageReadError(path, f"channel index {index} out of range: the image has {nchan} channel(s)")


def _tiff_plane(path: Path, index: int) -> np.ndarray:
    """One plane of the first series: a page when there is one page per plane, else zarr chunks."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        shape, axes = tuple(series.shape), series.axes
        if len(shape) == 2:
            _check_index(path, index, 1)
            return series.asarray()
        if len(shape) != 3:
            raise ImageReadError(path, f"expected a (C, Y, X) or (Y, X, C) image, got axes {axes} shape {shape}")
        if axes.endswith("S") and not axes.startswith("S"):
            _check_index(path, index, shape[2])
            return np.ascontiguousarray(series.asarray()[..., index])
        _check_index(path, index, shape[0])
        pages = series.pages
        if len(pages) == shape[0] and pages[index] is not None:
            return pages[index].asarray().reshape(shape[1:])
        return _zarr_plane(series, index)


def _zarr_plane(series, index: int) -> np.ndarray:
    """Read plane ``index`` through tifffile's zarr store, touching only the chunks of that plane."""
    import zarr

    with series.aszarr() as store:
        return np.asarray(zarr.open(store, mode="r")[index])


def _array_plane(path: Path, img: np.ndarray, axes: str, index: int) -> np.ndarray:
    """Channel ``index`` of an in-memory/memory-mapped array: last axis for ``YXS``, else first."""
    if img.ndim == 2:
        _check_index(path, index, 1)
        return np.array(img)
    if img.ndim != 3:
        raise ImageReadError(path, f"expected a (C, Y, X), (Y, X, C) or (Y, X) image, got shape {img.shape}")
    axis = 2 if axes == "YXS" else 0
    _check_index(path, index, img.shape[axis])
    return np.array(np.take(img, index, axis=axis))


def read_channel(path: PathLike, index: int) -> np.ndarray:
    """Read one channel plane of a multi-channel image.

    Parameters
    ----------
    path : str or os.PathLike
        Any file ``imread`` accepts; for TIFF only the bytes of that plane are decoded when the channel
        axis is the leading one (``CYX``, ``QYX``, planar ``SYX``). Interleaved ``YXS`` TIFFs and PNG/JPEG
        are read whole; ``.npy`` is memory-mapped.
    index : int
        0-based channel index along the channel axis (leading axis, or last axis for ``YXS``).

    Returns
    -------
    plane : ndarray (Y, X), dtype as stored

    Raises
    ------
    ImageReadError
        Unreadable file, index out of range, or an image that is not 2D/3D.
    """
    path = Path(path)
    index = int(index)
    with _reading(path) as handle:
        _check_file(path)
        kind = _kind(path)
        if kind == "tiff":
            plane = _tiff_plane(path, index)
        elif kind == "npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            plane = _array_plane(path, arr, _axes_guess(arr.shape), index)
        else:
            img = _decode_cv2(path)
            plane = _array_plane(path, img, _axes_guess(img.shape), index)
        handle.add(pixels=int(plane.size))
    return plane


def _tiff_photometric(arr: np.ndarray) -> str:
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.dtype in (np.uint8, np.uint16):
        return "rgb"
    return "minisblack"


def _write_tiff(tmp: Path, arr: np.ndarray, compression: Optional[str]) -> None:
    codec = None if compression in (None, "none") else compression
    tifffile.imwrite(tmp, arr, photometric=_tiff_photometric(arr), compression=codec)


def _write_cv2(tmp: Path, arr: np.ndarray, ext: str) -> None:
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    ok, encoded = cv2.imencode(ext, arr)
    if not ok:
        raise OSError(f"OpenCV could not encode a {arr.dtype} array of shape {arr.shape} as {ext}")
    encoded.tofile(tmp)


def _check_writable_array(path: Path, arr: np.ndarray, ext: str) -> None:
    if ext in CV2_EXTENSIONS:
        if arr.dtype not in (np.uint8, np.uint16) or arr.ndim not in (2, 3):
            raise ValueError(f"{path}: {ext} holds 2D uint8/uint16 (or RGB/RGBA) images, got {arr.dtype} "
                             f"{arr.shape}; use .tif")
        if ext != ".png" and arr.dtype != np.uint8:
            raise ValueError(f"{path}: JPEG holds uint8 only, got {arr.dtype}")
    elif ext not in TIFF_EXTENSIONS and ext != ".npy":
        raise ValueError(f"{path}: cannot write extension {ext!r} (use .tif, .png, .jpg or .npy)")


def imsave(path: PathLike, arr: np.ndarray, *, compression: Optional[str] = "zlib") -> Path:
    """Write an image atomically.

    Parameters
    ----------
    path : str or os.PathLike
        ``.tif``/``.tiff`` (tifffile), ``.png`` (OpenCV; uint8/uint16, gray, RGB or RGBA),
        ``.jpg``/``.jpeg`` (uint8) or ``.npy``.
    arr : ndarray
        (Y, X), (Y, X, 3|4) RGB(A) in RGB order, or any stack for TIFF/npy. A uint8/uint16
        (Y, X, 3|4) TIFF is written with RGB photometric, everything else as gray pages.
    compression : str or None
        TIFF codec passed to tifffile (``"zlib"`` = Adobe deflate, the default); None or ``"none"``:
        uncompressed. Ignored by the other formats.

    Returns
    -------
    path : pathlib.Path
        The written file.

    Raises
    ------
    ValueError
        Unsupported extension or an array the format cannot hold.
    OSError
        The write itself failed (nothing is left at ``path``).
    """
    path = Path(path)
    arr = np.asarray(arr)
    ext = path.suffix.lower()
    _check_writable_array(path, arr, ext)
    with atomic_write(path) as tmp:
        if ext in TIFF_EXTENSIONS:
            _write_tiff(tmp, arr, compression)
        elif ext == ".npy":
            np.save(tmp, arr, allow_pickle=False)
        else:
            _write_cv2(tmp, arr, ext)
    return path
