"""Write docs/results/detection.md, whole, from the committed raw records of the detection benchmark.

    python benchmarks/detection_doc.py docs/results --cost benchmarks/results/screen_cost_cifar10.json \
        --out docs/results/detection.md

The page (the held-out targets with Wilson intervals, the cells that miss, the controls, the
mitigation, cost and earlier-status sections) is computed by
:func:`poisonlab.reporting.detection_doc.detection_markdown` from ``docs/results/detection/``
and the cost record; ``tests/reporting/test_detection_doc.py`` regenerates it and fails when the
committed page differs. ``--seeds`` counts other held-out seeds than those that finished whole.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from poisonlab.reporting.detection_data import load_sources
from poisonlab.reporting.detection_doc import COMMAND, detection_markdown
from poisonlab.reporting.results_docs import write_page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="docs/results (holds detection/)")
    parser.add_argument("--cost", type=Path, required=True, help="the screen cost record (screen_cost.py)")
    parser.add_argument("--seeds", help="held-out seeds to count, e.g. 1000,1001 (default: those finished)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    def make() -> str:
        seeds = None if not args.seeds else [int(s) for s in args.seeds.split(",")]
        return detection_markdown(load_sources(args.results, args.cost), seeds=seeds, command=COMMAND)

    return write_page(args.out, make)


if __name__ == "__main__":
    sys.exit(main())
