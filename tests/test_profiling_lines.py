"""``--profile-lines``: finding a stage's functions and line-profiling only while the stage is open."""
from __future__ import annotations

import importlib.util
import inspect
import sys
import textwrap

import pytest

import cellpose.profiling as P
from cellpose.profiling.lines import LineStageProfiler, stage_functions

PROBE = '''
from cellpose.profiling import stage, timed


def helper(n):
    total = 0
    for i in range(n):
        total += i
    return total


@timed("probe.decorated")
def decorated(n):
    value = helper(n)
    return value + 1


def opener(n):
    before = helper(3)
    with stage("probe.block"):
        inside = helper(n)
    after = helper(4)
    return before + inside + after


def unrelated(n):
    return helper(n) * 2
'''


@pytest.fixture
def probe(tmp_path):
    path = tmp_path / "prof_lines_probe.py"
    path.write_text(textwrap.dedent(PROBE))
    spec = importlib.util.spec_from_file_location("prof_lines_probe", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["prof_lines_probe"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["prof_lines_probe"]


def _line_of(fn, text: str) -> int:
    source, first = inspect.getsourcelines(fn)
    return next(first + i for i, line in enumerate(source) if text in line)


def _row(report: str, number: int) -> list:
    return next(line.split() for line in report.splitlines() if line.split()[:1] == [str(number)])


def test_stage_functions_by_decorator_and_by_with_block(probe):
    assert stage_functions("probe.decorated", [probe]) == [inspect.unwrap(probe.decorated)]
    assert stage_functions("probe.block", [probe]) == [probe.opener]
    assert stage_functions("probe.nothing", [probe]) == []


def test_callees_in_cellpose_modules_are_included():
    from cellpose.models import CellposeModel
    from cellpose.preprocess.normalize import normalize_image

    found = stage_functions("normalize")
    assert CellposeModel._prepare in found and normalize_image in found


def _profile_with(lines: LineStageProfiler, call):
    lines.prepare()
    with P.Profiler(memory="off", hooks={lines.stage: lines.hook}):
        call()
    return lines.report()


def test_decorated_stage_lines_have_hits(probe):
    lines = LineStageProfiler("probe.decorated", modules=[probe])
    report = _profile_with(lines, lambda: (probe.decorated(50), probe.decorated(5), probe.unrelated(7)))
    fn = inspect.unwrap(probe.decorated)
    assert "Function: decorated" in report and lines.calls == 2
    assert _row(report, _line_of(fn, "value = helper(n)"))[1] == "2"
    assert "Function: unrelated" not in report


def test_only_lines_inside_the_with_block_are_profiled(probe):
    lines = LineStageProfiler("probe.block", modules=[probe])
    report = _profile_with(lines, lambda: probe.opener(10))
    inside, before = _line_of(probe.opener, "inside = helper(n)"), _line_of(probe.opener, "before = helper(3)")
    assert _row(report, inside)[1] == "1" and "inside = helper(n)" in " ".join(_row(report, inside))
    assert len(_row(report, before)) <= 4, "a line before the stage was timed"


def test_report_says_when_nothing_is_found(probe):
    lines = LineStageProfiler("probe.none", modules=[probe])
    report = _profile_with(lines, lambda: probe.opener(1))
    assert "no Python function of stage 'probe.none'" in report
