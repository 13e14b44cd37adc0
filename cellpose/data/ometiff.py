"""Write synthetic scenes as tiled BigTIFF OME-TIFFs, one row of tiles at a time.

Only one band of ``tile`` rows of one channel (plus the blur halo) is ever in memory, so even the
27,120 × 26,139 × 40 ``wd`` preset is written with a few hundred MB.  Files are written under a temporary
name in the output folder and moved into place with ``os.replace`` (atomic on one file system).
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import uuid
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import MappingProxyType

import numpy as np
import tifffile

from .. import __version__
from ..profiling import stage
from .generator import Scene
from .presets import channel_names, get_preset

__all__ = ["PIXEL_SIZE_UM", "write_scene", "write_labels", "write_preset", "output_paths"]

log = logging.getLogger(__name__)

#: Physical pixel size written to the OME metadata (µm).
PIXEL_SIZE_UM = 0.65
_COMPRESSIONS = MappingProxyType({"zlib": ("zlib", 1), "none": (None, None)})  # name → (codec, level)


def output_paths(out_dir, stem):
    """``(DIR/<stem>.ome.tif, DIR/<stem>_masks.tif)`` as :class:`pathlib.Path`."""
    out_dir = Path(out_dir)
    return out_dir / f"{stem}.ome.tif", out_dir / f"{stem}_masks.tif"


@contextlib.contextmanager
def _atomic(path):
    """Yield a temporary path next to ``path``; move it onto ``path`` on success, delete it on failure."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _image_band(scene, channel, y0, y1, width):
    """Rows [y0, y1) × [0, width) of one channel (module level so that worker processes can run it)."""
    log.debug("channel %d rows %d-%d", channel, y0, y1)
    return scene.render(channel, y0, y1, 0, width)


def _label_band(scene, _, y0, y1, width):
    """Label rows [y0, y1) × [0, width) (same signature as :func:`_image_band`)."""
    return scene.labels(y0, y1, 0, width)


def _bands(fn, scene, jobs, width, workers):
    """Yield ``fn(scene, *job, width)`` for each job in order; with workers > 1, ahead in child processes.

    At most ``2 × workers`` finished or running bands exist at once, so memory stays bounded.
    """
    if workers <= 1:
        for job in jobs:
            yield fn(scene, *job, width)
        return
    todo = iter(jobs)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = deque(pool.submit(fn, scene, *job, width) for job in itertools.islice(todo, 2 * workers))
        while pending:
            band = pending.popleft().result()
            job = next(todo, None)
            if job is not None:
                pending.append(pool.submit(fn, scene, *job, width))
            yield band


def _tiles(bands, width, tile):
    """Split each band (≤tile rows) into (≤tile, ≤tile) tiles, left to right."""
    for band in bands:
        for x0 in range(0, width, tile):
            yield band[:, x0:x0 + tile]


def _jobs(planes, height, tile):
    """(plane, y0, y1) of every row of tiles, plane after plane."""
    return [(p, y0, min(height, y0 + tile)) for p in planes for y0 in range(0, height, tile)]


def _check_options(tile, compression, workers):
    """Validate the tile edge, the compression name and the worker count."""
    if int(tile) < 16 or int(tile) % 16:
        raise ValueError(f"tile must be a positive multiple of 16, got {tile!r}")
    if compression not in _COMPRESSIONS:
        raise ValueError(f"compression must be one of {sorted(_COMPRESSIONS)}, got {compression!r}")
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")


def _ome_metadata(scene, names, title):
    """OME metadata dict for tifffile: axes, channel names, pixel size and a reproducible UUID."""
    ident = f"cellpose-tb/data/{title}/{scene.shape}/{scene.seed}/{scene.diameter}/{names}"
    return {
        "axes": "CYX",
        "Name": title,
        "Channel": {"Name": list(names)},
        "PhysicalSizeX": PIXEL_SIZE_UM, "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": PIXEL_SIZE_UM, "PhysicalSizeYUnit": "µm",
        "UUID": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, ident)}",
        "Creator": f"cellpose-tb {__version__}",
        "MapAnnotation": {"generator": "cellpose.data", "seed": str(scene.seed),
                          "scene_shape": "x".join(map(str, scene.shape)),
                          "diameter": f"{scene.diameter[0]:g}-{scene.diameter[1]:g}"},
    }


def _write(path, bands, shape, dtype, tile, compression, **kwargs):
    """Stream ``bands`` into a tiled BigTIFF at ``path`` through a temporary file."""
    comp, level = _COMPRESSIONS[compression]
    comp_args = None if level is None else {"level": level}
    with _atomic(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=True, ome=kwargs.pop("ome", False)) as tw:
        tw.write(_tiles(bands, shape[-1], tile), shape=shape, dtype=dtype, tile=(tile, tile), compression=comp,
                 compressionargs=comp_args, software="cellpose-tb", **kwargs)


def write_scene(scene, path, *, channels=None, crop=None, tile=256, compression="zlib", title="synthetic",
                workers=1):
    """Write channels of ``scene`` (top-left ``crop``) as a tiled BigTIFF OME-TIFF, atomically.

    Parameters
    ----------
    scene : Scene
    path : str or Path
        Output file (``*.ome.tif``); pages are the channels (OME axes ``CYX``), uint16.
    channels : sequence of int, optional
        Channels to write, in order (default all).
    crop : (int, int), optional
        Write only rows ``[0, Y)`` and columns ``[0, X)`` (default the whole scene).
    tile : int
        Tile edge (multiple of 16).
    compression : {"zlib", "none"}
    title : str
        OME image name.
    workers : int
        Processes rendering rows of tiles ahead (1 = render in this process).  Output bytes do not depend on it.
    """
    _check_options(tile, compression, workers)
    channels = list(range(scene.shape[0]) if channels is None else channels)
    height, width = _check_crop(scene, crop)
    names = [channel_names(scene.shape[0])[c] for c in channels]
    bands = _bands(_image_band, scene, _jobs(channels, height, int(tile)), width, int(workers))
    with stage("data.write_image") as s:
        _write(path, bands, (len(channels), height, width), np.uint16, int(tile), compression, ome=True,
               metadata=_ome_metadata(scene, names, title))
        s.add(pixels=len(channels) * height * width)
    log.info("wrote %s (%d x %d x %d)", path, len(channels), height, width)


def write_labels(scene, path, *, crop=None, tile=256, compression="zlib", workers=1):
    """Write the ground-truth nuclear labels of ``scene`` as a tiled uint32 BigTIFF (axes YX), atomically.

    Parameters
    ----------
    scene : Scene
    path : str or Path
        Output file (``*_masks.tif``).
    crop : (int, int), optional
        Top-left crop (Y, X) as in :func:`write_scene`.
    tile : int
        Tile edge (multiple of 16).
    compression : {"zlib", "none"}
    workers : int
        As in :func:`write_scene`.
    """
    _check_options(tile, compression, workers)
    height, width = _check_crop(scene, crop)
    bands = _bands(_label_band, scene, _jobs([0], height, int(tile)), width, int(workers))
    with stage("data.write_labels") as s:
        _write(path, bands, (height, width), np.uint32, int(tile), compression, metadata={"axes": "YX"})
        s.add(pixels=height * width)
    log.info("wrote %s (%d x %d labels)", path, height, width)


def _check_crop(scene, crop):
    """Validate a (Y, X) crop against the scene; return the written (height, width)."""
    _, Y, X = scene.shape
    if crop is None:
        return Y, X
    cy, cx = (int(v) for v in crop)
    if not (0 < cy <= Y and 0 < cx <= X):
        raise ValueError(f"crop {tuple(crop)} must be positive and within the image size {(Y, X)}")
    return cy, cx


def write_preset(name, out_dir, *, channels="all", seed=0, crop=None, size=None, diameter=(10, 25), tile=256,
                 compression="zlib", workers=1):
    """Write preset ``name`` as ``out_dir/<stem>.ome.tif`` plus ``out_dir/<stem>_masks.tif``.

    Parameters
    ----------
    name : str
        ``"exemplar"``, ``"lung"`` or ``"wd"`` (see ``presets.PRESETS``).
    out_dir : str or Path
        Existing or new output folder.
    channels : {"all", "nuclear"}
        ``"nuclear"`` writes channel 0 (``DNA_1``) only, as a one-plane image, to ``<name>_nuclear.ome.tif``.
    seed : int
        Non-negative seed (same seed → identical bytes).
    crop : (int, int), optional
        Write only the top-left (Y, X) crop of the preset (same pixels as the full preset there).
    size : (int, int), optional
        Replace the preset's (Y, X); a different scene from the preset.
    diameter : (float, float)
        Nucleus diameter range in pixels.
    tile : int
        Tile edge (multiple of 16).
    compression : {"zlib", "none"}
    workers : int
        Rendering processes (see :func:`write_scene`); the files are identical for any value.

    Returns
    -------
    image_path, labels_path : Path
    """
    preset = get_preset(name)
    if channels not in ("all", "nuclear"):
        raise ValueError(f"channels must be 'all' or 'nuclear', got {channels!r}")
    shape = preset.shape if size is None else (preset.shape[0], *(int(v) for v in size))
    scene = Scene(shape=shape, seed=seed, diameter=tuple(diameter))
    stem = name if channels == "all" else f"{name}_nuclear"
    image_path, labels_path = output_paths(out_dir, stem)
    _check_options(tile, compression, workers)
    _check_crop(scene, crop)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    planes = [0] if channels == "nuclear" else None
    opts = dict(crop=crop, tile=tile, compression=compression, workers=workers)
    write_scene(scene, image_path, channels=planes, title=name, **opts)
    write_labels(scene, labels_path, **opts)
    return image_path, labels_path
