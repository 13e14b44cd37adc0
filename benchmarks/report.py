"""Plots and the comparison table of benchmark results written by ``pytest benchmarks/``.

Usage::

    python benchmarks/report.py benchmarks/results/HOST-CPU-ISA.json [more.json ...] -o docs/img

Writes (PNG, small; needs matplotlib, an optional dependency: ``pip install 'cellpose-tb[bench]'``):

* ``bench_stages_<size>.png``: per-stage stacked bars (read, normalize, network, dynamics, write) per variant;
  a stage a variant does not change takes exact's time; CP3 from the ``UpstreamCP3`` class (random weights);
* ``bench_peak_rss.png``: memory against image size: the RSS rise during whole-image vs blockwise calls
  (``Stages.peakmem_stage``, in-process) and the process peaks of the CP3 CLI and ours in the same run;
* ``bench_throughput_accuracy.png``: full-eval Mpx/s against AP@0.5 / AP@0.9 vs exact, per variant, at the
  largest size measured.

It also prints the comparison table of all records in the files.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _results  # noqa: E402 - after the path set-up above

PARTS = ("read", "normalize", "network", "dynamics", "write")


def _title(hw: dict, records=()) -> str:
    """Hardware line; the load is the range over the records (1-min load when each was measured)."""
    loads = [r["load_average"] for r in records if "load_average" in r]
    if records and len(loads) == len(records):
        load = f"{min(loads)}-{max(loads)}" if len(set(loads)) > 1 else str(loads[0])
    else:                                   # records written before loads were recorded per record
        load = f"{(hw.get('load_average') or ['?'])[0]} at the last write"
    generation = f" {hw['cpu_generation']}" if hw.get("cpu_generation") else ""
    flags = " ".join(hw.get("cpu_flags") or []) or "-"
    return (f"{hw.get('cpu_model')}{generation} ({hw.get('cpu_count')} cores, {flags}), "
            f"load {load}, GPU {hw.get('gpu') or '-'}")


def _sizes(idx: dict) -> List[str]:
    return sorted({k[2] for k in idx if k[2]}, key=_results._pixels)


def stage_bars(idx: dict, size: str) -> list:
    """[(variant, {stage: s})] for ``size``: the variant's own stage time, else exact's."""
    variants = list(dict.fromkeys(k[1] for k in idx if k[1] and k[2] == size and k[0] == "time_stage"))
    bars = []
    for v in variants:
        seg = {st: idx.get(("time_stage", v, size, st), idx.get(("time_stage", "exact", size, st))) for st in PARTS}
        seg = {k: t for k, t in seg.items() if t is not None}
        if seg:
            bars.append((v, seg))
    cp3 = {st: idx.get(("track_cp3_seconds", "cp3", size, st)) for st in PARTS}
    if any(t is not None for t in cp3.values()):
        bars.append(("CP3 (random weights)", {k: t for k, t in cp3.items() if t is not None}))
        ours = {st: idx.get(("track_ours_seconds", "cp3", size, st)) for st in PARTS}
        bars.append(("ours in CP3 run", {k: t for k, t in ours.items() if t is not None}))
    return bars


def plot_stages(plt, idx: dict, hw: dict, out: Path) -> List[Path]:
    """One stacked-bar PNG per size."""
    from cellpose.profiling.plot import stacked_bars

    paths = []
    for size in _sizes(idx):
        bars = stage_bars(idx, size)
        if not bars:
            continue
        fig, ax = plt.subplots(figsize=(8, 1.4 + 0.32 * len(bars)), dpi=90)
        stacked_bars(ax, bars, unit="seconds (one call per stage)")
        ax.set_title(f"per-stage time, image {size}\n{hw['title']}", fontsize=8)
        paths.append(_save(plt, fig, out / f"bench_stages_{size}.png"))
    return paths


def _series(idx: dict, method: str, variant: str, stage: str, scale: float = 1.0):
    pts = sorted((_results._pixels(k[2]) / 1e6, v * scale) for k, v in idx.items()
                 if k[0] == method and k[1] == variant and k[3] == stage)
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_peak_rss(plt, idx: dict, hw: dict, out: Path) -> Optional[Path]:
    """Peak RSS against image Mpx: in-process rise (whole vs blockwise), CLI process peaks (CP3 vs ours)."""
    panels = {"in-process: RSS rise during the call (MB)": {
                  "whole image (read+eval+write)": _series(idx, "peakmem_stage.above_start", "exact", "whole", 1e-6),
                  "blockwise, serial": _series(idx, "peakmem_stage.above_start", "exact", "blockwise", 1e-6)},
              "CLI process peak RSS (MB), random weights": {
                  "CP3 (cellpose 3.1.1.3)": _series(idx, "track_cp3_peak_rss_mb", "cp3", "whole"),
                  "ours, whole image": _series(idx, "track_ours_peak_rss_mb", "cp3", "whole")}}
    if not any(xs for lines in panels.values() for xs, _ in lines.values()):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), dpi=90)
    for ax, (title, lines) in zip(axes, panels.items()):
        for label, (xs, ys) in lines.items():
            if xs:
                ax.plot(xs, ys, marker="o", label=label)
        ax.set_xlabel("image size (Mpx)")
        ax.set_title(title, fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(f"peak memory against image size; {hw['title']}", fontsize=8)
    return _save(plt, fig, out / "bench_peak_rss.png")


def plot_throughput(plt, idx: dict, hw: dict, out: Path) -> Optional[Path]:
    """Mpx/s against AP vs exact per variant, at the largest size with accuracy records."""
    sizes = [s for s in _sizes(idx) if ("track_mpx_per_s", "exact", s, None) in idx]
    if not sizes:
        return None
    size = sizes[-1]
    pts = [(k[1], v, idx.get(("track_ap50_vs_exact", k[1], size, None)),
            idx.get(("track_ap90_vs_exact", k[1], size, None)))
           for k, v in idx.items() if k[0] == "track_mpx_per_s" and k[2] == size]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=90)
    ax.scatter([p[1] for p in pts], [p[2] for p in pts], marker="o", label="AP@0.5 vs exact")
    ax.scatter([p[1] for p in pts], [p[3] for p in pts], marker="x", label="AP@0.9 vs exact")
    for k, (name, x, y, _) in enumerate(sorted(pts, key=lambda p: p[1])):
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 4 + 9 * (k % 4)), textcoords="offset points",
                    arrowprops={"arrowstyle": "-", "lw": 0.4})
    low = min([p[3] for p in pts if p[3] is not None] + [0.98])
    ax.set_ylim(low - 0.01, 1.02)
    ax.set_xlabel("throughput of the full eval (Mpx/s)")
    ax.set_ylabel("AP against the exact path")
    ax.set_title(f"throughput vs accuracy, image {size}\n{hw['title']}", fontsize=8)
    ax.legend(fontsize=7)
    return _save(plt, fig, out / "bench_throughput_accuracy.png")


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    """Print the table of the result files and write the plots; exit status 2 without matplotlib."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("-o", "--out", type=Path, default=Path("docs/img"))
    args = p.parse_args(argv)
    docs = [_results.load(f) for f in args.files]
    records = [r for d in docs for r in d["results"]]
    hw = dict(docs[-1].get("hardware", {}), title=_title(docs[-1].get("hardware", {}), records))
    print(_results.comparison_table(records, hw["title"]))
    try:
        from cellpose.profiling.plot import require_pyplot
        plt = require_pyplot()
    except ImportError as err:
        print(err, file=sys.stderr)
        return 2
    idx = _results.index(records)
    paths = plot_stages(plt, idx, hw, args.out) + [plot_peak_rss(plt, idx, hw, args.out),
                                                   plot_throughput(plt, idx, hw, args.out)]
    for path in filter(None, paths):
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
