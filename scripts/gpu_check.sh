#!/usr/bin/env bash
# Run every network variant on a CUDA GPU against exact and print one table (cellpose.variants, issue 11).
#
#   bash scripts/gpu_check.sh [SIZE] [--allow-cpu] [--trace] [--only NAME,NAME]
#
# SIZE: the generated nuclear image, N (square) or YxX such as 3138x2509 (default 1024). For each variant:
# eval and network-stage seconds (after a warm-up image that also builds compiled networks), speed-up against exact, CUDA peak memory, the
# flow error max|diff|/max|exact| and masks AP@0.5 against exact. Exit status 1 when a variant fails, when
# the fast preset's AP@0.5 is below 0.98, or when there is no CUDA device (--allow-cpu: dry run on the CPU,
# fp16 variants skipped, to check the script itself). --trace: afterwards, torch.profiler's share of host time
# in aten::copy_ and the five costliest host operators for exact and fast (upstream #1435 found copy_ at 27 %).
# --only: run just these variants (exact always runs: it is the reference).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python
exec "$PY" - "$@" <<'PYEOF'
import re
import sys
import time

import numpy as np
import torch

from cellpose import profiling
from cellpose.data import make_image
from cellpose.metrics import average_precision
from cellpose.models import CellposeModel

VARIANTS = [("exact", {}), ("fp16", {"precision": "fp16"}), ("bf16", {"precision": "bf16"}),
            ("auto", {"precision": "auto"}), ("channels_last", {"channels_last": True}),
            ("fp16+channels_last", {"precision": "fp16", "channels_last": True}),
            ("skip_empty", {"skip_empty": True}), ("fast", {"preset": "fast"}),
            ("fast+fast_dynamics", {"preset": "fast", "dynamics": "fast"}),
            ("compile", {"backend": "compile"}), ("compile+auto", {"backend": "compile", "precision": "auto"})]


def network_s(rep):
    def find(node):
        if node["name"] == "network":
            return node["wall_s"]
        return next((v for v in map(find, node["children"]) if v is not None), None)
    return find(rep.to_json()["images"][0]["stages"])


def run(model, img, kwargs):
    model.eval(make_image((1, 512, 512), seed=5)[0][0], **kwargs)          # warm-up / build
    if model.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with profiling.profile(memory="off") as rep:
        t0 = time.perf_counter()
        masks, flows, _ = model.eval(img, **kwargs)
        wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 1e6 if model.device.type == "cuda" else float("nan")
    resolved = rep.to_json()["images"][0]["options"]["network_variant"]
    return {"masks": masks, "dP": flows[1], "cellprob": flows[2], "network_s": network_s(rep), "wall_s": wall,
            "peak_mb": peak, "resolved": f"{resolved['precision']}/{resolved['backend']}"}


def trace(model, img, name, kwargs):
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if model.device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        model.eval(img, **kwargs)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops) or 1
    copy = sum(e.self_cpu_time_total for e in ops if e.key == "aten::copy_")
    top = ", ".join(f"{e.key} {100 * e.self_cpu_time_total / total:.1f}%" for e in ops[:5])
    print(f"trace {name}: aten::copy_ {100 * copy / total:.1f}% of profiled host time; top: {top}")


def parse_size(argv):
    arg = next((a for a in argv if re.fullmatch(r"\d+(x\d+)?", a)), "1024")
    y, _, x = arg.partition("x")
    return int(y), int(x or y)


def main(argv):
    allow_cpu = "--allow-cpu" in argv
    size = parse_size(argv)
    if "--only" in argv and argv.index("--only") + 1 == len(argv):
        print("gpu_check: --only needs a comma-separated list of variants", file=sys.stderr)
        return 2
    only = argv[argv.index("--only") + 1].split(",") if "--only" in argv else [name for name, _ in VARIANTS]
    unknown = sorted(set(only) - {name for name, _ in VARIANTS})
    if unknown:
        print(f"gpu_check: unknown variants {unknown}; valid: {[name for name, _ in VARIANTS]}", file=sys.stderr)
        return 2
    if not torch.cuda.is_available() and not allow_cpu:
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False)", file=sys.stderr)
        return 1
    gpu = torch.cuda.is_available()
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name() if gpu else 'cpu (dry run)'}, "
          f"image {size[0]}x{size[1]}")
    img = make_image((1,) + size, seed=0)[0][0]
    model = CellposeModel(gpu=gpu, pretrained_model="cptb_nuclei")
    ref, failed = run(model, img, {}), 0
    print(f"{'variant':<20} {'resolved':<14} {'eval s':>7} {'network s':>9} {'speedup':>7} {'CUDA MB':>8} {'rel diff':>9} "
          f"{'AP@0.5':>6}")
    for name, kwargs in VARIANTS:
        if name not in only and name != "exact":
            continue
        if not gpu and kwargs.get("precision") == "fp16":
            continue
        try:
            r = ref if name == "exact" else run(model, img, kwargs)
        except Exception as err:  # report every variant, then fail at the end
            print(f"{name:<20} FAILED: {type(err).__name__}: {err}")
            failed += 1
            continue
        rel = max(float(np.abs(r[k] - ref[k]).max() / np.abs(ref[k]).max()) for k in ("dP", "cellprob"))
        ap = average_precision(ref["masks"], r["masks"], thresholds=(0.5,))["ap"][0]
        failed += name.startswith("fast") and ap < 0.98
        print(f"{name:<20} {r['resolved']:<14} {r['wall_s']:>7.2f} {r['network_s']:>9.3f} {ref['network_s'] / r['network_s']:>7.2f} "
              f"{r['peak_mb']:>8.0f} {rel:>9.1e} {ap:>6.3f}")
    if "--trace" in argv:
        for name, kwargs in (("exact", {}), ("fast", {"preset": "fast"})):
            trace(model, img, name, kwargs)
    return 1 if failed else 0


sys.exit(main(sys.argv[1:]))
PYEOF
