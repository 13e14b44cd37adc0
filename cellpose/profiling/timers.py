"""Stage timers: ``stage``/``timed`` and the ``Profiler`` that builds the stage tree.

The active profiler lives in a ``contextvars.ContextVar``. With none active, ``stage()`` returns one shared,
immutable null handle and ``timed`` calls the function straight through: no clock read, no allocation.

With a profiler active, every ``with stage(name):`` becomes a call of the tree node found by following the
runtime nesting (``eval > network > network.batch``). Repeated calls of one path aggregate into one node
(calls, wall and CPU time and work counters summed; memory peaks maxed); begin/end events are kept, capped,
for the Chrome trace.
"""
from __future__ import annotations

import functools
import os
import threading
import time
from contextvars import ContextVar
from typing import Callable, ContextManager, Dict, Mapping, Optional

from .memory import make_probe

__all__ = ["Profiler", "StageNode", "active_profiler", "annotate", "stage", "timed"]

_ACTIVE: ContextVar = ContextVar("cellpose_profiler", default=None)

#: Attribute that ``timed`` sets on the wrappers it makes (``lines.py`` finds stage functions by it).
STAGE_ATTRIBUTE = "__cellpose_stage__"


class _NullStage:
    """Stage handle that records nothing (shared, immutable)."""

    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return False

    def add(self, **counters):
        """Ignore work counters."""


_NULL = _NullStage()


def active_profiler():
    """Return the ``Profiler`` active in this context, or ``None``."""
    return _ACTIVE.get()


def stage(name, **counters):
    """Return a context manager timing stage ``name``.

    Parameters
    ----------
    name : str
        Stage name (``"network.batch"``); dots are part of the name, nesting comes from runtime nesting.
    **counters : int or float
        Work counters known up front (``pixels``, ``tiles``, ``cells``); more can be given to ``.add()``.

    Returns
    -------
    handle
        Use as ``with stage("x") as s: ...; s.add(pixels=n)``. The shared null handle when profiling is off.
    """
    prof = _ACTIVE.get()
    if prof is None:
        return _NULL
    return prof.open(name, counters)


def annotate(key: str, value) -> None:
    """Record a fact about the run (e.g. the resolved network variant) on the active profiler.

    ``profile.json`` shows it in the image's ``options`` under ``key`` (the last value given wins). No-op when
    profiling is off.
    """
    prof = _ACTIVE.get()
    if prof is not None:
        prof.annotations[str(key)] = value


def timed(name):
    """Decorate a function so that each call runs inside ``stage(name)``.

    The active profiler is looked up at call time; the wrapper carries ``__cellpose_stage__ = name`` and
    ``__wrapped__`` so that ``--profile-lines`` can find the function of a stage.
    """

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            prof = _ACTIVE.get()
            if prof is None:
                return fn(*args, **kwargs)
            with prof.open(name, None):
                return fn(*args, **kwargs)

        setattr(inner, STAGE_ATTRIBUTE, name)
        return inner

    return wrap


class StageNode:
    """Aggregate of all calls of one stage path.

    Attributes
    ----------
    name : str
        Stage name; ``path`` is the tuple of names from the root (root excluded).
    calls, wall_ns, cpu_ns : int
        Number of calls and summed wall (``perf_counter_ns``) and process CPU (``process_time_ns``) time.
    counters : dict of str to number
        Work counters summed over calls.
    rss_before, rss_after : int or None
        RSS at entry of the first call and at exit of the last call (bytes).
    rss_delta : int
        Sum over calls of exit RSS minus entry RSS (bytes), the memory the stage left behind.
    peak_rss, peak_above_entry : int or None
        Highest RSS during any call, and the highest (peak - entry RSS) of a call (bytes).
    py_peak_above, cuda_peak, cuda_peak_above : int or None
        tracemalloc peak above entry, CUDA ``max_memory_allocated`` peak and peak above entry (bytes).
    """

    __slots__ = ("name", "path", "children", "calls", "wall_ns", "cpu_ns", "counters", "rss_before",
                 "rss_after", "rss_delta", "peak_rss", "peak_above_entry", "py_peak_above", "cuda_peak",
                 "cuda_peak_above", "traced", "dropped")

    def __init__(self, name: str, path: tuple):
        self.name, self.path = name, path
        self.children: Dict[str, StageNode] = {}
        self.calls = self.wall_ns = self.cpu_ns = self.rss_delta = self.traced = self.dropped = 0
        self.counters: Dict[str, float] = {}
        self.rss_before = self.rss_after = self.peak_rss = self.peak_above_entry = None
        self.py_peak_above = self.cuda_peak = self.cuda_peak_above = None

    def child(self, name: str) -> "StageNode":
        """Return the child node ``name``, creating it on first use."""
        node = self.children.get(name)
        if node is None:
            node = self.children.setdefault(name, StageNode(name, self.path + (name,)))
        return node

    def add_counters(self, counters: Mapping[str, float]) -> None:
        """Sum ``counters`` into this node."""
        for key, value in counters.items():
            self.counters[key] = self.counters.get(key, 0) + value

    def record(self, frame: "_Frame", wall_ns: int, cpu_ns: int) -> None:
        """Fold one finished call into the aggregate."""
        self.calls += 1
        self.wall_ns += wall_ns
        self.cpu_ns += cpu_ns
        if frame.counters:
            self.add_counters(frame.counters)
        if frame.rss0 is not None:
            self._record_rss(frame)
        if frame.py0 is not None:
            self.py_peak_above = _max(self.py_peak_above, frame.py_peak - frame.py0)
        if frame.cu0 is not None:
            self.cuda_peak = _max(self.cuda_peak, frame.cu_peak)
            self.cuda_peak_above = _max(self.cuda_peak_above, frame.cu_peak - frame.cu0)

    def _record_rss(self, frame: "_Frame") -> None:
        if self.rss_before is None:
            self.rss_before = frame.rss0
        self.rss_after = frame.rss1
        self.rss_delta += frame.rss1 - frame.rss0
        self.peak_rss = _max(self.peak_rss, frame.peak)
        self.peak_above_entry = _max(self.peak_above_entry, frame.peak - frame.rss0)

    def walk(self):
        """Yield ``(depth, node)`` for this node's descendants, depth first, in first-call order."""
        for child in self.children.values():
            yield len(child.path) - 1, child
            yield from child.walk()


def _max(a: Optional[int], b: int) -> int:
    return b if a is None or b > a else a


class _Frame:
    """One open call of a stage: the handle that ``stage()`` returns while a profiler is active."""

    __slots__ = ("profiler", "name", "counters", "node", "parent", "t0", "c0", "traced", "hook", "rss0", "rss1",
                 "peak", "hwm0", "py0", "py_peak", "cu0", "cu_peak")

    def __init__(self, profiler: "Profiler", name: str, counters: Optional[dict]):
        self.profiler, self.name, self.counters = profiler, name, counters
        self.node = self.parent = self.hook = None
        self.t0 = self.c0 = 0
        self.traced = False
        self.rss0 = self.rss1 = self.peak = self.hwm0 = None
        self.py0 = self.py_peak = self.cu0 = self.cu_peak = None

    def __enter__(self):
        self.profiler._enter(self)
        return self

    def __exit__(self, exc_type, exc, tb):
        self.profiler._exit(self)
        return False

    def add(self, **counters):
        """Add work counters (``pixels=``, ``tiles=``, ``cells=``...) to this call."""
        if self.counters:
            for key, value in counters.items():
                self.counters[key] = self.counters.get(key, 0) + value
        else:
            self.counters = dict(counters)


class Profiler:
    """Records a stage tree while active (``with Profiler(...):`` or ``start()``/``stop()``).

    Parameters
    ----------
    memory : {"rss", "tracemalloc", "off"} or None
        Memory counters: RSS (sampler thread + boundary reads; CUDA peaks too when CUDA is in use), RSS plus
        the tracemalloc Python heap peak (slows allocation-heavy code), or none.
    label : str
        Name of the root node (the image or the notebook block).
    hooks : mapping of str to callable, optional
        ``{stage name: factory}``; each call of that stage runs inside ``factory()`` (a context manager),
        outside its timers. Used for ``--profile-lines`` and ``--profile-torch``.
    max_events_per_stage, max_events : int
        Caps on the calls of one path, and on all events, kept for the Chrome trace.
    sample_interval : float
        Seconds between RSS samples.
    """

    def __init__(self, *, memory: Optional[str] = "rss", label: str = "total",
                 hooks: Optional[Mapping[str, Callable[[], ContextManager]]] = None,
                 max_events_per_stage: int = 2000, max_events: int = 200_000, sample_interval: float = 0.005):
        self.memory_mode = memory if memory in ("rss", "tracemalloc") else "off"
        self.root = StageNode(label, ())
        self.events: list = []
        self.pid = os.getpid()
        self._probe = make_probe(self.memory_mode, interval=sample_interval)
        self._hooks = dict(hooks or {})
        self._caps = (int(max_events_per_stage), int(max_events))
        self._tls = threading.local()
        self._lock = threading.Lock()
        self._open: set = set()
        self._root_frame: Optional[_Frame] = None
        self._token = None
        self.start_ns = self.stop_ns = None
        self.annotations: Dict[str, object] = {}

    @property
    def label(self) -> str:
        """Name of the root node."""
        return self.root.name

    @property
    def baseline_rss(self) -> Optional[int]:
        """RSS (bytes) when the profiler started, the reference of the B/px figures."""
        return self.root.rss_before if self.root.rss_before is not None else getattr(self._root_frame, "rss0", None)

    def __enter__(self) -> "Profiler":
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self) -> None:
        """Activate this profiler in the current context and open the root frame."""
        if self._token is not None or self.stop_ns is not None:
            raise RuntimeError("a Profiler records once: it is already started or finished")
        self._probe.start(self._open_frames)
        frame = _Frame(self, self.root.name, None)
        frame.node = self.root
        self._probe.enter(frame, None)
        self._root_frame = frame
        self._open.add(frame)
        self._trace(frame, "B")
        self._token = _ACTIVE.set(self)
        self.start_ns = frame.t0 = time.perf_counter_ns()
        frame.c0 = time.process_time_ns()

    def stop(self) -> None:
        """Close the root frame, stop the memory sampler and deactivate this profiler."""
        frame = self._root_frame
        if self._token is None or frame is None:
            raise RuntimeError("profiler not started")
        self.stop_ns = t1 = time.perf_counter_ns()
        c1 = time.process_time_ns()
        _ACTIVE.reset(self._token)
        self._token = None
        self._probe.exit(frame, None)
        self._probe.stop()
        self._open.discard(frame)
        self.root.record(frame, t1 - frame.t0, c1 - frame.c0)
        self._trace(frame, "E", t1)

    def total_wall_ns(self) -> int:
        """Wall time of the root: start to stop, or start to now while running."""
        if self.start_ns is None:
            return 0
        end = self.stop_ns if self.stop_ns is not None else time.perf_counter_ns()
        return end - self.start_ns

    def open(self, name: str, counters: Optional[dict]) -> _Frame:
        """Return the handle of a new call of stage ``name`` (entered by the caller's ``with``)."""
        return _Frame(self, name, dict(counters) if counters else None)

    def _stack(self) -> list:
        try:
            return self._tls.stack
        except AttributeError:
            self._tls.stack = []
            return self._tls.stack

    def _open_frames(self) -> tuple:
        with self._lock:
            return tuple(self._open)

    def _enter(self, frame: _Frame) -> None:
        stack = self._stack()
        parent = stack[-1] if stack else self._root_frame
        with self._lock:
            frame.node = parent.node.child(frame.name)
            self._open.add(frame)
        frame.parent = parent
        if self._hooks:
            frame.hook = self._start_hook(frame.name)
        stack.append(frame)
        self._probe.enter(frame, parent)
        frame.traced = self._trace(frame, "B")
        frame.c0 = time.process_time_ns()
        frame.t0 = time.perf_counter_ns()

    def _exit(self, frame: _Frame) -> None:
        t1 = time.perf_counter_ns()
        c1 = time.process_time_ns()
        self._probe.exit(frame, frame.parent)
        stack = self._stack()
        if stack and stack[-1] is frame:
            stack.pop()
        elif frame in stack:
            stack.remove(frame)
        with self._lock:
            self._open.discard(frame)
            frame.node.record(frame, t1 - frame.t0, c1 - frame.c0)
        if frame.traced:
            self._trace(frame, "E", t1)
        if frame.hook is not None:
            frame.hook.__exit__(None, None, None)

    def _start_hook(self, name: str):
        factory = self._hooks.get(name)
        if factory is None:
            return None
        hook = factory()
        hook.__enter__()
        return hook

    def _trace(self, frame: _Frame, phase: str, t_ns: Optional[int] = None) -> bool:
        """Append a begin/end event (and an RSS counter sample); return False when over the caps."""
        per_stage, total = self._caps
        node = frame.node
        if phase == "B":
            if node.traced >= per_stage or len(self.events) >= total:
                node.dropped += 1
                return False
            node.traced += 1
        t_ns = time.perf_counter_ns() if t_ns is None else t_ns
        rss = frame.rss0 if phase == "B" else frame.rss1
        self.events.append((phase, frame.name, t_ns, threading.get_ident(), frame.counters if phase == "E" else None,
                            rss))
        return True
