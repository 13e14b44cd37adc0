"""Command line: ``python -m cellpose --dir DIR [options]``.

Only argument parsing lives here: the flags become option dataclasses and one call to ``runner.run``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional

from . import __version__
from .config import DYNAMICS_IMPLS, BlockwiseOptions, DynamicsOptions, EvalOptions, NormalizeOptions, TilingOptions
from .config import check_dynamics_chunk
from .net.weights import DEFAULT_BUNDLED_MODEL
from .profiling import cli as profiling_cli
from .progress import PROGRESS_LOGGER, show_progress
from .runner import CLIError, OutputOptions, RunRequest, run
from . import variants

__all__ = ["build_parser", "main", "request_from_args"]

DEFAULT_MODEL = DEFAULT_BUNDLED_MODEL
_UNSUPPORTED = ("do_3D", "stitch_threshold", "save_txt", "save_rois", "save_mpl", "all_channels")


def _add_input_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("input")
    g.add_argument("--dir", default=None, help="folder of images to segment")
    g.add_argument("--image_path", default=None, help="a single image to segment")
    g.add_argument("--look_one_level_down", action="store_true", help="also search sub-folders of --dir")
    g.add_argument("--img_filter", default=None, help="only images whose name (without extension) ends in this")
    g.add_argument("--mask_filter", default="_masks", help="skip images whose name ends in this")
    g.add_argument("--chan", type=int, default=0, help="channel to segment, 1-based (0 = grayscale/mean)")
    g.add_argument("--chan2", type=int, default=0, help="optional nuclear channel, 1-based (0 = none)")
    g.add_argument("--channel_axis", type=int, default=None, help="axis of the channels in the image array")
    g.add_argument("--z_axis", type=int, default=None, help="(not supported: 2D only)")
    g.add_argument("--all_channels", action="store_true", help="(not supported)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--pretrained_model", default=DEFAULT_MODEL, help="built-in model name or weight file path")
    g.add_argument("--use_gpu", action="store_true", help="run the network on CUDA if available")
    g.add_argument("--gpu_device", default="0", help="CUDA device index")
    g.add_argument("--diameter", type=float, default=0.0,
                   help="object diameter in pixels (default 0: estimated from each image; logged and recorded "
                        "in profile.json and _seg.npy)")
    g.add_argument("--batch_size", type=int, default=8, help="tiles per network pass")
    g.add_argument("--bsize", type=int, default=224, help="tile size in pixels (multiple of 16)")
    g.add_argument("--tile_overlap", type=float, default=0.1, help="fraction of overlap between tiles")
    g.add_argument("--augment", action="store_true", help="test-time augmentation (flipped tiles)")
    g.add_argument("--invert", action="store_true", help="invert the normalised image")
    g.add_argument("--no_norm", action="store_true", help="do not normalise the image")
    g.add_argument("--norm_percentile", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="percentiles mapped to 0 and 1 (default 1 99)")


def _add_dynamics_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("dynamics")
    g.add_argument("--flow_threshold", type=float, default=0.4, help="max flow error of a kept mask (0 = off)")
    g.add_argument("--cellprob_threshold", type=float, default=0.0, help="cell probability logit threshold")
    g.add_argument("--min_size", type=int, default=15, help="remove masks smaller than this (pixels)")
    g.add_argument("--max_size_fraction", type=float, default=0.4, help="remove masks larger than this fraction")
    g.add_argument("--niter", type=int, default=0, help="Euler steps (0 = 200 / rescale)")
    g.add_argument("--no_resample", action="store_true", help="run the dynamics at the rescaled size")
    g.add_argument("--no_interp", action="store_true", help="nearest-pixel flow sampling")
    g.add_argument("--exclude_on_edges", action="store_true", help="remove masks touching the image border")
    g.add_argument("--stitch_threshold", type=float, default=0.0, help="(not supported: 2D only)")
    g.add_argument("--do_3D", action="store_true", help="(not supported: 2D only)")


def _add_dynamics_impl_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("dynamics implementation")
    g.add_argument("--dynamics", default="exact", metavar="{" + ",".join(DYNAMICS_IMPLS) + "}",
                   help="exact (default, upstream arithmetic) or fast (float32, parallel over NUMBA_NUM_THREADS)")
    g.add_argument("--dynamics_chunk", type=int, default=0, metavar="ROWS",
                   help="with --dynamics fast: compute masks ROWS rows at a time (bounded memory, same masks; "
                        "0 = off)")


def _dynamics_impl(args) -> str:
    if args.dynamics not in DYNAMICS_IMPLS:
        raise CLIError(f"--dynamics must be one of {', '.join(DYNAMICS_IMPLS)}; got {args.dynamics!r}")
    return args.dynamics


def _dynamics_chunk(args) -> int:
    try:
        return check_dynamics_chunk(args.dynamics_chunk, _dynamics_impl(args))
    except ValueError as err:
        raise CLIError(f"--dynamics_chunk: {err}") from err


def _add_blockwise_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("whole-slide (blockwise)")
    g.add_argument("--blockwise", action="store_true", default=None,
                   help="segment block by block in bounded memory (default: automatic above 64 Mpx)")
    g.add_argument("--no_blockwise", dest="blockwise", action="store_false", help="never switch to blockwise")
    g.add_argument("--block_size", type=int, default=None, help="block edge in pixels (default: from the diameter)")
    g.add_argument("--workers", type=int, default=None,
                   help="worker processes of a local Dask cluster (default: 1 per 2 cores; 0 = no Dask)")
    g.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler to run the blocks on")
    g.add_argument("--resume", action="store_true", help="continue an interrupted blockwise run")
    g.add_argument("--estimate", action="store_true", help="print the predicted peak RSS and time, then exit")
    g.add_argument("--exact_percentiles", action="store_true",
                   help="normalise with the percentiles of every pixel (uint8/uint16) instead of eval's sample")


def _blockwise_options(args) -> BlockwiseOptions:
    if args.block_size is not None and args.block_size < 1:
        raise CLIError(f"--block_size must be a positive number of pixels, got {args.block_size}")
    if args.workers is not None and args.workers < 0:
        raise CLIError(f"--workers must be >= 0, got {args.workers}")
    workers = args.workers if args.workers is not None else max(1, (os.cpu_count() or 1) // 2)
    enabled = True if (args.resume or args.estimate or args.scheduler) and args.blockwise is None else args.blockwise
    return BlockwiseOptions(enabled=enabled, block_size=args.block_size, workers=workers,
                            scheduler=args.scheduler, resume=args.resume, estimate=args.estimate,
                            exact_percentiles=args.exact_percentiles)


def _add_variant_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("network variant (see cellpose.variants; default: exact)")
    g.add_argument("--preset", choices=variants.PRESETS, default=None,
                   help="exact (default: plain float32, bit-for-bit) or fast (measured fastest with masks at "
                        "AP@0.5 >= 0.98 vs exact); the flags below override its settings")
    g.add_argument("--precision", choices=variants.PRECISIONS, default=None,
                   help="network precision (autocast): fp32, bf16 (CPU with avx512_bf16/amx, CUDA), fp16 (CUDA "
                        "only), int8 (OpenVINO only, implies --backend openvino: inner convolutions quantised, "
                        "calibrated on generated nuclei; see GUIDELINES §7) or auto (int8 on OpenVINO for the "
                        "bundled model, else by hardware; the pick is logged and recorded in profile.json)")
    g.add_argument("--backend", choices=variants.BACKENDS, default=None,
                   help="torch, compile (torch.compile; compile time is the stage network.compile), openvino "
                        "(CPU, optional package) or auto (openvino on a CPU where installed, else torch)")
    g.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=None,
                   help="run the convolutions in NHWC memory layout (--preset fast: on a CPU, not on CUDA)")
    g.add_argument("--skip_empty", action=argparse.BooleanOptionalAction, default=None,
                   help="reuse the network output of a constant tile for blank tiles (counted as skipped_tiles)")


def _variant(args) -> variants.NetVariant:
    backend = args.backend
    if args.precision == "int8" and backend is None:
        backend = "openvino"  # int8 runs only there; without openvino installed, resolve says how to get it
    return variants.select(preset=args.preset or "exact", precision=args.precision, backend=backend,
                           channels_last=args.channels_last, skip_empty=args.skip_empty)


def _add_output_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--savedir", default=None, help="existing folder for mask/flow files (default: image folder)")
    g.add_argument("--save_png", action="store_true", help="write masks as 16-bit PNG")
    g.add_argument("--save_tif", action="store_true", help="write masks as TIFF")
    g.add_argument("--no_npy", action="store_true", help="do not write _seg.npy")
    g.add_argument("--save_flows", action="store_true", help="write the RGB flow and dP TIFFs")
    g.add_argument("--save_outlines", action="store_true", help="write an outline PNG")
    g.add_argument("--in_folders", action="store_true", help="write masks/flows into sub-folders")
    g.add_argument("--output_name", default=None, help="suffix instead of _cp_masks")
    for flag in ("save_txt", "save_rois", "save_mpl"):
        g.add_argument(f"--{flag}", action="store_true", help="(not supported)")
    g.add_argument("--verbose", action="store_true", help="log progress to stderr")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m cellpose``."""
    p = argparse.ArgumentParser(prog="python -m cellpose",
                                description="cellpose-tb: Cellpose 3 segmentation with per-stage profiling")
    p.add_argument("--version", action="version", version=f"cellpose-tb {__version__}")
    _add_input_args(p)
    _add_model_args(p)
    _add_dynamics_args(p)
    _add_dynamics_impl_args(p)
    _add_variant_args(p)
    _add_output_args(p)
    _add_blockwise_args(p)
    profiling_cli.add_arguments(p)
    return p


def _normalize_options(args) -> NormalizeOptions:
    percentile = tuple(args.norm_percentile) if args.norm_percentile else (1.0, 99.0)
    if args.no_norm and args.invert:
        raise CLIError("--invert needs normalisation; it cannot be combined with --no_norm")
    return NormalizeOptions(normalize=not args.no_norm, percentile=percentile, invert=args.invert)


def _diameter(args) -> float:
    if not args.diameter >= 0:
        raise CLIError(f"--diameter must be a number of pixels >= 0 (0 = estimate from the image), got {args.diameter}")
    return float(args.diameter)


def _eval_options(args) -> EvalOptions:
    return EvalOptions(
        channels=(args.chan, args.chan2), channel_axis=args.channel_axis,
        diameter=_diameter(args), resample=not args.no_resample,
        normalize=_normalize_options(args),
        tiling=TilingOptions(bsize=args.bsize, tile_overlap=args.tile_overlap, batch_size=args.batch_size,
                             augment=args.augment),
        dynamics=DynamicsOptions(niter=args.niter or None, cellprob_threshold=args.cellprob_threshold,
                                 flow_threshold=args.flow_threshold, min_size=args.min_size,
                                 max_size_fraction=args.max_size_fraction, interp=not args.no_interp,
                                 impl=_dynamics_impl(args), chunk_rows=_dynamics_chunk(args)))


def request_from_args(args) -> RunRequest:
    """Turn parsed arguments into a ``RunRequest`` (raises ``CLIError`` for unsupported combinations)."""
    for flag in _UNSUPPORTED:
        if getattr(args, flag):
            raise CLIError(f"--{flag} is not supported by cellpose-tb (2D segmentation only)")
    if args.z_axis is not None:
        raise CLIError("--z_axis is not supported by cellpose-tb (2D segmentation only)")
    if (args.dir is None) == (args.image_path is None):
        raise CLIError("give exactly one of --dir or --image_path")
    outputs = OutputOptions(
        savedir=args.savedir, save_npy=not args.no_npy, save_png=args.save_png, save_tif=args.save_tif,
        save_flows=args.save_flows, save_outlines=args.save_outlines, in_folders=args.in_folders,
        suffix=args.output_name or "_cp_masks", exclude_on_edges=args.exclude_on_edges)
    device = f"cuda:{args.gpu_device}" if args.use_gpu and str(args.gpu_device).isdigit() else None
    return RunRequest(
        directory=args.dir, image_path=args.image_path, look_one_level_down=args.look_one_level_down,
        img_filter=args.img_filter, mask_filter=args.mask_filter, pretrained_model=args.pretrained_model,
        gpu=args.use_gpu, device=device, options=_eval_options(args), outputs=outputs,
        blockwise=_blockwise_options(args), variant=_variant(args))


def _train(argv: List[str]) -> int:
    from .train_cli import train_main

    try:
        return train_main(argv)
    except (CLIError, ValueError) as err:
        print(f"cellpose train: error: {err}", file=sys.stderr)
        return 2


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        return _train(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    logging.getLogger(PROGRESS_LOGGER).setLevel(logging.INFO)
    try:
        request = request_from_args(args)
        with show_progress():
            return run(request, profiler=profiling_cli.session_from_args(args))
    except CLIError as err:
        print(f"cellpose: error: {err}", file=sys.stderr)
        return 2
