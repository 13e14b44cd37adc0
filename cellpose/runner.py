"""The CLI's job: find images, read them, segment them, write the outputs.

``run(request, profiler=...)`` is the one call that ``cli.main`` makes. Each image is read with only the
channels it needs (``--chan N`` on a 40-channel OME-TIFF reads one plane), segmented by
``CellposeModel.eval_options`` and written with the atomic writers of ``cellpose.io.outputs``.
Errors that a user can fix become ``CLIError`` with one line naming the problem.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from .config import BlockwiseOptions, EvalOptions
from .dynamics.edges import remove_edge_masks
from .io import files as io_files
from .io import outputs as io_outputs
from .io import tiff as io_tiff
from .net import weights as net_weights
from .progress import Progress, progress_shown
from .variants import NetVariant

__all__ = ["CLIError", "OutputOptions", "RunRequest", "run", "read_for_channels"]

logger = logging.getLogger(__name__)


class CLIError(Exception):
    """A problem with the user's input that ends the run with a one-line message."""


@dataclass(frozen=True)
class OutputOptions:
    """What to write for each image (spec §6, "Outputs per image")."""

    savedir: Optional[str] = None
    save_npy: bool = True
    save_png: bool = False
    save_tif: bool = False
    save_flows: bool = False
    save_outlines: bool = False
    in_folders: bool = False
    suffix: str = "_cp_masks"
    exclude_on_edges: bool = False


@dataclass(frozen=True)
class RunRequest:
    """One CLI invocation: which images, which model, which options, which outputs."""

    directory: Optional[str] = None
    image_path: Optional[str] = None
    look_one_level_down: bool = False
    img_filter: Optional[str] = None
    mask_filter: str = "_masks"
    pretrained_model: str = "cyto3"
    gpu: bool = False
    device: Optional[str] = None
    options: EvalOptions = EvalOptions()
    outputs: OutputOptions = OutputOptions()
    blockwise: BlockwiseOptions = BlockwiseOptions(enabled=False)
    variant: NetVariant = NetVariant()


def find_images(request: RunRequest) -> List[Path]:
    """Return the images to segment, or raise ``CLIError`` naming what is wrong."""
    if request.image_path is not None:
        path = Path(request.image_path)
        if not path.is_file():
            raise CLIError(f"image not found: {path}")
        return [path]
    try:
        found = io_files.list_images(request.directory, look_one_level_down=request.look_one_level_down,
                                     img_filter=request.img_filter, mask_filter=request.mask_filter)
    except (OSError, ValueError) as err:
        raise CLIError(str(err)) from err
    return [Path(p) for p in found]


def _load_model(request: RunRequest):
    from .models import CellposeModel

    try:
        return CellposeModel(gpu=request.gpu, pretrained_model=request.pretrained_model, device=request.device,
                             preset=request.variant)
    except (net_weights.WeightsUnavailableError, net_weights.UnknownModelError, OSError, ValueError) as err:
        raise CLIError(str(err)) from err


def _channel_axis(info, options: EvalOptions) -> Optional[int]:
    if options.channel_axis is not None:
        return options.channel_axis
    axes = getattr(info, "axes", "") or ""
    if len(info.shape) == 3 and "C" in axes:
        return axes.index("C")
    if len(info.shape) == 3 and info.shape[0] < min(info.shape[1:]) and axes[:1] in ("C", "S", "Q", "I", "Z"):
        return 0
    return None


def _check_channel(path: Path, chan: int, nchan: int, flag: str) -> None:
    if chan < 0 or chan > nchan:
        raise CLIError(f"{path}: {flag} {chan} is out of range: the image has {nchan} channel(s) (1..{nchan})")


def read_for_channels(path: Path, options: EvalOptions) -> Tuple[np.ndarray, EvalOptions]:
    """Read ``path`` with only the channels that ``options.channels`` uses.

    Returns
    -------
    img : ndarray (Ly, Lx) or (Ly, Lx, 2), or the whole image when all channels are needed
    options : EvalOptions
        Adjusted so that ``channels``/``channel_axis`` refer to the returned array.
    """
    try:
        info = io_tiff.image_info(path)
    except io_tiff.ImageReadError as err:
        raise CLIError(str(err)) from err
    chan, chan2 = options.channels if options.channels is not None else (0, 0)
    caxis = _channel_axis(info, options)
    if caxis is None or len(info.shape) != 3:
        return _read_whole(path, options, caxis)
    nchan = int(info.shape[caxis])
    _check_channel(path, chan, nchan, "--chan")
    _check_channel(path, chan2, nchan, "--chan2")
    if chan == 0 or caxis != 0 or not str(path).lower().endswith((".tif", ".tiff")):
        return _read_whole(path, options, caxis)
    planes = [_read_plane(path, chan - 1)] + ([_read_plane(path, chan2 - 1)] if chan2 > 0 else [])
    img = planes[0] if len(planes) == 1 else np.stack(planes, axis=-1)
    picked = (1, 2 if chan2 > 0 else 0)
    return img, replace(options, channels=picked, channel_axis=None if img.ndim == 2 else 2)


def _read_plane(path: Path, index: int) -> np.ndarray:
    try:
        return io_tiff.read_channel(path, index)
    except io_tiff.ImageReadError as err:
        raise CLIError(str(err)) from err


def _read_whole(path: Path, options: EvalOptions, caxis: Optional[int]) -> Tuple[np.ndarray, EvalOptions]:
    try:
        img = io_tiff.imread(path)
    except io_tiff.ImageReadError as err:
        raise CLIError(str(err)) from err
    return img, replace(options, channel_axis=caxis)


def _write_outputs(path: Path, masks, flows, *, request: RunRequest, diameter: float) -> None:
    out = request.outputs
    opts = request.options
    channels = list(opts.channels) if opts.channels is not None else [0, 0]
    try:
        if out.save_npy:
            io_outputs.save_seg_npy(path, masks=masks, flows=flows, diameter=diameter,
                                    channels=channels)
        if out.save_png or out.save_tif:
            io_outputs.save_masks(path, masks, savedir=out.savedir, png=out.save_png, tif=out.save_tif,
                                  suffix=out.suffix, in_folders=out.in_folders)
        if out.save_flows:
            io_outputs.save_flows(path, flows=flows, savedir=out.savedir, suffix=out.suffix,
                                  in_folders=out.in_folders)
        if out.save_outlines:
            io_outputs.save_outlines_png(path, masks, savedir=out.savedir, suffix=out.suffix,
                                         in_folders=out.in_folders)
    except OSError as err:
        raise CLIError(f"{path}: could not write outputs: {err}") from err


def _check_savedir(request: RunRequest) -> None:
    if request.outputs.savedir is None:
        return
    try:
        io_outputs.check_output_dir(request.outputs.savedir)
    except OSError as err:
        raise CLIError(str(err)) from err


def segment_file(model, path: Path, *, request: RunRequest, report=None):
    """Read, segment and write one image; return its masks (``report.set_shape`` gets the image shape)."""
    img, options = read_for_channels(path, request.options)
    if report is not None:
        report.set_shape(img.shape)
    try:
        (masks, flows, _), options = model.eval_resolved(img, options=options)
    except ValueError as err:
        raise CLIError(f"{path}: {err}") from err
    del img
    if request.outputs.exclude_on_edges:
        masks = remove_edge_masks(masks)
    _write_outputs(path, masks, flows, request=request, diameter=options.diameter or model.diam_labels)
    logger.info("%s: %d masks", path, int(masks.max()) if masks.size else 0)
    return masks


def _blockwise_errors():
    from .blockwise.records import ResumeMismatchError
    from .io.lazy import PlaneError

    return (PlaneError, ResumeMismatchError, FileExistsError, OverflowError, ValueError, OSError)


def segment_blockwise(model, path: Path, *, request: RunRequest, client, report=None):
    """Segment one image block by block (``cellpose.blockwise``); errors become one-line ``CLIError``."""
    from .blockwise import app

    try:
        return app.segment_path(model, path, options=request.options, blockwise=request.blockwise, client=client,
                                savedir=request.outputs.savedir, report=report)
    except _blockwise_errors() as err:
        raise CLIError(f"{path}: {err}") from err


def _estimate(model, paths: List[Path], request: RunRequest) -> int:
    from .blockwise import app

    for path in paths:
        try:
            print(app.estimate_text(model, path, options=request.options, blockwise=request.blockwise))
        except _blockwise_errors() as err:
            raise CLIError(f"{path}: {err}") from err
    return 0


def run(request: RunRequest, *, profiler) -> int:
    """Segment every image of ``request``; return 0 (errors raise ``CLIError``)."""
    _check_savedir(request)
    paths = find_images(request)
    model = _load_model(request)
    if request.blockwise.estimate:
        return _estimate(model, paths, request)
    from .blockwise import app

    blockwise = [app.wants_blockwise(p, request.blockwise) for p in paths]
    bar = Progress(len(paths), desc="images", unit="image", enabled=progress_shown() and len(paths) > 1)
    with (app.client_for(request.blockwise) if any(blockwise) else contextlib.nullcontext()) as client, \
            contextlib.closing(bar):
        for path, whole_slide in zip(paths, blockwise):
            with profiler.image(path, options=request) as report:
                if whole_slide:
                    segment_blockwise(model, path, request=request, client=client, report=report)
                else:
                    segment_file(model, path, request=request, report=report)
            bar.update()
    outdir = request.outputs.savedir or os.path.dirname(os.path.abspath(paths[0]))
    profiler.finish(outdir)
    return 0
