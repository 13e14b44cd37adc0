"""Calibrated int8 activation ranges, looked up before calibrating (``--precision int8``).

Calibration (``int8.calibrate``: generating 24 tiles, 0.7 s, and 6 float32 passes over them in batches of 4,
4.5 s at 224²; AMD EPYC, flags avx2 avx512f avx512_bf16 avx512_vnni, 2 cores) was most of a cold int8 build.
Its result, two numbers per convolution, depends on the weights, the tile shape, whether a marker fills the
second channel and the recipe (``ranges_key``), but not on the batch. It depends on the CPU and the software
versions by at most one float16 step, because every range is rounded up to float16 before use. So ranges are
looked up, in order:

1. ``cellpose/models/int8_ranges.json``, shipped with the package: the bundled model's ranges for its 224²
   tiles (``python scripts/int8_ranges.py`` writes it; ``tests/test_int8_ranges.py`` recalibrates and compares);
2. ``int8-ranges/<key>.json`` in the OpenVINO cache folder (``ov_cache.ir_cache_dir``; none when the cache is
   off), written atomically after a calibration;

and only then calibrated. Ranges are given to the convolutions by position, so each record also holds the
weight shapes of the convolutions in that order (``int8.convolution_shapes``); a record whose shapes differ
from the model's (another OpenVINO could order the graph otherwise) is not used. A damaged or mismatched file
is ignored with a warning; a mismatched cache file is then replaced.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..io.atomic import atomic_write
from . import int8
from .ov_cache import ir_cache_dir, state_digest

__all__ = ["SHIPPED", "lookup", "ranges_for", "ranges_key", "shipped_path", "store", "write_shipped"]

logger = logging.getLogger(__name__)

#: Name of the shipped ranges file in ``cellpose/models``.
SHIPPED = "int8_ranges.json"
_FOLDER = "int8-ranges"
#: ``(lo, hi, shapes)``: ranges (n_conv,) float64 and the convolution weight shapes they belong to.
Record = Tuple[np.ndarray, np.ndarray, List[List[int]]]


def ranges_key(module, shape: Sequence[int], *, marker: bool) -> str:
    """Hex key of (recipe, calibration seed and count, tile shape ``(C, ly, lx)``, ``marker``, weights).

    Parameters
    ----------
    module : torch.nn.Module
        The network (``ov_cache.state_digest``).
    shape : sequence of int
        ``(C, ly, lx)`` or ``(B, C, ly, lx)``; the batch is dropped.
    marker : bool
        Whether calibration puts a cell marker in the second channel.

    Returns
    -------
    str
        40 hex digits.
    """
    tile = "x".join(str(int(v)) for v in tuple(shape)[-3:])
    text = (f"int8-ranges:{int8.RECIPE}:{int8.CALIBRATION_SEED}:{int8.CALIBRATION_TILES}:{tile}:"
            f"marker={bool(marker)}:{state_digest(module)}")
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def shipped_path() -> Path:
    """``cellpose/models/int8_ranges.json`` (it may be missing from a trimmed install)."""
    return Path(__file__).resolve().parents[1] / "models" / SHIPPED


def _parse(record: dict) -> Record:
    """A stored record as ``(lo, hi, shapes)``; ValueError when it is malformed."""
    lo, hi = np.asarray(record["lo"], np.float64), np.asarray(record["hi"], np.float64)
    shapes = [[int(v) for v in s] for s in record["convolutions"]]
    if lo.ndim != 1 or not lo.size or lo.shape != hi.shape or len(shapes) != lo.size:
        raise ValueError("lo, hi and convolutions differ in length")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (lo <= hi).all()):
        raise ValueError("ranges are not finite with lo <= hi")
    return lo, hi, shapes


def _read(path: Path, key: str) -> Optional[Record]:
    """The record under ``key`` in a shipped (``{"entries": {key: record}}``) or cached (one record) file."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        record = data["entries"].get(key) if "entries" in data else data
        return None if record is None else _parse(record)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        logger.warning("ignoring int8 ranges file %s (%s)", path, err)
        return None


def _cached_path(key: str) -> Optional[Path]:
    """The disk-cache file of ``key``, or None when the OpenVINO cache is off."""
    folder = ir_cache_dir()
    return None if folder is None else folder / _FOLDER / f"{key}.json"


def lookup(key: str, *, shipped: Optional[Path] = None) -> Optional[Record]:
    """The record under ``key``: the shipped file first, then the disk cache.

    Parameters
    ----------
    key : str
        ``ranges_key(...)``.
    shipped : path, optional
        The shipped ranges file (default ``shipped_path()``).

    Returns
    -------
    (lo, hi, shapes) or None
        ``lo, hi : ndarray (n_conv,) float64`` and the convolutions' weight shapes; None when neither file has
        a well-formed record under ``key``.
    """
    found = _read(Path(shipped) if shipped is not None else shipped_path(), key)
    if found is not None:
        logger.info("int8: activation ranges shipped with the package (%s)", key)
        return found
    cached = _cached_path(key)
    found = None if cached is None else _read(cached, key)
    if found is not None:
        logger.info("int8: activation ranges read from the cache %s", cached)
    return found


def _record(lo: np.ndarray, hi: np.ndarray, shapes: List[List[int]], info: Optional[Dict] = None) -> dict:
    """JSON-ready record; ``info`` (model name, tile, marker, recipe) is for a human reader only."""
    return {**(info or {}), "convolutions": shapes, "lo": [float(v) for v in lo], "hi": [float(v) for v in hi]}


def store(key: str, lo: np.ndarray, hi: np.ndarray, shapes: List[List[int]]) -> Optional[Path]:
    """Write a record to the disk cache (atomically).

    Returns
    -------
    path or None
        The file written; None when the cache is off or cannot be written (warned).
    """
    path = _cached_path(key)
    if path is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(_record(lo, hi, shapes)))
    except OSError as err:
        logger.warning("could not cache int8 ranges in %s (%s)", path.parent, err)
        return None
    return path


def write_shipped(key: str, lo: np.ndarray, hi: np.ndarray, shapes: List[List[int]], *, info: Dict,
                  path: Optional[Path] = None) -> Path:
    """Add (or replace) the entry ``key`` of a shipped ranges file (atomically); other entries are kept.

    Parameters
    ----------
    key, lo, hi, shapes
        As ``store``.
    info : dict
        Model name, tile shape, marker and recipe, stored for a human reader.
    path : path, optional
        The file (default ``shipped_path()``).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = Path(path) if path is not None else shipped_path()
    data = json.loads(path.read_text()) if path.is_file() else {"format": 1, "entries": {}}
    data["entries"][key] = _record(lo, hi, shapes, info)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")
    return path


def ranges_for(module, model, ov, *, batch: int, marker: bool, config: Optional[dict] = None,
               shipped: Optional[Path] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Activation ranges for quantising ``model``: looked up (``lookup``), else calibrated and cached.

    Parameters
    ----------
    module : torch.nn.Module
        The network ``model`` was converted from (its weights are part of the key).
    model : openvino.Model
        Float32 conversion with a static input ``(batch, C, ly, lx)``.
    ov : module
        The imported ``openvino`` package.
    batch, marker, config
        As ``int8.calibrate``.
    shipped : path, optional
        As ``lookup``.

    Returns
    -------
    lo, hi : ndarray (n_conv,) float64
        In the order of ``int8.convolution_shapes(model)``.
    """
    key = ranges_key(module, tuple(model.inputs[0].get_partial_shape().to_shape()), marker=marker)
    shapes = int8.convolution_shapes(model)
    found = lookup(key, shipped=shipped)
    if found is not None and found[2] == shapes:
        return found[0], found[1]
    if found is not None:
        logger.warning("int8 ranges under %s belong to a graph with other convolutions; calibrating again", key)
    lo, hi = int8.calibrate(model, ov, batch=batch, marker=marker, config=config)
    store(key, lo, hi, shapes)
    return lo, hi
