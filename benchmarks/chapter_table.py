"""Collect the chapter experiments' results.json files into docs/results/chapter.md, with intervals.

    python benchmarks/chapter_table.py docs/results/chapter --out docs/results/chapter.md

The tables (figures beside the chapter text's and the notebook's, Student-t and Wilson intervals,
the differences with their intervals, the book's figures against ours) are computed by
:func:`poisonlab.reporting.chapter_doc.chapter_markdown`; ``tests/reporting/test_results_docs.py``
regenerates them from the committed JSON and fails when the page differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from poisonlab.reporting.chapter_doc import COMMAND, chapter_markdown, load_runs
from poisonlab.reporting.results_docs import write_page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="folder holding one sub-folder per experiment")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    return write_page(args.out, lambda: chapter_markdown(load_runs(args.runs), command=COMMAND))


if __name__ == "__main__":
    sys.exit(main())
