"""``--estimate``: predicted peak memory and time of a blockwise run, from the block size and the model.

The cost model is linear in the pixels a worker holds and processes. Its constants were measured with
``benchmarks/bench_blockwise.py`` on the 2-core development machine (AMD EPYC, avx512_bf16, fp32 torch; see
GUIDELINES.md, section "Whole slides"):

* one worker: ``WORKER_BASE_MB`` (interpreter, torch, numba, the model) plus ``ACTIVATION_MB_PER_TILE`` per tile
  of a batch (the network's activations; 8 tiles of 224 px: about 700 MB, as the whole-image profile shows) plus
  ``BYTES_PER_REGION_PX`` per pixel of the block's region (core + halo): the input window, the rescaled network
  input and output, the flows and the dynamics' buffers. Measured on the ``lung`` preset with 3840-px blocks
  (region 15.3 Mpx): 1,562-1,579 MB per worker;
* the driver (client, scheduler, the nanny processes) adds ``DRIVER_BASE_MB``;
* time: ``NETWORK_S_PER_MPX`` per million tile pixels the network runs on one thread (divided by the
  threads a worker has) and divided by the variant's network speed-up (``NETWORK_SPEEDUP``), plus
  ``DYNAMICS_S_PER_MPX`` (exact) or ``FAST_DYNAMICS_S_PER_MPX`` (``--dynamics fast``) per million region
  pixels. The speed-ups are the exemplar-size network-stage ratios of GUIDELINES.md section 7 (AMD EPYC,
  flags avx2 avx512f avx512_bf16, no AMX); a variant not in the table (CUDA, fp16) keeps exact's time, an
  upper bound. The ``lung`` preset with ``--preset fast --dynamics fast`` (OpenVINO bf16, 2 workers of 1
  thread, same CPU) took 235.6 s once OpenVINO stopped pinning its threads (GUIDELINES.md section 10); this
  model predicts 3.6 min for it. Before that fix it took 421 s, which is why an earlier version of this model
  kept exact's network time for every variant. The whole ``wd`` slide, same settings and CPU, after the fix:
  1,565 s measured, 1,579 s predicted. Those runs predate int8 (``fast``'s pick since 2026-11-30, night);
  its speed-up below is the exemplar-size median of GUIDELINES.md section 7, not checked on a slide, and its
  cold build (conversion and calibration) adds about 0.4 GB to a worker's peak once per weights and tile
  shape, which ``OPENVINO_MB`` does not include.
* the OpenVINO backend adds ``OPENVINO_MB`` per worker (its compiled network and buffers; measured on the
  ``lung`` preset with ``--preset fast``: 1,767-1,877 MB per worker against 1,640 MB predicted without it).

The total assumes every worker holds a largest block at the same time: an upper bound.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..inference.window import plan_window
from .blocks import BlockPlan
from .worker import network_target

__all__ = ["Estimate", "estimate", "WORKER_BASE_MB", "ACTIVATION_MB_PER_TILE", "BYTES_PER_REGION_PX",
           "DRIVER_BASE_MB", "NETWORK_S_PER_MPX", "DYNAMICS_S_PER_MPX", "FAST_DYNAMICS_S_PER_MPX", "OPENVINO_MB",
           "NETWORK_SPEEDUP", "network_speedup"]

WORKER_BASE_MB = 450.0
ACTIVATION_MB_PER_TILE = 88.0
BYTES_PER_REGION_PX = 28.0
DRIVER_BASE_MB = 700.0
NETWORK_S_PER_MPX = 14.0
DYNAMICS_S_PER_MPX = 0.3
FAST_DYNAMICS_S_PER_MPX = 0.1
OPENVINO_MB = 240.0
NETWORK_SPEEDUP = {  # (backend, precision, channels_last) -> network stage vs exact; channels_last None: either
    ("torch", "fp32", False): 1.0, ("torch", "fp32", True): 1.40,
    ("torch", "bf16", False): 2.28, ("torch", "bf16", True): 2.91,
    ("compile", "fp32", None): 1.64, ("compile", "bf16", None): 3.26,
    ("openvino", "fp32", None): 2.06, ("openvino", "bf16", None): 4.15, ("openvino", "int8", None): 7.60,
}


@dataclass(frozen=True)
class Estimate:
    """Predicted cost of a run.

    Attributes
    ----------
    peak_worker_mb : float
        Peak RSS of one worker.
    peak_total_mb : float
        Driver plus all workers at their peaks.
    seconds : float
        Wall time with ``workers`` workers (blocks spread evenly).
    blocks : int
    workers : int
    """

    peak_worker_mb: float
    peak_total_mb: float
    seconds: float
    blocks: int
    workers: int

    def text(self) -> str:
        """One line for the terminal."""
        return (f"estimate: {self.blocks} blocks on {self.workers} worker(s): peak RSS {self.peak_worker_mb:,.0f} MB "
                f"per worker, {self.peak_total_mb:,.0f} MB in all; about {self.seconds / 60:,.1f} min")


def _largest_region(plan: BlockPlan) -> int:
    grid = plan.grid
    best = 0
    for k in range(min(grid.nblocks, 4)):
        y0, y1, x0, x1 = grid.region(k)
        best = max(best, (y1 - y0) * (x1 - x0))
    return best


def _network_pixels(plan: BlockPlan, k: int) -> int:
    """Tile pixels the network runs for block ``k``."""
    wplan = plan_window(plan.scaled, network_target(plan, plan.grid.region(k)), tiling=plan.tiling)
    ly, lx = wplan.grid.tile
    return len(wplan.tiles) * ly * lx


def _variant_mb(variant) -> float:
    return OPENVINO_MB if variant is not None and variant.backend == "openvino" else 0.0


def network_speedup(variant) -> float:
    """Network-stage speed-up of a resolved variant over exact fp32 PyTorch.

    Parameters
    ----------
    variant : cellpose.variants.NetVariant or None
        Resolved for the device (None: the exact network).

    Returns
    -------
    float
        From ``NETWORK_SPEEDUP``; 1.0 for exact and for variants not measured there (an upper bound on time).
    """
    if variant is None:
        return 1.0
    for layout in (bool(variant.channels_last), None):
        key = (variant.backend, variant.precision, layout)
        if key in NETWORK_SPEEDUP:
            return NETWORK_SPEEDUP[key]
    return 1.0


def estimate(plan: BlockPlan, *, workers: int = 1, threads: int = 2) -> Estimate:
    """Predict peak RSS and wall time of ``plan`` on ``workers`` processes of ``threads`` threads each.

    With fewer blocks than workers, only as many workers are busy, and each gets ``threads * workers / busy``
    threads (as ``cluster.block_task`` sets them).
    """
    busy = max(1, min(int(workers), plan.grid.nblocks))
    threads = max(1, int(threads) * max(1, int(workers)) // busy)
    tiles_mb = ACTIVATION_MB_PER_TILE * plan.tiling.batch_size * (plan.tiling.bsize / 224.0) ** 2
    worker_mb = WORKER_BASE_MB + tiles_mb + BYTES_PER_REGION_PX * _largest_region(plan) / 1e6
    worker_mb += _variant_mb(plan.variant)
    idle_mb = WORKER_BASE_MB * (max(1, workers) - busy)
    total_mb = DRIVER_BASE_MB + worker_mb * busy + idle_mb
    grid = plan.grid
    net_mpx = sum(_network_pixels(plan, k) for k in range(grid.nblocks)) / 1e6
    region_mpx = sum((r[1] - r[0]) * (r[3] - r[2]) for r in map(grid.region, range(grid.nblocks))) / 1e6
    dynamics = FAST_DYNAMICS_S_PER_MPX if plan.dynamics.impl == "fast" else DYNAMICS_S_PER_MPX
    network_s = NETWORK_S_PER_MPX * net_mpx / max(1, threads) / network_speedup(plan.variant)
    cpu_s = network_s + dynamics * region_mpx
    return Estimate(worker_mb, total_mb, cpu_s / busy, grid.nblocks, max(1, workers))
