"""Training: the objective decreases, the saved file loads here and in upstream, the CLI trains from a folder."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile
import torch

from cellpose.data import make_image
from cellpose.models import CellposeModel
from cellpose.net.weights import load_weights
from cellpose.train import (TrainOptions, diameter_of, loss_fn, prepare_image, random_crop, save_trained,
                            seam_pixels, train_network, _targets)
from cellpose.augment import heavy_augment
from cellpose.train import _Sampler

OPTS = TrainOptions(n_iter=12, batch_size=4, bsize=64, learning_rate=2e-3, seed=0, log_every=100)


@pytest.fixture(scope="module")
def dataset():
    out = [make_image((1, 160, 160), seed=s, diameter=(12, 20)) for s in (11, 12)]
    return [prepare_image(img[0]) for img, _ in out], [lab.astype(np.int64) for _, lab in out]


def _fixed_batch(images, labels, n=4):
    rng = np.random.default_rng(5)
    pairs = [random_crop(images[i % 2], labels[i % 2], rng=rng, bsize=64, scale=1.0) for i in range(n)]
    x = torch.from_numpy(np.stack([p[0] for p in pairs]))
    y = torch.from_numpy(np.stack([_targets(p[1]) for p in pairs]))
    return x, y


def _batch_loss(net, x, y):
    net.train()
    with torch.no_grad():
        return float(loss_fn(net(x)[0], y))


def test_short_training_decreases_the_loss(dataset):
    images, labels = dataset
    x, y = _fixed_batch(images, labels)
    torch.manual_seed(0)
    from cellpose.net.cpnet import CPnet
    net = CPnet(diam_mean=17.0)
    before = _batch_loss(net, x, y)
    result = train_network(images, labels, options=OPTS, net=net)
    after = _batch_loss(result.net, x, y)
    assert len(result.losses) == OPTS.n_iter and np.all(np.isfinite(result.losses))
    assert after < 0.8 * before, (before, after)
    assert abs(result.diam_labels - np.mean([diameter_of(lab) for lab in labels])) < 1e-9
    assert result.net.diam_mean.item() == 17.0


def test_random_crop_keeps_labels_aligned_with_image():
    img = np.zeros((1, 100, 100), np.float32)
    lab = np.zeros((100, 100), np.int32)
    img[0, 40:60, 30:50] = 1.0
    lab[40:60, 30:50] = 3
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, crop = random_crop(img, lab, rng=rng, bsize=48, scale=1.0)
        inside = crop == 3
        if inside.sum() > 20:
            assert x[0][inside].mean() > 0.9 and x[0][~inside].mean() < 0.1


def test_targets_are_five_unit_flows_and_mask():
    lab = np.zeros((40, 40), np.int32)
    lab[10:30, 10:30] = 1
    t = _targets(lab)
    norm = np.hypot(t[0], t[1])
    assert t.shape == (4, 40, 40) and np.allclose(norm[lab > 0].max(), 5.0)
    assert np.array_equal(t[2] > 0, lab > 0)
    assert np.all(t[3] == 1.0)


def test_seam_pixels_are_where_two_nuclei_meet():
    lab = np.zeros((30, 40), np.int32)
    lab[5:25, 5:20] = 1
    lab[5:25, 21:35] = 2
    lab[0:3, 37:40] = 3
    seam = seam_pixels(lab, radius=2)
    assert seam[10, 19:22].all()
    assert not seam[10, 15] and not seam[10, 25] and not seam[1, 38]
    assert not seam[10, 18] and not seam[10, 22]
    assert not seam_pixels(np.where(lab == 1, 1, 0), radius=3).any()


def test_seam_weight_raises_the_loss_where_nuclei_touch():
    lab = np.zeros((32, 32), np.int32)
    lab[4:28, 4:16] = 1
    lab[4:28, 16:28] = 2
    t = _targets(lab, seam_weight=4.0, seam_radius=1)
    assert t[3].max() == 5.0 and np.array_equal(t[3] > 1, seam_pixels(lab, radius=1))
    target = torch.from_numpy(np.stack([t]))
    plain = target[:, :3]
    y = torch.zeros(1, 3, 32, 32)
    y[:, :, :, 14:18] = 3.0
    assert float(loss_fn(y, target)) > float(loss_fn(y, plain)) * 1.2
    unweighted = torch.from_numpy(np.stack([_targets(lab)]))
    assert float(loss_fn(y, unweighted)) == pytest.approx(float(loss_fn(y, plain)), rel=1e-6)


def test_seam_options_are_checked():
    with pytest.raises(ValueError, match="seam_weight"):
        TrainOptions(seam_weight=-1.0)
    with pytest.raises(ValueError, match="seam_radius"):
        TrainOptions(seam_radius=0)
    with pytest.raises(ValueError, match="seam_weight"):
        TrainOptions(seam_weight=float("nan"))
    with pytest.raises(ValueError, match="seam_radius"):
        TrainOptions(seam_radius=1.5)


@pytest.mark.parametrize("bad, word", [(dict(bsize=100), "bsize"), (dict(bsize=0), "bsize"),
                                       (dict(batch_size=0), "batch_size"), (dict(n_iter=0), "n_iter")])
def test_crop_and_step_options_are_checked_when_built(bad, word):
    with pytest.raises(ValueError, match=word):
        TrainOptions(**bad)


def test_saved_fp16_file_loads_as_float32_and_segments(dataset, tmp_path):
    images, labels = dataset
    result = train_network(images, labels, options=TrainOptions(n_iter=2, batch_size=2, bsize=64))
    path = save_trained(result, tmp_path / "model", fp16=True)
    state = torch.load(path, weights_only=True)
    assert state["downsample.down.res_down_0.conv.conv_0.2.weight"].dtype == torch.float16
    net, info = load_weights(path)
    assert next(net.parameters()).dtype == torch.float32 and info.diam_from_file
    assert abs(net.diam_labels.item() - result.diam_labels) < 1e-4
    masks, flows, _ = CellposeModel(pretrained_model=str(path)).eval(images[0][0], diameter=17)
    assert masks.shape == images[0].shape[1:]


def test_saved_file_round_trips_through_upstream_loader(dataset, tmp_path, reference_python):
    images, labels = dataset
    result = train_network(images, labels, options=TrainOptions(n_iter=2, batch_size=2, bsize=64))
    path = save_trained(result, tmp_path / "model", fp16=True)
    img = (images[0][0] * 1000).astype(np.float32)
    np.save(tmp_path / "img.npy", img)
    script = tmp_path / "ref.py"
    script.write_text(textwrap.dedent(f"""
        import numpy as np
        from cellpose import models
        m = models.CellposeModel(gpu=False, pretrained_model={str(path)!r})
        img = np.load({str(tmp_path / 'img.npy')!r})
        _, flows, _ = m.eval(img, channels=[0, 0], diameter=17, compute_masks=False)
        np.save({str(tmp_path / 'ref_prob.npy')!r}, flows[2])
        print(float(m.net.diam_labels.item()))
    """))
    proc = subprocess.run([str(reference_python), str(script)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert abs(float(proc.stdout.strip().splitlines()[-1]) - result.diam_labels) < 1e-4
    _, flows, _ = CellposeModel(pretrained_model=str(path)).eval(img, channels=[0, 0], diameter=17,
                                                                compute_masks=False)
    ref = np.load(tmp_path / "ref_prob.npy")
    assert np.abs(flows[2] - ref).max() <= 1e-3 * np.abs(ref).max()


def test_train_cli_trains_from_a_folder(tmp_path):
    for s in (21, 22):
        img, lab = make_image((4, 128, 128), seed=s, diameter=(12, 20))
        tifffile.imwrite(tmp_path / f"im{s}.tif", img, photometric="minisblack")
        tifffile.imwrite(tmp_path / f"im{s}_masks.tif", lab)
    out = tmp_path / "trained"
    cmd = [sys.executable, "-m", "cellpose", "train", "--dir", str(tmp_path), "--chan", "1", "--n_iter", "2",
           "--batch_size", "2", "--bsize", "64", "--out", str(out), "--save_fp16"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    net, _ = load_weights(out)
    assert net.diam_mean.item() == 17.0


def test_train_cli_reports_missing_labels(tmp_path):
    img, _ = make_image((1, 64, 64), seed=1)
    tifffile.imwrite(tmp_path / "a.tif", img[0])
    proc = subprocess.run([sys.executable, "-m", "cellpose", "train", "--dir", str(tmp_path), "--out",
                           str(tmp_path / "m")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no label file a_masks.tif" in proc.stderr and not (tmp_path / "m").exists()


def test_train_cli_checks_options_before_reading_images(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cellpose", "train", "--dir", str(tmp_path), "--bsize", "100",
                           "--out", str(tmp_path / "m")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "bsize must be a positive multiple of 16, got 100" in proc.stderr and "no training images" not in proc.stderr


@pytest.fixture(scope="module")
def nuclei_256():
    img, lab = make_image((1, 256, 256), seed=0, diameter=(12, 20))
    return prepare_image(img[0]), lab.astype(np.int64)


def _heavy_crops(img, lab, seed, n=6):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x, crop = random_crop(img, lab, rng=rng, bsize=96, scale=1.0)
        out.append(heavy_augment(x, crop, rng=np.random.default_rng(rng.integers(2 ** 63))))
    return out


def test_heavy_augment_is_seeded(nuclei_256):
    a, b, c = (_heavy_crops(*nuclei_256, seed) for seed in (3, 3, 4))
    assert all(np.array_equal(x1, x2) and np.array_equal(l1, l2) for (x1, l1), (x2, l2) in zip(a, b))
    assert not all(np.array_equal(x1, x2) for (x1, _), (x2, _) in zip(a, c))


def test_heavy_augment_keeps_shapes_ids_and_alignment(nuclei_256):
    img, lab = nuclei_256
    ids = set(np.unique(lab).tolist()) | {0}
    inside, outside = [], []
    for x, crop in _heavy_crops(img, lab, seed=1, n=12):
        assert x.shape == (2, 96, 96) and x.dtype == np.float32 and np.all(np.isfinite(x))
        assert crop.shape == (96, 96) and crop.dtype == np.int32 and set(np.unique(crop).tolist()) <= ids
        assert np.all(x[1] == 0)
        if (crop > 0).sum() > 100 and (crop == 0).sum() > 100:
            inside.append(x[0][crop > 0].mean())
            outside.append(x[0][crop == 0].mean())
    assert len(inside) >= 6 and np.mean(np.array(inside) > np.array(outside)) >= 0.9


def test_sampler_heavy_batches_differ_from_basic(nuclei_256):
    img, lab = nuclei_256
    opts = dict(batch_size=2, bsize=64, seed=0)
    basic = _Sampler([(img, lab, 1.0)], TrainOptions(**opts), np.random.default_rng(0)).batch()
    heavy = _Sampler([(img, lab, 1.0)], TrainOptions(augment="heavy", **opts), np.random.default_rng(0)).batch()
    assert basic[0].shape == heavy[0].shape == (2, 2, 64, 64) and heavy[1].shape == (2, 4, 64, 64)
    assert not torch.equal(basic[0], heavy[0])


def test_short_training_with_heavy_augmentation(dataset):
    images, labels = dataset
    result = train_network(images, labels, options=TrainOptions(n_iter=2, batch_size=2, bsize=64, augment="heavy"))
    assert len(result.losses) == 2 and np.all(np.isfinite(result.losses))


def test_bad_augment_value_is_rejected():
    with pytest.raises(ValueError, match="'strong'"):
        TrainOptions(augment="strong")


def test_bf16_training_decreases_the_loss_and_keeps_float32_weights(dataset):
    """bf16 autocast + channels-last: same first loss as float32 to bf16 rounding, the loss falls, and the
    trained network is float32 in the default memory layout (so it saves and loads like any other)."""
    from cellpose.net.cpnet import CPnet

    from cellpose.variants import native_bf16

    images, labels = dataset
    x, y = _fixed_batch(images, labels)
    # emulated bf16 (no avx512_bf16/amx) is 5-33x slower than fp32: there, two steps check all but the decrease
    steps = OPTS.n_iter if native_bf16() else 2
    first = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        net = CPnet(diam_mean=17.0)
        before = _batch_loss(net, x, y)
        options = TrainOptions(**{**OPTS.__dict__, "precision": precision, "n_iter": steps})
        result = train_network(images, labels, options=options, net=net)
        first[precision] = result.losses[0]
    after = _batch_loss(result.net, x, y)
    assert len(result.losses) == steps and np.all(np.isfinite(result.losses))
    if steps == OPTS.n_iter:
        assert after < 0.8 * before, (before, after)
    assert abs(first["bf16"] - first["fp32"]) <= 0.05 * first["fp32"], first
    kernels = [p for p in result.net.parameters() if p.dim() == 4]
    assert kernels and all(k.is_contiguous() for k in kernels)
    assert all(p.dtype == torch.float32 for p in result.net.parameters())


def test_bad_training_precision_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"precision must be one of \('fp32', 'bf16'\), got 'fp16'"):
        TrainOptions(precision="fp16")
    proc = subprocess.run([sys.executable, "-m", "cellpose", "train", "--dir", str(tmp_path), "--precision", "fp16",
                           "--out", str(tmp_path / "m")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "invalid choice: 'fp16'" in proc.stderr and "bf16" in proc.stderr
