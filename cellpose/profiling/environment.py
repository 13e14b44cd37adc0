"""The ``environment`` block of ``profile.json``: versions, CPU, threads, device, flags."""
from __future__ import annotations

import logging
import os
import platform
import sys
from typing import Dict, Optional

__all__ = ["KEY_CPU_FLAGS", "collect_environment", "cpu_generation", "cpu_model", "cpuinfo_field", "hardware",
           "hardware_line", "package_versions"]

logger = logging.getLogger(__name__)

PACKAGES = ("cellpose-tb", "numpy", "torch", "scipy", "numba", "fastremap", "tifffile", "imagecodecs",
            "opencv-python-headless", "line_profiler")
#: Environment variables that change how the kernels run, recorded in ``profile.json`` (``thread_env``) when set.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
                    "CUDA_VISIBLE_DEVICES", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def package_versions(names=PACKAGES) -> Dict[str, Optional[str]]:
    """Installed version of each distribution in ``names`` (None when not installed)."""
    from importlib import metadata

    out: Dict[str, Optional[str]] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpuinfo_field(keys, path: str = "/proc/cpuinfo") -> Optional[str]:
    """Value of the first line of ``/proc/cpuinfo`` whose key is one of ``keys``; None when absent/unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in keys:
                    return value.strip()
    except OSError:
        logger.debug("cannot read %s", path)
    return None


def cpu_model(path: str = "/proc/cpuinfo") -> Optional[str]:
    """CPU model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()`` or None."""
    return cpuinfo_field(("model name", "Model", "cpu model"), path) or platform.processor() or None


def cpu_generation(path: str = "/proc/cpuinfo") -> Optional[str]:
    """``"family F model M"`` from ``/proc/cpuinfo`` (x86 Linux), else None.

    Virtual machines often report a bare model name ("AMD EPYC") for CPUs of different generations with the
    same flags; the family and model numbers tell them apart (an EPYC of family 26 ran the int8 network 2x
    faster per tile than one of family 25, GUIDELINES §7).
    """
    family, model = cpuinfo_field(("cpu family",), path), cpuinfo_field(("model",), path)
    if not (family and model and family.isdigit() and model.isdigit()):
        return None
    return f"family {family} model {model}"


def _affinity() -> Optional[int]:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _torch_info() -> Optional[dict]:
    """Torch threads and backend flags, when torch is imported (this never imports it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    info = {"version": torch.__version__, "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads(),
            "mkldnn_enabled": bool(torch.backends.mkldnn.enabled), "cuda_available": torch.cuda.is_available(),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "deterministic": bool(torch.are_deterministic_algorithms_enabled())}
    if info["cuda_available"] and torch.cuda.is_initialized():
        info["cuda_device_name"] = torch.cuda.get_device_name()
    return info


def _device(torch_info: Optional[dict]) -> str:
    if torch_info and torch_info.get("cuda_device_name"):
        return f"cuda ({torch_info['cuda_device_name']})"
    return "cpu"


def collect_environment(*, flags: Optional[dict] = None, device: Optional[str] = None) -> dict:
    """Return the ``environment`` object of ``profile.json``.

    Parameters
    ----------
    flags : dict, optional
        Profiling flags of the run (memory mode, trace file...).
    device : str, optional
        Device of the network; default: CUDA device name when CUDA is initialised, else ``"cpu"``.
    """
    torch_info = _torch_info()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "cpu_model": cpu_model(),
        "cpu_generation": cpu_generation(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": _affinity(),
        "torch": torch_info,
        "device": device or _device(torch_info),
        "thread_env": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
        "flags": dict(flags or {}),
    }


#: CPU flags that decide which network variant is fastest (see ``cellpose.variants``).
KEY_CPU_FLAGS = ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_int8", "amx_bf16",
                 "amx_tile")


def _version(name: str) -> Optional[str]:
    return package_versions((name,))[name]


def _gpu_name() -> Optional[str]:
    """CUDA device name when torch is imported and sees a GPU (this never imports torch)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name()


def hardware() -> dict:
    """Compact hardware and software record for benchmark results and tables.

    Returns
    -------
    dict
        ``cpu_model``, ``cpu_generation`` (``"family F model M"`` or None), ``cpu_flags`` (the subset of
        ``KEY_CPU_FLAGS`` present and allowed by the oneDNN ISA cap), ``isa_cap`` (``variants.isa_cap()``:
        the cap, or None), ``cpu_count``, ``cpu_affinity``, ``load_average``, versions of torch / numba /
        openvino / numpy, ``torch_threads`` and ``gpu`` (None without CUDA).
    """
    from cellpose.variants import cpu_features, isa_cap

    torch = sys.modules.get("torch")
    flags = cpu_features()
    return {"cpu_model": cpu_model(), "cpu_generation": cpu_generation(),
            "cpu_flags": [f for f in KEY_CPU_FLAGS if f in flags],
            "isa_cap": isa_cap(), "cpu_count": os.cpu_count(),
            "cpu_affinity": _affinity(),
            "load_average": [round(v, 2) for v in os.getloadavg()], "python": sys.version.split()[0],
            "torch": _version("torch"), "numba": _version("numba"), "openvino": _version("openvino"),
            "numpy": _version("numpy"), "torch_threads": torch.get_num_threads() if torch else None,
            "gpu": _gpu_name()}


def hardware_line(hw: dict) -> str:
    """One line of ``hardware()`` for the head of a table."""
    cap = f", oneDNN ISA cap {hw['isa_cap']}" if hw.get("isa_cap") else ""
    generation = f" {hw['cpu_generation']}" if hw.get("cpu_generation") else ""
    flags = " ".join(hw["cpu_flags"]) or "-"
    return (f"CPU {hw['cpu_model']}{generation} ({hw['cpu_count']} cores, flags {flags}{cap}), "
            f"GPU {hw['gpu'] or '-'}, torch {hw['torch']} ({hw['torch_threads']} threads), numba {hw['numba']}, "
            f"openvino {hw['openvino'] or '-'}, load average {' '.join(map(str, hw['load_average']))}")
