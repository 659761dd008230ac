"""Issue 11's targets checked against a detection benchmark's records (``cells.jsonl``).

For each target: the cells it covers, the screen's recall per cell (min, mean), the poison pooled
over those cells (true positives / poisons), and whether every cell meets the figure. Cells where
the attack did not take (attack success < 0.5, the report's "took") are listed apart for the
backdoor targets: an attack that did not implant its backdoor leaves nothing for a detector to
find in the model, and its poison is still counted in the pooled figure.

Reproduce: ``.venv/bin/python benchmarks/detection_targets.py runs/detection-digits-heldout/cells.jsonl``
(``--seeds 1000,1001`` keeps only the seeds that finished whole).  ``--run CONFIG`` first runs (or
resumes) the grid into the folder of the cells file, on ``--executor ray`` as Ray tasks::

    .venv/bin/python benchmarks/detection_targets.py runs/detection-cifar10-heldout/cells.jsonl \
        --run experiments/detection/cifar10-heldout.yaml --executor ray --ray-address auto \
        --store /mnt/shared/poisonlab
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

_TROJAN = {"patch", "blended", "watermark"}
_ALL = {"patch", "blended", "watermark", "warp"}
TARGETS = [
    (
        "patch, blend, Trojan watermark all-to-one, 1-10 %",
        0.99,
        _TROJAN,
        {"all_to_one"},
        (0.01, 0.1),
    ),
    ("WaNet (warp), 0.5-10 %", 0.93, {"warp"}, {"all_to_one", "all_to_all"}, (0.005, 0.1)),
    (
        "all-to-all (patch, blend, watermark, warp), 0.5-10 %",
        0.95,
        _ALL,
        {"all_to_all"},
        (0.005, 0.1),
    ),
    ("label flips of >= 10 % of a class", 0.90, {"label_flip"}, {"one_to_one"}, (0.1, 1.0)),
]


def _recall(r: dict) -> float | None:
    return (r.get("screen") or {}).get("recall")


def check(records: list[dict]) -> list[str]:
    lines = [
        "| target | figure | cells (took) | recall min / mean (cells that took) | pooled recall | met |",
        "|---|---|---|---|---|---|",
    ]
    for name, figure, families, targets, (lo, hi) in TARGETS:
        cells = [
            r
            for r in records
            if r["family"] in families and r["target"] in targets and lo <= (r["rate"] or 0) <= hi
        ]
        took = [r for r in cells if r["family"] == "label_flip" or (r["model"]["attack_success"] or 0) >= 0.5]
        rec = [_recall(r) for r in took if _recall(r) is not None]
        tp = sum(r["screen"]["true_positives"] for r in cells)
        poison = sum(r["screen"]["poison"] for r in cells)
        met = bool(rec) and min(rec) >= figure
        lines.append(
            f"| {name} | >= {figure:.2f} | {len(cells)} ({len(took)}) | "
            f"{min(rec):.2f} / {sum(rec) / len(rec):.2f} | {tp}/{poison} = {tp / max(poison, 1):.2f} | "
            f"{'yes' if met else 'no'} |"
            if rec
            else f"| {name} | >= {figure:.2f} | {len(cells)} (0) | - | {tp}/{poison} | no |"
        )
    controls = [r for r in records if r["family"] == "control"]
    fprs = [r["screen"]["fpr"] for r in controls]
    lines.append(
        f"| no-poison controls: FPR | <= 0.01 | {len(controls)} | "
        f"max {max(fprs):.4f}, mean {sum(fprs) / len(fprs):.4f} | - | "
        f"{'yes' if max(fprs) <= 0.01 else 'no'} |"
        if fprs
        else "| controls | - | 0 | - | - | - |"
    )
    return lines


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
    rows = [json.loads(line) for line in args.cells.read_text().splitlines() if line.strip()]
    if args.seeds:
        keep = {int(s) for s in args.seeds.split(",")}
        rows = [r for r in rows if r["seed"] in keep]
    print(f"{len(rows)} cells, seeds {sorted({r['seed'] for r in rows})}")
    print("\n".join(check(rows)))


if __name__ == "__main__":
    main()
