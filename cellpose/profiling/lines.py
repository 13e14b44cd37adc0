"""``--profile-lines STAGE``: line_profiler on the Python functions of one stage.

The functions of a stage are found without any registry (``stage_functions``):

* functions decorated with ``@timed(STAGE)`` (their wrapper carries ``__cellpose_stage__``; the undecorated
  function is profiled);
* functions whose code contains the string constant ``STAGE``, i.e. the functions that open
  ``with stage("STAGE"):`` (nested code objects included);
* one level of callees of those: names their code uses that resolve, in their module globals, to plain Python
  functions of a ``cellpose`` module (numba dispatchers and C functions cannot be line-profiled and are skipped).

The line profiler is switched on only while the stage is open, so the other stages run at full speed and the
lines of the enclosing function outside its ``with stage`` block show no hits.
"""
from __future__ import annotations

import contextlib
import inspect
import io
import sys
import types
from typing import Iterable, Iterator, List, Optional

from .timers import STAGE_ATTRIBUTE

__all__ = ["LineStageProfiler", "stage_functions"]

_SKIP_PREFIX = "cellpose.profiling"


def _cellpose_modules() -> List[types.ModuleType]:
    names = sorted(n for n in list(sys.modules) if n == "cellpose" or n.startswith("cellpose."))
    return [sys.modules[n] for n in names if not n.startswith(_SKIP_PREFIX) and sys.modules[n] is not None]


def _members(module: types.ModuleType) -> Iterator[object]:
    """Functions and class attributes defined in ``module``."""
    for obj in list(vars(module).values()):
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj):
            for attr in vars(obj).values():
                yield attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
        else:
            yield obj


def _mentions(code: types.CodeType, text: str) -> bool:
    for const in code.co_consts:
        if const == text and isinstance(const, str):
            return True
        if isinstance(const, types.CodeType) and _mentions(const, text):
            return True
    return False


def _is_plain(fn) -> bool:
    return isinstance(fn, types.FunctionType)


def _owned(fn) -> bool:
    module = getattr(fn, "__module__", "") or ""
    return (module == "cellpose" or module.startswith("cellpose.")) and not module.startswith(_SKIP_PREFIX)


def _callees(fn: types.FunctionType) -> Iterator[types.FunctionType]:
    names = set(fn.__code__.co_names)
    for const in fn.__code__.co_consts:
        if isinstance(const, types.CodeType):
            names.update(const.co_names)
    for name in sorted(names):
        target = fn.__globals__.get(name)
        if _is_plain(target) and _owned(target) and getattr(target, STAGE_ATTRIBUTE, None) is None:
            yield target


def _direct(stage: str, modules: Iterable[types.ModuleType]) -> List[types.FunctionType]:
    found = []
    for module in modules:
        for obj in _members(module):
            if getattr(obj, STAGE_ATTRIBUTE, None) == stage:
                obj = inspect.unwrap(obj)
            elif not (_is_plain(obj) and _mentions(obj.__code__, stage)):
                continue
            if _is_plain(obj) and obj not in found:
                found.append(obj)
    return found


def stage_functions(stage: str, modules: Optional[Iterable[types.ModuleType]] = None) -> List[types.FunctionType]:
    """Return the Python functions of ``stage`` (see the module docstring), direct ones first.

    Parameters
    ----------
    stage : str
        Stage name, e.g. ``"dynamics.follow_flows"``.
    modules : iterable of modules, optional
        Where to look; default: every imported ``cellpose`` module except ``cellpose.profiling``.
    """
    direct = _direct(stage, _cellpose_modules() if modules is None else list(modules))
    found = list(direct)
    for fn in direct:
        for callee in _callees(fn):
            if callee not in found:
                found.append(callee)
    return found


class LineStageProfiler:
    """A line_profiler switched on only while stage ``stage`` is open.

    Call ``prepare()`` once the pipeline modules are imported (before the first image), use ``hook`` as the
    profiler hook of the stage, and read ``report()`` at the end.
    """

    def __init__(self, stage: str, *, modules: Optional[Iterable[types.ModuleType]] = None):
        self.stage = stage
        self._modules = None if modules is None else list(modules)
        self._lp = None
        self.functions: List[types.FunctionType] = []
        self.calls = 0

    def prepare(self) -> None:
        """Find the stage's functions and register them with a new ``LineProfiler`` (once)."""
        if self._lp is not None:
            return
        from line_profiler import LineProfiler

        self.functions = stage_functions(self.stage, self._modules)
        self._lp = LineProfiler()
        for fn in self.functions:
            self._lp.add_function(fn)

    @contextlib.contextmanager
    def hook(self):
        """Context manager run around each call of the stage: line profiling on inside it."""
        self.prepare()
        self.calls += 1
        self._lp.enable_by_count()
        try:
            yield self
        finally:
            self._lp.disable_by_count()

    def report(self) -> str:
        """The line_profiler text report (functions without hits left out), with a header naming the stage."""
        names = ", ".join(f"{fn.__module__}.{fn.__qualname__}" for fn in self.functions) or "none"
        head = (f"cellpose-tb --profile-lines {self.stage!r}: {self.calls} call(s) of the stage\n"
                f"functions registered: {names}\n\n")
        if self._lp is None or not self.functions:
            return head + f"no Python function of stage {self.stage!r} was found or run\n"
        out = io.StringIO()
        self._lp.print_stats(stream=out, stripzeros=True)
        return head + out.getvalue()
