"""Named network variants: precision, backend, memory layout and empty-tile skipping behind one switch.

A ``NetVariant`` says *how* the network pass runs; it never changes *what* is computed (same weights, same
tiling, same dynamics). ``"exact"`` is the default and is bit-for-bit the plain float32 PyTorch path.

Ways to choose a variant, strongest first:

1. keywords of ``CellposeModel.eval(...)`` (``preset=``, ``precision=``, ``backend=``, ``channels_last=``,
   ``skip_empty=``), then the same keywords of ``CellposeModel(...)``;
2. the scoped switch ``with cellpose.variants.use("fast"): ...`` (a ``contextvars`` value, so it is local to
   the thread / task that opened it);
3. ``"exact"``.

A keyword left at ``None`` does not override a weaker choice, so ``use("fast")`` + ``precision="fp32"`` is
the fast preset in float32. The CLI flags ``--preset``, ``--precision``, ``--backend``, ``--channels_last``,
``--skip_empty`` map onto the same names.

The ``fast`` preset was picked by measurement (``CPTB_BENCH_FULL=1 CPTB_BENCH_SIZE=1024,1024 pytest
benchmarks/bench_variants.py``) on the development machine: AMD EPYC, 2 cores shared with other jobs (load
average 2.7-7 during the runs), flags avx2 + avx512f + avx512_bf16 (no AMX), torch 2.13 CPU, openvino
2026.4. A generated 1024² nuclear channel, bundled model, default diameter (49 tiles of 224²); each variant in
its own process after a warm-up image; network-stage ms per tile in three runs (2026-11-30), then the
largest max|diff| / max|exact| of dP and cellprob and the masks' AP@0.5 against exact:

==========================  ==================  =============  ==========  ======  ===============
variant                     ms / tile, 3 runs   vs exact       rel. diff   AP@0.5  build, peak RSS
==========================  ==================  =============  ==========  ======  ===============
exact (fp32, torch)         983, 1271, 843      1.00           0           1.000   -, 1.31 GB
fp32, channels_last         647, 1048, -        1.52, 1.21     1.3e-6      1.000   -, 1.33 GB
bf16                        775, 1007, -        1.27, 1.26     4.1e-2      0.999   -, 1.00 GB
bf16, channels_last         477, 553, 403       2.06-2.30      4.0e-2      0.999   -, 0.99 GB
fp32, compile               860, 798, -         1.14, 1.59     1.2e-6      1.000   14-21 s, 1.30 GB
bf16, compile               550, 507, -         1.79, 2.51     4.1e-2      0.999   12-17 s, 1.08 GB
fp32, openvino              680, 542, 355       1.45-2.38      2.1e-6      1.000   12-22 s, 1.68 GB
bf16, openvino              328, 262, 179       3.00-4.85      6.8e-2      1.000   11-17 s, 1.66 GB
==========================  ==================  =============  ==========  ======  ===============

So ``fast`` is ``precision="auto"``, ``backend="auto"``, ``channels_last="auto"`` (NHWC on a CPU, NCHW on
CUDA), ``skip_empty=True``, which resolves (``resolve``) by hardware and installation:

* any CPU with ``openvino`` installed, bundled weights: int8 OpenVINO (``cellpose.inference.int8``: the inner
  convolutions quantised after training, calibrated on generated nuclei). Since 2026-11-30 (night), when it
  replaced bf16 OpenVINO: on the exemplar-size image it ran the network stage about 1.8x faster than bf16
  OpenVINO on this CPU (median 7.60x exact against 4.18x) and 1.96x faster than float32 OpenVINO with the
  kernels capped at AVX2 (3.84x exact), with masks at AP@0.5 0.992-1.0 against exact on six generated kinds
  and the real DSB crop (GUIDELINES §7). On an Intel Xeon with AMX (flags amx_int8 amx_bf16, 2 cores,
  2026-12-01) it ran the exemplar network stage 14.7-16.2x exact (median 15.2x, 3 runs; bf16 OpenVINO 12.0x in
  one run), so int8 stays the pick there. Its one-off build (conversion and calibration, 8.5-9.3 s per weights
  and tile/batch shape) is cached on disk across processes (``ov_cache``);
* other weights on such a CPU (their int8 masks are not measured): bf16 OpenVINO where the CPU has native bf16
  (``avx512_bf16`` or ``amx_bf16``), else float32 OpenVINO; ``--precision int8`` still asks for int8;
* a CPU with native bf16 without ``openvino``: bf16 autocast + channels_last, PyTorch;
* other CPUs without ``openvino``: float32 channels_last PyTorch (bf16 would be emulated: on an AVX2-only AMD
  EPYC one batch took 33x exact's time, 5.3x with channels_last);
* CUDA: PyTorch, NCHW; float32 where cuDNN runs it as TF32 on tensor cores (compute capability >= 8.0),
  else fp16. Measured on one NVIDIA H200 (torch 2.11 cu130, 2026-11-30, ``scripts/gpu_check.sh`` and a
  sweep over precision x layout x batch x skip_empty, network stage of the 3138x2509 generated nuclear image,
  median of three): exact 0.273 s; bf16 0.290 s, fp16 0.298 s, fp32 NHWC 0.316 s, bf16 NHWC 0.332 s (the
  preset before this rule: 0.348 s with skip_empty, 0.79x); the only autocast gain was at batch 32 (bf16
  0.235 s, 1.16x). At 224² tiles the GPU waits on kernel launches, and autocast adds a cast per layer. The
  network was 3.8 % of that image's eval on the H200 (0.31 of 8.21 s); the host's dynamics were 91.5 %.

``precision="auto"`` alone follows the same rule. The table above predates int8 (GUIDELINES §7 has its rows).

The CPU flags are those of ``/proc/cpuinfo`` less any above ``ONEDNN_MAX_CPU_ISA`` (``isa_capped``): both
PyTorch's and OpenVINO's kernels honour that variable, so with ``AVX2`` the pick is the one for an AVX2-only
CPU. Where OpenVINO would not run bf16 (``openvino_bf16``: neither native bf16 nor AVX-512) an explicit bf16 on
OpenVINO resolves to fp32 with a warning: on a real AVX2-only CPU OpenVINO compiles the bf16 hint as float32,
and under the cap it fails to compile.

Masks of ``fast`` against ``exact`` are checked at AP@0.5 >= 0.98 by ``tests/test_variants.py``.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import FrozenSet, Iterator, Mapping, Optional, Tuple, Union

__all__ = ["BACKENDS", "PRECISIONS", "PRESETS", "NetVariant", "UnknownVariantError", "VariantUnavailableError",
           "ISA_CAP_VARIABLES", "cpu_features", "cudnn_conv_tf32", "current", "describe", "explicit_settings",
           "fast_variant", "isa_cap", "isa_capped", "named", "native_bf16", "openvino_bf16", "resolve", "select", "use"]

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "int8", "auto")
BACKENDS = ("torch", "compile", "openvino", "auto")
PRESETS = ("exact", "fast")
_BOOLS = (True, False)
_LAYOUTS = (True, False, "auto")
_NATIVE_BF16 = frozenset({"avx512_bf16", "amx_bf16"})
#: Flags with which OpenVINO's CPU plugin accepts a bf16 hint: native bf16, or AVX-512 core (avx512bw) and
#: AVX2-VNNI-2 (avx_ne_convert), where it emulates bf16 (its ``hasBF16HardwareSupport``: avx512_core or
#: avx2_vnni_2). Elsewhere it compiles the hint as float32.
_OPENVINO_BF16 = _NATIVE_BF16 | {"avx512bw", "avx_ne_convert"}
OPENVINO_MISSING = ("backend openvino needs the optional package openvino: pip install 'cellpose-tb[openvino]' "
                    "(or pip install openvino)")


class UnknownVariantError(ValueError):
    """A variant setting that is not one of the valid values; the message lists them.

    Parameters
    ----------
    what : str
        Name of the setting (``"precision"``, ``"backend"``, ...).
    value : object
        The value given.
    valid : sequence
        The valid values.
    """

    def __init__(self, what: str, value, valid):
        self.what, self.value, self.valid = what, value, tuple(valid)
        super().__init__(f"unknown {what} {value!r}: valid values are {', '.join(map(str, self.valid))}")


class VariantUnavailableError(ValueError):
    """A valid variant that this machine or installation cannot run (fp16 on a CPU, openvino missing...)."""


@dataclass(frozen=True)
class NetVariant:
    """How the network pass runs.

    Attributes
    ----------
    precision : {"fp32", "bf16", "fp16", "int8", "auto"}
        Compute precision of the network (autocast; outputs are returned as float32). ``auto`` picks by
        hardware, backend and weights (see ``resolve``). ``int8`` runs on OpenVINO only: the network's inner
        convolutions quantised after training (``cellpose.inference.int8``), further from exact than bf16 in
        the flows but with masks at AP@0.5 >= 0.98 against exact where measured (GUIDELINES §7).
    backend : {"torch", "compile", "openvino", "auto"}
        Eager PyTorch, ``torch.compile`` (inductor) or an in-memory OpenVINO conversion (CPU only, needs the
        optional ``openvino`` package). ``auto``: openvino on a CPU where it is installed, else torch.
    channels_last : bool or "auto"
        Run the convolutions in NHWC memory layout (a copy of the network; the model's own stays as it is).
        ``auto`` (the ``fast`` preset): NHWC on a CPU, NCHW on CUDA, where NHWC measured slower.
    skip_empty : bool
        Tiles whose normalised input is constant (all zero in blank regions) get the network's output for
        such a tile, computed once per constant, instead of a forward pass.
    """

    precision: str = "fp32"
    backend: str = "torch"
    channels_last: Union[bool, str] = False
    skip_empty: bool = False

    def __post_init__(self):
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("backend", self.backend, BACKENDS)
        _check_choice("channels_last", self.channels_last, _LAYOUTS)
        _check_choice("skip_empty", self.skip_empty, _BOOLS)

    @property
    def is_exact_network(self) -> bool:
        """True when the network itself runs exactly as the plain float32 PyTorch path."""
        return (self.precision, self.backend, self.channels_last) == ("fp32", "torch", False)


def _check_choice(what: str, value, valid) -> None:
    """Raise ``UnknownVariantError`` unless ``value`` is one of ``valid`` (bools must be real bools)."""
    same_kind = any(isinstance(value, bool) == isinstance(v, bool) and value == v for v in valid)
    if not same_kind:
        raise UnknownVariantError(what, value, valid)


#: The presets that do not depend on the hardware.
_FIXED: Mapping[str, NetVariant] = MappingProxyType({"exact": NetVariant()})

_SCOPE: ContextVar = ContextVar("cellpose_net_variant", default=None)


def fast_variant() -> NetVariant:
    """The ``fast`` preset: precision, backend and layout picked by hardware (``resolve``), skip_empty."""
    return NetVariant(precision="auto", backend="auto", channels_last="auto", skip_empty=True)


def named(name: Union[str, NetVariant]) -> NetVariant:
    """Return the variant of a preset name (``"exact"``, ``"fast"``); a ``NetVariant`` is returned as is.

    Raises
    ------
    UnknownVariantError
        For any other name.
    """
    if isinstance(name, NetVariant):
        return name
    if name == "fast":
        return fast_variant()
    if isinstance(name, str) and name in _FIXED:
        return _FIXED[name]
    raise UnknownVariantError("preset", name, PRESETS)


def current() -> NetVariant:
    """The variant of the innermost ``use(...)`` block of this context, else ``exact``."""
    scoped = _SCOPE.get()
    return _FIXED["exact"] if scoped is None else scoped


@contextlib.contextmanager
def use(preset: Union[str, NetVariant, None] = None, **settings) -> Iterator[NetVariant]:
    """Scoped switch: network passes inside the block use this variant unless keywords say otherwise.

    Parameters
    ----------
    preset : str or NetVariant, optional
        Preset name or variant; default: the enclosing scope's variant.
    **settings
        ``precision``, ``backend``, ``channels_last``, ``skip_empty`` overriding the preset.

    Examples
    --------
    >>> with cellpose.variants.use("fast"):                       # doctest: +SKIP
    ...     masks, flows, styles = model.eval(img, diameter=17)
    """
    variant = select(preset=preset, **settings)
    token = _SCOPE.set(variant)
    try:
        yield variant
    finally:
        _SCOPE.reset(token)


def select(*, preset: Union[str, NetVariant, None] = None, precision: Optional[str] = None,
           backend: Optional[str] = None, channels_last: Union[bool, str, None] = None,
           skip_empty: Optional[bool] = None) -> NetVariant:
    """Combine a preset (default: the current scope) with explicit settings; ``None`` keeps the preset's.

    Returns
    -------
    NetVariant
        Validated; ``auto`` values are kept (see ``resolve``).
    """
    base = current() if preset is None else named(preset)
    given = {"precision": precision, "backend": backend, "channels_last": channels_last, "skip_empty": skip_empty}
    return replace(base, **{k: v for k, v in given.items() if v is not None})


def explicit_settings(**settings) -> dict:
    """The settings that are not ``None``, validated (a model stores these as its own defaults)."""
    given = {k: v for k, v in settings.items() if v is not None}
    unknown = set(given) - {f.name for f in fields(NetVariant)} - {"preset"}
    if unknown:
        raise TypeError(f"unknown variant setting(s): {sorted(unknown)}")
    select(**given)
    return given


#: oneDNN's instruction-set levels (values of ``ONEDNN_MAX_CPU_ISA``, aliases at the same rank), and the level
#: that each CPU flag needs. PyTorch's and OpenVINO's CPU kernels both honour the variable.
_ISA_RANK = MappingProxyType({
    "SSE41": 0, "AVX": 1, "AVX2": 2, "AVX2_VNNI": 3, "AVX2_VNNI_2": 4, "AVX512_CORE": 5, "AVX512_CORE_VNNI": 6,
    "AVX512_CORE_BF16": 7, "AVX512_CORE_FP16": 8, "AVX10_1_512": 8, "AVX512_CORE_AMX": 9, "AVX10_1_512_AMX": 9,
    "AVX512_CORE_AMX_FP16": 10, "AVX10_1_512_AMX_FP16": 10})
_FLAG_RANK = MappingProxyType({"avx": 1, "f16c": 1, "avx2": 2, "fma": 2, "avx_vnni": 3, "avx_vnni_int8": 4,
                               "avx_ne_convert": 4, "avx512_vnni": 6, "avx512_bf16": 7, "avx512_fp16": 8,
                               "amx_fp16": 10})
#: The variable's two names; oneDNN reads the first that is set.
ISA_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def isa_cap() -> Optional[str]:
    """The oneDNN ISA cap set in the environment (``ONEDNN_MAX_CPU_ISA``, else ``DNNL_MAX_CPU_ISA``), or None."""
    return next((os.environ[k] for k in ISA_CAP_VARIABLES if os.environ.get(k)), None)


def _flag_rank(flag: str) -> int:
    """The oneDNN level a CPU flag needs (-1: any)."""
    if flag in _FLAG_RANK:
        return _FLAG_RANK[flag]
    return 5 if flag.startswith("avx512") else (9 if flag.startswith("amx") else -1)


def isa_capped(features: FrozenSet[str], cap: Optional[str]) -> FrozenSet[str]:
    """The CPU flags that the kernels may use under a oneDNN ISA cap.

    Parameters
    ----------
    features : frozenset of str
        CPU flags as in ``/proc/cpuinfo``.
    cap : str or None
        A value of ``ONEDNN_MAX_CPU_ISA`` such as ``"AVX2"`` (any case). ``None``, ``"ALL"``, ``"DEFAULT"`` and
        names oneDNN does not know leave the flags as they are.

    Returns
    -------
    frozenset of str
        ``features`` without the flags of levels above ``cap`` (``AVX2`` hides avx512* and amx*).

    Notes
    -----
    The levels are taken as a chain. oneDNN's are not quite one (an ``AVX512_CORE`` cap also disables the
    AVX2-VNNI kernels, whose flags are kept here); nothing in the variant choice depends on those flags.
    """
    rank = _ISA_RANK.get((cap or "").upper())
    if rank is None:
        return features
    return frozenset(f for f in features if _flag_rank(f) <= rank)


def cpu_features(path: str = "/proc/cpuinfo") -> FrozenSet[str]:
    """CPU flags from ``/proc/cpuinfo`` (Linux x86), less those above the oneDNN ISA cap when one is set
    (``isa_cap``, ``isa_capped``); an empty set where the file cannot be read."""
    from .profiling.environment import cpuinfo_field

    flags = frozenset((cpuinfo_field(("flags",), path) or "").split())
    return isa_capped(flags, isa_cap())


def resolve(variant: NetVariant, *, device, features: Optional[FrozenSet[str]] = None,
            int8_measured: bool = False, announce: bool = True) -> NetVariant:
    """Replace ``auto`` by concrete choices for ``device`` and refuse what cannot run there.

    Parameters
    ----------
    variant : NetVariant
    device : torch.device or str
        Where the network runs.
    features : frozenset of str, optional
        CPU flags (default: ``cpu_features()``).
    int8_measured : bool
        The weights are ones whose int8 masks were measured against exact (the bundled model,
        ``CellposeModel.int8_measured``): only then does ``precision="auto"`` on OpenVINO pick int8.
    announce : bool
        Log each ``auto`` pick and its reason at INFO, and warnings (emulated bf16, bf16 run as fp32) at
        WARNING; else both at DEBUG: a model announces a variant once.

    Returns
    -------
    NetVariant
        With precision in {"fp32", "bf16", "fp16", "int8"}, backend in {"torch", "compile", "openvino"} and
        channels_last a bool.

    Raises
    ------
    VariantUnavailableError
        fp16 on a CPU; openvino on CUDA; int8 on any backend but openvino.
    """
    cuda = str(device).startswith("cuda")
    feats = cpu_features() if features is None and not cuda else (features or frozenset())
    level = logging.INFO if announce else logging.DEBUG
    backend = variant.backend if variant.backend != "auto" else _auto_backend(cuda, level)
    precision = variant.precision
    if precision == "auto":
        precision = _auto_precision(device if cuda else None, feats, backend=backend, int8_measured=int8_measured,
                                    level=level)
    _check_runnable(precision, backend, cuda=cuda)
    if not cuda:
        precision = _cpu_bf16(precision, backend, feats, level=logging.WARNING if announce else logging.DEBUG)
    layout = variant.channels_last if variant.channels_last != "auto" else not cuda
    return replace(variant, precision=precision, backend=backend, channels_last=layout)


def _auto_backend(cuda: bool, level: int) -> str:
    """OpenVINO on a CPU where it is installed (measured fastest, see the module docstring), else torch."""
    if not cuda and importlib.util.find_spec("openvino") is not None:
        picked, why = "openvino", "CPU and openvino installed"
    else:
        picked, why = "torch", "CUDA device" if cuda else "openvino not installed"
    logger.log(level, "backend auto: picked %s (%s)", picked, why)
    return picked


def _auto_precision(cuda_device, features: FrozenSet[str], *, backend: str, int8_measured: bool, level: int) -> str:
    """int8 on OpenVINO for weights measured in int8; on a CUDA device (``cuda_device``, else None)
    ``_auto_cuda_precision``; else bf16 where the CPU has it natively (avx512_bf16/amx), else fp32."""
    if backend == "openvino" and int8_measured:
        picked, why = "int8", "OpenVINO and weights whose int8 masks were measured (AP@0.5 >= 0.98 vs exact)"
    elif cuda_device is not None:
        picked, why = _auto_cuda_precision(cuda_device)
    elif features & _NATIVE_BF16:
        picked, why = "bf16", f"CPU has {', '.join(sorted(features & _NATIVE_BF16))}"
    else:
        picked, why = "fp32", "CPU has no avx512_bf16/amx_bf16"
    logger.log(level, "precision auto: picked %s (%s)", picked, why)
    return picked


def _auto_cuda_precision(device) -> Tuple[str, str]:
    """fp32 where cuDNN runs float32 convolutions as TF32 on tensor cores (compute capability >= 8.0 and TF32
    left on, PyTorch's default): on an H200 every autocast variant ran the network stage slower than float32
    (module docstring); else fp16 (tensor cores since compute capability 7.0)."""
    import torch

    major, _ = torch.cuda.get_device_capability(device)
    if major < 8:
        return "fp16", f"compute capability {major}.x has no TF32"
    if not cudnn_conv_tf32():
        return "fp16", "TF32 is switched off for cuDNN convolutions"
    return "fp32", f"compute capability {major}.x: cuDNN already runs float32 convolutions as TF32"


def cudnn_conv_tf32() -> bool:
    """Whether cuDNN may run float32 convolutions as TF32 (PyTorch's setting; True by default).

    PyTorch >= 2.9 has ``fp32_precision`` at three levels (convolutions, cuDNN, global; ``"none"`` defers to
    the next); reading the older ``cudnn.allow_tf32`` raises once they disagree, so it is the last resort.
    """
    import torch

    cudnn = torch.backends.cudnn
    for level in (getattr(getattr(cudnn, "conv", None), "fp32_precision", None),
                  getattr(cudnn, "fp32_precision", None), getattr(torch.backends, "fp32_precision", None)):
        if level not in (None, "none"):
            return level == "tf32"
    try:
        return bool(cudnn.allow_tf32)
    except RuntimeError:
        return True


def openvino_bf16(features: Optional[FrozenSet[str]] = None) -> bool:
    """True where OpenVINO runs a bf16 hint in bf16 (``_OPENVINO_BF16``; under an ISA cap, only natively).

    Elsewhere it compiles the hint as float32 (AMD EPYC family 25 model 1, flags avx2 only, openvino
    2026.4.1: the compiled model reports f32 and its outputs equal the f32 model's), and with the kernels
    capped by ``ONEDNN_MAX_CPU_ISA`` on an AVX-512 CPU it failed to compile.
    """
    feats = cpu_features() if features is None else features
    return native_bf16(feats) or (not isa_cap() and bool(feats & _OPENVINO_BF16))


def _cpu_bf16(precision: str, backend: str, features: FrozenSet[str], *, level: int) -> str:
    """``precision``, but bf16 on a CPU without native bf16 is said at ``level``: fp32 where OpenVINO would not
    run bf16 (``openvino_bf16``; recording fp32 is honest about what runs), else bf16, emulated."""
    if precision != "bf16" or native_bf16(features):
        return precision
    if backend == "openvino" and not openvino_bf16(features):
        logger.log(level, "precision bf16 on backend openvino: this CPU has neither native bf16 nor AVX-512%s, so "
                   "OpenVINO runs float32; running precision fp32",
                   f" (kernels capped at {isa_cap()})" if isa_cap() else "")
        return "fp32"
    logger.log(level, "precision bf16 on a CPU without avx512_bf16/amx_bf16 is emulated and slower than fp32 "
               "(PyTorch: 5-33x on an AVX2-only CPU, GUIDELINES §7)")
    return precision


def _check_runnable(precision: str, backend: str, *, cuda: bool) -> None:
    """Refuse combinations this device cannot run."""
    if precision == "fp16" and not cuda:
        raise VariantUnavailableError("precision fp16 needs a CUDA device (CPU fp16 is emulated and slow); "
                                      "on a CPU use bf16 (native with avx512_bf16/amx) or fp32")
    if backend == "openvino" and cuda:
        raise VariantUnavailableError("backend openvino runs on the CPU only; use torch or compile on CUDA")
    if backend == "openvino" and importlib.util.find_spec("openvino") is None:
        raise VariantUnavailableError(OPENVINO_MISSING)
    if precision == "int8" and cuda:
        raise VariantUnavailableError("precision int8 runs on the CPU only (OpenVINO); on CUDA use bf16 or fp16")
    if precision == "int8" and backend != "openvino":
        raise VariantUnavailableError(f"precision int8 runs only on backend openvino, not {backend}: pass "
                                      f"backend='openvino' (CLI: --backend openvino, implied by --precision int8)")
    if backend == "openvino" and precision not in ("fp32", "bf16", "int8"):
        raise VariantUnavailableError(f"backend openvino supports precision fp32, bf16 or int8, not {precision}")


def native_bf16(features: Optional[FrozenSet[str]] = None) -> bool:
    """True when the CPU runs bf16 natively (``avx512_bf16`` or ``amx_bf16``, after any ISA cap)."""
    return bool((cpu_features() if features is None else features) & _NATIVE_BF16)


def describe(requested: NetVariant, resolved: NetVariant) -> dict:
    """JSON-ready record of a variant for ``profile.json``: the resolved settings plus what was requested."""
    record = {f.name: getattr(resolved, f.name) for f in fields(NetVariant)}
    record["requested"] = {f.name: getattr(requested, f.name) for f in fields(NetVariant)}
    return record
