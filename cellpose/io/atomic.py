"""All-or-nothing file writes.

Every writer of ``cellpose.io`` writes to a hidden temporary file in the destination directory and
renames it onto the final name only after the writer returned without error, so a crash, a full disk or
an exception never leaves a half-written output behind, and a reader never sees a partial file.
"""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator, Optional, Union

__all__ = ["atomic_write"]

PathLike = Union[str, os.PathLike]


def _temporary_name(final: Path, suffix: str) -> Path:
    """Hidden sibling of ``final`` that ends with ``suffix``: ``.<name>.<random>.tmp<suffix>``."""
    return final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp{suffix}")


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _flush_to_disk(path: Path) -> None:
    """``fsync`` the finished temporary file so that the rename never exposes unwritten blocks."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: PathLike, *, suffix: Optional[str] = None) -> Iterator[Path]:
    """Yield a temporary path to write to; move it onto ``path`` when the block succeeds.

    Parameters
    ----------
    path : str or os.PathLike
        Final file name. Its directory must exist.
    suffix : str, optional
        Extension the temporary name ends with (default: the extension of ``path``), so that writers
        that choose the format from the name (OpenCV, tifffile, ``np.save``) pick the right one.

    Yields
    ------
    tmp : pathlib.Path
        Hidden file name (starts with ``"."``) in the same directory as ``path``; not created yet.

    Raises
    ------
    FileNotFoundError
        If the block finished without creating ``tmp``.

    Notes
    -----
    On success the file is flushed and renamed with ``os.replace`` (atomic on POSIX and Windows when
    both names are on one file system, which a sibling always is). On any exception the temporary file
    is removed and the exception propagates; an existing file at ``path`` is left untouched.
    """
    final = Path(path)
    tmp = _temporary_name(final, final.suffix if suffix is None else suffix)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"writer did not create the temporary file for {final}")
        _flush_to_disk(tmp)
        os.replace(tmp, final)
    except BaseException:
        _remove_quietly(tmp)
        raise
