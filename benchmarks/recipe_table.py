"""The clean recipe chosen on the validation split: BENCHMARKS.md's table, from the runs' JSON.

Reads the records ``benchmarks/train_cifar10.py`` wrote for each candidate recipe (one per file,
``benchmarks/results/recipe_selection/*.json``) and prints the markdown table BENCHMARKS.md
quotes: per recipe its settings, the validation accuracy after the last epoch (10,000 images;
the figure the choice reads) with its Wilson 95 % interval, the same with flip test-time
augmentation, and the test accuracy read once after training (never used for the choice), then
the line naming the recipe with the best validation accuracy. ``tests/cli/test_benchmark_scripts.py``
fails when BENCHMARKS.md does not hold this output.

    .venv/bin/python benchmarks/recipe_table.py benchmarks/results/recipe_selection
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from poisonlab.reporting.results_docs import markdown_table
from poisonlab.reporting.stats import wilson_interval

DEFAULT = Path(__file__).resolve().parent / "results" / "recipe_selection"


def _settings(config: dict) -> str:
    dropout = config["model"].get("dropout") or [0.0]
    drop = "dropout 0" if not any(dropout) else "dropout " + "/".join(f"{p:g}" for p in dropout)
    return (
        f"{drop}, lr {config['lr']:g}, label smoothing {config['label_smoothing']:g}, "
        f"batch {config['batch_size']}, {config['epochs']} epochs"
    )


def _row(path: Path) -> dict:
    record = json.loads(path.read_text(encoding="utf-8"))
    (run,) = record["runs"]  # one seed per candidate
    last = run["curve"][-1]
    n_val = record["sizes"]["val"]
    return {
        "name": path.stem,
        "settings": _settings(record["config"]),
        "seed": run["seed"],
        "val": last["val_accuracy"],
        "val_ci": wilson_interval(round(last["val_accuracy"] * n_val), n_val),
        "val_tta": last["val_tta_accuracy"],
        "test": run["test_accuracy"],
    }


def table(folder: Path) -> str:
    """The markdown table and the choice line, from every ``*.json`` in ``folder``."""
    rows = sorted((_row(p) for p in sorted(folder.glob("*.json"))), key=lambda r: -r["val"])
    if not rows:
        raise ValueError(f"{folder}: no recipe records (*.json)")
    header = [
        "recipe (file)",
        "settings",
        "seed",
        "val acc (95% Wilson)",
        "val acc, flip TTA",
        "test acc (read once, not used)",
    ]
    cells = [
        [
            f"`{r['name']}`",
            r["settings"],
            r["seed"],
            f"{r['val']:.4f} ({r['val_ci'][0]:.4f}-{r['val_ci'][1]:.4f})",
            "-" if r["val_tta"] is None else f"{r['val_tta']:.4f}",
            f"{r['test']:.4f}",
        ]
        for r in rows
    ]
    lines = [markdown_table(header, cells, align=["l", "l", "r", "l", "r", "r"])]
    best, second = rows[0], rows[1] if len(rows) > 1 else None
    gap = (
        ""
        if second is None
        else f", {100 * (best['val'] - second['val']):.2f} points above `{second['name']}`"
    )
    lines += ["", f"Best validation accuracy: `{best['name']}` ({best['val']:.4f}{gap})."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT)
    args = parser.parse_args(argv)
    try:
        print(table(args.folder))
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
