"""Profiling sessions: ``profile()`` for notebooks, ``ProfileSession`` for the CLI (one report per image)."""
from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional, TextIO

from .environment import collect_environment
from .lines import LineStageProfiler
from .report import Report, _dump, build_document, summary_text
from .timers import Profiler
from .torchprof import TorchStageProfiler
from .trace import write_trace

__all__ = ["NullSession", "ProfileSession", "profile"]

logger = logging.getLogger(__name__)

MEMORY_MODES = ("rss", "tracemalloc", "off")


def _check_memory(memory: Optional[str]) -> str:
    memory = "off" if memory is None else memory
    if memory not in MEMORY_MODES:
        raise ValueError(f"memory must be one of {MEMORY_MODES}, got {memory!r}")
    return memory


def _hooks(lines: Optional[LineStageProfiler], torch: Optional[TorchStageProfiler]) -> dict:
    hooks = {}
    if lines is not None:
        hooks[lines.stage] = lines.hook
    if torch is not None:
        if torch.stage in hooks:
            raise ValueError(f"--profile-lines and --profile-torch cannot both target stage {torch.stage!r}")
        hooks[torch.stage] = torch.hook
    return hooks


@contextlib.contextmanager
def profile(*, memory: Optional[str] = "rss", label: str = "profile", lines: Optional[str] = None,
            torch: bool = False, sample_interval: float = 0.005):
    """Profile the stages run inside the block; yields the ``Report``.

    Parameters
    ----------
    memory : {"rss", "tracemalloc", "off"}
        Memory counters (``"tracemalloc"`` adds the Python heap peak and slows allocation-heavy code).
    label : str
        Name of the root of the stage tree.
    lines : str, optional
        Stage to run line_profiler on (``rep.lines_report()``).
    torch : bool
        Collect torch.profiler tables of the ``network`` stage (``rep.torch_report()``).
    sample_interval : float
        Seconds between RSS samples.

    Examples
    --------
    >>> with cellpose.profiling.profile(memory="rss") as rep:   # doctest: +SKIP
    ...     masks, flows, styles = model.eval(img)
    >>> print(rep.table())                                      # doctest: +SKIP
    """
    memory = _check_memory(memory)
    line_prof = LineStageProfiler(lines) if lines else None
    torch_prof = TorchStageProfiler() if torch else None
    if line_prof is not None:
        line_prof.prepare()
    prof = Profiler(memory=memory, label=label, hooks=_hooks(line_prof, torch_prof), sample_interval=sample_interval)
    rep = Report(prof)
    rep.line_profiler, rep.torch_profiler = line_prof, torch_prof
    with prof:
        yield rep


class _NullReport:
    """Report stand-in yielded when profiling is off."""

    __slots__ = ()

    def set_shape(self, shape) -> None:
        """Ignore the shape."""

    def set_extra(self, key, value) -> None:
        """Ignore the section."""


_NULL_REPORT = _NullReport()


class NullSession:
    """Session used when no profiling flag is given: records, prints and writes nothing."""

    active = False

    def image(self, path, *, shape=None, options=None):
        """Return a context manager doing nothing (it yields a report stand-in with ``set_shape``)."""
        return contextlib.nullcontext(_NULL_REPORT)

    def finish(self, outdir) -> Dict[str, Path]:
        """Write nothing; return an empty dict."""
        return {}


class ProfileSession:
    """Profiles each image of a CLI run and writes the run's reports at the end.

    Parameters
    ----------
    memory : {"rss", "tracemalloc", "off"}
        Memory counters.
    tables : bool
        Print each image's table and the run summary (``--profile``).
    write_json : bool
        Write ``profile.json`` into the output folder (``--profile``).
    trace : path, optional
        Chrome trace file (``--profile-trace``).
    lines : str, optional
        Stage for line_profiler; writes ``profile_lines.txt`` (``--profile-lines``).
    torch : bool
        torch.profiler tables of the network stage; writes ``profile_torch.txt`` (``--profile-torch``).
    stream : text file, optional
        Where tables go (default ``sys.stdout``).
    """

    active = True

    def __init__(self, *, memory: str = "rss", tables: bool = True, write_json: bool = True, trace=None,
                 lines: Optional[str] = None, torch: bool = False, stream: Optional[TextIO] = None,
                 sample_interval: float = 0.005):
        self.memory = _check_memory(memory)
        self.tables, self.write_json = bool(tables), bool(write_json)
        self.trace = None if trace is None else Path(trace)
        self.line_profiler = LineStageProfiler(lines) if lines else None
        self.torch_profiler = TorchStageProfiler() if torch else None
        self._hooks = _hooks(self.line_profiler, self.torch_profiler)
        self._stream = stream
        self._interval = float(sample_interval)
        self.reports: List[Report] = []

    @property
    def flags(self) -> dict:
        """The profiling flags, as recorded in ``profile.json``."""
        return {"profile": self.tables or self.write_json, "profile_memory": self.memory,
                "profile_trace": None if self.trace is None else str(self.trace),
                "profile_lines": None if self.line_profiler is None else self.line_profiler.stage,
                "profile_torch": self.torch_profiler is not None}

    def _write(self, text: str) -> None:
        stream = self._stream if self._stream is not None else sys.stdout
        stream.write(text + "\n")
        stream.flush()

    @contextlib.contextmanager
    def image(self, path, *, shape=None, options=None):
        """Profile one image; yields its ``Report`` (``rep.set_shape(img.shape)`` once the shape is known)."""
        if self.line_profiler is not None:
            self.line_profiler.prepare()
        prof = Profiler(memory=self.memory, label=Path(str(path)).name, hooks=self._hooks,
                        sample_interval=self._interval)
        rep = Report(prof, path=path, shape=shape, options=options)
        prof.start()
        try:
            yield rep
        finally:
            prof.stop()
            self.reports.append(rep)
        if self.tables:
            self._write(rep.table())

    def finish(self, outdir) -> Dict[str, Path]:
        """Write the run's reports; print the run summary. Returns ``{kind: path}`` of the files written."""
        outdir = Path(outdir)
        written: Dict[str, Path] = {}
        doc = build_document(self.reports, environment=collect_environment(flags=self.flags))
        if self.write_json:
            written["json"] = _dump(doc, outdir / "profile.json")
        if self.trace is not None:
            written["trace"] = write_trace(self.trace, [r.profiler for r in self.reports])
        if self.line_profiler is not None:
            written["lines"] = _write_text(outdir / "profile_lines.txt", self.line_profiler.report())
        if self.torch_profiler is not None:
            written["torch"] = _write_text(outdir / "profile_torch.txt", self.torch_profiler.report())
        if self.tables:
            self._write(summary_text(doc["summary"]))
        for kind, path in written.items():
            logger.info("profiling: wrote %s report %s", kind, path)
            if self.tables:
                self._write(f"profiling: wrote {kind} report {path}")
        return written


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
