"""Nucleus parameters on a global jittered grid, hashed per grid cell.

The image plane is cut into square grid cells of side ``g`` (the largest nucleus diameter).  Each grid cell
holds zero, one or two nuclei whose every parameter is drawn from ``hash(seed, cell row, cell column, draw)``,
so the nuclei near any window can be listed without looking at the rest of the image.  A nucleus never
reaches further than :func:`reach` pixels from its grid cell's centre.

Row layout of the parameter table ``P`` (float64, one row per nucleus) is given by the ``COL_*`` constants.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .noise import hash3, tissue_density, unit, value_noise

__all__ = [
    "COL_CY", "COL_CX", "COL_A", "COL_B", "COL_COS", "COL_SIN", "COL_H", "COL_THICK", "COL_REACH",
    "COL_BRIGHT", "COL_TEX", "COL_DIVIDING", "COL_CONDENSED", "N_COLS", "reach", "nuclei_in_cells",
]

COL_CY, COL_CX, COL_A, COL_B, COL_COS, COL_SIN = 0, 1, 2, 3, 4, 5
COL_H = 6  # six harmonic coefficients: cos 2θ, sin 2θ, cos 3θ, sin 3θ, cos 4θ, sin 4θ
COL_THICK, COL_REACH, COL_BRIGHT, COL_TEX, COL_DIVIDING, COL_CONDENSED = 12, 13, 14, 15, 16, 17
N_COLS = 18

# per cell type: epithelial, stromal, T, B, macrophage, endothelial
_SIZE_LO = (0.5, 0.25, 0.0, 0.05, 0.3, 0.2)
_SIZE_SPAN = (0.5, 0.5, 0.3, 0.3, 0.4, 0.4)
_Q_LO = (0.7, 0.4, 0.8, 0.8, 0.6, 0.4)
_Q_SPAN = (0.3, 0.2, 0.2, 0.2, 0.3, 0.2)
_AMP = (0.06, 0.04, 0.03, 0.03, 0.10, 0.04)
_THICK_LO = (4.0, 2.0, 1.5, 1.5, 4.0, 2.0)
_THICK_SPAN = (4.0, 2.0, 1.5, 1.5, 3.0, 1.0)
_BRIGHT = (1.0, 0.9, 1.4, 1.5, 0.8, 1.0)
_TEX = (0.35, 0.3, 0.5, 0.5, 0.3, 0.3)
_LOBED_P = (0.06, 0.02, 0.02, 0.02, 0.35, 0.02)  # lobed / kidney-shaped outline (harmonics x 3.5)
_SPINDLE_P = (0.03, 0.45, 0.0, 0.0, 0.05, 0.5)  # very elongated (spindle) nuclei
_CONDENSED_P = 0.02  # apoptotic / pyknotic: small, round, bright, smooth
_MAX_HARMONICS = 0.45  # cap on the summed harmonic amplitudes, so the outline radius stays positive
# type mixtures of the three tissue compartments
_MIX_EPI = (0.86, 0.04, 0.06, 0.0, 0.04, 0.0)
_MIX_STROMA = (0.05, 0.42, 0.22, 0.08, 0.13, 0.10)
_MIX_AGGREGATE = (0.0, 0.05, 0.55, 0.32, 0.08, 0.0)
# a cultured monolayer (cell lines on a coverslip): mostly epithelial-like, some spindle-shaped
_MIX_CULTURE = (0.75, 0.2, 0.0, 0.0, 0.05, 0.0)

# draw indices (disjoint blocks of the per-cell random stream)
_J_OCCUPY, _J_TYPE, _J_DIVIDE, _J_PAIR, _J_JY, _J_JX = 0, 1, 2, 3, 4, 5
_J_DIR_PAIR, _J_NUC0, _J_NUC1 = 100, 200, 300
_J_ROT = 40  # offset of the orientation draws inside a nucleus block
_DIVIDE_P = 0.012


def reach(diameter_hi):
    """Upper bound (pixels) on how far any pixel of a nucleus or its cell lies from its grid cell's centre."""
    return 2.5 * float(diameter_hi) + 4.0


@numba.njit(cache=True)
def _rand(key, iy, ix, j):
    """Uniform [0, 1) draw number ``j`` of grid cell (iy, ix)."""
    return unit(hash3(key, iy, ix, j))


@numba.njit(cache=True)
def _direction(key, iy, ix, j):
    """Random unit vector (cos, sin) by rejection sampling (arithmetic only; draws j … j+31)."""
    for t in range(16):
        u = 2.0 * _rand(key, iy, ix, j + 2 * t) - 1.0
        v = 2.0 * _rand(key, iy, ix, j + 2 * t + 1) - 1.0
        n = u * u + v * v
        if 0.01 < n <= 1.0:
            r = math.sqrt(n)
            return u / r, v / r
    return 1.0, 0.0


@numba.njit(cache=True)
def _pick(mix, u):
    """Index drawn from the categorical distribution ``mix`` with uniform ``u``."""
    acc = 0.0
    for t in range(len(mix)):
        acc += mix[t]
        if u < acc:
            return t
    return len(mix) - 1


@numba.njit(cache=True)
def _brightness(t, u0, u1, u2, dividing):
    """Relative DNA brightness: type factor × spread, with rare very bright (3 %) and dim (5 %) nuclei."""
    b = _BRIGHT[t] * (0.75 + 0.5 * u0)
    if dividing:
        return b * 2.2
    if u1 < 0.03:
        return b * (2.5 + u2)
    if u1 < 0.08:
        return b * (0.2 + 0.15 * u2)
    return b


@numba.njit(cache=True)
def _shape(t, dividing, condensed, u_q, u_spindle):
    """Axis ratio ``q`` = minor / major semi-axis of a nucleus of type ``t``."""
    if dividing:
        return 0.55
    if condensed:
        return 0.85 + 0.15 * u_q
    q = _Q_LO[t] + _Q_SPAN[t] * u_q
    if u_spindle < _SPINDLE_P[t]:
        q *= 0.45
    return q


@numba.njit(cache=True)
def _harmonics(P, n, t, key, iy, ix, j, lobed):
    """Draw the six outline harmonics of row ``n`` (capped at ``_MAX_HARMONICS``); return their sum."""
    amp = _AMP[t] * (3.5 if lobed else 1.0)
    total = 0.0
    for k in range(6):
        h = amp * (2.0 * _rand(key, iy, ix, j + 2 + k) - 1.0)
        P[n, COL_H + k] = h
        total += abs(h)
    if total > _MAX_HARMONICS:
        for k in range(6):
            P[n, COL_H + k] *= _MAX_HARMONICS / total
        total = _MAX_HARMONICS
    return total


@numba.njit(cache=True)
def _fill(P, n, t, cy, cx, key, iy, ix, j, lo, hi, size_mul, dividing, rot_cos, rot_sin):
    """Write nucleus row ``n`` of type ``t`` centred at (cy, cx) from draws j … j+71.

    ``rot_cos``/``rot_sin`` fix the long-axis orientation when ``dividing`` (else it is random).
    """
    condensed = (not dividing) and _rand(key, iy, ix, j + 14) < _CONDENSED_P
    d = (lo + (hi - lo) * (_SIZE_LO[t] + _SIZE_SPAN[t] * _rand(key, iy, ix, j))) * size_mul
    if condensed:
        d *= 0.5
    q = _shape(t, dividing, condensed, _rand(key, iy, ix, j + 1), _rand(key, iy, ix, j + 15))
    P[n, COL_CY] = cy
    P[n, COL_CX] = cx
    P[n, COL_A] = 0.5 * d / math.sqrt(q)
    P[n, COL_B] = 0.5 * d * math.sqrt(q)
    ca, sa = (rot_cos, rot_sin) if dividing else _direction(key, iy, ix, j + _J_ROT)
    P[n, COL_COS] = ca
    P[n, COL_SIN] = sa
    lobed = (not condensed) and _rand(key, iy, ix, j + 13) < _LOBED_P[t]
    total = _harmonics(P, n, t, key, iy, ix, j, lobed)
    thick = (_THICK_LO[t] + _THICK_SPAN[t] * _rand(key, iy, ix, j + 8)) * hi / 25.0
    P[n, COL_THICK] = thick
    P[n, COL_REACH] = P[n, COL_A] * (1.0 + total) + thick + 1.5
    bright = _brightness(t, _rand(key, iy, ix, j + 9), _rand(key, iy, ix, j + 10),
                         _rand(key, iy, ix, j + 11), dividing)
    P[n, COL_BRIGHT] = bright * (2.5 + _rand(key, iy, ix, j + 16)) if condensed else bright
    P[n, COL_TEX] = 0.65 if dividing else (0.1 if condensed else _TEX[t] * (0.8 + 0.4 * _rand(key, iy, ix, j + 12)))
    P[n, COL_DIVIDING] = 1.0 if dividing else 0.0
    P[n, COL_CONDENSED] = 1.0 if condensed else 0.0


@numba.njit(cache=True)
def _compartment(keys, cy, cx, tscale, g, culture):
    """Cell-type mixture, occupancy and pairing probabilities at a grid-cell centre.

    ``culture`` > 0 selects a monolayer whose occupancy varies smoothly around ``culture`` instead of tissue.
    """
    if culture > 0.0:
        return _MIX_CULTURE, culture * (0.6 + 0.8 * value_noise(keys[1], cy, cx, 8.0 * g)), 0.12
    dens = tissue_density(keys[1], cy, cx, tscale)
    comp = value_noise(keys[2], cy, cx, tscale * 0.35)
    crowd = value_noise(keys[3], cy, cx, 6.0 * g)
    if comp > 0.55:
        return _MIX_EPI, dens * 0.95, 0.3
    if crowd > 0.62:
        return _MIX_AGGREGATE, dens * 0.95, min(0.9, (crowd - 0.62) * 6.0)
    return _MIX_STROMA, dens * 0.7, 0.05


@numba.njit(cache=True)
def _cell(P, T, ids, n, keys, iy, ix, nxw, g, lo, hi, tscale, culture):
    """Append the 0–2 nuclei of grid cell (iy, ix) at row ``n``; return the new row count."""
    key = keys[0]
    cy = (iy + 0.5) * g + (_rand(key, iy, ix, _J_JY) - 0.5) * 0.7 * g
    cx = (ix + 0.5) * g + (_rand(key, iy, ix, _J_JX) - 0.5) * 0.7 * g
    mix, occupy, pair_p = _compartment(keys, (iy + 0.5) * g, (ix + 0.5) * g, tscale, g, culture)
    if _rand(key, iy, ix, _J_OCCUPY) >= occupy:
        return n
    t = _pick(mix, _rand(key, iy, ix, _J_TYPE))
    dividing = _rand(key, iy, ix, _J_DIVIDE) < _DIVIDE_P
    base = (np.int64(iy) * nxw + ix) * 2 + 1
    if not dividing and _rand(key, iy, ix, _J_PAIR) >= pair_p:
        _fill(P, n, t, cy, cx, key, iy, ix, _J_NUC0, lo, hi, 1.0, False, 1.0, 0.0)
        T[n] = t
        ids[n] = base
        return n + 1
    dc, ds = _direction(key, iy, ix, _J_DIR_PAIR)
    half = (0.42 if dividing else 0.21) * 0.5 * (lo + hi)
    mul = 0.65 if dividing else 0.85
    for s in range(2):
        sign = 1.0 if s == 0 else -1.0
        _fill(P, n, t, cy + sign * half * ds, cx + sign * half * dc, key, iy, ix, _J_NUC0 + s * 100,
              lo, hi, mul, dividing, -ds, dc)
        T[n] = t
        ids[n] = base + s
        n += 1
    return n


@numba.njit(cache=True)
def nuclei_in_cells(keys, gy0, gy1, gx0, gx1, nxw, g, lo, hi, tscale, culture=0.0):
    """Parameters of all nuclei of grid cells [gy0, gy1) × [gx0, gx1), in increasing label order.

    Parameters
    ----------
    keys : ndarray (4,) uint64
        Stream keys: nuclei, tissue, compartment, crowding.
    gy0, gy1, gx0, gx1 : int
        Grid-cell index ranges (already clipped to the image's grid).
    nxw : int
        Grid cells per row of the whole image (makes labels global).
    g, lo, hi, tscale : float
        Grid cell side, diameter range and tissue length scale (pixels).
    culture : float
        0: tissue layout (sheets, stroma, aggregates, empty slide); > 0: a cell-culture monolayer of about
        this occupancy (0-1) per grid cell.

    Returns
    -------
    P : ndarray (N, N_COLS) float64
    types : ndarray (N,) int8
    ids : ndarray (N,) int64
        Global label of each nucleus (> 0, unique across the image, not consecutive).
    """
    cap = 2 * max(0, gy1 - gy0) * max(0, gx1 - gx0)
    P = np.empty((cap, N_COLS), np.float64)
    T = np.empty(cap, np.int8)
    ids = np.empty(cap, np.int64)
    n = 0
    for iy in range(gy0, gy1):
        for ix in range(gx0, gx1):
            n = _cell(P, T, ids, n, keys, iy, ix, nxw, g, lo, hi, tscale, culture)
    return P[:n], T[:n], ids[:n]
