"""Benchmark suite of cellpose-tb: asv classes (``asv run``) that ``pytest benchmarks/`` also collects.

asv imports this folder as the package ``benchmarks``; pytest imports its modules as ``benchmarks.<name>``.
Both import this file first, which puts the folder itself on ``sys.path`` so that the scripts' plain
``from _common import ...`` keeps working under either runner.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
