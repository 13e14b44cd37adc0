"""Training a CPnet with the Cellpose objective.

Targets come from the labels: flows = 5 × ``masks_to_flows`` (mean squared error) and cell probability =
``labels > 0`` (binary cross-entropy on the logit). Every image is rescaled so that its median nucleus
diameter becomes the network's ``diam_mean``, then random crops are drawn with random rotation, flip and
scale (×0.75–1.25); ``TrainOptions(augment="heavy")`` adds elastic deformation, blur, intensity changes, noise
and per-crop re-normalisation (``augment.heavy_augment``). Flows are recomputed on each transformed crop, so
they stay exact.
``TrainOptions(seam_weight=w)`` weighs both terms by ``1 + w`` on seam pixels (``seam_pixels``: two different
nuclei within a small window), where touching nuclei are told apart; ``w = 0`` is the plain objective.
The saved file is an upstream-format state_dict whose ``diam_labels`` is the mean training diameter.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .augment import AUGMENT_MODES, heavy_augment
from .config import NormalizeOptions
from .dynamics import masks_to_flows
from .net.cpnet import CPnet
from .net.weights import load_weights, save_weights
from .preprocess import convert_image, normalize_image

__all__ = ["TRAIN_PRECISIONS", "TrainOptions", "TrainResult", "diameter_of", "loss_fn", "prepare_image", "random_crop",
           "seam_pixels", "train_network"]

log = logging.getLogger(__name__)

TRAIN_PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainOptions:
    """Training settings.

    Parameters
    ----------
    n_iter : int
        Optimiser steps.
    batch_size : int
        Crops per step.
    bsize : int
        Crop size in pixels (multiple of 16).
    learning_rate, weight_decay : float
        AdamW settings; the rate decays linearly to 10 % over the last half of the run.
    diam_mean : float
        Nucleus diameter (pixels) the images are rescaled to.
    scale_range : (float, float)
        Random extra scale factor range.
    seed : int
        Seeds crops, augmentation and the network initialisation.
    log_every : int
        Log the mean loss every this many steps.
    augment : {"basic", "heavy"}
        "basic": rotation, flip and scale only. "heavy": also elastic deformation, blur, gamma/contrast/
        illumination/background, noise and per-crop 1–99 percentile re-normalisation, each crop drawing from
        its own generator seeded from the sampler's (``augment.heavy_augment``).
    seam_weight : float
        Extra loss weight of seam pixels, those with two different nuclei within ``seam_radius`` pixels (both
        terms; 0 = every pixel weighs 1, the Cellpose objective). Touching nuclei are told apart only there.
    seam_radius : int
        Half-width of the square window that defines seam pixels.
    precision : {"fp32", "bf16"}
        "bf16": the forward pass under bf16 autocast with channels-last tensors (weights, optimiser and loss stay
        float32). On an Intel Xeon with AMX (flags amx_bf16 avx512_bf16, 2 cores), with the bundled recipe's
        settings (8 crops of 112², heavy augmentation, seam weight 5; crops drawn in the step) a step took
        0.342-0.351 s against 0.968-0.980 s in float32 (2.8×; two runs of 10 steps each); one bare step of 8
        crops of 256² took 1.98 s against 8.47 s (4.3×). On a CPU without native bf16 it is emulated and slower
        (warned). No shipped phase was trained in bf16, so its effect on accuracy is not measured.
    """

    n_iter: int = 500
    batch_size: int = 8
    bsize: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    diam_mean: float = 17.0
    scale_range: Tuple[float, float] = (0.75, 1.25)
    seed: int = 0
    log_every: int = 25
    augment: str = "basic"
    seam_weight: float = 0.0
    seam_radius: int = 2
    precision: str = "fp32"

    def __post_init__(self):
        if self.augment not in AUGMENT_MODES:
            raise ValueError(f"augment must be one of {AUGMENT_MODES}, got {self.augment!r}")
        if not self.seam_weight >= 0 or not isinstance(self.seam_radius, int) or self.seam_radius < 1:
            raise ValueError(f"seam_weight must be >= 0 and seam_radius >= 1, got {self.seam_weight!r} and "
                             f"{self.seam_radius!r}")
        if self.bsize % 16 or self.bsize < 16:
            raise ValueError(f"bsize must be a positive multiple of 16, got {self.bsize}")
        if self.precision not in TRAIN_PRECISIONS:
            raise ValueError(f"precision must be one of {TRAIN_PRECISIONS}, got {self.precision!r}")
        if self.n_iter < 1 or self.batch_size < 1:
            raise ValueError(f"n_iter and batch_size must be >= 1, got {self.n_iter} and {self.batch_size}")


@dataclass
class TrainResult:
    """What ``train_network`` returns: the trained network, per-step losses and the training diameter."""

    net: CPnet
    losses: List[float]
    diam_labels: float
    seconds: float


def diameter_of(labels: np.ndarray) -> float:
    """Median equivalent-circle diameter of the masks, ``2 * sqrt(area / pi)`` (0 when there are none)."""
    counts = np.bincount(labels.ravel().astype(np.int64))[1:]
    counts = counts[counts > 0]
    if counts.size == 0:
        return 0.0
    return float(np.median(np.sqrt(counts)) * 2.0 / np.sqrt(np.pi))


def prepare_image(image: np.ndarray, *, channels: Sequence[int] = (1, 0),
                  channel_axis: Optional[int] = None) -> np.ndarray:
    """Network input of one training image, as ``eval`` builds it.

    Returns
    -------
    img : ndarray (2, Ly, Lx) float32
        Selected channels, each 1–99 percentile normalised.
    """
    img = convert_image(image, channels=list(channels), channel_axis=channel_axis)
    img = normalize_image(img, options=NormalizeOptions(), inplace=True)
    return np.ascontiguousarray(np.moveaxis(img, -1, 0))


def random_crop(img: np.ndarray, labels: np.ndarray, *, rng: np.random.Generator, bsize: int,
                scale: float) -> Tuple[np.ndarray, np.ndarray]:
    """Rotated, scaled and possibly flipped ``bsize`` crop of an image and its labels.

    Parameters
    ----------
    img : ndarray (C, Ly, Lx) float32
    labels : ndarray (Ly, Lx) integer
    scale : float
        Output pixels per input pixel.

    Returns
    -------
    img_crop : ndarray (C, bsize, bsize) float32
        Bilinear resampling, zero outside the image.
    lab_crop : ndarray (bsize, bsize) int32
        Nearest-neighbour resampling.
    """
    Ly, Lx = labels.shape
    theta = rng.uniform(0, 2 * np.pi)
    centre = np.array([rng.uniform(0, Lx), rng.uniform(0, Ly)])
    c, s = np.cos(theta) * scale, np.sin(theta) * scale
    flip = -1.0 if rng.random() < 0.5 else 1.0
    A = np.array([[c * flip, -s], [s * flip, c]])
    shift = np.array([bsize / 2, bsize / 2]) - A @ centre
    M = np.hstack([A, shift[:, None]]).astype(np.float64)
    out = np.stack([cv2.warpAffine(ch, M, (bsize, bsize), flags=cv2.INTER_LINEAR) for ch in img])
    lab = cv2.warpAffine(labels.astype(np.float32), M, (bsize, bsize), flags=cv2.INTER_NEAREST)
    return out.astype(np.float32), lab.astype(np.int32)


def seam_pixels(lab: np.ndarray, *, radius: int) -> np.ndarray:
    """Pixels that have two different nuclei within a (2·radius + 1)² window.

    Parameters
    ----------
    lab : ndarray (h, w) integer
        Labels, 0 = background.
    radius : int
        Half-width of the window.

    Returns
    -------
    seam : ndarray (h, w) bool
        Inside nuclei next to another nucleus, and the background gap between two nuclei.
    """
    size = 2 * radius + 1
    labs = lab.astype(np.int64)
    none = int(labs.max()) + 1
    high = ndimage.maximum_filter(labs, size=size, mode="constant", cval=0)
    low = ndimage.minimum_filter(np.where(labs > 0, labs, none), size=size, mode="constant", cval=none)
    return (high > 0) & (low < high)


def _targets(lab: np.ndarray, *, seam_weight: float = 0.0, seam_radius: int = 2) -> np.ndarray:
    """(4, h, w) float32 targets of one crop: 5 × flows (dY, dX), the cell mask and the per-pixel loss weight."""
    flows = masks_to_flows(lab)
    weight = np.ones(lab.shape, np.float32)
    if seam_weight:
        weight += np.float32(seam_weight) * seam_pixels(lab, radius=seam_radius)
    return np.concatenate([5.0 * flows, (lab > 0)[None], weight[None]]).astype(np.float32)


def loss_fn(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cellpose objective: half the MSE of the flows plus BCE-with-logits of the cell probability.

    ``target`` is (B, 3, h, w) (flows, mask) or (B, 4, h, w) with a per-pixel weight as its fourth channel;
    both terms are then means of weight × error over pixels, not normalised by the weights (weights of 1 give
    the plain objective; larger weights also scale the whole loss up).
    """
    weight = target[:, 3] if target.shape[1] > 3 else 1.0
    flow_err = ((y[:, :2] - target[:, :2]) ** 2).mean(1)
    flow_loss = (flow_err * weight).mean() / 2.0
    prob_err = F.binary_cross_entropy_with_logits(y[:, 2], target[:, 2], reduction="none")
    return flow_loss + (prob_err * weight).mean()


class _Sampler:
    """Draws augmented batches from a list of (image, labels, rescale)."""

    def __init__(self, data, options: TrainOptions, rng: np.random.Generator):
        self.data, self.options, self.rng = data, options, rng

    def batch(self) -> Tuple[torch.Tensor, torch.Tensor]:
        o = self.options
        xs, ys = [], []
        for _ in range(o.batch_size):
            img, lab, rescale = self.data[self.rng.integers(len(self.data))]
            scale = rescale * self.rng.uniform(*o.scale_range)
            x, crop = random_crop(img, lab, rng=self.rng, bsize=o.bsize, scale=scale)
            if o.augment == "heavy":
                x, crop = heavy_augment(x, crop, rng=np.random.default_rng(self.rng.integers(2 ** 63)))
            xs.append(x)
            ys.append(_targets(crop, seam_weight=o.seam_weight, seam_radius=o.seam_radius))
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def _check(images, labels, options: TrainOptions) -> None:
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"need as many label images as images (got {len(images)} and {len(labels)}), at least one")


def _learning_rate(options: TrainOptions, step: int) -> float:
    half = options.n_iter / 2
    if step < half:
        return options.learning_rate
    return options.learning_rate * (1.0 - 0.9 * (step - half) / max(half, 1))


def _dataset(images, labels, diam_mean: float):
    data, diams = [], []
    for img, lab in zip(images, labels):
        d = diameter_of(lab)
        if d <= 0:
            log.warning("skipping a training image without masks")
            continue
        data.append((img, np.ascontiguousarray(lab), diam_mean / d))
        diams.append(d)
    if not data:
        raise ValueError("no training image has any mask")
    return data, float(np.mean(diams))


def train_network(images: Sequence[np.ndarray], labels: Sequence[np.ndarray], *, options: TrainOptions = TrainOptions(),
                  net: Optional[CPnet] = None) -> TrainResult:
    """Train a CPnet on prepared images.

    Parameters
    ----------
    images : sequence of ndarray (2, Ly, Lx) float32
        Normalised network inputs (``prepare_image``).
    labels : sequence of ndarray (Ly, Lx) integer
        Ground-truth masks, 0 = background.
    options : TrainOptions
    net : CPnet, optional
        Network to fine-tune; a new one (seeded) by default.

    Returns
    -------
    TrainResult
    """
    _check(images, labels, options)
    torch.manual_seed(options.seed)
    net = net if net is not None else CPnet(diam_mean=options.diam_mean)
    data, diam_labels = _dataset(images, labels, options.diam_mean)
    sampler = _Sampler(data, options, np.random.default_rng(options.seed))
    opt = torch.optim.AdamW(net.parameters(), lr=options.learning_rate, weight_decay=options.weight_decay)
    net.train()
    bf16 = _use_bf16(net, options)
    losses, start = [], time.perf_counter()
    for step in range(options.n_iter):
        for group in opt.param_groups:
            group["lr"] = _learning_rate(options, step)
        x, target = sampler.batch()
        loss = loss_fn(_forward(net, x, bf16=bf16), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if (step + 1) % options.log_every == 0:
            log.info("step %d/%d loss %.4f (%.1f s)", step + 1, options.n_iter,
                     float(np.mean(losses[-options.log_every:])), time.perf_counter() - start)
    net.eval()
    net.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        net.diam_mean.fill_(options.diam_mean)
        net.diam_labels.fill_(diam_labels)
    return TrainResult(net=net, losses=losses, diam_labels=diam_labels, seconds=time.perf_counter() - start)


def _use_bf16(net: CPnet, options: TrainOptions) -> bool:
    """True for ``precision="bf16"``: ``net`` is switched to channels-last, and a CPU without native bf16 is
    warned about (emulated bf16 is slower than float32)."""
    if options.precision != "bf16":
        return False
    from .variants import native_bf16

    if not native_bf16():
        log.warning("training in bf16 on a CPU without avx512_bf16/amx_bf16 is emulated and slower than fp32")
    net.to(memory_format=torch.channels_last)
    return True


def _forward(net: CPnet, x: torch.Tensor, *, bf16: bool) -> torch.Tensor:
    """The network output ``(B, 3, h, w) float32`` of the batch ``x (B, 2, h, w) float32``; under bf16 autocast
    with channels-last input when ``bf16``."""
    if not bf16:
        return net(x)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x.contiguous(memory_format=torch.channels_last))[0]
    return y.float()


def load_pretrained(path) -> CPnet:
    """Network to fine-tune from a weight file (any upstream-format CPnet state_dict)."""
    net, _ = load_weights(path)
    return net


def save_trained(result: TrainResult, path, *, fp16: bool = False) -> Path:
    """Save the trained network in upstream format (float16 weights when ``fp16``)."""
    return save_weights(result.net, path, dtype=torch.float16 if fp16 else torch.float32)
