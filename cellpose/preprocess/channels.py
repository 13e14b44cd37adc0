"""Any 2D image array → the (Ly, Lx, nchan) float32 network input (spec §2.1, 2D only).

Only the channels that are used are read and cast: picking one channel of a (44, Y, X) uint16 stack
costs one float32 plane, not 44.
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np

__all__ = ["convert_image", "yxc_view", "MAX_CHANNEL_DIM_FOR_Z"]

logger = logging.getLogger(__name__)

MAX_CHANNEL_DIM_FOR_Z = 5
"""Without ``channel_axis``, a 3D array whose smallest dimension exceeds this looks like a Z stack (upstream
would segment it plane by plane); a smaller smallest dimension is taken as the channel axis."""

_MEAN_BLOCK_PIXELS = 1 << 20


def convert_image(x, *, channels: Optional[Sequence[int]], channel_axis: Optional[int] = None,
                  nchan: int = 2) -> np.ndarray:
    """Select and cast the network input channels of a 2D image.

    Parameters
    ----------
    x : array_like (Ly, Lx) or (Ly, Lx, C) in any axis order, real dtype
        The image. Singleton axes are dropped when it has more than 3 dimensions.
    channels : (int, int) or None
        ``[c1, c2]``, 1-based: ``c1`` is the channel to segment (0 = mean of all channels), ``c2`` the optional
        nuclear channel (0 = none). An image with a single channel gives ``[img, zeros]`` whatever ``c1, c2``.
        ``None`` keeps the first ``nchan`` channels (zero-filled up to ``nchan``).
    channel_axis : int, optional
        Axis of the channels. Without it, the smallest dimension of a 3D array is the channel axis when it is
        at most ``MAX_CHANNEL_DIM_FOR_Z``; a 3D array whose dimensions all exceed it is rejected as a Z stack
        (pass ``channel_axis`` to treat it as channels).
    nchan : int
        Number of output channels.

    Returns
    -------
    img : ndarray (Ly, Lx, nchan) float32
        New array; channel 0 = channel to segment, channel 1 = nuclear channel or zeros.

    Raises
    ------
    ValueError
        For a Z stack / 3D array, or a channel index outside ``1..C``.
    """
    if nchan < 1:
        raise ValueError(f"nchan must be >= 1, got {nchan}")
    view = yxc_view(x, channel_axis=channel_axis, all_channels=channels is None)
    out = np.zeros(view.shape[:2] + (nchan,), np.float32)
    if channels is None:
        used = min(view.shape[2], nchan)
        out[:, :, :used] = view[:, :, :used]
    elif view.shape[2] == 1:
        out[:, :, 0] = view[:, :, 0]
    else:
        _fill_selected(out, view, _check_channels(channels, view.shape[2]))
    return out


def yxc_view(x, *, channel_axis: Optional[int] = None, all_channels: bool = False) -> np.ndarray:
    """View of a 2D image with its channel axis last (no copy, no cast).

    Parameters
    ----------
    x : array_like, 2 or more dimensions, real dtype
        The image; torch tensors on the CPU are accepted.
    channel_axis : int, optional
        Axis of the channels (ignored for a 2D array).
    all_channels : bool
        Without ``channel_axis``: take the smallest dimension of a 3D array as the channel axis whatever its
        size (``--all_channels``), instead of applying the Z-stack rule.

    Returns
    -------
    view : ndarray (Ly, Lx, C), dtype of ``x``
    """
    x = np.asarray(x)
    if x.dtype.kind not in "uifb":
        raise TypeError(f"image must have a real dtype, got {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"image must have at least 2 dimensions, got shape {x.shape}")
    x, channel_axis = _squeeze(x, channel_axis)
    if x.ndim < 2:
        raise ValueError(f"image has fewer than 2 non-singleton dimensions: shape {np.shape(x)}")
    if x.ndim == 2:
        return x[:, :, np.newaxis]
    if x.ndim > 3:
        raise ValueError(f"Z stacks / 3D images are not supported: image has shape {x.shape} after dropping "
                         f"singleton axes (expected (Ly, Lx, C))")
    if channel_axis is None:
        channel_axis = _guess_channel_axis(x.shape, all_channels)
    view = np.moveaxis(x, channel_axis, -1)
    if min(view.shape[:2]) < 1:
        raise ValueError(f"image has an empty spatial axis: shape {x.shape}")
    return view


def _squeeze(x: np.ndarray, channel_axis: Optional[int]) -> tuple[np.ndarray, Optional[int]]:
    """Drop singleton axes of a >3D array (keeping the channel axis) and re-index ``channel_axis``."""
    if channel_axis is not None:
        channel_axis = _axis_index(channel_axis, x.ndim)
    if x.ndim <= 3:
        return x, channel_axis if x.ndim == 3 else None
    keep = [ax for ax in range(x.ndim) if x.shape[ax] != 1 or ax == channel_axis]
    if channel_axis is not None:
        channel_axis = keep.index(channel_axis)
    return x.reshape([x.shape[ax] for ax in keep]), channel_axis


def _axis_index(axis: int, ndim: int) -> int:
    """Normalise a possibly negative axis index, raising ValueError when out of range."""
    axis = int(axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"channel_axis {axis} is out of range for an image with {ndim} dimensions")
    return axis % ndim


def _guess_channel_axis(shape: tuple, all_channels: bool) -> int:
    """Channel axis of a 3D array without ``channel_axis``: its smallest dimension, if plausible."""
    axis = int(np.argmin(shape))
    if all_channels or shape[axis] <= MAX_CHANNEL_DIM_FOR_Z:
        return axis
    raise ValueError(f"image of shape {shape} looks like a Z stack (smallest dimension {shape[axis]} > "
                     f"{MAX_CHANNEL_DIM_FOR_Z}); Z stacks / 3D are not supported. Pass channel_axis if "
                     f"axis {axis} holds channels.")


def _check_channels(channels: Sequence[int], count: int) -> tuple[int, int]:
    """Validate ``[c1, c2]`` against ``count`` (>= 2) image channels; ignored entries are only logged."""
    if len(channels) != 2:
        raise ValueError(f"channels must be [c1, c2], got {list(channels)}")
    c1, c2 = (int(c) for c in channels)
    if c1 < 0 or c2 < 0:
        raise ValueError(f"channels must be >= 0 (0 = gray/none, 1-based otherwise), got {[c1, c2]}")
    if c1 > count:
        raise ValueError(f"channel to segment {c1} is out of range: the image has {count} channels")
    if c1 == 0 and c2 > 0:
        logger.warning("channels=[0, %d]: segmenting the mean of all channels, the nuclear channel is ignored", c2)
    elif c2 > count:
        raise ValueError(f"nuclear channel {c2} is out of range: the image has {count} channels")
    return c1, c2


def _fill_selected(out: np.ndarray, view: np.ndarray, channels: tuple[int, int]) -> None:
    """Write the channels picked by ``[c1, c2]`` (or the channel mean for c1 == 0) into ``out``."""
    c1, c2 = channels
    if c1 == 0:
        _channel_mean(view, out[:, :, 0])
        return
    picks = [c1 - 1] + ([c2 - 1] if c2 > 0 else [])
    for dst, src in enumerate(picks[: out.shape[2]]):
        out[:, :, dst] = view[:, :, src]
        if _is_constant(out[:, :, dst]):
            logger.warning("channel %d has a value range of zero", src + 1)


def _channel_mean(view: np.ndarray, dst: np.ndarray) -> None:
    """float32 mean over the channel axis, row block by row block (one block cast at a time)."""
    rows = max(1, _MEAN_BLOCK_PIXELS // (view.shape[1] * view.shape[2]))
    for r0 in range(0, view.shape[0], rows):
        block = view[r0: r0 + rows].astype(np.float32)
        dst[r0: r0 + rows] = block.mean(axis=-1)


def _is_constant(a: np.ndarray) -> bool:
    """True when every value of ``a`` is equal."""
    return bool(a.max() == a.min())
