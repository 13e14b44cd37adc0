"""Details of the DNA channel that real DAPI/Hoechst images have: nucleoli, chromocentres, debris, defocus.

* **Nucleoli** are dark holes (DNA is excluded from them): 0–3 per interphase nucleus, radius 12–22 % of the
  nucleus' minor semi-axis, 30–60 % darker at their centre.
* **Chromocentres** are small bright spots of condensed chromatin: up to two per nucleus, radius 6–10 % of
  the minor semi-axis, 40–100 % brighter.  Condensed (apoptotic) and dividing nuclei have neither.
* **Debris** is unlabelled DNA-stained junk independent of the grid of nuclei: a hashed lattice of small blobs
  (``Scene``: cells of side 3 × the largest diameter, 12 % occupied), radius (0.15 × the smallest diameter
  + 0.5 px) × 0.3–1, peak 5–80 % of the nuclear DNA level before the blur.
* **Defocus** varies smoothly across the field: the blurred image is a mix of a sharp and a defocused copy,
  weighted by a smooth focus map: over a large area about 24 % of the pixels are mostly out of focus (weight
  > 0.5), 9 % fully, 42 % partly (weight > 0).

Every spot profile is the compact bump ``(1 − r²/R²)²`` (arithmetic only, no ``exp``), and every random
value is hashed from a nucleus label or an absolute lattice cell, so all windows agree bit for bit.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .cells import COL_B, COL_CONDENSED, COL_CX, COL_CY, COL_DIVIDING
from .noise import hash2, unit, value_noise

__all__ = ["MAX_SPOTS", "nucleus_spots", "spot_factor", "span", "debris", "focus_mix"]

#: Spots per nucleus (nucleoli first, then chromocentres); rows of unused spots have amplitude 0.
MAX_SPOTS = 5


@numba.njit(cache=True)
def _offset(key, label, k, radius):
    """A point uniformly inside the disc of ``radius`` (rejection sampling; draws 100+16k …)."""
    for t in range(8):
        u = 2.0 * unit(hash2(key, label, 100 + 16 * k + 2 * t)) - 1.0
        v = 2.0 * unit(hash2(key, label, 101 + 16 * k + 2 * t)) - 1.0
        if u * u + v * v <= 1.0:
            return u * radius, v * radius
    return 0.0, 0.0


@numba.njit(cache=True)
def _spot(S, i, k, P, key, label, size, amp):
    """Write spot ``k`` of nucleus ``i``: absolute centre, ``1 / R²`` and amplitude."""
    b = P[i, COL_B]
    dy, dx = _offset(key, label, k, 0.55 * b)
    radius = max(0.7, size * b)
    S[i, k, 0] = P[i, COL_CY] + dy
    S[i, k, 1] = P[i, COL_CX] + dx
    S[i, k, 2] = 1.0 / (radius * radius)
    S[i, k, 3] = amp


@numba.njit(cache=True)
def nucleus_spots(P, ids, key):
    """Nucleoli and chromocentres of every nucleus.

    Parameters
    ----------
    P : ndarray (N, N_COLS) float64
        Nucleus table (``cells``).
    ids : ndarray (N,) int64
        Global labels (the random stream of each nucleus).
    key : uint64
        Stream key.

    Returns
    -------
    S : ndarray (N, MAX_SPOTS, 4) float64
        Per spot: centre y, centre x (absolute pixels), ``1 / R²`` and amplitude (< 0: nucleolus).
    """
    S = np.zeros((P.shape[0], MAX_SPOTS, 4), np.float64)
    for i in range(P.shape[0]):
        if P[i, COL_CONDENSED] > 0.0 or P[i, COL_DIVIDING] > 0.0:
            continue
        label = ids[i]
        n_nucleoli = min(3, np.int64(4.0 * unit(hash2(key, label, 0))))
        for k in range(n_nucleoli):
            _spot(S, i, k, P, key, label, 0.12 + 0.1 * unit(hash2(key, label, 10 + k)),
                  -(0.3 + 0.3 * unit(hash2(key, label, 20 + k))))
        for k in range(3, MAX_SPOTS):
            if unit(hash2(key, label, 30 + k)) < 0.5:
                _spot(S, i, k, P, key, label, 0.06 + 0.04 * unit(hash2(key, label, 10 + k)),
                      0.4 + 0.6 * unit(hash2(key, label, 20 + k)))
    return S


@numba.njit(cache=True)
def spot_factor(S, i, y, x):
    """Multiplicative DNA factor of nucleus ``i``'s spots at absolute (y, x), at least 0.1."""
    f = 1.0
    for k in range(MAX_SPOTS):
        a = S[i, k, 3]
        if a == 0.0:
            continue
        dy = y - S[i, k, 0]
        dx = x - S[i, k, 1]
        q = (dy * dy + dx * dx) * S[i, k, 2]
        if q < 1.0:
            f += a * (1.0 - q) * (1.0 - q)
    return max(0.1, f)


@numba.njit(cache=True)
def span(c, r, origin, n):
    """Window indices ``[a, b)`` of the pixels with absolute coordinate in ``[c − r, c + r]``, clipped to a
    window of ``n`` pixels starting at ``origin``."""
    return max(0, np.int64(math.ceil(c - r)) - origin), min(n, np.int64(math.floor(c + r)) - origin + 1)


@numba.njit(cache=True)
def _splat(out, y0, x0, cy, cx, radius, amp):
    """Add the bump ``amp (1 − r²/R²)²`` centred at absolute (cy, cx) to the window ``out``."""
    h, w = out.shape
    inv = 1.0 / (radius * radius)
    ya, yb = span(cy, radius, y0, h)
    xa, xb = span(cx, radius, x0, w)
    for yy in range(ya, yb):
        dy = (y0 + yy) - cy
        for xx in range(xa, xb):
            dx = (x0 + xx) - cx
            q = (dx * dx + dy * dy) * inv
            if q < 1.0:
                out[yy, xx] += np.float32(amp * (1.0 - q) * (1.0 - q))


@numba.njit(cache=True)
def debris(out, y0, x0, key, spacing, size, level, density):
    """Add unlabelled debris to the window ``out`` (h, w) float32 whose top-left pixel is (y0, x0).

    Lattice cells of side ``spacing`` hold a blob with probability ``density``; its radius is
    ``size × [0.3, 1)`` pixels and its peak ``level × [0.05, 0.8)``.  Cells are visited in row-major order,
    so every pixel sums the same blobs in the same order in any window.
    """
    h, w = out.shape
    reach = size + 1.0
    gy0 = np.int64(math.floor((y0 - reach) / spacing))
    gy1 = np.int64(math.floor((y0 + h + reach) / spacing))
    gx0 = np.int64(math.floor((x0 - reach) / spacing))
    gx1 = np.int64(math.floor((x0 + w + reach) / spacing))
    for gy in range(gy0, gy1 + 1):
        for gx in range(gx0, gx1 + 1):
            cell = gy * np.int64(1 << 31) + gx
            if unit(hash2(key, cell, 0)) >= density:
                continue
            cy = (gy + unit(hash2(key, cell, 1))) * spacing
            cx = (gx + unit(hash2(key, cell, 2))) * spacing
            radius = size * (0.3 + 0.7 * unit(hash2(key, cell, 3)))
            _splat(out, y0, x0, cy, cx, radius, level * (0.05 + 0.75 * unit(hash2(key, cell, 4))))


@numba.njit(cache=True)
def focus_mix(sharp, blurred, y0, x0, key, scale):
    """Mix two blurred copies by a smooth focus map: ``sharp`` where in focus, ``blurred`` where not.

    The weight of ``blurred`` is a smooth step of value noise (lattice ``scale`` pixels) → (h, w) float32.
    """
    h, w = sharp.shape
    out = np.empty((h, w), np.float32)
    for yy in range(h):
        for xx in range(w):
            n = value_noise(key, np.float64(y0 + yy), np.float64(x0 + xx), scale)
            d = min(1.0, max(0.0, (n - 0.55) * 4.0))
            wgt = d * d * (3.0 - 2.0 * d)
            out[yy, xx] = np.float32((1.0 - wgt) * sharp[yy, xx] + wgt * blurred[yy, xx])
    return out
