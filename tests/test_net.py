"""CPnet structure (spec §1.7), forward pass (§1.4) and weight round trips (§1.8)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cellpose.net import CPnet, load_weights, save_weights
from cellpose.net.cpnet import infer_config

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix, c):
    """Spec key grammar of one BatchNorm: 5 keys, the counter is a scalar."""
    return [(f"{prefix}.{k}", () if k == "num_batches_tracked" else (c,)) for k in BN_KEYS]


def _brc(prefix, cin, cout, k=3):
    return _bn(f"{prefix}.0", cin) + [(f"{prefix}.2.weight", (cout, cin, k, k)), (f"{prefix}.2.bias", (cout,))]


def _bc(prefix, cin, cout):
    return _bn(f"{prefix}.0", cin) + [(f"{prefix}.1.weight", (cout, cin, 1, 1)), (f"{prefix}.1.bias", (cout,))]


def _brcs(prefix, c):
    return _brc(f"{prefix}.conv", c, c) + [(f"{prefix}.full.weight", (c, 256)), (f"{prefix}.full.bias", (c,))]


def expected_keys():
    """The 313 (key, shape) pairs of spec §1.7, written from the table, in state_dict order."""
    keys = [("diam_mean", (1,)), ("diam_labels", (1,))]
    chans = [2, 32, 64, 128, 256]
    for i in range(4):
        p = f"downsample.down.res_down_{i}"
        keys += _brc(f"{p}.conv.conv_0", chans[i], chans[i + 1])
        for j in (1, 2, 3):
            keys += _brc(f"{p}.conv.conv_{j}", chans[i + 1], chans[i + 1])
        keys += _bc(f"{p}.proj", chans[i], chans[i + 1])
    up = [32, 64, 128, 256, 256]
    for i in range(4):
        p = f"upsample.up.res_up_{i}"
        keys += _brc(f"{p}.conv.conv_0", up[i + 1], up[i])
        for j in (1, 2, 3):
            keys += _brcs(f"{p}.conv.conv_{j}", up[i])
        keys += _bc(f"{p}.proj", up[i + 1], up[i])
    return keys + _brc("output", 32, 3, k=1)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(1)
    model = CPnet()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_mean"):
                t.copy_(torch.randn_like(t) * 0.3)
            elif name.endswith("running_var"):
                t.copy_(torch.rand_like(t) + 0.5)
            elif name.endswith("0.weight") and t.ndim == 1:
                t.copy_(torch.rand_like(t) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 2, 32, 48, generator=torch.Generator().manual_seed(2))


def test_state_dict_keys_order_shapes_dtypes(net):
    sd = net.state_dict()
    assert len(sd) == 313
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == expected_keys()
    for k, v in sd.items():
        assert v.dtype == (torch.int64 if k.endswith("num_batches_tracked") else torch.float32), k


def test_parameter_counts():
    model = CPnet()
    assert sum(p.numel() for p in model.parameters()) == 6_600_845
    assert sum(v.numel() for v in model.state_dict().values()) == 6_610_430
    assert not model.diam_mean.requires_grad and not model.diam_labels.requires_grad


def test_diam_parameters_initialised_from_constructor():
    model = CPnet(diam_mean=17.0)
    assert model.diam_mean.item() == 17.0 and model.diam_labels.item() == 17.0
    assert list(model.state_dict())[:2] == ["diam_mean", "diam_labels"]


def test_forward_shapes_and_unit_style(net, x):
    with torch.no_grad():
        out, style, downs = net(x)
    assert out.shape == (2, 3, 32, 48) and out.dtype == torch.float32
    assert style.shape == (2, 256)
    torch.testing.assert_close(style.norm(dim=1), torch.ones(2), rtol=0, atol=1e-6)
    assert [tuple(d.shape) for d in downs] == [(2, 32, 32, 48), (2, 64, 16, 24), (2, 128, 8, 12), (2, 256, 4, 6)]
    g = downs[-1].mean(dim=(2, 3))
    torch.testing.assert_close(style, g / g.norm(dim=1, keepdim=True), rtol=1e-5, atol=1e-6)


def test_batch_items_are_independent(net, x):
    with torch.no_grad():
        both, _, _ = net(x)
        single, _, _ = net(x[1:])
    torch.testing.assert_close(both[1:], single, rtol=1e-5, atol=1e-5)


def test_batchnorm_eval_formula(net):
    bn = net.output[0]
    z = torch.randn(3, 32, 5, 7, generator=torch.Generator().manual_seed(3))
    want = (z - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + 1e-5)
    want = want * bn.weight[:, None, None] + bn.bias[:, None, None]
    with torch.no_grad():
        torch.testing.assert_close(bn(z), want, rtol=1e-5, atol=1e-5)
        conv = net.output[2]
        torch.testing.assert_close(net.output(z), conv(torch.relu(want)), rtol=1e-5, atol=1e-5)
    assert bn.eps == 1e-5


def test_strict_round_trip(net, x, tmp_path):
    path = save_weights(net, tmp_path / "model")
    loaded, info = load_weights(path)
    assert info.n_keys == 313 and info.output_loaded and info.file_dtype == "float32"
    ours, theirs = net.state_dict(), loaded.state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    CPnet().load_state_dict(torch.load(path, weights_only=True), strict=True)
    with torch.no_grad():
        assert torch.equal(net(x)[0], loaded(x)[0])
    assert not loaded.training


def test_fp16_round_trip_loads_as_float32(net, tmp_path):
    path = save_weights(net, tmp_path / "half", dtype=torch.float16)
    raw = torch.load(path, weights_only=True)
    assert raw["output.2.weight"].dtype == torch.float16
    assert raw["output.0.num_batches_tracked"].dtype == torch.int64
    assert raw["diam_mean"].dtype == torch.float32
    loaded, info = load_weights(path)
    assert info.file_dtype == "float16"
    for k, v in loaded.state_dict().items():
        if v.is_floating_point():
            assert v.dtype == torch.float32, k
            torch.testing.assert_close(v, net.state_dict()[k].half().float(), rtol=0, atol=0)


def test_save_rejects_other_dtypes(net, tmp_path):
    with pytest.raises(ValueError, match="float16"):
        save_weights(net, tmp_path / "bf", dtype=torch.bfloat16)
    assert list(tmp_path.iterdir()) == []


def test_from_state_dict_infers_configuration():
    small = CPnet(nbase=(1, 8, 16), nout=2, diam_mean=12.0)
    assert infer_config(small.state_dict()) == {"nbase": (1, 8, 16), "nout": 2, "sz": 3}
    rebuilt = CPnet.from_state_dict(small.state_dict())
    assert rebuilt.diam_mean.item() == 12.0
    with torch.no_grad():
        out, style, downs = rebuilt(torch.zeros(1, 1, 8, 8) + 0.5)
    assert out.shape == (1, 2, 8, 8) and style.shape == (1, 16) and len(downs) == 2


@pytest.mark.parametrize("kwargs", [{"nbase": (2,)}, {"nout": 0}, {"sz": 2}])
def test_constructor_validation(kwargs):
    with pytest.raises(ValueError):
        CPnet(**kwargs)


def test_export_wrapper_is_shape_free_and_matches_cpnet():
    """The export wrapper's style (ReduceMean) equals CPnet's (avg_pool2d) to float32 rounding, and one trace of
    the small probe gives the right output for a larger, non-square input (no shape baked into the graph)."""
    from cellpose.inference.prepared import _probe, _TwoOutputs

    torch.manual_seed(3)
    net = CPnet(nbase=(2, 8, 16, 32, 64), diam_mean=17.0).eval()
    x = torch.from_numpy(np.random.default_rng(7).normal(size=(3, 2, 48, 80)).astype(np.float32))
    probe = _probe(net, x)
    assert tuple(probe.shape) == (1, 2, 16, 16)
    with torch.no_grad():
        ref_out, ref_style, _ = net(x)
        traced = torch.jit.trace(_TwoOutputs(net), probe, check_trace=False)
        out, style = traced(x)
    assert out.shape == ref_out.shape and style.shape == ref_style.shape
    assert float((out - ref_out).abs().max()) <= 1e-5 * float(ref_out.abs().max())
    assert float((style - ref_style).abs().max()) <= 1e-6


def test_export_probe_refuses_a_module_that_is_not_a_cpnet():
    from cellpose.inference.prepared import _probe

    with pytest.raises(TypeError, match="exports a CPnet, not Linear"):
        _probe(torch.nn.Linear(2, 2), torch.zeros(1, 2, 32, 32))
