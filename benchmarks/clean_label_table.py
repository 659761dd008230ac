"""Combine clean-label benchmark runs into the tables of docs/results/clean_label.md.

Reads the ``results.json`` of each run folder (``poisonlab clean-label CONFIG --out DIR``) and
prints the Markdown tables computed by :mod:`poisonlab.reporting.clean_label_doc`: per attack
and setting the successes among the victims that trained (95 % Wilson interval), the collapsed
victims left out, the control count and the published average of the matching setting family;
the collapsed victims; the differences between settings (Newcombe intervals); the mean clean
accuracy and backdoor rates, and their paired changes over trials (t intervals); the mean
detection F1 / recall / AUROC of every defense per attack. Several folders of one setting (different seeds)
are pooled with ``--pool``.

    .venv/bin/python benchmarks/clean_label_table.py docs/results/clean_label/transfer-linear \\
        docs/results/clean_label/transfer-finetune docs/results/clean_label/scratch
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from poisonlab.experiments.clean_label.records import pool_seeds
from poisonlab.reporting.clean_label_doc import doc_tables
from poisonlab.reporting.results_docs import load_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding results.json")
    parser.add_argument("--pool", action="store_true", help="the folders are seeds of one setting: pool them")
    args = parser.parse_args(argv)
    try:
        runs = [load_json(f / "results.json") for f in args.runs]
        runs = [pool_seeds(runs)] if args.pool else runs
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for table in doc_tables(runs):
        print(table)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
