"""Post-training int8 quantisation of the converted network for OpenVINO (``--precision int8``).

OpenVINO runs a convolution in int8 when both of its inputs pass through a ``FakeQuantize`` node. This module
inserts those nodes into the float32 model that ``ov_cache`` converts:

* activations: one range per convolution input, 256 levels. Most of CPnet's convolutions follow a ReLU, so
  their inputs are >= 0 and get ``[0, max]``; the 1×1 projections of the residual blocks (batch norm, no ReLU)
  see signed values and get ``[-m, m·127/128]`` (signed int8 with an exact zero). ``max`` and ``m`` are the
  largest values seen on the calibration tiles, rounded up to float16, so no calibration value is clipped and
  the last bits of the float32 passes (which depend on the CPU's kernels and threads) do not reach the model;
* weights: symmetric per output channel, ``[-max|w|, max|w|]``, 255 levels;
* left in float: every convolution that reads the network input (its weights have as many input channels as the
  network; in CPnet the first block's convolution and projection, which see the raw image) and the last one,
  which writes the flows and the cell probability.

Calibration runs the float32 model on ``CALIBRATION_TILES`` generated tiles of every kind of
``cellpose.data.sets`` (seeds 7000+, disjoint from the training, validation and held-out seeds), normalised
as ``eval`` normalises by default: DNA in the first channel and, in a second channel, a generated cell marker
only if the network was trained with something there. That is read from the weights: the running variance of
the network's first batch norm, which sees the input channels, is 0 for a channel that was always blank (as in
the bundled nuclear model, trained with ``--chan2 0``). Feeding such a channel a marker would blow its
normalised value up by about 1/sqrt(eps) and widen every range downstream ~1000-fold, which ruins int8. The
quantised model depends only on the weights, the tile shape and ``RECIPE``, so ``ov_cache`` keeps it on disk
beside the float32 conversion. The ranges do not depend on the batch; ``int8_ranges`` ships them for the bundled
model and caches them on disk for other weights, so calibration runs once per weights and tile size.

Measured (AMD EPYC, flags avx2 avx512f avx512_bf16 avx512_vnni, 2 cores, CPnet on batches of 4 tiles of
224², bundled model): 40.5 ms per tile against 75.7 for bf16 OpenVINO and 152 for float32 OpenVINO; with the
kernels capped at AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``) 83 ms against 157 for float32 OpenVINO. Masks against
the exact path: GUIDELINES §7.
"""
from __future__ import annotations

import logging
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..config import NormalizeOptions
from ..preprocess.normalize import normalize_image

__all__ = ["CALIBRATION_SEED", "CALIBRATION_TILES", "RECIPE", "activation_range", "activation_ranges", "calibrate",
           "calibration_tiles", "convolution_shapes", "insert_fake_quantize", "quantise", "uses_second_channel"]

logger = logging.getLogger(__name__)

CALIBRATION_SEED = 7000
#: Names this quantisation recipe in the on-disk cache keys (quantised IR and ranges); change it whenever the
#: recipe or its calibration data (generator, normalisation, ``_tile``) changes.
RECIPE = "int8-4"
CALIBRATION_TILES = 24
_ACT_LEVELS = 256
_WEIGHT_LEVELS = 255


def calibration_tiles(shape: Sequence[int], *, n: int = CALIBRATION_TILES, seed: int = CALIBRATION_SEED,
                      marker: bool = False) -> np.ndarray:
    """Normalised tiles of generated images for calibrating a network with input ``shape``.

    Parameters
    ----------
    shape : sequence of int
        ``(B, C, ly, lx)``: the network's static input shape (B is ignored; C is 1 or 2).
    n : int
        Number of tiles.
    seed : int
        First scene seed; kind ``k`` uses ``seed + 100·k``.
    marker : bool
        Put a generated cell marker in channel 1 (C == 2); else channel 1 is zeros.

    Returns
    -------
    tiles : ndarray (n, C, ly, lx) float32
        Percentile-normalised (1st-99th) DNA in channel 0, then the marker or zeros.
    """
    from ..data import make_image
    from ..data.sets import KINDS

    nchan, ly, lx = (int(v) for v in shape[1:])
    names = sorted(KINDS)
    tiles = []
    for i in range(n):
        kind = KINDS[names[i % len(names)]]
        img, _ = make_image((2, ly, lx), seed=seed + 100 * (i % len(names)) + i // len(names),
                            diameter=kind.diameter, dna_level=kind.dna_level, defocus=kind.defocus,
                            culture=kind.culture)
        tiles.append(_tile(img, nchan, marker=marker))
    return np.stack(tiles)


def _tile(img: np.ndarray, nchan: int, *, marker: bool) -> np.ndarray:
    """(nchan, ly, lx) float32 from a generated (2, ly, lx) image: normalised DNA, then marker or zeros."""
    norm = normalize_image(np.moveaxis(img, 0, -1).astype(np.float32), options=NormalizeOptions())
    out = np.zeros((nchan,) + img.shape[1:], np.float32)
    out[0] = norm[..., 0]
    if nchan > 1 and marker:
        out[1] = norm[..., 1]
    return out


def uses_second_channel(module) -> bool:
    """Whether the network was trained with something in its second input channel.

    Parameters
    ----------
    module : torch.nn.Module
        CPnet: its first ``BatchNorm2d`` normalises the input channels (``nbase[0]`` of them).

    Returns
    -------
    bool
        True when the first ``BatchNorm2d`` has a running variance above 1e-8 in channel 1; False for a blank
        second channel, a single input channel, or no batch norm to read it from.
    """
    import torch

    norms = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if not norms or norms[0].num_features < 2 or norms[0].running_var is None:
        return False
    return bool(float(norms[0].running_var[1]) > 1e-8)


def _convolutions(model) -> list:
    """The ``Convolution`` nodes of an OpenVINO model, in ``get_ordered_ops`` (topological) order."""
    return [op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]


def convolution_shapes(model) -> List[List[int]]:
    """Weight shapes ``[out, in, ky, kx]`` of the model's convolutions, in the order ranges are given to them.

    Stored with saved ranges (``int8_ranges``), so that ranges are never given to a graph whose convolutions
    differ in number or order (a newer OpenVINO could order them otherwise).
    """
    return [[int(v) for v in conv.input_value(1).get_partial_shape().to_shape()] for conv in _convolutions(model)]


def activation_ranges(model, tiles: np.ndarray, ov, *, batch: int,
                      config: Optional[dict] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Smallest and largest value at the data input of every convolution, over ``tiles``.

    Parameters
    ----------
    model : openvino.Model
        Float32 model with a static input of batch ``batch`` (left unchanged: a clone gets the minimum and the
        maximum of every convolution input as extra scalar outputs, so no activation is copied out).
    tiles : ndarray (n, C, ly, lx) float32
        Any ``n >= 1``: a short last chunk is padded with repeats of its first tile, which leaves the minimum
        and maximum unchanged, so the ranges do not depend on ``batch``.
    ov : module
        The imported ``openvino`` package.
    batch : int
        The model's static batch size.
    config : dict, optional
        ``compile_model`` properties (threads, pinning); the precision hint is always float32.

    Returns
    -------
    lo, hi : ndarray (n_conv,) float64
        In the order of ``model.get_ordered_ops()``.
    """
    import openvino.opset13 as ops

    if len(tiles) < 1:
        raise ValueError("no calibration tiles")
    probe = model.clone()
    convs = _convolutions(probe)
    first = len(probe.outputs)
    for conv in convs:
        act, axes = conv.input_value(0), ops.constant(np.arange(4, dtype=np.int64))
        probe.add_outputs([ops.reduce_min(act, axes).output(0), ops.reduce_max(act, axes).output(0)])
    props = {**(config or {}), "INFERENCE_PRECISION_HINT": "f32"}
    compiled = ov.Core().compile_model(probe, "CPU", props)
    lo, hi = np.full(len(convs), np.inf), np.full(len(convs), -np.inf)
    for start in range(0, len(tiles), batch):
        res = compiled(_padded(tiles[start:start + batch], batch))
        seen = np.array([float(res[first + k]) for k in range(2 * len(convs))]).reshape(-1, 2)
        lo, hi = np.minimum(lo, seen[:, 0]), np.maximum(hi, seen[:, 1])
    return lo, hi


def _padded(chunk: np.ndarray, batch: int) -> np.ndarray:
    """``chunk`` (k <= batch tiles) filled up to ``batch`` tiles with repeats of its first tile."""
    if len(chunk) == batch:
        return chunk
    return np.concatenate([chunk, np.repeat(chunk[:1], batch - len(chunk), axis=0)])


def insert_fake_quantize(model, lo: np.ndarray, hi: np.ndarray) -> List[int]:
    """Put ``FakeQuantize`` on both inputs of every convolution but those left in float (in place).

    Parameters
    ----------
    model : openvino.Model
        Float32 model whose convolution weights are constants (as ``activation_ranges`` saw it).
    lo, hi : ndarray (n_conv,) float
        Activation ranges from ``activation_ranges``, in the same convolution order.

    Returns
    -------
    list of int
        Indices (in that order) of the convolutions that were quantised: all but those that read the model's
        input (as many weight input channels as the input has channels) and the last one.
    """
    convs = _convolutions(model)
    if len(lo) != len(convs):
        raise ValueError(f"{len(lo)} activation ranges for {len(convs)} convolutions")
    nchan = int(model.inputs[0].get_partial_shape()[1].get_length())
    weights = [_weights(conv) for conv in convs[:-1]]
    done = [i for i, w in enumerate(weights) if w.shape[1] != nchan]
    for i in done:
        _quantise_convolution(convs[i], weights[i], float(lo[i]), float(hi[i]))
    model.validate_nodes_and_infer_types()
    return done


def _weights(conv) -> np.ndarray:
    """The constant weights ``(out, in, ky, kx)`` of a convolution node; ValueError if they are not constant."""
    node = conv.input_value(1).get_node()
    if node.get_type_name() != "Constant":
        raise ValueError(f"convolution {conv.get_friendly_name()} has non-constant weights ({node.get_type_name()})")
    return node.get_data()


def activation_range(lo: float, hi: float) -> Tuple[float, float]:
    """FakeQuantize range of an activation seen in ``[lo, hi]``: ``[0, hi]`` when ``lo >= 0``, else signed int8
    ``[-m, m·127/128]`` with ``m = max(-lo, hi)`` (zero on a level); ``hi`` / ``m`` rounded up to float16."""
    if lo >= 0:
        return 0.0, _round_up(max(hi, 1e-6))
    m = _round_up(max(-lo, hi))
    return -m, m * 127.0 / 128.0


def _round_up(x: float) -> float:
    """The smallest float16 value >= ``x`` (as a Python float); ``x`` itself beyond float16's range."""
    if not x < 65504.0:
        return float(x)
    h = np.float16(x)
    if float(h) < x:
        h = np.nextafter(h, np.float16(np.inf))
    return float(h)


def _quantise_convolution(conv, w: np.ndarray, lo: float, hi: float) -> None:
    """FakeQuantize the data input of ``conv`` on its calibrated range and its weights ``w`` (its constant
    ``(out, in, ky, kx)``) per output channel."""
    import openvino.opset13 as ops

    low, high = activation_range(lo, hi)
    act = conv.input_value(0)
    conv.input(0).replace_source_output(ops.fake_quantize(act, *_consts(low, high), _ACT_LEVELS).output(0))
    amax = np.maximum(np.abs(w).reshape(w.shape[0], -1).max(axis=1), 1e-12).reshape((-1,) + (1,) * (w.ndim - 1))
    weights = conv.input_value(1)
    conv.input(1).replace_source_output(ops.fake_quantize(weights, *_consts(-amax, amax), _WEIGHT_LEVELS).output(0))


def _consts(low, high) -> tuple:
    """FakeQuantize's input_low, input_high, output_low, output_high constants (output range = input range)."""
    import openvino.opset13 as ops

    lo_c = ops.constant(np.asarray(low, np.float32))
    hi_c = ops.constant(np.asarray(high, np.float32))
    return lo_c, hi_c, lo_c, hi_c


def calibrate(model, ov, *, batch: int, marker: bool = False,
              config: Optional[dict] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Activation ranges of the float32 ``model`` on ``CALIBRATION_TILES`` generated tiles of its input shape.

    Parameters
    ----------
    model : openvino.Model
        Float32 conversion of the network with a static input ``(batch, C, ly, lx)``; left unchanged.
    ov : module
        The imported ``openvino`` package.
    batch : int
        The model's static batch size (the ranges do not depend on it).
    marker : bool
        Calibrate with a cell marker in the second channel (``uses_second_channel`` of the network).
    config : dict, optional
        ``compile_model`` properties for the calibration passes (threads, pinning).

    Returns
    -------
    lo, hi : ndarray (n_conv,) float64
        As ``activation_ranges``.

    Raises
    ------
    ValueError
        A range is not finite (the float32 network gives NaN or inf).
    """
    shape = tuple(model.inputs[0].get_partial_shape().to_shape())
    tiles = calibration_tiles(shape, n=CALIBRATION_TILES, marker=marker)
    lo, hi = activation_ranges(model, tiles, ov, batch=batch, config=config)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError("int8 calibration gave non-finite activation ranges: the network's float32 pass produces "
                         "NaN or inf on normalised tiles, so it cannot be quantised")
    return lo, hi


def quantise(model, ranges: Tuple[np.ndarray, np.ndarray]):
    """A quantised copy of the float32 ``model`` (left unchanged).

    Parameters
    ----------
    model : openvino.Model
        Float32 conversion of the network with a static input.
    ranges : (lo, hi) of ndarray (n_conv,)
        Activation ranges from ``calibrate`` (or ``int8_ranges``: shipped, cached or calibrated).

    Returns
    -------
    openvino.Model
        The copy with ``FakeQuantize`` nodes (``insert_fake_quantize``).
    """
    lo, hi = ranges
    quantised = model.clone()
    done = insert_fake_quantize(quantised, lo, hi)
    logger.info("int8: %d of %d convolutions quantised", len(done), len(lo))
    return quantised
