"""Train the bundled nuclei model ``cellpose/models/cptb_nuclei`` on synthetic CyCIF nuclei.

Usage: ``.venv/bin/python scripts/train_bundled.py [--n_iter N] [--init FILE] [--learning_rate LR] [--seed S]
[--extra] [--n_extra N] [--out PATH]``

Training data: 384 × 384 images from ``cellpose.data.make_image``, nuclear channel only (network input =
[DNA, zeros], as ``--chan 1``): 24 mixed-size images (seeds 1000-1023, nucleus diameters 8-28 px), plus with
``--extra`` ``n_extra`` (default 8) crowded small-nuclei (seeds 2000+, 8-14 px) and as many large-nuclei
images (seeds 3000+, 18-30 px). Held-out evaluation uses seeds 9000+ (``benchmarks/bench_model.py``,
``tests/test_bundled_model.py``).
Full-size CPnet [2, 32, 64, 128, 256], diam_mean 17, AdamW, crops of 112 px, batch 8, random rotation, flip and
scale ×0.75-1.25, saved as float16 (13.3 MB).

The shipped file was made in four phases (each continues from the previous file; measured on 2 shared CPU
cores, torch 2.13 CPU; the machine was also running tests for most of phase 1 and a benchmark for the first
40 steps of phase 4, hence their slower steps):

1. ``--n_iter 600``                                              2769 s (4.6 s/step), loss 0.99 → 0.178
2. ``--n_iter 300 --init phase1 --learning_rate 5e-4 --seed 1``   781 s (2.6 s/step), loss 0.198 → 0.160
3. ``--n_iter 450 --init phase2 --learning_rate 3e-4 --seed 2 --extra``  909 s (2.0 s/step), loss 0.232 → 0.152
4. ``--n_iter 600 --init phase3 --learning_rate 3e-4 --seed 3 --extra --n_extra 24``  1823 s (3.0 s/step),
   loss 0.204 → 0.143

Phases 1-3 saw the generator before it drew the DNA seam between touching nuclei (``docs/data.md``); phase 4
is the first on today's images. Total 6282 s (105 min) of training for 1950 steps. (Loss: mean of the first
10 and last 20 steps of a phase.)
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from cellpose.data import make_image
from cellpose.train import TrainOptions, load_pretrained, prepare_image, save_trained, train_network

ROOT = Path(__file__).resolve().parents[1]


def training_set(size: int = 384, extra: bool = False, n_extra: int = 8):
    """Generator images: 24 of mixed nucleus sizes (seeds 1000-1023, diameters 8-28 px); with ``extra``, also
    ``n_extra`` crowded small-nuclei images (seeds 2000+, 8-14 px) and ``n_extra`` large-nuclei images
    (seeds 3000+, 18-30 px)."""
    specs = [(seed, (8, 28)) for seed in range(1000, 1024)]
    if extra:
        specs += [(seed, (8, 14)) for seed in range(2000, 2000 + n_extra)]
        specs += [(seed, (18, 30)) for seed in range(3000, 3000 + n_extra)]
    images, labels = [], []
    for seed, diameter in specs:
        img, lab = make_image((1, size, size), seed=seed, diameter=diameter)
        images.append(prepare_image(img[0]))
        labels.append(lab.astype(np.int64))
    return images, labels


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n_iter", type=int, default=600)
    p.add_argument("--out", default=str(ROOT / "cellpose" / "models" / "cptb_nuclei"))
    p.add_argument("--init", default=None, help="weight file to continue training from (second phase)")
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extra", action="store_true", help="add the crowded-small and large-nuclei images")
    p.add_argument("--n_extra", type=int, default=8, help="how many of each extra kind (with --extra)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.perf_counter()
    images, labels = training_set(extra=args.extra, n_extra=args.n_extra)
    options = TrainOptions(n_iter=args.n_iter, batch_size=8, bsize=112, learning_rate=args.learning_rate,
                           diam_mean=17.0, seed=args.seed, log_every=20)
    result = train_network(images, labels, options=options, net=load_pretrained(args.init) if args.init else None)
    out = save_trained(result, args.out, fp16=True)
    log = {"n_iter": args.n_iter, "init": args.init, "learning_rate": args.learning_rate, "seed": args.seed,
           "extra": args.extra, "n_extra": args.n_extra, "train_seconds": result.seconds, "total_seconds": time.perf_counter() - t0,
           "diam_labels": result.diam_labels, "loss_first10": float(np.mean(result.losses[:10])),
           "loss_last20": float(np.mean(result.losses[-20:]))}
    with open(str(out) + ".train.json", "a") as fh:
        fh.write(json.dumps(log) + "\n")
    print(json.dumps(log))


if __name__ == "__main__":
    main()
