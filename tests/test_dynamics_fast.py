"""``impl="fast"`` dynamics: agreement with the exact path, determinism, and the CLI / eval switches."""
from __future__ import annotations

import json

import numba
import numpy as np
import pytest
import tifffile

from cellpose.cli import main
from cellpose.config import DynamicsOptions
from cellpose.data import make_image
from cellpose.dynamics import (compute_masks, fill_holes_and_remove_small_masks, follow_flows, get_masks,
                               masks_to_flows)
from cellpose.dynamics.chunked import follow_flows_chunked, get_masks_chunked, halo_rows
from cellpose.dynamics.fast import follow_flows_fast, thread_limit
from cellpose.dynamics.fast_masks import fill_holes_and_remove_small_masks_fast, get_masks_fast
from cellpose.dynamics.fast_qc import flow_errors_fast
from cellpose.dynamics.masks import renumber
from cellpose.dynamics.qc import flow_errors
from cellpose.metrics import average_precision
from cellpose.models import CellposeModel
from cellpose.profiling import profile


def _oracle(labels, rng, noise=0.5):
    """Noisy network-like outputs of a label image: 5 × its flows + N(0, noise), cellprob ±5."""
    dP = (5 * masks_to_flows(labels)).astype(np.float32)
    dP += rng.normal(0, noise, dP.shape).astype(np.float32)
    cellprob = np.where(labels > 0, 5.0, -5.0).astype(np.float32)
    return dP, cellprob


def _synthetic(shape, seed):
    _, labels = make_image((1,) + shape, seed=seed)
    labels = labels.astype(np.uint32)
    renumber(labels)
    return labels


def _squares(n, pitch=6, side=5):
    """n × n grid of side × side squares, labels 1..n²."""
    labels = np.zeros((n * pitch, n * pitch), np.uint32)
    ids = np.arange(1, n * n + 1, dtype=np.uint32).reshape(n, n)
    for dy in range(side):
        for dx in range(side):
            labels[dy::pitch, dx::pitch] = ids
    return labels


@pytest.fixture(scope="module")
def cases():
    rng = np.random.default_rng(20261130)
    return {"small": _oracle(_synthetic((192, 160), 1), rng), "medium": _oracle(_synthetic((512, 448), 2), rng),
            "squares": _oracle(_squares(262), rng, noise=0.2)}


def _assert_agree(exact, fast):
    n_e, n_f = int(exact.max()), int(fast.max())
    assert abs(n_f - n_e) <= 0.002 * n_e, (n_e, n_f)
    ap = average_precision(exact, fast, thresholds=(0.9,))["ap"][0]
    assert ap >= 0.99, ap


@pytest.mark.parametrize("name", ["small", "medium", "squares"])
def test_fast_agrees_with_exact_on_noisy_oracle_flows(cases, name):
    dP, cellprob = cases[name]
    niter = 30 if name == "squares" else 200
    exact = compute_masks(dP, cellprob, niter=niter)
    fast = compute_masks(dP, cellprob, niter=niter, impl="fast")
    assert fast.dtype == exact.dtype and fast.shape == exact.shape
    assert exact.max() > (65535 if name == "squares" else 20)
    _assert_agree(exact, fast)


def _with_threads(n, fn, *args, **kwargs):
    before = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        return fn(*args, **kwargs)
    finally:
        numba.set_num_threads(before)


def _fast_parts(dP, cellprob):
    """Every fast kernel called directly (no thread limit): end points, masks, flow errors, filled masks."""
    fg = cellprob > 0
    p = follow_flows_fast(dP, fg, niter=200)
    masks = get_masks_fast(p, fg)
    return p, masks, flow_errors_fast(masks, dP), fill_holes_and_remove_small_masks_fast(masks)


def test_fast_is_deterministic_across_threads_and_runs(cases):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba is configured with a single thread")
    dP, cellprob = cases["medium"]
    one, two, again = (_with_threads(n, _fast_parts, dP, cellprob) for n in (1, 2, 2))
    for a, b, c in zip(one, two, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, c)
    dP, cellprob = cases["squares"]          # 1.7 M foreground pixels: compute_masks uses 2 threads
    one, two = (_with_threads(n, compute_masks, dP, cellprob, niter=30, impl="fast") for n in (1, 2))
    assert one.max() > 65535
    np.testing.assert_array_equal(one, two)


def test_thread_limit_scales_with_pixels_and_restores():
    before = numba.get_num_threads()
    with thread_limit(10) as small:
        assert small == 1 == numba.get_num_threads()
    with thread_limit(10 ** 9) as big:
        assert big == before
    assert numba.get_num_threads() == before


def test_exact_is_the_default(cases):
    dP, cellprob = cases["small"]
    np.testing.assert_array_equal(compute_masks(dP, cellprob), compute_masks(dP, cellprob, impl="exact"))
    assert DynamicsOptions().impl == "exact"


def test_bad_impl_is_refused_with_the_valid_values():
    dP, cellprob = np.zeros((2, 8, 8), np.float32), np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match="exact, fast"):
        compute_masks(dP, cellprob, impl="quick")
    with pytest.raises(ValueError, match="exact, fast"):
        DynamicsOptions(impl="Fast")


@pytest.mark.parametrize("niter", [0, 1, 2, 5, 6])
@pytest.mark.parametrize("interp", [True, False])
def test_two_cycles_end_on_the_right_parity(niter, interp):
    dP = np.zeros((2, 3, 4), np.float32)
    dP[1, :, 1], dP[1, :, 2] = 5.0, -5.0        # x = 1 and x = 2 swap forever
    dP[0, 2, :] = -5.0                          # bottom row moves up into the swapping rows
    fg = np.ones((3, 4), bool)
    np.testing.assert_array_equal(follow_flows_fast(dP, fg, niter=niter, interp=interp),
                                  follow_flows(dP, fg, niter=niter, interp=interp))


def test_nearest_sampling_is_bit_identical_to_exact(cases):
    dP, cellprob = cases["medium"]          # no blend: the same float32 additions as the exact path
    fg = cellprob > 0
    np.testing.assert_array_equal(follow_flows_fast(dP, fg, niter=200, interp=False),
                                  follow_flows(dP, fg, niter=200, interp=False))


@pytest.mark.parametrize("niter", [3, 30])
def test_fast_follow_clamps_and_stops_like_exact(rng, niter):
    dP = np.empty((2, 40, 50), np.float32)
    dP[0], dP[1] = 2.5, -7.5                    # half a pixel down, 1.5 pixels left per step, then clamped
    fg = rng.random((40, 50)) > 0.3
    fg[:, :3] = True
    p_fast = follow_flows_fast(dP, fg, niter=niter)
    assert p_fast.dtype == np.int32
    np.testing.assert_array_equal(p_fast, follow_flows(dP, fg, niter=niter))
    assert p_fast.min() >= 0 and p_fast[0].max() <= 39


def test_fast_mask_assembly_and_filters_equal_exact(cases):
    dP, cellprob = cases["medium"]
    fg = cellprob > 0
    p = follow_flows_fast(dP, fg, niter=200)
    masks = get_masks(p, fg)
    np.testing.assert_array_equal(get_masks_fast(p, fg), masks)
    small = {"max_size_fraction": 0.001}
    np.testing.assert_array_equal(get_masks_fast(p, fg, **small), get_masks(p, fg, **small))
    for min_size in (0, 15, 200):
        np.testing.assert_array_equal(fill_holes_and_remove_small_masks_fast(masks, min_size=min_size),
                                      fill_holes_and_remove_small_masks(masks, min_size=min_size))


def test_fast_flow_errors_match_exact_to_rounding(cases):
    dP, cellprob = cases["small"]
    masks = compute_masks(dP, cellprob, flow_threshold=0.0)
    np.testing.assert_allclose(flow_errors_fast(masks, dP), flow_errors(masks, dP), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("impl", ["exact", "fast"])
def test_profile_records_the_impl(cases, impl):
    dP, cellprob = cases["small"]
    with profile(memory="off") as rep:
        compute_masks(dP, cellprob, impl=impl)
    image = rep.image_dict()
    assert image["options"]["dynamics_impl"] == impl
    assert ("dynamics.fast_field" in set(_stage_names(image["stages"]))) == (impl == "fast")


def _borders_crossing_cells(labels, rows):
    """Chunk borders r (multiples of ``rows``) with a label on both rows r - 1 and r."""
    return sum(bool(np.any((labels[r - 1] == labels[r]) & (labels[r] > 0)))
               for r in range(rows, labels.shape[0], rows))


@pytest.mark.parametrize("name, rows", [("medium", 48), ("squares", 100)])
def test_chunked_masks_are_identical_to_unchunked(cases, name, rows):
    dP, cellprob = cases[name]
    niter = 30 if name == "squares" else 200
    whole = compute_masks(dP, cellprob, niter=niter, impl="fast")
    assert _borders_crossing_cells(whole, rows) >= 8
    np.testing.assert_array_equal(compute_masks(dP, cellprob, niter=niter, impl="fast", chunk_rows=rows), whole)


@pytest.mark.parametrize("rows", [5, 37, 1000])
def test_chunked_parts_equal_fast_parts(cases, rows):
    dP, cellprob = cases["small"]
    fg = cellprob > 0
    p = follow_flows_fast(dP, fg, niter=200)
    np.testing.assert_array_equal(follow_flows_chunked(dP, fg, niter=200, rows=rows), p)
    np.testing.assert_array_equal(get_masks_chunked(p, fg, rows=rows), get_masks_fast(p, fg))
    assert halo_rows(dP, fg, 200) >= int(np.ceil(200 * np.abs(dP[0][fg]).max() / 5))


def test_chunk_needs_fast_and_a_row_count():
    dP, cellprob = np.zeros((2, 8, 8), np.float32), np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match="fast"):
        compute_masks(dP, cellprob, chunk_rows=4)
    with pytest.raises(ValueError, match=">= 0"):
        DynamicsOptions(impl="fast", chunk_rows=-1)


def test_eval_keyword_selects_fast_dynamics():
    img, _ = make_image((1, 160, 160), seed=5)
    model = CellposeModel(pretrained_model="cptb_nuclei")
    exact, _, _ = model.eval(img[0], channels=[0, 0])
    fast, _, _ = model.eval(img[0], channels=[0, 0], dynamics="fast")
    assert exact.max() > 5
    _assert_agree(exact, fast)
    np.testing.assert_array_equal(model.eval(img[0], channels=[0, 0], dynamics="fast", dynamics_chunk=16)[0], fast)
    with pytest.raises(ValueError, match="exact, fast"):
        model.eval(img[0], channels=[0, 0], dynamics="turbo")


def _stage_names(node):
    yield node["name"]
    for child in node["children"]:
        yield from _stage_names(child)


def test_cli_dynamics_flag_end_to_end(tmp_path, capsys):
    img, _ = make_image((1, 128, 144), seed=6)
    tifffile.imwrite(tmp_path / "img.tif", img[0])
    rc = main(["--dir", str(tmp_path), "--save_tif", "--dynamics", "fast", "--profile"])
    assert rc == 0
    assert tifffile.imread(tmp_path / "img_cp_masks.tif").max() > 0
    image = json.loads((tmp_path / "profile.json").read_text())["images"][0]
    assert image["options"]["options"]["dynamics"]["impl"] == "fast"
    assert image["options"]["dynamics_impl"] == "fast" and image["options"]["dynamics_threads"] >= 1
    assert "dynamics.fast_field" in set(_stage_names(image["stages"]))
    capsys.readouterr()
    rc = main(["--dir", str(tmp_path), "--dynamics", "turbo"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "exact, fast" in err[0] and "turbo" in err[0]
    rc = main(["--dir", str(tmp_path), "--dynamics_chunk", "16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--dynamics_chunk" in err[0] and "fast" in err[0]


def test_cli_dynamics_chunk_gives_the_same_masks(tmp_path):
    img, _ = make_image((1, 128, 144), seed=6)
    tifffile.imwrite(tmp_path / "img.tif", img[0])
    assert main(["--dir", str(tmp_path), "--save_tif", "--no_npy", "--dynamics", "fast"]) == 0
    whole = tifffile.imread(tmp_path / "img_cp_masks.tif")
    assert main(["--dir", str(tmp_path), "--save_tif", "--no_npy", "--dynamics", "fast",
                 "--dynamics_chunk", "16", "--profile"]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "img_cp_masks.tif"), whole)
    image = json.loads((tmp_path / "profile.json").read_text())["images"][0]
    assert image["options"]["dynamics_chunk_rows"] == 16
