"""Network-stage seconds on CUDA for every precision x layout x batch size x skip_empty (GUIDELINES §7).

    python scripts/gpu_sweep.py [YxX] [--rounds N] [--allow-cpu]

Generated nuclear image (default 3138x2509, the exemplar size), bundled model, ``compute_masks=False``; each
setting ``--rounds`` times (default 3), rounds interleaved, sorted by the median, with the ratio to exact
(float32, NCHW, batch 8, no skipping). ``--allow-cpu``: a short dry run on the CPU (no fp16, batch 8 only).
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cellpose import profiling  # noqa: E402
from cellpose.data import make_image  # noqa: E402
from cellpose.models import CellposeModel  # noqa: E402

EXACT = ("fp32", False, 8, False)


def network_seconds(model, img, *, precision, channels_last, batch, skip_empty) -> float:
    """Wall seconds of the ``network`` stage of one eval without masks."""
    with profiling.profile(memory="off") as rep:
        model.eval(img, compute_masks=False, batch_size=batch, precision=precision, channels_last=channels_last,
                   skip_empty=skip_empty)
    return _find(rep.to_json()["images"][0]["stages"], "network")


def _find(node, name):
    if node["name"] == name:
        return node["wall_s"]
    return next((v for v in (_find(c, name) for c in node["children"]) if v is not None), None)


def settings(gpu: bool) -> list:
    """(precision, channels_last, batch, skip_empty) to time; exact first."""
    precisions, batches = (("fp32", "bf16", "fp16"), (8, 32, 64)) if gpu else (("fp32", "bf16"), (8,))
    grid = itertools.product(precisions, (False, True), batches, (False, True))
    return [EXACT] + [s for s in grid if s != EXACT]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("size", nargs="?", default="3138x2509")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--allow-cpu", action="store_true")
    args = ap.parse_args(argv)
    gpu = torch.cuda.is_available()
    if not gpu and not args.allow_cpu:
        print("gpu_sweep: no CUDA device (torch.cuda.is_available() is False)", file=sys.stderr)
        return 1
    y, _, x = args.size.partition("x")
    img = make_image((1, int(y), int(x or y)), seed=0)[0][0]
    model = CellposeModel(gpu=gpu, pretrained_model="cptb_nuclei")
    todo = settings(gpu)
    for s in todo:                                      # warm-up: cuDNN autotuning, autocast caches
        network_seconds(model, img[:512, :512], precision=s[0], channels_last=s[1], batch=s[2], skip_empty=s[3])
    times = {s: [] for s in todo}
    for _ in range(args.rounds):
        for s in todo:
            times[s].append(network_seconds(model, img, precision=s[0], channels_last=s[1], batch=s[2],
                                            skip_empty=s[3]))
    base = float(np.median(times[EXACT]))
    print(f"network stage s, {img.shape[0]}x{img.shape[1]}, {torch.cuda.get_device_name() if gpu else 'cpu'}, "
          f"median of {args.rounds}; ratio to exact (fp32, NCHW, batch 8, no skip)")
    for s, v in sorted(times.items(), key=lambda kv: np.median(kv[1])):
        print(f"  {s[0]:<5} channels_last={s[1]!s:<5} batch={s[2]:<3} skip_empty={s[3]!s:<5} "
              f"{np.median(v):.3f} s  {base / np.median(v):.2f}x  (runs {', '.join(f'{t:.3f}' for t in v)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
