"""``python -m cellpose.warmup`` fills numba's cache and the OpenVINO IR cache, and refuses a bad size."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def _run(args, env):
    return subprocess.run([sys.executable, "-m", "cellpose.warmup", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def test_warmup_fills_the_numba_and_openvino_caches(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"), CELLPOSE_OPENVINO_CACHE=str(tmp_path / "ov"))
    res = _run(["--size", "128"], env)
    assert res.returncode == 0, res.stderr
    assert "exact" in res.stdout and "dynamics fast" in res.stdout
    cached = {p.name.split("-")[0] for p in (tmp_path / "numba").rglob("*.nbi")}
    assert {"masks._grow", "fast._follow", "fast_masks._paint", "outlines._outline_kernel",
            "worker._edge_labels"} <= cached, sorted(cached)
    if HAS_OPENVINO:
        assert "preset fast" in res.stdout
        assert any((tmp_path / "ov").rglob("manifest.json"))


def test_warmup_refuses_a_tiny_size(tmp_path):
    res = _run(["--size", "8"], dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path)))
    assert res.returncode == 2
    assert "--size must be at least 64" in res.stderr
