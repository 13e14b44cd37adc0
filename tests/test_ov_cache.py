"""The on-disk OpenVINO IR cache: a hit gives the same bits as a miss, damaged entries are rebuilt, and the
cache can be switched off or be unwritable without changing the result."""
from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pytest
import torch

from cellpose.inference import ov_cache
from cellpose.inference.prepared import PreparedNet
from cellpose.net.cpnet import CPnet
from cellpose.variants import NetVariant

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                reason="openvino is not installed (pip install 'cellpose-tb[openvino]')")

SHAPE = (2, 2, 64, 64)


def _small_net(seed: int) -> CPnet:
    torch.manual_seed(seed)
    return CPnet(nbase=(2, 8, 16, 32, 64), diam_mean=17.0).eval()


@pytest.fixture(scope="module")
def net():
    return _small_net(3)


@pytest.fixture(scope="module")
def batch():
    return torch.from_numpy(np.random.default_rng(5).random(SHAPE, dtype=np.float32))


def _outputs(net, batch):
    prepared = PreparedNet(net, variant=NetVariant(precision="fp32", backend="openvino"), device="cpu")
    out, style = prepared(batch)
    return out.numpy().copy(), style.numpy().copy()


def _entries(folder):
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def test_second_build_reads_the_cache_and_gives_the_same_bits(net, batch, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(ov_cache.CACHE_ENV, str(tmp_path / "c"))
    first = _outputs(net, batch)
    (entry,) = _entries(tmp_path / "c")
    assert {p.name for p in entry.iterdir()} == {"cpnet.xml", "cpnet.bin", "manifest.json"}
    with caplog.at_level(logging.INFO, logger="cellpose.inference.ov_cache"):
        second = _outputs(net, batch)
    assert "read from the cache" in caplog.text
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    with torch.no_grad():
        ref = net(batch)
    assert np.abs(first[0] - ref[0].detach().numpy()).max() <= 1e-4 * np.abs(ref[0].detach().numpy()).max()


def test_damaged_entry_is_replaced(net, batch, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(ov_cache.CACHE_ENV, str(tmp_path / "c"))
    first = _outputs(net, batch)
    (entry,) = _entries(tmp_path / "c")
    data = bytearray((entry / "cpnet.bin").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (entry / "cpnet.bin").write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="cellpose.inference.ov_cache"):
        again = _outputs(net, batch)
    assert "damaged" in caplog.text
    assert ov_cache._valid(entry) and _entries(tmp_path / "c") == [entry]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_off_and_unwritable_cache_give_the_same_bits(net, batch, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(ov_cache.CACHE_ENV, str(tmp_path / "c"))
    cached = _outputs(net, batch)
    monkeypatch.setenv(ov_cache.CACHE_ENV, "off")
    assert ov_cache.ir_cache_dir() is None
    off = _outputs(net, batch)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(ov_cache.CACHE_ENV, str(blocker / "cache"))
    with caplog.at_level(logging.WARNING, logger="cellpose.inference.ov_cache"):
        unwritable = _outputs(net, batch)
    assert "could not use the OpenVINO cache" in caplog.text
    for a, b, c in zip(cached, off, unwritable):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_key_follows_weights_and_shape(net):
    key = ov_cache.cache_key(net, SHAPE, "v")
    assert key == ov_cache.cache_key(net, SHAPE, "v")
    assert key != ov_cache.cache_key(net, (4,) + SHAPE[1:], "v")
    assert key != ov_cache.cache_key(net, SHAPE, "w")
    other = _small_net(4)
    assert key != ov_cache.cache_key(other, SHAPE, "v")


def test_default_folder_is_in_the_weight_cache_and_not_created_early(tmp_path, monkeypatch):
    monkeypatch.delenv(ov_cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path / "models"))
    assert ov_cache.ir_cache_dir() == tmp_path / "models" / "openvino"
    assert not (tmp_path / "models").exists()


def test_weight_cache_that_cannot_be_created_costs_only_the_conversion(net, batch, tmp_path, monkeypatch,
                                                                       caplog):
    monkeypatch.setenv(ov_cache.CACHE_ENV, str(tmp_path / "c"))
    cached = _outputs(net, batch)
    blocker = tmp_path / "home-file"
    blocker.write_text("not a folder")
    monkeypatch.delenv(ov_cache.CACHE_ENV)
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(blocker / "models"))
    with caplog.at_level(logging.WARNING, logger="cellpose.inference.ov_cache"):
        got = _outputs(net, batch)
    assert "could not use the OpenVINO cache" in caplog.text
    for a, b in zip(cached, got):
        np.testing.assert_array_equal(a, b)

