"""Pixel kernels: nucleus/cell geometry of a window, per-channel shading and separable Gaussian blur.

Geometry.  For nucleus ``i`` and pixel ``p`` let ``R_i(θ)`` be the nucleus radius in the direction of
``p`` (an ellipse times ``1 + Σ_k h_k·trig(kθ)``, k = 2…4) and ``t_i = |p − c_i| − R_i(θ)`` the signed
distance outside its outline.  Pixel ``p`` belongs to the cell with the smallest ``t_i`` among those with
``t_i < thick_i`` (cytoplasm thickness); it is nuclear, and labelled, when that ``t`` is negative.  Touching
nuclei therefore meet on the bisector of their overlap, and cells fill the space up to ``thick`` around their
nucleus or to the neighbouring cell.  Nuclear signal dips along that bisector (``SEAM_DIP``), as the two
nuclear envelopes of touching nuclei do in a real DNA stain.  Nuclei are visited in increasing label order
with a strict ``<``, so the result of a pixel depends only on the set of nuclei that reach it: any window
renders identically.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .cells import COL_A, COL_B, COL_COS, COL_CX, COL_CY, COL_H, COL_REACH, COL_SIN, COL_THICK
from .features import span, spot_factor
from .noise import tissue_density, value_noise
from .presets import CYTOPLASM, DNA, MEMBRANE

__all__ = ["raster", "labels_from", "shade", "blur", "gaussian_taps"]

# DNA dip along the boundary shared with a touching neighbour (the two nuclear envelopes): the signal drops by
# SEAM_DIP on the line where the two cells meet and recovers linearly over SEAM_WIDTH pixels on each side.
SEAM_DIP = 0.5
SEAM_WIDTH = 1.0


@numba.njit(cache=True)
def _edge_distance(P, i, dx, dy):
    """Signed distance ``t`` outside nucleus ``i``'s outline and the normalised radius ``|p−c| / R(θ)``."""
    ca = P[i, COL_COS]
    sa = P[i, COL_SIN]
    u = dx * ca + dy * sa
    v = dy * ca - dx * sa
    rho = math.sqrt(dx * dx + dy * dy)
    c, s = (u / rho, v / rho) if rho > 0.0 else (1.0, 0.0)
    c2 = c * c - s * s
    s2 = 2.0 * c * s
    c3 = c * c2 - s * s2
    s3 = s * c2 + c * s2
    c4 = c2 * c2 - s2 * s2
    s4 = 2.0 * c2 * s2
    f = 1.0 + (P[i, COL_H] * c2 + P[i, COL_H + 1] * s2 + P[i, COL_H + 2] * c3 + P[i, COL_H + 3] * s3
               + P[i, COL_H + 4] * c4 + P[i, COL_H + 5] * s4)
    ea = c / P[i, COL_A]
    eb = s / P[i, COL_B]
    radius = f / math.sqrt(ea * ea + eb * eb)
    return rho - radius, rho / radius


@numba.njit(cache=True)
def _visit(P, i, y0, x0, idx, t1, t2, s1):
    """Offer nucleus ``i`` to every pixel of the window within its reach."""
    h, w = idx.shape
    cy = P[i, COL_CY]
    cx = P[i, COL_CX]
    r = P[i, COL_REACH]
    thick = P[i, COL_THICK]
    ya, yb = span(cy, r, y0, h)
    xa, xb = span(cx, r, x0, w)
    for yy in range(ya, yb):
        dy = (y0 + yy) - cy
        for xx in range(xa, xb):
            dx = (x0 + xx) - cx
            if dx * dx + dy * dy > r * r:
                continue
            t, s = _edge_distance(P, i, dx, dy)
            if t >= thick:
                continue
            if t < t1[yy, xx]:
                t2[yy, xx] = t1[yy, xx]
                t1[yy, xx] = t
                idx[yy, xx] = i
                s1[yy, xx] = s
            elif t < t2[yy, xx]:
                t2[yy, xx] = t


@numba.njit(cache=True)
def raster(P, y0, x0, h, w):
    """Cell geometry of the window [y0, y0+h) × [x0, x0+w).

    Parameters
    ----------
    P : ndarray (N, N_COLS) float64
        Nucleus table in increasing label order.
    y0, x0, h, w : int
        Window origin (absolute pixels, may be negative) and size.

    Returns
    -------
    idx : ndarray (h, w) int32
        Row of ``P`` owning the pixel, -1 outside every cell.
    t1 : ndarray (h, w) float32
        Signed distance (px) outside the owner's nucleus (negative inside; +inf without owner).
    t2 : ndarray (h, w) float32
        The same for the runner-up cell (+inf if none).
    s1 : ndarray (h, w) float32
        Owner's normalised radius ``|p − c| / R(θ)`` (< 1 inside the nucleus).
    """
    idx = np.full((h, w), -1, np.int32)
    t1 = np.full((h, w), np.inf, np.float32)
    t2 = np.full((h, w), np.inf, np.float32)
    s1 = np.zeros((h, w), np.float32)
    for i in range(P.shape[0]):
        _visit(P, i, y0, x0, idx, t1, t2, s1)
    return idx, t1, t2, s1


@numba.njit(cache=True)
def labels_from(idx, t1, ids):
    """Label image: ``ids[idx]`` on nuclear pixels (``t1 < 0``), 0 elsewhere → (h, w) uint32."""
    h, w = idx.shape
    out = np.zeros((h, w), np.uint32)
    for yy in range(h):
        for xx in range(w):
            if idx[yy, xx] >= 0 and t1[yy, xx] < 0.0:
                out[yy, xx] = np.uint32(ids[idx[yy, xx]])
    return out


@numba.njit(cache=True)
def _texture(key, y, x, scale):
    """Two-octave value noise in [0, 1) at (y, x), finest lattice spacing ``scale``."""
    return 0.6 * value_noise(key, y, x, scale) + 0.4 * value_noise(key + np.uint64(1), y, x, 2.5 * scale)


@numba.njit(cache=True)
def _signal(kind, i, t1, t2, s1, level, tex_amp, thick, tex):
    """Noise-free marker signal of one pixel owned by cell ``i`` (before autofluorescence)."""
    if kind == MEMBRANE:
        e = min(thick[i] - t1, 0.5 * (t2 - t1))
        m = 1.0 / (1.0 + e * e)
        return level[i] * m * m * (0.6 + 0.8 * tex)
    if kind == CYTOPLASM:
        inner = min(1.0, max(0.0, t1 + 0.5)) * 0.85 + 0.15
        outer = min(1.0, max(0.0, (thick[i] - t1) / 1.5))
        return level[i] * inner * outer * (0.6 + 0.8 * tex)
    cover = min(1.0, max(0.0, 0.5 - t1))
    if cover <= 0.0:
        return 0.0
    profile = 1.0 - 0.2 * s1 * s1
    seam = 0.5 * (t2 - t1)
    envelope = 1.0 - SEAM_DIP * max(0.0, 1.0 - seam / SEAM_WIDTH)
    return level[i] * cover * profile * envelope * (1.0 + tex_amp[i] * (2.0 * tex - 1.0))


@numba.njit(cache=True)
def shade(kind, geom, level, tex_amp, thick, spots, y0, x0, keys, tex_scale, tscale, af):
    """Noise-free, unblurred intensity of one channel over the window → (h, w) float32.

    Parameters
    ----------
    kind : int
        DNA, MEMBRANE, CYTOPLASM or NUCLEAR (``presets``).
    geom : tuple
        ``(idx, t1, t2, s1)`` from :func:`raster`.
    level, tex_amp, thick : ndarray (N,) float64
        Per-nucleus signal level (0 = not expressed), texture strength, cytoplasm thickness.
    spots : ndarray (N, MAX_SPOTS, 4) float64
        Nucleoli and chromocentres (``features.nucleus_spots``), applied to the DNA channel only.
    y0, x0 : int
        Window origin.
    keys : ndarray (3,) uint64
        Texture, tissue and autofluorescence-texture keys.
    tex_scale, tscale, af : float
        Texture lattice spacing, tissue length scale, tissue autofluorescence (counts).
    """
    idx, t1, t2, s1 = geom
    h, w = idx.shape
    out = np.empty((h, w), np.float32)
    for yy in range(h):
        y = np.float64(y0 + yy)
        for xx in range(w):
            x = np.float64(x0 + xx)
            v = af * tissue_density(keys[1], y, x, tscale) * (0.8 + 0.4 * value_noise(keys[2], y, x, 7.0))
            i = idx[yy, xx]
            if i >= 0 and (kind == DNA or level[i] > 0.0):
                tex = _texture(keys[0], y, x, tex_scale)
                sig = _signal(kind, i, np.float64(t1[yy, xx]), np.float64(t2[yy, xx]),
                              np.float64(s1[yy, xx]), level, tex_amp, thick, tex)
                v += sig * spot_factor(spots, i, y, x) if kind == DNA and sig > 0.0 else sig
            out[yy, xx] = v
    return out


def gaussian_taps(sigma, radius):
    """Normalised 1-D Gaussian taps → ndarray (2·radius+1,) float32."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


@numba.njit(cache=True)
def blur(img, taps):
    """Separable 'valid' convolution: (h, w) float32 → (h − 2r, w − 2r) float32, r = len(taps) // 2."""
    r = len(taps) // 2
    h, w = img.shape
    tmp = np.zeros((h - 2 * r, w), np.float32)
    for yy in range(h - 2 * r):
        for k in range(2 * r + 1):
            wk = taps[k]
            for xx in range(w):
                tmp[yy, xx] += wk * img[yy + k, xx]
    out = np.zeros((h - 2 * r, w - 2 * r), np.float32)
    for yy in range(h - 2 * r):
        for xx in range(w - 2 * r):
            acc = np.float32(0.0)
            for k in range(2 * r + 1):
                acc += taps[k] * tmp[yy, xx + k]
            out[yy, xx] = acc
    return out
