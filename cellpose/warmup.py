"""Fill the one-off caches that the first segmentation on a new installation would otherwise pay for.

``python -m cellpose.warmup`` (run by ``scripts/setup.sh``) segments one generated 512² nuclear image with the
bundled model three ways: the exact path, ``dynamics="fast"``, and, where ``openvino`` is installed,
``preset="fast"``, then draws the masks' outlines and runs the blockwise ownership pass on them. That compiles
the numba kernels of both dynamics, of the outlines written with the outputs and of ``--blockwise`` into numba's
on-disk cache (``cache=True``), and converts the network for the default tile batch into the OpenVINO IR cache
(``inference.ov_cache``).

Measured on an Intel Xeon (flags avx512_bf16 amx_bf16 amx_int8, 2 cores), exemplar nuclear channel with
``--preset fast --dynamics fast``: the first process after installation took 18.96 s, of which 10.9 s were the
dynamics and 1.2 s more the writing of the outputs (numba compiling), against 6.08-6.22 s for the next processes
(dynamics 0.57-0.66 s). Nothing here changes a result: the caches hold compiled code, keyed by what it was
compiled from.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import time
from typing import Dict, Optional, Sequence

import numpy as np

from .net.weights import DEFAULT_BUNDLED_MODEL

__all__ = ["warm_up", "main"]

logger = logging.getLogger(__name__)

WARMUP_SIZE = 512


def _ways(openvino: bool) -> Dict[str, dict]:
    """``eval`` keywords of each way to warm up, by name; ``preset fast`` only with ``openvino`` installed."""
    ways = {"exact": {}, "dynamics fast": {"dynamics": "fast"}}
    if openvino:
        ways["preset fast"] = {"preset": "fast", "dynamics": "fast"}
    return ways


def warm_up(*, size: int = WARMUP_SIZE, pretrained_model: str = DEFAULT_BUNDLED_MODEL) -> Dict[str, float]:
    """Segment a generated ``size`` × ``size`` nuclear image each way that has a one-off cost.

    Parameters
    ----------
    size : int
        Side of the generated image in pixels (at least 64).
    pretrained_model : str
        Weights to warm up (a bundled name or a file).

    Returns
    -------
    dict of str → float
        Wall seconds per way (``"exact"``, ``"dynamics fast"``, ``"preset fast"`` with ``openvino``) and for
        the label kernels (``"outlines, blockwise labels"``).
    """
    if size < 64:
        raise ValueError(f"warm-up size must be at least 64 px, got {size}")
    from .data import make_image
    from .models import CellposeModel

    img = make_image((1, size, size), seed=5)[0][0]
    model = CellposeModel(pretrained_model=pretrained_model)
    seconds, masks = {}, None
    for name, settings in _ways(importlib.util.find_spec("openvino") is not None).items():
        masks = _timed(seconds, name, model.eval, img, **settings)[0]
    _timed(seconds, "outlines, blockwise labels", _label_kernels, masks)
    return seconds


def _timed(seconds: Dict[str, float], name: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, its wall seconds stored in ``seconds[name]`` and logged."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds[name] = time.perf_counter() - start
    logger.info("warm-up %s: %.2f s", name, seconds[name])
    return result


def _label_kernels(masks: np.ndarray) -> None:
    """Run the kernels that read label images (outlines of ``_seg.npy`` and ``--save_outlines``, the blockwise
    ownership pass) on ``masks`` (Ly, Lx) as uint16 and uint32, the two label dtypes of ``eval``."""
    from .blockwise.worker import owned_labels
    from .io.outlines import plane_outlines

    whole = (0, masks.shape[0], 0, masks.shape[1])
    for dtype in (np.uint16, np.uint32):
        labels = masks.astype(dtype)
        plane_outlines(labels, np.zeros(labels.shape, bool))
        owned_labels(labels, region=whole, core=whole, shape=labels.shape)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m cellpose.warmup [--size N]``: warm the caches and print the seconds each way took."""
    parser = argparse.ArgumentParser(prog="python -m cellpose.warmup", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=WARMUP_SIZE, help="side of the generated image (px)")
    args = parser.parse_args(argv)
    if args.size < 64:
        parser.error(f"--size must be at least 64 px, got {args.size}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    seconds = warm_up(size=args.size)
    print("warm-up: " + ", ".join(f"{name} {s:.1f} s" for name, s in seconds.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
