"""Write docs/results/service.md, the whole page, from the committed red-team campaigns and benchmark.

    python benchmarks/service_doc.py docs/results --ratelimit benchmarks/results/ratelimit.json \
        --out docs/results/service.md

The raw data are ``docs/results/service/campaign-heldout-2000``, ``campaign-heldout`` and
``campaign-heldout-diagnostic`` (``campaign.jsonl``, ``summary.json``, ``report.md``) and the
rate-limit benchmark's JSON; the page is made by
:func:`poisonlab.reporting.service_doc.service_markdown`, and ``tests/reporting/test_service_doc.py``
regenerates it and fails when the committed page differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from poisonlab.reporting.results_docs import write_page
from poisonlab.reporting.service_data import load_service_results
from poisonlab.reporting.service_doc import COMMAND, service_markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="docs/results: holds service/campaign-heldout*/")
    parser.add_argument("--ratelimit", type=Path, required=True, help="benchmarks/results/ratelimit.json")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    return write_page(
        args.out,
        lambda: service_markdown(load_service_results(args.results, args.ratelimit), command=COMMAND),
    )


if __name__ == "__main__":
    sys.exit(main())
