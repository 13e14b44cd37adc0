"""Per-stage instrumentation (TEMPORARY minimal version; the profiling issue replaces it).

Public surface used by every pipeline module:

``stage(name, **counters)``
    Context manager around a stage; yields a handle with ``.add(**counters)``.
``timed(name)``
    Decorator form of ``stage``.
"""
from .timers import stage, timed

__all__ = ["stage", "timed"]
