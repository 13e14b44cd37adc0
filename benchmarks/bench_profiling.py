"""Benchmark: the cost of the stage instrumentation when profiling is off (and, for scale, when it is on).

Run with ``pytest benchmarks/bench_profiling.py -s``. Each case times ``N`` calls in a loop, ``REPEATS`` times,
and prints the median nanoseconds per call and the overhead over the matching bare loop. Nothing about time is
asserted; the test only checks that the loops ran and that "off" left no profiler behind.
"""
from __future__ import annotations

import statistics
import time

import cellpose.profiling as P

N = 100_000
REPEATS = 7


@P.timed("bench.timed")
def _decorated(x):
    return x


def _plain(x):
    return x


def _bare_loop(n):
    for _ in range(n):
        pass


def _stage_loop(n):
    for _ in range(n):
        with P.stage("bench.stage"):
            pass


def _stage_add_loop(n):
    for _ in range(n):
        with P.stage("bench.stage") as s:
            s.add(pixels=1)


def _plain_call_loop(n):
    for _ in range(n):
        _plain(1)


def _timed_call_loop(n):
    for _ in range(n):
        _decorated(1)


def median_ns_per_call(loop, n=N, repeats=REPEATS) -> float:
    """Median over ``repeats`` runs of ``loop(n)`` of the nanoseconds per iteration."""
    loop(min(n, 1000))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        loop(n)
        samples.append((time.perf_counter_ns() - t0) / n)
    return statistics.median(samples)


def _report(title: str, results: dict, baselines: dict) -> None:
    print(f"\n{title} (median of {REPEATS} x {N} calls)")
    for name, ns in results.items():
        base = baselines.get(name)
        extra = f"  (+{ns - results[base]:.0f} ns over {base})" if base else ""
        print(f"  {name:<28} {ns:8.1f} ns/call{extra}")


def test_stage_cost_when_off():
    assert P.active_profiler() is None
    results = {
        "bare loop": median_ns_per_call(_bare_loop),
        "with stage()": median_ns_per_call(_stage_loop),
        "with stage() + add()": median_ns_per_call(_stage_add_loop),
        "plain function call": median_ns_per_call(_plain_call_loop),
        "@timed function call": median_ns_per_call(_timed_call_loop),
    }
    baselines = {"with stage()": "bare loop", "with stage() + add()": "bare loop",
                 "@timed function call": "plain function call"}
    _report("profiling OFF", results, baselines)
    assert P.active_profiler() is None and all(v > 0 for v in results.values())


def test_stage_cost_when_on():
    results = {}
    for memory in ("off", "rss"):
        with P.profile(memory=memory) as rep:
            results[f"with stage(), memory={memory}"] = median_ns_per_call(_stage_loop, n=N // 10)
        assert rep.profiler.root.children["bench.stage"].calls == (N // 10) * REPEATS + min(N // 10, 1000)
    _report("profiling ON (for scale)", results, {})
