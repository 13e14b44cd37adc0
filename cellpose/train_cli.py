"""``python -m cellpose train --dir DIR``: train a CPnet on images and their ``<name><mask_filter>`` label files."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from .config import EvalOptions
from .io import imread, list_images
from .runner import CLIError, read_for_channels
from .train import TRAIN_PRECISIONS, TrainOptions, load_pretrained, prepare_image, save_trained, train_network

__all__ = ["build_train_parser", "load_training_dir", "train_main"]

log = logging.getLogger(__name__)


def build_train_parser() -> argparse.ArgumentParser:
    """Arguments of the ``train`` sub-command."""
    p = argparse.ArgumentParser(prog="python -m cellpose train", description="Train a Cellpose network.")
    p.add_argument("--dir", required=True, help="folder with training images and their label images")
    p.add_argument("--mask_filter", default="_masks", help="label file = <image stem><mask_filter>.tif")
    p.add_argument("--chan", type=int, default=0, help="channel to segment, 1-based (0 = grayscale/mean)")
    p.add_argument("--chan2", type=int, default=0, help="optional nuclear channel, 1-based")
    p.add_argument("--pretrained_model", default=None, help="weight file to start from (default: random init)")
    p.add_argument("--out", required=True, help="where to save the trained weights")
    p.add_argument("--n_iter", type=int, default=TrainOptions.n_iter, help="optimiser steps")
    p.add_argument("--batch_size", type=int, default=TrainOptions.batch_size, help="crops per step")
    p.add_argument("--bsize", type=int, default=TrainOptions.bsize, help="crop size (multiple of 16)")
    p.add_argument("--learning_rate", type=float, default=TrainOptions.learning_rate, help="AdamW learning rate")
    p.add_argument("--diam_mean", type=float, default=TrainOptions.diam_mean, help="diameter to train at")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--precision", choices=TRAIN_PRECISIONS, default="fp32",
                   help="fp32, or bf16 autocast + channels-last (about 4x faster on a CPU with AMX)")
    p.add_argument("--save_fp16", action="store_true", help="store the weights as float16")
    p.add_argument("--verbose", action="store_true", help="log the loss while training")
    return p


def _label_path(image: Path, mask_filter: str) -> Path:
    for ext in (".tif", ".tiff", ".png"):
        candidate = image.parent / f"{image.name.split('.')[0]}{mask_filter}{ext}"
        if candidate.exists():
            return candidate
    raise CLIError(f"{image}: no label file {image.name.split('.')[0]}{mask_filter}.tif next to it")


def load_training_dir(directory: str, *, mask_filter: str,
                      channels: Tuple[int, int]) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """Read every image of ``directory`` with its labels; returns prepared inputs and label images."""
    try:
        paths = [Path(p) for p in list_images(directory, mask_filter=mask_filter)]
    except (FileNotFoundError, NotADirectoryError) as err:
        raise CLIError(str(err)) from err
    if not paths:
        raise CLIError(f"no training images in {directory}")
    images, labels = [], []
    for path in paths:
        img, opts = read_for_channels(path, EvalOptions(channels=channels))
        lab = imread(_label_path(path, mask_filter))
        images.append(prepare_image(img, channels=opts.channels, channel_axis=opts.channel_axis))
        if lab.shape != images[-1].shape[1:]:
            raise CLIError(f"{path}: labels {lab.shape} do not match the image {images[-1].shape[1:]}")
        labels.append(lab.astype(np.int64))
    return images, labels


def train_main(argv: Optional[List[str]] = None) -> int:
    """Run the ``train`` sub-command; returns the exit status."""
    args = build_train_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    options = TrainOptions(n_iter=args.n_iter, batch_size=args.batch_size, bsize=args.bsize,
                           learning_rate=args.learning_rate, diam_mean=args.diam_mean, seed=args.seed,
                           precision=args.precision)
    images, labels = load_training_dir(args.dir, mask_filter=args.mask_filter, channels=(args.chan, args.chan2))
    net = load_pretrained(args.pretrained_model) if args.pretrained_model else None
    result = train_network(images, labels, options=options, net=net)
    out = save_trained(result, args.out, fp16=args.save_fp16)
    log.warning("trained %d steps in %.1f s, final loss %.4f; saved %s", options.n_iter, result.seconds,
                float(np.mean(result.losses[-10:])), out)
    return 0
