#!/usr/bin/env bash
# README command (1): set up, make a demo CyCIF image (1024x1024 crop of the `exemplar` preset, 12 channels,
# nuclear stain in channel 1), segment it with the bundled nuclei model (diameter estimated from the image),
# print the per-stage profile and the accuracy (AP) of the masks against the generator's ground truth.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
mkdir -p demo
.venv/bin/python -m cellpose.data make --preset exemplar --crop 1024 1024 --out demo
.venv/bin/python -m cellpose --dir demo --chan 1 --save_tif --profile "$@"
.venv/bin/python -m cellpose.metrics demo/exemplar_masks.tif demo/exemplar.ome_cp_masks.tif --annotated
