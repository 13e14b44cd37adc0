"""Named kinds of single-channel nuclei images, for training the bundled model and for held-out evaluation.

Each kind fixes the scene parameters of ``make_image`` (layout, nucleus size range, stain brightness, defocus).
Training draws seeds from 1000 up and jitters brightness and defocus per image; held-out sets use seeds from
9000 up with the kind's nominal values. The two seed ranges never meet, so no held-out image is trained on.

==========  ===================  =========  =======  =======  ==============================================
kind        diameter (px)        DNA level  defocus  culture  looks like
==========  ===================  =========  =======  =======  ==============================================
tissue      10-25                5000       2.0      0        a CyCIF DNA channel (sheets, stroma, gaps)
culture     16-28                1500       2.5      0.6      a cell-line monolayer on a widefield microscope
dim         14-24                150        3.0      0.5      a dim, noisy, partly defocused monolayer
crowded     8-14                 3000       1.5      0.95     small, densely packed nuclei (low magnification)
large       28-40                2000       3.0      0.5      large nuclei (high magnification)
sparse      12-20                800        4.0      0.2      few nuclei, strong defocus, much background
==========  ===================  =========  =======  =======  ==============================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from .generator import make_image

__all__ = ["ImageKind", "KINDS", "TRAIN_SEED", "HELD_OUT_SEED", "kind_image", "held_out", "training_images"]

TRAIN_SEED = 1000
HELD_OUT_SEED = 9000


@dataclass(frozen=True)
class ImageKind:
    """Scene parameters of one kind of image (see ``Scene``)."""

    diameter: Tuple[float, float]
    dna_level: float
    defocus: float
    culture: float


KINDS: Dict[str, ImageKind] = {
    "tissue": ImageKind((10.0, 25.0), 5000.0, 2.0, 0.0),
    "culture": ImageKind((16.0, 28.0), 1500.0, 2.5, 0.6),
    "dim": ImageKind((14.0, 24.0), 150.0, 3.0, 0.5),
    "crowded": ImageKind((8.0, 14.0), 3000.0, 1.5, 0.95),
    "large": ImageKind((28.0, 40.0), 2000.0, 3.0, 0.5),
    "sparse": ImageKind((12.0, 20.0), 800.0, 4.0, 0.2),
}


def _kind(name: str) -> ImageKind:
    if name not in KINDS:
        raise ValueError(f"unknown image kind {name!r}; choose from {sorted(KINDS)}")
    return KINDS[name]


def kind_image(name: str, *, seed: int, size: int = 384, jitter: bool = False):
    """One image of a kind.

    Parameters
    ----------
    name : str
        A key of ``KINDS``.
    seed : int
        Scene seed (>= 0).
    size : int
        Image edge in pixels.
    jitter : bool
        Draw the DNA level (×0.3–3, log-uniform) and the defocus (×0–1.5) from the seed, for training.

    Returns
    -------
    image : ndarray (size, size) uint16
    labels : ndarray (size, size) uint32
    """
    k = _kind(name)
    level, defocus = k.dna_level, k.defocus
    if jitter:
        rng = np.random.default_rng(seed)
        level = float(np.clip(level * np.exp(rng.uniform(np.log(0.3), np.log(3.0))), 20.0, 20000.0))
        defocus = float(np.clip(defocus * rng.uniform(0.0, 1.5), 0.0, 6.0))
    img, labels = make_image((1, size, size), seed=seed, diameter=k.diameter, dna_level=level, defocus=defocus,
                             culture=k.culture)
    return img[0], labels


def held_out(name: str, *, n: int = 2, size: int = 384) -> List[tuple]:
    """``n`` held-out (image, labels) pairs of a kind, seeds ``HELD_OUT_SEED + 100·index(kind) + i``."""
    _kind(name)
    if not 1 <= n <= 100:
        raise ValueError(f"n must be in 1..100 (seed blocks of 100 per kind), got {n}")
    base = HELD_OUT_SEED + 100 * sorted(KINDS).index(name)
    return [kind_image(name, seed=base + i, size=size) for i in range(n)]


def training_images(*, per_kind: int, size: int = 384) -> List[tuple]:
    """``per_kind`` jittered training (image, labels) pairs of every kind, seeds from ``TRAIN_SEED``."""
    if not 1 <= per_kind <= 100:
        raise ValueError(f"per_kind must be in 1..100 (seed blocks of 100 per kind), got {per_kind}")
    out = []
    for k, name in enumerate(sorted(KINDS)):
        base = TRAIN_SEED + 100 * k
        out += [kind_image(name, seed=base + i, size=size, jitter=True) for i in range(per_kind)]
    return out
