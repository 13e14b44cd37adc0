"""CPnet and weight-file parity with upstream cellpose 3.1.1.3 (run as a black box in a subprocess).

Skipped when the reference interpreter ``.reference/venv/bin/python`` is missing.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from cellpose.net import CPnet, load_weights, save_weights

HELPER = Path(__file__).with_name("_ref_net.py")


def _run_upstream(python: Path, tmp: Path, *args) -> None:
    """Run the helper with the reference interpreter (outside our source tree so upstream is imported)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore", CELLPOSE_LOCAL_MODELS_PATH=str(tmp / "ref_cache"))
    proc = subprocess.run([str(python), str(HELPER), *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=str(tmp))
    if proc.returncode != 0:
        pytest.fail(f"upstream helper failed ({' '.join(map(str, args))}):\n{proc.stderr[-4000:]}")


def _ours(net: CPnet, x: np.ndarray):
    with torch.no_grad():
        out, style, _ = net.eval()(torch.from_numpy(x))
    return out.numpy(), style.numpy()


def _assert_close(out, ref, style, ref_style):
    """Outputs within 1e-4 of their range, styles with cosine similarity >= 0.99999."""
    assert out.shape == ref.shape and style.shape == ref_style.shape
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()
    cos = (style * ref_style).sum(1) / (np.linalg.norm(style, axis=1) * np.linalg.norm(ref_style, axis=1))
    assert cos.min() >= 0.99999


@pytest.fixture(scope="module")
def upstream_build(reference_python, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref_build")
    _run_upstream(reference_python, tmp, "build", tmp, 123)
    return tmp


def test_upstream_file_loads_strict_and_forward_matches(upstream_build):
    state = torch.load(upstream_build / "up_weights", weights_only=True)
    net = CPnet()
    net.load_state_dict(state, strict=True)
    assert list(state) == list(net.state_dict())
    x = np.load(upstream_build / "x.npy")
    out, style = _ours(net, x)
    ref = np.load(upstream_build / "up_out.npy")
    _assert_close(out, ref, style, np.load(upstream_build / "up_style.npy"))
    assert np.abs(ref).max() > 0.1


def test_upstream_file_through_load_weights(upstream_build):
    net, info = load_weights(upstream_build / "up_weights")
    assert info.n_keys == 313 and info.diam_from_file
    out, style = _ours(net, np.load(upstream_build / "x.npy"))
    _assert_close(out, np.load(upstream_build / "up_out.npy"), style, np.load(upstream_build / "up_style.npy"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_our_file_loads_in_upstream_cellposemodel_and_back(reference_python, upstream_build, tmp_path, dtype):
    torch.manual_seed(7)
    net = CPnet(diam_mean=21.5)
    with torch.no_grad():
        net.diam_labels.fill_(25.0)
        for name, t in net.state_dict().items():
            if name.endswith("running_mean"):
                t.copy_(torch.randn_like(t) * 0.5)
            elif name.endswith("running_var"):
                t.copy_(torch.rand_like(t) * 1.5 + 0.5)
    path = save_weights(net, tmp_path / "ours", dtype=dtype)
    _run_upstream(reference_python, tmp_path, "load", path, upstream_build / "x.npy", tmp_path)
    assert json.loads((tmp_path / "diams.json").read_text()) == {"diam_mean": 21.5, "diam_labels": 25.0}
    ours_loaded, _ = load_weights(path)
    out, style = _ours(ours_loaded, np.load(upstream_build / "x.npy"))
    _assert_close(out, np.load(tmp_path / "out.npy"), style, np.load(tmp_path / "style.npy"))
    back, info = load_weights(tmp_path / "resaved")
    assert info.n_keys == 313
    mine = ours_loaded.state_dict()
    assert all(torch.equal(v, mine[k]) for k, v in back.state_dict().items())
