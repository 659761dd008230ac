"""Write docs/results/defenses.md, whole, from the committed records of the attacks x defenses matrices.

    python benchmarks/defenses_doc.py docs/results --dev-case benchmarks/results/defenses.json \
        --configs experiments/defenses --out docs/results/defenses.md

The page (protocol, caveats, the scaled CIFAR-10 matrix with its tables and reading, the
embedded-digits matrix) is computed by :func:`poisonlab.reporting.defenses_doc.defenses_markdown`
from ``docs/results/defenses/{cifar10,digits}/matrix.json``, the full-size development case of
activation clustering and spectral signatures and today's matrix configs;
``tests/reporting/test_defenses_doc.py`` regenerates it and fails when the committed page differs.
A missing or malformed file prints an ``error:`` line and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from poisonlab.reporting.defenses_data import load_sources
from poisonlab.reporting.defenses_doc import COMMAND, defenses_markdown
from poisonlab.reporting.results_docs import write_page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="docs/results (holds defenses/)")
    parser.add_argument("--dev-case", type=Path, required=True, help="benchmarks/results/defenses.json")
    parser.add_argument("--configs", type=Path, help="folder of today's matrix-{cifar10,digits}.yaml")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    return write_page(
        args.out,
        lambda: defenses_markdown(load_sources(args.results, args.dev_case, args.configs), command=COMMAND),
    )


if __name__ == "__main__":
    sys.exit(main())
