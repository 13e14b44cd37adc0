"""Sizes, variants and fixtures of the asv suite (``bench_suite.py``), shared with the pytest adapter.

Environment variables (read when the suite is imported, so asv and pytest see the same parameters):

* ``CPTB_BENCH_SIZE=Y,X`` one image size (the exemplar is ``3138,2509``), or ``CPTB_BENCH_SIZES=Y,X;Y,X;...``
  several; default ``256,256`` (small enough for the CI smoke run);
* ``CPTB_BENCH_FULL=1`` adds the slow variants (``compile``: about a minute of compilation; ``openvino``: about
  30 s of conversion, only where ``openvino`` is installed) and the slow legacy scripts;
* ``CPTB_BENCH_VARIANTS=exact,fast,...`` restricts the variants (``exact`` is always kept: it is the reference);
  without it, ``bf16`` is left out on a CPU without native bf16 (emulated there, 5-33x slower than exact);
* ``CPTB_BENCH_REPEAT=N``: the pytest adapter keeps the best of N calls of each ``time_*`` method (asv: its own
  repeats);
* ``CPTB_BENCH_GPU=0`` keeps the network on the CPU where torch sees a CUDA GPU (default: the GPU).
"""
from __future__ import annotations

import importlib.util
import itertools
import os
import tempfile
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Dict, List, Tuple

import numpy as np

__all__ = ["MODEL", "STAGES", "VARIANTS", "applies", "emulated_bf16", "full_run", "make_fixtures", "repeats",
           "size_label", "sizes", "variant_names"]

MODEL = "cptb_nuclei"

#: Stages of the pipeline timed by ``bench_suite.Stages``. ``whole`` is read + eval + write of the whole image
#: in one call, ``blockwise`` the same through ``cellpose.blockwise.run`` (serial, no Dask client).
STAGES = ("read", "normalize", "network", "dynamics", "write", "whole", "blockwise")

#: name -> (network keywords of ``eval``, dynamics keywords, stages the variant changes, slow?)
VARIANTS = MappingProxyType({
    "exact": ({}, {"impl": "exact"}, STAGES, False),
    "fast": ({"preset": "fast"}, {"impl": "fast"}, ("network", "dynamics", "whole", "blockwise"), False),
    "bf16": ({"precision": "bf16"}, {"impl": "exact"}, ("network",), False),
    "channels_last": ({"channels_last": True}, {"impl": "exact"}, ("network",), False),
    "skip_empty": ({"skip_empty": True}, {"impl": "exact"}, ("network",), False),
    "compile": ({"backend": "compile"}, {"impl": "exact"}, ("network",), True),
    "openvino": ({"backend": "openvino"}, {"impl": "exact"}, ("network",), True),
    "int8": ({"precision": "int8", "backend": "openvino"}, {"impl": "exact"}, ("network",), True),
    "dyn_fast": ({}, {"impl": "fast"}, ("dynamics",), False),
    "dyn_chunk": ({}, {"impl": "fast", "chunk_rows": -4}, ("dynamics",), False),
})


def full_run() -> bool:
    """True when ``CPTB_BENCH_FULL=1``: slow variants and slow legacy scripts included."""
    return os.environ.get("CPTB_BENCH_FULL", "") not in ("", "0")


def repeats() -> int:
    """Calls per ``time_*`` method in the pytest adapter (best one kept): ``CPTB_BENCH_REPEAT``, default 1."""
    return max(1, int(os.environ.get("CPTB_BENCH_REPEAT", "1")))


def variant_names() -> List[str]:
    """Variants of this run: all fast ones, the slow ones with ``CPTB_BENCH_FULL``, limited by the env.

    bf16 on a CPU without native bf16 runs only when ``CPTB_BENCH_VARIANTS`` names it: PyTorch emulates it
    there (one batch took 33x exact's time on an AVX2-only AMD EPYC).
    """
    names = [n for n, spec in VARIANTS.items() if full_run() or not spec[3]]
    if importlib.util.find_spec("openvino") is None:
        names = [n for n in names if n not in ("openvino", "int8")]
    chosen = os.environ.get("CPTB_BENCH_VARIANTS")
    if chosen:
        return [n for n in names if n == "exact" or n in chosen.split(",")]
    return [n for n in names if not emulated_bf16(VARIANTS[n][0])]


def emulated_bf16(net_kwargs: dict) -> bool:
    """Whether the network keywords ask for bf16 on a CPU without native bf16 (left out of default runs)."""
    from cellpose.variants import native_bf16

    return net_kwargs.get("precision") == "bf16" and not native_bf16()


def _parse_size(text: str) -> Tuple[int, int]:
    y, x = (int(v) for v in text.strip().replace("x", ",").split(","))
    return y, x


def sizes() -> List[str]:
    """Image sizes of this run as labels ``"YxX"`` (see the module docstring)."""
    text = os.environ.get("CPTB_BENCH_SIZES") or os.environ.get("CPTB_BENCH_SIZE") or "256,256"
    return [size_label(_parse_size(t)) for t in text.split(";") if t.strip()]


def size_label(shape) -> str:
    """``(Y, X)`` -> ``"YxX"``."""
    return f"{int(shape[0])}x{int(shape[1])}"


def shape_of(label: str) -> Tuple[int, int]:
    """``"YxX"`` -> ``(Y, X)``."""
    return _parse_size(label)


def applies(variant: str, stage: str) -> bool:
    """Whether ``variant`` changes ``stage`` (otherwise the suite skips the pair: it equals exact's)."""
    return stage in VARIANTS[variant][2]


def net_kwargs(variant: str) -> dict:
    """Network-variant keywords of ``CellposeModel.eval`` for ``variant``."""
    return dict(VARIANTS[variant][0])


def dyn_kwargs(variant: str, shape) -> dict:
    """``compute_masks`` keywords; a negative ``chunk_rows`` means that fraction of the image height."""
    kw = dict(VARIANTS[variant][1])
    if kw.get("chunk_rows", 0) < 0:
        kw["chunk_rows"] = max(64, int(shape[0]) // -kw["chunk_rows"])
    return kw


def eval_kwargs(variant: str, shape) -> dict:
    """All ``eval`` keywords of ``variant`` (network variant, ``dynamics``, ``dynamics_chunk``)."""
    dyn = dyn_kwargs(variant, shape)
    return {**net_kwargs(variant), "dynamics": dyn["impl"], "dynamics_chunk": dyn.get("chunk_rows", 0)}


def use_gpu() -> bool:
    """Run the network on CUDA when torch sees a GPU, unless ``CPTB_BENCH_GPU=0``."""
    import torch

    return os.environ.get("CPTB_BENCH_GPU", "1") != "0" and torch.cuda.is_available()


def load_model(variant: str = "exact"):
    """The bundled model with ``variant``'s network keywords as its defaults (blockwise uses those)."""
    from cellpose.models import CellposeModel

    return CellposeModel(gpu=use_gpu(), pretrained_model=MODEL, **net_kwargs(variant))


def _write_image(folder: Path, shape, seed: int) -> Path:
    """A 4-channel (C, Y, X) uint16 OME-TIFF, nuclei in channel 1 (tiled, zlib), as the CyCIF reader sees it."""
    import tifffile

    from cellpose.data import make_image

    img, _ = make_image((4,) + tuple(shape), seed=seed)
    path = folder / f"cycif_{size_label(shape)}.ome.tif"
    tifffile.imwrite(path, img, ome=True, tile=(256, 256), compression="zlib", metadata={"axes": "CYX"})
    return path


def _reference(folder: Path, path: Path, shape) -> Dict[str, str]:
    """Exact-path masks and flows of the nuclear plane, saved as ``.npy`` (the reference of every variant)."""
    from cellpose.io.tiff import read_channel

    plane = read_channel(path, 0)
    masks, flows, _ = load_model().eval(plane)
    out = {"image": str(path)}
    for key, arr in (("plane", plane), ("masks", masks), ("dP", flows[1]), ("cellprob", flows[2])):
        out[key] = str(folder / f"{key}_{size_label(shape)}.npy")
        np.save(out[key], arr)
    return out


def make_fixtures(labels=None) -> dict:
    """Images and exact references for each size, in a new temporary folder (``setup_cache`` of the suite).

    Returns
    -------
    dict
        ``{"dir": folder, "sizes": {label: {"image", "plane", "masks", "dP", "cellprob": path}}}``.
    """
    folder = Path(tempfile.mkdtemp(prefix="cptb_asv_"))
    out = {"dir": str(folder), "sizes": {}}
    for k, label in enumerate(labels or sizes()):
        shape = shape_of(label)
        out["sizes"][label] = _reference(folder, _write_image(folder, shape, seed=k), shape)
    return out


def fresh_path(folder: str, stem: str, suffix: str) -> Path:
    """A path ``folder/stem_PID_K.suffix`` that does not exist yet (outputs of repeated timed calls)."""
    for k in itertools.count():
        path = Path(folder) / f"{stem}_{os.getpid()}_{k}{suffix}"
        if not path.exists():
            return path
    raise AssertionError("unreachable")


def builds_per_shape(model, variant: str) -> bool:
    """True when ``variant`` resolves to a backend that builds a network per batch shape (compile, openvino)."""
    return model.resolve_variant(**net_kwargs(variant))[1].backend != "torch"


def warm_up(model, variant: str, plane=None) -> None:
    """One ``eval`` with ``variant`` before timing: JIT-compiles the dynamics, builds compiled networks.

    A small generated image is enough for the PyTorch backend. A backend that builds per batch shape
    (``compile``, ``openvino``, and ``fast`` where it resolves to one) warms up on ``plane`` itself, so that
    the timed call sees the same batch shapes (its one-off build time is not part of the timed call; the
    ``network.compile`` stage of ``--profile`` reports it).
    """
    from cellpose.data import make_image

    if plane is None or not builds_per_shape(model, variant):
        plane = make_image((1, 160, 160), seed=99)[0][0]
    model.eval(plane, **eval_kwargs(variant, plane.shape))


def stage_call(stage: str, fixture: dict, variant: str, model) -> Callable[[], object]:
    """A zero-argument callable that runs ``stage`` of ``variant`` on the fixture (see ``STAGES``)."""
    return _BUILDERS[stage](fixture, variant, model)


def _read(fx, variant, model):
    from cellpose.io.tiff import read_channel

    return lambda: read_channel(fx["image"], 0)


def _normalize(fx, variant, model):
    from cellpose.config import NormalizeOptions
    from cellpose.preprocess.channels import convert_image
    from cellpose.preprocess.normalize import normalize_image

    plane = np.load(fx["plane"])
    return lambda: normalize_image(convert_image(plane, channels=(0, 0)), options=NormalizeOptions(), inplace=True)


def _network(fx, variant, model):
    plane = np.load(fx["plane"])
    return lambda: model.eval(plane, compute_masks=False, **net_kwargs(variant))


def _dynamics(fx, variant, model):
    from cellpose.dynamics import compute_masks

    dP, cellprob = np.load(fx["dP"]), np.load(fx["cellprob"])
    return lambda: compute_masks(dP, cellprob, **dyn_kwargs(variant, cellprob.shape))


def _write(fx, variant, model):
    from cellpose.io.tiff import imsave

    masks = np.load(fx["masks"])
    folder = str(Path(fx["image"]).parent)
    return lambda: imsave(fresh_path(folder, "masks", ".tif"), masks)


def _whole(fx, variant, model):
    from cellpose.io.tiff import imsave, read_channel

    folder, kwargs = str(Path(fx["image"]).parent), eval_kwargs(variant, np.load(fx["plane"]).shape)

    def run():
        """Read, segment and write the whole image."""
        masks = model.eval(read_channel(fx["image"], 0), **kwargs)[0]
        return imsave(fresh_path(folder, "whole", ".tif"), masks)
    return run


def _blockwise(fx, variant, model):
    import dataclasses

    from cellpose.blockwise import run
    from cellpose.config import DynamicsOptions, EvalOptions

    shape = np.load(fx["plane"], mmap_mode="r").shape
    dyn = dyn_kwargs(variant, shape)
    options = EvalOptions(dynamics=dataclasses.replace(DynamicsOptions(), impl=dyn["impl"]))
    folder, block = str(Path(fx["image"]).parent), max(256, min(shape) // 2)
    return lambda: run(fx["image"], model, chan=1, block_size=block, out=fresh_path(folder, "bw", ".ome.zarr"),
                       client=None, progress=False, options=options)


_BUILDERS = MappingProxyType({"read": _read, "normalize": _normalize, "network": _network, "dynamics": _dynamics,
                              "write": _write, "whole": _whole, "blockwise": _blockwise})
