"""Synthetic multiplexed (CyCIF-like) fluorescence images with ground-truth nuclear labels.

A :class:`Scene` is the whole virtual slide: its shape, seed and nucleus size range.  Any window of any channel
is rendered on its own (:meth:`Scene.render`, :meth:`Scene.labels`) and agrees bit for bit with every other
window covering the same pixels, because nuclei come from a global hashed grid (``cells``), all randomness is
hashed from absolute pixel coordinates (``noise``), and the optical blur reads a halo around the window.

Per channel the pipeline is: cell geometry → noise-free signal + tissue autofluorescence (DNA: with nucleoli,
chromocentres and debris, ``features``) → Gaussian blur (optics; DNA: mixed with a defocused copy by a smooth
focus map) → uneven illumination → Poisson shot noise, Gaussian read noise, camera offset → uint16.
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
from .features import MAX_SPOTS, debris, focus_mix, nucleus_spots
from .noise import camera, hash2, stream_key, unit
from .presets import DNA, NUCLEAR, channel_marker
from .render import blur, gaussian_taps, labels_from, raster, shade

__all__ = ["Scene", "make_image", "BLUR_RADIUS"]

log = logging.getLogger(__name__)

#: Half-width (pixels) of the in-focus optical blur kernel; ``Scene.halo`` widens it for defocus.
BLUR_RADIUS = 4
_DNA_SIGMA = 1.2
_FOCUS_SCALE = 400.0
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
    dna_level : float
        Mean DNA signal of a nucleus in counts (camera offset 180, read noise 6 counts, 2 counts per photon):
        5000 is a bright CyCIF stain; a few hundred gives a dim, noisy widefield image.
    defocus : float
        Extra blur sigma (pixels) of the out-of-focus parts of the field (0 = everything in focus).
    culture : float
        0 (default): tissue layout (dense epithelial sheets, sparse stroma, lymphoid aggregates, empty slide);
        in (0, 1]: a cultured monolayer whose grid-cell occupancy varies smoothly around this value.
    """

    shape: Tuple[int, int, int]
    seed: int = 0
    diameter: Tuple[float, float] = (10.0, 25.0)
    dna_level: float = 5000.0
    defocus: float = 2.0
    culture: float = 0.0

    def __post_init__(self):
        shape = tuple(int(s) for s in self.shape)
        lo, hi = (float(d) for d in self.diameter)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"shape must be (C, Y, X) with positive sizes, got {self.shape!r}")
        if not 3.0 <= lo <= hi <= 200.0:
            raise ValueError(f"diameter must satisfy 3 <= lo <= hi <= 200, got {self.diameter!r}")
        if int(self.seed) < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")
        if not 1.0 <= float(self.dna_level) <= 60000.0:
            raise ValueError(f"dna_level must be in [1, 60000] counts, got {self.dna_level!r}")
        if not 0.0 <= float(self.defocus) <= 8.0:
            raise ValueError(f"defocus must be in [0, 8] pixels, got {self.defocus!r}")
        object.__setattr__(self, "dna_level", float(self.dna_level))
        if not 0.0 <= float(self.culture) <= 1.0:
            raise ValueError(f"culture must be in [0, 1], got {self.culture!r}")
        object.__setattr__(self, "defocus", float(self.defocus))
        object.__setattr__(self, "culture", float(self.culture))
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "diameter", (lo, hi))
        object.__setattr__(self, "seed", int(self.seed))

    @property
    def grid(self):
        """Side (pixels) of the grid cells that hold 0–2 nuclei each."""
        return self.diameter[1]

    @property
    def halo(self):
        """Pixels rendered around every window so that the widest blur kernel sees its whole support."""
        return max(BLUR_RADIUS, math.ceil(3.0 * self._defocus_sigma()))

    def _defocus_sigma(self):
        return math.hypot(_DNA_SIGMA, self.defocus)

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
        return nuclei_in_cells(self._cell_keys(), gy0, gy1, gx0, gx1, nx, g, lo, hi, self.tissue_scale,
                               self.culture)

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
            r = self.halo
            P, types, ids = self.nuclei(y0 - r, y1 + r, x0 - r, x1 + r)
            geom = raster(P, y0 - r, x0 - r, y1 - y0 + 2 * r, x1 - x0 + 2 * r)
            sharp = self._shade(channel, geom, P, types, ids, y0 - r, x0 - r)
            expected = self._optics(channel, sharp, y0, x0)
            out = camera(expected, y0, x0, stream_key(self.seed, 3, channel), stream_key(self.seed, 4),
                         _FOV[0], _FOV[1], 3.0 * self.tissue_scale, _OFFSET, _GAIN, _READ_SIGMA)
            s.add(pixels=out.size, cells=len(ids))
        return out

    def _sigma(self, channel):
        """Optical blur sigma (pixels) of a channel: 1.2 for DNA, 0.9–1.4 for markers."""
        marker, _ = channel_marker(channel)
        if marker is None:
            return _DNA_SIGMA
        return 0.9 + 0.5 * float(unit(stream_key(self.seed, 5, channel)))

    def _optics(self, channel, sharp, y0, x0):
        """Blur a window rendered with ``halo`` extra pixels per side; DNA mixes in its defocused copy."""
        in_focus = _blur_halo(sharp, self._sigma(channel), self.halo)
        marker, _ = channel_marker(channel)
        if marker is not None or self.defocus == 0.0:
            return in_focus
        blurred = _blur_halo(sharp, self._defocus_sigma(), self.halo)
        return focus_mix(in_focus, blurred, y0, x0, stream_key(self.seed, 12), _FOCUS_SCALE)

    def _shade(self, channel, geom, P, types, ids, y0, x0):
        """Noise-free unblurred window of one channel (float32), including stray light."""
        marker, cycle = channel_marker(channel)
        kind = DNA if marker is None else marker.kind
        spots = np.zeros((0, MAX_SPOTS, 4), np.float64)
        if marker is None:
            level = P[:, COL_BRIGHT] * (self.dna_level * 0.96 ** (cycle - 1))
            af, tex_scale = 0.03 * self.dna_level, 1.6
            spots = nucleus_spots(P, ids, stream_key(self.seed, 10))
        else:
            probs = np.asarray(marker.probs, np.float64)
            level = _marker_levels(ids, types, P[:, COL_DIVIDING], probs, marker.level,
                                   stream_key(self.seed, 6, channel), marker.name == "Ki67")
            af = 100.0 + 250.0 * float(unit(stream_key(self.seed, 7, channel)))
            tex_scale = 1.3 if kind == NUCLEAR else 2.5
        keys = np.array([stream_key(self.seed, 8, channel), stream_key(self.seed, 1, 1),
                         stream_key(self.seed, 9, channel)], np.uint64)
        out = shade(kind, geom, np.ascontiguousarray(level), np.ascontiguousarray(P[:, COL_TEX]),
                    np.ascontiguousarray(P[:, COL_THICK]), spots, y0, x0, keys, tex_scale, self.tissue_scale, af)
        if marker is None:
            lo, hi = self.diameter
            debris(out, y0, x0, stream_key(self.seed, 11), 3.0 * hi, 0.15 * lo + 0.5, self.dna_level, 0.12)
        out += np.float32(_STRAY)
        return out


def _blur_halo(sharp, sigma, halo):
    """Gaussian blur of a window with ``halo`` extra pixels per side → the window without its halo."""
    r = min(halo, max(1, math.ceil(3.0 * sigma)))
    cut = halo - r
    core = sharp[cut:sharp.shape[0] - cut, cut:sharp.shape[1] - cut] if cut else sharp
    return blur(np.ascontiguousarray(core), gaussian_taps(sigma, r))


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


def make_image(shape=(4, 512, 512), *, seed, diameter=(10, 25), dna_level=5000.0, defocus=2.0, culture=0.0):
    """Render a small synthetic CyCIF image in memory.

    Parameters
    ----------
    shape : (int, int, int)
        (C, Y, X); channel 0, 4, 8, … are DNA, the others markers (see ``presets.channel_names``).
    seed : int
        Non-negative seed; identical seeds give identical arrays.
    diameter : (float, float)
        Range of nucleus diameters in pixels.
    dna_level, defocus, culture : float
        DNA stain brightness (counts), extra blur of out-of-focus regions, monolayer occupancy (see ``Scene``).

    Returns
    -------
    image : ndarray (C, Y, X) uint16
    labels : ndarray (Y, X) uint32
        Ground-truth nuclei (0 = background; labels unique, not consecutive).
    """
    scene = Scene(shape=tuple(shape), seed=seed, diameter=tuple(diameter), dna_level=dna_level, defocus=defocus,
                  culture=culture)
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
