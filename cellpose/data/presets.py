"""Named image presets and the CyCIF channel layout (marker panel) of the synthetic generator.

Channel ``c`` belongs to imaging cycle ``c // 4 + 1``; the first channel of every cycle (0, 4, 8, …) is the
nuclear stain ``DNA_<cycle>``, the other three are markers ``<marker>_<cycle>`` taken in order from
:data:`MARKERS` (cycling through the panel when an image has more marker channels than the panel).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Tuple

__all__ = [
    "Preset", "PRESETS", "Marker", "MARKERS", "CELL_TYPES", "DNA", "MEMBRANE", "CYTOPLASM", "NUCLEAR",
    "get_preset", "channel_names", "channel_marker",
]

#: Marker kinds (where in the cell the signal sits); DNA is the nuclear stain itself.
DNA, MEMBRANE, CYTOPLASM, NUCLEAR = 0, 1, 2, 3

#: Cell types of the simulated tissue, in the order of :attr:`Marker.probs`.
CELL_TYPES = ("epithelial", "stromal", "T cell", "B cell", "macrophage", "endothelial")


@dataclass(frozen=True)
class Preset:
    """A named synthetic image modelled on a real CyCIF image.

    Attributes
    ----------
    name : str
        Preset name (also the output file stem).
    shape : (int, int, int)
        Full image shape (C, Y, X).
    description : str
        What real image it imitates.
    """

    name: str
    shape: Tuple[int, int, int]
    description: str


PRESETS = MappingProxyType({
    "exemplar": Preset("exemplar", (12, 3138, 2509), "MCMICRO exemplar-001 sized, 3 cycles"),
    "lung": Preset("lung", (44, 10101, 9666), "lung adenocarcinoma CyCIF sized, 11 cycles"),
    "wd": Preset("wd", (40, 27120, 26139), "whole-slide CyCIF sized (27k x 26k), 10 cycles"),
})


@dataclass(frozen=True)
class Marker:
    """One antibody of the panel.

    Attributes
    ----------
    name : str
        Target name, e.g. ``"CD45"``.
    kind : int
        :data:`MEMBRANE`, :data:`CYTOPLASM` or :data:`NUCLEAR`.
    probs : tuple of 6 float
        Probability that a cell of each of :data:`CELL_TYPES` expresses it.
    level : float
        Typical noise-free intensity (counts) of an expressing cell.
    """

    name: str
    kind: int
    probs: Tuple[float, float, float, float, float, float]
    level: float


#   name, kind, (epithelial, stromal, T, B, macrophage, endothelial), level
_PANEL = (
    ("CD45", MEMBRANE, (0, 0, .95, .95, .9, 0), 3000),
    ("PanCK", CYTOPLASM, (.95, 0, 0, 0, 0, 0), 4000),
    ("aSMA", CYTOPLASM, (0, .6, 0, 0, 0, .3), 2500),
    ("Ki67", NUCLEAR, (.3, .05, .1, .1, .05, .05), 3500),
    ("CD3", MEMBRANE, (0, 0, .95, 0, 0, 0), 2500),
    ("CD8", MEMBRANE, (0, 0, .4, 0, 0, 0), 2000),
    ("CD4", MEMBRANE, (0, 0, .55, 0, .3, 0), 1800),
    ("FOXP3", NUCLEAR, (0, 0, .1, 0, 0, 0), 2200),
    ("CD20", MEMBRANE, (0, 0, 0, .95, 0, 0), 3000),
    ("CD68", CYTOPLASM, (0, 0, 0, 0, .9, 0), 2800),
    ("CD163", MEMBRANE, (0, 0, 0, 0, .6, 0), 2000),
    ("CD31", MEMBRANE, (0, 0, 0, 0, 0, .95), 2600),
    ("Ecad", MEMBRANE, (.9, 0, 0, 0, 0, 0), 3200),
    ("Vimentin", CYTOPLASM, (.1, .9, .2, .2, .6, .8), 2400),
    ("PD1", MEMBRANE, (0, 0, .25, .05, 0, 0), 1500),
    ("PDL1", MEMBRANE, (.3, 0, 0, 0, .4, 0), 1500),
    ("HLADR", MEMBRANE, (.2, 0, 0, .9, .8, .2), 2200),
    ("CD11c", MEMBRANE, (0, 0, 0, .05, .5, 0), 1600),
    ("GranzymeB", CYTOPLASM, (0, 0, .15, 0, 0, 0), 2000),
    ("p53", NUCLEAR, (.4, 0, 0, 0, 0, 0), 2600),
    ("CD44", MEMBRANE, (.5, .5, .3, .3, .3, .3), 1400),
    ("Desmin", CYTOPLASM, (0, .3, 0, 0, 0, 0), 2000),
    ("CD34", MEMBRANE, (0, .05, 0, 0, 0, .9), 2200),
    ("PCNA", NUCLEAR, (.4, .1, .1, .1, .05, .05), 2400),
    ("CD14", MEMBRANE, (0, 0, 0, 0, .7, 0), 1800),
    ("CD11b", MEMBRANE, (0, 0, 0, 0, .6, 0), 1600),
    ("bCatenin", MEMBRANE, (.8, .1, 0, 0, 0, .2), 2000),
    ("pRB", NUCLEAR, (.35, .1, .1, .1, .05, .05), 1800),
    ("CD206", MEMBRANE, (0, 0, 0, 0, .5, 0), 1600),
    ("S100", CYTOPLASM, (.05, .1, 0, 0, .2, 0), 1800),
    ("CD57", MEMBRANE, (0, 0, .1, 0, 0, 0), 1500),
    ("Collagen4", MEMBRANE, (.3, .3, 0, 0, 0, .6), 1200),
    ("LaminB1", NUCLEAR, (.95, .95, .95, .95, .95, .95), 1500),
    ("CD15", MEMBRANE, (.1, 0, 0, 0, .2, 0), 1400),
    ("CK7", CYTOPLASM, (.7, 0, 0, 0, 0, 0), 3000),
    ("IBA1", CYTOPLASM, (0, 0, 0, 0, .8, 0), 2000),
)

#: The marker panel, in channel order.
MARKERS = tuple(Marker(n, k, tuple(float(p) for p in probs), float(lv)) for n, k, probs, lv in _PANEL)


def get_preset(name):
    """Return the :class:`Preset` called ``name``; raise ``ValueError`` listing the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}") from None


def channel_marker(c):
    """Marker of channel ``c`` (``None`` for a DNA channel) and its imaging cycle (1-based).

    Parameters
    ----------
    c : int
        0-based channel index.

    Returns
    -------
    marker : Marker or None
    cycle : int
    """
    cycle, pos = divmod(int(c), 4)
    if pos == 0:
        return None, cycle + 1
    return MARKERS[(3 * cycle + pos - 1) % len(MARKERS)], cycle + 1


def channel_names(n_channels):
    """OME channel names of an image with ``n_channels`` channels: ``DNA_1, CD45_1, PanCK_1, aSMA_1, DNA_2…``."""
    names = []
    for c in range(int(n_channels)):
        marker, cycle = channel_marker(c)
        names.append(f"{'DNA' if marker is None else marker.name}_{cycle}")
    return names
