#!/usr/bin/env bash
# README command (2): set up both environments, then run the test suite.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
bash scripts/reference_env.sh
exec .venv/bin/python -m pytest tests/ -q "$@"
