"""Profiling a real ``CellposeModel.eval`` and a real CLI run (random CPnet weights, small images)."""
from __future__ import annotations

import inspect
import io
import json

import numpy as np
import pytest

import cellpose.profiling as P
from cellpose.profiling.schema import validate

from test_profiling import check_trace_nesting

EVAL_KW = dict(diameter=30.0, bsize=128, batch_size=4)


@pytest.fixture(scope="module")
def model(random_weights):
    from cellpose.models import CellposeModel

    return CellposeModel(gpu=False, pretrained_model=str(random_weights))


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:160, :150]
    img = np.zeros((160, 150), np.float32)
    for cy, cx in rng.uniform(20, 130, size=(8, 2)):
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 9.0 ** 2))
    return (img * 1000 + rng.normal(0, 20, img.shape)).astype(np.uint16)


@pytest.fixture(scope="module")
def plain_result(model, image):
    return model.eval(image, **EVAL_KW)


@pytest.fixture(scope="module")
def profiled(model, image):
    with P.profile(memory="tracemalloc") as rep:
        result = model.eval(image, **EVAL_KW)
    return rep, result


def _children(node: dict) -> dict:
    return {c["name"]: c for c in node["children"]}


def test_stage_times_add_up_on_a_real_eval(profiled):
    rep, _ = profiled
    root = rep.image_dict()["stages"]
    assert rep.coverage() >= 0.95
    ev = _children(root)["eval"]
    covered = sum(c["wall_s"] for c in ev["children"])
    assert covered >= 0.95 * ev["wall_s"], f"eval's stages cover {covered / ev['wall_s']:.1%} of it"
    names = set(_children(ev))
    assert {"convert", "normalize", "network", "dynamics"} <= names
    assert _children(_children(ev)["network"])["network.batch"]["calls"] >= 1


def test_results_are_bit_identical_with_profiling(plain_result, profiled):
    masks0, flows0, styles0 = plain_result
    masks1, flows1, styles1 = profiled[1]
    assert masks0.dtype == masks1.dtype and np.array_equal(masks0, masks1)
    for a, b in zip(flows0, flows1):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert np.array_equal(styles0, styles1)


def test_eval_report_has_memory_and_b_per_px(profiled, image):
    rep, _ = profiled
    doc = rep.to_json()
    assert validate(doc) == []
    img = doc["images"][0]
    assert img["pixels"] == image.shape[0] * image.shape[1]
    ev = _children(img["stages"])["eval"]
    assert ev["memory"]["peak_rss_bytes"] >= ev["memory"]["rss_before_bytes"] > 0
    assert ev["memory"]["peak_b_per_px"] is not None
    assert ev["memory"]["tracemalloc_peak_above_entry_bytes"] > 0
    assert "eval" in rep.table()


def test_profile_lines_names_real_lines_of_the_stage(model, image):
    from cellpose.models import CellposeModel

    with P.profile(memory="off", lines="normalize") as rep:
        model.eval(image, **EVAL_KW)
    text = rep.lines_report()
    source, first = inspect.getsourcelines(CellposeModel._prepare)
    assert "Function: CellposeModel._prepare" in text
    number = next(first + i for i, line in enumerate(source) if "normalize_image(" in line)
    row = next(line for line in text.splitlines() if line.split()[:1] == [str(number)])
    assert "normalize_image(" in row and row.split()[1] == "1", row
    assert "Function: normalize_image" in text


def test_cli_profile_writes_valid_json_and_trace(random_weights, image, tmp_path):
    import tifffile

    from cellpose import cli

    src = tmp_path / "img.tif"
    tifffile.imwrite(src, image)
    trace = tmp_path / "trace.json"
    out = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(out):
        status = cli.main(["--image_path", str(src), "--pretrained_model", str(random_weights), "--diameter", "30",
                           "--bsize", "128", "--profile", "--profile-trace", str(trace)])
    assert status == 0
    doc = json.loads((tmp_path / "profile.json").read_text())
    assert validate(doc) == []
    img = doc["images"][0]
    assert img["path"] == str(src) and img["pixels"] == image.size
    top = _children(img["stages"])
    assert {"io.read", "eval", "io.write.seg_npy"} <= set(top)
    assert img["coverage"] >= 0.95
    assert check_trace_nesting(json.loads(trace.read_text())) > 5
    assert "profile of " in out.getvalue() and "run summary: 1 image(s)" in out.getvalue()
