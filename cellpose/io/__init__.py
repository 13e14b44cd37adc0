"""Image input/output: readers, directory listing and atomic output writers.

Sub-modules: ``tiff`` (read/write one image, metadata, single-channel reads), ``files`` (images of a
folder), ``outputs`` (``_seg.npy``, masks, flows, outlines), ``atomic`` (all-or-nothing writes).
"""
from .atomic import atomic_write
from .files import NoImagesError, list_images
from .outputs import (OutputDirError, check_output_dir, masks_to_outlines, outlines_list, save_flows, save_masks,
                      save_outlines_png, save_seg_npy)
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
]
