"""Running blocks on Dask: one model per worker (a worker plugin), thread counts that share the cores.

Each worker process loads the model once, in :class:`ModelPlugin.setup`, and every block task on that worker
uses it. Torch and numba get ``cores // workers`` threads and Dask one thread per worker, so the three do
not oversubscribe the cores. A ``LocalCluster`` also starts its workers without Dask's
``MALLOC_TRIM_THRESHOLD_``, which slows torch by half (``worker_environ``); workers of a cluster given by
address keep their own environment. Tasks write their block record into the run's work folder themselves
(only small statistics travel back), so the folder must be on a file system that every worker sees (always
true for a ``LocalCluster``).
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Optional

import dask
from distributed.diagnostics.plugin import WorkerPlugin

from ..threads import set_threads

__all__ = ["ModelSpec", "ModelPlugin", "block_task", "local_client", "worker_threads"]

logger = logging.getLogger(__name__)

PLUGIN_NAME = "cellpose-tb-model"


@dataclass(frozen=True)
class ModelSpec:
    """How a worker rebuilds the driver's model: weight file, device, threads."""

    pretrained_model: str
    device: str = "cpu"
    threads: int = 1
    variant_settings: tuple = ()


def worker_threads(workers: int) -> int:
    """Torch/numba threads per worker so that ``workers`` processes share this machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, int(workers)))


def load_model(spec: ModelSpec):
    """Set the thread counts and load the model described by ``spec`` (runs in the worker)."""
    from ..models import CellposeModel

    set_threads(spec.threads)
    return CellposeModel(pretrained_model=spec.pretrained_model, device=spec.device, **dict(spec.variant_settings))


class ModelPlugin(WorkerPlugin):
    """Dask worker plugin that holds one loaded model per worker process."""

    name = PLUGIN_NAME

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.model = None

    def setup(self, worker=None):
        """Load the model when the plugin reaches a worker."""
        self.model = load_model(self.spec)
        logger.info("worker %s: model %s loaded", getattr(worker, "address", "?"), self.spec.pretrained_model)

    def teardown(self, worker=None):
        """Drop the model."""
        self.model = None


def block_task(plane, plan, k: int, work_path: str, concurrency: int = 0) -> dict:
    """Segment block ``k`` on a worker with the worker's model, record it, return its statistics.

    ``concurrency`` (> 0): how many blocks run at once on this machine; the worker then takes
    ``cores // concurrency`` threads, so that a run with fewer blocks than workers still uses every core.
    """
    from distributed import get_worker

    from .records import WorkFolder
    from .worker import segment_block

    if concurrency > 0:
        set_threads(worker_threads(concurrency))
    model = get_worker().plugins[PLUGIN_NAME].model
    result = segment_block(model, plane, plan, k)
    WorkFolder(work_path).save(result)
    return result.stats


@contextlib.contextmanager
def local_client(workers: int, *, scheduler: Optional[str] = None):
    """A ``distributed.Client`` on ``scheduler``, or on a new ``LocalCluster`` of ``workers`` processes."""
    from distributed import Client, LocalCluster

    if not logger.isEnabledFor(logging.INFO):
        logging.getLogger("distributed").setLevel(logging.WARNING)
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ(workers)}), \
            LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None,
                         memory_limit=0) as cluster, Client(cluster) as client:
        yield client


class LazyClient:
    """A local cluster of ``workers`` processes, started by the first :meth:`get`.

    A run whose blocks fit in one task (an image of one block, or a resume with one block left) segments it
    in the calling process, with the model already loaded, and never pays for starting the cluster and
    loading the model in a worker. :meth:`close` shuts the cluster down if it was started.
    """

    def __init__(self, workers: int):
        self.workers = int(workers)
        self._stack = contextlib.ExitStack()
        self._client = None

    @property
    def started(self) -> bool:
        """Whether the cluster is running."""
        return self._client is not None

    def get(self):
        """The ``distributed.Client`` (the cluster is started on the first call)."""
        if self._client is None:
            self._client = self._stack.enter_context(local_client(self.workers))
        return self._client

    def close(self) -> None:
        self._stack.close()
        self._client = None


def worker_environ(workers: int) -> dict:
    """Environment of the local worker processes: thread counts for OpenMP/MKL/OpenBLAS, and *no*
    ``MALLOC_TRIM_THRESHOLD_``. Dask's default (65,536 bytes) makes glibc return every large buffer to the
    kernel, so torch's convolutions page-fault their workspaces on every call: 6.8-8.3 s against 4.4-4.6 s
    without it for two passes of a batch of 8 tiles in one worker (2 threads, this 2-core machine).
    """
    threads = worker_threads(workers)
    return {name: threads for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
