#!/usr/bin/env bash
# README command (1): set up, make a demo CyCIF image (1024x1024 crop of the `exemplar` preset, 12 channels,
# nuclear stain in channel 1), segment it and print the per-stage profile.
# Until the bundled nuclei model lands, the model is a RANDOM-weight CPnet: the profile is real, the masks are not.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
mkdir -p demo
[ -f demo/exemplar.ome.tif ] || .venv/bin/python -m cellpose.data make --preset exemplar --crop 1024 1024 --out demo
[ -f demo/random_cpnet ] || .venv/bin/python scripts/make_random_model.py demo/random_cpnet
.venv/bin/python -m cellpose --dir demo --chan 1 --diameter 17 --pretrained_model demo/random_cpnet \
  --mask_filter _labels --save_tif --profile "$@"
