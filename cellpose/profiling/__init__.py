"""Per-stage instrumentation: timers, memory counters, reports (see ``docs/profiling.md``).

Pipeline code marks its stages::

    from cellpose.profiling import stage, timed

    with stage("network") as s:
        ...
        s.add(tiles=n, pixels=n * 224 * 224)

    @timed("dynamics.follow_flows")
    def follow_flows(...): ...

With no profiler active these cost one ``ContextVar.get`` (no clock read, no allocation). Notebooks use
``profile()``::

    with cellpose.profiling.profile(memory="rss") as rep:
        model.eval(img)
    print(rep.table()); rep.to_json(); rep.write_trace("trace.json")

The CLI uses ``cellpose.profiling.cli`` (``add_arguments`` / ``session_from_args``).
"""
from .report import Report
from .schema import profile_schema, validate
from .session import NullSession, ProfileSession, profile
from .timers import Profiler, active_profiler, annotate, stage, timed

__all__ = ["NullSession", "ProfileSession", "Profiler", "Report", "active_profiler", "annotate", "profile",
           "profile_schema", "stage", "timed", "validate"]
