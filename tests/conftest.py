"""Shared fixtures: seeded RNG, a random CPnet weight file, and the upstream reference interpreter."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_PYTHON = ROOT / ".reference" / "venv" / "bin" / "python"


@pytest.fixture(scope="session", autouse=True)
def openvino_cache(tmp_path_factory):
    """Keep the OpenVINO IR cache (``cellpose.inference.ov_cache``) of the whole session in a temporary folder."""
    folder = tmp_path_factory.mktemp("openvino_cache")
    before = os.environ.get("CELLPOSE_OPENVINO_CACHE")
    os.environ["CELLPOSE_OPENVINO_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("CELLPOSE_OPENVINO_CACHE", None)
    else:
        os.environ["CELLPOSE_OPENVINO_CACHE"] = before


@pytest.fixture
def rng():
    """A seeded numpy Generator (a new one per test)."""
    return np.random.default_rng(20261124)


@pytest.fixture(scope="session")
def reference_python() -> Path:
    """The upstream cellpose 3.1.1.3 interpreter; skips the test when the reference venv is missing."""
    if not REFERENCE_PYTHON.exists():
        pytest.skip(f"reference env missing ({REFERENCE_PYTHON}): run scripts/reference_env.sh to enable parity tests")
    return REFERENCE_PYTHON


def run_reference(python: Path, script: Path, *args, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``script`` with the reference interpreter; fail the test with its stderr if it fails."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"), PYTHONWARNINGS="ignore")
    proc = subprocess.run([str(python), str(script), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=str(script.parent))
    if proc.returncode != 0:
        pytest.fail(f"reference script {script.name} failed:\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> Path:
    """A random full-size CPnet saved by ours, BatchNorm running stats moved away from 0/1."""
    from cellpose.net.cpnet import random_cpnet
    from cellpose.net.weights import save_weights

    net = random_cpnet(seed=0)
    path = tmp_path_factory.mktemp("weights") / "random_cpnet"
    save_weights(net, path)
    return path
