"""Results of the asv classes as run by the pytest adapter: records, the comparison table, the JSON file.

A record is ``{"benchmark": "Class.method", "params": {name: value}, "value": float, "unit": str}``. The JSON
file ``benchmarks/results/<host>-<cpu>-<isa>.json`` holds ``{"hardware": {...}, "results": [records]}``; a new run
replaces the records with the same benchmark and parameters and keeps the others (so runs at several sizes
accumulate for the plots of ``benchmarks/report.py``).
"""
from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional

__all__ = ["comparison_table", "isa_tag", "load", "merge", "results_path", "write"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ISA_TAGS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")
STAGE_ORDER = ("read", "normalize", "network", "dynamics", "write", "whole", "blockwise")


def results_path(hardware: dict, folder: Path = RESULTS_DIR) -> Path:
    """``folder/<hostname>-<cpu model>[-f<family>m<model>]-<widest ISA>.json``, unsafe characters as ``-``.

    The ISA tag (``isa_tag``) keeps apart CPUs that report the same model name: "AMD EPYC" machines with and
    without AVX-512 once wrote into one file. The generation tag (``cpu_generation``, when known) keeps apart
    those with the same name and flags: AMD EPYCs of family 25 and 26 both report "AMD EPYC" with
    avx512_bf16. Files written before it have no generation tag. A run under ``ONEDNN_MAX_CPU_ISA`` adds
    ``-cap-<value>``: its flags are the capped ones, and it must not replace a real CPU's records.
    """
    cap = f"-cap-{hardware['isa_cap']}" if hardware.get("isa_cap") else ""
    gen = re.fullmatch(r"family (\d+) model (\d+)", hardware.get("cpu_generation") or "")
    gen_tag = f"-f{gen[1]}m{gen[2]}" if gen else ""
    text = f"{socket.gethostname()}-{hardware.get('cpu_model') or 'cpu'}{gen_tag}-{isa_tag(hardware)}{cap}".lower()
    return folder / (re.sub(r"[^a-z0-9_.]+", "-", text).strip("-") + ".json")


def isa_tag(hardware: dict) -> str:
    """The widest of amx_bf16, avx512_bf16, avx512f, avx2 in ``hardware["cpu_flags"]``, else ``"base"``."""
    flags = set(hardware.get("cpu_flags") or ())
    return next((flag for flag in ISA_TAGS if flag in flags), "base")


def _key(rec: dict) -> str:
    return json.dumps([rec["benchmark"], rec["params"]], sort_keys=True)


def merge(old: Iterable[dict], new: Iterable[dict]) -> List[dict]:
    """Records of ``old`` not re-measured in ``new``, then ``new``."""
    new = list(new)
    fresh = {_key(r) for r in new}
    return [r for r in old if _key(r) not in fresh] + new


def load(path: Path) -> dict:
    """The JSON document at ``path`` (``{"hardware": {}, "results": []}`` when it does not exist)."""
    if not Path(path).exists():
        return {"hardware": {}, "results": []}
    return json.loads(Path(path).read_text())


def write(path: Path, hardware: dict, records: List[dict]) -> Path:
    """Merge ``records`` into the file at ``path`` and stamp it with ``hardware`` and the time."""
    doc = load(path)
    doc.update(hardware=hardware, written=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               results=merge(doc.get("results", []), records))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=1, sort_keys=True))
    return Path(path)


def index(records: Iterable[dict]) -> Dict[tuple, float]:
    """``{(method, variant, size, stage): value}``; CP3 records get variant ``"cp3"``."""
    out = {}
    for r in records:
        p = r["params"]
        variant = p.get("variant", "cp3" if r["benchmark"].startswith("UpstreamCP3") else None)
        out[(r["benchmark"].split(".", 1)[-1], variant, p.get("size"), p.get("stage"))] = r["value"]
    return out


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ratio(value: Optional[float], ref: Optional[float]) -> Optional[float]:
    return None if value is None or not ref else value / ref


def _stage_rows(idx: dict, size: str, variants: List[str]) -> List[str]:
    head = (f"{'variant':<14} {'stage':<10} {'time s':>9} {'vs exact':>8} {'peak RSS MB':>11} {'+MB':>7} "
            f"{'+B/px':>7} {'Mpx/s':>8}")
    lines, px = [head], _pixels(size)
    for v in variants:
        for st in STAGE_ORDER:
            t = idx.get(("time_stage", v, size, st), idx.get(("track_cp3_seconds", v, size, st)))
            if t is None:
                continue
            ref = idx.get(("time_stage", "exact", size, st)) if v != "cp3" else idx.get(
                ("track_ours_seconds", "cp3", size, st))
            mem = idx.get(("peakmem_stage", v, size, st), idx.get(("track_cp3_peak_rss_mb", v, size, st), 0) * 1e6)
            above = idx.get(("peakmem_stage.above_start", v, size, st))
            lines.append(f"{v:<14} {st:<10} {t:>9.3f} {_fmt(_ratio(t, ref), '.2f'):>8} "
                         f"{_fmt(mem / 1e6 if mem else None, '.0f'):>11} {_fmt(_scaled(above, 1e-6), '.0f'):>7} "
                         f"{_fmt(_scaled(above, 1 / px), '.1f'):>7} {px / 1e6 / t if t else 0:>8.3f}")
    return lines


def _accuracy_rows(idx: dict, size: str, variants: List[str]) -> List[str]:
    head = f"{'variant':<14} {'AP@0.5':>7} {'AP@0.9':>7} {'cells':>6} {'Mpx/s':>8} {'cells/s':>8} {'vs exact':>8}"
    lines, ref = [head], idx.get(("track_mpx_per_s", "exact", size, None))
    cp3 = next((val for k, val in idx.items() if k[:3] == ("track_ap50_ours_vs_cp3", "cp3", size)), None)
    if cp3 is not None:
        lines.append(f"{'cp3':<14} {cp3:>7.3f}  (AP@0.5 of ours vs CP3: same random weights, not the model)")
    for v in variants:
        get = (lambda m: idx.get((m, v, size, None)))  # noqa: E731 - short local accessor
        if get("track_ap50_vs_exact") is None:
            continue
        lines.append(f"{v:<14} {get('track_ap50_vs_exact'):>7.3f} {get('track_ap90_vs_exact'):>7.3f} "
                     f"{int(get('track_cells')):>6} {get('track_mpx_per_s'):>8.3f} {get('track_cells_per_s'):>8.1f} "
                     f"{_fmt(_ratio(get('track_mpx_per_s'), ref), '.2f'):>8}")
    return lines if len(lines) > 1 else []


def _scaled(value: Optional[float], factor: float) -> Optional[float]:
    return None if value is None else value * factor


def _pixels(size: str) -> int:
    y, x = (int(v) for v in size.split("x"))
    return y * x


def comparison_table(records: List[dict], hardware_text: str) -> str:
    """Per size: variant × stage (time, ratio vs exact, peak RSS, its rise above the call's start in MB and
    bytes per image pixel) and per variant accuracy vs exact."""
    idx = index(records)
    sizes = sorted({k[2] for k in idx if k[2]}, key=_pixels)
    variants = list(dict.fromkeys(k[1] for k in idx if k[1]))
    out = [hardware_text]
    for size in sizes:
        stages = _stage_rows(idx, size, variants)
        if len(stages) > 1:
            out += ["", f"== image {size}: stages (best call; 'vs exact' = time / exact's time; CP3 row: "
                        f"upstream / ours in the same run, random weights) =="] + stages
        accuracy = _accuracy_rows(idx, size, variants)
        if accuracy:
            out += ["", f"== image {size}: masks against the exact path, full eval throughput =="] + accuracy
    return "\n".join(out)
