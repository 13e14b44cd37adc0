"""``ONEDNN_MAX_CPU_ISA`` caps the CPU flags that ``auto`` and ``--preset fast`` pick from.

PyTorch's and OpenVINO's CPU kernels honour the variable: with ``AVX2`` they run as on an AVX2-only CPU, and
OpenVINO fails to compile bf16. The variant resolution must see the same capped CPU, or ``--preset fast``
would ask for bf16 that the kernels cannot run. On a real AVX2-only CPU OpenVINO compiles bf16 as float32, so
an explicit bf16 request on OpenVINO resolves to fp32 on both, with a warning.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import tifffile

from cellpose import variants
from cellpose.data import make_image

XEON = frozenset({"sse4_1", "avx", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"})
SAPPHIRE = XEON | {"fma", "f16c", "avx_vnni", "avx512_fp16", "amx_fp16"}


@pytest.mark.parametrize("cap, hidden", [
    ("AVX2", {"avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"}),
    ("avx2", {"avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"}),
    ("AVX512_CORE", {"avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"}),
    ("AVX512_CORE_BF16", {"amx_tile", "amx_bf16"}),
    ("AVX10_1_512_AMX", set()),
    ("SSE41", {"avx", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"}),
])
def test_cap_hides_the_flags_above_it(cap, hidden):
    assert variants.isa_capped(XEON, cap) == XEON - hidden


@pytest.mark.parametrize("cap, kept", [
    ("AVX", {"sse4_1", "avx", "f16c"}),
    ("AVX2_VNNI", {"sse4_1", "avx", "f16c", "avx2", "fma", "avx_vnni"}),
    ("AVX512_CORE_BF16", SAPPHIRE - {"avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16"}),
    ("AVX10_1_512", SAPPHIRE - {"amx_tile", "amx_bf16", "amx_fp16"}),
    ("AVX512_CORE_AMX", SAPPHIRE - {"amx_fp16"}),
    ("AVX512_CORE_AMX_FP16", SAPPHIRE),
])
def test_cap_keeps_the_flags_at_or_below_it(cap, kept):
    assert variants.isa_capped(SAPPHIRE, cap) == kept


@pytest.mark.parametrize("cap", [None, "", "ALL", "DEFAULT", "no_such_isa"])
def test_no_or_unknown_cap_changes_nothing(cap):
    assert variants.isa_capped(XEON, cap) == XEON


def test_auto_precision_is_fp32_under_an_avx2_cap():
    auto = variants.NetVariant(precision="auto")
    assert variants.resolve(auto, device="cpu", features=XEON).precision == "bf16"
    assert variants.resolve(auto, device="cpu", features=variants.isa_capped(XEON, "AVX2")).precision == "fp32"


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino not installed")
def test_auto_precision_on_openvino_is_int8_with_or_without_a_cap():
    auto = variants.NetVariant(precision="auto", backend="openvino")
    for feats in (XEON, variants.isa_capped(XEON, "AVX2")):
        assert variants.resolve(auto, device="cpu", features=feats, int8_measured=True).precision == "int8"


@pytest.mark.parametrize("name", variants.ISA_CAP_VARIABLES)
def test_cpu_features_reads_the_cap_from_either_name(name, tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: " + " ".join(sorted(XEON)) + "\n")
    for other in variants.ISA_CAP_VARIABLES:
        monkeypatch.delenv(other, raising=False)
    assert variants.cpu_features(str(cpuinfo)) == XEON and variants.isa_cap() is None
    monkeypatch.setenv(name, "AVX2")
    assert variants.isa_cap() == "AVX2"
    assert variants.cpu_features(str(cpuinfo)) == {"sse4_1", "avx", "avx2"}


AVX2_ONLY = frozenset({"sse4_1", "avx", "avx2", "fma"})
SKYLAKE = frozenset({"sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"})
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(not HAS_OPENVINO, reason="openvino not installed")


def _no_cap(monkeypatch, cap=None):
    for name in variants.ISA_CAP_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if cap:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)


@needs_openvino
@pytest.mark.parametrize("cap, features", [("AVX2", variants.isa_capped(XEON, "AVX2")), (None, AVX2_ONLY)])
def test_openvino_bf16_runs_fp32_without_native_bf16_and_says_so(monkeypatch, caplog, cap, features):
    _no_cap(monkeypatch, cap)
    bf16 = variants.NetVariant(precision="bf16", backend="openvino")
    with caplog.at_level("WARNING", logger="cellpose.variants"):
        resolved = variants.resolve(bf16, device="cpu", features=features)
    assert resolved.precision == "fp32"
    assert "OpenVINO runs float32" in caplog.text and ("capped at AVX2" in caplog.text) == bool(cap)
    assert "emulated" not in caplog.text
    record = variants.describe(bf16, resolved)
    assert (record["precision"], record["requested"]["precision"]) == ("fp32", "bf16")
    caplog.clear()
    with caplog.at_level("WARNING", logger="cellpose.variants"):
        variants.resolve(bf16, device="cpu", features=features, announce=False)
    assert caplog.text == ""


@needs_openvino
@pytest.mark.parametrize("features, warned", [(XEON, False), (SKYLAKE, True)])
def test_openvino_bf16_is_kept_where_openvino_runs_it(monkeypatch, caplog, features, warned):
    _no_cap(monkeypatch)
    bf16 = variants.NetVariant(precision="bf16", backend="openvino")
    with caplog.at_level("WARNING", logger="cellpose.variants"):
        assert variants.resolve(bf16, device="cpu", features=features).precision == "bf16"
    assert ("emulated" in caplog.text) == warned


def test_emulated_bf16_warns_at_the_first_resolution_only(caplog):
    bf16 = variants.NetVariant(precision="bf16", backend="torch")
    with caplog.at_level("WARNING", logger="cellpose.variants"):
        assert variants.resolve(bf16, device="cpu", features=AVX2_ONLY).precision == "bf16"
    assert "emulated" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="cellpose.variants"):
        variants.resolve(bf16, device="cpu", features=AVX2_ONLY, announce=False)
    assert caplog.text == ""


@needs_openvino
def test_a_model_warns_about_bf16_run_as_fp32_once(monkeypatch, caplog):
    from cellpose.models import CellposeModel

    _no_cap(monkeypatch, "AVX2")
    with caplog.at_level("WARNING", logger="cellpose.variants"):
        model = CellposeModel(pretrained_model="cptb_nuclei", backend="openvino", precision="bf16")
        first = caplog.text
        _, resolved = model.resolve_variant()
        _, again = model.resolve_variant()
    assert first.count("OpenVINO runs float32") == 1 and caplog.text == first
    assert resolved.precision == again.precision == "fp32"


@needs_openvino
def test_the_flag_rule_agrees_with_openvino_on_this_cpu(monkeypatch):
    import openvino as ov

    _no_cap(monkeypatch)
    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert variants.openvino_bf16() == ("BF16" in capabilities), (sorted(variants.cpu_features()), capabilities)


@needs_openvino
@pytest.mark.skipif(variants.openvino_bf16() or variants.isa_cap() is not None,
                    reason="OpenVINO runs bf16 on this CPU (or a cap is set): nothing to check here")
def test_openvino_compiles_a_bf16_hint_as_f32_on_this_cpu():
    """The fact behind the fp32 fallback, checked on a CPU it applies to (an AVX2-only one)."""
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter([1, 4, 16, 16], np.float32)
    weights = np.random.default_rng(0).normal(size=(4, 4, 3, 3)).astype(np.float32)
    model = ov.Model([ops.convolution(x, ops.constant(weights), [1, 1], [1, 1], [1, 1], [1, 1])], [x])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32


def _run_cli(tmp_path, cap, *flags):
    tifffile.imwrite(tmp_path / "img.tif", make_image((1, 160, 160), seed=4)[0][0])
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=cap)
    cmd = [sys.executable, "-m", "cellpose", "--dir", str(tmp_path), "--save_tif", "--no_npy", "--profile",
           "--diameter", "17", *(flags or ("--preset", "fast"))]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@needs_openvino
def test_cli_bf16_on_openvino_under_an_avx2_cap_runs_and_records_fp32(tmp_path):
    done = _run_cli(tmp_path, "AVX2", "--backend", "openvino", "--precision", "bf16")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "OpenVINO runs float32" in done.stderr
    variant = json.loads((tmp_path / "profile.json").read_text())["images"][0]["options"]["network_variant"]
    assert (variant["precision"], variant["backend"], variant["requested"]["precision"]) == ("fp32", "openvino",
                                                                                             "bf16")


def test_fast_preset_runs_under_an_avx2_cap_and_records_it(tmp_path):
    done = _run_cli(tmp_path, "AVX2")
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((tmp_path / "profile.json").read_text())
    variant = doc["images"][0]["options"]["network_variant"]
    want = ("int8", "openvino") if importlib.util.find_spec("openvino") else ("fp32", "torch")
    assert (variant["precision"], variant["backend"]) == want
    assert doc["environment"]["thread_env"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert (tmp_path / "img_cp_masks.tif").exists()
