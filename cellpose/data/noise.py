"""Counter-based random numbers and smooth fields, evaluated at absolute pixel coordinates.

Every value here is a pure function of a 64-bit stream key and integer or float coordinates, so any
window of the synthetic image can be rendered on its own and agrees bit for bit with every other
window that covers the same pixels.  Only integer mixing and IEEE ``+ - * / sqrt`` are used inside
pixel loops (no ``exp``/``sin`` that a vectorising compiler might replace by an approximation),
except for the Poisson inversion, which runs per pixel in scalar code.

All kernels are numba ``njit`` functions without input checks; callers validate.
"""
from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "stream_key", "mix", "hash2", "hash3", "unit", "gauss", "value_noise", "tissue_density",
    "illumination", "camera",
]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_P1 = np.uint64(0x9E3779B97F4A7C15)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_S16 = np.uint64(16)
_LOW16 = np.uint64(0xFFFF)
_INV53 = 1.0 / 9007199254740992.0
_INV16 = 1.0 / 65536.0
_SQRT3 = math.sqrt(3.0)
_MASK64 = (1 << 64) - 1


def stream_key(seed, *salts):
    """Derive a 64-bit stream key from a seed and integer salts (pure Python, exact).

    Parameters
    ----------
    seed : int
        Non-negative user seed.
    *salts : int
        Stream identifiers (channel index, purpose code, ...).

    Returns
    -------
    key : numpy.uint64
    """
    z = (int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _MASK64
    for salt in salts:
        z = _mix_py(z ^ ((int(salt) * 0xC2B2AE3D27D4EB4F) & _MASK64))
    return np.uint64(_mix_py(z))


def _mix_py(z):
    """Python-int twin of :func:`mix` (splitmix64 finaliser)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


@numba.njit(cache=True)
def mix(z):
    """Splitmix64 finaliser of a uint64 (bijective, well mixed)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(cache=True)
def hash2(key, a, b):
    """Hash of a key and two signed integers → uint64."""
    z = mix(key ^ (np.uint64(a) * _P1))
    return mix(z ^ (np.uint64(b) * _P2))


@numba.njit(cache=True)
def hash3(key, a, b, c):
    """Hash of a key and three signed integers → uint64."""
    return mix(hash2(key, a, b) ^ (np.uint64(c) * _P3))


@numba.njit(cache=True)
def unit(h):
    """Uniform float64 in [0, 1) from the top 53 bits of a uint64 hash."""
    return np.float64(h >> _S11) * _INV53


@numba.njit(cache=True)
def gauss(h):
    """Approximately standard normal float64 from one hash (Irwin–Hall sum of four 16-bit uniforms)."""
    s = 0.0
    for _ in range(4):
        s += (np.float64(h & _LOW16) + 0.5) * _INV16
        h = h >> _S16
    return (s - 2.0) * _SQRT3


@numba.njit(cache=True)
def value_noise(key, y, x, scale):
    """Smooth value noise in [0, 1) at (y, x) with lattice spacing ``scale`` pixels.

    Parameters
    ----------
    key : uint64
        Stream key.
    y, x : float64
        Absolute coordinates.
    scale : float64
        Lattice spacing in pixels (> 0).
    """
    py = y / scale
    px = x / scale
    fy0 = math.floor(py)
    fx0 = math.floor(px)
    fy = py - fy0
    fx = px - fx0
    iy = np.int64(fy0)
    ix = np.int64(fx0)
    sy = fy * fy * (3.0 - 2.0 * fy)
    sx = fx * fx * (3.0 - 2.0 * fx)
    v00 = unit(hash2(key, iy, ix))
    v01 = unit(hash2(key, iy, ix + 1))
    v10 = unit(hash2(key, iy + 1, ix))
    v11 = unit(hash2(key, iy + 1, ix + 1))
    top = v00 + (v01 - v00) * sx
    bottom = v10 + (v11 - v10) * sx
    return top + (bottom - top) * sy


@numba.njit(cache=True)
def tissue_density(key, y, x, scale):
    """Tissue occupancy in [0, 1] (0 = empty slide, 1 = dense tissue) at absolute (y, x).

    Three octaves of value noise, thresholded with a smooth step; typically 55–80 % of the area is tissue.
    """
    n = 0.55 * value_noise(key, y, x, scale)
    n += 0.30 * value_noise(key + np.uint64(1), y, x, scale * 0.43)
    n += 0.15 * value_noise(key + np.uint64(2), y, x, scale * 0.19)
    d = (n - 0.45) * 12.5
    if d <= 0.0:
        return 0.0
    if d >= 1.0:
        return 1.0
    return d * d * (3.0 - 2.0 * d)


@numba.njit(cache=True)
def illumination(key, y, x, fov_y, fov_x, scale):
    """Multiplicative illumination at (y, x): per-field-of-view vignetting and gain, plus a slow drift.

    Mimics a stitched mosaic without flat-field correction: each ``fov_y × fov_x`` field has a
    quadratic fall-off to about 0.75 in its corners and its own gain in [0.92, 1.08].
    """
    ty = math.floor(y / fov_y)
    tx = math.floor(x / fov_x)
    dv = (y - ty * fov_y) / fov_y - 0.5
    du = (x - tx * fov_x) / fov_x - 0.5
    vignette = 1.0 - 0.5 * (du * du + dv * dv)
    gain = 0.92 + 0.16 * unit(hash2(key, np.int64(ty), np.int64(tx)))
    drift = 0.85 + 0.3 * value_noise(key + np.uint64(7), y, x, scale)
    return vignette * gain * drift


@numba.njit(cache=True)
def _poisson(lam, h):
    """Poisson(lam) sample from one hash: exact inversion below 30, normal approximation above."""
    if lam <= 0.0:
        return 0.0
    if lam >= 30.0:
        k = lam + math.sqrt(lam) * gauss(h)
        return max(0.0, math.floor(k + 0.5))
    u = unit(h)
    p = math.exp(-lam)
    cdf = p
    k = 0
    while u > cdf and k < 200:
        k += 1
        p *= lam / k
        cdf += p
    return np.float64(k)


@numba.njit(cache=True)
def camera(expected, y0, x0, key, illum_key, fov_y, fov_x, drift_scale, offset, gain, read_sigma):
    """Illuminate, add shot and read noise and quantise a window to uint16.

    Parameters
    ----------
    expected : ndarray (H, W) float32
        Noise-free signal (counts) of the window whose top-left pixel is (y0, x0).
    key, illum_key : uint64
        Noise and illumination stream keys.
    fov_y, fov_x, drift_scale : float64
        Field-of-view size and drift length scale in pixels.
    offset, gain, read_sigma : float64
        Camera offset (counts), counts per photon, Gaussian read noise (counts).

    Returns
    -------
    out : ndarray (H, W) uint16
    """
    h, w = expected.shape
    out = np.empty((h, w), np.uint16)
    for yy in range(h):
        y = y0 + yy
        for xx in range(w):
            x = x0 + xx
            e = expected[yy, xx] * illumination(illum_key, np.float64(y), np.float64(x), fov_y, fov_x,
                                                 drift_scale)
            photons = _poisson(e / gain, hash3(key, y, x, 0))
            v = offset + gain * photons + read_sigma * gauss(hash3(key, y, x, 1))
            v = math.floor(v + 0.5)
            out[yy, xx] = np.uint16(min(65535.0, max(0.0, v)))
    return out
