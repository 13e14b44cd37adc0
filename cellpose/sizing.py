"""Estimate the median object diameter of an image with the segmentation network itself.

The network is trained to see objects at ``diam_mean`` pixels. Segment a bounded window of the image at a
geometric ladder of assumed diameters ``D`` and measure the median diameter ``d`` of the masks found at each.
When ``D`` is too large the objects look small and are still found whole (``d`` ≈ the true size, ``d < D``);
when ``D`` is too small they look large and are found whole or split (``d ≥ D`` or erratic). The answer is
the consistent scale where ``d(D) = D``: the largest ladder step with ``d / D ≥ 1``, interpolated (in log
space) with the step above it, where ``d / D < 1``.

The ladder is searched from its middle: up while the steps are consistent, else down until one is, so a
typical image costs two to four steps. The first step segments a window of about ``window`` × ``window``
*rescaled* pixels (four network tiles at the default size), centred on the image unless the signal is elsewhere.
Steps above it widen the window in proportion to the assumed diameter (larger objects need more room). Steps
below it keep the first step's window in image pixels, up to ``MAX_UPSCALE`` × ``window`` rescaled pixels (at
the default settings the 16 px step keeps it, the 11.3 and 8 px steps get 351² and 248² px): a window that
shrank with the assumed diameter held other nuclei at each step, and where nuclear size varies across the
field (tissue) that put the estimate up to 16.5 % off.

The answer describes the window. ``eval(diameter=0)`` then segments the whole image at it and, where the median
diameter of all the masks differs from it by more than ``REFINE_TOLERANCE``, segments again at that median
(``whole_image_diameter``).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Optional, Sequence, Tuple

import numpy as np

from .dynamics.edges import remove_edge_masks
from .train import diameter_of


__all__ = ["DEFAULT_LADDER", "SizeCandidate", "SizeEstimate", "estimate_diameter", "estimate_prepared",
           "whole_image_diameter"]

logger = logging.getLogger(__name__)

#: Assumed diameters (pixels): 8 to 64, ratio sqrt(2).
DEFAULT_LADDER: Tuple[float, ...] = tuple(8.0 * math.sqrt(2.0) ** k for k in range(7))
#: Fewest masks for a ladder step to count as evidence.
MIN_MASKS = 5
#: Relative difference between the whole image's median mask diameter and the window's estimate beyond which
#: ``eval(diameter=0)`` segments again at the former (``whole_image_diameter``).
REFINE_TOLERANCE = 0.05
#: Largest rescaled window edge of a step below the first, in units of ``window``: 1.65 × 320 = 528 px, which
#: the §2.5 padding takes to 544, still 3 × 3 tiles of 224 at the default overlap.
MAX_UPSCALE = 1.65


@dataclass(frozen=True)
class SizeCandidate:
    """One ladder step: the assumed diameter, and the median diameter and number of the masks found."""

    assumed: float
    measured: float
    count: int

    @property
    def ratio(self) -> float:
        """``measured / assumed`` (0 with too few masks to tell)."""
        return self.measured / self.assumed if self.count >= MIN_MASKS else 0.0


@dataclass(frozen=True)
class SizeEstimate:
    """The estimated median object diameter (``None``: no objects found) and the evidence behind it.

    Attributes
    ----------
    diameter : float or None
        Median object diameter in image pixels.
    candidates : tuple of SizeCandidate
        The ladder steps evaluated, largest assumed diameter first.
    window : (int, int, int, int)
        ``(y0, y1, x0, x1)`` of the widest window segmented.
    seconds : float
        Wall time of the estimate.
    """

    diameter: Optional[float]
    candidates: Tuple[SizeCandidate, ...] = ()
    window: Tuple[int, int, int, int] = (0, 0, 0, 0)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        """A JSON-ready summary (for ``profile.json``)."""
        return {"diameter": None if self.diameter is None else round(float(self.diameter), 3),
                "candidates": [{"assumed": round(c.assumed, 3), "measured": round(c.measured, 3),
                                "count": c.count} for c in self.candidates],
                "window": list(self.window), "seconds": round(self.seconds, 3)}


def estimate_diameter(model, img, *, channels: Optional[Sequence[int]] = None, channel_axis=None,
                      options=None, ladder: Sequence[float] = DEFAULT_LADDER, window: int = 320) -> SizeEstimate:
    """Estimate the median object diameter of ``img`` (pixels) with ``model``.

    Parameters
    ----------
    model : CellposeModel
    img : ndarray
        The image, as for ``model.eval``.
    channels, channel_axis
        As for ``eval`` (override ``options``).
    options : EvalOptions, optional
        Normalisation, tiling and dynamics (``diameter`` is ignored).
    ladder : sequence of float
        Assumed diameters to try, increasing.
    window : int
        Edge of the first step's window in rescaled pixels (see the module docstring for the other steps).

    Returns
    -------
    SizeEstimate
    """
    from .config import EvalOptions

    options = options or EvalOptions()
    if channels is not None or channel_axis is not None:
        options = replace(options, channels=tuple(channels) if channels is not None else options.channels,
                          channel_axis=channel_axis)
    return estimate_prepared(model, model.prepare(img, options), options=options, ladder=ladder, window=window)


def estimate_prepared(model, img: np.ndarray, *, options, variant=None, ladder: Sequence[float] = DEFAULT_LADDER,
                      window: int = 320) -> SizeEstimate:
    """``estimate_diameter`` of an image already converted and normalised (``model.prepare``), (Ly, Lx, 2)."""
    t0 = time.perf_counter()
    if not np.any(img):
        return SizeEstimate(None, seconds=time.perf_counter() - t0)
    ladder = sorted(float(d) for d in ladder)
    first = ladder[len(ladder) // 2]
    centre = _signal_centre(img[..., 0], _side(model, first, window, img.shape))
    measure = _Measure(model, img, centre, options=options, variant=variant, window=window, first=first)
    candidates = _search(ladder, measure)
    box = measure.widest
    diameter = _consistent_diameter(candidates)
    return SizeEstimate(diameter, tuple(candidates), box, time.perf_counter() - t0)


class _Measure:
    """Segment the window around ``centre`` at an assumed diameter; remembers the widest window used."""

    def __init__(self, model, img, centre, *, options, variant, window, first):
        self.model, self.img, self.centre = model, img, centre
        self.options, self.variant, self.window, self.first = options, variant, window, first
        self.widest = (0, 0, 0, 0)

    def __call__(self, assumed: float) -> SizeCandidate:
        side = _side(self.model, assumed, self.window, self.img.shape, floor=self.first)
        crop, box = _crop(self.img, self.centre, side)
        if _area(box) > _area(self.widest):
            self.widest = box
        return _measure(self.model, crop, assumed, options=self.options, variant=self.variant)


def _area(box) -> int:
    return (box[1] - box[0]) * (box[3] - box[2])


def _search(ladder: Sequence[float], measure) -> list:
    """Candidates from the middle of the ladder towards the consistent step, sorted largest assumed first.

    Consistent (``ratio >= 1``) at the start: go up until a step is not; else go down until one is.
    """
    k = len(ladder) // 2
    first = measure(ladder[k])
    found = {k: first}
    step = 1 if first.ratio >= 1.0 else -1
    while 0 <= k + step < len(ladder):
        k += step
        found[k] = measure(ladder[k])
        if (found[k].ratio >= 1.0) != (step > 0):
            break
    return [found[i] for i in sorted(found, reverse=True)]


def _side(model, assumed: float, window: int, shape, *, floor: float = 0.0) -> Tuple[int, int]:
    """Window edge in image pixels for a step at ``assumed`` (both edges clipped to the image).

    ``window`` rescaled pixels at ``max(assumed, floor)``, so steps below ``floor`` keep its window in image
    pixels; but never more than ``MAX_UPSCALE * window`` rescaled pixels at ``assumed``, nor less than
    ``window``.
    """
    scale = float(model.diam_mean)
    side = math.ceil(window * max(assumed, floor) / scale)
    if assumed < floor:
        own = math.ceil(window * assumed / scale)
        side = min(side, max(own, math.floor(MAX_UPSCALE * window * assumed / scale)))
    return min(side, shape[0]), min(side, shape[1])


def _signal_centre(channel: np.ndarray, side: Tuple[int, int]) -> Tuple[int, int]:
    """Centre of the window to segment: the image centre, unless a window elsewhere has over twice its signal.

    Signal is the fraction of pixels above 0.25 (normalised), summed over windows on a grid of quarter steps.
    Preferring the centre avoids picking the windows of the largest (brightest, most covering) objects.
    """
    integral = np.pad((channel > 0.25).astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    (Ly, Lx), (sy, sx) = channel.shape, side

    def signal(y0, x0):
        return integral[y0 + sy, x0 + sx] - integral[y0, x0 + sx] - integral[y0 + sy, x0] + integral[y0, x0]

    ys = np.arange(0, Ly - sy + 1, max(1, sy // 4))[:, None]
    xs = np.arange(0, Lx - sx + 1, max(1, sx // 4))[None, :]
    sums = signal(ys, xs)
    iy, ix = np.unravel_index(int(np.argmax(sums)), sums.shape)
    if signal((Ly - sy) // 2, (Lx - sx) // 2) * 2.0 >= sums[iy, ix]:
        return Ly // 2, Lx // 2
    return int(ys[iy, 0] + sy // 2), int(xs[0, ix] + sx // 2)


def _crop(img: np.ndarray, centre, side):
    """The ``side`` window around ``centre``, shifted to lie inside the image; returns it and its box."""
    y0 = min(max(0, centre[0] - side[0] // 2), img.shape[0] - side[0])
    x0 = min(max(0, centre[1] - side[1] // 2), img.shape[1] - side[1])
    return img[y0:y0 + side[0], x0:x0 + side[1]], (y0, y0 + side[0], x0, x0 + side[1])


def _measure(model, crop: np.ndarray, assumed: float, *, options, variant) -> SizeCandidate:
    """Segment ``crop`` assuming objects of ``assumed`` pixels; median diameter (image pixels) of the masks."""
    scale = float(model.diam_mean) / assumed
    masks = model.masks_at_scale(crop, scale=scale, options=options, variant=variant)
    inner = remove_edge_masks(masks)      # objects cut by the window edge would pull the median down
    if int(inner.max(initial=0)) >= MIN_MASKS:
        masks = inner
    count = int(masks.max(initial=0))           # labels are consecutive (eval's masks, remove_edge_masks)
    return SizeCandidate(assumed, diameter_of(masks) / scale, count)


def _consistent_diameter(candidates: Sequence[SizeCandidate]) -> Optional[float]:
    """The diameter where measured = assumed, from candidates ordered from the largest assumed diameter down.

    Log-interpolated between the largest consistent step (``ratio >= 1``) and the step above it; the measure
    of the step closest to consistency when none is; ``None`` when no step found enough masks.
    """
    found = [c for c in candidates if c.count >= MIN_MASKS]
    if not found:
        return None
    consistent = [i for i, c in enumerate(candidates) if c.ratio >= 1.0]
    if not consistent:
        return max(found, key=lambda c: c.ratio).measured
    i = consistent[0]
    low = candidates[i]
    if i == 0 or candidates[i - 1].count < MIN_MASKS:
        return low.measured            # larger than the ladder, or nothing found just above: measure here
    upper = candidates[i - 1]
    t = math.log(low.ratio) / (math.log(low.ratio) - math.log(upper.ratio))
    return low.assumed * (upper.assumed / low.assumed) ** t


def whole_image_diameter(masks: np.ndarray, estimate: float, *,
                         tolerance: float = REFINE_TOLERANCE) -> Optional[float]:
    """Median diameter of the objects of an image segmented at ``estimate``, where it differs from it.

    The ladder measures one window; where nuclear size varies across the image, the window's median is not
    the image's. Near the right scale the network finds objects whole, so the masks of a pass at the window's
    estimate measure every object of the image.

    Parameters
    ----------
    masks : ndarray (Ly, Lx) integer
        Labels of the whole image segmented at ``estimate`` (consecutive, 0 = background).
    estimate : float
        The diameter the image was segmented at (pixels, > 0).
    tolerance : float
        Relative difference below which the estimate stands.

    Returns
    -------
    float or None
        The median equivalent-circle diameter of the masks not cut by the image edge (all masks when fewer
        than ``MIN_MASKS`` are whole), in pixels; ``None`` when it is within ``tolerance`` of ``estimate`` or
        there are fewer than ``MIN_MASKS`` masks.
    """
    inner = remove_edge_masks(masks)
    if int(inner.max(initial=0)) >= MIN_MASKS:
        masks = inner
    if int(masks.max(initial=0)) < MIN_MASKS:
        return None
    measured = diameter_of(masks)
    return measured if abs(measured / float(estimate) - 1.0) > tolerance else None
