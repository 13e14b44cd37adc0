"""Benchmark: network-stage time and peak RSS of each network variant against exact (``cellpose.variants``).

``CPTB_BENCH_FULL=1 pytest benchmarks/bench_variants.py`` (a slow module: skipped without
``CPTB_BENCH_FULL=1``; 512 × 512 by default, ``CPTB_BENCH_SIZE=1024,1024``, or ``3138,2509`` for the
exemplar) renders a generated nuclear channel, then runs each variant in its own child process
(``python benchmarks/bench_variants.py --child NAME IMG OUT``) so that the peak RSS is the variant's own.
A child first segments a 512² warm-up image (this builds the compiled / OpenVINO networks for the batch
shape; its ``network.compile`` time is reported), then the benchmark image with stage timers. The parent
prints the CPU model and flags, the load average, and per variant: network-stage seconds, ms per tile,
speed-up against exact, build seconds, peak RSS, flow error against exact and masks AP@0.5 against exact.
``CPTB_BENCH_VARIANTS=exact,fast`` limits the variants.

On a shared machine one run per variant is at the mercy of the load, so a second test times one batch of 8
tiles of 224² per variant in one process, the variants interleaved round by round (``CPTB_BENCH_ROUNDS``,
default 5), and prints the best round of each: the per-tile cost with the least interference among the PyTorch
variants. OpenVINO runs its own thread pool, which competes with PyTorch's spinning OpenMP threads in one
process, so compare backends with the per-process test. Nothing about time is asserted.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import tifffile

from _common import bench_size, run_child
from _fixtures import emulated_bf16

VARIANTS = {
    "exact": {},
    "channels_last": {"channels_last": True},
    "bf16": {"precision": "bf16"},
    "bf16+channels_last": {"precision": "bf16", "channels_last": True},
    "fast": {"preset": "fast"},
    "compile": {"backend": "compile"},
    "compile+bf16": {"backend": "compile", "precision": "bf16"},
    "openvino": {"backend": "openvino"},
    "openvino+bf16": {"backend": "openvino", "precision": "bf16"},
    "int8": {"precision": "int8", "backend": "openvino"},
}


def _find(node: dict, name: str):
    if node["name"] == name:
        return node
    for child in node["children"]:
        found = _find(child, name)
        if found is not None:
            return found
    return None


def child(name: str, image: str, out: str) -> None:
    """Segment the warm-up and the benchmark image with variant ``name``; write flows, masks and timings."""
    from cellpose import profiling
    from cellpose.data import make_image
    from cellpose.models import CellposeModel

    model = CellposeModel(pretrained_model="cptb_nuclei", **VARIANTS[name])
    with profiling.profile(memory="off") as warm:
        model.eval(make_image((1, 512, 512), seed=5)[0][0])
    img = tifffile.imread(image)
    with profiling.profile(memory="off") as rep:
        masks, flows, _ = model.eval(img)
    np.savez(out + ".npz", masks=masks, dP=flows[1], cellprob=flows[2])
    stages, wstages = rep.to_json()["images"][0]["stages"], warm.to_json()["images"][0]["stages"]
    build = _find(wstages, "network.compile")
    record = {"network_s": _find(stages, "network")["wall_s"], "counters": _find(stages, "network")["counters"],
              "build_s": build["wall_s"] if build else 0.0,
              "variant": rep.to_json()["images"][0]["options"]["network_variant"]}
    Path(out + ".json").write_text(json.dumps(record))


def _cpu_line() -> str:
    import torch  # noqa: F401  (imported, so that ``hardware`` reports its thread count)

    from cellpose.profiling.environment import hardware, hardware_line

    return hardware_line(hardware())


def _names():
    """``CPTB_BENCH_VARIANTS`` or every variant; by default none in bf16 on a CPU without native bf16, where
    PyTorch emulates it (33x exact's time per batch on an AVX2-only AMD EPYC) and OpenVINO runs fp32."""
    names = os.environ.get("CPTB_BENCH_VARIANTS")
    chosen = names.split(",") if names else [n for n in VARIANTS if not emulated_bf16(VARIANTS[n])]
    if importlib.util.find_spec("openvino") is None:
        chosen = [n for n in chosen if not n.startswith("openvino") and n != "int8"]
    return ["exact"] + [n for n in chosen if n != "exact"]


def _run_variant(name: str, img: Path, workdir: Path) -> dict:
    out = workdir / name
    res = run_child([__file__, "--child", name, str(img), str(out)])
    rec = json.loads(Path(str(out) + ".json").read_text())
    rec["peak_rss"] = res["peak_rss"]
    with np.load(str(out) + ".npz") as arrays:
        rec["arrays"] = {k: arrays[k] for k in arrays.files}
    return rec


def _row(name: str, rec: dict, ref: dict) -> str:
    from cellpose.metrics import average_precision

    tiles = rec["counters"]["tiles"]
    a, r = rec["arrays"], ref["arrays"]
    rel = max(float(np.abs(a[k] - r[k]).max() / np.abs(r[k]).max()) for k in ("dP", "cellprob"))
    ap = average_precision(r["masks"], a["masks"], thresholds=(0.5,))["ap"][0]
    v = rec["variant"]
    return (f"{name:<20} {v['precision']:>5} {v['backend']:>8} {rec['network_s']:>9.2f} "
            f"{1000 * rec['network_s'] / tiles:>8.0f} {ref['network_s'] / rec['network_s']:>7.2f} "
            f"{rec['counters'].get('skipped_tiles', 0):>7} {rec['build_s']:>7.1f} {rec['peak_rss'] / 1e6:>8.0f} "
            f"{rel:>9.1e} {ap:>6.3f}")


def run(workdir: Path, shape) -> list:
    from cellpose.data import make_image

    img = workdir / "nuclei.tif"
    tifffile.imwrite(img, make_image((1,) + tuple(shape), seed=0)[0][0])
    recs = {name: _run_variant(name, img, workdir) for name in _names()}
    head = (f"{'variant':<20} {'prec':>5} {'backend':>8} {'network s':>9} {'ms/tile':>8} {'speedup':>7} "
            f"{'skipped':>7} {'build s':>7} {'peak MB':>8} {'rel diff':>9} {'AP@0.5':>6}")
    return [head] + [_row(name, rec, recs["exact"]) for name, rec in recs.items()]


def _batch(ntiles: int = 8) -> np.ndarray:
    """(ntiles, 2, 224, 224) float32 tiles of a normalised generated nuclear image (second channel zero)."""
    from cellpose.data import make_image

    img = make_image((1, 224, 224 * ntiles), seed=3)[0][0].astype(np.float32)
    lo, hi = np.percentile(img, (1, 99))
    tiles = ((img - lo) / (hi - lo)).reshape(224, ntiles, 224).transpose(1, 0, 2)
    return np.stack([tiles, np.zeros_like(tiles)], axis=1).astype(np.float32)


def interleaved(rounds: int) -> list:
    """Best-of-``rounds`` seconds per batch of each variant, the variants run round-robin in this process."""
    import time

    from cellpose.inference.run_net import _forward
    from cellpose.models import CellposeModel

    model, batch = CellposeModel(pretrained_model="cptb_nuclei"), _batch()
    nets = {n: model.network_for(model.resolve_variant(**VARIANTS[n])[1]) for n in _names()}
    best = {n: float("inf") for n in nets}
    for n, net in nets.items():
        _forward(net, batch, model.device)          # build / warm up
    for _ in range(rounds):
        for n, net in nets.items():
            t0 = time.perf_counter()
            _forward(net, batch, model.device)
            best[n] = min(best[n], time.perf_counter() - t0)
    lines = [f"{'variant':<20} {'s/batch':>8} {'ms/tile':>8} {'speedup':>7}"]
    for n, t in best.items():
        lines.append(f"{n:<20} {t:>8.3f} {1000 * t / len(batch):>8.0f} {best['exact'] / t:>7.2f}")
    return lines


def test_variants_interleaved_batches():
    print(_cpu_line())
    rounds = int(os.environ.get("CPTB_BENCH_ROUNDS", "5"))
    print(f"one batch of 8 tiles of 224², bundled model, best of {rounds} interleaved rounds")
    lines = interleaved(rounds)
    print("\n".join(lines))
    print(_cpu_line())
    assert len(lines) > 1


def test_variants_network_time(tmp_path):
    shape = bench_size((512, 512))
    print(_cpu_line())
    print(f"image {shape[0]}x{shape[1]} (generated nuclear channel), bundled model, default diameter")
    lines = run(tmp_path, shape)
    print("\n".join(lines))
    print(_cpu_line())
    assert len(lines) > 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        child(*sys.argv[2:5])
