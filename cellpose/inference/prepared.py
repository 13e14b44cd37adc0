"""The network prepared for one variant (precision, backend, layout) on one device.

``PreparedNet`` keeps CPnet's calling protocol, ``net(x) -> (out, style, ...)`` with ``x`` a float32
(B, C, ly, lx) tensor on the device, so ``run_net`` calls it exactly like the plain network:

* precision: ``torch.autocast`` (bf16 on CPU/CUDA, fp16 on CUDA). The weights stay float32 and the input
  stays the float32 batch that was sent to the device: no per-tile dtype copies on the host. Outputs are
  returned in the compute dtype; ``run_net`` converts them to float32 on the host. ``int8`` (OpenVINO only)
  quantises the converted model (``int8.quantise``; activation ranges shipped, cached or calibrated:
  ``int8_ranges``), which is then cached on disk like the conversion.
* channels_last: a copy of the network in NHWC layout (the model's own network is left as it is). OpenVINO
  chooses its own layout, so there it has no effect.
* backends ``compile`` and ``openvino`` build one static-shape callable per (tile shape, batch, precision),
  cached on this object (which lives on the ``CellposeModel``); building it, and its first call, run inside
  the profiling stage ``network.compile``. A short last batch is zero-padded to the cached batch size
  instead of triggering another build. OpenVINO takes batches in chunks of at most ``OPENVINO_BATCH``
  tiles. The OpenVINO conversion is also cached on disk, across processes (``ov_cache``).
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import logging
import warnings
from typing import Callable, Dict, Tuple

import numpy as np
import torch

from ..profiling import stage
from ..variants import OPENVINO_MISSING, NetVariant, VariantUnavailableError, native_bf16
from . import int8, int8_ranges
from .ov_cache import converted_model

__all__ = ["PreparedNet", "import_openvino", "openvino_model"]

logger = logging.getLogger(__name__)

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}

#: Largest batch one OpenVINO call takes; bigger batches are run in chunks. Per tile, OpenVINO bf16 took the
#: same time at batch 4, 8 and 16 (72-74 ms for CPnet on 224² tiles, AMD EPYC, flags avx2 avx512f
#: avx512_bf16, 2 cores), so the smaller batch only shrinks the zero padding of a short last batch (at most 3
#: wasted tiles instead of 7) and the memory of one call.
OPENVINO_BATCH = 4


class PreparedNet:
    """A network callable for one resolved ``NetVariant`` on one device.

    Parameters
    ----------
    net : torch.nn.Module
        CPnet (or any module with its protocol), float32, in eval mode, on ``device``.
    variant : NetVariant
        Resolved (no ``auto``) variant; ``skip_empty`` is handled by ``run_net``, not here.
    device : torch.device or str

    Notes
    -----
    ``prepared(x)`` takes ``x : Tensor (B, C, ly, lx) float32`` on ``device`` and returns
    ``(out (B, nout, ly, lx), style (B, S))`` in the compute dtype.
    """

    def __init__(self, net: torch.nn.Module, *, variant: NetVariant, device):
        if "auto" in (variant.precision, variant.backend):
            raise ValueError(f"PreparedNet needs a resolved variant, got {variant}")
        if variant.precision == "int8" and variant.backend != "openvino":
            raise ValueError(f"precision int8 runs only on backend openvino, got {variant}")
        self.net, self.variant, self.device = net, variant, torch.device(device)
        self._channels_last = variant.channels_last and variant.backend != "openvino"
        self._module = copy.deepcopy(net).to(memory_format=torch.channels_last) if self._channels_last else net
        self._static: Dict[tuple, Callable] = {}
        self._batch: Dict[tuple, int] = {}
        self.builds = 0

    def parameters(self):
        """Parameters of the underlying network (its device is the device of the pass)."""
        return self.net.parameters()

    def __call__(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        with self._autocast():
            if self.variant.backend == "torch":
                y = self._module(self._layout(x))
                return y[0], y[1]
            return self._static_call(x)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the network's memory layout (NHWC for channels_last)."""
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last else x

    def _autocast(self):
        dtype = _AUTOCAST.get(self.variant.precision)
        if dtype is None or self.variant.backend == "openvino":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _static_call(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Run the static-shape callable on ``x``; OpenVINO takes it in chunks of at most ``OPENVINO_BATCH``."""
        step = OPENVINO_BATCH if self.variant.backend == "openvino" else x.shape[0]
        if x.shape[0] <= step:
            return self._static_batch(x)
        parts = [self._static_batch(x[i:i + step]) for i in range(0, x.shape[0], step)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _static_batch(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Run the cached static-shape callable, zero-padding a short batch to its batch size."""
        tile = tuple(x.shape[1:])
        nb = x.shape[0]
        batch = max(self._batch.get(tile, 0), nb)
        if batch > nb:
            x = torch.cat([x, x.new_zeros((batch - nb,) + tile)])
        x = self._layout(x)
        key = (tile, batch, self.variant.precision)
        fn = self._static.get(key)
        if fn is None:
            with stage("network.compile") as s:
                fn = self._build(x)
                out, sty = fn(x)
                s.add(builds=1)
            self._static[key], self._batch[tile] = fn, batch
            self.builds += 1
        else:
            out, sty = fn(x)
        return out[:nb], sty[:nb]

    def _build(self, x: torch.Tensor) -> Callable:
        logger.info("building %s network for batch %s (%s)", self.variant.backend, tuple(x.shape),
                    self.variant.precision)
        if self.variant.backend == "compile":
            return _compiled(self._module)
        return _openvino_callable(self._module, x, precision=self.variant.precision)


def _compiled(module: torch.nn.Module) -> Callable:
    """``torch.compile`` (inductor, static shapes) returning (out, style)."""
    compiled = torch.compile(module, dynamic=False)

    def run(x):
        y = compiled(x)
        return y[0], y[1]

    return run


class _TwoOutputs(torch.nn.Module):
    """Wrap a CPnet so that it returns only (out, style), for export."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        y = self.net(x)
        return y[0], y[1]


def import_openvino():
    """Import ``openvino`` or raise ``VariantUnavailableError`` saying how to install it."""
    try:
        return importlib.import_module("openvino")
    except ImportError as err:
        raise VariantUnavailableError(OPENVINO_MISSING) from err


def openvino_model(module: torch.nn.Module, x: torch.Tensor):
    """The float32 OpenVINO model of ``module``, converted here or read from the IR cache (``ov_cache``).

    Parameters
    ----------
    module : torch.nn.Module
        CPnet (any weights).
    x : Tensor (B, C, ly, lx)
        Example input: its shape becomes the model's static input shape.

    Returns
    -------
    openvino.Model
        Two outputs: the network output (B, nout, ly, lx) and the style (B, S).
    """
    ov = import_openvino()
    example = x.detach().to("cpu", torch.float32).clone()

    def convert():
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # trace once without torch's re-run check (that check alone took ~25 s for CPnet on 2 cores)
            traced = torch.jit.trace(_TwoOutputs(module), example, check_trace=False)
            return ov.convert_model(traced, example_input=example, input=[tuple(example.shape)])

    return converted_model(module, tuple(example.shape), convert, ov)


def _openvino_callable(module: torch.nn.Module, x: torch.Tensor, *, precision: str) -> Callable:
    """Convert ``module`` for input shape ``x.shape`` (``openvino_model``), quantise it for int8, and compile
    it for the CPU."""
    ov = import_openvino()
    model = openvino_model(module, x)
    if precision == "int8":
        fp32 = model
        model = converted_model(module, tuple(x.shape), ov=ov, tag=int8.RECIPE,
                                convert=lambda: _quantised(module, fp32, ov, batch=x.shape[0]))
    compiled = ov.Core().compile_model(model, "CPU", openvino_config(precision))

    def run(xb):
        res = compiled(xb.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(np.array(res[0])), torch.from_numpy(np.array(res[1]))

    run.compiled = compiled
    return run


def _quantised(module: torch.nn.Module, fp32, ov, *, batch: int):
    """The int8 model of the float32 conversion ``fp32``, with ranges shipped, cached or calibrated here."""
    ranges = int8_ranges.ranges_for(module, fp32, ov, batch=batch, marker=int8.uses_second_channel(module),
                                    config=openvino_config("fp32"))
    return int8.quantise(fp32, ranges)


def openvino_config(precision: str) -> dict:
    """OpenVINO CPU settings: the precision, torch's thread count, and no pinning of threads to cores.

    Parameters
    ----------
    precision : {"fp32", "bf16", "int8"}
        For ``int8`` the quantised convolutions run in int8 whatever the hint; the layers left in float run in
        bf16 where the CPU has it natively (``variants.native_bf16``: 40.5 against 45.5 ms per 224² tile, AMD
        EPYC, flags avx2 avx512f avx512_bf16, 2 cores), else in float32.

    Returns
    -------
    dict
        ``compile_model`` properties: ``INFERENCE_PRECISION_HINT``, ``INFERENCE_NUM_THREADS`` (torch's current
        thread count) and ``ENABLE_CPU_PINNING`` (False).

    Notes
    -----
    OpenVINO pins its threads to cores by default, choosing the cores in each process on its own. Two Dask
    workers of one thread each were then pinned to the same core and ran at half speed (1024² network pass,
    AMD EPYC, flags avx2 avx512f avx512_bf16, 2 cores: 9.85 s each when run together against 4.98 s alone;
    unpinned 4.95 s together).
    """
    hint = _OV_PRECISION["bf16" if native_bf16() else "fp32"] if precision == "int8" else _OV_PRECISION[precision]
    return {"INFERENCE_PRECISION_HINT": hint,
            "INFERENCE_NUM_THREADS": int(torch.get_num_threads()), "ENABLE_CPU_PINNING": False}
