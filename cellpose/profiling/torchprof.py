"""``--profile-torch``: a ``torch.profiler`` operator table of the network stage.

Each call of the stage runs inside its own ``torch.profiler.profile`` (CPU activity, plus CUDA when CUDA is
initialised); the operator table (``key_averages``) of every call is kept. The profiler's own overhead lands in the
enclosing stage, not in the timed stage, but operators run slower while it records: read the stage's wall time
from a run without ``--profile-torch``.
"""
from __future__ import annotations

import contextlib
from typing import List

__all__ = ["TorchStageProfiler"]


class TorchStageProfiler:
    """Collects ``torch.profiler`` tables of each call of one stage (default ``"network"``).

    Parameters
    ----------
    stage : str
        Stage to profile.
    row_limit : int
        Rows of each operator table.
    """

    def __init__(self, stage: str = "network", *, row_limit: int = 40):
        self.stage = stage
        self.row_limit = int(row_limit)
        self.tables: List[str] = []

    @staticmethod
    def _activities() -> list:
        import torch
        from torch.profiler import ProfilerActivity

        acts = [ProfilerActivity.CPU]
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            acts.append(ProfilerActivity.CUDA)
        return acts

    @contextlib.contextmanager
    def hook(self):
        """Context manager run around each call of the stage."""
        from torch.profiler import profile

        acts = self._activities()
        sort_key = "self_cuda_time_total" if len(acts) > 1 else "self_cpu_time_total"
        with profile(activities=acts, record_shapes=True) as prof:
            yield prof
        averages = prof.key_averages(group_by_input_shape=True)
        self.tables.append(averages.table(sort_by=sort_key, row_limit=self.row_limit))

    def report(self) -> str:
        """All collected tables, one section per call of the stage."""
        if not self.tables:
            return f"cellpose-tb --profile-torch: stage {self.stage!r} never ran\n"
        parts = [f"cellpose-tb --profile-torch: torch.profiler tables of stage {self.stage!r}, "
                 f"{len(self.tables)} call(s)\n"]
        for i, table in enumerate(self.tables, 1):
            parts.append(f"\n=== call {i} ===\n{table}\n")
        return "".join(parts)
