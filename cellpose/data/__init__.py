"""Synthetic multiplexed (CyCIF-like) microscopy with ground-truth nuclear labels.

``make_image`` renders small images in memory (tests, training); ``write_preset`` and
``python -m cellpose.data make`` write large presets as tiled OME-TIFFs band by band, in bounded memory.
See ``docs/data.md``.
"""
from .generator import Scene, make_image
from .ometiff import write_labels, write_preset, write_scene
from .presets import PRESETS, channel_names

__all__ = ["Scene", "make_image", "write_preset", "write_scene", "write_labels", "PRESETS", "channel_names"]
