"""Profiling without the pipeline: timers, memory counters, reports, schema, trace, sessions, compare."""
from __future__ import annotations

import argparse
import io
import json
import mmap
import subprocess
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest

import cellpose.profiling as P
from cellpose.profiling import cli as prof_cli
from cellpose.profiling import timers
from cellpose.profiling.__main__ import main as prof_main
from cellpose.profiling.schema import validate

MB = 1_000_000
MIB = 1 << 20


def _node(root, *path):
    node = root
    for name in path:
        node = node.children[name]
    return node


def check_trace_nesting(trace: dict) -> int:
    """Assert B/E events pair up and nest per thread; return the number of pairs."""
    stacks, pairs, last_ts = {}, 0, {}
    for ev in trace["traceEvents"]:
        if ev["ph"] not in "BE":
            continue
        tid = ev["tid"]
        assert ev["ts"] >= last_ts.get(tid, float("-inf")), "timestamps go backwards on a thread"
        last_ts[tid] = ev["ts"]
        stack = stacks.setdefault(tid, [])
        if ev["ph"] == "B":
            stack.append(ev["name"])
        else:
            assert stack and stack[-1] == ev["name"], f"end of {ev['name']} does not close {stack[-1:]}"
            stack.pop()
            pairs += 1
    assert all(not s for s in stacks.values()), f"unclosed stages {stacks}"
    return pairs


# ---------------------------------------------------------------- off: null object


def test_stage_off_is_one_shared_null_handle():
    assert P.active_profiler() is None
    a, b = P.stage("a"), P.stage("b", pixels=3)
    assert a is b
    with a as handle:
        handle.add(pixels=1)
    assert handle is a


def test_off_reads_no_clock(monkeypatch):
    class NoClock:
        def __getattr__(self, name):
            raise AssertionError(f"clock read time.{name} while profiling is off")

    monkeypatch.setattr(timers, "time", NoClock())

    @P.timed("t")
    def f(x, *, y=1):
        return x + y

    for _ in range(100):
        with P.stage("x") as s:
            s.add(pixels=1)
        assert f(1, y=2) == 3


def test_off_allocates_nothing_per_call():
    @P.timed("t")
    def f(x):
        return x

    def loop(n):
        for _ in range(n):
            with P.stage("a") as s:
                s.add(pixels=1)
            f(1)

    loop(100)
    tracemalloc.start()
    try:
        c0, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        loop(20_000)
        c1, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert c1 - c0 < 1024, "memory retained by calls of stage() while off"
    assert peak - c0 < 4096, "transient allocations grow with the number of calls"


# ---------------------------------------------------------------- tree


def test_nesting_builds_a_tree_and_repeats_aggregate():
    with P.profile(memory="off") as rep:
        with P.stage("eval") as s:
            s.add(pixels=100)
            with P.stage("network"):
                for k in range(3):
                    with P.stage("network.batch", tiles=2) as sb:
                        sb.add(pixels=10)
            with P.stage("dynamics"):
                with P.stage("dynamics.follow_flows"):
                    pass
    root = rep.profiler.root
    batch = _node(root, "eval", "network", "network.batch")
    assert batch.calls == 3 and batch.path == ("eval", "network", "network.batch")
    assert batch.counters == {"tiles": 6, "pixels": 30}
    assert _node(root, "eval").counters == {"pixels": 100}
    assert list(_node(root, "eval").children) == ["network", "dynamics"]
    assert _node(root, "eval", "dynamics", "dynamics.follow_flows").calls == 1
    assert root.calls == 1 and root.wall_ns >= _node(root, "eval").wall_ns > 0


def test_timed_looks_up_the_profiler_at_call_time():
    @P.timed("late")
    def work(n):
        return sum(range(n))

    assert work(10) == 45
    with P.profile(memory="off") as rep:
        assert work(1000) == 499500
        work(10)
    assert work.__cellpose_stage__ == "late" and work.__name__ == "work"
    assert _node(rep.profiler.root, "late").calls == 2


def test_wall_and_cpu_time_are_recorded():
    with P.profile(memory="off") as rep:
        with P.stage("sleep"):
            time.sleep(0.05)
        with P.stage("spin"):
            t = time.process_time()
            while time.process_time() - t < 0.05:
                pass
    sleep, spin = _node(rep.profiler.root, "sleep"), _node(rep.profiler.root, "spin")
    assert sleep.wall_ns >= 45e6 and sleep.cpu_ns < sleep.wall_ns / 2
    assert spin.cpu_ns >= 45e6


def test_exception_inside_a_stage_still_closes_it():
    with P.profile(memory="off") as rep:
        with pytest.raises(KeyError):
            with P.stage("outer"):
                with P.stage("inner"):
                    raise KeyError("x")
        with P.stage("after"):
            pass
    root = rep.profiler.root
    assert _node(root, "outer", "inner").calls == 1
    assert "after" in root.children and "after" not in _node(root, "outer").children
    assert P.active_profiler() is None


def test_other_threads_do_not_record_into_the_profiler():
    seen = []
    with P.profile(memory="off") as rep:
        th = threading.Thread(target=lambda: seen.append(P.active_profiler()))
        th.start()
        th.join()
    assert seen == [None] and rep.profiler.root.children == {}


def test_a_profiler_records_once():
    prof = P.Profiler(memory="off")
    with prof:
        pass
    with pytest.raises(RuntimeError):
        prof.start()


# ---------------------------------------------------------------- memory


def test_memory_counters_attribute_to_the_right_stage():
    with P.profile(memory="rss") as rep:
        with P.stage("parent"):
            with P.stage("alloc"):
                a = np.ones(300 * MIB // 8)  # 300 MiB: a little margin over 300 MB for frees elsewhere
                a[::512] = 2.0
            del a
            with P.stage("idle"):
                time.sleep(0.02)
    root = rep.profiler.root
    alloc, idle = _node(root, "parent", "alloc"), _node(root, "parent", "idle")
    assert alloc.peak_above_entry >= 300 * MB
    assert idle.peak_above_entry < 50 * MB
    assert _node(root, "parent").peak_rss >= alloc.peak_rss
    assert alloc.rss_delta >= 290 * MB and alloc.rss_after - alloc.rss_before == alloc.rss_delta


def test_sampler_sees_a_spike_freed_inside_the_stage():
    with P.profile(memory="rss", sample_interval=0.002) as rep:
        with P.stage("spike"):
            # an anonymous mapping of its own, so that the pages leave at close() whatever malloc does with
            # large blocks freed in a process that has run other tests (one full run kept 200 MB of np.ones)
            spike = mmap.mmap(-1, 200 * MB)
            np.frombuffer(spike, dtype=np.uint8)[::4096] = 1
            time.sleep(0.25)        # many sampling intervals, even when other threads hold both cores
            spike.close()
        with P.stage("quiet"):
            time.sleep(0.01)
    spike = _node(rep.profiler.root, "spike")
    assert spike.peak_above_entry >= 190 * MB
    assert spike.rss_delta < 50 * MB
    assert _node(rep.profiler.root, "quiet").peak_above_entry < 50 * MB


def test_sampler_never_credits_a_stage_opened_after_its_read():
    from types import SimpleNamespace

    from cellpose.profiling.memory import MemoryProbe

    old, new = SimpleNamespace(peak=10), SimpleNamespace(peak=10)
    open_frames = [old]

    class Reader:
        def rss(self):
            open_frames.append(new)  # a stage opens while the sample is being read
            return 500

    class OneTick:
        def __init__(self):
            self.ticks = 0

        def wait(self, timeout):
            self.ticks += 1
            return self.ticks > 1

    probe = MemoryProbe("rss")
    real = probe._reader
    probe._reader, probe._stop = Reader(), OneTick()
    probe._sample(lambda: tuple(open_frames))
    real.close()
    probe._hwm.close()
    assert (old.peak, new.peak) == (500, 10)


_HWM_SCRIPT = """
import numpy as np, cellpose.profiling as P
with P.profile(memory="rss", sample_interval=10.0) as rep:
    with P.stage("spike"):
        a = np.ones(int(250e6 // 8)); del a
print(rep.profiler.root.children["spike"].peak_above_entry)
"""


def test_high_water_mark_catches_a_new_peak_between_samples():
    out = subprocess.run([sys.executable, "-c", _HWM_SCRIPT], capture_output=True, text=True, timeout=120,
                         check=True)
    assert int(out.stdout.strip()) >= 240 * MB


def test_tracemalloc_peak_per_stage():
    was_tracing = tracemalloc.is_tracing()
    with P.profile(memory="tracemalloc") as rep:
        with P.stage("heap"):
            b = np.ones(int(40 * MB // 8))
            del b
        with P.stage("none"):
            c = [0] * 10
    root = rep.profiler.root
    assert _node(root, "heap").py_peak_above >= 40 * MB
    assert _node(root, "none").py_peak_above < MB
    assert root.py_peak_above >= 40 * MB
    assert tracemalloc.is_tracing() == was_tracing and c


class _FakeCuda:
    """Stands in for ``torch.cuda``'s allocator statistics."""

    def __init__(self):
        self.allocated = self.peak = 0

    def alloc(self, n):
        self.allocated += n
        self.peak = max(self.peak, self.allocated)

    def memory_allocated(self):
        return self.allocated

    def max_memory_allocated(self):
        return self.peak

    def reset_peak_memory_stats(self):
        self.peak = self.allocated


def test_cuda_peaks_per_stage(monkeypatch):
    from cellpose.profiling import memory

    fake = _FakeCuda()
    fake.alloc(1000)
    monkeypatch.setattr(memory, "_cuda_module", lambda: fake)
    with P.profile(memory="rss") as rep:
        with P.stage("outer"):
            with P.stage("gpu"):
                fake.alloc(500)
                fake.alloc(-500)
            with P.stage("none"):
                pass
            fake.alloc(200)
    root = rep.profiler.root
    gpu, none, outer = _node(root, "outer", "gpu"), _node(root, "outer", "none"), _node(root, "outer")
    assert (gpu.cuda_peak, gpu.cuda_peak_above) == (1500, 500)
    assert (none.cuda_peak, none.cuda_peak_above) == (1000, 0)
    assert (outer.cuda_peak, outer.cuda_peak_above) == (1500, 500)
    assert "CUDA MB" in rep.table()


def test_memory_off_leaves_memory_empty():
    with P.profile(memory="off") as rep:
        with P.stage("a"):
            pass
    image = rep.image_dict()
    assert image["stages"]["children"][0]["memory"] is None and image["peak_rss_bytes"] is None
    with pytest.raises(ValueError):
        with P.profile(memory="bogus"):
            pass


# ---------------------------------------------------------------- reports


def _synthetic(memory="rss", label="profile"):
    with P.profile(memory=memory, label=label) as rep:
        with P.stage("io.read") as s:
            s.add(pixels=200 * 100)
        with P.stage("eval") as s:
            s.add(pixels=200 * 100)
            with P.stage("network"):
                for _ in range(4):
                    with P.stage("network.batch") as sb:
                        sb.add(tiles=1, pixels=64)
            s.add(cells=7)
    return rep


def test_report_table_json_and_b_per_px():
    rep = _synthetic()
    rep.set_shape((200, 100, 2))
    image = rep.image_dict()
    assert image["pixels"] == 20000 and image["cells"] == 7 and image["shape"] == [200, 100, 2]
    ev = image["stages"]["children"][1]
    assert ev["name"] == "eval" and ev["counters"] == {"pixels": 20000, "cells": 7}
    mem = ev["memory"]
    assert mem["peak_b_per_px"] == pytest.approx(mem["peak_above_baseline_bytes"] / 20000)
    assert 0 < image["coverage"] <= 1.0
    text = rep.table()
    for column in ("calls", "wall s", "%", "CPU s", "peak RSS MB", "B/px", "px/s", "cells/s"):
        assert column in text.splitlines()[1]
    assert "      network.batch" in text and "    4 " in text.split("network.batch")[1][:20]
    assert validate(rep.to_json()) == []


def test_pixels_fall_back_to_the_eval_counter():
    assert _synthetic().image_dict()["pixels"] == 20000


def test_schema_validator_rejects_bad_documents():
    doc = _synthetic().to_json()
    assert validate(doc) == []
    bad = json.loads(json.dumps(doc))
    del bad["images"][0]["stages"]["children"][0]["wall_s"]
    bad["images"][0]["stages"]["calls"] = "one"
    bad["summary"]["extra"] = 1
    problems = validate(bad)
    assert any("wall_s" in p for p in problems)
    assert any("$.images[0].stages.calls" in p for p in problems)
    assert any("unexpected key 'extra'" in p for p in problems)


def test_chrome_trace_is_nested_json(tmp_path):
    rep = _synthetic()
    path = rep.write_trace(tmp_path / "trace.json")
    trace = json.loads(path.read_text())
    assert check_trace_nesting(trace) == 1 + 2 + 1 + 4
    names = [e["name"] for e in trace["traceEvents"] if e["ph"] == "B"]
    assert names[:4] == ["profile", "io.read", "eval", "network"]
    assert any(e["ph"] == "C" and e["args"]["rss"] > 0 for e in trace["traceEvents"])


def test_trace_event_cap_keeps_nesting():
    prof = P.Profiler(memory="off", max_events_per_stage=5)
    with prof:
        with P.stage("outer"):
            for _ in range(50):
                with P.stage("batch"):
                    with P.stage("inner"):
                        pass
    trace = P.Report(prof).to_json()
    assert validate(trace) == []
    from cellpose.profiling.trace import chrome_trace

    ct = chrome_trace([prof])
    assert check_trace_nesting(ct) == 1 + 1 + 5 + 5
    assert ct["otherData"]["dropped_stage_calls"] == 90
    assert _node(prof.root, "outer", "batch").calls == 50


# ---------------------------------------------------------------- CLI session


def _args(*argv):
    parser = argparse.ArgumentParser()
    prof_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_no_flag_gives_the_null_session(tmp_path):
    session = prof_cli.session_from_args(_args())
    assert not session.active
    with session.image("x.tif", shape=(4, 4)) as rep:
        rep.set_shape((4, 4))
        assert P.active_profiler() is None
    assert session.finish(tmp_path) == {} and list(tmp_path.iterdir()) == []


def _run_session(session, tmp_path, n_images=2):
    for k in range(n_images):
        with session.image(tmp_path / f"img{k}.tif", shape=(50, 40), options={"diameter": 30.0, "k": (k, 1)}):
            with P.stage("io.read"):
                np.zeros((50, 40))
            with P.stage("eval") as s:
                s.add(pixels=2000, cells=3 + k)
    return session.finish(tmp_path)


def test_profile_session_writes_json_trace_and_tables(tmp_path):
    out = io.StringIO()
    args = _args("--profile", "--profile-trace", str(tmp_path / "t.json"))
    session = prof_cli.session_from_args(args, stream=out)
    written = _run_session(session, tmp_path)
    doc = json.loads((tmp_path / "profile.json").read_text())
    assert written == {"json": tmp_path / "profile.json", "trace": tmp_path / "t.json"}
    assert validate(doc) == []
    assert [img["path"] for img in doc["images"]] == [str(tmp_path / "img0.tif"), str(tmp_path / "img1.tif")]
    assert doc["images"][1]["options"] == {"diameter": 30.0, "k": [1, 1]}
    assert doc["summary"]["images"] == 2 and doc["summary"]["pixels"] == 4000
    assert doc["summary"]["stages"]["children"][1]["calls"] == 2
    assert doc["environment"]["flags"]["profile_trace"] == str(tmp_path / "t.json")
    assert doc["environment"]["cpu_count"] >= 1 and doc["environment"]["packages"]["numpy"] == np.__version__
    text = out.getvalue()
    assert text.count("profile of ") == 2 and "run summary: 2 image(s)" in text
    assert check_trace_nesting(json.loads((tmp_path / "t.json").read_text())) == 2 * 3


def test_trace_flag_alone_writes_only_the_trace(tmp_path):
    out = io.StringIO()
    session = prof_cli.session_from_args(_args("--profile-trace", str(tmp_path / "t.json")), stream=out)
    written = _run_session(session, tmp_path, n_images=1)
    assert set(written) == {"trace"} and not (tmp_path / "profile.json").exists() and out.getvalue() == ""


def test_profile_memory_implies_profile(tmp_path):
    session = prof_cli.session_from_args(_args("--profile-memory", "tracemalloc"), stream=io.StringIO())
    assert session.active and session.memory == "tracemalloc" and session.write_json


def test_compare_prints_ratios(tmp_path, capsys):
    a = _synthetic().to_json()
    b = json.loads(json.dumps(a))
    b["summary"]["stages"]["children"][1]["wall_s"] = 2 * a["summary"]["stages"]["children"][1]["wall_s"]
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    assert prof_main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    eval_row = next(line for line in out.splitlines() if line.strip().startswith("eval"))
    assert "2.00x" in eval_row
    assert "network.batch" in out
    assert prof_main(["validate", str(tmp_path / "a.json")]) == 0


def test_cpu_generation_reads_family_and_model_from_cpuinfo(tmp_path):
    from cellpose.profiling.environment import cpu_generation, hardware, hardware_line

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
                    "model name\t: AMD EPYC\nflags\t\t: fpu avx2\n\nprocessor\t: 1\ncpu family\t: 26\n")
    assert cpu_generation(str(info)) == "family 26 model 2"
    info.write_text("processor\t: 0\nmodel name\t: ARMv8 Processor\n")
    assert cpu_generation(str(info)) is None
    assert cpu_generation(str(tmp_path / "missing")) is None
    hw = hardware()
    assert set(hw) >= {"cpu_model", "cpu_generation", "cpu_flags"}
    generation = f" {hw['cpu_generation']}" if hw["cpu_generation"] else ""
    assert hardware_line(hw).startswith(f"CPU {hw['cpu_model']}{generation} (")
