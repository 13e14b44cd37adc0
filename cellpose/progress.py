"""Progress over blocks (or batches, or images): a tqdm bar on a terminal, a log line every N seconds otherwise."""
from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time
from typing import Optional

__all__ = ["Progress", "PROGRESS_LOGGER", "show_progress", "progress_shown"]

PROGRESS_LOGGER = "cellpose.progress"
"""Logger of the periodic progress lines; the CLI shows its INFO records even without ``--verbose``."""

logger = logging.getLogger(PROGRESS_LOGGER)

_SHOWN = contextvars.ContextVar("cellpose_progress_shown", default=False)


@contextlib.contextmanager
def show_progress(on: bool = True):
    """Within the block, whole-image runs report progress over tile batches (the CLI turns this on)."""
    token = _SHOWN.set(bool(on))
    try:
        yield
    finally:
        _SHOWN.reset(token)


def progress_shown() -> bool:
    """True inside ``show_progress()``."""
    return _SHOWN.get()


class Progress:
    """Count finished units with their cells; show blocks done, cells so far and an ETA.

    Parameters
    ----------
    total : int
        Units to do in all.
    done : int
        Units already done (a resumed run).
    desc : str
        What is counted ("blocks").
    interval : float
        Seconds between log lines when the stream is not a terminal.
    enabled : bool
        False: count silently.
    stream : file, optional
        Default ``sys.stderr``.
    unit : str
        Unit name on the bar.
    """

    def __init__(self, total: int, *, done: int = 0, desc: str = "blocks", interval: float = 10.0,
                 enabled: bool = True, stream=None, unit: str = "block"):
        self.unit = unit
        self.total, self.done, self.desc, self.interval = int(total), int(done), desc, float(interval)
        self.cells, self.skipped, self._start_done = 0, 0, int(done)
        self._t0 = self._last = time.monotonic()
        stream = sys.stderr if stream is None else stream
        self._bar = self._make_bar(stream) if enabled and _isatty(stream) else None
        self._log = enabled and self._bar is None

    def _make_bar(self, stream):
        from tqdm import tqdm

        return tqdm(total=self.total, initial=self.done, desc=self.desc, unit=self.unit, file=stream,
                    dynamic_ncols=True)

    def update(self, *, cells: int = 0, skipped: bool = False) -> None:
        """One more unit finished with ``cells`` objects."""
        self.done += 1
        self.cells += int(cells)
        self.skipped += int(bool(skipped))
        if self._bar is not None:
            self._bar.set_postfix(cells=self.cells, skipped=self.skipped, refresh=False)
            self._bar.update(1)
        elif self._log and (time.monotonic() - self._last >= self.interval or self.done == self.total):
            self._last = time.monotonic()
            logger.info("%s", self.line())

    def eta(self) -> Optional[float]:
        """Seconds left at the rate of this session's units, or None before the first one."""
        new = self.done - self._start_done
        if new <= 0:
            return None
        return (time.monotonic() - self._t0) / new * (self.total - self.done)

    def line(self) -> str:
        """``blocks 12/49, 3,120 cells, 2 skipped, ETA 5m10s``."""
        eta = self.eta()
        left = "?" if eta is None else f"{int(eta // 60)}m{int(eta % 60):02d}s"
        return (f"{self.desc} {self.done}/{self.total}, {self.cells:,} cells, {self.skipped} skipped, "
                f"ETA {left}")

    def close(self) -> None:
        """Close the bar (if any)."""
        if self._bar is not None:
            self._bar.close()


def _isatty(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
