"""A 1,000-cell CIFAR-10 grid on N Ray nodes of 2 / 8 / 32 cores, simulated from measured costs.

Inputs (all measured on this project's 2-core machine, see BENCHMARKS.md):

* training the chapter CNN from scratch on the 40,000-image split, 2 threads, idle machine:
  ``benchmarks/results/train_cifar10.json`` (``train_wall_seconds``, 781.5 s = 13.0 min);
* the default screen over that split with the 10,000 validation images as trusted set, 2 threads:
  ``benchmarks/results/screen_cost_cifar10.json`` (``seconds_total``, 1,530 s, measured under a
  load average of 7-9, so an upper bound; docs/results/detection.md, "Cost");
* the Ray overhead per cell: 1 s, the issue's bound (``--overhead``; ``benchmarks/executor.py``
  measured milliseconds per cell beyond each worker's first task).

Model: a cell takes 2 cores (2 torch threads, as measured) for its whole cost; a node of ``c``
cores runs ``c // 2`` cells at once; cells do not slow each other (memory bandwidth and caches
ignored); a grid is waves of ``nodes x slots`` cells, after one wave of clean models (one per
seed, trained before the cells that need them).  Three cell kinds: a detection-benchmark cell
(train + scan), a matrix row with screen mitigation (train + scan + retrain), training only.

Run: ``.venv/bin/python benchmarks/scale_out_table.py`` (prints the Markdown table of
docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
NODES = (1, 4, 16, 64)
CORES = (2, 8, 32)
THREADS = 2


def costs(overhead: float = 1.0) -> dict[str, float]:
    """Seconds per cell kind and the overhead per cell, from the measured results."""
    train = json.loads((RESULTS / "train_cifar10.json").read_text())["train_wall_seconds"]
    scan = json.loads((RESULTS / "screen_cost_cifar10.json").read_text())["seconds_total"]
    return {
        "train": train,
        "scan": scan,
        "overhead": overhead,
        "detection cell (train + scan)": train + scan,
        "matrix row (train + scan + retrain)": 2 * train + scan,
        "training only": train,
    }


def grid_hours(cells: int, cell_seconds: float, nodes: int, cores: int, clean_seconds: float) -> float:
    """Wall hours of ``cells`` cells after one wave of clean models (waves of all slots)."""
    slots = nodes * (cores // THREADS)
    return (clean_seconds + math.ceil(cells / slots) * cell_seconds) / 3600


def table(kind: str, c: dict[str, float], cells: int) -> list[str]:
    """Markdown rows: nodes x cores -> cells/hour and hours for the grid."""
    seconds = c[kind] + c["overhead"]
    lines = [
        f"| nodes | {' | '.join(f'{k} cores: cells/h, grid h' for k in CORES)} |",
        "|---:|" + "---:|" * len(CORES),
    ]
    for n in NODES:
        parts = []
        for k in CORES:
            per_hour = 3600 * n * (k // THREADS) / seconds
            hours = grid_hours(cells, seconds, n, k, c["train"] + c["overhead"])
            parts.append(f"{per_hour:,.0f}, {hours:,.1f}")
        lines.append(f"| {n} | {' | '.join(parts)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--overhead", type=float, default=1.0, help="Ray overhead per cell, seconds")
    args = parser.parse_args()
    c = costs(args.overhead)
    print(
        f"per-cell inputs: train {c['train']:.0f} s, scan {c['scan']:.0f} s, "
        f"Ray overhead {c['overhead']:.2f} s (2 cores per cell)\n"
    )
    for kind in ("detection cell (train + scan)", "matrix row (train + scan + retrain)", "training only"):
        print(f"**{kind}: {c[kind]:,.0f} s per cell, {args.cells:,} cells**\n")
        print("\n".join(table(kind, c, args.cells)) + "\n")


if __name__ == "__main__":
    main()
