"""Synthetic multiplexed (CyCIF-like) fluorescence images with ground-truth nuclear labels.

A :class:`Scene` is the whole virtual slide: its shape, seed and nucleus size range.  Any window of any channel
is rendered on its own (:meth:`Scene.render`, :meth:`Scene.labels`) and agrees bit for bit with every other
window covering the same pixels, because nuclei come from a global hashed grid (``cells``), all randomness is
hashed from absolute pixel coordinates (``noise``), and the optical blur reads a halo around the window.

Per channel the pipeline is: cell geometry → noise-free signal + tissue autofluorescence → Gaussian blur
(optics) → uneven illumination → Poisson shot noise, Gaussian read noise, camera offset → uint16.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Tuple

import numba
import numpy as np

from ..profiling import stage
from .cells import COL_BRIGHT, COL_DIVIDING, COL_TEX, COL_THICK, nuclei_in_cells, reach
from .noise import camera, hash2, stream_key, unit
from .presets import DNA, NUCLEAR, channel_marker
from .render import blur, gaussian_taps, labels_from, raster, shade

__all__ = ["Scene", "make_image", "BLUR_RADIUS"]

log = logging.getLogger(__name__)

#: Half-width (pixels) of the optical blur kernel, hence of the halo rendered around every window.
BLUR_RADIUS = 4
_DNA_LEVEL = 5000.0
_FOV = (1080.0, 1280.0)
_OFFSET, _GAIN, _READ_SIGMA = 180.0, 2.0, 6.0
_STRAY = 20.0
_BAND = 512


@dataclass(frozen=True)
class Scene:
    """A virtual slide; all rendering is a pure function of these fields.

    Attributes
    ----------
    shape : (int, int, int)
        Whole-image shape (C, Y, X).  Windows outside it render fine (as a continuation of the scene).
    seed : int
        Non-negative seed; the same seed gives the same pixels.
    diameter : (float, float)
        Range of nucleus diameters (equal-area, pixels) before dividing-cell shrinkage.
    """

    shape: Tuple[int, int, int]
    seed: int = 0
    diameter: Tuple[float, float] = (10.0, 25.0)

    def __post_init__(self):
        shape = tuple(int(s) for s in self.shape)
        lo, hi = (float(d) for d in self.diameter)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"shape must be (C, Y, X) with positive sizes, got {self.shape!r}")
        if not 3.0 <= lo <= hi <= 200.0:
            raise ValueError(f"diameter must satisfy 3 <= lo <= hi <= 200, got {self.diameter!r}")
        if int(self.seed) < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "diameter", (lo, hi))
        object.__setattr__(self, "seed", int(self.seed))

    @property
    def grid(self):
        """Side (pixels) of the grid cells that hold 0–2 nuclei each."""
        return self.diameter[1]

    @property
    def tissue_scale(self):
        """Length scale (pixels) of tissue regions and the gaps between them."""
        return float(min(1024.0, max(128.0, min(self.shape[1:]) / 4.0)))

    def _cell_keys(self):
        """Stream keys of the nucleus grid: nuclei, tissue, compartment, crowding → (4,) uint64."""
        return np.array([stream_key(self.seed, 1, k) for k in range(4)], np.uint64)

    def nuclei(self, y0, y1, x0, x1):
        """Every nucleus that reaches the window [y0, y1) × [x0, x1).

        Returns
        -------
        P : ndarray (N, N_COLS) float64
        types : ndarray (N,) int8
        ids : ndarray (N,) int64
            In increasing label order.
        """
        g = self.grid
        r = reach(self.diameter[1])
        ny, nx = math.ceil(self.shape[1] / g), math.ceil(self.shape[2] / g)
        gy0 = max(0, math.floor((y0 - r) / g))
        gy1 = min(ny, math.floor((y1 + r) / g) + 1)
        gx0 = max(0, math.floor((x0 - r) / g))
        gx1 = min(nx, math.floor((x1 + r) / g) + 1)
        lo, hi = self.diameter
        return nuclei_in_cells(self._cell_keys(), gy0, gy1, gx0, gx1, nx, g, lo, hi, self.tissue_scale)

    def labels(self, y0, y1, x0, x1):
        """Ground-truth nuclear labels of a window → (y1-y0, x1-x0) uint32 (0 = background).

        Labels are global (the same nucleus has the same label in every window), unique, not consecutive.
        """
        y0, y1, x0, x1 = _window(y0, y1, x0, x1)
        with stage("data.labels") as s:
            P, _, ids = self.nuclei(y0, y1, x0, x1)
            idx, t1, _, _ = raster(P, y0, x0, y1 - y0, x1 - x0)
            out = labels_from(idx, t1, ids)
            s.add(pixels=out.size, cells=len(ids))
        return out

    def render(self, channel, y0, y1, x0, x1):
        """Render channel ``channel`` over the window [y0, y1) × [x0, x1) → (y1-y0, x1-x0) uint16."""
        if not 0 <= channel < self.shape[0]:
            raise ValueError(f"channel {channel} outside 0..{self.shape[0] - 1}")
        y0, y1, x0, x1 = _window(y0, y1, x0, x1)
        with stage("data.render") as s:
            r = BLUR_RADIUS
            P, types, ids = self.nuclei(y0 - r, y1 + r, x0 - r, x1 + r)
            geom = raster(P, y0 - r, x0 - r, y1 - y0 + 2 * r, x1 - x0 + 2 * r)
            sharp = self._shade(channel, geom, P, types, ids, y0 - r, x0 - r)
            expected = blur(sharp, gaussian_taps(self._sigma(channel), r))
            out = camera(expected, y0, x0, stream_key(self.seed, 3, channel), stream_key(self.seed, 4),
                         _FOV[0], _FOV[1], 3.0 * self.tissue_scale, _OFFSET, _GAIN, _READ_SIGMA)
            s.add(pixels=out.size, cells=len(ids))
        return out

    def _sigma(self, channel):
        """Optical blur sigma (pixels) of a channel: 1.2 for DNA, 0.9–1.4 for markers."""
        marker, _ = channel_marker(channel)
        if marker is None:
            return 1.2
        return 0.9 + 0.5 * float(unit(stream_key(self.seed, 5, channel)))

    def _shade(self, channel, geom, P, types, ids, y0, x0):
        """Noise-free unblurred window of one channel (float32), including stray light."""
        marker, cycle = channel_marker(channel)
        kind = DNA if marker is None else marker.kind
        if marker is None:
            level = P[:, COL_BRIGHT] * (_DNA_LEVEL * 0.96 ** (cycle - 1))
            af, tex_scale = 150.0, 1.6
        else:
            probs = np.asarray(marker.probs, np.float64)
            level = _marker_levels(ids, types, P[:, COL_DIVIDING], probs, marker.level,
                                   stream_key(self.seed, 6, channel), marker.name == "Ki67")
            af = 100.0 + 250.0 * float(unit(stream_key(self.seed, 7, channel)))
            tex_scale = 1.3 if kind == NUCLEAR else 2.5
        keys = np.array([stream_key(self.seed, 8, channel), stream_key(self.seed, 1, 1),
                         stream_key(self.seed, 9, channel)], np.uint64)
        out = shade(kind, geom, np.ascontiguousarray(level), np.ascontiguousarray(P[:, COL_TEX]),
                    np.ascontiguousarray(P[:, COL_THICK]), y0, x0, keys, tex_scale, self.tissue_scale, af)
        out += np.float32(_STRAY)
        return out


def _window(y0, y1, x0, x1):
    """Validate a non-empty window [y0, y1) × [x0, x1); return its bounds as Python ints."""
    y0, y1, x0, x1 = (int(v) for v in (y0, y1, x0, x1))
    if y1 <= y0 or x1 <= x0:
        raise ValueError(f"empty window rows [{y0}, {y1}) x columns [{x0}, {x1})")
    return y0, y1, x0, x1


@numba.njit(cache=True)
def _marker_levels(ids, types, dividing, probs, level, key, with_dividing):
    """Per-nucleus marker level: ``level × [0.35, 1.65)`` if the cell expresses it, else 0 → (N,) float64."""
    out = np.zeros(ids.shape[0], np.float64)
    for n in range(ids.shape[0]):
        expressed = unit(hash2(key, ids[n], 0)) < probs[types[n]]
        if expressed or (with_dividing and dividing[n] > 0.0):
            out[n] = level * (0.35 + 1.3 * unit(hash2(key, ids[n], 1)))
    return out


def make_image(shape=(4, 512, 512), *, seed, diameter=(10, 25)):
    """Render a small synthetic CyCIF image in memory.

    Parameters
    ----------
    shape : (int, int, int)
        (C, Y, X); channel 0, 4, 8, … are DNA, the others markers (see ``presets.channel_names``).
    seed : int
        Non-negative seed; identical seeds give identical arrays.
    diameter : (float, float)
        Range of nucleus diameters in pixels.

    Returns
    -------
    image : ndarray (C, Y, X) uint16
    labels : ndarray (Y, X) uint32
        Ground-truth nuclei (0 = background; labels unique, not consecutive).
    """
    scene = Scene(shape=tuple(shape), seed=seed, diameter=tuple(diameter))
    C, Y, X = scene.shape
    image = np.empty((C, Y, X), np.uint16)
    labels = np.empty((Y, X), np.uint32)
    for y0 in range(0, Y, _BAND):
        y1 = min(Y, y0 + _BAND)
        labels[y0:y1] = scene.labels(y0, y1, 0, X)
        for c in range(C):
            image[c, y0:y1] = scene.render(c, y0, y1, 0, X)
    log.debug("made image %s seed %d with %d labelled pixels", scene.shape, seed, int((labels > 0).sum()))
    return image, labels
