"""Null-object timers (placeholder until the profiling issue lands)."""
from __future__ import annotations

import functools


class _NullStage:
    """Stage handle that records nothing."""

    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add(self, **counters):
        """Ignore work counters."""


_NULL = _NullStage()


def stage(name, **counters):
    """Return a context manager for stage ``name``; here always the null stage."""
    return _NULL


def timed(name):
    """Decorate a function so that it runs inside ``stage(name)``."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with stage(name):
                return fn(*args, **kwargs)

        return inner

    return wrap
