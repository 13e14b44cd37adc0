"""Benchmark: blockwise vs whole-image segmentation, peak RSS of the whole process tree against image size.

``pytest benchmarks/bench_blockwise.py`` writes a 1536 x 1536 nuclear plane and runs, one after the other, the
whole-image CLI and the blockwise CLI (``--block_size 768 --workers 2``), printing wall time, the peak RSS of
the process tree (driver, Dask scheduler and worker processes summed, sampled every 0.2 s), cell counts and
AP of blockwise against whole-image. Environment variables select larger runs:

* ``CPTB_BENCH_IMAGES=a.ome.tif,b.ome.tif``: blockwise on each file (e.g. the ``exemplar``, ``lung`` and ``wd``
  presets from ``python -m cellpose.data make --preset P --channels nuclear``), default block size;
* ``CPTB_BENCH_WHOLE=1``: also whole-image on each of those files (only where it fits in memory);
* ``CPTB_BENCH_STRIP=ROWS``: instead of the whole file, a full-width strip of ROWS rows (through the API on a
  dask array), with the whole-slide time projected as ``strip time x rows / ROWS``;
* ``CPTB_BENCH_WORKERS`` (default 2) and ``CPTB_BENCH_BLOCK`` (default: from the diameter);
* ``CPTB_BENCH_DIAMETER``: ``--diameter`` of both file runs (default: the bundled model's own, so that neither
  run spends time estimating it and both segment at the same scale);
* ``CPTB_BENCH_PRESET`` (``exact``/``fast``) and ``CPTB_BENCH_DYNAMICS`` (``exact``/``fast``), every run.

The hardware line (CPU model and flags, cores, versions, load) is printed with the numbers. Nothing about time or
memory is asserted.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import tifffile

from cellpose.data import make_image
from cellpose.profiling.environment import hardware, hardware_line

_STRIP = """
import sys, tifffile, zarr, dask.array as da
from distributed import Client, LocalCluster
from cellpose.models import CellposeModel
from cellpose.blockwise.segment import run
path, rows, workers, block, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
preset, dynamics = sys.argv[6], sys.argv[7]
arr = da.from_zarr(zarr.open(tifffile.imread(path, aszarr=True), mode="r"))
arr = arr[..., :rows, :] if arr.ndim == 2 else arr[0, :rows, :]
strip = out + ".input.zarr"
arr.rechunk((1024, 1024)).to_zarr(strip, overwrite=True, compute=True)  # a picklable, path-based source
model = CellposeModel(pretrained_model="cptb_nuclei", preset=preset)
from cellpose.config import DynamicsOptions, EvalOptions
options = EvalOptions(dynamics=DynamicsOptions(impl=dynamics))
with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None, memory_limit=0) as c, \
        Client(c) as cl:
    r = run(strip, model, chan=0, out=out, client=cl, block_size=int(block) if block != "0" else None, progress=False,
            options=options)
secs = sorted(b["seconds"] for b in r.blocks)
print("cells", r.cells, "blocks", len(r.blocks), "shape", r.plan.shape, "variant", r.plan.variant, "dynamics", dynamics,
      "block s", [round(s, 1) for s in secs], "worker peak MB", max(b["peak_rss_mb"] for b in r.blocks))
"""


def tree_rss(proc: psutil.Process) -> int:
    """RSS of a process and all its descendants, in bytes."""
    total = 0
    for p in [proc] + proc.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_tree(args, *, cwd=None) -> dict:
    """Run ``python args``; wall time and the peak summed RSS of its process tree."""
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        peak = max(peak, tree_rss(proc))
        time.sleep(0.2)
    out, err = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{err.decode()[-3000:]}")
    return {"wall_s": time.perf_counter() - t0, "peak_tree_mb": peak / 1e6, "stdout": out.decode()}


def _diameter() -> str:
    """``--diameter`` of both runs: ``CPTB_BENCH_DIAMETER``, else the bundled model's own (no estimate, so both
    runs segment at the same scale)."""
    from cellpose.models import CellposeModel

    return os.environ.get("CPTB_BENCH_DIAMETER") or repr(CellposeModel(pretrained_model="cptb_nuclei").diam_labels)


def _variant_args() -> list:
    """``--preset`` / ``--dynamics`` from ``CPTB_BENCH_PRESET`` / ``CPTB_BENCH_DYNAMICS`` (default: exact)."""
    return ["--preset", os.environ.get("CPTB_BENCH_PRESET", "exact"),
            "--dynamics", os.environ.get("CPTB_BENCH_DYNAMICS", "exact")]


def _blockwise_args(img: Path, workers: int, block: str) -> list:
    args = ["-m", "cellpose", "--image_path", str(img), "--chan", "1", "--blockwise", "--workers", str(workers),
            "--profile", "--diameter", _diameter(), *_variant_args()]
    return args + (["--block_size", block] if block != "0" else [])


def _whole_args(img: Path) -> list:
    return ["-m", "cellpose", "--image_path", str(img), "--chan", "1", "--save_tif", "--no_npy", "--no_blockwise",
            "--diameter", _diameter(), *_variant_args()]


def _report(name: str, res: dict) -> None:
    print(f"{name}: wall {res['wall_s']:.1f} s, peak RSS of the process tree {res['peak_tree_mb']:.0f} MB")


def _strip(img: Path, rows: int, workers: int, block: str, out: Path) -> dict:
    preset = os.environ.get("CPTB_BENCH_PRESET", "exact")
    dynamics = os.environ.get("CPTB_BENCH_DYNAMICS", "exact")
    res = run_tree(["-c", _STRIP, str(img), str(rows), str(workers), block, str(out), preset, dynamics])
    with tifffile.TiffFile(img) as tif:
        height = tif.series[0].shape[-2]
    res["projected_whole_s"] = res["wall_s"] * height / rows
    return res


def test_blockwise_vs_whole_image(tmp_path):
    print(f"\n{hardware_line(hardware())}")
    workers = int(os.environ.get("CPTB_BENCH_WORKERS", "2"))
    block = os.environ.get("CPTB_BENCH_BLOCK", "0")
    files = [Path(p) for p in os.environ.get("CPTB_BENCH_IMAGES", "").split(",") if p]
    if not files:
        img, _ = make_image((1, 1536, 1536), seed=12)
        files = [tmp_path / "small.ome.tif"]
        tifffile.imwrite(files[0], img, ome=True, tile=(256, 256), compression="zlib", metadata={"axes": "CYX"})
        block = "768" if block == "0" else block
        os.environ.setdefault("CPTB_BENCH_WHOLE", "1")
    for img in files:
        _bench_one(img, tmp_path, workers=workers, block=block)


def _bench_one(img: Path, tmp: Path, *, workers: int, block: str) -> None:
    rows = int(os.environ.get("CPTB_BENCH_STRIP", "0"))
    with tifffile.TiffFile(img) as tif:
        shape = tif.series[0].shape[-2:]
    print(f"{img.name}: {shape[0]} x {shape[1]} ({shape[0] * shape[1] / 1e6:.1f} Mpx), {workers} workers")
    if rows:
        res = _strip(img, rows, workers, block, tmp / f"{img.stem}_strip.ome.zarr")
        _report(f"  blockwise, full-width strip of {rows} rows", res)
        print(f"  projected whole-slide wall time {res['projected_whole_s'] / 3600:.2f} h ({res['stdout'].strip()})")
        return
    local = tmp / img.name
    if not local.exists():
        os.symlink(img.resolve(), local)
    blockwise = run_tree(_blockwise_args(local, workers, block))
    _report("  blockwise", blockwise)
    _per_block(local.parent / "profile.json")
    if os.environ.get("CPTB_BENCH_WHOLE") == "1":
        whole = run_tree(_whole_args(local))
        _report("  whole-image", whole)
        print(f"  blockwise / whole-image wall time: {blockwise['wall_s'] / whole['wall_s']:.3f}")
        _compare(local)


def _per_block(profile: Path) -> None:
    """Per-block rows and the estimate against the measurement, from the run's profile.json."""
    import json

    info = json.loads(profile.read_text())["images"][0]["blockwise"]
    rows = info["blocks"]
    secs = sorted(r["seconds"] for r in rows if not r["skipped"])
    print(f"  {len(rows)} blocks of {info['block']} px (halo {info['halo']}), {info['skipped_blocks']} skipped, "
          f"{info['cells']} cells; block seconds median {np.median(secs) if secs else float('nan'):.1f}; "
          f"worker peak RSS max {info['measured_peak_worker_mb']:.0f} MB; estimate: worker "
          f"{info['estimate']['peak_worker_mb']:.0f} MB, total {info['estimate']['peak_total_mb']:.0f} MB, "
          f"{info['estimate']['seconds']:.0f} s")


def _compare(img: Path) -> None:
    from cellpose.io.ngff import open_label_level
    from cellpose.metrics import average_precision

    stem = img.name.split(".")[0]
    blocks = np.asarray(open_label_level(img.with_name(stem + "_cp_masks.ome.zarr"), 0)[:]).astype(np.int64)
    whole = tifffile.imread(next(img.parent.glob(stem + "*_cp_masks.tif"))).astype(np.int64)
    ap = average_precision(whole, blocks, thresholds=(0.5, 0.9))["ap"]
    print(f"  cells whole {whole.max()}, blockwise {blocks.max()}; AP@0.5 {ap[0]:.4f}, AP@0.9 {ap[1]:.4f} vs whole")
    assert blocks.max() > 0
