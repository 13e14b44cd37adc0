"""Side-by-side per-stage comparison of our CLI and upstream cellpose 3.1.1.3 on one image and one weight file.

Each CLI runs once, in its own fresh subprocess, one after the other (ours first), on the same single-channel
nuclear uint16 TIFF written by ``python -m cellpose.data make --preset exemplar --channels nuclear`` and with
the same random full-size CPnet (``diam_mean = 17``, BatchNorm running statistics moved away from 0/1) saved
by ``cellpose.net.weights.save_weights``. Both get the same thread variables (``OMP_NUM_THREADS`` and
friends, 2 by default) and ``--diameter 17``, so neither side resizes the image.

* **Ours**: ``python -m cellpose ... --profile`` writes ``profile.json`` (per-stage wall s, CPU s, peak RSS;
  see docs/profiling.md).
* **Upstream**: this same file, run by the reference interpreter with ``--driver``, wraps upstream functions
  by name (every binding of the original function object in every loaded ``cellpose*`` module, plus a few
  class methods) with a timer that records wall s, CPU s, RSS at entry and peak RSS (a sampler thread reading
  ``/proc/self/statm`` every 5 ms, the entry and exit reads, and the rise of ``VmHWM`` during the call), then
  calls upstream's ``cellpose.__main__.main()``. Nested wrapped calls nest.

The process peak RSS of each child comes from ``os.wait4``; the total wall time is measured around the child
by this process (interpreter start, imports and model load included).

Usage::

    .venv/bin/python benchmarks/bench_upstream.py --size 3138 2509 --out results.json
    pytest benchmarks/bench_upstream.py                 # 768 x 768; CPTB_BENCH_SIZE="3138,2509" overrides
    # the bundled model on both sides, our fastest settings against upstream's default path:
    .venv/bin/python benchmarks/bench_upstream.py --weights cellpose/models/cptb_nuclei --diameter 19.49 \
        --flow-threshold 0.4 --cellprob-threshold 0 --ours-args "--preset fast --dynamics fast"

With random weights the masks mean nothing, and the defaults reflect that. The random network's cell
probability is nearly flat (median -0.371, 1st-99th percentile -0.41 to -0.356 on the 512 x 512 image), so
both sides get ``--cellprob_threshold -0.37``: 22 % of the pixels are foreground (the generator's nuclei cover
19 %), so that the dynamics have work to do. The threshold sits in the bulk of the distribution, so the
masks of the two sides can differ somewhat (likely from small numerical differences flipping pixels across it;
not verified). Both also get ``--flow_threshold 0``: the flow-error QC removes every mask of this network, so it
is switched off (no ``flow QC`` row) to leave masks to count and compare. ``--flow-threshold 0.4`` times the QC.

Both CLIs write ``<image>_seg.npy`` next to the image (upstream's, written second, replaces ours); masks go to
``ours/`` and ``upstream/`` under the work folder. Timings on a loaded machine are noisy: compare ratios of
long stages only, and B/px only at large sizes (fixed costs such as torch's and the weights dominate small
images).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_PYTHON = ROOT / ".reference" / "venv" / "bin" / "python"
PRESET_SIZE = (3138, 2509)
DIAMETER = 17.0
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "NUMBA_NUM_THREADS")

#: Comparable stages: table label -> (our stage names, upstream wrapped function names). A group's wall time
#: is the sum over the matching calls that are not nested inside another match of the same group; its peak is
#: the largest peak of those calls. Indented labels are parts of the row above them.
STAGES = {
    "read": (("io.read",), ("io.imread",)),
    "convert": (("convert",), ("transforms.convert_image",)),
    "normalize": (("normalize",), ("transforms.normalize_img",)),
    "network (tiling + avg)": (("pad", "network", "tile_average"), ("core.run_net",)),
    "  forward passes": (("network.batch",), ("core._forward",)),
    "dynamics": (("dynamics",), ("dynamics.resize_and_compute_masks", "dynamics.compute_masks")),
    "  follow_flows": (("dynamics.follow_flows",), ("dynamics.follow_flows",)),
    "  get_masks": (("dynamics.get_masks",), ("dynamics.get_masks_torch",)),
    "  flow QC": (("dynamics.flow_qc",), ("dynamics.remove_bad_flow_masks",)),
    "  fill holes": (("dynamics.fill_holes",), ("utils.fill_holes_and_remove_small_masks",)),
    "flows RGB": (("flows_rgb",), ("plot.dx_to_circ",)),
    "write outputs": (("io.write.seg_npy", "io.write.masks", "io.write.flows", "io.write.outlines"),
                      ("io.masks_flows_to_seg", "io.save_masks")),
    "eval (model.eval)": (("eval",), ("models.CellposeModel.eval",)),
}

#: Upstream functions to wrap (module path relative to ``cellpose``); missing ones are skipped and recorded.
UPSTREAM_TARGETS = (
    "io.imread", "transforms.convert_image", "transforms.normalize_img", "transforms.resize_image",
    "core.run_net", "core._forward", "dynamics.resize_and_compute_masks", "dynamics.compute_masks",
    "dynamics.follow_flows", "dynamics.get_masks_torch", "dynamics.remove_bad_flow_masks",
    "utils.fill_holes_and_remove_small_masks", "plot.dx_to_circ", "io.masks_flows_to_seg", "io.save_masks",
    "models.CellposeModel.eval", "models.CellposeModel._run_net", "models.CellposeModel._compute_masks",
)


# --------------------------------------------------------------------------------------------------------------
# Upstream side: runs inside the reference interpreter (standard library only until upstream is imported).
# --------------------------------------------------------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    """Resident set size of this process in bytes, from ``/proc/self/statm``."""
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * _PAGE


def _hwm() -> int:
    """``VmHWM`` (the process's RSS high-water mark) in bytes, from ``/proc/self/status``."""
    with open("/proc/self/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class CallRecorder:
    """Per-call timing and peak-RSS records of wrapped functions, nested by a call stack.

    Parameters
    ----------
    interval : float
        Seconds between two RSS samples of the sampler thread.
    """

    def __init__(self, interval: float = 0.005):
        self.records: list = []
        self._open: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)

    def start(self) -> None:
        """Start the sampler thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the sampler thread."""
        self._stop.set()
        self._thread.join()

    def _sample(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._raise_open_peaks(_rss())

    def _raise_open_peaks(self, rss: int) -> None:
        with self._lock:
            for rec in self._open:
                rec["peak_rss_bytes"] = max(rec["peak_rss_bytes"], rss)

    def enter(self, name: str) -> dict:
        """Open a call record of ``name`` whose parent is the innermost open call."""
        rss = _rss()
        rec = {"name": name, "parent": self._open[-1]["name"] if self._open else None,
               "index": len(self.records), "parent_index": self._open[-1]["index"] if self._open else None,
               "depth": len(self._open), "rss_entry_bytes": rss, "peak_rss_bytes": rss,
               "_hwm": _hwm(), "_t": time.perf_counter(), "_c": time.process_time()}
        with self._lock:
            self.records.append(rec)
            self._open.append(rec)
        return rec

    def exit(self, rec: dict) -> None:
        """Close ``rec``: wall and CPU time, exit RSS, and the peak (raised to ``VmHWM`` if that rose)."""
        rec["wall_s"] = time.perf_counter() - rec.pop("_t")
        rec["cpu_s"] = time.process_time() - rec.pop("_c")
        rss, hwm = _rss(), _hwm()
        self._raise_open_peaks(rss)
        with self._lock:
            self._open.remove(rec)
        rec["rss_exit_bytes"] = rss
        if hwm > rec.pop("_hwm"):
            rec["peak_rss_bytes"] = max(rec["peak_rss_bytes"], hwm)

    def wrap(self, name: str, func):
        """A wrapper of ``func`` that records each call under ``name``."""
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            rec = self.enter(name)
            try:
                return func(*args, **kwargs)
            finally:
                self.exit(rec)
        wrapper.__bench_original__ = func
        return wrapper


def _resolve(target: str):
    """The ``(owner, attribute, original)`` of an upstream target, or ``None`` if it does not exist."""
    import importlib
    parts = target.split(".")
    try:
        owner = importlib.import_module("cellpose." + parts[0])
    except ImportError:
        return None
    for part in parts[1:-1]:
        owner = getattr(owner, part, None)
    original = getattr(owner, parts[-1], None) if owner is not None else None
    return None if original is None else (owner, parts[-1], original)


def install_wrappers(recorder: CallRecorder, targets=UPSTREAM_TARGETS) -> dict:
    """Replace every binding of each target's original function by a recording wrapper.

    Module-level functions are replaced in every loaded module whose name starts with ``cellpose`` wherever
    an attribute is the original function object (this catches ``from x import f``); class methods are
    replaced on their class.

    Returns
    -------
    dict
        ``{"found": {target: [bindings replaced]}, "missing": [targets that do not exist]}``.
    """
    found, missing = {}, []
    for target in targets:
        hit = _resolve(target)
        if hit is None:
            missing.append(target)
            continue
        owner, attr, original = hit
        wrapper = recorder.wrap(target, original)
        if isinstance(owner, type):
            setattr(owner, attr, wrapper)
            found[target] = [f"{owner.__module__}.{owner.__name__}.{attr}"]
        else:
            found[target] = _rebind_everywhere(original, wrapper)
    return {"found": found, "missing": missing}


def _rebind_everywhere(original, wrapper) -> list:
    """Set every ``cellpose*`` module attribute that is ``original`` to ``wrapper``; return the bindings."""
    bound = []
    for modname, module in list(sys.modules.items()):
        if module is None or not modname.startswith("cellpose"):
            continue
        for attr, value in list(vars(module).items()):
            if value is original:
                setattr(module, attr, wrapper)
                bound.append(f"{modname}.{attr}")
    return bound


def driver_main(out_path: str, cli_args: list) -> None:
    """Run upstream's CLI with ``cli_args`` under the recording wrappers; write the records to ``out_path``."""
    repo = str(ROOT)
    sys.path[:] = [p for p in sys.path if p not in ("", ".", repo, str(ROOT / "benchmarks"))]
    import cellpose
    import cellpose.__main__ as upstream_main
    import torch
    if Path(cellpose.__file__).resolve().is_relative_to(ROOT) and ".reference" not in cellpose.__file__:
        raise RuntimeError(f"driver imported our cellpose ({cellpose.__file__}), not upstream")
    recorder = CallRecorder()
    wrapped = install_wrappers(recorder)
    sys.argv = ["python -m cellpose", *cli_args]
    rss0, t0, c0 = _rss(), time.perf_counter(), time.process_time()
    recorder.start()
    try:
        upstream_main.main()
    finally:
        recorder.stop()
    doc = {"cellpose_file": cellpose.__file__, "cellpose_version": _upstream_version(),
           "torch_version": torch.__version__, "torch_num_threads": torch.get_num_threads(),
           "torch_num_interop_threads": torch.get_num_interop_threads(),
           "thread_env": {k: os.environ[k] for k in THREAD_VARS if k in os.environ}, "argv": sys.argv,
           "wrapped": wrapped, "rss_before_main_bytes": rss0, "main_wall_s": time.perf_counter() - t0,
           "main_cpu_s": time.process_time() - c0, "vmhwm_bytes": _hwm(), "calls": recorder.records}
    Path(out_path).write_text(json.dumps(doc, indent=1))


def _upstream_version():
    try:
        from importlib.metadata import version
        return version("cellpose")
    except Exception:  # noqa: BLE001 - informative only
        return None


# --------------------------------------------------------------------------------------------------------------
# Parent side: our interpreter.
# --------------------------------------------------------------------------------------------------------------

def make_image(size, folder: Path) -> Path:
    """Write the nuclear exemplar image of ``size`` (Y, X) into ``folder`` with our generator; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "cellpose.data", "make", "--preset", "exemplar", "--channels", "nuclear",
           "--out", str(folder)]
    if tuple(size) != PRESET_SIZE:
        cmd += ["--size", str(size[0]), str(size[1])]
    subprocess.run(cmd, check=True, cwd=str(ROOT), capture_output=True, text=True)
    return folder / "exemplar_nuclear.ome.tif"


def make_weights(path: Path, seed: int = 0) -> Path:
    """Save a random full-size CPnet (diam_mean 17, perturbed BatchNorm running stats) to ``path``."""
    from cellpose.net.cpnet import random_cpnet
    from cellpose.net.weights import save_weights
    net = random_cpnet(seed=seed, diam_mean=DIAMETER)
    return save_weights(net, path)


def child_env(threads: int) -> dict:
    """The environment of both children: thread variables set to ``threads``, no ``PYTHONPATH``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({k: str(threads) for k in THREAD_VARS}, PYTHONWARNINGS="ignore")
    return env


def run_child(cmd: list, cwd: Path, env: dict, log: Path) -> dict:
    """Run ``cmd`` to completion; return its exit code, wall s, CPU s and peak RSS (``os.wait4``)."""
    with open(log, "wb") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}; log {log}:\n{log.read_text()[-3000:]}")
    return {"cmd": cmd, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_bytes": usage.ru_maxrss * 1024, "log": str(log)}


def cli_args(img: Path, weights: Path, outdir: Path, thresholds, diameter: float = DIAMETER) -> list:
    """The CLI arguments shared by both sides; ``thresholds`` is ``(flow_threshold, cellprob_threshold)``."""
    return ["--image_path", str(img), "--chan", "0", "--diameter", f"{diameter:g}", "--pretrained_model",
            str(weights), "--save_tif", "--flow_threshold", f"{thresholds[0]:g}",
            "--cellprob_threshold", f"{thresholds[1]:g}", "--savedir", str(outdir)]


def run_ours(img, weights, workdir: Path, env, thresholds, diameter: float = DIAMETER, extra=()) -> dict:
    """Our CLI with ``--profile`` (and ``extra`` arguments, e.g. a variant); returns the process measurements
    and the parsed ``profile.json``."""
    outdir = workdir / "ours"
    outdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(ROOT / ".venv" / "bin" / "python"), "-m", "cellpose",
           *cli_args(img, weights, outdir, thresholds, diameter), "--profile", *extra]
    proc = run_child(cmd, ROOT, env, workdir / "ours.log")
    proc["profile"] = json.loads((outdir / "profile.json").read_text())
    proc["masks_path"] = str(_masks_file(outdir))
    return proc


def run_upstream(img, weights, workdir: Path, env, thresholds, reference_python: Path,
                 diameter: float = DIAMETER) -> dict:
    """Upstream's CLI under the driver (cwd outside the repo, ``-I``); returns the process and call records."""
    outdir = workdir / "upstream"
    outdir.mkdir(parents=True, exist_ok=True)
    records = workdir / "upstream_calls.json"
    cmd = [str(reference_python), "-I", str(Path(__file__).resolve()), "--driver", str(records), "--",
           *cli_args(img, weights, outdir, thresholds, diameter)]
    proc = run_child(cmd, outdir, env, workdir / "upstream.log")
    proc["driver"] = json.loads(records.read_text())
    proc["masks_path"] = str(_masks_file(outdir))
    return proc


def _masks_file(outdir: Path) -> Path:
    hits = sorted(outdir.glob("*_cp_masks.tif"))
    if len(hits) != 1:
        raise RuntimeError(f"expected one *_cp_masks.tif in {outdir}, found {[h.name for h in hits]}")
    return hits[0]


# --------------------------------------------------------------------------------------------------------------
# Matching stages.
# --------------------------------------------------------------------------------------------------------------

def _our_nodes(node: dict, names, inside: bool = False):
    """Nodes of our stage tree named in ``names`` that are not inside another such node."""
    hit = node["name"] in names and not inside
    if hit:
        yield node
    for child in node.get("children", []):
        yield from _our_nodes(child, names, inside or hit)


def our_group(image: dict, names) -> dict:
    """Summed wall/CPU s, call count and max peak RSS of our stages ``names`` in one image's tree."""
    nodes = list(_our_nodes(image["stages"], set(names)))
    peaks = [n["memory"]["peak_rss_bytes"] for n in nodes if n.get("memory") and n["memory"]["peak_rss_bytes"]]
    return {"calls": sum(n["calls"] for n in nodes), "wall_s": sum(n["wall_s"] for n in nodes),
            "cpu_s": sum(n["cpu_s"] for n in nodes), "peak_rss_bytes": max(peaks) if peaks else None}


def upstream_group(calls: list, names) -> dict:
    """Summed wall/CPU s, call count and max peak RSS of upstream calls ``names`` not nested in one another."""
    names, by_index = set(names), {c["index"]: c for c in calls}

    def nested(c):
        p = c["parent_index"]
        while p is not None:
            if by_index[p]["name"] in names:
                return True
            p = by_index[p]["parent_index"]
        return False

    sel = [c for c in calls if c["name"] in names and not nested(c)]
    return {"calls": len(sel), "wall_s": sum(c["wall_s"] for c in sel), "cpu_s": sum(c["cpu_s"] for c in sel),
            "peak_rss_bytes": max((c["peak_rss_bytes"] for c in sel), default=None)}


def our_baseline(image: dict):
    """Our RSS right before the image was read (entry RSS of ``io.read``, else the image's baseline)."""
    for node in _our_nodes(image["stages"], {"io.read"}):
        if node.get("memory") and node["memory"].get("rss_before_bytes"):
            return node["memory"]["rss_before_bytes"]
    return image.get("baseline_rss_bytes")


def upstream_baseline(calls: list):
    """Upstream's RSS at entry of its first ``io.imread`` call."""
    return next((c["rss_entry_bytes"] for c in calls if c["name"] == "io.imread"), None)


def compare(ours: dict, upstream: dict, pixels: int) -> list:
    """One row per comparable stage (``STAGES``) plus the process totals."""
    image = ours["profile"]["images"][0]
    calls = upstream["driver"]["calls"]
    base_o, base_u = our_baseline(image), upstream_baseline(calls)
    rows = []
    for label, (our_names, up_names) in STAGES.items():
        o, u = our_group(image, our_names), upstream_group(calls, up_names)
        rows.append(_row(label, o, u, base_o, base_u, pixels))
    rows.append(_row("total (process)", ours, upstream, base_o, base_u, pixels))
    return rows


def _row(label, o, u, base_o, base_u, pixels) -> dict:
    def bpx(peak, base):
        return None if peak is None or base is None else (peak - base) / pixels
    ratio = u["wall_s"] / o["wall_s"] if o.get("calls", 1) and u.get("calls", 1) and o["wall_s"] > 0 else None
    return {"stage": label, "ours_calls": o.get("calls"), "upstream_calls": u.get("calls"),
            "ours_wall_s": o["wall_s"], "upstream_wall_s": u["wall_s"], "ratio_upstream_over_ours": ratio,
            "ours_cpu_s": o["cpu_s"], "upstream_cpu_s": u["cpu_s"],
            "ours_peak_rss_bytes": o["peak_rss_bytes"], "upstream_peak_rss_bytes": u["peak_rss_bytes"],
            "ours_b_per_px": bpx(o["peak_rss_bytes"], base_o), "upstream_b_per_px": bpx(u["peak_rss_bytes"], base_u)}


def mask_agreement(ours: dict, upstream: dict) -> dict:
    """Mask counts of both sides and AP at IoU 0.5 / 0.75 / 0.9 (upstream taken as the reference)."""
    import tifffile

    from cellpose.metrics import average_precision
    mo, mu = tifffile.imread(ours["masks_path"]), tifffile.imread(upstream["masks_path"])
    res = average_precision(mu, mo, thresholds=(0.5, 0.75, 0.9))
    return {"shape_ours": list(mo.shape), "shape_upstream": list(mu.shape), "n_ours": int(res["n_pred"]),
            "n_upstream": int(res["n_true"]), "ap": [float(a) for a in res["ap"]], "thresholds": [0.5, 0.75, 0.9],
            "identical": bool(mo.shape == mu.shape and (mo == mu).all())}


# --------------------------------------------------------------------------------------------------------------
# Printing.
# --------------------------------------------------------------------------------------------------------------

def _f(x, fmt):
    return "-" if x is None else format(x, fmt)


def format_table(rows: list) -> str:
    """The side-by-side table as text."""
    head = (f"{'stage':<24}{'ours s':>9}{'upst s':>9}{'up/ours':>8}{'ours MB':>9}{'upst MB':>9}"
            f"{'ours B/px':>10}{'upst B/px':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        none_o, none_u = r["ours_calls"] == 0, r["upstream_calls"] == 0
        lines.append(
            f"{r['stage']:<24}{'-' if none_o else _f(r['ours_wall_s'], '.3f'):>9}"
            f"{'-' if none_u else _f(r['upstream_wall_s'], '.3f'):>9}"
            f"{'-' if none_o or none_u else _f(r['ratio_upstream_over_ours'], '.2f'):>8}"
            f"{_f(_mb(r['ours_peak_rss_bytes']), '.0f'):>9}{_f(_mb(r['upstream_peak_rss_bytes']), '.0f'):>9}"
            f"{_f(r['ours_b_per_px'], '.1f'):>10}{_f(r['upstream_b_per_px'], '.1f'):>10}")
    return "\n".join(lines)


def _mb(b):
    return None if b is None else b / 1e6


def format_upstream_calls(calls: list) -> str:
    """Upstream's wrapped calls aggregated by nesting path (calls, wall s, CPU s, peak MB)."""
    by_index, agg = {c["index"]: c for c in calls}, {}
    for c in calls:
        path, p = [c["name"]], c["parent_index"]
        while p is not None:
            path.insert(0, by_index[p]["name"])
            p = by_index[p]["parent_index"]
        a = agg.setdefault(tuple(path), [0, 0.0, 0.0, 0])
        a[0], a[1], a[2], a[3] = a[0] + 1, a[1] + c["wall_s"], a[2] + c["cpu_s"], max(a[3], c["peak_rss_bytes"])
    lines = [f"{'upstream call path':<56}{'calls':>6}{'wall s':>9}{'CPU s':>9}{'peak MB':>9}"]
    for path, (n, w, cpu, peak) in agg.items():
        lines.append(f"{'  ' * (len(path) - 1) + path[-1]:<56}{n:>6}{w:>9.3f}{cpu:>9.3f}{peak / 1e6:>9.0f}")
    return "\n".join(lines)


def _weights_text(result: dict) -> str:
    name = Path(result["weights"]).name
    if name.startswith("random_cpnet"):
        return "random CPnet, diam_mean 17 (random weights: masks are not meaningful)"
    return name


def report_text(result: dict) -> str:
    """Everything printed after a run."""
    m, up, env = result["masks"], result["upstream"]["driver"], result["threads"]
    size = result["size"]
    return "\n".join([
        f"image {size[0]} x {size[1]} (Y x X) = {result['pixels']} px; weights: {_weights_text(result)}; "
        f"--diameter {result.get('diameter', DIAMETER):g} --flow_threshold {result['flow_threshold']:g} "
        f"--cellprob_threshold {result['cellprob_threshold']:g}; ours also: {' '.join(result.get('ours_args', []))}",
        f"threads: env {env['env']}; torch ours {env['torch_ours']}, upstream {env['torch_upstream']}",
        f"baseline RSS before read: ours {_f(_mb(result['baseline_rss_bytes']['ours']), '.0f')} MB, "
        f"upstream {_f(_mb(result['baseline_rss_bytes']['upstream']), '.0f')} MB",
        "", format_table(result["rows"]), "",
        f"masks: ours {m['n_ours']}, upstream {m['n_upstream']}; AP@0.5 {m['ap'][0]:.3f}, "
        f"AP@0.75 {m['ap'][1]:.3f}, AP@0.9 {m['ap'][2]:.3f}; identical: {m['identical']}",
        f"upstream wrapped: {', '.join(up['wrapped']['found'])}",
        f"upstream not found: {', '.join(up['wrapped']['missing']) or 'none'}", "",
        format_upstream_calls(up["calls"]),
    ])


# --------------------------------------------------------------------------------------------------------------
# Entry points.
# --------------------------------------------------------------------------------------------------------------

def run_benchmark(size, workdir: Path, *, threads: int = 2, flow_threshold: float = 0.0,
                  cellprob_threshold: float = -0.37, reference_python: Path = REFERENCE_PYTHON,
                  weights: Path = None, diameter: float = DIAMETER, ours_args=()) -> dict:
    """Make the image and weights, run ours then upstream, and compare.

    Parameters
    ----------
    size : (int, int)
        Image size (Y, X); ``(3138, 2509)`` is the exemplar preset itself.
    workdir : Path
        Folder for the image, weights, outputs and logs (must be outside the repository root for upstream's
        outputs to be unambiguous; any folder works).
    threads : int
        Value of ``OMP_NUM_THREADS`` and the other thread variables of both children.
    flow_threshold : float
        ``--flow_threshold`` of both CLIs (0 switches the flow-error QC off).
    cellprob_threshold : float
        ``--cellprob_threshold`` of both CLIs.
    reference_python : Path
        The upstream interpreter.
    weights : Path, optional
        A CPnet weight file both sides load (e.g. the bundled ``cellpose/models/cptb_nuclei``); default a
        random CPnet with ``diam_mean`` 17.
    diameter : float
        ``--diameter`` of both CLIs.
    ours_args : sequence of str
        Extra arguments for our CLI only (``--preset fast --dynamics fast`` times our fastest settings
        against upstream's default path).

    Returns
    -------
    dict
        ``rows`` (the table), ``masks``, ``ours`` and ``upstream`` (raw measurements), settings.
    """
    workdir = Path(workdir)
    img = make_image(size, workdir / "image")
    weights = Path(weights).resolve() if weights else make_weights(workdir / "random_cpnet_d17")
    env = child_env(threads)
    thresholds = (flow_threshold, cellprob_threshold)
    ours = run_ours(img, weights, workdir, env, thresholds, diameter, tuple(ours_args))
    upstream = run_upstream(img, weights, workdir, env, thresholds, reference_python, diameter)
    pixels = int(size[0]) * int(size[1])
    image = ours["profile"]["images"][0]
    return {
        "size": list(size), "pixels": pixels, "image": str(img), "weights": str(weights),
        "flow_threshold": flow_threshold, "cellprob_threshold": cellprob_threshold, "diameter": diameter,
        "ours_args": list(ours_args),
        "stage_map": {k: {"ours": v[0], "upstream": v[1]} for k, v in STAGES.items()},
        "threads": {"env": {k: env[k] for k in THREAD_VARS},
                    "torch_ours": (ours["profile"]["environment"].get("torch") or {}).get("num_threads"),
                    "torch_upstream": upstream["driver"]["torch_num_threads"]},
        "baseline_rss_bytes": {"ours": our_baseline(image), "upstream": upstream_baseline(upstream["driver"]["calls"])},
        "rows": compare(ours, upstream, pixels), "masks": mask_agreement(ours, upstream),
        "ours": ours, "upstream": upstream,
    }


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", nargs=2, type=int, metavar=("Y", "X"), default=list(PRESET_SIZE))
    p.add_argument("--out", type=Path, help="write the results JSON here")
    p.add_argument("--workdir", type=Path, help="keep image, weights and outputs here (default: a temp dir)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--flow-threshold", type=float, default=0.0, help="0 (default) switches the flow QC off")
    p.add_argument("--cellprob-threshold", type=float, default=-0.37)
    p.add_argument("--reference-python", type=Path, default=REFERENCE_PYTHON)
    p.add_argument("--weights", type=Path, help="weight file for both sides (default: a random CPnet)")
    p.add_argument("--diameter", type=float, default=DIAMETER, help="--diameter of both CLIs")
    p.add_argument("--ours-args", default="", help="extra arguments for our CLI only, e.g. '--preset fast'")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """Script entry: run the comparison, print the tables, optionally write ``--out``."""
    args = _parse(argv)
    with tempfile.TemporaryDirectory(prefix="cptb_bench_upstream_") as tmp:
        result = run_benchmark(args.size, args.workdir or Path(tmp), threads=args.threads,
                               flow_threshold=args.flow_threshold, cellprob_threshold=args.cellprob_threshold,
                               reference_python=args.reference_python, weights=args.weights,
                               diameter=args.diameter, ours_args=args.ours_args.split())
    print(report_text(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
        print(f"\nwrote {args.out}")
    return result


def test_bench_upstream(tmp_path):
    """Run the comparison at a small size (``CPTB_BENCH_SIZE``, default 768,768); assert both ran."""
    import pytest
    if not REFERENCE_PYTHON.exists():
        pytest.skip(f"reference env missing ({REFERENCE_PYTHON})")
    size = tuple(int(v) for v in os.environ.get("CPTB_BENCH_SIZE", "768,768").split(","))
    result = run_benchmark(size, tmp_path)
    print("\n" + report_text(result))
    (tmp_path / "results.json").write_text(json.dumps(result, indent=1))
    m = result["masks"]
    assert m["shape_ours"] == list(size) and m["shape_upstream"] == list(size)
    assert result["ours"]["profile"]["images"][0]["stages"]["children"]
    assert result["upstream"]["driver"]["calls"]
    assert any(r["ours_calls"] and r["upstream_calls"] for r in result["rows"][:-1])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--driver":
        driver_main(sys.argv[2], sys.argv[sys.argv.index("--") + 1:])
    else:
        main()
