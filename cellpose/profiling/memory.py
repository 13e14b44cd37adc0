"""Memory counters of the stages: resident set size, tracemalloc heap, CUDA allocator.

RSS (Linux): a daemon thread reads ``/proc/self/statm`` every ``interval`` seconds and raises the running peak of
every open stage; each stage also reads RSS at entry and exit, and the process high-water mark
(``ru_maxrss`` or ``VmHWM``, never reset) at entry and exit: when the high-water mark rose during a call, a new
process-wide peak happened inside it, and that exact value is its peak. So a short spike between two samples is
still caught whenever it is the largest the process has seen, which is the case that matters for sizing.

tracemalloc and CUDA peaks are exact: at entry and exit of every stage the tracker's peak is read into the parent
(or into the stage) and reset, so that nested stages each get their own peak.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import tracemalloc
from typing import Callable, Optional

__all__ = ["HighWaterMark", "NullProbe", "MemoryProbe", "RssReader", "high_water_mark", "make_probe"]

logger = logging.getLogger(__name__)

_STATM = "/proc/self/statm"
_STATUS = "/proc/self/status"
_INHERITED_MARGIN = 1 << 20


class RssReader:
    """Resident set size of this process from ``/proc/self/statm`` (Linux; ``rss()`` is None elsewhere)."""

    def __init__(self):
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        try:
            self._fd: Optional[int] = os.open(_STATM, os.O_RDONLY)
        except OSError:
            self._fd = None

    @property
    def available(self) -> bool:
        """Whether RSS can be read on this system."""
        return self._fd is not None

    def rss(self) -> Optional[int]:
        """Return the current RSS in bytes (None when unavailable)."""
        if self._fd is None:
            return None
        return int(os.pread(self._fd, 128, 0).split()[1]) * self._page

    def close(self) -> None:
        """Close the statm file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _rusage_peak() -> int:
    """``ru_maxrss`` in bytes (0 where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


class HighWaterMark:
    """Peak RSS of this process so far (bytes), never reset.

    ``ru_maxrss`` is cheap (about 1 us) but, after fork + exec, starts at the parent's peak; when it exceeds
    ``VmHWM`` of ``/proc/self/status`` at construction, the status file (about 10 us a read) is used instead.
    """

    def __init__(self):
        try:
            self._fd: Optional[int] = os.open(_STATUS, os.O_RDONLY)
        except OSError:
            self._fd = None
        status = self._status()
        self._use_status = status is not None and _rusage_peak() > status + _INHERITED_MARGIN

    def _status(self) -> Optional[int]:
        if self._fd is None:
            return None
        data = os.pread(self._fd, 8192, 0)
        start = data.find(b"VmHWM:")
        if start < 0:
            return None
        return int(data[start + 6:data.index(b"kB", start)]) * 1024

    def peak(self) -> int:
        """Return the process peak RSS in bytes."""
        if self._use_status:
            return self._status()
        return _rusage_peak()

    def close(self) -> None:
        """Close the status file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def high_water_mark() -> int:
    """Peak RSS of the process so far in bytes (see ``HighWaterMark``)."""
    hwm = HighWaterMark()
    try:
        return hwm.peak()
    finally:
        hwm.close()


def _cuda_module():
    """``torch.cuda`` when torch is already imported and CUDA is initialised, else None (never imports torch)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        cuda = torch.cuda
        return cuda if cuda.is_available() and cuda.is_initialized() else None
    except (AttributeError, RuntimeError):
        return None


class NullProbe:
    """Memory probe that measures nothing (``memory="off"``)."""

    mode = "off"
    rss_available = False

    def start(self, open_frames: Callable[[], tuple]) -> None:
        """Do nothing."""

    def stop(self) -> None:
        """Do nothing."""

    def enter(self, frame, parent) -> None:
        """Do nothing."""

    def exit(self, frame, parent) -> None:
        """Do nothing."""


class MemoryProbe:
    """RSS sampler plus optional tracemalloc and CUDA peaks, driven by the profiler at stage boundaries.

    Parameters
    ----------
    mode : {"rss", "tracemalloc"}
        ``"tracemalloc"`` adds the Python/NumPy heap peak (tracemalloc is started if it is not running).
    interval : float
        Seconds between RSS samples of the sampler thread.
    """

    def __init__(self, mode: str, *, interval: float = 0.005):
        self.mode = mode
        self._reader = RssReader()
        self._hwm = HighWaterMark()
        self._interval = float(interval)
        self._trace_py = mode == "tracemalloc"
        self._started_tracemalloc = False
        self._cuda = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def rss_available(self) -> bool:
        """Whether RSS is measured (Linux)."""
        return self._reader.available

    def start(self, open_frames: Callable[[], tuple]) -> None:
        """Start tracemalloc (if asked) and the sampler thread raising the peaks of ``open_frames()``."""
        if self._trace_py and not tracemalloc.is_tracing():
            tracemalloc.start()
            self._started_tracemalloc = True
        self._cuda = _cuda_module()
        if self._reader.available:
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, args=(open_frames,), name="cellpose-rss-sampler",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the sampler thread and the tracemalloc we started; close the statm file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._started_tracemalloc:
            tracemalloc.stop()
            self._started_tracemalloc = False
        self._reader.close()
        self._hwm.close()

    def _sample(self, open_frames: Callable[[], tuple]) -> None:
        while not self._stop.wait(self._interval):
            frames = open_frames()  # before the read: a sample never lands in a stage opened after it
            rss = self._reader.rss()
            for frame in frames:
                if frame.peak is not None and rss > frame.peak:
                    frame.peak = rss

    def enter(self, frame, parent) -> None:
        """Read the counters at entry of ``frame``; hand the peaks so far to ``parent``."""
        rss = self._reader.rss()
        if rss is not None:
            frame.rss0 = frame.peak = rss
            frame.hwm0 = self._hwm.peak()
            if parent is not None and rss > parent.peak:
                parent.peak = rss
        if self._trace_py:
            current, peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            _raise_py(parent, peak)
            frame.py0 = frame.py_peak = current
        if self._cuda is not None:
            self._cuda_enter(frame, parent)

    def exit(self, frame, parent) -> None:
        """Read the counters at exit of ``frame``; fold its peaks into ``parent``."""
        rss = self._reader.rss()
        if rss is not None and frame.rss0 is not None:
            frame.rss1 = rss
            peak = max(frame.peak, rss)
            hwm = self._hwm.peak()
            if hwm > frame.hwm0:
                peak = max(peak, hwm)
            frame.peak = peak
            if parent is not None and parent.peak is not None and peak > parent.peak:
                parent.peak = peak
        if self._trace_py and frame.py0 is not None:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            frame.py_peak = max(frame.py_peak, peak)
            _raise_py(parent, frame.py_peak)
        if self._cuda is not None and frame.cu0 is not None:
            self._cuda_exit(frame, parent)

    def _cuda_enter(self, frame, parent) -> None:
        cuda = self._cuda
        peak = cuda.max_memory_allocated()
        cuda.reset_peak_memory_stats()
        if parent is not None and parent.cu_peak is not None and peak > parent.cu_peak:
            parent.cu_peak = peak
        frame.cu0 = frame.cu_peak = cuda.memory_allocated()

    def _cuda_exit(self, frame, parent) -> None:
        cuda = self._cuda
        frame.cu_peak = max(frame.cu_peak, cuda.max_memory_allocated())
        cuda.reset_peak_memory_stats()
        if parent is not None and parent.cu_peak is not None and frame.cu_peak > parent.cu_peak:
            parent.cu_peak = frame.cu_peak


def _raise_py(parent, peak: int) -> None:
    if parent is not None and parent.py_peak is not None and peak > parent.py_peak:
        parent.py_peak = peak


def make_probe(mode: str, *, interval: float = 0.005):
    """Return the probe for ``mode`` (``"rss"``, ``"tracemalloc"``; anything else measures nothing)."""
    if mode in ("rss", "tracemalloc"):
        probe = MemoryProbe(mode, interval=interval)
        if not probe.rss_available:
            logger.warning("RSS is not readable on this system (%s missing): memory columns stay empty", _STATM)
        return probe
    return NullProbe()
