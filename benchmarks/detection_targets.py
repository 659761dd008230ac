"""Issue 11's targets checked against a detection benchmark's records (``cells.jsonl``).

For each target: the cells it covers, the screen's recall per cell (min, mean), the poison pooled
over those cells (true positives / poisons, with its Wilson 95 % interval), and whether every cell
meets the figure. Cells where the attack did not take (attack success < 0.5, the report's "took")
are listed apart for the backdoor targets: an attack that did not implant its backdoor leaves
nothing for a detector to find in the model, and its poison is still counted in the pooled figure.
The computation is :func:`poisonlab.reporting.detection_doc.targets_table` (the table of
``docs/results/detection.md``, which ``benchmarks/detection_doc.py`` writes whole).

Reproduce: ``.venv/bin/python benchmarks/detection_targets.py runs/detection-digits-heldout/cells.jsonl``
(``--seeds 1000,1001`` keeps only the seeds that finished whole).  ``--run CONFIG`` first runs (or
resumes) the grid into the folder of the cells file, on ``--executor ray`` as Ray tasks::

    .venv/bin/python benchmarks/detection_targets.py runs/detection-cifar10-heldout/cells.jsonl \
        --run experiments/detection/cifar10-heldout.yaml --executor ray --ray-address auto \
        --store /mnt/shared/poisonlab
"""

from __future__ import annotations

import argparse
from pathlib import Path

from poisonlab.reporting.detection_data import load_cells
from poisonlab.reporting.detection_doc import targets_table


def run_grid(
    config: Path, out: Path, executor: str, workers: int | None, address: str | None, store: str | None
) -> None:
    """Run (or resume) the grid of ``config`` into ``out`` with the chosen executor (issue 16)."""
    from poisonlab.experiments.detection.config import load_detection
    from poisonlab.experiments.detection.report import write_report
    from poisonlab.experiments.detection.run import run_detection
    from poisonlab.experiments.executor import make_executor, store_home

    cfg = load_detection(config)
    runner = make_executor(executor, address=address, workers=workers, store=store, progress=True)
    with runner, store_home(runner.store if store else None):
        run_detection(cfg, out, on_cell=lambda records, record: write_report(out), executor=runner)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cells", type=Path, help="a detection benchmark's cells.jsonl")
    parser.add_argument("--seeds", help="keep only these seeds, e.g. 1000,1001")
    parser.add_argument(
        "--run", type=Path, metavar="CONFIG", help="first run (or resume) this grid into the folder of CELLS"
    )
    parser.add_argument(
        "--executor", choices=("local", "ray"), default="local", help="with --run: where the cells run"
    )
    parser.add_argument("--workers", type=int, help="with --executor ray: cells at a time")
    parser.add_argument(
        "--ray-address", help="with --executor ray: auto or ray://HOST:PORT (default: a local Ray)"
    )
    parser.add_argument("--store", help="model store shared by the workers (default $POISONLAB_HOME)")
    args = parser.parse_args()
    if args.run is not None:
        run_grid(args.run, args.cells.parent, args.executor, args.workers, args.ray_address, args.store)
    rows = load_cells(args.cells)
    if args.seeds:
        keep = {int(s) for s in args.seeds.split(",")}
        rows = [r for r in rows if r["seed"] in keep]
    if not rows:
        raise SystemExit(f"no cells of seeds {args.seeds} in {args.cells}")
    print(f"{len(rows)} cells, seeds {sorted({r['seed'] for r in rows})}")
    print(targets_table(rows))


if __name__ == "__main__":
    main()
