#!/usr/bin/env bash
# README command (1): set up, make a demo CyCIF image (1024x1024 crop of the `exemplar` preset, 12 channels,
# nuclear stain in channel 1), segment it with the bundled nuclei model and print the per-stage profile.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
mkdir -p demo
[ -f demo/exemplar.ome.tif ] || .venv/bin/python -m cellpose.data make --preset exemplar --crop 1024 1024 --out demo
.venv/bin/python -m cellpose --dir demo --chan 1 --save_tif --profile "$@"
