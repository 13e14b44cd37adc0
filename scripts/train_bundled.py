"""Train the bundled nuclei model ``cellpose/models/cptb_nuclei`` on synthetic CyCIF nuclei.

Usage: ``.venv/bin/python scripts/train_bundled.py [--n_iter N] [--out PATH]``

Training data: 24 images of 384 × 384 from ``cellpose.data.make_image`` (seeds 1000-1023, nucleus diameters
8-28 px), nuclear channel only (network input = [DNA, zeros], as ``--chan 1``). Held-out evaluation uses other
seeds (see ``benchmarks/bench_model.py``). Full-size CPnet [2, 32, 64, 128, 256], diam_mean 17, AdamW,
crops of 112 px, batch 8, saved as float16.

Wall time (2 CPU cores, torch 2.13 CPU, shared machine): see the docstring line "measured:" below, written by
hand from the log of the run that produced the shipped file.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from cellpose.data import make_image
from cellpose.train import TrainOptions, prepare_image, save_trained, train_network

ROOT = Path(__file__).resolve().parents[1]


def training_set(n_images: int = 24, size: int = 384, first_seed: int = 1000):
    images, labels = [], []
    for seed in range(first_seed, first_seed + n_images):
        img, lab = make_image((1, size, size), seed=seed, diameter=(8, 28))
        images.append(prepare_image(img[0]))
        labels.append(lab.astype(np.int64))
    return images, labels


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n_iter", type=int, default=600)
    p.add_argument("--out", default=str(ROOT / "cellpose" / "models" / "cptb_nuclei"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.perf_counter()
    images, labels = training_set()
    options = TrainOptions(n_iter=args.n_iter, batch_size=8, bsize=112, learning_rate=1e-3, diam_mean=17.0,
                           seed=0, log_every=20)
    result = train_network(images, labels, options=options)
    out = save_trained(result, args.out, fp16=True)
    log = {"n_iter": args.n_iter, "train_seconds": result.seconds, "total_seconds": time.perf_counter() - t0,
           "diam_labels": result.diam_labels, "loss_first10": float(np.mean(result.losses[:10])),
           "loss_last20": float(np.mean(result.losses[-20:]))}
    Path(str(out) + ".train.json").write_text(json.dumps(log, indent=1))
    print(json.dumps(log))


if __name__ == "__main__":
    main()
