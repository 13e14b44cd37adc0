"""The work folder of a blockwise run: a manifest and one record per finished block, for ``--resume``.

Layout (``<labels store>.work/``)::

    manifest.json        input fingerprint + plan settings + model identity; a resume must match it
    blocks/<k>.npz       pieces of block k's owned labels (``piece_<t>``, ``box_<t>``) and ``n``
    blocks/<k>.json      the block's statistics (time, peak RSS, cells, skipped)

Every file is written to a temporary name and renamed, so a record exists only when it is complete: after
a ``kill -9`` at any moment the folder holds finished blocks and, at worst, an orphan temporary file, which
is ignored and overwritten.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ..io.atomic import atomic_write
from .worker import BlockResult

__all__ = ["ResumeMismatchError", "WorkFolder"]


class ResumeMismatchError(ValueError):
    """An existing work folder belongs to another image or other settings."""


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


class WorkFolder:
    """Manifest and block records of one run.

    Parameters
    ----------
    path : path-like
        The folder (created by :meth:`start`).
    """

    def __init__(self, path):
        self.path = Path(path)
        self.blocks = self.path / "blocks"

    def exists(self) -> bool:
        """True when a manifest is there (an earlier run started)."""
        return (self.path / "manifest.json").is_file()

    def start(self, manifest: dict, *, resume: bool) -> None:
        """Create the folder, or check that the existing one matches ``manifest`` when resuming.

        Raises
        ------
        FileExistsError
            A run was started here before and ``resume`` is False.
        ResumeMismatchError
            ``resume`` and the existing manifest differs (names the first differing key).
        """
        if self.exists():
            if not resume:
                raise FileExistsError(f"{self.path} holds an unfinished run: pass --resume to continue it, or "
                                      "remove that folder to start again")
            self._check(manifest)
            return
        self.blocks.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path / "manifest.json") as tmp:
            tmp.write_text(_canonical(manifest))

    def _check(self, manifest: dict) -> None:
        old = json.loads((self.path / "manifest.json").read_text())
        new = json.loads(_canonical(manifest))
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                raise ResumeMismatchError(f"cannot resume {self.path}: it was started with a different {key} "
                                          f"({_short(old.get(key))} there, {_short(new.get(key))} now)")

    def done(self) -> Dict[int, dict]:
        """Statistics of the finished blocks, by block index."""
        out = {}
        for p in self.blocks.glob("*.json"):
            if p.stem.isdigit() and (self.blocks / f"{p.stem}.npz").is_file():
                out[int(p.stem)] = json.loads(p.read_text())
        return out

    def save(self, result: BlockResult) -> None:
        """Record a finished block (labels first, statistics last: the .json marks it done)."""
        arrays = {"n": np.int64(result.n)}
        for t, (box, labels) in result.pieces.items():
            arrays[f"piece_{t}"] = labels
            arrays[f"box_{t}"] = np.asarray(box, np.int64)
        with atomic_write(self.blocks / f"{result.k}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        with atomic_write(self.blocks / f"{result.k}.json") as tmp:
            tmp.write_text(_canonical(result.stats))

    def piece(self, k: int, target: int) -> Optional[tuple]:
        """``(box, labels)`` of block ``k``'s objects inside block ``target``'s core, or None."""
        with np.load(self.blocks / f"{k}.npz") as data:
            if f"piece_{target}" not in data.files:
                return None
            return tuple(int(v) for v in data[f"box_{target}"]), data[f"piece_{target}"]

    def count(self, k: int) -> int:
        """Number of objects block ``k`` owns."""
        with np.load(self.blocks / f"{k}.npz") as data:
            return int(data["n"])

    def remove(self) -> None:
        """Delete the folder (after every output is in place)."""
        for p in sorted(self.path.rglob("*"), key=lambda q: len(q.parts), reverse=True):
            p.rmdir() if p.is_dir() else os.remove(p)
        self.path.rmdir()


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."
