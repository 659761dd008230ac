"""Executor benchmark (issue 16): an 8-row digits matrix in-process and on a 2-worker local Ray.

Runs the same matrix twice, each in a fresh child process with its own empty model store (so
both train every model): ``--executor local`` (one cell after the other) and ``--executor ray
--workers 2``.  Records for each: the wall time of the whole run (the Ray start included, and
apart), the per-cell compute seconds and, for Ray, the per-cell overhead (task wall time at the
driver minus the seconds inside the cell; the first task on each fresh worker also imports torch
and poisonlab, reported apart), the driver's peak resident set, and a digest of the results
without their timings (equal digests: the same numbers).  Then the driver's memory against the
number of cells: 8, 64 and 512 small cells (each returns a ~2 KB record) on the same 2-worker Ray.

The targets (issue 16): Ray >= 1.7x faster than local with 2 workers on 2 cores, the same
numbers, overhead < 1 s per cell, driver memory independent of the number of cells.

Reproduce (about 6 minutes on an idle 2-core machine)::

    .venv/bin/python benchmarks/executor.py --out benchmarks/results/executor.json

``--note`` records how busy the machine was (the figures are only comparable on a quiet one).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import environment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "experiments" / "defenses" / "matrix-digits.yaml"
#: what differs between two runs of the same grid: timings and the run's own provenance (its time)
TIMINGS = {"seconds", "forward_seconds", "provenance"}
#: two more rows beside the shipped digits matrix's six: eight cells
EXTRA_ROWS = [
    {
        "name": "label-flip-1-7",
        "attack": {"kind": "label_flip", "source": "1", "target": "7", "fraction": 0.3},
    },
    {
        "name": "pattern-0-6",
        "attack": {
            "kind": "backdoor",
            "trigger": "pattern",
            "trigger_params": {"distance": 1},
            "source": "0",
            "target": "6",
        },
    },
]


def matrix_config(rows: int, epochs: int) -> dict[str, Any]:
    """The shipped digits matrix's attacks (plus two), the default screen, screen mitigation."""
    import yaml

    shipped = yaml.safe_load(SHIPPED.read_text())
    attacks = (shipped["attacks"] + EXTRA_ROWS)[:rows]
    return {
        "name": f"executor-bench-{rows}",
        "dataset": {"name": "digits"},
        "training": {"settings": {"epochs": epochs}},
        "trusted_size": shipped["trusted_size"],
        "attacks": attacks,
        "mitigation": {"defenses": "screen", "action": "drop", "oracle": False},
    }


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _digest(result: Any) -> str:
    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in TIMINGS}
        return [strip(x) for x in v] if isinstance(v, list) else v

    blob = json.dumps(strip(result.to_json()), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def child_matrix(mode: str, rows: int, epochs: int, workers: int, store: str) -> dict[str, Any]:
    """One matrix run in this (fresh) process; its figures."""
    from poisonlab.experiments.executor import make_executor
    from poisonlab.experiments.matrix import parse_matrix, run_matrix

    cfg = parse_matrix(matrix_config(rows, epochs))
    start = time.perf_counter()
    executor = make_executor(mode, workers=workers if mode == "ray" else None, store=store)
    ray_start = 0.0
    if mode == "ray":
        executor.connect()
        ray_start = time.perf_counter() - start
    result = run_matrix(cfg, device="cpu", progress=False, executor=executor)
    wall = time.perf_counter() - start
    summary = executor.last
    executor.close()
    cells = [{"key": k, "compute_seconds": c, "wall_seconds": w} for k, c, w in summary.timings]
    return {
        "mode": mode,
        "workers": workers if mode == "ray" else 1,
        "wall_seconds": wall,
        "ray_start_seconds": ray_start,
        "cells": cells,
        "driver_peak_rss_mib": _peak_rss_mib(),
        "result_digest": _digest(result),
    }


def _small_cell(i: int) -> dict[str, Any]:
    return {"cell": i, "figures": {f"detector{j}": {"f1": 0.5, "auroc": 0.9} for j in range(40)}}


def child_memory(counts: list[int], workers: int) -> list[dict[str, Any]]:
    """Driver peak RSS after 8, 64, 512 small cells on one Ray (the grid runner keeps records)."""
    from poisonlab.experiments.executor import CellTask, RayExecutor

    out = []
    with RayExecutor(workers=workers) as executor:
        executor.connect()
        for n in counts:
            kept: list[dict[str, Any]] = []
            tasks = [CellTask(f"c{i}", _small_cell, (i,)) for i in range(n)]
            start = time.perf_counter()
            executor.run(tasks, on_outcome=lambda o, kept=kept: kept.append(o.record))
            overhead = [w - c for _, c, w in executor.last.timings]
            out.append(
                {
                    "cells": n,
                    "seconds": time.perf_counter() - start,
                    "median_overhead_seconds": statistics.median(overhead),
                    "driver_peak_rss_mib": _peak_rss_mib(),
                    "kept_records_kib": len(json.dumps(kept)) / 1024,
                }
            )
    return out


def _child(args: list[str]) -> Any:
    """Run ``benchmarks/executor.py _child ...`` in a fresh interpreter; its JSON."""
    env = {**os.environ, "POISONLAB_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, __file__, "_child", *args], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _overheads(ray: dict[str, Any], workers: int) -> dict[str, Any]:
    """Per-cell overhead (wall minus compute); the first task of each worker apart."""
    over = [c["wall_seconds"] - c["compute_seconds"] for c in ray["cells"]]
    warm = over[workers:] or over
    return {
        "first_wave_seconds": over[:workers],
        "median_seconds": statistics.median(warm),
        "max_seconds": max(warm),
        "all_seconds": over,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of every model")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "executor.json")
    parser.add_argument("--note", default="", help="e.g. how loaded the machine was")
    args = parser.parse_args()
    from poisonlab.provenance import run_record

    runs = {}
    for mode in ("local", "ray"):
        with tempfile.TemporaryDirectory() as store:
            spec = [mode, str(args.rows), str(args.epochs), str(args.workers), store]
            runs[mode] = _child(["matrix", *spec])
        print(f"{mode}: {runs[mode]['wall_seconds']:.1f} s", flush=True)
    memory = _child(["memory", str(args.workers)])
    local, ray = runs["local"], runs["ray"]
    summary = {
        "speedup": local["wall_seconds"] / ray["wall_seconds"],
        "speedup_without_ray_start": local["wall_seconds"] / (ray["wall_seconds"] - ray["ray_start_seconds"]),
        "same_numbers": local["result_digest"] == ray["result_digest"],
        "ray_overhead_per_cell": _overheads(ray, args.workers),
        "driver_peak_rss_mib": {"local": local["driver_peak_rss_mib"], "ray": ray["driver_peak_rss_mib"]},
        "driver_memory_vs_cells": memory,
    }
    record = run_record(
        "benchmark",
        config=matrix_config(args.rows, args.epochs),
        extra={
            "benchmark": "executor",
            "environment": environment(),
            "note": args.note,
            **summary,
            "runs": runs,
        },
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    over = summary["ray_overhead_per_cell"]
    print(
        f"speed-up {summary['speedup']:.2f}x "
        f"({summary['speedup_without_ray_start']:.2f}x without the Ray start), "
        f"same numbers: {summary['same_numbers']}, overhead per cell median {over['median_seconds']:.3f} s "
        f"(first task per worker {', '.join(f'{s:.1f}' for s in over['first_wave_seconds'])} s); "
        f"driver peak RSS by cells: {[(m['cells'], round(m['driver_peak_rss_mib'])) for m in memory]}"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        kind, rest = sys.argv[2], sys.argv[3:]
        if kind == "matrix":
            mode, rows, epochs, workers, store = rest
            print(json.dumps(child_matrix(mode, int(rows), int(epochs), int(workers), store)))
        else:
            print(json.dumps(child_memory([8, 64, 512], int(rest[0]))))
    else:
        main()
