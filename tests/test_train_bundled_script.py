"""``scripts/train_bundled.py --average``: the mean of weight files (the shipped model is one)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_bundled.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("train_bundled", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _state(scale, steps, diam):
    return {"diam_mean": torch.tensor([17.0]), "diam_labels": torch.tensor([diam]),
            "w": (torch.arange(6, dtype=torch.float32) * scale).to(torch.float16).reshape(2, 3),
            "bn.num_batches_tracked": torch.tensor(steps)}


def test_average_weights(script, tmp_path):
    torch.save(_state(1.0, 10, 19.5), tmp_path / "a")
    torch.save(_state(3.0, 20, 18.4), tmp_path / "b")
    out = script.average_weights([tmp_path / "a", tmp_path / "b"], tmp_path / "sub" / "avg")
    got = torch.load(out, weights_only=True)
    assert got["w"].dtype == torch.float16
    torch.testing.assert_close(got["w"].float(), (torch.arange(6.0) * 2.0).reshape(2, 3))
    assert got["bn.num_batches_tracked"].item() == 10 and got["diam_labels"].item() == pytest.approx(19.5)
    other = _state(1.0, 1, 1.0)
    other["extra"] = torch.zeros(1)
    torch.save(other, tmp_path / "c")
    with pytest.raises(ValueError, match="different tensors"):
        script.average_weights([tmp_path / "a", tmp_path / "c"], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_more_needs_kind_equals_count(script):
    assert script._kind_count("crowded=16") == ("crowded", 16)
    for bad in ("crowded", "crowded=", "crowded=-1", "crowded=x"):
        with pytest.raises(Exception, match="KIND=N"):
            script._kind_count(bad)


def test_bad_crop_size_exits_2_before_building_the_training_set(tmp_path):
    out = tmp_path / "model"
    done = subprocess.run([sys.executable, str(SCRIPT), "--kinds", "1", "--bsize", "100", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "bsize must be a positive multiple of 16, got 100" in done.stderr
    assert not out.exists()
