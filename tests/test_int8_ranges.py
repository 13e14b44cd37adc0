"""Calibrated int8 activation ranges (``cellpose.inference.int8_ranges``): the key, the disk cache, and the
ranges shipped for the bundled model, which must equal a fresh calibration."""
from __future__ import annotations

import importlib.util
import json
import logging

import numpy as np
import pytest
import torch

from cellpose.inference import int8, int8_ranges, ov_cache
from cellpose.models import CellposeModel
from cellpose.net.cpnet import CPnet
from cellpose.net.weights import DEFAULT_BUNDLED_MODEL

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="openvino is not installed (pip install 'cellpose-tb[openvino]')")
SHAPE = (2, 2, 64, 64)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(11)
    return CPnet(nbase=(2, 8, 16, 32, 64), diam_mean=17.0).eval()


def _convert(net, shape):
    from cellpose.inference.prepared import openvino_model

    return openvino_model(net, torch.zeros(shape))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(ov_cache.CACHE_ENV, str(tmp_path / "c"))
    return tmp_path / "c"


def test_key_names_weights_tile_and_marker_but_not_the_batch(net):
    key = int8_ranges.ranges_key(net, SHAPE, marker=False)
    assert key == int8_ranges.ranges_key(net, (7,) + SHAPE[1:], marker=False) == int8_ranges.ranges_key(
        net, SHAPE[1:], marker=False)
    assert key != int8_ranges.ranges_key(net, SHAPE, marker=True)
    assert key != int8_ranges.ranges_key(net, (2, 2, 64, 96), marker=False)
    other = CPnet(nbase=(2, 8, 16, 32, 64), diam_mean=17.0).eval()
    assert key != int8_ranges.ranges_key(other, SHAPE, marker=False)


def test_write_shipped_keeps_other_entries_and_lookup_reads_only_its_key(tmp_path, monkeypatch):
    path = tmp_path / "ranges.json"
    shapes = [[4, 2, 3, 3], [4, 4, 1, 1]]
    int8_ranges.write_shipped("a" * 40, np.array([0.0, -1.5]), np.array([2.0, 3.0]), shapes, info={"model": "x"},
                              path=path)
    int8_ranges.write_shipped("b" * 40, np.array([0.0]), np.array([1.0]), shapes[:1], info={}, path=path)
    data = json.loads(path.read_text())
    assert sorted(data["entries"]) == ["a" * 40, "b" * 40] and data["entries"]["a" * 40]["model"] == "x"
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
    monkeypatch.setenv(ov_cache.CACHE_ENV, "off")
    lo, hi, got = int8_ranges.lookup("a" * 40, shipped=path)
    np.testing.assert_array_equal(lo, [0.0, -1.5])
    np.testing.assert_array_equal(hi, [2.0, 3.0])
    assert got == shapes
    assert int8_ranges.lookup("c" * 40, shipped=path) is None
    assert int8_ranges.store("c" * 40, lo, hi, shapes) is None  # cache off: nothing written


@pytest.mark.parametrize("record", [{"lo": [0.0, 1.0], "hi": [1.0], "convolutions": [[1, 1, 1, 1]] * 2},
                                    {"lo": [0.0], "hi": [float("nan")], "convolutions": [[1, 1, 1, 1]]},
                                    {"lo": [2.0], "hi": [1.0], "convolutions": [[1, 1, 1, 1]]},
                                    {"lo": [0.0], "hi": [1.0]}])
def test_malformed_records_are_ignored_with_a_warning(record, tmp_path, caplog):
    path = tmp_path / "ranges.json"
    path.write_text(json.dumps({"entries": {"k": record}}))
    with caplog.at_level(logging.WARNING):
        assert int8_ranges.lookup("k", shipped=path) is None
    assert "ignoring int8 ranges file" in caplog.text


@needs_openvino
def test_ranges_do_not_depend_on_the_batch(net, cache):
    import openvino as ov

    tiles = int8.calibration_tiles(SHAPE, n=5)
    lo1, hi1 = int8.activation_ranges(_convert(net, (1,) + SHAPE[1:]), tiles, ov, batch=1)
    lo3, hi3 = int8.activation_ranges(_convert(net, (3,) + SHAPE[1:]), tiles, ov, batch=3)  # 5 = 3 + 2 padded
    assert (hi1 > 0).all() and (lo1 <= hi1).all() and len(lo3) == len(lo1)
    # two compiled batch sizes may use different kernels: the ranges as used (float16) may differ by one step
    for a, b in zip(zip(lo1, hi1), zip(lo3, hi3)):
        np.testing.assert_allclose(int8.activation_range(*a), int8.activation_range(*b), rtol=2 ** -10)


@needs_openvino
def test_calibrated_once_then_read_from_the_cache_for_another_batch(net, cache, caplog):
    import openvino as ov

    lo, hi = int8_ranges.ranges_for(net, _convert(net, SHAPE), ov, batch=SHAPE[0], marker=False)
    files = list((cache / "int8-ranges").glob("*.json"))
    assert [f.stem for f in files] == [int8_ranges.ranges_key(net, SHAPE, marker=False)]
    assert not list((cache / "int8-ranges").glob(".*"))
    with caplog.at_level(logging.INFO):
        lo4, hi4 = int8_ranges.ranges_for(net, _convert(net, (4,) + SHAPE[1:]), ov, batch=4, marker=False)
    assert "activation ranges read from the cache" in caplog.text
    np.testing.assert_array_equal(lo4, lo)
    np.testing.assert_array_equal(hi4, hi)


@needs_openvino
def test_a_damaged_cache_file_is_ignored_and_replaced(net, cache, caplog):
    import openvino as ov

    model = _convert(net, SHAPE)
    path = cache / "int8-ranges" / f"{int8_ranges.ranges_key(net, SHAPE, marker=False)}.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"lo": [0.0, 1.0], "hi": [1.0]}')
    with caplog.at_level(logging.WARNING):
        lo, hi = int8_ranges.ranges_for(net, model, ov, batch=SHAPE[0], marker=False)
    assert "ignoring int8 ranges file" in caplog.text and len(lo) == len(hi) > 2
    np.testing.assert_array_equal(json.loads(path.read_text())["hi"], hi)


@needs_openvino
def test_ranges_of_a_graph_with_other_convolutions_are_not_used(net, cache, caplog):
    import openvino as ov

    model = _convert(net, SHAPE)
    lo, hi = int8_ranges.ranges_for(net, model, ov, batch=SHAPE[0], marker=False)
    key = int8_ranges.ranges_key(net, SHAPE, marker=False)
    shapes = int8.convolution_shapes(model)
    assert len(shapes) == len(lo) and shapes[0][1] == SHAPE[1]
    swapped = [shapes[1], shapes[0]] + shapes[2:]  # same count, other order
    int8_ranges.store(key, lo + 5.0, hi + 5.0, swapped)
    with caplog.at_level(logging.WARNING):
        lo2, hi2 = int8_ranges.ranges_for(net, model, ov, batch=SHAPE[0], marker=False)
    assert "belong to a graph with other convolutions" in caplog.text
    np.testing.assert_array_equal(lo2, lo)
    np.testing.assert_array_equal(hi2, hi)
    assert int8_ranges.lookup(key)[2] == shapes  # the cache file was replaced


@needs_openvino
def test_shipped_ranges_equal_a_fresh_calibration_of_the_bundled_model(cache, caplog):
    """The shipped entry must match the bundled model as loaded now, and a build must find it. Each range is
    rounded up to float16 before use, so float32 differences between CPUs do not reach the model; one float16
    step is allowed for a raw maximum that lands on a float16 boundary on one CPU and just past it on another."""
    import openvino as ov

    from cellpose.inference.prepared import openvino_config

    net = CellposeModel(pretrained_model=DEFAULT_BUNDLED_MODEL).net
    model = _convert(net, (4, 2, 224, 224))
    assert not int8.uses_second_channel(net)
    with caplog.at_level(logging.INFO):
        shipped = int8_ranges.ranges_for(net, model, ov, batch=4, marker=False)
    assert "shipped with the package" in caplog.text, "no shipped ranges for the bundled model: run " \
                                                      "scripts/int8_ranges.py"
    assert not (cache / "int8-ranges").exists()  # nothing calibrated, nothing cached
    fresh = int8.calibrate(model, ov, batch=4, config=openvino_config("fp32"))
    assert len(shipped[0]) == len(fresh[0]) == len(int8.convolution_shapes(model))
    for (lo_s, hi_s), (lo_f, hi_f) in zip(zip(*shipped), zip(*fresh)):
        used_s, used_f = int8.activation_range(lo_s, hi_s), int8.activation_range(lo_f, hi_f)
        np.testing.assert_allclose(used_s, used_f, rtol=2 ** -10)


@needs_openvino
def test_a_network_that_overflows_is_refused_not_cached(cache):
    import openvino as ov

    torch.manual_seed(12)
    bad = CPnet(nbase=(2, 8, 16, 32, 64), diam_mean=17.0).eval()
    with torch.no_grad():
        next(m for m in bad.modules() if isinstance(m, torch.nn.Conv2d)).weight.fill_(3e38)  # float32 overflows
    with pytest.raises(ValueError, match="non-finite activation ranges"):
        int8_ranges.ranges_for(bad, _convert(bad, SHAPE), ov, batch=SHAPE[0], marker=False)
    assert not (cache / "int8-ranges").exists() or not list((cache / "int8-ranges").glob("*.json"))
