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
# (about 11 s of a first exemplar run; cellpose/warmup.py). CELLPOSE_SKIP_WARMUP=1 skips it.
[ "${CELLPOSE_SKIP_WARMUP:-0}" = 1 ] || .venv/bin/python -m cellpose.warmup
