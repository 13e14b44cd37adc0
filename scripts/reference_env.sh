#!/usr/bin/env bash
# Create .reference/venv with upstream cellpose 3.1.1.3 and the CPU torch on this machine.
# Used only by the parity tests (tests/parity/), which skip when this venv is missing.
# Idempotent: does nothing if the venv already imports cellpose 3.1.1.3.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.reference/venv"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c \
    "import sys, importlib.metadata as m; sys.exit(0 if m.version('cellpose') == '3.1.1.3' else 1)" 2>/dev/null; then
  echo "reference env ready: $venv"
  exit 0
fi
mkdir -p "$root/.reference"
"$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "torch==2.13.0"
"$venv/bin/python" -m pip install --quiet "cellpose==3.1.1.3" "torch==2.13.0"
(cd "$root/.reference" && "$venv/bin/python" -c "import importlib.metadata as m, cellpose.models; print('reference cellpose', m.version('cellpose'))")
