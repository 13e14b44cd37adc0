"""On-disk cache of networks converted to OpenVINO IR, so that a new process skips tracing and conversion.

Converting CPnet for one input shape (``torch.jit.trace`` then ``openvino.convert_model``) took 4.3 s on a
2-core AMD EPYC (flags avx2 avx512f avx512_bf16); compiling the converted model for the CPU took 0.2 s. Since the
trace runs one small probe tile (``prepared._TwoOutputs``), converting took 1.05 s (trace 0.25 s, convert 0.80 s)
on a 2-core Intel Xeon (flags avx512_bf16 amx_bf16 amx_int8), against 3.7 s there before. The
converted model depends only on the weights, the input shape and the software versions, so it is saved once
per such key as IR (``cpnet.xml`` + ``cpnet.bin``, float32 weights) with a manifest holding the SHA-256 of both
files, and read back in later processes.

Every build, cached or not, compiles the model *as read back from IR*, so a run gives the same bits whether
the cache was hit, missed or switched off (a freshly converted in-memory model can differ from its IR in the
last bits: 3e-7 relative).

Where: ``$CELLPOSE_OPENVINO_CACHE``, else ``openvino/`` in the weight cache directory
(``cellpose.net.weights.cache_dir``). ``CELLPOSE_OPENVINO_CACHE=off`` switches the cache off (a temporary
folder is used for the round trip). An entry is written to a temporary folder and renamed into place, so a
reader never sees half an entry; an entry whose files do not match its manifest is ignored with a warning and
replaced (renamed aside first, so no process sees half an entry); a cache folder that cannot be created, read or
written only costs the conversion (logged as a warning).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

__all__ = ["CACHE_ENV", "ir_cache_dir", "cache_key", "converted_model", "state_digest"]

logger = logging.getLogger(__name__)

CACHE_ENV = "CELLPOSE_OPENVINO_CACHE"
_OFF = ("off", "0", "none", "false")
_FILES = ("cpnet.xml", "cpnet.bin")
FORMAT = 2  # 2: the style pooled by ReduceMean, traced on a small probe (prepared._TwoOutputs)


def ir_cache_dir() -> Optional[Path]:
    """The cache folder, or None when ``$CELLPOSE_OPENVINO_CACHE`` switches it off."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in _OFF:
        return None
    if value:
        return Path(value).expanduser()
    from ..net.weights import cache_path

    return cache_path() / "openvino"


def state_digest(module: torch.nn.Module) -> str:
    """Hex SHA-256 of a network's ``state_dict``: every name, dtype, shape and the bytes of every tensor."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().to("cpu")
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_key(module: torch.nn.Module, shape: Sequence[int], ov_version: str, *, tag: str = "") -> str:
    """Hex key of (weights, buffers, input shape, OpenVINO and torch versions, cache format, ``tag``).

    ``tag`` names a transformed model (``"int8"``: quantised, ``int8.py``); ``""`` is the plain conversion.
    """
    prefix = f"cpnet-ir:{FORMAT}:{ov_version}:{torch.__version__}:{tuple(shape)}"
    text = prefix + (f":{tag}" if tag else "") + ":" + state_digest(module)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _valid(entry: Path) -> bool:
    """True when ``entry`` holds both IR files and they match its manifest."""
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
        return all(manifest["sha256"][name] == _digest(entry / name) for name in _FILES)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _save(model, folder: Path, ov) -> None:
    """Write ``model`` as IR into ``folder`` (which exists) with its manifest."""
    ov.save_model(model, str(folder / _FILES[0]), compress_to_fp16=False)
    sums = {name: _digest(folder / name) for name in _FILES}
    (folder / "manifest.json").write_text(json.dumps({"format": FORMAT, "sha256": sums}, indent=1))


def _publish(tmp: Path, entry: Path) -> None:
    """Rename the finished ``tmp`` folder to ``entry``, replacing an invalid entry; keep a valid one.

    An invalid entry is first renamed aside (atomically) and then removed, so that no other process ever
    sees a half-deleted entry under the entry's name.
    """
    if entry.exists():
        if _valid(entry):
            return
        aside = entry.with_name(f".stale-{entry.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            os.replace(entry, aside)
        except FileNotFoundError:
            pass  # another process moved it first
        shutil.rmtree(aside, ignore_errors=True)
    try:
        os.replace(tmp, entry)
    except OSError:
        if not _valid(entry):  # another process published first: theirs is as good as ours
            raise


def _store(model, entry: Path, ov) -> None:
    """Save ``model`` to ``entry`` (atomically)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=entry.parent))
    try:
        _save(model, tmp, ov)
        _publish(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _round_trip(model, ov):
    """``model`` saved to a temporary folder and read back (the cache switched off or unwritable)."""
    with tempfile.TemporaryDirectory(prefix="cellpose-ov-") as tmp:
        _save(model, Path(tmp), ov)
        return ov.Core().read_model(str(Path(tmp) / _FILES[0]))


def converted_model(module: torch.nn.Module, shape: Sequence[int], convert: Callable[[], object], ov, *,
                    tag: str = ""):
    """The OpenVINO model of ``module`` for input ``shape``, read from IR (cached on disk when possible).

    Parameters
    ----------
    module : torch.nn.Module
        The network (its ``state_dict`` is part of the key).
    shape : sequence of int
        Static input shape ``(B, C, ly, lx)``.
    convert : callable
        ``convert() -> openvino.Model``: the conversion, run only on a cache miss.
    ov : module
        The imported ``openvino`` package.
    tag : str
        Part of the key for a transformed model (``"int8"``); ``""`` for the plain conversion.

    Returns
    -------
    model : openvino.Model
    """
    folder = ir_cache_dir()
    if folder is None:
        return _round_trip(convert(), ov)
    entry = folder / cache_key(module, shape, ov.__version__, tag=tag)
    model = _read_entry(entry, ov)
    if model is not None:
        return model
    model = convert()
    try:
        _store(model, entry, ov)
        return ov.Core().read_model(str(entry / _FILES[0]))
    except (OSError, RuntimeError) as err:
        logger.warning("could not use the OpenVINO cache %s (%s); converting each time", folder, err)
        return _round_trip(model, ov)


def _read_entry(entry: Path, ov):
    """The model of a valid cache ``entry``, or None (missing, damaged or unreadable: warned)."""
    try:
        if not entry.exists():
            return None
        if not _valid(entry):
            logger.warning("ignoring a damaged OpenVINO cache entry %s (files do not match its manifest)", entry)
            return None
        model = ov.Core().read_model(str(entry / _FILES[0]))
    except (OSError, RuntimeError) as err:
        logger.warning("could not read the OpenVINO cache entry %s (%s)", entry, err)
        return None
    logger.info("OpenVINO network read from the cache %s", entry)
    return model
