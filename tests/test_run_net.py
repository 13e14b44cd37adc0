"""Tiled network pass (``cellpose.inference.run_net``) with small deterministic fake networks."""
from __future__ import annotations

import contextlib
import tracemalloc

import numpy as np
import pytest
import torch

from cellpose.config import TilingOptions
from cellpose.inference import run_net as run_net_mod
from cellpose.inference import run_tiled
from cellpose.inference.tiling import make_grid, taper_mask
from cellpose.preprocess import pad_amounts


class FakeNet(torch.nn.Module):
    """Fixed 3x3 convolution (2 → 3 channels) times a per-channel gain; unit style of the tile means."""

    def __init__(self, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(3, 2, 3, 3, generator=gen))
            self.conv.bias.copy_(torch.randn(3, generator=gen))
        self.register_buffer("gain", torch.tensor([1.0, -2.0, 0.5]))

    def forward(self, x):
        """x (B, 2, h, w) → (out (B, 3, h, w), style (B, 256), [])."""
        out = self.conv(x) * self.gain[None, :, None, None]
        style = torch.cat([x.mean(dim=(2, 3)), torch.ones(x.shape[0], 254)], dim=1)
        return out, style / style.norm(dim=1, keepdim=True), []


def pointwise_net(x):
    """Per-pixel channel mix: no spatial context, so tiling must be invisible."""
    out = torch.stack([x[:, 0] + 2 * x[:, 1], x[:, 0] * x[:, 1], 3 - x[:, 0]], dim=1)
    return out, torch.ones(x.shape[0], 256)


def _pointwise_expected(img):
    x0, x1 = img[:, :, 0], img[:, :, 1]
    return np.stack([x0 + 2 * x1, x0 * x1, 3 - x0])


def _naive_run(net, img, tiling):
    """Spec §2.5/§3 written plainly: padded copy, all tiles, full float64 normaliser, crop."""
    Ly, Lx, _ = img.shape
    (y0, y1), (x0, x1) = pad_amounts(Ly), pad_amounts(Lx)
    grid = make_grid(Ly + y0 + y1, Lx + x0 + x1, bsize=tiling.bsize, tile_overlap=tiling.tile_overlap,
                     augment=tiling.augment)
    padded = np.zeros((2,) + grid.shape, np.float32)
    padded[:, y0: y0 + Ly, x0: x0 + Lx] = img.transpose(2, 0, 1)
    acc, navg, w = np.zeros((3,) + grid.shape, np.float32), np.zeros(grid.shape), taper_mask(*grid.tile)
    styles = []
    for k in range(grid.ntiles):
        (ty, tx), (fy, fx) = grid.origin(k), grid.flips[k]
        sl = (slice(ty, ty + grid.tile[0]), slice(tx, tx + grid.tile[1]))
        tile = padded[:, sl[0], sl[1]][:, ::(-1 if fy else 1), ::(-1 if fx else 1)]
        with torch.no_grad():
            out, style = (t.numpy() for t in net(torch.from_numpy(tile[None].copy()))[:2])
        out = out[0][:, ::(-1 if fy else 1), ::(-1 if fx else 1)] * np.array([-1 if fy else 1, -1 if fx else 1, 1],
                                                                            np.float32)[:, None, None]
        acc[:, sl[0], sl[1]] += out * w
        navg[sl] += w
        styles.append(style[0])
    y = (acc / navg).astype(np.float32)[:, y0: y0 + Ly, x0: x0 + Lx]
    style = np.sum(styles, axis=0)
    return y, style / np.sqrt(np.sum(style ** 2))


@pytest.mark.parametrize("shape", [(300, 260), (37, 50), (16, 400), (225, 224)])
@pytest.mark.parametrize("augment", [False, True])
def test_matches_plain_implementation(rng, shape, augment):
    img = rng.normal(size=shape + (2,)).astype(np.float32)
    tiling = TilingOptions(batch_size=3, augment=augment)
    y, style = run_tiled(FakeNet().eval(), img, tiling=tiling)
    ref_y, ref_style = _naive_run(FakeNet().eval(), img, tiling)
    assert y.shape == (3,) + shape and y.dtype == np.float32 and y.flags.c_contiguous
    assert style.shape == (256,) and style.dtype == np.float32
    np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)  # conv results depend slightly on batch size
    np.testing.assert_allclose(style, ref_style, rtol=1e-6)
    assert abs(np.linalg.norm(style) - 1) < 1e-6


@pytest.mark.parametrize("augment", [False, True])
def test_pointwise_network_sees_no_tiles(rng, augment):
    img = rng.normal(size=(333, 290, 2)).astype(np.float32)
    y, _ = run_tiled(pointwise_net, img, tiling=TilingOptions(augment=augment, tile_overlap=0.2))
    expected = _pointwise_expected(img)
    if augment:  # flipped tiles come back with negated flows: the average of +f and -f is no longer f
        expected = expected[2:]
        y = y[2:]
    np.testing.assert_allclose(y, expected, rtol=2e-6, atol=2e-6)


def test_batch_size_does_not_change_results(rng):
    img = rng.normal(size=(250, 240, 2)).astype(np.float32)
    runs = [run_tiled(FakeNet().eval(), img, tiling=TilingOptions(batch_size=b)) for b in (1, 3, 8, 100)]
    for y, style in runs[1:]:
        np.testing.assert_array_equal(y, runs[0][0])
        np.testing.assert_array_equal(style, runs[0][1])


def test_constant_output_averages_to_the_constant(rng):
    def constant_net(x):
        out = torch.tensor([0.3, -1.7, 4.1]).reshape(1, 3, 1, 1).expand(x.shape[0], 3, *x.shape[2:])
        return out.contiguous(), torch.ones(x.shape[0], 8)

    y, style = run_tiled(constant_net, rng.normal(size=(500, 470, 2)).astype(np.float32), tiling=TilingOptions())
    for c, value in enumerate((0.3, -1.7, 4.1)):
        np.testing.assert_allclose(y[c], np.float32(value), rtol=3e-7)
    np.testing.assert_allclose(style, np.full(8, 8 ** -0.5, np.float32), rtol=1e-6)


def test_memory_stays_near_the_output_size(rng):
    """No padded copy, no all-tiles arrays, no image-sized float64 normaliser: peak ≈ 12 B/px output."""
    img = rng.normal(size=(1024, 1024, 2)).astype(np.float32)
    tracemalloc.start()
    try:
        run_tiled(pointwise_net, img, tiling=TilingOptions(batch_size=8))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    out_bytes = 3 * 1024 * 1024 * 4
    assert peak < out_bytes + (12 << 20)  # upstream's tile arrays alone would be ~41 B/px = 43 MB


def test_profiling_stages(rng, monkeypatch):
    calls = []

    class Recorder:
        def __init__(self, name):
            self.name, self.counters = name, {}

        def add(self, **counters):
            self.counters.update(counters)

    @contextlib.contextmanager
    def fake_stage(name, **counters):
        rec = Recorder(name)
        yield rec
        calls.append((rec.name, rec.counters))

    monkeypatch.setattr(run_net_mod, "stage", fake_stage)
    run_tiled(pointwise_net, rng.normal(size=(300, 260, 2)).astype(np.float32), tiling=TilingOptions(batch_size=3))
    names = [name for name, _ in calls]
    assert names.count("network.batch") == 2 and names.count("tile_average.batch") == 2
    assert {"pad", "network", "tile_average"} <= set(names)
    batch = [c for n, c in calls if n == "network.batch"]
    assert [b["tiles"] for b in batch] == [3, 1] and batch[0]["pixels"] == 3 * 224 * 224
    assert dict(calls)["network"]["tiles"] == 4


@pytest.mark.parametrize("img, tiling, err, match", [
    (np.zeros((40, 40), np.float32), TilingOptions(), ValueError, "channel-last"),
    (np.zeros((3, 40, 40, 2), np.float32), TilingOptions(), ValueError, "Z stacks"),
    (np.zeros((40, 40, 2), complex), TilingOptions(), TypeError, "real dtype"),
    (np.zeros((40, 40, 2), np.float32), TilingOptions(bsize=100), ValueError, "multiple of 8"),
    (np.zeros((40, 40, 2), np.float32), TilingOptions(batch_size=0), ValueError, "batch_size"),
])
def test_bad_inputs_raise(img, tiling, err, match):
    with pytest.raises(err, match=match):
        run_tiled(pointwise_net, img, tiling=tiling)


def test_wrong_output_shape_raises():
    def cropping_net(x):
        return x[:, :, 1:, 1:].repeat(1, 2, 1, 1)[:, :3], torch.ones(x.shape[0], 4)

    with pytest.raises(ValueError, match="does not match"):
        run_tiled(cropping_net, np.zeros((40, 40, 2), np.float32), tiling=TilingOptions())


def test_float64_input_and_explicit_device(rng):
    img = rng.normal(size=(40, 50, 2))
    y, _ = run_tiled(pointwise_net, img, tiling=TilingOptions(), device="cpu")
    np.testing.assert_allclose(y, _pointwise_expected(img.astype(np.float32)), rtol=2e-6, atol=2e-6)
