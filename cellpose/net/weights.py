"""Weight files: built-in names, cache, download, loading and saving (spec §1.8).

A weight file is a plain ``torch.save`` of the CPnet ``state_dict`` (no wrapper, no extension on built-in
files). Built-in files are fetched from ``$CELLPOSE_MODELS_URL`` (default ``https://www.cellpose.org/models``)
into ``$CELLPOSE_LOCAL_MODELS_PATH`` (default ``~/.cellpose/models``).
"""
from __future__ import annotations

import http.client
import logging
import os
import pickle
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Tuple, Union

import torch
from tqdm import tqdm

from ..io.atomic import atomic_write
from ..profiling import stage, timed
from .cpnet import CPnet, infer_config

__all__ = [
    "BUILTIN_MODELS", "BUNDLED_MODELS", "DEFAULT_BUNDLED_MODEL", "RESTORE_MODELS", "bundled_model_path",
    "DEFAULT_MODELS_URL", "NOUT",
    "WeightsUnavailableError", "UnknownModelError", "WeightsFormatError", "DownloadError", "WeightsInfo",
    "is_builtin_name", "model_filename", "size_model_filename", "diam_mean_for", "cache_dir", "cache_path",
    "model_url",
    "download_file", "resolve_file", "resolve_model", "load_weights", "save_weights",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

DEFAULT_MODELS_URL = "https://www.cellpose.org/models"
NOUT = 3
BUILTIN_MODELS: Tuple[str, ...] = (
    "cyto3", "nuclei", "cyto2_cp3", "tissuenet_cp3", "livecell_cp3", "yeast_PhC_cp3", "yeast_BF_cp3",
    "bact_phase_cp3", "bact_fluor_cp3", "deepbacs_cp3", "cyto2", "cyto", "CPx", "transformer_cp3",
    "neurips_cellpose_default", "neurips_cellpose_transformer", "neurips_grayscale_cyto2",
    "CP", "TN1", "TN2", "TN3", "LC1", "LC2", "LC3", "LC4",
)
_RESTORE_KINDS = ("denoise", "deblur", "upsample", "oneclick")
RESTORE_MODELS: Tuple[str, ...] = (
    tuple(f"{k}_{m}" for k in _RESTORE_KINDS for m in ("cyto3", "cyto2", "nuclei"))
    + tuple(f"{k}_{v}_{m}" for k in _RESTORE_KINDS for v in ("per", "seg", "rec") for m in ("cyto2", "nuclei"))
    + ("aniso_cyto2", "aniso_nuclei")
)
#: Models shipped inside the package (``cellpose/models/<name>``), found without cache or download.
BUNDLED_MODELS: Tuple[str, ...] = ("cptb_nuclei",)
#: The CLI's default ``--pretrained_model``.
DEFAULT_BUNDLED_MODEL = "cptb_nuclei"
_TORCH0_NAMES = ("cyto", "cyto2", "nuclei")
_SIZE_MODEL_NAMES = ("cyto", "cyto2", "cyto3", "nuclei")
_DIAM_KEYS = ("diam_mean", "diam_labels")
_CHUNK = 1 << 20
_FILE_MODE = 0o644


class WeightsUnavailableError(RuntimeError):
    """A built-in weight file is not cached and could not be downloaded.

    Attributes ``filename``, ``url`` and ``dest`` (the cache path where the file can be put by hand).
    """

    def __init__(self, filename: str, url: str, dest: Path, reason: str):
        self.filename, self.url, self.dest = filename, url, Path(dest)
        super().__init__(
            f"model weights '{filename}' are not in the cache and could not be downloaded from {url} "
            f"({reason}). Download the file by hand and save it as {self.dest} "
            f"(cache directory: $CELLPOSE_LOCAL_MODELS_PATH, default ~/.cellpose/models).")


class UnknownModelError(ValueError):
    """A model name that is neither an existing file nor a built-in model."""


class WeightsFormatError(ValueError):
    """A file that is not a loadable Cellpose 3 CPnet state_dict."""


class DownloadError(OSError):
    """A download that ended before ``Content-Length`` bytes arrived (nothing is left in the cache)."""


@dataclass(frozen=True)
class WeightsInfo:
    """What ``load_weights`` found in a file.

    Attributes
    ----------
    path : Path
        The file read.
    n_keys : int
        Number of entries in the file's state_dict.
    file_dtype : str
        Floating dtype of the file's convolution weights (``"float32"``, ``"float16"``, ...).
    nout_file : int
        Output channels of the file's ``output.2.weight``.
    output_loaded : bool
        False when ``output.*`` was skipped because ``nout_file != 3`` (the output layer is then random).
    diam_from_file : bool
        True when the file carried ``diam_mean``.
    unexpected : tuple of str
        Keys in the file that the network does not have (ignored).
    """

    path: Path
    n_keys: int
    file_dtype: str
    nout_file: int
    output_loaded: bool
    diam_from_file: bool
    unexpected: Tuple[str, ...] = ()


def is_builtin_name(name: str) -> bool:
    """True when ``name`` is a built-in segmentation or restoration model name (case-sensitive)."""
    return str(name) in BUILTIN_MODELS or str(name) in RESTORE_MODELS


def model_filename(name: str) -> str:
    """File name of a built-in model: ``cyto``, ``cyto2``, ``nuclei`` → ``<name>torch_0``; others unchanged."""
    name = str(name)
    return f"{name}torch_0" if name in _TORCH0_NAMES else name


def size_model_filename(name: str) -> str:
    """File name of the size model of ``cyto``, ``cyto2``, ``cyto3`` or ``nuclei`` (``size_<file>.npy``).

    Raises
    ------
    UnknownModelError
        For any other name (no size model is published for it).
    """
    if str(name) not in _SIZE_MODEL_NAMES:
        raise UnknownModelError(f"no built-in size model for {name!r} (only {', '.join(_SIZE_MODEL_NAMES)})")
    return f"size_{model_filename(name)}.npy"


def diam_mean_for(name: PathLike, *, default: float = 30.0) -> float:
    """Training diameter of a model: 17 for ``nuclei`` or a path ending in ``nucleitorch_0``, else ``default``."""
    text = os.fspath(name)
    return 17.0 if text == "nuclei" or text.endswith("nucleitorch_0") else float(default)


def cache_path() -> Path:
    """The weight cache directory (``$CELLPOSE_LOCAL_MODELS_PATH`` or ``~/.cellpose/models``), not created."""
    env = os.environ.get("CELLPOSE_LOCAL_MODELS_PATH")
    return Path(env).expanduser() if env else Path.home() / ".cellpose" / "models"


def cache_dir() -> Path:
    """The weight cache directory (``cache_path``), created."""
    path = cache_path()
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_url(name: str, *, base_url: Optional[str] = None) -> str:
    """Download URL of a built-in file: base (argument, ``$CELLPOSE_MODELS_URL`` or default) + "/" + file."""
    base = base_url or os.environ.get("CELLPOSE_MODELS_URL") or DEFAULT_MODELS_URL
    return f"{base.rstrip('/')}/{model_filename(name)}"


def _content_length(resp) -> Optional[int]:
    """The response's Content-Length as int, or None when absent/invalid."""
    value = resp.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _copy_stream(resp, fh, *, total: Optional[int], desc: str, progress: bool) -> int:
    """Copy ``resp`` into ``fh`` chunk by chunk with a progress bar; return the byte count."""
    done = 0
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress) as bar:
        while True:
            try:
                chunk = resp.read(_CHUNK)
            except http.client.HTTPException as err:
                raise DownloadError(f"connection broke after {done} bytes: {err!r}") from err
            if not chunk:
                return done
            fh.write(chunk)
            done += len(chunk)
            bar.update(len(chunk))


def download_file(url: str, dest: PathLike, *, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically.

    The body is streamed into a temporary file in ``dest``'s directory, its size is checked against
    Content-Length, and only then is it moved onto ``dest`` with ``os.replace``. On any failure neither the
    temporary file nor ``dest`` is left behind.

    Parameters
    ----------
    url : str
        Source URL (http, https or file).
    dest : path-like
        Destination file; its directory is created.
    progress : bool
        Show a tqdm progress bar on stderr.
    timeout : float
        Socket timeout in seconds.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    DownloadError
        The body was shorter or longer than Content-Length.
    OSError
        Network errors (``urllib.error.URLError``, timeouts) and file-system errors.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(dest, suffix=".part") as tmp:
        with stage("download_weights") as s, open(tmp, "wb") as fh:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                total = _content_length(resp)
                got = _copy_stream(resp, fh, total=total, desc=dest.name, progress=progress)
            s.add(bytes=got)
        if total is not None and got != total:
            raise DownloadError(f"incomplete download of {url}: got {got} of {total} bytes")
        os.chmod(tmp, _FILE_MODE)
    return dest


def resolve_file(filename: str, *, base_url: Optional[str] = None, progress: bool = True) -> Path:
    """Path of a published file in the cache, downloading it when absent (no name check).

    Raises
    ------
    WeightsUnavailableError
        Not cached and the download failed; the message names the file, the URL and the cache path.
    """
    dest = cache_dir() / filename
    if dest.is_file():
        return dest
    url = model_url(filename, base_url=base_url)
    logger.info("downloading %s to %s", url, dest)
    try:
        return download_file(url, dest, progress=progress)
    except OSError as err:
        raise WeightsUnavailableError(filename, url, dest, str(err)) from err


def bundled_model_path(name: str) -> Path:
    """Path of a model shipped in ``cellpose/models``.

    Raises
    ------
    WeightsUnavailableError
        The package was installed without its model file.
    """
    path = Path(__file__).resolve().parents[1] / "models" / name
    if not path.is_file():
        raise WeightsUnavailableError(
            f"bundled model {name!r} is missing from the installation (expected {path}); reinstall cellpose-tb")
    return path


def resolve_model(name_or_path: PathLike, *, base_url: Optional[str] = None, progress: bool = True) -> Path:
    """Turn a model argument into a weight file path.

    Parameters
    ----------
    name_or_path : str or path-like
        An existing file (returned as is), a bundled model name (``cptb_nuclei``, shipped in the package) or
        a built-in upstream name (``cyto3``, ``nuclei``, ..., resolved through the cache and download).
    base_url : str, optional
        Download base URL; default ``$CELLPOSE_MODELS_URL`` or ``https://www.cellpose.org/models``.
    progress : bool
        Show a progress bar while downloading.

    Returns
    -------
    Path
        The file to pass to ``load_weights``.

    Raises
    ------
    UnknownModelError
        Neither an existing file nor a built-in name (there is no silent fallback to cyto3).
    WeightsUnavailableError
        A built-in file is not cached and cannot be downloaded.
    """
    candidate = Path(os.fspath(name_or_path)).expanduser()
    if candidate.is_file():
        return candidate
    name = os.fspath(name_or_path)
    if name in BUNDLED_MODELS:
        return bundled_model_path(name)
    if not is_builtin_name(name):
        raise UnknownModelError(
            f"model {name!r} is neither an existing weight file nor a built-in model name "
            f"(built-in: {', '.join(BUILTIN_MODELS)})")
    return resolve_file(model_filename(name), base_url=base_url, progress=progress)


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    """``torch.load(weights_only=True)`` on the CPU, checked to be a str → Tensor mapping."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError, KeyError,
            IndexError) as err:
        first_line = (str(err).strip().splitlines() or [""])[0]
        raise WeightsFormatError(f"{path} is not a PyTorch weight file ({type(err).__name__}: {first_line})") from err
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise WeightsFormatError(f"{path} does not contain a state_dict (a mapping of names to tensors)")
    if "W2" in state:
        raise WeightsFormatError(
            f"{path} is a Cellpose-4 (Cellpose-SAM) weight file (key 'W2'); cellpose-tb runs Cellpose 3 models")
    return state


def _file_config(state: Mapping[str, torch.Tensor], path: Path) -> dict:
    """Network shape stored in ``state``; WeightsFormatError when it is not a CPnet state_dict."""
    try:
        return infer_config(state)
    except (KeyError, IndexError) as err:
        raise WeightsFormatError(f"{path} is not a Cellpose 3 CPnet state_dict (missing {err})") from err


def _check_keys(state, expected, *, path: Path, skip_output: bool) -> Tuple[str, ...]:
    """Raise on missing (other than diam_*/skipped output) or mis-shaped keys; return the unexpected keys."""
    missing = [k for k in expected if k not in state and k not in _DIAM_KEYS
               and not (skip_output and k.startswith("output."))]
    if missing:
        raise WeightsFormatError(f"{path} lacks {len(missing)} CPnet key(s), e.g. {missing[:3]}")
    bad = [f"{k}: file {tuple(state[k].shape)} vs net {tuple(v.shape)}" for k, v in expected.items()
           if k in state and state[k].shape != v.shape and not (skip_output and k.startswith("output."))]
    if bad:
        raise WeightsFormatError(f"{path}: tensor shapes differ from the network: {bad[:3]}")
    return tuple(k for k in state if k not in expected)


def _fill_diams(state: dict, fallback: float) -> None:
    """Complete missing diam_* entries: diam_mean ← fallback, diam_labels ← diam_mean."""
    state.setdefault("diam_mean", torch.full((1,), float(fallback)))
    state.setdefault("diam_labels", state["diam_mean"].clone())


def _describe(state, *, path: Path, nout_file: int, unexpected: Tuple[str, ...]) -> WeightsInfo:
    """Summarise a checked state_dict, logging a warning for a skipped output layer or ignored keys."""
    if nout_file != NOUT:
        logger.warning("%s has %d output channels, expected %d: output layer not loaded", path, nout_file, NOUT)
    if unexpected:
        logger.warning("%s: ignoring %d unknown key(s), e.g. %s", path, len(unexpected), list(unexpected[:3]))
    return WeightsInfo(path=path, n_keys=len(state), nout_file=nout_file, output_loaded=nout_file == NOUT,
                       file_dtype=str(state["output.2.weight"].dtype).replace("torch.", ""),
                       diam_from_file="diam_mean" in state, unexpected=unexpected)


@timed("load_weights")
def load_weights(path: PathLike, *, device: Union[str, torch.device] = "cpu",
                 diam_mean: Optional[float] = None) -> Tuple[CPnet, WeightsInfo]:
    """Load an upstream-format CPnet weight file.

    Parameters
    ----------
    path : path-like
        A ``torch.save``-d CPnet state_dict (float32 or float16; diam_* keys optional).
    device : str or torch.device
        Where the returned network lives.
    diam_mean : float, optional
        diam_mean used only when the file has no ``diam_mean`` key; default ``diam_mean_for(path)``
        (17 for ``*nucleitorch_0``, else 30). ``diam_labels`` defaults to the resulting diam_mean.

    Returns
    -------
    net : CPnet
        float32, eval mode, on ``device``, 3 outputs. When the file has another number of outputs every key
        except ``output.*`` is loaded (the output layer keeps its random initialisation; a warning is logged).
    info : WeightsInfo
        What was found in the file.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    WeightsFormatError
        Not a torch state_dict, a Cellpose-4 file (key "W2"), or tensors missing / of the wrong shape.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file not found: {path}")
    state = dict(_read_state_dict(path))
    config = _file_config(state, path)
    skip_output = config["nout"] != NOUT
    net = CPnet(nbase=config["nbase"], sz=config["sz"], nout=NOUT)
    unexpected = _check_keys(state, net.state_dict(), path=path, skip_output=skip_output)
    info = _describe(state, path=path, nout_file=config["nout"], unexpected=unexpected)
    _fill_diams(state, diam_mean if diam_mean is not None else diam_mean_for(path))
    keep = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()
            if k not in unexpected and not (skip_output and k.startswith("output."))}
    net.load_state_dict(keep, strict=not skip_output)
    return net.to(device).eval(), info


def save_weights(net: torch.nn.Module, path: PathLike, *, dtype: torch.dtype = torch.float32) -> Path:
    """Save ``net.state_dict()`` in upstream format, atomically (temp file + ``os.replace``).

    Parameters
    ----------
    net : CPnet
        The network to save.
    path : path-like
        Destination file (no extension is added).
    dtype : torch.dtype
        ``torch.float32`` or ``torch.float16`` for the weights; ``num_batches_tracked`` stays int64 and
        ``diam_mean``/``diam_labels`` stay float32 (their exact values set the default rescale).

    Returns
    -------
    Path
        ``path``.
    """
    if dtype not in (torch.float32, torch.float16):
        raise ValueError(f"dtype must be torch.float32 or torch.float16, got {dtype}")
    path = Path(path)
    state = {k: v.detach().to("cpu", dtype=dtype if v.is_floating_point() and k not in _DIAM_KEYS else v.dtype)
             for k, v in net.state_dict().items()}
    with atomic_write(path, suffix=".tmp") as tmp:
        torch.save(state, tmp)
        os.chmod(tmp, _FILE_MODE)
    return path
