"""Image input/output: readers, directory listing and atomic output writers.

Sub-modules: ``tiff`` (read/write one image, metadata, single-channel reads), ``files`` (images of a
folder), ``outputs`` (``_seg.npy``, masks, flows, outlines), ``atomic`` (all-or-nothing writes); for
whole-slide label images, written chunk by chunk: ``ngff`` (OME-Zarr label store and its pyramid),
``pyramid`` (tiled pyramidal OME-TIFF), ``objects`` (per-object CSV table).
"""
from .atomic import atomic_write
from .files import NoImagesError, list_images
from .ngff import build_pyramid, chunk_windows, create_label_store, open_label_level
from .objects import object_stats, object_table
from .outputs import (OutputDirError, check_output_dir, masks_to_outlines, outlines_list, save_flows, save_masks,
                      save_outlines_png, save_seg_npy)
from .pyramid import read_pyramid_ome_tiff, write_pyramid_ome_tiff
from .tiff import ImageInfo, ImageReadError, image_info, imread, imsave, read_channel

__all__ = [
    "atomic_write",
    "NoImagesError",
    "list_images",
    "OutputDirError",
    "check_output_dir",
    "masks_to_outlines",
    "outlines_list",
    "save_flows",
    "save_masks",
    "save_outlines_png",
    "save_seg_npy",
    "ImageInfo",
    "ImageReadError",
    "image_info",
    "imread",
    "imsave",
    "read_channel",
    "build_pyramid",
    "chunk_windows",
    "create_label_store",
    "open_label_level",
    "object_stats",
    "object_table",
    "read_pyramid_ome_tiff",
    "write_pyramid_ome_tiff",
]
