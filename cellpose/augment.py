"""Heavy training augmentation of one crop: elastic warp, blur, intensity changes, noise, re-normalisation.

Used by ``train.train_network`` with ``TrainOptions(augment="heavy")``, after the rotated/scaled/flipped crop
(``train.random_crop``). Order: elastic deformation → Gaussian blur (possibly spatially varying) → intensity
(gamma, contrast, illumination gradient, background level) → signal-dependent + Gaussian noise → 1–99
percentile re-normalisation of every non-constant channel, as ``eval`` normalises a whole image. Constant
channels (the all-zero second channel of a nuclear model) are left as they are. Everything is drawn from the
``rng`` passed in, so a seeded generator gives identical crops.
"""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

from .preprocess.normalize import MIN_RANGE, is_flat, percentile_range

__all__ = ["AUGMENT_MODES", "heavy_augment", "elastic_deform", "blur", "intensity", "add_noise", "renormalize"]

AUGMENT_MODES = ("basic", "heavy")
"""Values of ``TrainOptions.augment``: "basic" = rotation, flip and scale only; "heavy" adds ``heavy_augment``."""

P_ELASTIC, P_BLUR, P_BLUR_VARYING, P_GRADIENT, P_NOISE = 0.5, 0.5, 0.5, 0.5, 0.7
ELASTIC_GRID = (4, 6)
"""Coarse displacement grid size range (inclusive), per axis."""
ELASTIC_STD = (2.0, 4.0)
"""Range of the displacement standard deviation in crop pixels."""
BLUR_SIGMA = (0.0, 2.5)
GAMMA = (0.5, 2.0)
CONTRAST = (0.5, 2.0)
OFFSET = (-0.1, 0.1)
GRADIENT = 0.3
"""Largest relative change of the multiplicative illumination ramp at the crop edge."""
BACKGROUND = (0.0, 0.2)
NOISE_STD = (0.005, 0.3)
"""Range (log-uniform) of the noise std at the bright end, as a fraction of the 1–99 percentile range."""
RANGE_FLOOR = 0.3
"""Re-normalisation divides by at least this fraction of the crop's unit signal (bright nucleus = 1 before)."""


def heavy_augment(img: np.ndarray, lab: np.ndarray, *, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Heavily augmented copy of one crop and its labels.

    Parameters
    ----------
    img : ndarray (C, h, w) float32
        Percentile-normalised crop (``train.random_crop``).
    lab : ndarray (h, w) integer
        Labels of the crop, 0 = background.
    rng : numpy.random.Generator
        Source of every random draw (one per crop).

    Returns
    -------
    img_aug : ndarray (C, h, w) float32
        Finite; non-constant channels re-normalised to their own 1–99 percentiles.
    lab_aug : ndarray (h, w) int32
        Labels warped with the image (nearest neighbour); ids are a subset of ``lab``'s.
    """
    x, lab = np.array(img, dtype=np.float32, copy=True), lab.astype(np.int32)
    if rng.random() < P_ELASTIC:
        x, lab = elastic_deform(x, lab, rng=rng)
    if rng.random() < P_BLUR:
        x = blur(x, rng=rng)
    for c in range(x.shape[0]):
        if is_flat(x[c]):
            continue
        ch, unit = intensity(x[c], rng=rng)
        if rng.random() < P_NOISE:
            ch = add_noise(ch, rng=rng)
        x[c] = renormalize(ch, unit=unit)
    return x, lab


def _smooth_field(rng: np.random.Generator, grid: int, shape: Tuple[int, int], std: float) -> np.ndarray:
    """(h, w) float32 field: a ``grid`` × ``grid`` normal(0, std) grid upsampled with bicubic interpolation."""
    coarse = rng.normal(0.0, std, size=(grid, grid)).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def elastic_deform(img: np.ndarray, lab: np.ndarray, *, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Warp a crop by a smooth random displacement field.

    Parameters
    ----------
    img : ndarray (C, h, w) float32
    lab : ndarray (h, w) int32
    rng : numpy.random.Generator

    Returns
    -------
    img_w : ndarray (C, h, w) float32
        Bilinear resampling, mirrored at the crop border.
    lab_w : ndarray (h, w) int32
        Nearest-neighbour resampling of the labels with the same map (exact integers below 2**24).
    """
    h, w = lab.shape
    grid = int(rng.integers(ELASTIC_GRID[0], ELASTIC_GRID[1] + 1))
    std = rng.uniform(*ELASTIC_STD)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x = xx + _smooth_field(rng, grid, (h, w), std)
    map_y = yy + _smooth_field(rng, grid, (h, w), std)
    warp = [cv2.remap(ch, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT) for ch in img]
    lab_w = cv2.remap(lab.astype(np.float32), map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)
    return np.stack(warp).astype(np.float32), np.rint(lab_w).astype(np.int32)


def blur(img: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur with a random sigma, over the whole crop or blended in by a smooth random weight map.

    Parameters
    ----------
    img : ndarray (C, h, w) float32
    rng : numpy.random.Generator

    Returns
    -------
    out : ndarray (C, h, w) float32
        ``w * blurred + (1 - w) * img`` with ``w`` = 1 or a smooth map in [0, 1] (out-of-focus patches).
    """
    sigma = rng.uniform(*BLUR_SIGMA)
    if sigma < 0.3:
        return img
    blurred = np.stack([cv2.GaussianBlur(ch, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) for ch in img])
    if rng.random() >= P_BLUR_VARYING:
        return blurred.astype(np.float32)
    weight = np.clip(0.5 + _smooth_field(rng, 3, img.shape[1:], 0.5), 0.0, 1.0)
    return (weight * blurred + (1.0 - weight) * img).astype(np.float32)


def _ramp(rng: np.random.Generator, shape: Tuple[int, int]) -> np.ndarray:
    """(h, w) float32 multiplicative illumination ramp ``1 + a * t``, ``t`` in [-1, 1] along a random direction."""
    h, w = shape
    theta, amp = rng.uniform(0, 2 * np.pi), rng.uniform(-GRADIENT, GRADIENT)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = np.cos(theta) * (xx - (w - 1) / 2) + np.sin(theta) * (yy - (h - 1) / 2)
    t /= max(float(np.abs(t).max()), 1e-6)
    return (1.0 + amp * t).astype(np.float32)


def intensity(ch: np.ndarray, *, rng: np.random.Generator) -> Tuple[np.ndarray, float]:
    """Random gamma, contrast, offset, illumination ramp and background level of one channel.

    Parameters
    ----------
    ch : ndarray (h, w) float32
        Normalised channel (background ≈ 0, bright nuclei ≈ 1).
    rng : numpy.random.Generator

    Returns
    -------
    out : ndarray (h, w) float32
        ``(contrast * max(ch, 0) ** gamma + offset) * ramp + background``.
    unit : float
        What a bright value of 1 in ``ch`` has become above the background (contrast × mean ramp).
    """
    gamma = np.exp(rng.uniform(np.log(GAMMA[0]), np.log(GAMMA[1])))
    contrast = np.exp(rng.uniform(np.log(CONTRAST[0]), np.log(CONTRAST[1])))
    out = contrast * np.power(np.maximum(ch, 0.0), gamma) + rng.uniform(*OFFSET)
    ramp = _ramp(rng, ch.shape) if rng.random() < P_GRADIENT else np.ones_like(ch)
    out = out * ramp + rng.uniform(*BACKGROUND)
    return out.astype(np.float32), float(contrast * ramp.mean())


def add_noise(ch: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """Signal-dependent (Poisson-like) plus Gaussian noise at a random signal-to-noise ratio.

    Parameters
    ----------
    ch : ndarray (h, w) float32
    rng : numpy.random.Generator

    Returns
    -------
    out : ndarray (h, w) float32
        ``ch + sd * N(0, 1)`` with ``sd = f * r * sqrt(p * s + 1 - p)``: ``r`` the 1–99 percentile range,
        ``s = clip((ch - p1) / r, 0, 1)``, ``f`` log-uniform in ``NOISE_STD``, ``p`` uniform in [0, 1] the
        Poisson share of the variance at the bright end.
    """
    lo, hi = percentile_range(ch)
    spread = max(float(hi - lo), MIN_RANGE)
    frac = np.exp(rng.uniform(np.log(NOISE_STD[0]), np.log(NOISE_STD[1])))
    share = rng.uniform(0.0, 1.0)
    signal = np.clip((ch - lo) / spread, 0.0, 1.0)
    sd = frac * spread * np.sqrt(share * signal + (1.0 - share))
    return (ch + sd * rng.standard_normal(ch.shape)).astype(np.float32)


def renormalize(ch: np.ndarray, *, unit: float) -> np.ndarray:
    """1–99 percentile normalisation of one channel with a floor on the range.

    Parameters
    ----------
    ch : ndarray (h, w) float32
    unit : float
        Signal scale of the channel (``intensity``); the range used is at least ``RANGE_FLOOR * unit``, so
        an all-background crop keeps its noise small instead of being stretched to [0, 1].

    Returns
    -------
    out : ndarray (h, w) float32
        ``(ch - p1) / max(p99 - p1, RANGE_FLOOR * unit, MIN_RANGE)``.
    """
    lo, hi = percentile_range(ch)
    spread = max(float(hi - lo), RANGE_FLOOR * unit, MIN_RANGE)
    return ((ch - lo) / np.float32(spread)).astype(np.float32)
