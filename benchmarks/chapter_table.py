"""Collect the chapter experiments' results.json files into docs/results/chapter.md, with intervals.

    python benchmarks/chapter_table.py docs/results/chapter \
        --recalibration benchmarks/results/bn_recalibration.json --out docs/results/chapter.md

The tables (figures beside the chapter text's and the notebook's, Student-t and Wilson intervals,
the differences with their intervals, the book's figures against ours) are computed by
:func:`poisonlab.reporting.chapter_doc.chapter_markdown`; ``tests/reporting/test_results_docs.py``
regenerates them from the committed JSON and fails when the page differs. ``--recalibration``
(``benchmarks/bn_recalibration.py``'s record) adds the note on the clean models trained at
training revision 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from poisonlab.reporting.chapter_doc import COMMAND, chapter_markdown, load_runs
from poisonlab.reporting.chapter_revision import load_recalibration
from poisonlab.reporting.results_docs import write_page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="folder holding one sub-folder per experiment")
    parser.add_argument("--recalibration", type=Path, help="benchmarks/results/bn_recalibration.json")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    def page() -> str:
        recalibration = None if args.recalibration is None else load_recalibration(args.recalibration)
        return chapter_markdown(load_runs(args.runs), command=COMMAND, recalibration=recalibration)

    return write_page(args.out, page)


if __name__ == "__main__":
    sys.exit(main())
