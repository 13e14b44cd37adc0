"""pytest adapter for the asv classes: ``pytest benchmarks/`` runs the same suite as ``asv run``.

Every class of a ``bench_*.py`` module with asv benchmark methods (``time_*``, ``peakmem_*``, ``track_*``)
becomes one pytest item per parameter combination. An item calls ``setup_cache`` (once per class and session),
``setup(*params)`` (``NotImplementedError`` -> skipped, as in asv), then each benchmark method once:

* ``time_*``: wall seconds of the call (``time.perf_counter``; best of ``CPTB_BENCH_REPEAT`` calls, default 1);
* ``peakmem_*``: the process's peak RSS during the call (``VmHWM`` after resetting it through
  ``/proc/self/clear_refs``; where that is not possible, the process high-water mark so far);
* ``track_*``: the returned value.

At the end of the session it prints one comparison table (``_results.comparison_table``) with the hardware
line, and merges the records into ``benchmarks/results/<host>-<cpu>-<isa>.json``. The plain ``test_*`` functions of
the older scripts are collected as before; the slow ones (``SLOW_MODULES``) are skipped unless
``CPTB_BENCH_FULL=1`` or their file is named on the command line (``pytest benchmarks/bench_dynamics.py``).
No timing is asserted.
"""
from __future__ import annotations

import inspect
import itertools
import os
import resource
import time
from pathlib import Path

import pytest

import _fixtures
import _results

PREFIXES = ("time_", "peakmem_", "track_")
SLOW_MODULES = ("bench_data", "bench_model", "bench_upstream", "bench_blockwise", "bench_variants",
                "bench_pipeline", "bench_dynamics", "bench_size")
_RECORDS = pytest.StashKey[list]()
_CACHES = pytest.StashKey[dict]()


def _is_asv_class(obj) -> bool:
    return inspect.isclass(obj) and any(n.startswith(PREFIXES) for n in dir(obj))


def _combinations(cls):
    """(params dict, args tuple) for every combination of the class's ``params``."""
    params = getattr(cls, "params", None)
    if params is None:
        return [({}, ())]
    groups = params if isinstance(params[0], (list, tuple)) else [params]
    names = getattr(cls, "param_names", None) or [f"param{k + 1}" for k in range(len(groups))]
    return [(dict(zip(names, args)), args) for args in itertools.product(*groups)]


class AsvClass(pytest.Class):
    """Collects one ``AsvItem`` per parameter combination of an asv class."""

    def collect(self):
        """One item per parameter combination."""
        for params, args in _combinations(self.obj):
            label = "-".join(str(a) for a in args) or "default"
            yield AsvItem.from_parent(self, name=f"{self.name}[{label}]", params=params, args=args)


class AsvItem(pytest.Item):
    """One parameter combination of an asv class: setup, then every benchmark method once."""

    def __init__(self, *, params, args, **kwargs):
        super().__init__(**kwargs)
        self.params, self.args = params, args

    def runtest(self):
        """``setup_cache`` (cached), ``setup``, each benchmark method once, ``teardown``."""
        cls = self.parent.obj
        inst = cls()
        lead = _cache_args(self.config, cls, inst)
        try:
            if hasattr(inst, "setup"):
                inst.setup(*lead, *self.args)
        except NotImplementedError as skip:
            pytest.skip(f"asv skip: {skip}")
        try:
            for name in sorted(n for n in dir(cls) if n.startswith(PREFIXES)):
                for suffix, value in _measure(getattr(inst, name), name, (*lead, *self.args)):
                    self._record(cls, name + suffix, value)
        finally:
            if hasattr(inst, "teardown"):
                inst.teardown(*lead, *self.args)

    def _record(self, cls, name: str, value) -> None:
        unit = {"time_": "seconds", "peakmem_": "bytes"}.get(name.split("_")[0] + "_")
        unit = unit or getattr(getattr(cls, name, None), "unit", "unit")
        rec = {"benchmark": f"{cls.__name__}.{name}", "params": self.params, "value": float(value), "unit": unit,
               "load_average": round(os.getloadavg()[0], 2)}
        self.config.stash[_RECORDS].append(rec)

    def reportinfo(self):
        """Location shown by pytest."""
        return self.path, None, self.name


def _cache_args(config, cls, inst) -> tuple:
    """``(setup_cache result,)`` computed once per class and session, or ``()`` without ``setup_cache``."""
    if not hasattr(inst, "setup_cache"):
        return ()
    caches = config.stash[_CACHES]
    if cls not in caches:
        caches[cls] = inst.setup_cache()
    return (caches[cls],)


def _peak_rss_reset() -> bool:
    """Reset this process's RSS high-water mark (Linux ``clear_refs``); False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _status(key: str) -> int:
    """``VmHWM`` / ``VmRSS`` in bytes from ``/proc/self/status``, else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _timed(method, args: tuple) -> float:
    t0 = time.perf_counter()
    method(*args)
    return time.perf_counter() - t0


def _measure(method, name: str, args: tuple) -> list:
    """Run a benchmark method once; [(record suffix, value)].

    ``time_``: seconds, the best of ``CPTB_BENCH_REPEAT`` calls (default 1). ``peakmem_``: the peak RSS
    during the call (as asv reports it) and, with the suffix ``.above_start``, that peak minus the RSS at the
    start of the call (what the call itself needed; in one long pytest process the absolute peak also carries
    what earlier items left allocated). ``track_``: the returned value.
    """
    if name.startswith("time_"):
        return [("", min(_timed(method, args) for _ in range(_fixtures.repeats())))]
    if name.startswith("peakmem_"):
        _peak_rss_reset()
        start = _status("VmRSS")
        method(*args)
        peak = _status("VmHWM")
        return [("", peak), (".above_start", max(0, peak - start))]
    return [("", method(*args))]


def pytest_configure(config):
    """Start the session's record list and ``setup_cache`` results."""
    config.stash[_RECORDS] = []
    config.stash[_CACHES] = {}


def pytest_pycollect_makeitem(collector, name, obj):
    """Collect the asv classes defined in a ``bench_*.py`` module (not those it imports)."""
    if _is_asv_class(obj) and getattr(obj, "__module__", None) == collector.obj.__name__:
        return AsvClass.from_parent(collector, name=name)
    return None


def pytest_collection_modifyitems(config, items):
    """Skip the slow legacy ``test_*`` scripts unless ``CPTB_BENCH_FULL=1`` or the file is named explicitly."""
    if _fixtures.full_run():
        return
    named = {Path(str(arg).split("::")[0]).stem for arg in config.args}
    skip = pytest.mark.skip(reason="slow legacy benchmark script: set CPTB_BENCH_FULL=1 (or name the file)")
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if getattr(item, "module", None) else ""
        if module in SLOW_MODULES and module not in named and not isinstance(item, AsvItem):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, config):
    """Print the comparison table and merge this run's records into ``benchmarks/results/<host>-<cpu>-<isa>.json``."""
    records = config.stash.get(_RECORDS, [])
    if not records:
        return
    import torch

    torch.get_num_threads()  # imported so that the hardware record carries torch's threads
    from cellpose.profiling.environment import hardware, hardware_line

    hw = hardware()
    terminalreporter.write_line("\n" + _results.comparison_table(records, hardware_line(hw)))
    path = _results.write(_results.results_path(hw), hw, records)
    terminalreporter.write_line(f"\nwrote {path} ({len(records)} records from this run)")
