"""Thread counts of the two thread pools in one process: torch's (the network) and numba's (the dynamics).

Both use the same OpenMP runtime. Starting numba's OpenMP threading layer, which happens once per process at
the first ``numba.get_num_threads()``, ``numba.set_num_threads()`` or parallel kernel, sets the runtime's
thread count to ``NUMBA_NUM_THREADS`` (all cores by default) and so changes ``torch.get_num_threads()``. Left
alone, ``OMP_NUM_THREADS=1`` or ``torch.set_num_threads(1)`` (one-thread Dask workers) would silently become
all cores for every network pass after the first image's dynamics.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Optional

import numba

__all__ = ["numba_threads", "set_threads"]


def numba_threads() -> int:
    """``numba.get_num_threads()``, starting numba's threading layer if needed, with torch's count kept.

    Returns
    -------
    int
        Numba's current thread count.
    """
    before = _torch_threads()
    count = numba.get_num_threads()
    if before is not None and _torch_threads() != before:
        sys.modules["torch"].set_num_threads(before)
    return count


def set_threads(threads: int) -> None:
    """Give torch and numba ``threads`` threads each (numba's capped at ``NUMBA_NUM_THREADS``).

    Numba's are set first: starting its threading layer would reset torch's count. Used by Dask workers and by
    blocks that run fewer at once than there are workers.

    Parameters
    ----------
    threads : int
        Threads per pool, >= 1.
    """
    import torch

    with contextlib.suppress(ValueError):
        numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(int(threads))


def _torch_threads() -> Optional[int]:
    """``torch.get_num_threads()`` where torch is imported, else None (the dynamics never import it)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None
