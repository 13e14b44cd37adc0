"""Network variants (``cellpose.variants``): CLI and API, profile.json records, accuracy against exact.

Accuracy bounds, as max|variant - exact| / max|exact| over the image, for dP and cellprob separately:

* float32 variants (channels_last, compile, openvino fp32) only reorder float32 sums: the convolutions add
  up to 3·3·256 = 2,304 products per output, so a reordering moves a value by about sqrt(2304)·2^-24 ≈ 3e-6
  of its magnitude per layer, a few 1e-6 after the network; measured 4e-7 - 8e-7. Bound: 1e-4.
* bf16 keeps 8 significant bits (unit roundoff 2^-9 ≈ 2e-3) in every convolution input and output of the
  ~45 layers, residual sums included; independent roundings grow like sqrt(depth), i.e. about 1.5 %.
  Measured: 0.9 % on one batch of random tiles, 2.6 % (dP) and 7 % (cellprob, whose maximum is small next to
  its errors far from any cell) on the 256² generated image. Bound: 0.15 (2x the largest measured). What
  matters for bf16 is the masks, checked separately at AP@0.5 >= 0.98 against exact.
* int8 (OpenVINO, ``cellpose.inference.int8``) rounds the input of 38 of the 41 convolutions to 256 levels of
  its calibrated range and the weights to 255 levels per output channel: a step of 1/255 of the range, so
  about 0.1 % rms per layer and errors of 1-2 % of the range at the tail of a layer's distribution, grown
  over 38 layers. Measured max|diff| / max|exact| on the 256² generated images and the StarDist image: 7-21 %
  (AMD EPYC with avx512_vnni, and with the kernels capped at AVX2), at a few pixels between touching nuclei;
  32-33 % on the exemplar-size image, which is not tested here. Bound: 0.5 (2x the largest measured on
  these images, and above the exemplar's); a broken calibration gave 2.5. What matters is the masks:
  AP@0.5 1.000 against exact on these images (0.994-1.000 with the AVX2 cap), 0.992-1.000 on larger
  generated and real images (GUIDELINES §7); asserted at >= 0.98, the bar of ``--preset fast``, which picks
  int8 for the bundled model wherever OpenVINO is installed.
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from cellpose import profiling, variants
from cellpose.cli import main
from cellpose.data import make_image
from cellpose.metrics import average_precision
from cellpose.models import CellposeModel
from cellpose.net.weights import DEFAULT_BUNDLED_MODEL

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
FP32_BOUND = 1e-4
BF16_BOUND = 0.15
INT8_BOUND = 0.5
NATIVE_BF16 = variants.native_bf16()

# name -> (CLI flags, eval keywords, expected resolved (precision, backend, channels_last, skip_empty) or None)
VARIANTS = {
    "exact": ([], {}, ("fp32", "torch", False, False)),
    "fast": (["--preset", "fast"], {"preset": "fast"}, None),
    # on a CPU without native bf16, in channels_last: the emulated NCHW path took 33x exact's time there (5.3x
    # in NHWC; AVX2-only AMD EPYC), 110 s of this module's time
    "bf16": (["--precision", "bf16"] + ([] if NATIVE_BF16 else ["--channels_last"]),
             {"precision": "bf16", "channels_last": not NATIVE_BF16}, ("bf16", "torch", not NATIVE_BF16, False)),
    "auto": (["--precision", "auto", "--backend", "auto"], {"precision": "auto", "backend": "auto"}, None),
    "channels_last": (["--channels_last"], {"channels_last": True}, ("fp32", "torch", True, False)),
    "skip_empty": (["--skip_empty"], {"skip_empty": True}, ("fp32", "torch", False, True)),
    "openvino": (["--backend", "openvino"], {"backend": "openvino"}, ("fp32", "openvino", False, False)),
    "compile": (["--backend", "compile"], {"backend": "compile"}, ("fp32", "compile", False, False)),
    "int8": (["--precision", "int8"], {"precision": "int8", "backend": "openvino"}, ("int8", "openvino", False, False)),
}
NEEDS_OPENVINO = ("openvino", "int8")
AUTO_BACKEND = "openvino" if HAS_OPENVINO else "torch"
AUTO_PRECISION = "int8" if HAS_OPENVINO else ("bf16" if NATIVE_BF16 else "fp32")
FAST_CPU = (AUTO_PRECISION, AUTO_BACKEND, True, True)
AUTO_CPU = (AUTO_PRECISION, AUTO_BACKEND, False, False)


def _expected(name):
    expected = VARIANTS[name][2]
    return expected or {"fast": FAST_CPU, "auto": AUTO_CPU}[name]


def _needs(name):
    if name in NEEDS_OPENVINO and not HAS_OPENVINO:
        pytest.skip("openvino is not installed (pip install 'cellpose-tb[openvino]')")


def _record_tuple(record: dict):
    return record["precision"], record["backend"], record["channels_last"], record["skip_empty"]


def _rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def _counters(node: dict, name: str) -> dict:
    if node["name"] == name:
        return node["counters"]
    for child in node["children"]:
        found = _counters(child, name)
        if found is not None:
            return found
    return None


@pytest.fixture(scope="module")
def nuclei() -> np.ndarray:
    """A 256² generated nuclear channel (uint16) with ~80 nuclei."""
    return make_image((1, 256, 256), seed=11)[0][0]


@pytest.fixture(scope="module")
def model() -> CellposeModel:
    return CellposeModel(pretrained_model=DEFAULT_BUNDLED_MODEL)


@pytest.fixture(scope="module")
def exact(model, nuclei):
    masks, flows, _ = model.eval(nuclei)
    return masks, flows


@pytest.mark.parametrize("name", list(VARIANTS))
def test_cli_runs_variant_and_records_it(name, tmp_path, model, nuclei, exact, capsys):
    _needs(name)
    tifffile.imwrite(tmp_path / "img.tif", nuclei)
    # the model's own diameter, as ``exact`` (eval's default); the CLI default would estimate it
    rc = main(["--dir", str(tmp_path), "--save_tif", "--no_npy", "--profile", "--diameter", repr(model.diam_labels),
               *VARIANTS[name][0]])
    capsys.readouterr()
    assert rc == 0
    doc = json.loads((tmp_path / "profile.json").read_text())
    assert profiling.validate(doc) == []
    record = doc["images"][0]["options"]["network_variant"]
    assert _record_tuple(record) == _expected(name)
    assert doc["images"][0]["options"]["variant"] == record["requested"]
    masks = tifffile.imread(tmp_path / "img_cp_masks.tif")
    assert average_precision(exact[0], masks, thresholds=(0.5,))["ap"][0] >= 0.98


@pytest.mark.parametrize("name", [n for n in VARIANTS if n != "openvino"])
def test_api_runs_variant_records_it_and_stays_close(name, model, nuclei, exact):
    _needs(name)
    with profiling.profile(memory="off") as rep:
        masks, flows, _ = model.eval(nuclei, **VARIANTS[name][1])
    record = rep.to_json()["images"][0]["options"]["network_variant"]
    assert _record_tuple(record) == _expected(name)
    bound = {"fp32": FP32_BOUND, "int8": INT8_BOUND}.get(record["precision"], BF16_BOUND)
    for got, ref in ((flows[1], exact[1][1]), (flows[2], exact[1][2])):
        assert got.dtype == np.float32 and _rel(got, ref) <= bound, (name, _rel(got, ref))
    if name in ("exact", "skip_empty"):
        np.testing.assert_array_equal(flows[1], exact[1][1])
        np.testing.assert_array_equal(masks, exact[0])


def test_scoped_switch_and_keyword_precedence(model, nuclei, exact):
    with variants.use("fast") as scoped:
        assert scoped == variants.fast_variant()
        assert _record_tuple(variants.describe(*model.resolve_variant())) == FAST_CPU
        requested, resolved = model.resolve_variant(precision="fp32", skip_empty=False)
        assert (resolved.precision, resolved.channels_last, resolved.skip_empty) == ("fp32", True, False)
        _, flows, _ = model.eval(nuclei, preset="exact")
    assert variants.current() == variants.NetVariant()
    np.testing.assert_array_equal(flows[1], exact[1][1])
    pinned = CellposeModel(pretrained_model=DEFAULT_BUNDLED_MODEL, channels_last=True)
    with variants.use("exact"):
        assert pinned.resolve_variant()[1].channels_last is True
        assert pinned.resolve_variant(channels_last=False)[1].channels_last is False


def _stardist_pair():
    folder = os.environ.get("CPTB_STARDIST_DIR")
    if folder:
        base = Path(folder)
    else:
        try:
            import stardist
        except ImportError:
            return None
        base = Path(stardist.__file__).parent / "data" / "images"
    files = base / "img2d.tif", base / "mask2d.tif"
    return files if files[0].exists() else None


def _fast_ap(model, img, diameter=None, ref=None) -> float:
    if ref is None:
        ref, _, _ = model.eval(img, diameter=diameter)
    fast, _, _ = model.eval(img, diameter=diameter, preset="fast")
    assert ref.max() > 20
    return average_precision(ref, fast, thresholds=(0.5,))["ap"][0]


def test_fast_preset_masks_match_exact_on_generated_nuclei(model, nuclei, exact):
    assert _fast_ap(model, nuclei, ref=exact[0]) >= 0.98
    other = make_image((1, 256, 256), seed=12, diameter=(10, 16))[0][0]
    assert _fast_ap(model, other, diameter=13) >= 0.98


def test_fast_preset_masks_match_exact_on_stardist_image(model):
    files = _stardist_pair()
    if files is None:
        pytest.skip("StarDist img2d.tif not available: set CPTB_STARDIST_DIR or install stardist (GUIDELINES §5)")
    img = tifffile.imread(files[0])
    assert _fast_ap(model, img, diameter=23.7) >= 0.98


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed (pip install 'cellpose-tb[openvino]')")
def test_openvino_matches_torch_fp32_with_upstream_format_weights(random_weights, nuclei):
    net_model = CellposeModel(pretrained_model=str(random_weights))
    _, ref, _ = net_model.eval(nuclei, compute_masks=False)
    with profiling.profile(memory="off") as rep:
        _, got, _ = net_model.eval(nuclei, compute_masks=False, backend="openvino")
    assert rep.to_json()["images"][0]["options"]["network_variant"]["backend"] == "openvino"
    assert _counters(rep.to_json()["images"][0]["stages"], "network.compile")["builds"] == 1
    for g, r in ((got[1], ref[1]), (got[2], ref[2])):
        assert _rel(g, r) <= 1e-4


def test_skip_empty_on_half_blank_image(model):
    img = np.zeros((256, 512), np.uint16)
    img[:, :256] = make_image((1, 256, 256), seed=13)[0][0]
    runs = {}
    for skip in (False, True):
        with profiling.profile(memory="off") as rep:
            masks, _, _ = model.eval(img, skip_empty=skip, diameter=17)
        runs[skip] = masks, _counters(rep.to_json()["images"][0]["stages"], "network")
    np.testing.assert_array_equal(runs[True][0], runs[False][0])
    assert runs[True][0].max() > 20
    skipped, total = runs[True][1]["skipped_tiles"], runs[True][1]["tiles"]
    assert skipped > 0 and runs[True][1]["forwarded_tiles"] == total - skipped
    assert runs[False][1]["tiles"] == total and "skipped_tiles" not in runs[False][1]


@pytest.mark.parametrize("flag, bad, valid", [
    ("--precision", "fp64", "fp32, bf16, fp16, int8, auto"),
    ("--backend", "tensorrt", "torch, compile, openvino, auto"),
    ("--preset", "slow", "exact, fast"),
    ("--channels_last", "--channels_last=yes", "--channels_last/--no-channels_last"),
    ("--skip_empty", "--skip_empty=1", "--skip_empty/--no-skip_empty"),
])
def test_cli_refuses_bad_values(flag, bad, valid, tmp_path, capsys):
    args = [bad] if bad.startswith("--") else [flag, bad]
    with pytest.raises(SystemExit) as exc:
        main(["--dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and flag in err
    for value in valid.split(", "):
        assert value.strip("'") in err.replace("'", "")


@pytest.mark.parametrize("keyword, bad", [("precision", "fp64"), ("backend", "tensorrt"), ("preset", "slow"),
                                          ("channels_last", "yes"), ("skip_empty", 1)])
def test_api_refuses_bad_values(keyword, bad, model, nuclei):
    with pytest.raises(variants.UnknownVariantError) as exc:
        model.eval(nuclei, **{keyword: bad})
    assert repr(bad) in str(exc.value) and all(str(v) in str(exc.value) for v in exc.value.valid)
    with pytest.raises(variants.UnknownVariantError):
        CellposeModel(pretrained_model=DEFAULT_BUNDLED_MODEL, **{keyword: bad})
    with pytest.raises(variants.UnknownVariantError):
        with variants.use(**{keyword: bad}):
            pass


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal of fp16")
def test_fp16_refused_on_cpu(tmp_path, capsys, nuclei):
    with pytest.raises(variants.VariantUnavailableError, match="CUDA"):
        CellposeModel(pretrained_model=DEFAULT_BUNDLED_MODEL, precision="fp16")
    tifffile.imwrite(tmp_path / "img.tif", nuclei)
    assert main(["--dir", str(tmp_path), "--precision", "fp16"]) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kwargs", [{"precision": "fp16"}, {"precision": "bf16"}, {"preset": "fast"},
                                    {"backend": "compile", "precision": "auto"}])
def test_cuda_variants_match_exact(kwargs):
    # 512² (about 320 nuclei): on the 256² image (about 80) one split nucleus alone would fall below 0.98, and
    # bf16 moves the flows by 5e-2 relative on an H200 (GUIDELINES §7)
    nuclei = make_image((1, 512, 512), seed=11)[0][0]
    gpu = CellposeModel(gpu=True, pretrained_model=DEFAULT_BUNDLED_MODEL)
    ref, _, _ = gpu.eval(nuclei)
    assert ref.max() > 200
    masks, _, _ = gpu.eval(nuclei, **kwargs)
    assert average_precision(ref, masks, thresholds=(0.5,))["ap"][0] >= 0.98


def test_a_model_announces_each_auto_pick_once(caplog):
    with caplog.at_level("DEBUG", logger="cellpose.variants"):
        model = CellposeModel(pretrained_model=DEFAULT_BUNDLED_MODEL, preset="fast")
        for _ in range(3):
            model.resolve_variant()
        model.resolve_variant(backend="torch")
    picks = [(r.levelname, r.getMessage().split(":")[0]) for r in caplog.records if "auto: picked" in r.getMessage()]
    assert picks.count(("INFO", "precision auto")) == 2         # the preset, then the preset on torch
    assert picks.count(("DEBUG", "precision auto")) == 3         # the three repeats of the preset


def test_cudnn_tf32_setting_is_read_from_either_api():
    # PyTorch >= 2.9 raises on reading cudnn.allow_tf32 once conv and RNN disagree; the new setting wins
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is None or not hasattr(conv, "fp32_precision"):
        pytest.skip("this PyTorch has no fp32_precision settings")
    before = conv.fp32_precision
    try:
        conv.fp32_precision = "ieee"
        assert variants.cudnn_conv_tf32() is False
        conv.fp32_precision = "tf32"
        assert variants.cudnn_conv_tf32() is True
    finally:
        conv.fp32_precision = before


def test_fast_layout_resolves_to_nhwc_on_a_cpu_and_yields_to_a_keyword():
    fast = variants.fast_variant()
    assert fast.channels_last == "auto"
    assert variants.resolve(fast, device="cpu").channels_last is True
    assert variants.select(preset="fast", channels_last=False).channels_last is False
    assert variants.resolve(variants.select(preset="fast", channels_last=False), device="cpu").channels_last is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fast_on_cuda_is_nchw_and_fp32_where_tf32_runs():
    resolved = variants.resolve(variants.fast_variant(), device="cuda")
    tf32 = torch.cuda.get_device_capability()[0] >= 8 and variants.cudnn_conv_tf32()
    assert (resolved.precision, resolved.backend, resolved.channels_last) == ("fp32" if tf32 else "fp16", "torch",
                                                                              False)


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed (pip install 'cellpose-tb[openvino]')")
@pytest.mark.parametrize("threads", [1, 2])
def test_openvino_threads_follow_torch_and_are_not_pinned(threads):
    # Pinned threads put every one-thread Dask worker on the same core (GUIDELINES §10)
    from cellpose.inference.prepared import _openvino_callable
    from cellpose.net.cpnet import CPnet
    torch.manual_seed(0)
    net = CPnet(nbase=[2, 8, 16, 32, 64], nout=3, sz=3).eval()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        run = _openvino_callable(net, torch.zeros(1, 2, 32, 32), precision="fp32")
    finally:
        torch.set_num_threads(before)
    assert run.compiled.get_property("ENABLE_CPU_PINNING") is False
    assert run.compiled.get_property("INFERENCE_NUM_THREADS") == threads
    out, _ = run(torch.ones(1, 2, 32, 32))
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed (pip install 'cellpose-tb[openvino]')")
@pytest.mark.parametrize("threads,n,streams", [(1, 8, 1), (2, 8, 2), (2, 4, 1), (2, 12, 2)])
def test_openvino_chunks_run_on_one_stream_each_up_to_the_threads(threads, n, streams):
    from cellpose.inference.prepared import PreparedNet
    from cellpose.net.cpnet import CPnet
    torch.manual_seed(n)
    net = CPnet(nbase=[2, 8, 16, 32, 64], nout=3, sz=3).eval()
    prepared = PreparedNet(net, variant=variants.NetVariant(precision="fp32", backend="openvino"), device="cpu")
    x = torch.randn(n, 2, 32, 32)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out, style = prepared(x)
        again, _ = prepared(x)
        short, _ = prepared(x[:n - 1])
    finally:
        torch.set_num_threads(before)
    (run,) = prepared._static.values()
    assert run.streams == streams and run.compiled.get_property("NUM_STREAMS") == streams
    assert (run._queue is not None) == (streams > 1)  # the chunks really went through the request queue
    with torch.no_grad():
        ref_out, ref_style = net(x)[:2]
    assert _rel(out.numpy(), ref_out.numpy()) <= FP32_BOUND
    assert _rel(style.numpy(), ref_style.numpy()) <= FP32_BOUND
    np.testing.assert_array_equal(again.numpy(), out.numpy())  # each chunk's output comes back in its place
    assert _rel(short.numpy(), out[:n - 1].numpy()) <= FP32_BOUND


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed (pip install 'cellpose-tb[openvino]')")
def test_openvino_lone_chunk_first_does_not_keep_later_batches_on_one_stream():
    from cellpose.inference.prepared import PreparedNet
    from cellpose.net.cpnet import CPnet
    torch.manual_seed(2)
    net = CPnet(nbase=[2, 8, 16, 32, 64], nout=3, sz=3).eval()
    prepared = PreparedNet(net, variant=variants.NetVariant(precision="fp32", backend="openvino"), device="cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        prepared(torch.randn(4, 2, 32, 32))  # one chunk: a one-stream build
        prepared(torch.randn(8, 2, 32, 32))  # two chunks: a two-stream build
        prepared(torch.randn(3, 2, 32, 32))  # a lone chunk again: no third build
    finally:
        torch.set_num_threads(before)
    assert prepared.builds == 2 and sorted(r.streams for r in prepared._static.values()) == [1, 2]


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed (pip install 'cellpose-tb[openvino]')")
def test_openvino_failed_chunk_raises_and_the_next_call_works(monkeypatch):
    from cellpose.inference import prepared as prep
    from cellpose.net.cpnet import CPnet
    torch.manual_seed(4)
    net = CPnet(nbase=[2, 8, 16, 32, 64], nout=3, sz=3).eval()
    prepared = prep.PreparedNet(net, variant=variants.NetVariant(precision="fp32", backend="openvino"),
                                device="cpu")
    real, armed = prep._collect, []

    def flaky(request, userdata):
        if armed:
            armed.clear()
            userdata[1].append(RuntimeError("copy failed"))
            return
        real(request, userdata)

    monkeypatch.setattr(prep, "_collect", flaky)
    x = torch.randn(8, 2, 32, 32)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        prepared(x)  # builds; its first call already runs both chunks at once, through the queue
        (run,) = prepared._static.values()
        assert run._queue is not None
        armed.append(1)
        with pytest.raises(RuntimeError, match="no output") as failure:
            prepared(x)
        assert run._queue is None and "copy failed" in str(failure.value.__cause__)
        out, _ = prepared(x)
        assert run._queue is not None  # a new queue
    finally:
        torch.set_num_threads(before)
    with torch.no_grad():
        assert _rel(out.numpy(), net(x)[0].numpy()) <= FP32_BOUND


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed (pip install 'cellpose-tb[openvino]')")
def test_openvino_start_failing_midway_drains_and_drops_the_queue():
    from cellpose.inference.prepared import _OpenVINORun

    class Request:
        waited = 0

        def wait(self):
            Request.waited += 1

    class Queue:
        def __init__(self):
            self.requests, self.started = [Request(), Request()], 0

        def set_callback(self, fn):
            pass

        def start_async(self, inputs, userdata):
            self.started += 1
            if self.started == 2:
                raise RuntimeError("request refused")

        def __iter__(self):
            return iter(self.requests)

    class FakeOpenVINO:
        def AsyncInferQueue(self, compiled, jobs):
            return Queue()

    run = _OpenVINORun(compiled=None, ov=FakeOpenVINO(), streams=2)
    with pytest.raises(RuntimeError, match="request refused"):
        run.many([torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8)])
    assert Request.waited == 2 and run._queue is None


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed (pip install 'cellpose-tb[openvino]')")
def test_openvino_output_copy_errors_are_handed_over_not_raised_in_the_callback():
    # an exception escaping an AsyncInferQueue callback ends the process at the queue's next use
    from cellpose.inference.prepared import _collect

    class Broken:
        def get_output_tensor(self, i):
            raise MemoryError("no room for the copy")

    results, errors = [None, None], []
    _collect(Broken(), (results, errors, 1))
    assert results == [None, None] and isinstance(errors[0], MemoryError)


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino is not installed (pip install 'cellpose-tb[openvino]')")
@pytest.mark.parametrize("n", [3, 4, 7, 9])
def test_openvino_takes_big_batches_in_chunks_with_one_build(n):
    # chunks of OPENVINO_BATCH, whatever the first call's size; the short last one is zero-padded, not built again
    from cellpose.inference.prepared import OPENVINO_BATCH, PreparedNet
    from cellpose.net.cpnet import CPnet
    torch.manual_seed(n)
    net = CPnet(nbase=[2, 8, 16, 32, 64], nout=3, sz=3).eval()
    prepared = PreparedNet(net, variant=variants.NetVariant(precision="fp32", backend="openvino"), device="cpu")
    x = torch.randn(n, 2, 32, 32)
    out, style = prepared(x)
    with torch.no_grad():
        ref_out, ref_style = net(x)[:2]
    assert out.shape == ref_out.shape and style.shape == ref_style.shape
    assert _rel(out.numpy(), ref_out.numpy()) <= FP32_BOUND
    assert _rel(style.numpy(), ref_style.numpy()) <= FP32_BOUND
    assert prepared.builds == 1 and prepared._batch[(2, 32, 32)] == OPENVINO_BATCH
