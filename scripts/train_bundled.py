"""Train the bundled nuclei model ``cellpose/models/cptb_nuclei``.

Usage: ``.venv/bin/python scripts/train_bundled.py [--n_iter N] [--init FILE] [--learning_rate LR] [--seed S]
[--kinds K [--more KIND=N ...]] [--augment basic|heavy] [--seam_weight W] [--bsize PX] [--batch_size B]
[--extra] [--n_extra N] [--out PATH]``, or
``scripts/train_bundled.py --average FILE FILE ... --out PATH`` (mean of weight files, no training).

Training data (``--kinds K``, the current recipe): K jittered 384² images of every kind of
``cellpose.data.sets`` (tissue, culture, dim, crowded, large, sparse; seeds 1000 + 100·k + i; DNA level
×0.3-3 and defocus ×0-1.5 of the kind's nominal value), nuclear channel only (network input = [DNA, zeros], as
``--chan 1``). Held-out sets use seeds 9000+ (``benchmarks/bench_model.py``, ``tests/test_bundled_model.py``).
The real DSB-2018 crop of the StarDist wheel is an outside check only: nothing is trained or selected on it.
``--augment heavy`` (``cellpose.augment``) adds elastic warps, (spatially varying) blur, gamma/contrast/
illumination changes, signal-dependent noise and per-crop re-normalisation to the rotation, flip and scale
(×0.75-1.25) of every crop. Without ``--kinds`` the original recipe is used (24 mixed-size images, seeds
1000-1023, plus ``--extra`` crowded and large ones).
Full-size CPnet [2, 32, 64, 128, 256], diam_mean 17, AdamW, crops of 112 px, batch 8 (``--bsize``,
``--batch_size``), saved as float16
(13.3 MB). Phases 2-21 continue from an earlier file; phase 22 starts again from random weights.

Phases 1-4 (original recipe, basic augmentation; 6282 s, 1950 steps) made the model shipped before issue 14.
Phases 5-7 (issue 14, 2 shared CPU cores, AMD EPYC, flags avx2 avx512f avx512_bf16; other jobs ran during
most of phase 5, so its steps took 1.35-10 s instead of 1.35 s):

5. ``--init <phase 4> --kinds 16 --augment heavy --n_iter 700 --learning_rate 5e-4 --seed 5``  2939 s,
   loss 0.797 → 0.428
6. ``--init <phase 5> --kinds 24 --augment heavy --n_iter 800 --learning_rate 3e-4 --seed 6``  1494 s,
   loss 0.379 → 0.334
7. ``--init <phase 6> --kinds 32 --augment heavy --n_iter 800 --learning_rate 2e-4 --seed 7``  1280 s,
   loss 0.431 → 0.391 (more, and more varied, images than phase 6; shipped)

Phases 5-7: 5,713 s of training for 2,300 steps.

8. ``--init <phase 7> --kinds 40 --augment heavy --n_iter 1000 --learning_rate 1.5e-4 --seed 8``  1299 s
   (AMD EPYC, flags avx2 avx512f avx512_bf16, 2 cores),
   loss 0.362 → 0.381; **not shipped**. Held-out AP@0.5 at the true diameter against phase 7: crowded 0.945
   (0.941), culture 0.975 (0.964), dim 0.961 (0.965), large 0.984 (0.976), sparse 0.894 (0.911), tissue 0.942
   (0.942); DSB crop 0.915 at ``--diameter 24`` (0.945). Mixed, and worse on the real crop.

Phases 9-10 train on the annotated labels of ``cellpose.data.sets`` (since 2026-11-30 every label is one
connected piece of at least 15 px, ``sets.annotated``; before, fragments and edge slivers that ``min_size=15``
can never produce were targets). AMD EPYC, flags avx2 avx512f avx512_bf16, 2 cores, nothing else running:

9. ``--init <phase 7> --kinds 32 --augment heavy --n_iter 800 --learning_rate 1e-4 --seed 9``  1021 s,
   loss 0.453 → 0.409
10. ``--init <phase 9> --kinds 32 --more crowded=32 --more dim=16 --augment heavy --n_iter 1000
    --learning_rate 1e-4 --seed 10``  1278 s, loss 0.455 → 0.361
11. ``--average <phase 9> <phase 10>``: the element-wise mean of the two (a "model soup"; ``diam_labels``
    19.52 from phase 9, whose images are the uniform mix). Shipped until phase 14.

The choice among phase 7, 9, 10 and the means of 7+9, 7+10 and 9+10 was made on a validation set (4 images
of every kind, ``sets.validation``, seeds 5000 + 100·k + i, disjoint from training and held-out seeds;
``CPTB_BENCH_SET=validation CPTB_BENCH_N=4 benchmarks/bench_model.py`` scores it): highest mean AP@0.5 at the
true diameter, ties (within 0.001) to the highest minimum. Mean / minimum: phase 7 0.946 / 0.919, phase 9
0.949 / 0.926, 7+9 0.951 / 0.925, phase 10 0.953 / 0.921, 7+10 0.951 / 0.920, 9+10 0.953 / 0.928.

Phases 12-13 add ``--seam_weight`` (``TrainOptions.seam_weight``): pixels with two different nuclei within 2 px
weigh ``1 + w`` in both loss terms, aimed at the merged and split touching pairs that were most of the misses
left in dim and sparse. AMD EPYC, flags avx2 avx512f avx512_bf16, 2 cores:

12. ``--init <11> --kinds 32 --more dim=16 --more sparse=16 --augment heavy --n_iter 1000 --learning_rate 1e-4
    --seed 12 --seam_weight 4``  1578 s (other jobs ran during part of it), weighted loss 0.717 → 0.964
13. ``--init <mean of 11 and 12> --kinds 32 --more dim=32 --more sparse=16 --augment heavy --n_iter 1000
    --learning_rate 1e-4 --seed 13 --seam_weight 8``  1382 s, weighted loss 1.385 → 1.352
14. ``--average <11> <12>``: shipped until phase 17 (``diam_labels`` 19.52 from phase 11).

Chosen on the validation set with 8 images per kind (``CPTB_BENCH_SET=validation CPTB_BENCH_N=8``; the same
rule: highest mean, ties within 0.001 to the highest minimum). Mean / minimum (dim was the minimum for all):
11 0.952 / 0.928, 12 0.954 / 0.932, mean of 11+12 0.955 / 0.938, 13 0.952 / 0.936, mean of (11+12) and 13
0.955 / 0.936, uniform mean of 11, 12, 13 0.955 / 0.936, mean of 12+13 0.953 / 0.934.

Phases 15-16 (2026-11-30, evening; AMD EPYC, flags avx2 avx512f avx512_bf16, 2 cores, nothing else running):

15. ``--init <14> --kinds 32 --more dim=24 --more sparse=24 --augment heavy --n_iter 1000 --learning_rate 1e-4
    --seed 15 --seam_weight 4``  1238 s, weighted loss 0.833 → 0.791
16. ``--init <mean of 14 and 15> --kinds 32 --more dim=32 --more sparse=24 --augment heavy --n_iter 1000
    --learning_rate 1e-4 --seed 16 --seam_weight 4``  1216 s, weighted loss 0.674 → 0.724
17. ``--average <14> <15>``: shipped until phase 24 (``diam_labels`` 19.52 from phase 14).

Validation, 8 images per kind, same rule. Mean / minimum (dim was the minimum for all): 14 0.9546 / 0.9376,
15 0.9537 / 0.9339, **mean of 14+15 0.9559 / 0.9385**, uniform mean of 11, 12, 15 0.9558 / 0.9384, mean of
12+15 0.9554 / 0.9370, 16 0.9546 / 0.9370, mean of (14+15) and 16 0.9551 / 0.9385, uniform mean of 14, 15,
16 0.9554 / 0.9385. The default thresholds were checked on the same images with phase 14: cell probability
-1, -0.5, 0, 0.5, 1 by flow threshold 0.4, 0.6, off; (0, 0.4) and (0.5, 0.4) were best (mean 0.9546 and
0.9547), so the defaults stay.

Phase 18 (2026-11-30, night; same CPU, nothing else running) tried a different lever, crops the size of the
224-px inference tiles (the style vector then pools over the same area as at inference) at the same pixels
per step:

18. ``--init <17> --kinds 32 --more dim=24 --more sparse=24 --augment heavy --n_iter 800 --learning_rate 1e-4
    --seed 18 --seam_weight 4 --bsize 224 --batch_size 3``  1550 s, weighted loss 0.566 → 0.588

Validation, 8 images per kind: 18 0.9545 / 0.9370, mean of 17+18 0.9560 / 0.9370 (dim the minimum), against
17's 0.9559 / 0.9385: a tie on the mean with a lower minimum, so 17 stays shipped.

Phase 19 (2026-12-01; Intel Xeon, flags amx_bf16 avx512_bf16 amx_int8, 2 cores, nothing else running) tried
three times the steps, in bf16 (``--precision bf16``, 0.365 s per step):

19. ``--init <17> --kinds 32 --more dim=32 --more sparse=32 --augment heavy --n_iter 3000 --learning_rate
    1.5e-4 --seed 19 --seam_weight 4 --precision bf16``  1096 s, weighted loss 0.817 → 0.766

Validation, 8 images per kind, same CPU: 19 0.9551 / 0.9364 (dim 0.936, sparse 0.953), mean of 17+19 0.9558 /
0.9370, against 17's 0.9560 / 0.9385 re-measured there (0.9559 / 0.9385 on the EPYC): no gain, so 17 stays
shipped. Three times the steps moved nothing, like phases 13, 15, 16 and 18 before it.

Phases 20-21 (2026-12-07; AMD EPYC, flags avx2 fma only, 2 cores, 2.0-2.3 s per step) tested a generator in
which overlapping nuclei add their DNA signal, as in a widefield projection (each pixel summed its two nearest
nuclei over the part of the pixel inside both outlines, with the seam dip on the sum). The idea: the pairs
merged in dim and sparse show no dip between their centres, and a bright overlap would show them as two. The
labels were unchanged. The change was reverted and is not in ``cellpose.data``:

20. ``--init <17> --kinds 32 --more dim=24 --more sparse=24 --augment heavy --n_iter 1200 --learning_rate
    2e-4 --seed 20 --seam_weight 4`` on that generator (a first version that also weakened the contact dip of
    nuclei that only touch)  2372 s, weighted loss 1.402 → 0.807
21. ``--init <20> --kinds 32 --more dim=24 --more sparse=24 --more crowded=16 --augment heavy --n_iter 1500
    --learning_rate 2e-4 --seed 21 --seam_weight 4`` on the final version  3252 s, weighted loss 0.926 → 0.966

Validation, 8 images per kind, AP@0.5 at the true diameter, rendered by that generator: shipped model (17)
crowded 0.722, culture 0.789, dim 0.745, large 0.787, sparse 0.828, tissue 0.703 (mean 0.762: the bright
overlaps are a new appearance to it); 20, scored on the first version, mean 0.936 / min 0.898 (crowded); 21
crowded 0.918, culture 0.958, dim 0.939, large 0.946, sparse 0.949, tissue 0.954 (mean 0.944 / min 0.918),
against 17's 0.9560 / 0.9385 on
the current generator: below it, so neither is shipped and the generator keeps overlapping nuclei split on the
bisector, without the added signal. Reported only (not used for the choice): on the current generator's
validation images 21 scored mean 0.882; on the real DSB crop, which 17 scores 0.923, 0.838 at ``--diameter 24``
(114 masks for 125 nuclei) and 0.859 with ``--diameter 0``.

Phases 22-23 (2026-12-07; AMD EPYC family 26 model 2, flags avx512f avx512_vnni avx512_bf16, no AMX, 2 cores,
nothing else running, 0.33-0.34 s per step in bf16) start from random weights instead of continuing the lineage
of phases 1-21, with the recipe of phase 15 and three to six times its steps:

22. ``--kinds 32 --more dim=24 --more sparse=24 --augment heavy --seam_weight 4 --n_iter 6000
    --learning_rate 1e-3 --seed 22 --precision bf16`` (no ``--init``)  2013 s, weighted loss 2.054 → 0.714
23. ``--init <22> --kinds 32 --more dim=24 --more sparse=32 --augment heavy --n_iter 3000 --learning_rate 2e-4
    --seed 23 --seam_weight 4 --precision bf16``  989 s, weighted loss 0.777 → 0.652
24. ``--average <22> <23>``: **shipped** (``diam_labels`` 19.24 from phase 22).

Validation, 8 images per kind, the same rule, all scored on that CPU in one session. Mean / minimum: 22 0.9603 /
0.9447, 23 0.9613 / 0.9463, **mean of 22+23 0.9611 / 0.9489** (a tie with 23 on the mean, with the higher
minimum), against 17's 0.9559 / 0.9385. The minimum was sparse for all three new files, where it had been dim.
Per kind, for the shipped mean: crowded 0.957, culture 0.977, dim 0.952, large 0.963, sparse 0.949, tissue
0.969. The previous model scored crowded 0.947, culture 0.970, dim 0.939, large 0.957, sparse 0.956, tissue
0.968 on the same images. The int8 ranges were written again (``scripts/int8_ranges.py``).

Phase 25 (2026-12-08; AMD EPYC family 25 model 1, flags avx2 fma only, 2 cores, float32, 2.3-2.8 s per step on
a shared machine) continued the shipped file with more sparse images, the kind at the validation minimum:

25. ``--init <24> --kinds 32 --more dim=24 --more sparse=40 --augment heavy --n_iter 1500 --learning_rate 2e-4
    --seed 25 --seam_weight 4``  3848 s, weighted loss 0.793 → 0.705

Validation, 8 images per kind, one process on that CPU. Mean / minimum: 24 (shipped) 0.9611 / 0.9489 (the
figures of the EPYC family 26 run, to the fourth digit), 25 0.9611 / 0.9491, mean of 24+25 0.9610 / 0.9476.
Per kind, 25 against 24: crowded 0.957 / 0.957, culture 0.978 / 0.977, dim 0.955 / 0.952, large 0.963 /
0.963, sparse 0.949 / 0.949, tissue 0.964 / 0.969. A tie on the mean and on the minimum (0.0002, one nucleus):
the rule's tie-break is for minima that differ, so 24 stays shipped rather than changing every published figure
for no measured gain. Sparse did not move with 40 more sparse images.

(Loss: mean of the first 10 and last 20 steps of a phase; heavy-augmentation losses are not comparable with
basic ones, nor seam-weighted ones with unweighted ones.)
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from cellpose.data import make_image
from cellpose.data.sets import training_images
from cellpose.io.atomic import atomic_write
from cellpose.train import TrainOptions, load_pretrained, prepare_image, save_trained, train_network

ROOT = Path(__file__).resolve().parents[1]


def training_set(size: int = 384, extra: bool = False, n_extra: int = 8, kinds: int = 0, more=None):
    """Training images and labels.

    ``kinds`` > 0: that many jittered images of every kind of ``cellpose.data.sets`` (seeds 1000 + 100·k + i;
    held-out sets use 9000+), and ``more`` ({kind: n}) n more of those kinds. Otherwise the original recipe:
    24 mixed-size images (seeds 1000-1023, diameters 8-28 px) and, with ``extra``, ``n_extra`` crowded
    small-nuclei (seeds 2000+, 8-14 px) and ``n_extra`` large-nuclei images (seeds 3000+, 18-30 px).
    """
    if kinds:
        pairs = training_images(per_kind=kinds, size=size, extra=more)
        return [prepare_image(img) for img, _ in pairs], [lab.astype(np.int64) for _, lab in pairs]
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


def _kind_count(text: str):
    """``KIND=N`` → (KIND, N) for ``--more``."""
    kind, sep, count = text.partition("=")
    if not sep or not count.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected KIND=N with N >= 0, got {text!r}")
    return kind.strip(), int(count)


def average_weights(paths, out) -> Path:
    """Save the element-wise mean of the floating-point tensors of several weight files (a "model soup").

    Integer tensors (batch-norm step counters) and ``diam_mean``/``diam_labels`` come from the first file; the
    result keeps the first file's dtype (float16 for the bundled model).
    """
    states = [torch.load(path, map_location="cpu", weights_only=True) for path in paths]
    first = states[0]
    if any(list(s) != list(first) for s in states[1:]):
        raise ValueError(f"weight files {list(map(str, paths))} hold different tensors; only one architecture "
                         "can be averaged")
    out_state = {}
    for key, value in first.items():
        if key in ("diam_mean", "diam_labels") or not value.is_floating_point():
            out_state[key] = value
        else:
            out_state[key] = torch.stack([s[key].float() for s in states]).mean(0).to(value.dtype)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as tmp:
        torch.save(out_state, tmp)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--average", nargs="+", metavar="FILE", default=None,
                   help="instead of training, write the mean of these weight files to --out")
    p.add_argument("--n_iter", type=int, default=600)
    p.add_argument("--out", default=str(ROOT / "cellpose" / "models" / "cptb_nuclei"))
    p.add_argument("--init", default=None, help="weight file to continue training from (second phase)")
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extra", action="store_true", help="add the crowded-small and large-nuclei images")
    p.add_argument("--n_extra", type=int, default=8, help="how many of each extra kind (with --extra)")
    p.add_argument("--augment", choices=("basic", "heavy"), default="basic",
                   help="crop augmentation (TrainOptions.augment)")
    p.add_argument("--kinds", type=int, default=0, help="images per kind of cellpose.data.sets (0: original recipe)")
    p.add_argument("--more", action="append", default=[], metavar="KIND=N", type=_kind_count,
                   help="with --kinds: N more images of KIND (repeatable), e.g. crowded=16")
    p.add_argument("--seam_weight", type=float, default=0.0,
                   help="extra loss weight where two nuclei meet (TrainOptions.seam_weight)")
    p.add_argument("--bsize", type=int, default=112, help="training crop size in pixels (TrainOptions.bsize)")
    p.add_argument("--batch_size", type=int, default=8, help="crops per step (TrainOptions.batch_size)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="TrainOptions.precision: bf16 autocast + channels-last (the shipped model: phases 22-23)")
    args = p.parse_args()
    if args.average:
        print(average_weights(args.average, args.out))
        return
    if args.more and not args.kinds:
        p.error("--more needs --kinds")
    try:
        options = TrainOptions(n_iter=args.n_iter, batch_size=args.batch_size, bsize=args.bsize,
                               learning_rate=args.learning_rate, diam_mean=17.0, seed=args.seed, log_every=20,
                               augment=args.augment, seam_weight=args.seam_weight, precision=args.precision)
    except ValueError as err:
        p.error(str(err))
    more = dict(args.more)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.perf_counter()
    images, labels = training_set(extra=args.extra, n_extra=args.n_extra, kinds=args.kinds, more=more)
    result = train_network(images, labels, options=options, net=load_pretrained(args.init) if args.init else None)
    out = save_trained(result, args.out, fp16=True)
    log = {"n_iter": args.n_iter, "init": args.init, "learning_rate": args.learning_rate, "seed": args.seed,
           "extra": args.extra, "n_extra": args.n_extra, "augment": args.augment, "kinds": args.kinds, "more": more,
           "seam_weight": args.seam_weight, "bsize": args.bsize, "batch_size": args.batch_size,
           "train_seconds": result.seconds, "total_seconds": time.perf_counter() - t0,
           "diam_labels": result.diam_labels, "loss_first10": float(np.mean(result.losses[:10])),
           "loss_last20": float(np.mean(result.losses[-20:]))}
    with open(str(out) + ".train.json", "a") as fh:
        fh.write(json.dumps(log) + "\n")
    print(json.dumps(log))


if __name__ == "__main__":
    main()
