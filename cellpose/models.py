"""``CellposeModel``: the upstream-compatible façade over the pipeline stages.

``eval`` composes the stages, each in its own module::

    convert (preprocess.channels) → normalize (preprocess.normalize) → resize (preprocess.resize)
    → network, tile by tile (inference.run_net) → resize_back → dynamics (dynamics.masks)

Every stage runs inside a ``cellpose.profiling.stage`` so that ``--profile`` can attribute time and memory.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .config import DynamicsOptions, EvalOptions, NormalizeOptions, TilingOptions
from .dynamics import compute_masks as _compute_masks
from .dynamics import flows_to_rgb
from . import variants as _variants
from .inference.prepared import PreparedNet
from .inference.run_net import run_tiled
from .net.weights import (DEFAULT_BUNDLED_MODEL, bundled_model_path, diam_mean_for, is_builtin_name, load_weights,
                           resolve_model)
from .preprocess.channels import convert_image
from .preprocess.normalize import normalize_image
from .preprocess.resize import resize_image
from .profiling import annotate, stage
from .sizing import estimate_prepared, whole_image_diameter

__all__ = ["CellposeModel", "choose_device", "normalize_options_from"]

logger = logging.getLogger(__name__)

_NORMALIZE_KEYS = {
    "normalize": "normalize",
    "percentile": "percentile",
    "invert": "invert",
    "lowhigh": "lowhigh",
    "sharpen_radius": "sharpen_radius",
    "smooth_radius": "smooth_radius",
    "tile_norm_blocksize": "tile_norm_blocksize",
}


def choose_device(gpu: bool = False, device=None) -> torch.device:
    """Return the torch device to run the network on.

    Parameters
    ----------
    gpu : bool
        Ask for CUDA; falls back to the CPU (with a warning) when CUDA is not available.
    device : str or torch.device, optional
        Explicit device; wins over ``gpu``.
    """
    if device is not None:
        return torch.device(device)
    if gpu and torch.cuda.is_available():
        return torch.device("cuda")
    if gpu:
        logger.warning("CUDA is not available: running on the CPU")
    return torch.device("cpu")


def normalize_options_from(normalize=True, *, invert: bool = False) -> NormalizeOptions:
    """Build ``NormalizeOptions`` from upstream's ``normalize`` argument (bool or dict).

    Unlike upstream, ``invert`` is honoured also when ``normalize`` is a dict (unless the dict sets it).
    """
    if isinstance(normalize, NormalizeOptions):
        return normalize
    if isinstance(normalize, dict):
        unknown = set(normalize) - set(_NORMALIZE_KEYS) - {"norm3D", "tile_norm_smooth3D"}
        if unknown:
            raise ValueError(f"unknown normalize option(s): {sorted(unknown)}")
        kwargs = {_NORMALIZE_KEYS[k]: v for k, v in normalize.items() if k in _NORMALIZE_KEYS}
        kwargs.setdefault("invert", invert)
        if kwargs.get("percentile") is not None:
            kwargs["percentile"] = tuple(float(p) for p in kwargs["percentile"])
        else:
            kwargs.pop("percentile", None)
        return NormalizeOptions(**kwargs)
    return NormalizeOptions(normalize=bool(normalize), invert=bool(invert))


class CellposeModel:
    """A CPnet with the Cellpose 3 inference pipeline around it.

    Parameters
    ----------
    gpu : bool
        Run the network on CUDA when available.
    pretrained_model : str or path-like
        A built-in model name (``"cyto3"``, ``"nuclei"``, ...) resolved through the cache/download path, or
        the path of a weight file (upstream format).
    model_type : str, optional
        Upstream alias of ``pretrained_model`` for built-in names.
    diam_mean : float
        Mean diameter for built-in names other than ``nuclei`` (17); custom files carry their own.
    device : str or torch.device, optional
        Explicit torch device.
    preset : {"exact", "fast"} or NetVariant, optional
        Network variant of every ``eval`` (see ``cellpose.variants``); default: the ``variants.use(...)``
        scope at eval time, else ``"exact"``.
    precision, backend, channels_last, skip_empty : optional
        Settings overriding the preset (``None``: the preset's); ``eval`` takes the same keywords.
    """

    def __init__(self, gpu: bool = False, pretrained_model="cyto3", model_type: Optional[str] = None,
                 diam_mean: float = 30.0, device=None, nchan: int = 2, *, preset=None,
                 precision: Optional[str] = None, backend: Optional[str] = None,
                 channels_last: Optional[bool] = None, skip_empty: Optional[bool] = None):
        self.variant_settings = _variants.explicit_settings(
            preset=preset, precision=precision, backend=backend, channels_last=channels_last, skip_empty=skip_empty)
        if nchan != 2:
            raise ValueError(f"only nchan=2 models are supported, got nchan={nchan}")
        self.device = choose_device(gpu, device)
        name = model_type if model_type is not None else pretrained_model
        self.pretrained_model = str(resolve_model(name))
        #: the bundled model, whose int8 masks were measured against exact (GUIDELINES §7): only for it does
        #: ``precision="auto"`` (and ``--preset fast``) pick int8 on OpenVINO
        self.int8_measured = _same_file(self.pretrained_model, bundled_model_path(DEFAULT_BUNDLED_MODEL))
        self.net, info = load_weights(self.pretrained_model, device=self.device)
        self.net.eval()
        file_diam = float(self.net.diam_mean.item())
        self.diam_mean = diam_mean_for(str(name), default=diam_mean) if is_builtin_name(str(name)) else file_diam
        self.diam_labels = float(self.net.diam_labels.item())
        # upstream keeps a weight file's diam_mean/diam_labels as float32 scalars, so for any file loaded by path
        # its rescale and rescaled sizes are float32 arithmetic (spec §2.3); built-in names use Python floats
        self._float32_rescale = not is_builtin_name(str(name))
        logger.info("loaded %s (diam_mean %.1f, diam_labels %.1f) on %s", self.pretrained_model,
                    self.diam_mean, self.diam_labels, self.device)
        self._prepared, self._announced = {}, set()
        if self.variant_settings:
            self.resolve_variant()

    def resolve_variant(self, **settings):
        """The network variant an ``eval`` with these keywords would use, ``auto`` resolved for this device.

        Keywords (``preset``, ``precision``, ``backend``, ``channels_last``, ``skip_empty``; ``None`` = not
        given) win over the model's own, which win over the ``variants.use`` scope.

        Returns
        -------
        requested, resolved : NetVariant
            Before and after resolving ``auto`` (``resolved`` raises ``VariantUnavailableError`` first when
            the device cannot run it).
        """
        merged = {**self.variant_settings, **_variants.explicit_settings(**settings)}
        requested = _variants.select(**merged)
        resolved = _variants.resolve(requested, device=self.device, int8_measured=self.int8_measured,
                                     announce=requested not in self._announced)
        self._announced.add(requested)
        return requested, resolved

    def network_for(self, variant) -> torch.nn.Module:
        """The callable network of a resolved variant: the model's own for exact, else a cached ``PreparedNet``."""
        if variant.is_exact_network:
            return self.net
        key = replace(variant, skip_empty=False, channels_last=variant.channels_last and variant.backend != "openvino")
        if key not in self._prepared:
            self._prepared[key] = PreparedNet(self.net, variant=key, device=self.device)
        return self._prepared[key]

    def rescale_for(self, diameter: Optional[float], rescale: Optional[float] = None) -> float:
        """Return the image scale factor for ``diameter`` (spec §2.3).

        A ``numpy.float32`` for weight files loaded by path (float32 division, as upstream), else a float.
        """
        if diameter is not None and diameter > 0:
            denominator = diameter
        elif rescale is not None and rescale > 0:
            return float(rescale)
        else:
            denominator = self.diam_labels
        if self._float32_rescale:
            return np.float32(self.diam_mean) / np.float32(denominator)
        return float(self.diam_mean) / float(denominator)

    def eval(self, x, batch_size: int = 8, channels: Optional[Sequence[int]] = None,
             channel_axis: Optional[int] = None, normalize=True, invert: bool = False,
             diameter: Optional[float] = None, flow_threshold: float = 0.4, cellprob_threshold: float = 0.0,
             min_size: int = 15, niter: Optional[int] = None, augment: bool = False, resample: bool = True,
             tile_overlap: float = 0.1, bsize: int = 224, compute_masks: bool = True,
             max_size_fraction: float = 0.4, interp: bool = True, rescale: Optional[float] = None,
             dynamics: str = "exact", *, preset=None, precision: Optional[str] = None,
             backend: Optional[str] = None, channels_last: Optional[bool] = None,
             skip_empty: Optional[bool] = None, dynamics_chunk: int = 0):
        """Segment one image (or a list of images).

        Parameters
        ----------
        x : ndarray (Ly, Lx), (Ly, Lx, C) or (C, Ly, Lx), any real dtype; or a list of them
            The image. ``channel_axis`` says where the channels are when it is ambiguous.
        channels : [int, int], optional
            1-based ``[channel to segment, nuclear channel]``; 0 = grayscale / none. Default ``[0, 0]``.
        diameter : float, optional
            Object diameter in pixels; ``None`` → the model's own (``diam_labels``); 0 → estimated from the
            image (``cellpose.sizing``; logged, and recorded in the profile as ``diameter_estimate``).
        bsize, tile_overlap, batch_size, augment
            Tiling of the network pass (see ``config.TilingOptions``).
        flow_threshold, cellprob_threshold, min_size, niter, max_size_fraction, interp
            Dynamics (see ``config.DynamicsOptions``).
        dynamics : {"exact", "fast"}
            Implementation of the dynamics (``DynamicsOptions.impl``); another value raises ValueError.
        dynamics_chunk : int
            Rows per chunk of the fast dynamics (``DynamicsOptions.chunk_rows``; 0 = off, > 0 needs
            ``dynamics="fast"``).
        preset, precision, backend, channels_last, skip_empty : optional
            Network variant of this call (see ``cellpose.variants``; ``None``: the model's, else the scope's).
            Unknown values raise ``variants.UnknownVariantError`` listing the valid ones.

        Returns
        -------
        masks : ndarray (Ly, Lx) uint16, or uint32 with 65,536 labels or more
        flows : list
            ``[rgb (Ly, Lx, 3) uint8, dP (2, Ly, Lx) float32, cellprob (Ly, Lx) float32]``.
        styles : ndarray (256,) float32
        """
        options = EvalOptions(
            channels=None if channels is None else tuple(int(c) for c in channels),
            channel_axis=channel_axis, diameter=diameter, resample=resample, compute_masks=compute_masks,
            normalize=normalize_options_from(normalize, invert=invert),
            tiling=TilingOptions(bsize=int(bsize), tile_overlap=float(tile_overlap), batch_size=int(batch_size),
                                 augment=bool(augment)),
            dynamics=DynamicsOptions(niter=niter, cellprob_threshold=float(cellprob_threshold),
                                     flow_threshold=flow_threshold, min_size=int(min_size),
                                     max_size_fraction=float(max_size_fraction), interp=bool(interp),
                                     impl=dynamics, chunk_rows=dynamics_chunk))
        variant = _variants.explicit_settings(preset=preset, precision=precision, backend=backend,
                                              channels_last=channels_last, skip_empty=skip_empty)
        if isinstance(x, (list, tuple)):
            results = [self.eval_options(xi, options=options, rescale=rescale, variant=variant) for xi in x]
            return tuple(list(r) for r in zip(*results))
        return self.eval_options(x, options=options, rescale=rescale, variant=variant)

    def eval_options(self, x, *, options: EvalOptions, rescale: Optional[float] = None,
                     variant: Optional[dict] = None):
        """Segment one image with ready-made options; see ``eval`` for the outputs.

        ``variant`` is a dict of network-variant keywords (see ``resolve_variant``); default: the model's.
        """
        return self.eval_resolved(x, options=options, rescale=rescale, variant=variant)[0]

    def eval_resolved(self, x, *, options: EvalOptions, rescale: Optional[float] = None,
                      variant: Optional[dict] = None):
        """``eval_options`` that also returns the options it used: ``diameter=0`` replaced by the estimate.

        Returns
        -------
        result : tuple
            ``(masks, flows, styles)`` as ``eval``.
        options : EvalOptions
            ``options`` with the diameter actually used (``None``: the model's own).
        """
        _check_options(options)
        requested, resolved = self.resolve_variant(**(variant or {}))
        annotate("network_variant", _variants.describe(requested, resolved))
        with stage("eval") as s:
            img = self._prepare(x, options)
            estimated = options.diameter == 0
            if estimated:
                options, _ = self.resolve_diameter(img, options, variant=resolved, prepared=True)
            shape = img.shape[:2]
            if not np.any(img):
                return _empty_result(shape, x), options
            s.add(pixels=int(shape[0]) * int(shape[1]))
            held = [img]
            del img
            masks, y, style = self._segment(held, options=options, rescale=rescale, variant=resolved)
            if estimated and rescale is None and options.diameter is not None:
                masks, y, style, options = self._refine(x, (masks, y, style), options=options, variant=resolved)
            s.add(cells=int(masks.max()) if masks.size else 0)
            with stage("flows_rgb"):
                rgb = flows_to_rgb(y[:2])
        return (masks, [rgb, y[:2], y[2]], style), options

    def _segment(self, held: list, *, options: EvalOptions, rescale, variant):
        """Network, resize back and masks of the prepared image in the one-item list ``held``.

        The list is emptied after the network pass, so the (Ly, Lx, 2) input is freed before the dynamics.

        Returns
        -------
        masks : ndarray (Ly, Lx) uint16 or uint32
        y : ndarray (3, Ly, Lx) float32
            dY, dX, cellprob (at the rescaled size when ``options.resample`` is False).
        style : ndarray (256,) float32
        """
        img = held.pop()
        shape = img.shape[:2]
        scale = self.rescale_for(options.diameter, rescale)
        y, style = self._network(img, scale=scale, options=options, variant=variant)
        del img
        if options.resample and scale != 1.0:
            y = _resize_back(y, shape)
        return self._masks(y, scale=scale, shape=shape, options=options), y, style

    def _refine(self, x, result, *, options: EvalOptions, variant):
        """Segment again at the median diameter of the whole image's masks where it differs from the estimate.

        Returns ``(masks, y, style, options)``: ``result`` and ``options`` unchanged, or those of the second pass
        at the diameter of ``_measured_diameter``. ``x`` is prepared again (the prepared image does not depend
        on the diameter, and converting and normalising cost little next to the network) rather than held
        through the first pass's dynamics.
        """
        refined = _measured_diameter(result[0], options)
        if refined is options:
            return (*result, options)
        with stage("size_refine"):
            held = [self._prepare(x, refined)]
            return (*self._segment(held, options=refined, rescale=None, variant=variant), refined)

    def prepare(self, x, options: EvalOptions) -> np.ndarray:
        """The (Ly, Lx, 2) float32 network input of ``x``: channels converted, then normalised."""
        return self._prepare(x, options)

    def resolve_diameter(self, x, options: EvalOptions, *, variant=None, prepared: bool = False,
                         refine: bool = False):
        """``options`` with ``diameter=0`` replaced by the size estimated from ``x`` (``cellpose.sizing``).

        The estimate is logged and recorded as the profile annotation ``diameter_estimate``; without one (no
        objects found) the diameter becomes ``None``, the model's own. With ``refine``, ``x`` is then
        segmented at the estimate and the diameter becomes the median of its masks where that differs by more
        than ``sizing.REFINE_TOLERANCE`` (what ``eval(diameter=0)`` ends at; the masks are not kept).

        Returns
        -------
        options : EvalOptions
        estimate : SizeEstimate or None
            None when ``options.diameter`` was not 0 (nothing to estimate).
        """
        if options.diameter != 0:
            return options, None
        img = x if prepared else self._prepare(x, options)
        with stage("size_estimate"):
            est = estimate_prepared(self, img, options=options, variant=variant)
        annotate("diameter_estimate", est.as_dict())
        if est.diameter is None:
            logger.info("diameter 0: no objects found to estimate the size; using the model's diameter %.1f",
                        self.diam_labels)
            return replace(options, diameter=None), est
        logger.info("diameter 0: estimated median object diameter %.1f px (%d scales, %.1f s)", est.diameter,
                    len(est.candidates), est.seconds)
        options = replace(options, diameter=float(est.diameter))
        if refine:
            variant = variant if variant is not None else self.resolve_variant()[1]
            with stage("size_refine"):
                masks, _, _ = self._segment([img], options=options, rescale=None, variant=variant)
            options = _measured_diameter(masks, options)
        return options, est

    def masks_at_scale(self, img: np.ndarray, *, scale: float, options: EvalOptions, variant=None) -> np.ndarray:
        """Masks of a prepared image (``prepare``) resized by ``scale``, at the rescaled size (no resample)."""
        if variant is None:
            variant = self.resolve_variant()[1]
        y, _ = self._network(img, scale=scale, options=options, variant=variant)
        options = replace(options, resample=False, compute_masks=True)
        return self._masks(y, scale=scale, shape=y.shape[1:], options=options)

    def _prepare(self, x, options: EvalOptions) -> np.ndarray:
        x = _as_numpy(x)
        channels = options.channels if options.channels is not None else (0, 0)
        with stage("convert") as s:
            img = convert_image(x, channels=channels, channel_axis=options.channel_axis)
            s.add(pixels=int(img.shape[0] * img.shape[1]))
        norm = options.normalize
        if norm.normalize or norm.lowhigh is not None:
            with stage("normalize"):
                img = normalize_image(img, options=norm, inplace=True)
        elif norm.invert:
            raise ValueError("invert=True needs normalisation (normalize=False was given)")
        return img

    def _network(self, img: np.ndarray, *, scale: float, options: EvalOptions, variant=_variants.NetVariant()):
        if scale != 1.0:
            with stage("resize"):
                # int(L * scale) in the precision of scale (float32 for weight files, as upstream)
                Lyr, Lxr = (int(type(scale)(n) * scale) for n in img.shape[:2])
                if Lyr < 1 or Lxr < 1:
                    raise ValueError(f"diameter gives a rescaled image of {Lyr}x{Lxr} pixels")
                img = resize_image(img, Ly=Lyr, Lx=Lxr)
        return run_tiled(self.network_for(variant), img, tiling=options.tiling, device=self.device,
                         skip_empty=variant.skip_empty)

    def _masks(self, y: np.ndarray, *, scale: float, shape, options: EvalOptions) -> np.ndarray:
        if not options.compute_masks:
            return np.zeros(shape, np.uint16)
        dyn = options.dynamics
        niter = dyn.niter
        if not niter:
            niter = 200 if (not options.resample or scale == 1.0) else _niter_for(scale)
        with stage("dynamics"):
            masks = _compute_masks(y[:2], y[2], niter=int(niter), cellprob_threshold=dyn.cellprob_threshold,
                                   flow_threshold=dyn.flow_threshold, min_size=dyn.min_size,
                                   max_size_fraction=dyn.max_size_fraction, interp=dyn.interp, shape=tuple(shape),
                                   impl=dyn.impl, chunk_rows=dyn.chunk_rows)
        return masks


def _measured_diameter(masks: np.ndarray, options: EvalOptions) -> EvalOptions:
    """``options`` at the median diameter of ``masks`` (segmented at ``options.diameter``) where it differs.

    The window estimate describes one window; the masks of a pass over the whole image measure every object
    (``sizing.whole_image_diameter``). A change is logged and recorded as the profile annotation
    ``diameter_refined``; otherwise ``options`` itself is returned.
    """
    estimate = float(options.diameter)
    refined = whole_image_diameter(masks, estimate)
    if refined is None:
        return options
    logger.info("diameter 0: the whole image's masks have a median diameter of %.1f px against the window's "
                "%.1f px; using %.1f px", refined, estimate, refined)
    annotate("diameter_refined", {"window": round(estimate, 3), "diameter": round(refined, 3)})
    return replace(options, diameter=refined)


def _empty_result(shape, x):
    """Outputs for an image that is constant or all NaN (zero after normalisation): no objects, no network."""
    logger.warning("the image is constant or all NaN (shape %s): no objects", tuple(np.shape(x)))
    return (np.zeros(shape, np.uint16), [np.zeros(shape + (3,), np.uint8), np.zeros((2,) + shape, np.float32),
                                         np.zeros(shape, np.float32)], np.zeros(256, np.float32))


def _niter_for(scale) -> int:
    """Euler steps for a rescaled image: ``(1 / scale) * 200`` in the precision of ``scale``, truncated."""
    kind = np.float32 if isinstance(scale, np.float32) else np.float64
    return int((kind(1.0) / kind(scale)) * kind(200.0))


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype.kind not in "uifb":
        raise TypeError(f"image must be a real-valued array, got dtype {x.dtype}")
    return x


def _check_options(options: EvalOptions) -> None:
    tiling = options.tiling
    if tiling.bsize < 16 or tiling.bsize % 16:
        raise ValueError(f"bsize must be a positive multiple of 16, got {tiling.bsize}")
    if tiling.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {tiling.batch_size}")
    if not 0.0 <= tiling.tile_overlap < 1.0:
        raise ValueError(f"tile_overlap must be in [0, 1), got {tiling.tile_overlap}")
    d = options.diameter
    if d is not None and (isinstance(d, bool) or not np.isfinite(d) or d < 0):
        raise ValueError(f"diameter must be a number of pixels >= 0 (0 = estimate; None = the model's), got {d!r}")
    if options.channels is not None and len(options.channels) != 2:
        raise ValueError(f"channels must be [chan, chan2], got {list(options.channels)}")


def _resize_back(y: np.ndarray, shape) -> np.ndarray:
    """Resize the (3, Lyr, Lxr) network output to (3, Ly, Lx), channel by channel."""
    with stage("resize_back"):
        out = np.empty((y.shape[0], shape[0], shape[1]), np.float32)
        for c in range(y.shape[0]):
            out[c] = resize_image(y[c], Ly=shape[0], Lx=shape[1])
        return out


def with_tiling(options: EvalOptions, **changes) -> EvalOptions:
    """Return ``options`` with some tiling fields replaced (helper for the CLI and benchmarks)."""
    return replace(options, tiling=replace(options.tiling, **changes))


def _same_file(a, b) -> bool:
    """True when paths ``a`` and ``b`` name the same existing file."""
    try:
        return Path(a).samefile(b)
    except OSError:
        return False
