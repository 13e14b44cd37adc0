"""Finding the images of a ``--dir`` run (spec §6).

A file is an image when its extension is one ``cellpose.io.tiff`` can read (any case) and its name
without extension does not end in one of the output/mask suffixes (``_cp_output``, ``_flows``,
``_flows_0/1/2``, ``_cellprob``, ``_masks``, ``_cp_masks``, ``_seg`` and the ``mask_filter``). Hidden files
(leading ``"."``, e.g. the temporary files of ``atomic_write``) are never images. The result is in
natural order of the full path (``img2`` before ``img10``).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import List, Optional, Tuple, Union

from .tiff import READABLE_EXTENSIONS

__all__ = ["NoImagesError", "list_images", "natural_key", "OUTPUT_SUFFIXES", "UNSUPPORTED_EXTENSIONS"]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

OUTPUT_SUFFIXES = ("_cp_output", "_flows", "_flows_0", "_flows_1", "_flows_2", "_cellprob", "_masks",
                   "_cp_masks", "_seg")
# Extensions upstream lists but that need readers we do not ship; such files are skipped with a warning.
UNSUPPORTED_EXTENSIONS = (".dax", ".nd2", ".nrrd")
_LISTED_EXTENSIONS = tuple(ext for ext in READABLE_EXTENSIONS if ext != ".npy")
_DIGITS = re.compile(r"(\d+)")


class NoImagesError(ValueError):
    """A directory holds no image that ``list_images`` would segment."""


def natural_key(text: str) -> Tuple[Tuple[Tuple[int, int, str], ...], str]:
    """Sort key that orders digit runs by value: ``a2 < a10``; ties (``a02``/``a2``) by the text itself.

    Parameters
    ----------
    text : str

    Returns
    -------
    key : tuple
        Comparable key; case-sensitive like upstream (``"Img3" < "a"``).
    """
    parts = _DIGITS.split(text)
    chunks = tuple((0, int(part), "") if i % 2 else (1, 0, part) for i, part in enumerate(parts) if part)
    return chunks, text


def _is_excluded(stem: str, mask_filter: Optional[str]) -> bool:
    suffixes = OUTPUT_SUFFIXES + ((mask_filter,) if mask_filter else ())
    return stem.endswith(suffixes)


def _candidates(folder: Path) -> List[Path]:
    """Non-hidden regular files of ``folder`` (not recursive)."""
    return [entry for entry in folder.iterdir() if not entry.name.startswith(".") and entry.is_file()]


def _subfolders(folder: Path) -> List[Path]:
    return [entry for entry in folder.iterdir() if not entry.name.startswith(".") and entry.is_dir()]


def _keep(path: Path, img_filter: Optional[str], mask_filter: Optional[str]) -> bool:
    ext = path.suffix.lower()
    if ext in UNSUPPORTED_EXTENSIONS:
        logger.warning("skipping %s: %s files are not supported", path, ext)
        return False
    if ext not in _LISTED_EXTENSIONS:
        return False
    stem = path.name[: -len(path.suffix)]
    stem = stem[:-4] if stem.lower().endswith(".ome") else stem
    if img_filter and not stem.endswith(img_filter):
        return False
    return not _is_excluded(stem, mask_filter)


def _check_directory(directory: PathLike) -> Path:
    if directory is None:
        raise ValueError("no image directory given")
    folder = Path(directory)
    if not folder.exists():
        raise FileNotFoundError(f"image directory not found: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"not a directory: {folder}")
    return folder


def list_images(directory: PathLike, *, look_one_level_down: bool = False, img_filter: Optional[str] = None,
                mask_filter: Optional[str] = "_masks") -> List[str]:
    """List the images to segment in ``directory``.

    Parameters
    ----------
    directory : str or os.PathLike
        Folder to scan.
    look_one_level_down : bool
        Also scan its immediate (non-hidden) sub-folders, not deeper.
    img_filter : str, optional
        Keep only images whose name without extension ends with this string.
    mask_filter : str, optional
        Extra name ending to skip (besides the fixed output suffixes).

    Returns
    -------
    paths : list of str
        Image paths (``directory`` joined with the file name), natural-sorted by full path.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        ``directory`` is missing or not a folder (message names it).
    NoImagesError
        Nothing left after filtering (message names the folder and the filters).
    """
    folder = _check_directory(directory)
    folders = [folder] + (sorted(_subfolders(folder)) if look_one_level_down else [])
    found = [str(p) for sub in folders for p in _candidates(sub) if _keep(p, img_filter, mask_filter)]
    if not found:
        detail = f" ending in {img_filter!r}" if img_filter else ""
        raise NoImagesError(f"no images{detail} found in {folder} (extensions: {', '.join(_LISTED_EXTENSIONS)}; "
                            f"names ending in {mask_filter!r} or an output suffix are skipped)")
    return sorted(found, key=natural_key)
