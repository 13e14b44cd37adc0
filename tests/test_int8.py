"""int8 network variant (``cellpose.inference.int8``): calibration data, the quantised graph, the disk cache and
the refusals. Accuracy of the masks against exact is in ``test_variants.py``."""
from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pytest
import torch

from cellpose import variants
from cellpose.cli import main
from cellpose.inference import int8, ov_cache
from cellpose.inference.prepared import PreparedNet
from cellpose.models import CellposeModel
from cellpose.net.cpnet import CPnet
from cellpose.net.weights import DEFAULT_BUNDLED_MODEL
from cellpose.variants import NetVariant, VariantUnavailableError

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed "
                                                              "(pip install 'cellpose-tb[openvino]')")
SHAPE = (2, 2, 64, 64)
#: max|int8 - fp32| / max|fp32| of the small random network below on calibration-like tiles: measured 0.018-0.032
#: (AMD EPYC, avx512_vnni) and 0.055-0.094 with the kernels capped at AVX2 (int8 without VNNI); bound 2x the
#: largest. A wrong range (a channel calibrated on data it never sees) gave 2.5 on the bundled model.
INT8_SMALL_NET_BOUND = 0.2


def _small_net(seed: int, *, blank_second: bool) -> CPnet:
    torch.manual_seed(seed)
    net = CPnet(nbase=(2, 8, 16, 32, 64), diam_mean=17.0).eval()
    first = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        first.running_var.copy_(torch.tensor([0.05, 0.0 if blank_second else 0.08]))
    return net


@pytest.fixture(scope="module")
def net():
    return _small_net(3, blank_second=True)


@pytest.fixture(scope="module")
def ov_model(net):
    ov = pytest.importorskip("openvino")
    example = torch.zeros(SHAPE)
    from cellpose.inference.prepared import _TwoOutputs

    traced = torch.jit.trace(_TwoOutputs(net), example, check_trace=False)
    return ov.convert_model(traced, example_input=example, input=[SHAPE])


def test_calibration_tiles_are_seeded_normalised_and_follow_marker():
    a = int8.calibration_tiles(SHAPE, n=4)
    b = int8.calibration_tiles(SHAPE, n=4)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 2, 64, 64) and a.dtype == np.float32
    assert not a[:, 1].any()
    assert np.percentile(a[:, 0], 50) < 0.5 < a[:, 0].max()
    other = int8.calibration_tiles(SHAPE, n=4, seed=int8.CALIBRATION_SEED + 1)
    assert not np.array_equal(a[:, 0], other[:, 0])
    with_marker = int8.calibration_tiles(SHAPE, n=4, marker=True)
    np.testing.assert_array_equal(with_marker[:, 0], a[:, 0])
    assert with_marker[:, 1].max() > 0.5


def test_second_channel_use_is_read_from_the_first_batch_norm():
    assert not int8.uses_second_channel(_small_net(1, blank_second=True))
    assert int8.uses_second_channel(_small_net(1, blank_second=False))
    bundled = CellposeModel(pretrained_model=DEFAULT_BUNDLED_MODEL)
    assert not int8.uses_second_channel(bundled.net)


@needs_openvino
def test_ranges_cover_the_data_and_fake_quantize_goes_where_it_should(ov_model):
    import openvino as ov

    tiles = int8.calibration_tiles(SHAPE, n=4)
    lo, hi = int8.activation_ranges(ov_model, tiles, ov, batch=2)
    lo_a, hi_a = int8.activation_ranges(ov_model, tiles[:2], ov, batch=2)
    lo_b, hi_b = int8.activation_ranges(ov_model, tiles[2:], ov, batch=2)
    np.testing.assert_array_equal(lo, np.minimum(lo_a, lo_b))
    np.testing.assert_array_equal(hi, np.maximum(hi_a, hi_b))
    n_conv = len(lo)
    assert n_conv > 10 and np.all(lo <= hi) and np.sum(lo >= 0) > n_conv // 2
    with pytest.raises(ValueError, match="no calibration tiles"):
        int8.activation_ranges(ov_model, tiles[:0], ov, batch=2)
    lo_3, hi_3 = int8.activation_ranges(ov_model, tiles[:3], ov, batch=2)  # the last chunk padded with a repeat
    lo_c, hi_c = int8.activation_ranges(ov_model, tiles[2:3], ov, batch=2)
    np.testing.assert_array_equal(lo_3, np.minimum(lo_a, lo_c))
    np.testing.assert_array_equal(hi_3, np.maximum(hi_a, hi_c))
    model = ov_model.clone()
    done = int8.insert_fake_quantize(model, lo, hi)
    convs = [op for op in ov_model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    reads_input = [i for i, c in enumerate(convs) if c.input_value(1).get_node().get_data().shape[1] == SHAPE[1]]
    assert len(reads_input) == 2  # the first block's convolution and its projection
    assert done == [i for i in range(n_conv - 1) if i not in reads_input]
    kinds = [op.get_type_name() for op in model.get_ops()]
    assert kinds.count("FakeQuantize") == 2 * len(done)
    assert [op.get_type_name() for op in ov_model.get_ops()].count("FakeQuantize") == 0
    with pytest.raises(ValueError, match="activation ranges"):
        int8.insert_fake_quantize(ov_model.clone(), lo[:-1], hi[:-1])


def test_activation_range_is_unsigned_or_signed_with_an_exact_zero_and_never_clips():
    low, high = int8.activation_range(0.0, 6.3)
    assert low == 0.0 and 6.3 <= high <= 6.3 * (1 + 2 ** -10) and high == float(np.float16(high))
    low, high = int8.activation_range(-3.1, 2.0)
    step = (high - low) / 255
    assert low <= -3.1 and abs(-low / step - 128) < 1e-9 and high == -low * 127 / 128
    assert int8.activation_range(0.0, 1e6) == (0.0, 1e6)


@needs_openvino
def test_int8_network_stays_near_fp32_and_is_cached_apart(net, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(ov_cache.CACHE_ENV, str(tmp_path / "c"))
    x = torch.from_numpy(int8.calibration_tiles(SHAPE, n=2, seed=123))
    with torch.no_grad():
        ref = net(x)[0].numpy()

    def run():
        prepared = PreparedNet(net, variant=NetVariant(precision="int8", backend="openvino"), device="cpu")
        return prepared(x)[0].numpy().copy()

    first = run()
    entries = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert len(entries) == 3 and "int8-ranges" in entries  # fp32 IR, int8 IR, calibrated ranges
    assert len(list((tmp_path / "c" / "int8-ranges").glob("*.json"))) == 1
    rel = np.abs(first - ref).max() / np.abs(ref).max()
    assert 0 < rel < INT8_SMALL_NET_BOUND, rel
    with caplog.at_level(logging.INFO):
        second = run()
    assert caplog.text.count("read from the cache") == 2 and "calibrated" not in caplog.text
    np.testing.assert_array_equal(first, second)
    key_fp32 = ov_cache.cache_key(net, SHAPE, "v")
    assert ov_cache.cache_key(net, SHAPE, "v", tag=int8.RECIPE) != key_fp32


def test_int8_needs_openvino_and_a_cpu():
    assert variants.select(precision="int8").backend == "torch"  # the API never changes a backend behind you
    with variants.use(backend="torch"):
        assert variants.select(precision="int8").backend == "torch"
    for backend in ("torch", "compile"):
        with pytest.raises(VariantUnavailableError, match="int8 runs only on backend openvino"):
            variants.resolve(NetVariant(precision="int8", backend=backend), device="cpu")
    with pytest.raises(VariantUnavailableError, match="CPU only"):
        variants.resolve(NetVariant(precision="int8", backend="openvino"), device="cuda")
    with pytest.raises(ValueError, match="only on backend openvino"):
        PreparedNet(_small_net(1, blank_second=True), variant=NetVariant(precision="int8"), device="cpu")
    if HAS_OPENVINO:
        resolved = variants.resolve(variants.select(precision="int8", backend="auto"), device="cpu")
        assert (resolved.precision, resolved.backend) == ("int8", "openvino")


@pytest.mark.parametrize("measured, feats, want", [
    (True, {"avx2", "avx512f", "avx512_bf16"}, "int8"), (True, {"avx2"}, "int8"),
    (False, {"avx2", "avx512f", "avx512_bf16"}, "bf16"), (False, {"avx2"}, "fp32")])
def test_auto_picks_int8_on_openvino_only_for_measured_weights(measured, feats, want):
    if not HAS_OPENVINO:
        pytest.skip("openvino is not installed")
    auto = NetVariant(precision="auto", backend="openvino")
    assert variants.resolve(auto, device="cpu", features=frozenset(feats), int8_measured=measured).precision == want
    torch_auto = NetVariant(precision="auto", backend="torch")
    assert variants.resolve(torch_auto, device="cpu", features=frozenset(feats),
                            int8_measured=measured).precision == ("bf16" if "avx512_bf16" in feats else "fp32")


def test_only_the_bundled_model_counts_as_measured(random_weights):
    assert CellposeModel(pretrained_model=DEFAULT_BUNDLED_MODEL).int8_measured
    assert not CellposeModel(pretrained_model=str(random_weights)).int8_measured


@needs_openvino
def test_int8_float_layers_follow_native_bf16(monkeypatch):
    from cellpose.inference.prepared import openvino_config

    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert openvino_config("int8")["INFERENCE_PRECISION_HINT"] == "f32"
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    want = "bf16" if variants.native_bf16() else "f32"
    assert openvino_config("int8")["INFERENCE_PRECISION_HINT"] == want


@needs_openvino
@pytest.mark.parametrize("shape", [(1, 2, 48, 224), (3, 2, 64, 96)])
def test_quantise_any_static_shape(shape, net):
    import openvino as ov
    from cellpose.inference.prepared import _TwoOutputs, openvino_config

    example = torch.zeros(shape)
    model = ov.convert_model(torch.jit.trace(_TwoOutputs(net), example, check_trace=False),
                             example_input=example, input=[shape])
    quantised = int8.quantise(model, int8.calibrate(model, ov, batch=shape[0]))
    x = int8.calibration_tiles(shape, n=shape[0], seed=321)
    out = np.asarray(ov.Core().compile_model(quantised, "CPU", openvino_config("int8"))(x)[0])
    with torch.no_grad():
        ref = net(torch.from_numpy(x))[0].numpy()
    assert out.shape == ref.shape and np.abs(out - ref).max() / np.abs(ref).max() < INT8_SMALL_NET_BOUND


def test_cli_int8_implies_openvino_and_refuses_it_on_torch(tmp_path, capsys):
    from cellpose.cli import build_parser, _variant

    args = build_parser().parse_args(["--dir", str(tmp_path), "--precision", "int8"])
    assert (_variant(args).precision, _variant(args).backend) == ("int8", "openvino")
    import tifffile

    from cellpose.data import make_image

    tifffile.imwrite(tmp_path / "img.tif", make_image((1, 96, 96), seed=4)[0][0])
    rc = main(["--dir", str(tmp_path), "--precision", "int8", "--backend", "torch"])
    err = capsys.readouterr().err
    assert rc != 0 and "int8 runs only on backend openvino" in err
    assert not list(tmp_path.glob("*_cp_masks*")) and not list(tmp_path.glob("*_seg.npy"))
