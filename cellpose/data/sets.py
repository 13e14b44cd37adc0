"""Named kinds of single-channel nuclei images, for training the bundled model and for held-out evaluation.

Each kind fixes the scene parameters of ``make_image`` (layout, nucleus size range, stain brightness, defocus).
Training draws seeds from 1000 up and jitters brightness and defocus per image; held-out sets use seeds from
9000 up with the kind's nominal values; validation sets, for choosing between trained models, seeds from 5000
up, also nominal. The seed ranges never meet, so no held-out or validation image is trained on.

Labels are annotated the way a person would draw them: every nucleus is one 4-connected region of at least
``MIN_LABEL_AREA`` pixels (the pipeline's default ``min_size``). Pieces of a
nucleus cut off by an overlapping neighbour, and slivers at the image edge, are background. They stay in the
image, as an annotator would leave them unlabelled.

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
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from scipy import ndimage as ndi

from .generator import make_image

__all__ = ["ImageKind", "KINDS", "TRAIN_SEED", "HELD_OUT_SEED", "VALIDATION_SEED", "MIN_LABEL_AREA", "kind_image",
           "held_out", "validation", "training_images", "annotated"]

TRAIN_SEED = 1000
HELD_OUT_SEED = 9000
VALIDATION_SEED = 5000
MIN_LABEL_AREA = 15


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
    return img[0], annotated(labels)


def annotated(labels, *, min_area: int = MIN_LABEL_AREA):
    """Labels as drawn by hand: the largest 4-connected piece of each label, if it has ``min_area`` pixels.

    Parameters
    ----------
    labels : ndarray (Y, X) integer, non-negative
        Generator labels (0 = background); a label may be split by an overlapping neighbour or cut by the edge.
    min_area : int
        Smallest piece kept, in pixels.

    Returns
    -------
    ndarray (Y, X), the dtype of ``labels``
        A new array; other pieces and smaller labels are 0. Label values are unchanged. Of equal largest
        pieces the first in raster order is kept.

    Raises
    ------
    ValueError
        ``labels`` is not a 2-D array of non-negative integers.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise ValueError(f"labels must be a 2-D array of non-negative integers, got {labels.dtype} {labels.shape}")
    out = np.zeros_like(labels)
    if labels.size == 0:
        return out
    for value, box in _boxes(labels):
        pieces, n = ndi.label(labels[box] == value)
        sizes = np.bincount(pieces.ravel(), minlength=n + 1)[1:]
        if sizes.max() >= min_area:
            out[box][pieces == 1 + int(np.argmax(sizes))] = value
    return out


def _boxes(labels):
    """(label value, bounding-box slices) of every label present, from one pass over the image."""
    values = np.union1d(labels.ravel(), np.zeros(1, labels.dtype))
    boxes = ndi.find_objects(np.searchsorted(values, labels).astype(np.int32))
    return [(values[i], box) for i, box in enumerate(boxes, start=1) if box is not None]


def held_out(name: str, *, n: int = 2, size: int = 384) -> List[tuple]:
    """``n`` held-out (image, labels) pairs of a kind, seeds ``HELD_OUT_SEED + 100·index(kind) + i``."""
    return _nominal(name, HELD_OUT_SEED, n, size)


def validation(name: str, *, n: int = 4, size: int = 384) -> List[tuple]:
    """``n`` validation (image, labels) pairs of a kind, seeds ``VALIDATION_SEED + 100·index(kind) + i``."""
    return _nominal(name, VALIDATION_SEED, n, size)


def _nominal(name: str, first_seed: int, n: int, size: int) -> List[tuple]:
    _kind(name)
    if not 1 <= n <= 100:
        raise ValueError(f"n must be in 1..100 (seed blocks of 100 per kind), got {n}")
    base = first_seed + 100 * sorted(KINDS).index(name)
    return [kind_image(name, seed=base + i, size=size) for i in range(n)]


def training_images(*, per_kind: int, size: int = 384, extra: Optional[Mapping[str, int]] = None) -> List[tuple]:
    """Jittered training (image, labels) pairs, seeds from ``TRAIN_SEED``.

    Parameters
    ----------
    per_kind : int
        Images of every kind (1..100).
    size : int
        Image edge in pixels.
    extra : mapping of str to int, optional
        More images of some kinds, e.g. ``{"crowded": 16}``; a kind's total must stay within its 100 seeds.

    Returns
    -------
    list of (image (size, size) uint16, labels (size, size) uint32), kinds in sorted order
    """
    extra = dict(extra or {})
    for name, count in extra.items():
        _kind(name)
        if int(count) < 0:
            raise ValueError(f"extra images of {name!r} must be >= 0, got {count}")
    counts = {name: per_kind + int(extra.get(name, 0)) for name in KINDS}
    if not 1 <= per_kind <= 100 or not all(1 <= n <= 100 for n in counts.values()):
        raise ValueError(f"per_kind must be in 1..100 (seed blocks of 100 per kind) with extra included, got "
                         f"per_kind={per_kind}, extra={extra}")
    out = []
    for k, name in enumerate(sorted(KINDS)):
        base = TRAIN_SEED + 100 * k
        out += [kind_image(name, seed=base + i, size=size, jitter=True) for i in range(counts[name])]
    return out
