"""What the CLI does for a blockwise image: decide, estimate, run (on a cluster or here), report."""
from __future__ import annotations

import contextlib
import logging
import resource
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import BlockwiseOptions, EvalOptions
from ..io import tiff as io_tiff
from ..io.lazy import open_plane
from .estimate import estimate
from .segment import output_paths, plan_for, run

__all__ = ["wants_blockwise", "client_for", "estimate_text", "segment_path"]

logger = logging.getLogger(__name__)


def wants_blockwise(path: Path, options: BlockwiseOptions) -> bool:
    """True when ``options`` asks for blockwise, or leaves it open and the plane is larger than the threshold."""
    if options.enabled is not None:
        return bool(options.enabled)
    with contextlib.suppress(io_tiff.ImageReadError):
        info = io_tiff.image_info(path)
        plane = int(np.prod(sorted(info.shape)[-2:]))
        if plane > options.auto_pixels:
            logger.warning("%s: %d Mpx per plane is above %d Mpx: segmenting blockwise (--no_blockwise to "
                           "disable)", path, plane // 10 ** 6, options.auto_pixels // 10 ** 6)
            return True
    return False


@contextlib.contextmanager
def client_for(options: BlockwiseOptions):
    """The Dask client of the run: a ``Client`` on ``--scheduler``; else a :class:`LazyClient` whose local
    cluster starts only for a run of more than one block; None when ``workers == 0``."""
    from .cluster import LazyClient, local_client

    if options.scheduler:
        with local_client(options.workers, scheduler=options.scheduler) as client:
            yield client
        return
    if options.workers <= 0:
        yield None
        return
    lazy = LazyClient(options.workers)
    try:
        yield lazy
    finally:
        lazy.close()


def _chan(options: EvalOptions) -> int:
    chan, chan2 = options.channels if options.channels is not None else (0, 0)
    if chan2:
        raise ValueError("blockwise segmentation uses one channel (--chan); --chan2 is not supported")
    return int(chan)


def estimate_text(model, path: Path, *, options: EvalOptions, blockwise: BlockwiseOptions) -> str:
    """The ``--estimate`` line for one image (no pixels are read)."""
    plane = open_plane(path, chan=_chan(options))
    plan = plan_for(plane, model, options=options, block_size=blockwise.block_size, read_pixels=False)
    workers = max(1, blockwise.workers)
    from .cluster import worker_threads

    est = estimate(plan, workers=workers, threads=worker_threads(workers))
    return f"{path}: {plane.shape[0]}x{plane.shape[1]}, block {plan.block} (halo {plan.halo}); {est.text()}"


def segment_path(model, path: Path, *, options: EvalOptions, blockwise: BlockwiseOptions, client,
                 savedir: Optional[str] = None, report=None):
    """Segment one image blockwise; fill ``report`` with per-block rows and the estimate."""
    out = None
    if savedir is not None:
        out = Path(savedir) / output_paths(path)["store"].name
    result = run(path, model, chan=_chan(options), block_size=blockwise.block_size, out=out, client=client,
                 resume=blockwise.resume, options=replace(options, channels=None),
                 exact_percentiles=blockwise.exact_percentiles)
    if report is not None:
        report.set_shape(result.plan.shape)
        report.set_extra("blockwise", _profile_section(result, blockwise, client))
    logger.info("%s: %d objects -> %s", path, result.cells, result.store)
    return result


def _profile_section(result, blockwise: BlockwiseOptions, client) -> dict:
    from .cluster import LazyClient, worker_threads

    if isinstance(client, LazyClient) and not client.started:
        client = None          # a lazy cluster that one block did not need: the run was in this process
    workers = max(1, blockwise.workers) if client is not None else 1
    est = estimate(result.plan, workers=workers, threads=worker_threads(workers))
    measured = max((s["peak_rss_mb"] for s in result.blocks), default=float("nan"))
    if client is None:
        measured = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"store": str(result.store), "tiff": str(result.tiff), "table": str(result.table),
            "cells": result.cells, "block": result.plan.block, "halo": result.plan.halo,
            "workers": workers, "blocks": result.blocks,
            "skipped_blocks": sum(1 for s in result.blocks if s.get("skipped")),
            "estimate": vars(est), "measured_peak_worker_mb": measured, "wall_s": result.wall_s}
