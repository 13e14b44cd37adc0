"""Profiling flags of ``python -m cellpose``: ``add_arguments(parser)`` and ``session_from_args(args)``."""
from __future__ import annotations

import argparse
from typing import Optional, TextIO, Union

from .session import NullSession, ProfileSession

__all__ = ["add_arguments", "session_from_args"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--profile``, ``--profile-memory``, ``--profile-trace``, ``--profile-lines``, ``--profile-torch``."""
    g = parser.add_argument_group("profiling")
    g.add_argument("--profile", action="store_true",
                   help="print a per-stage table per image and a run summary; write profile.json next to the outputs")
    g.add_argument("--profile-memory", choices=("rss", "tracemalloc"), default=None,
                   help="memory counters: rss (default) or rss + tracemalloc Python heap peaks (slower); "
                        "implies --profile")
    g.add_argument("--profile-trace", metavar="FILE", default=None,
                   help="write a Chrome trace JSON (open in ui.perfetto.dev or chrome://tracing)")
    g.add_argument("--profile-lines", metavar="STAGE", default=None,
                   help="run line_profiler on the Python functions of STAGE; writes profile_lines.txt")
    g.add_argument("--profile-torch", action="store_true",
                   help="torch.profiler table of the network stage; writes profile_torch.txt")


def session_from_args(args: argparse.Namespace, *,
                      stream: Optional[TextIO] = None) -> Union[NullSession, ProfileSession]:
    """Return the profiling session the flags ask for, or a ``NullSession`` when none is given.

    ``--profile`` (or ``--profile-memory``) prints tables and writes ``profile.json``; ``--profile-trace``,
    ``--profile-lines`` and ``--profile-torch`` each also record the stages but write only their own file.
    """
    tables = bool(getattr(args, "profile", False) or getattr(args, "profile_memory", None))
    trace = getattr(args, "profile_trace", None)
    lines = getattr(args, "profile_lines", None)
    torch = bool(getattr(args, "profile_torch", False))
    if not (tables or trace or lines or torch):
        return NullSession()
    return ProfileSession(memory=getattr(args, "profile_memory", None) or "rss", tables=tables, write_json=tables,
                          trace=trace, lines=lines, torch=torch, stream=stream)
