"""Pre-processing of a 2D image for the network: channels, normalisation, resizing, padding (spec §2)."""
from .channels import convert_image, yxc_view
from .normalize import normalize_image, percentile_range
from .resize import nearest_indices, pad_amounts, resize_image, resize_masks

__all__ = ["convert_image", "yxc_view", "normalize_image", "percentile_range", "resize_image", "resize_masks",
           "nearest_indices", "pad_amounts"]
