"""Pre-processing and tiled-inference parity with upstream cellpose 3.1.1.3, run as a black box.

One subprocess (``_ref_pre.py``, reference interpreter) runs every upstream case; each test compares one
family with ours. Expected: bit-equal. Images with more than 5 channels are not compared: upstream takes
their channel axis for a Z axis even when ``channel_axis`` names it (see docs/_diff_preprocess.md).
Tile normalisation is compared with upstream's 2D block normaliser on a one-block-wide image, where
upstream's row-only grid smoothing (a quirk we fix) and ours coincide.
Skipped when ``.reference/venv/bin/python`` is missing.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from _ref_pre import StubNet
from cellpose.config import NormalizeOptions, TilingOptions
from cellpose.inference import make_grid, padded_grid, run_tiled, taper_mask
from cellpose.preprocess import convert_image, normalize_image, pad_amounts, resize_image, resize_masks

HELPER = Path(__file__).with_name("_ref_pre.py")
SEED = 20261124

NORM_CASES = {  # id: (input key, upstream kwargs, our NormalizeOptions)
    "n_default": ("img2", {}, NormalizeOptions()),
    "n_const": ("img_const", {}, NormalizeOptions()),
    "n_pct": ("img2", {"percentile": [3.0, 97.5]}, NormalizeOptions(percentile=(3.0, 97.5))),
    "n_invert": ("img2", {"invert": True}, NormalizeOptions(invert=True)),
    "n_tiny": ("img_tiny", {"invert": True}, NormalizeOptions(invert=True)),
    "n_lowhigh": ("img2", {"lowhigh": [0.1, 0.7]}, NormalizeOptions(lowhigh=((0.1, 0.7),) * 2)),
    "n_lowhigh_inv": ("img_const", {"lowhigh": [[10.0, 20.0], [1.0, 5.0]], "invert": True},
                      NormalizeOptions(lowhigh=((10.0, 20.0), (1.0, 5.0)), invert=True)),
    "n_big": ("img_big", {}, NormalizeOptions()),
}
TILE_NORM_BLOCK = 64
CONVERT_CASES = {  # id: (input key, kwargs shared by both)
    "c_gray": ("u16_2d", {"channels": [0, 0]}),
    "c_gray_chan": ("u16_2d", {"channels": [2, 1]}),
    "c_last": ("u16_yx3", {"channels": [2, 3]}),
    "c_first_auto": ("u16_4yx", {"channels": [3, 0]}),
    "c_mean": ("u16_yx3", {"channels": [0, 0]}),
    "c_axis": ("u16_5yx", {"channels": [5, 2], "channel_axis": 0}),
    "c_axis_neg": ("u16_y5x", {"channels": [1, 4], "channel_axis": -2}),
    "c_mean5": ("u16_5yx", {"channels": [0, 0], "channel_axis": 0}),
    "c_4d": ("u16_1yx2", {"channels": [1, 2]}),
    "c_float": ("f64_yx2", {"channels": [2, 0]}),
}
RESIZE_CASES = {  # id: (input key, Ly, Lx)
    "r_two_down": ("img2", 37, 90), "r_two_half": ("img2", 48, 40), "r_two_up": ("img2", 131, 101),
    "r_three": ("img3", 80, 33), "r_one": ("img1", 30, 100),
}
MASK_CASES = {"m_u16": ("masks16", 100, 30), "m_u16_down": ("masks16", 40, 41), "m_u32": ("masks32", 77, 95)}
PAD_SIZES = [(37, 100), (224, 1000), (5, 16), (17, 241)]
TILE_CASES = {  # id: (Lyp, Lxp, bsize, tile_overlap, augment)
    "t_plain": (320, 272, 224, 0.1, False), "t_small": (64, 48, 224, 0.1, False),
    "t_overlap": (528, 400, 224, 0.3, False), "t_half": (496, 336, 224, 0.5, False),
    "t_bsize": (320, 272, 128, 0.1, False), "t_aug": (320, 272, 224, 0.1, True),
    "t_aug_small": (64, 272, 224, 0.1, True),
}
TAPER_SIZES = [(224, 224), (100, 224), (240, 37), (64, 64)]
NET_CASES = {  # id: (input key, batch_size, augment, tile_overlap, bsize)
    "rn_plain": ("net_a", 8, False, 0.1, 224), "rn_batch3": ("net_a", 3, False, 0.1, 224),
    "rn_small": ("net_b", 8, False, 0.1, 224), "rn_aug": ("net_a", 5, True, 0.1, 224),
    "rn_aug_small": ("net_b", 8, True, 0.1, 224), "rn_wide": ("net_c", 8, False, 0.25, 224),
    "rn_bsize": ("net_c", 8, False, 0.1, 96),
}
AVG_SIZE = (301, 250)


def _inputs() -> dict:
    """Seeded input arrays (heavy-tailed intensities with ties, so percentiles interpolate)."""
    rng = np.random.default_rng(SEED)
    img2 = (rng.gamma(2.0, 300.0, (96, 80, 2)).round() / 7).astype(np.float32)
    const = img2.copy()
    const[:, :, 1] = 3.0
    tiny = img2.copy()
    tiny[:, :, 1] = 0.0
    tiny[5, 7, 1] = 2e-4
    big = rng.gamma(1.5, 200.0, (4000, 2850, 1)).round().astype(np.float32)  # > 224**3 pixels: subsampled
    return {
        "img2": img2, "img_const": const, "img_tiny": tiny, "img_big": big,
        "img_narrow": (rng.gamma(2.0, 100.0, (300, 60, 2)) * np.linspace(1, 5, 300)[:, None, None]).astype(np.float32),
        "img3": rng.random((61, 47, 3), dtype=np.float32), "img1": rng.random((61, 47), dtype=np.float32),
        "u16_2d": rng.integers(0, 4000, (60, 70), dtype=np.uint16),
        "u16_yx3": rng.integers(0, 4000, (60, 70, 3), dtype=np.uint16),
        "u16_4yx": rng.integers(0, 4000, (4, 60, 70), dtype=np.uint16),
        "u16_5yx": rng.integers(0, 60000, (5, 60, 70), dtype=np.uint16),
        "u16_y5x": rng.integers(0, 60000, (60, 5, 70), dtype=np.uint16),
        "u16_1yx2": rng.integers(0, 4000, (1, 60, 70, 2), dtype=np.uint16),
        "f64_yx2": rng.normal(size=(60, 70, 2)),
        "masks16": rng.integers(0, 65535, (61, 47), dtype=np.uint16),
        "masks32": rng.integers(0, 1 << 24, (61, 47), dtype=np.uint32),
        "net_a": rng.normal(size=(300, 260, 2)).astype(np.float32),
        "net_b": rng.normal(size=(37, 50, 2)).astype(np.float32),
        "net_c": rng.normal(size=(500, 470, 2)).astype(np.float32),
    }


def _padded_zeros(Lyp, Lxp):
    """(2, Lyp, Lxp) float32 ramp image (distinct values so tile contents identify their position)."""
    return np.arange(2 * Lyp * Lxp, dtype=np.float32).reshape(2, Lyp, Lxp)


def _avg_setup():
    """Our grid for AVG_SIZE and random tile outputs for it."""
    grid, offset = padded_grid(*AVG_SIZE, tiling=TilingOptions())
    ly, lx = grid.tile
    y = np.random.default_rng(SEED + 1).normal(size=(grid.ntiles, 3, ly, lx)).astype(np.float32)
    ysub = np.array([[grid.origin(k)[0], grid.origin(k)[0] + ly] for k in range(grid.ntiles)])
    xsub = np.array([[grid.origin(k)[1], grid.origin(k)[1] + lx] for k in range(grid.ntiles)])
    return grid, offset, y, ysub, xsub


def _cases(inputs: dict) -> list:
    """Upstream calls for every case (JSON for the helper); adds derived inputs to ``inputs``."""
    cases = [{"id": k, "op": "normalize", "arrays": {"img": key}, "kwargs": kw}
             for k, (key, kw, _) in NORM_CASES.items()]
    cases.append({"id": "n_tile", "op": "tile_norm", "arrays": {"img": "img_narrow"},
                  "kwargs": {"blocksize": TILE_NORM_BLOCK}})
    cases += [{"id": k, "op": "convert", "arrays": {"img": key}, "kwargs": kw}
              for k, (key, kw) in CONVERT_CASES.items()]
    cases += [{"id": k, "op": "resize", "arrays": {"img": key}, "kwargs": {"Ly": ly, "Lx": lx}}
              for k, (key, ly, lx) in RESIZE_CASES.items()]
    cases += [{"id": k, "op": "resize", "arrays": {"img": key},
               "kwargs": {"Ly": ly, "Lx": lx, "interpolation": 0, "no_channels": True}}
              for k, (key, ly, lx) in MASK_CASES.items()]
    for Ly, Lx in PAD_SIZES:
        inputs[f"pad_{Ly}_{Lx}"] = np.ones((2, Ly, Lx), np.float32)
        cases.append({"id": f"p_{Ly}_{Lx}", "op": "pad", "arrays": {"img": f"pad_{Ly}_{Lx}"}})
    for k, (Lyp, Lxp, bsize, ov, aug) in TILE_CASES.items():
        inputs[f"tile_{k}"] = _padded_zeros(Lyp, Lxp)
        cases.append({"id": k, "op": "tiles", "arrays": {"img": f"tile_{k}"},
                      "kwargs": {"bsize": bsize, "augment": aug, "tile_overlap": ov}})
    cases += [{"id": f"w_{ly}_{lx}", "op": "taper", "arrays": {}, "kwargs": {"ly": ly, "lx": lx}}
              for ly, lx in TAPER_SIZES]
    grid, _, inputs["avg_y"], inputs["avg_ysub"], inputs["avg_xsub"] = _avg_setup()
    cases.append({"id": "avg", "op": "average", "arrays": {"y": "avg_y", "ysub": "avg_ysub", "xsub": "avg_xsub"},
                  "kwargs": {"Ly": grid.shape[0], "Lx": grid.shape[1]}})
    cases += [{"id": k, "op": "run_net", "arrays": {"img": key},
               "kwargs": {"batch_size": bs, "augment": aug, "tile_overlap": ov, "bsize": bsize}}
              for k, (key, bs, aug, ov, bsize) in NET_CASES.items()]
    return cases


@pytest.fixture(scope="module")
def parity(reference_python, tmp_path_factory):
    """(inputs, upstream results) for every case, from one run of the helper."""
    tmp = tmp_path_factory.mktemp("pre_parity")
    inputs = _inputs()
    cases = _cases(inputs)
    (tmp / "cases.json").write_text(json.dumps(cases))
    np.savez(tmp / "inputs.npz", **inputs)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore")
    proc = subprocess.run([str(reference_python), str(HELPER), tmp / "cases.json", tmp / "inputs.npz",
                           tmp / "outputs.npz"], capture_output=True, text=True, timeout=600, env=env, cwd=str(tmp))
    if proc.returncode != 0:
        pytest.fail(f"upstream helper failed:\n{proc.stderr[-4000:]}")
    with np.load(tmp / "outputs.npz") as out:
        return inputs, dict(out)


@pytest.mark.parametrize("case", list(NORM_CASES))
def test_normalize_bit_equal(parity, case):
    inputs, ref = parity
    key, _, options = NORM_CASES[case]
    ours = normalize_image(inputs[key], options=options)
    theirs = ref[f"{case}/out"]
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    percentile_mode = options.lowhigh is None and options.normalize
    flat = [c for c in range(ours.shape[-1]) if percentile_mode and np.ptp(inputs[key][..., c]) == 0]
    for c in flat:  # documented deviation (fixed [quirk]): upstream passes a constant channel through raw
        np.testing.assert_array_equal(theirs[..., c], inputs[key][..., c])
        assert not ours[..., c].any()
    keep = [c for c in range(ours.shape[-1]) if c not in flat]
    np.testing.assert_array_equal(ours[..., keep], theirs[..., keep])


def test_tile_normalize_one_block_column(parity):
    """Against upstream's 2D block normaliser (``normalize99_tile`` per channel) on a one-block-wide image,
    where its row-only grid smoothing and ours (rows and columns) coincide."""
    inputs, ref = parity
    ours = normalize_image(inputs["img_narrow"], options=NormalizeOptions(tile_norm_blocksize=TILE_NORM_BLOCK))
    np.testing.assert_array_equal(ours, ref["n_tile/out"])


@pytest.mark.parametrize("case", list(CONVERT_CASES))
def test_convert_image(parity, case):
    inputs, ref = parity
    key, kw = CONVERT_CASES[case]
    ours = convert_image(inputs[key], **kw)
    expected = ref[f"{case}/out"]
    assert ours.dtype == np.float32 and ours.shape == expected.shape
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("case", list(RESIZE_CASES))
def test_resize_image(parity, case):
    inputs, ref = parity
    key, Ly, Lx = RESIZE_CASES[case]
    ours = resize_image(inputs[key], Ly=Ly, Lx=Lx)
    np.testing.assert_array_equal(ours, ref[f"{case}/out"])


@pytest.mark.parametrize("case", list(MASK_CASES))
def test_resize_masks(parity, case):
    inputs, ref = parity
    key, Ly, Lx = MASK_CASES[case]
    ours = resize_masks(inputs[key], Ly=Ly, Lx=Lx)
    assert ours.dtype == inputs[key].dtype
    np.testing.assert_array_equal(ours, ref[f"{case}/out"])


@pytest.mark.parametrize("size", PAD_SIZES)
def test_pad_amounts(parity, size):
    _, ref = parity
    Ly, Lx = size
    case = f"p_{Ly}_{Lx}"
    for L, sub, axis in ((Ly, ref[f"{case}/ysub"], 1), (Lx, ref[f"{case}/xsub"], 2)):
        before, after = pad_amounts(L)
        assert (sub[0], len(sub)) == (before, L)
        assert ref[f"{case}/shape"][axis] == before + L + after


@pytest.mark.parametrize("case", list(TILE_CASES))
def test_tile_grid_matches_upstream_tiles(parity, case):
    inputs, ref = parity
    Lyp, Lxp, bsize, ov, aug = TILE_CASES[case]
    grid = make_grid(Lyp, Lxp, bsize=bsize, tile_overlap=ov, augment=aug)
    IMG = ref[f"{case}/IMG"]
    assert IMG.shape == (len(grid.ystarts), len(grid.xstarts), 2) + tuple(grid.tile)
    nx = len(grid.xstarts)
    np.testing.assert_array_equal(ref[f"{case}/ysub"][::nx, 0], grid.ystarts)
    np.testing.assert_array_equal(ref[f"{case}/xsub"][:nx, 0], grid.xstarts)
    padded = np.zeros((2,) + tuple(grid.shape), np.float32)
    padded[:, :Lyp, :Lxp] = inputs[f"tile_{case}"]
    for k in range(grid.ntiles):
        (y0, x0), (fy, fx) = grid.origin(k), grid.flips[k]
        tile = padded[:, y0: y0 + grid.tile[0], x0: x0 + grid.tile[1]]
        tile = tile[:, ::-1] if fy else tile
        tile = tile[:, :, ::-1] if fx else tile
        np.testing.assert_array_equal(IMG.reshape((-1,) + IMG.shape[2:])[k], tile)


@pytest.mark.parametrize("size", TAPER_SIZES)
def test_taper_mask(parity, size):
    _, ref = parity
    np.testing.assert_array_equal(taper_mask(*size), ref[f"w_{size[0]}_{size[1]}/out"])


def test_average_tiles(parity):
    """run_tiled's blending (via a net that replays fixed tile outputs) equals upstream's average_tiles."""
    inputs, ref = parity
    grid, (oy, ox), y, _, _ = _avg_setup()
    batches = iter(np.split(y, range(8, grid.ntiles, 8)))

    def replay_net(x):
        out = torch.from_numpy(next(batches))
        assert out.shape[0] == x.shape[0]
        return out, torch.ones((out.shape[0], 4))

    ours, _ = run_tiled(replay_net, np.zeros(AVG_SIZE + (2,), np.float32), tiling=TilingOptions())
    expected = ref["avg/out"][:, oy: oy + AVG_SIZE[0], ox: ox + AVG_SIZE[1]]
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("case", list(NET_CASES))
def test_run_tiled_matches_run_net(parity, case):
    inputs, ref = parity
    key, bs, aug, ov, bsize = NET_CASES[case]
    tiling = TilingOptions(bsize=bsize, tile_overlap=ov, batch_size=bs, augment=aug)
    y, style = run_tiled(StubNet().eval(), inputs[key], tiling=tiling)
    np.testing.assert_array_equal(y, ref[f"{case}/y"].transpose(2, 0, 1))
    np.testing.assert_array_equal(style, ref[f"{case}/style"])
