"""Chrome trace JSON (Trace Event Format) from the events that profilers recorded.

Opens in https://ui.perfetto.dev or chrome://tracing. Each stage call is a ``B``/``E`` pair on the thread that
ran it (properly nested, in recorded order); each image is one enclosing ``B``/``E`` pair named after it; RSS
at every stage boundary is a ``C`` (counter) track named ``RSS MB``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterable, List

__all__ = ["chrome_trace", "write_trace"]


def _thread_ids(profilers) -> Dict[int, int]:
    ids: Dict[int, int] = {}
    for prof in profilers:
        for event in prof.events:
            ids.setdefault(event[3], len(ids))
    return ids


def _metadata(pid: int, tids: Dict[int, int]) -> List[dict]:
    out = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": "cellpose"}}]
    for ident, tid in tids.items():
        name = "main" if tid == 0 else f"thread {tid}"
        out.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}})
    return out


def _convert(prof, origin_ns: int, tids: Dict[int, int]) -> Iterable[dict]:
    root = prof.label
    for phase, name, t_ns, ident, counters, rss in prof.events:
        ts = (t_ns - origin_ns) / 1000.0
        event = {"name": name, "cat": "image" if name == root and phase in "BE" else "stage", "ph": phase,
                 "ts": ts, "pid": prof.pid, "tid": tids[ident]}
        if phase == "E" and counters:
            event["args"] = {k: v for k, v in counters.items()}
        yield event
        if rss is not None:
            yield {"name": "RSS MB", "ph": "C", "ts": ts, "pid": prof.pid, "tid": tids[ident],
                   "args": {"rss": round(rss / 1e6, 3)}}


def chrome_trace(profilers) -> dict:
    """Return the trace of ``profilers`` (finished ``Profiler`` objects, in run order) as a JSON-ready dict.

    Timestamps (``ts``, microseconds) count from the start of the first profiler.
    """
    profilers = [p for p in profilers if p.start_ns is not None]
    origin = min((p.events[0][2] for p in profilers if p.events), default=0)
    tids = _thread_ids(profilers)
    pid = profilers[0].pid if profilers else os.getpid()
    events = _metadata(pid, tids)
    dropped = 0
    for prof in profilers:
        events.extend(_convert(prof, origin, tids))
        dropped += sum(node.dropped for _, node in prof.root.walk())
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"generator": "cellpose-tb", "dropped_stage_calls": dropped}}


def write_trace(path, profilers) -> Path:
    """Write ``chrome_trace(profilers)`` to ``path`` and return the path."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(chrome_trace(profilers), fh)
    return path
