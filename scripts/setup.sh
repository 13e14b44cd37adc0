#!/usr/bin/env bash
# Create (or update) the project venv .venv with cellpose-tb installed editable plus the test, bench and openvino
# extras (openvino: the --backend openvino / --preset fast path, so that its tests run too).
# torch is pinned to the CPU 2.13.0 build that this machine keeps on disk (no download).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install --quiet "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install --quiet -e ".[test,bench,openvino]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import cellpose, torch; print('cellpose-tb', cellpose.__version__, '| torch', torch.__version__)"
# compile the numba kernels and convert the network for OpenVINO once, here, instead of in the first real run
# (12.7 s of a first exemplar run on an Intel Xeon, 2 cores; cellpose/warmup.py). CELLPOSE_SKIP_WARMUP=1 skips
# it. It only fills caches, so a failure here is reported and the set-up still succeeds.
case "${CELLPOSE_SKIP_WARMUP:-0}" in
    1|true|yes|on) echo "warm-up skipped (CELLPOSE_SKIP_WARMUP)" ;;
    *) .venv/bin/python -m cellpose.warmup || echo "warm-up failed; the first run will compile instead" >&2 ;;
esac
