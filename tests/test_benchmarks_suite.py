"""The benchmark suite stays runnable: asv discovers every class, the pytest adapter collects the same classes.

Nothing here runs a benchmark (that is ``pytest benchmarks/``, CI's smoke step); these checks import and
collect only, in child processes, in well under a minute.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLASSES = {"bench_suite.Stages": ("time_stage", "peakmem_stage"),
           "bench_suite.Accuracy": ("track_ap50_vs_exact", "track_ap90_vs_exact", "track_cells", "track_mpx_per_s",
                                    "track_cells_per_s"),
           "bench_cp3.UpstreamCP3": ("track_cp3_seconds", "track_cp3_peak_rss_mb", "track_ap50_ours_vs_cp3")}
_DISCOVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from asv_runner.discovery import disc_benchmarks
print(json.dumps([b.name for b in disc_benchmarks(sys.argv[1] + '/benchmarks')]))
"""


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPTB_BENCH")}
    return dict(env, CPTB_BENCH_SIZE="256,256")


def _run(args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(importlib.util.find_spec("asv_runner") is None, reason="asv not installed (extra 'bench')")
def test_asv_discovers_every_benchmark_class():
    """asv's own discovery lists every benchmark method of the three classes."""
    import json

    res = _run([sys.executable, "-c", _DISCOVER, str(ROOT)])
    assert res.returncode == 0, res.stderr[-3000:]
    names = set(json.loads(res.stdout.strip().splitlines()[-1]))
    for cls, methods in CLASSES.items():
        for method in methods:
            assert f"{cls}.{method}" in names, f"asv does not discover {cls}.{method}"


@pytest.mark.skipif(importlib.util.find_spec("asv") is None, reason="asv not installed (extra 'bench')")
def test_asv_check_finds_no_problem():
    """``asv check --python=same`` (imports and signatures of every benchmark) reports no problem."""
    res = _run([sys.executable, "-m", "asv", "check", "--python=same"])
    assert res.returncode == 0 and "No problems found" in res.stdout, res.stdout[-3000:] + res.stderr[-3000:]


def test_pytest_adapter_collects_the_asv_classes():
    """``pytest benchmarks/ --collect-only`` lists the asv classes' combinations and the legacy scripts."""
    res = _run([sys.executable, "-m", "pytest", "benchmarks/", "--collect-only", "-q", "-o", "addopts=",
                "-p", "no:cacheprovider"])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    for item in ("Stages[exact-256x256-network]", "Stages[fast-256x256-dynamics]", "Accuracy[blockwise-256x256]",
                 "UpstreamCP3[256x256-whole]", "test_read_one_channel_vs_whole"):
        assert item in out, f"pytest does not collect {item}"


def _stage(name, wall, children=()):
    return {"name": name, "wall_s": wall, "children": list(children)}


def test_profile_plot_writes_png(tmp_path):
    """``python -m cellpose.profiling plot`` stacks eval's children per image (or says matplotlib is missing)."""
    import json

    from cellpose.profiling.__main__ import main
    from cellpose.profiling.plot import image_segments

    root = _stage("img", 3.0, [_stage("io.read", 0.1), _stage("eval", 2.5, [_stage("network", 2.0),
                                                                          _stage("dynamics", 0.4)])])
    image = {"label": "img", "stages": root, "options": {"network_variant": {"precision": "fp32", "backend": "torch"}}}
    assert image_segments(image) == pytest.approx({"io.read": 0.1, "network": 2.0, "dynamics": 0.4, "other": 0.5})
    (tmp_path / "profile.json").write_text(json.dumps({"images": [image]}))
    status = main(["plot", str(tmp_path / "profile.json"), "-o", str(tmp_path / "img")])
    if importlib.util.find_spec("matplotlib") is None:
        assert status == 2
    else:
        assert status == 0 and (tmp_path / "img" / "profile_stages.png").stat().st_size > 1000


def test_results_of_cpus_with_one_model_name_and_different_isas_go_to_different_files(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import _results
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    avx512 = {"cpu_model": "AMD EPYC", "cpu_flags": ["avx2", "avx512f", "avx512_bf16"]}
    avx2 = {"cpu_model": "AMD EPYC", "cpu_flags": ["avx2"]}
    capped = {"cpu_model": "AMD EPYC", "cpu_flags": ["avx2"], "isa_cap": "AVX2"}
    paths = {_results.results_path(hw, tmp_path) for hw in (avx512, avx2, capped, {"cpu_model": "AMD EPYC"})}
    assert len(paths) == 4 and all(p.parent == tmp_path for p in paths)
    assert _results.results_path(avx2, tmp_path).name.endswith("-amd-epyc-avx2.json")
    zen4, zen5 = (dict(avx512, cpu_generation=f"family {f} model {m}") for f, m in ((25, 17), (26, 2)))
    assert _results.results_path(zen5, tmp_path).name.endswith("-amd-epyc-f26m2-avx512_bf16.json")
    assert len({_results.results_path(hw, tmp_path) for hw in (avx512, zen4, zen5)}) == 3
    assert _results.results_path(dict(avx512, cpu_generation="unknown"), tmp_path) == _results.results_path(
        avx512, tmp_path)
    rec = {"benchmark": "Stages.time_stage", "params": {"size": "256x256"}, "value": 1.0, "unit": "seconds"}
    _results.write(_results.results_path(avx512, tmp_path), avx512, [rec])
    _results.write(_results.results_path(avx2, tmp_path), avx2, [dict(rec, value=2.0)])
    assert _results.load(_results.results_path(avx512, tmp_path))["results"][0]["value"] == 1.0
