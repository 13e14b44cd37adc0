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
* backends ``compile`` and ``openvino`` build one static-shape callable per (tile shape, batch, precision,
  inference streams), cached on this object (which lives on the ``CellposeModel``); building it, and its
  first call (one chunk per inference stream, at once), run inside the profiling stage ``network.compile``.
  A short last batch is zero-padded to the cached batch size instead of triggering another build. OpenVINO
  always takes chunks of ``OPENVINO_BATCH`` tiles, which run at once on their own inference streams (at most
  torch's thread count and ``OPENVINO_MAX_STREAMS``; a batch of several chunks gets a multi-stream build, a
  lone chunk runs on any build of its shape). The OpenVINO conversion is also cached on disk, across
  processes (``ov_cache``).
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import logging
import threading
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

#: The batch of every OpenVINO call: bigger batches are run in chunks, smaller ones zero-padded to it (so no
#: output depends on the batches a process saw before). Per tile, OpenVINO bf16 took the
#: same time at batch 4, 8 and 16 (72-74 ms for CPnet on 224² tiles, AMD EPYC, flags avx2 avx512f
#: avx512_bf16, 2 cores), so the smaller batch only shrinks the zero padding of a short last batch (at most 3
#: wasted tiles instead of 7) and the memory of one call.
OPENVINO_BATCH = 4
#: Most chunks run at once, on their own inference streams. Two were measured (``_OpenVINORun``: AMD EPYC, flags
#: avx2, 2 cores); each stream holds its own buffers (120-150 MB more peak RSS at 224² tiles there).
OPENVINO_MAX_STREAMS = 2


class PreparedNet:
    """A network callable for one resolved ``NetVariant`` on one device.

    Parameters
    ----------
    net : torch.nn.Module
        CPnet (or any module with its protocol), float32, in eval mode, on ``device``. The OpenVINO backend
        needs a CPnet: its export reads the encoder, decoder and output head (``_TwoOutputs``).
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
        """Run a cached static-shape callable on ``x`` in chunks of its batch size (OpenVINO: always
        ``OPENVINO_BATCH``), zero-padding a short last chunk."""
        parts, padded = self._chunks(x)
        fn, firsts = self._callable(padded)
        outs = firsts + _run_all(fn, padded[len(firsts):])
        return (torch.cat([o[0][:len(p)] for o, p in zip(outs, parts)]),
                torch.cat([o[1][:len(p)] for o, p in zip(outs, parts)]))

    def _chunks(self, x: torch.Tensor) -> Tuple[list, list]:
        """``x`` cut into chunks of the batch size for its tile shape, and the same chunks zero-padded to it.

        OpenVINO always runs ``OPENVINO_BATCH`` tiles, so a tile's output does not depend on what the process
        ran before (a resumed blockwise run gives the same bits as an uninterrupted one).
        """
        if self.variant.backend == "openvino":
            batch = OPENVINO_BATCH
        else:
            batch = max(self._batch.get(tuple(x.shape[1:]), 0), x.shape[0])
        parts = [x[i:i + batch] for i in range(0, x.shape[0], batch)]
        return parts, [self._layout(_zero_padded(p, batch)) for p in parts]

    def _callable(self, padded: list) -> Tuple[Callable, list]:
        """The cached callable for these chunks and ``[]``, or, when it has to be built (inside the stage
        ``network.compile``), the new callable and its outputs for the first ``streams`` chunks, run at once
        (so the first batch uses every stream, not one after the other).

        Several chunks want ``streams`` inference streams; a lone chunk takes any callable of its shape.
        """
        tile, batch, streams = tuple(padded[0].shape[1:]), padded[0].shape[0], self._streams(len(padded))
        key = (tile, batch, self.variant.precision, streams)
        fn = self._static.get(key)
        if fn is None and len(padded) == 1:
            fn = next((f for k, f in self._static.items() if k[:3] == key[:3]), None)
        if fn is not None:
            return fn, []
        with stage("network.compile") as s:
            fn = self._build(padded[0], streams=streams)
            firsts = _run_all(fn, padded[:streams])
            s.add(builds=1)
        self._static[key], self._batch[tile] = fn, batch
        self.builds += 1
        return fn, firsts

    def _streams(self, chunks: int) -> int:
        """Inference streams for a call of ``chunks`` chunks: one per chunk, at most torch's thread count and
        ``OPENVINO_MAX_STREAMS`` (OpenVINO only; 1 otherwise)."""
        if self.variant.backend != "openvino":
            return 1
        return min(int(torch.get_num_threads()), chunks, OPENVINO_MAX_STREAMS)

    def _build(self, x: torch.Tensor, *, streams: int = 1) -> Callable:
        logger.info("building %s network for batch %s (%s)", self.variant.backend, tuple(x.shape),
                    self.variant.precision)
        if self.variant.backend == "compile":
            return _compiled(self._module)
        return _openvino_callable(self._module, x, precision=self.variant.precision, streams=streams)


def _zero_padded(x: torch.Tensor, batch: int) -> torch.Tensor:
    """``x`` (n, ...) with zeros appended along the batch axis up to ``batch`` items."""
    return x if x.shape[0] >= batch else torch.cat([x, x.new_zeros((batch - x.shape[0],) + tuple(x.shape[1:]))])


def _run_all(fn: Callable, xs: list) -> list:
    """``fn`` on each equal-shape chunk of ``xs``: concurrently where ``fn`` can (``_OpenVINORun.many``)."""
    many = getattr(fn, "many", None)
    return many(xs) if many is not None else [fn(x) for x in xs]


def _compiled(module: torch.nn.Module) -> Callable:
    """``torch.compile`` (inductor, static shapes) returning (out, style)."""
    compiled = torch.compile(module, dynamic=False)

    def run(x):
        y = compiled(x)
        return y[0], y[1]

    return run


class _TwoOutputs(torch.nn.Module):
    """Wrap a CPnet for export: ``forward(x)`` returns only ``(out, style)``, and the style is a mean over the
    spatial axes (``ReduceMean``) instead of CPnet's ``avg_pool2d`` with a window of the deepest map's size.

    With no shape baked into the graph, a trace of a small probe (``_probe``) serves every input shape, and
    tracing costs a forward pass of one small tile instead of a full batch (2.6 s → 0.3 s; Intel Xeon, flags
    avx512_bf16 amx_bf16 amx_int8, 2 cores). The two poolings agree to float32 rounding.
    """

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        """``x (B, C, H, W) float32`` → ``out (B, nout, H, W) float32, style (B, nbase[-1]) float32``."""
        downs = self.net.downsample(x)
        style = self.net.unit_style(downs[-1].mean(dim=(2, 3)))
        return self.net.output(self.net.upsample(style, downs)), style


def _probe(module: torch.nn.Module, example: torch.Tensor) -> torch.Tensor:
    """A zero input of one small tile, to trace ``_TwoOutputs(module)`` on.

    Parameters
    ----------
    module : CPnet
        Its ``nbase`` gives the number of ×2 poolings (``len(nbase) - 2``).
    example : Tensor (B, C, ly, lx)
        The real input; only its channel count is used.

    Returns
    -------
    Tensor (1, C, s, s) float32
        Zeros; ``s`` is the smallest size that every pooling halves exactly, and at least 16.
    """
    if not hasattr(module, "nbase"):
        raise TypeError(f"the OpenVINO backend exports a CPnet, not {type(module).__name__}")
    side = max(16, 2 ** max(len(module.nbase) - 2, 0))
    return torch.zeros((1, example.shape[1], side, side), dtype=torch.float32)


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
            traced = torch.jit.trace(_TwoOutputs(module), _probe(module, example), check_trace=False)
            return ov.convert_model(traced, example_input=example, input=[tuple(example.shape)])

    return converted_model(module, tuple(example.shape), convert, ov)


def _openvino_callable(module: torch.nn.Module, x: torch.Tensor, *, precision: str,
                       streams: int = 1) -> "_OpenVINORun":
    """Convert ``module`` for input shape ``x.shape`` (``openvino_model``), quantise it for int8, and compile
    it for the CPU with ``streams`` inference streams (``openvino_config``)."""
    ov = import_openvino()
    model = openvino_model(module, x)
    if precision == "int8":
        fp32 = model
        model = converted_model(module, tuple(x.shape), ov=ov, tag=int8.RECIPE,
                                convert=lambda: _quantised(module, fp32, ov, batch=x.shape[0]))
    compiled = ov.Core().compile_model(model, "CPU", openvino_config(precision, streams=streams))
    return _OpenVINORun(compiled, ov, streams=streams)


class _OpenVINORun:
    """A compiled OpenVINO CPnet: ``run(x)`` for one chunk, ``run.many(xs)`` for several at once.

    ``many`` keeps up to ``streams`` chunks in flight, one per inference stream (each stream runs on
    ``threads / streams`` threads); two threads share one chunk's small layers poorly. Measured on an AMD
    EPYC (flags avx2 fma, 2 cores), chunks of 4 tiles of 224², one stream against two, alternating, medians
    of three: int8 bundled model on the exemplar (180 tiles), forward passes 21.56 → 20.30 s (1.06×);
    float32 OpenVINO, 223 → 195 ms per tile (1.14×). The second stream's buffers add 120-150 MB to the
    peak RSS (the exemplar through the CLI: 1,021-1,052 MB against 901 MB). A lone chunk on a two-stream
    build (the short last batch of an image) runs on one stream's threads; those figures include it.
    """

    def __init__(self, compiled, ov, *, streams: int):
        self.compiled, self.streams = compiled, streams
        self._ov, self._queue, self._lock = ov, None, threading.Lock()

    def __call__(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        res = self.compiled(_host(x))
        return torch.from_numpy(np.array(res[0])), torch.from_numpy(np.array(res[1]))

    def many(self, xs: list) -> list:
        """``[self(x) for x in xs]``, with up to ``streams`` of them running at once.

        Parameters
        ----------
        xs : list of Tensor (B, C, ly, lx) float32
            Chunks of the compiled shape.

        Returns
        -------
        list of (Tensor (B, nout, ly, lx), Tensor (B, S)) float32
            In the order of ``xs``.
        """
        if self.streams < 2 or len(xs) < 2:
            return [self(x) for x in xs]
        with self._lock:
            return self._in_flight([_host(x) for x in xs])

    def _in_flight(self, arrays: list) -> list:
        """Outputs of ``arrays`` run through the request queue; on a failure the queue is dropped, then raised."""
        if self._queue is None:
            self._queue = self._ov.AsyncInferQueue(self.compiled, self.streams)
            self._queue.set_callback(_collect)
        results, errors = [None] * len(arrays), []
        try:
            for k, a in enumerate(arrays):
                self._queue.start_async({0: a}, (results, errors, k))
            self._queue.wait_all()
        except Exception:
            self._drop_queue()
            raise
        if errors or any(r is None for r in results):
            self._drop_queue()
            raise RuntimeError("OpenVINO inference returned no output") from (errors[0] if errors else None)
        return results

    def _drop_queue(self) -> None:
        """Wait for every request of the queue (ignoring their errors), then drop it: a new one is made at the
        next call. Dropping it with requests still running could deadlock on their callbacks."""
        for request in self._queue:
            try:
                request.wait()
            except Exception:  # noqa: BLE001 - already being raised by the caller, or a follow-on of it
                logger.debug("OpenVINO request failed while draining the queue", exc_info=True)
        self._queue = None


def _collect(request, userdata) -> None:
    """``AsyncInferQueue`` callback: copy the two outputs of ``request`` to ``results[k]``. It never raises (an
    exception left in the queue would end the process at the queue's next use); errors go to ``errors``."""
    results, errors, k = userdata
    try:
        results[k] = tuple(torch.from_numpy(request.get_output_tensor(i).data.copy()) for i in (0, 1))
    except Exception as err:  # noqa: BLE001 - handed to the caller by _in_flight
        errors.append(err)


def _host(x: torch.Tensor) -> np.ndarray:
    """``x`` as a float32 NumPy array on the host."""
    return x.detach().to("cpu", torch.float32).numpy()


def _quantised(module: torch.nn.Module, fp32, ov, *, batch: int):
    """The int8 model of the float32 conversion ``fp32``, with ranges shipped, cached or calibrated here."""
    ranges = int8_ranges.ranges_for(module, fp32, ov, batch=batch, marker=int8.uses_second_channel(module),
                                    config=openvino_config("fp32"))
    return int8.quantise(fp32, ranges)


def openvino_config(precision: str, *, streams: int = 1) -> dict:
    """OpenVINO CPU settings: the precision, torch's thread count, and no pinning of threads to cores.

    Parameters
    ----------
    precision : {"fp32", "bf16", "int8"}
        For ``int8`` the quantised convolutions run in int8 whatever the hint; the layers left in float run in
        bf16 where the CPU has it natively (``variants.native_bf16``: 40.5 against 45.5 ms per 224² tile, AMD
        EPYC, flags avx2 avx512f avx512_bf16, 2 cores), else in float32.
    streams : int
        Inference streams (``NUM_STREAMS``); the threads are shared among them.

    Returns
    -------
    dict
        ``compile_model`` properties: ``INFERENCE_PRECISION_HINT``, ``INFERENCE_NUM_THREADS`` (torch's current
        thread count), ``ENABLE_CPU_PINNING`` (False) and ``NUM_STREAMS``.

    Notes
    -----
    OpenVINO pins its threads to cores by default, choosing the cores in each process on its own. Two Dask
    workers of one thread each were then pinned to the same core and ran at half speed (1024² network pass,
    AMD EPYC, flags avx2 avx512f avx512_bf16, 2 cores: 9.85 s each when run together against 4.98 s alone;
    unpinned 4.95 s together).
    """
    hint = _OV_PRECISION["bf16" if native_bf16() else "fp32"] if precision == "int8" else _OV_PRECISION[precision]
    return {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": int(torch.get_num_threads()),
            "ENABLE_CPU_PINNING": False, "NUM_STREAMS": int(streams)}
