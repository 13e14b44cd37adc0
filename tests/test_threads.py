"""Numba's threads start without changing torch's (cellpose.threads).

Numba's OpenMP layer starts once per process, so each case runs in a fresh interpreter. Before the fix, on
a 2-core machine, ``torch.set_num_threads(1)`` became 2 after the first image's dynamics (and on a 16-core
machine 16), so the same image gave different float32 flows within one process, and one-thread Dask workers
ran the network on every core.
"""
from __future__ import annotations

import subprocess
import sys

import numba
import pytest

pytestmark = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba is configured with one thread")

PRELUDE = """
import numpy as np, torch
torch.get_num_threads()          # torch's pool is up before numba's, as after a first network pass
torch.set_num_threads(1)
"""

CASES = {
    "exact dynamics": """
from cellpose.dynamics import compute_masks
yy, xx = np.mgrid[:64, :64].astype(np.float32)
dP = np.stack([32 - yy, 32 - xx]) / 8
compute_masks(dP, np.ones((64, 64), np.float32), niter=20, impl="exact")
""",
    "fast dynamics": """
from cellpose.dynamics import compute_masks
yy, xx = np.mgrid[:64, :64].astype(np.float32)
dP = np.stack([32 - yy, 32 - xx]) / 8
compute_masks(dP, np.ones((64, 64), np.float32), niter=20, impl="fast")
""",
    "worker threads": """
from cellpose.threads import set_threads
set_threads(1)
""",
}


@pytest.mark.parametrize("case", list(CASES))
def test_torch_keeps_its_thread_count(case):
    code = PRELUDE + CASES[case] + "\nprint(torch.get_num_threads())\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "1", done.stdout
