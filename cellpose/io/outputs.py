"""Per-image output files of a run (spec §6, "Outputs per image"), all written atomically.

``<basename>`` is the image file name without its last extension. Files and where they go:

* ``<basename>_seg.npy`` (``save_seg_npy``): pickled dict for the Cellpose GUI, next to the image.
* ``<basename><suffix>.png|.tif`` (``save_masks``): label image; ``masks/`` sub-folder with ``in_folders``.
* ``<basename>_flows<suffix>.tif`` and ``<basename>_dP<suffix>.tif`` (``save_flows``); ``flows/``.
* ``<basename>_outlines<suffix>.png`` (``save_outlines_png``); ``outlines/``.

The masks/flows/outlines go to ``savedir`` when given (it must exist), else next to the image.
"""
from __future__ import annotations

import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Union

import cv2
import numpy as np
from scipy import ndimage

from ..profiling import stage
from .atomic import atomic_write
from .outlines import plane_outlines
from .tiff import imsave

__all__ = [
    "OutputDirError",
    "check_output_dir",
    "masks_to_outlines",
    "outlines_list",
    "cellprob_to_uint8",
    "build_seg",
    "save_seg_npy",
    "save_masks",
    "save_flows",
    "save_outlines_png",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

PNG_MAX_LABEL = 65535
# "_seg.npy" stores uint16 masks only while the maximum label is below this (upstream's threshold).
SEG_UINT16_LIMIT = 65535


class OutputDirError(OSError):
    """An output directory is missing, not a directory, or not writable."""


def _probe_write(folder: Path) -> None:
    """Create and delete a hidden file in ``folder``: the only reliable test (root ignores mode bits)."""
    fd, name = tempfile.mkstemp(prefix=".cellpose-write-probe-", dir=folder)
    os.close(fd)
    os.remove(name)


def check_output_dir(directory: PathLike) -> Path:
    """Check that ``directory`` exists, is a directory and accepts new files.

    Parameters
    ----------
    directory : str or os.PathLike

    Returns
    -------
    directory : pathlib.Path

    Raises
    ------
    OutputDirError
        With a message naming the directory and the problem.
    """
    folder = Path(directory)
    if not folder.exists():
        raise OutputDirError(f"output directory does not exist: {folder} (create it first)")
    if not folder.is_dir():
        raise OutputDirError(f"output directory is not a directory: {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputDirError(f"output directory is not writable: {folder}")
    try:
        _probe_write(folder)
    except OSError as err:
        raise OutputDirError(f"output directory is not writable: {folder} ({err.strerror or err})") from err
    return folder


def _basename(image_path: PathLike) -> str:
    return os.path.splitext(os.path.basename(os.fspath(image_path)))[0]


def _output_dir(image_path: PathLike, savedir: Optional[PathLike], subfolder: Optional[str] = None) -> Path:
    """Checked destination folder; ``subfolder`` (``in_folders``) is created inside it when missing."""
    base = check_output_dir(Path(savedir) if savedir is not None else Path(os.path.abspath(image_path)).parent)
    if subfolder is None:
        return base
    folder = base / subfolder
    try:
        folder.mkdir(exist_ok=True)
    except OSError as err:
        raise OutputDirError(f"cannot create output folder {folder}: {err.strerror or err}") from err
    return check_output_dir(folder)


def _check_masks(masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim not in (2, 3) or not np.issubdtype(masks.dtype, np.integer):
        raise ValueError(f"masks must be an integer (Ly, Lx) or (Z, Ly, Lx) array, got {masks.dtype} {masks.shape}")
    if masks.size and masks.min() < 0:
        raise ValueError("masks must not hold negative labels")
    return masks


def _external_contours(label_crop: np.ndarray) -> Sequence[np.ndarray]:
    """OpenCV external contours of a binary crop: one (N, 2) int32 array of (x, y) points per piece."""
    padded = np.pad(label_crop.astype(np.uint8), 1)
    contours, _ = cv2.findContours(padded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return [c.reshape(-1, 2) - 1 for c in contours]


def masks_to_outlines(masks: np.ndarray) -> np.ndarray:
    """Outline pixels of every mask.

    Definition: the pixels OpenCV traces as the *external* contours of each label (``RETR_EXTERNAL``,
    all points), i.e. the pixels of the label that touch (4-neighbourhood, image border included) the
    background that surrounds it; the rims of holes are not outlines, and every disconnected piece of a
    label gets its own outline unless it lies in a hole of another piece. Identical to upstream's outlines;
    computed in one compiled pass (``cellpose.io.outlines``), not one OpenCV call per label.

    Parameters
    ----------
    masks : ndarray (Ly, Lx) or (Z, Ly, Lx), integer labels, 0 = background

    Returns
    -------
    outlines : ndarray bool, same shape as ``masks`` (3D: plane by plane)
    """
    masks = _check_masks(masks)
    out = np.zeros(masks.shape, dtype=bool)
    if masks.size == 0:
        return out
    for plane, plane_out in zip(masks.reshape((-1,) + masks.shape[-2:]), out.reshape((-1,) + masks.shape[-2:])):
        plane_outlines(plane, plane_out)
    return out


def outlines_list(masks: np.ndarray) -> List[np.ndarray]:
    """Longest external contour of each label 1..max of a 2D label image (for ROI/text export).

    Parameters
    ----------
    masks : ndarray (Ly, Lx), integer labels

    Returns
    -------
    contours : list of ndarray (N, 2) int32
        ``(x, y)`` points in tracing order; entry ``i`` belongs to label ``i + 1`` ((0, 2) when absent).
    """
    masks = _check_masks(masks)
    if masks.ndim != 2:
        raise ValueError(f"outlines_list needs a 2D label image, got shape {masks.shape}")
    result = []
    for label, box in enumerate(ndimage.find_objects(masks), start=1):
        pieces = [] if box is None else _external_contours(masks[box] == label)
        longest = max(pieces, key=len) if pieces else np.zeros((0, 2), np.int32)
        offset = np.array([0, 0] if box is None else [box[1].start, box[0].start], np.int32)
        result.append((longest + offset).astype(np.int32))
    return result


def cellprob_to_uint8(cellprob: np.ndarray) -> np.ndarray:
    """Cell-probability map for display: 1-99 percentile normalised, clipped to [0, 1], ×255, truncated.

    Parameters
    ----------
    cellprob : ndarray (..., Ly, Lx) float32

    Returns
    -------
    ndarray, same shape, uint8 (all zeros when the 1st and 99th percentiles coincide)

    Notes
    -----
    Everything is float32, the percentile interpolation included (``q`` is passed as float32): that is
    what upstream's numpy 2.0 computes for float32 input, and newer numpy would otherwise interpolate in
    float64 and move some pixels by one grey level.
    """
    cellprob = np.asarray(cellprob, dtype=np.float32)
    low, high = np.percentile(cellprob, np.array([1, 99], dtype=np.float32))
    if not high > low:
        return np.zeros(cellprob.shape, np.uint8)
    scaled = np.clip((cellprob - low) / (high - low), 0, 1) * 255
    return scaled.astype(np.uint8)


def _split_flows(flows, shape: Optional[tuple] = None):
    """Validate ``[rgb, dP, cellprob]`` against the masks shape (default: rgb's); return them as arrays."""
    if not isinstance(flows, (list, tuple)) or len(flows) < 3:
        raise ValueError("flows must be the list [rgb (Ly, Lx, 3) uint8, dP (2, Ly, Lx) float32, cellprob (Ly, Lx)]")
    rgb, dp, cellprob = (np.asarray(f) for f in flows[:3])
    shape = rgb.shape[:-1] if shape is None else shape
    if rgb.shape[-3:-1] != shape[-2:] or rgb.shape[-1] != 3 or dp.shape[-2:] != shape[-2:] \
            or cellprob.shape[-2:] != shape[-2:]:
        raise ValueError(f"flows shapes {rgb.shape}, {dp.shape}, {cellprob.shape} do not match masks {shape}")
    return rgb, dp, cellprob


def _seg_masks_dtype(masks: np.ndarray) -> np.dtype:
    return np.dtype(np.uint16) if masks.size == 0 or masks.max() < SEG_UINT16_LIMIT else np.dtype(np.uint32)


def build_seg(image_path: PathLike, *, masks: np.ndarray, flows, diameter: float,
              channels: Optional[Sequence[int]]) -> dict:
    """The ``_seg.npy`` dictionary (the GUI's format), without writing it.

    Parameters
    ----------
    image_path : str or os.PathLike
        Stored as ``"filename"``.
    masks : ndarray (Ly, Lx) or (Z, Ly, Lx), integer labels
    flows : [rgb (Ly, Lx, 3) uint8, dP (2, Ly, Lx) float32, cellprob (Ly, Lx) float32]
        (3D: a leading Z on rgb/cellprob, dP (3, Z, Ly, Lx).)
    diameter : float
    channels : [chan, chan2] or None (stored as [0, 0])

    Returns
    -------
    dict
        ``masks`` uint16 (uint32 when max label >= 65535), ``outlines`` (same dtype, label on outline
        pixels), ``chan_choose`` list, ``ismanual`` bool (nmasks,), ``filename`` str, ``diameter`` float,
        ``flows`` = [rgb (Z|1, Ly, Lx, 3) uint8, cellprob (Z|1, Ly, Lx) uint8, zeros (Z|1, Ly, Lx, 3) uint8,
        [], float32 (3, Ly, Lx) = (dY, dX, cellprob) (3D: (4, Z, Ly, Lx))]. ``masks`` and ``flows[4]`` may share
        memory with the inputs (``flows[4]`` is the array whose planes ``dP`` and ``cellprob`` are, as
        ``eval`` returns them); copy before changing them in place.
    """
    masks = _check_masks(masks)
    rgb, dp, cellprob = _split_flows(flows, masks.shape)
    planes = (-1,) + masks.shape[-2:]
    stored = _writable(masks.astype(_seg_masks_dtype(masks), copy=False))
    rgb = _writable(rgb.astype(np.uint8, copy=False).reshape(planes + (3,)))
    return {
        "masks": stored,
        "outlines": masks_to_outlines(stored) * stored,
        "chan_choose": [int(c) for c in channels] if channels is not None else [0, 0],
        "ismanual": np.zeros(int(stored.max()) if stored.size else 0, dtype=bool),
        "filename": os.fspath(image_path),
        "diameter": float(diameter) if diameter is not None else 0.0,
        "flows": [rgb, cellprob_to_uint8(cellprob).reshape(planes), np.zeros_like(rgb), [],
                  _stacked_flows(dp, cellprob)],
    }


def _address(array: np.ndarray) -> int:
    """Address of the first element."""
    return array.__array_interface__["data"][0]


def _writable(array: np.ndarray) -> np.ndarray:
    """``array``, or a copy of it when it is read-only (pickled in-band, it would load read-only)."""
    return array if array.flags.writeable else array.copy()


def _stacked_flows(dp: np.ndarray, cellprob: np.ndarray) -> np.ndarray:
    """(dY, dX, cellprob) as one float32 array; no copy when they already are consecutive planes of one.

    ``eval`` returns ``dP = y[:2]`` and ``cellprob = y[2]`` of its (3, Ly, Lx) output, so the usual case
    costs nothing (a 3,138 × 2,509 image would otherwise copy 94 MB).
    """
    base = dp.base
    layout_ok = (isinstance(base, np.ndarray) and cellprob.base is base and base.dtype == np.float32
                 and base.shape == (dp.shape[0] + 1,) + dp.shape[1:]
                 and all(a.flags.c_contiguous for a in (base, dp, cellprob)))
    if layout_ok and _address(dp) == _address(base) and _address(cellprob) == _address(base) + dp.nbytes:
        return _writable(base)
    return np.concatenate([dp.astype(np.float32), cellprob.astype(np.float32)[np.newaxis]], axis=0)


def _save_pickled(path: PathLike, obj: dict) -> None:
    """``np.save(path, obj, allow_pickle=True)`` with pickle protocol 5, which writes array buffers directly.

    ``np.save`` pickles with protocol 4, which first copies every array into a bytes object (180 MB for
    a 3,138 × 2,509 ``_seg.npy``). The file is the same .npy object array; ``np.load(allow_pickle=True)``
    reads it (Python >= 3.8).
    """
    holder = np.empty((), dtype=object)
    holder[()] = obj
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, np.lib.format.header_data_from_array_1_0(holder))
        pickle.dump(holder, fh, protocol=5)


def save_seg_npy(image_path: PathLike, *, masks: np.ndarray, flows, diameter: float,
                 channels: Optional[Sequence[int]], savedir: Optional[PathLike] = None) -> Path:
    """Write ``<basename>_seg.npy`` (see ``build_seg`` for the contents).

    Parameters
    ----------
    image_path : str or os.PathLike
    masks, flows, diameter, channels
        As ``build_seg``.
    savedir : str or os.PathLike, optional
        Folder to write to (default, as upstream: the image's folder).

    Returns
    -------
    path : pathlib.Path
        The written file (``np.load(path, allow_pickle=True).item()`` reads it back).

    Raises
    ------
    OutputDirError
        Destination folder missing or not writable.
    """
    with stage("io.write.seg_npy") as handle:
        folder = _output_dir(image_path, savedir)
        seg = build_seg(image_path, masks=masks, flows=flows, diameter=diameter, channels=channels)
        path = folder / f"{_basename(image_path)}_seg.npy"
        with atomic_write(path) as tmp:
            _save_pickled(tmp, seg)
        handle.add(pixels=int(seg["masks"].size), cells=int(seg["ismanual"].size))
    return path


def _mask_formats(masks: np.ndarray, png: bool, tif: bool) -> List[str]:
    """Extensions to write: PNG falls back to TIF for 3D masks or labels above 65535."""
    max_label = int(masks.max()) if masks.size else 0
    formats = [".tif"] if tif else []
    if png and (masks.ndim != 2 or max_label > PNG_MAX_LABEL):
        logger.warning("masks are %s, cannot save PNG, saving as TIF",
                       "3D" if masks.ndim != 2 else f"labelled up to {max_label} (> 65535)")
        return [".tif"]
    if png and max_label == 0:
        logger.warning("no masks found, not saving the PNG")
    elif png:
        formats.insert(0, ".png")
    return formats


def save_masks(image_path: PathLike, masks: np.ndarray, *, savedir: Optional[PathLike] = None, png: bool = False,
               tif: bool = False, suffix: str = "_cp_masks", in_folders: bool = False) -> List[Path]:
    """Write the label image as ``<basename><suffix>.png`` and/or ``.tif``.

    Parameters
    ----------
    image_path : str or os.PathLike
    masks : ndarray (Ly, Lx) or (Z, Ly, Lx), integer labels
    savedir : str or os.PathLike, optional
        Existing folder (default: the image's folder).
    png : bool
        16-bit single-channel PNG (OpenCV). Written as TIF instead when the largest label is above 65535
        or the masks are 3D; not written at all when there are no masks (as upstream).
    tif : bool
        TIFF (tifffile, zlib/Adobe deflate), in the masks' own dtype (uint16, uint32 or int32).
    suffix : str
    in_folders : bool
        Write into a ``masks/`` sub-folder (created if needed).

    Returns
    -------
    paths : list of pathlib.Path
        Files written (possibly none).
    """
    masks = _check_masks(masks)
    formats = _mask_formats(masks, png, tif)
    if not formats:
        return []
    with stage("io.write.masks") as handle:
        folder = _output_dir(image_path, savedir, "masks" if in_folders else None)
        stem = folder / f"{_basename(image_path)}{suffix}"
        paths = [imsave(stem.with_name(stem.name + ext), masks.astype(np.uint16) if ext == ".png" else masks)
                 for ext in formats]
        handle.add(pixels=int(masks.size), cells=int(masks.max()) if masks.size else 0)
    return paths


def save_flows(image_path: PathLike, *, flows, savedir: Optional[PathLike] = None, suffix: str = "_cp_masks",
               in_folders: bool = False) -> List[Path]:
    """Write ``<basename>_flows<suffix>.tif`` (RGB flow image) and ``<basename>_dP<suffix>.tif``.

    Parameters
    ----------
    image_path : str or os.PathLike
    flows : [rgb (Ly, Lx, 3) uint8, dP (2, Ly, Lx) float32, cellprob (Ly, Lx) float32]
        The RGB image is written as uint8 RGB (upstream's ×65535 uint16 cast overflows, see
        docs/upstream-differences.md); dP is written as float32 (2, Ly, Lx) = (dY, dX) like upstream.
    savedir : str or os.PathLike, optional
    suffix : str
    in_folders : bool
        Write into a ``flows/`` sub-folder.

    Returns
    -------
    paths : list of pathlib.Path
        [flows image, dP].
    """
    rgb, dp, _ = _split_flows(flows)
    with stage("io.write.flows") as handle:
        folder = _output_dir(image_path, savedir, "flows" if in_folders else None)
        base = _basename(image_path)
        paths = [imsave(folder / f"{base}_flows{suffix}.tif", _rgb_uint8(rgb)),
                 imsave(folder / f"{base}_dP{suffix}.tif", dp.astype(np.float32, copy=False))]
        handle.add(pixels=int(np.prod(rgb.shape[:-1])))
    return paths


def _rgb_uint8(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return rgb
    if np.issubdtype(rgb.dtype, np.floating) and rgb.size and rgb.max() <= 1.0:
        return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _background(image: Optional[np.ndarray], shape: tuple) -> np.ndarray:
    """RGB uint8 (Ly, Lx, 3) backdrop: the image percentile-normalised (gray or first 3 channels), or black."""
    if image is None:
        return np.zeros(shape + (3,), np.uint8)
    image = np.asarray(image)
    if image.shape[:2] != shape:
        raise ValueError(f"image shape {image.shape} does not match masks {shape} (expected (Ly, Lx[, C]))")
    if image.ndim == 3 and image.shape[2] >= 3:
        return np.stack([cellprob_to_uint8(image[..., c]) for c in range(3)], axis=-1)
    gray = cellprob_to_uint8(image if image.ndim == 2 else image[..., 0])
    return np.repeat(gray[..., np.newaxis], 3, axis=-1)


def save_outlines_png(image_path: PathLike, masks: np.ndarray, *, image: Optional[np.ndarray] = None,
                      savedir: Optional[PathLike] = None, suffix: str = "_cp_masks",
                      in_folders: bool = False) -> Optional[Path]:
    """Write ``<basename>_outlines<suffix>.png``: outlines in red (255, 0, 0) over the image or black.

    Parameters
    ----------
    image_path : str or os.PathLike
    masks : ndarray (Ly, Lx), integer labels
    image : ndarray (Ly, Lx) or (Ly, Lx, C), optional
        Backdrop, percentile-normalised per channel (first 3 channels as RGB, else the first as gray).
    savedir : str or os.PathLike, optional
    suffix : str
    in_folders : bool
        Write into an ``outlines/`` sub-folder.

    Returns
    -------
    path : pathlib.Path or None
        None when there are no masks (nothing written, as upstream).
    """
    masks = _check_masks(masks)
    if masks.ndim != 2:
        raise ValueError(f"save_outlines_png needs a 2D label image, got shape {masks.shape}")
    if not masks.any():
        logger.warning("no masks found, not saving outlines for %s", image_path)
        return None
    with stage("io.write.outlines") as handle:
        folder = _output_dir(image_path, savedir, "outlines" if in_folders else None)
        picture = _background(image, masks.shape)
        picture[masks_to_outlines(masks)] = (255, 0, 0)
        path = imsave(folder / f"{_basename(image_path)}_outlines{suffix}.png", picture)
        handle.add(pixels=int(masks.size))
    return path
