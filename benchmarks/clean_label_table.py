"""Write docs/results/clean_label.md, whole, from the clean-label benchmark runs' results.json.

Reads the ``results.json`` of each run folder (``poisonlab clean-label CONFIG --out DIR``, one
folder per run, in page order; a later run of a setting already on the page is labelled by its
config name, a placebo run (every attack ``random_noise``) as the control of its setting) and
prints the page computed by :func:`poisonlab.reporting.clean_label_page.clean_label_markdown`:
the attacks, the protocol and the scaled settings; per attack and setting the successes among
the victims that trained (95 % Wilson interval), the collapsed victims left out, the control
count and the published average; the differences between settings (Newcombe intervals); the
mean clean accuracy and backdoor rates and their paired changes over trials (t intervals); the
defenses' detection; the findings, every figure computed from the runs. ``--out`` also writes it to a file;
``tests/reporting/test_clean_label_doc.py`` fails when the committed page differs.
``--tables`` prints the tables alone (the page's, in page order). Several folders of one
setting (different seeds) are pooled with ``--pool``.

    .venv/bin/python benchmarks/clean_label_table.py docs/results/clean_label/transfer-linear \\
        docs/results/clean_label/transfer-finetune docs/results/clean_label/scratch \\
        docs/results/clean_label/feature-collision-chapter \\
        docs/results/clean_label/transfer-finetune-placebo --out docs/results/clean_label.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from poisonlab.experiments.clean_label.records import pool_seeds
from poisonlab.reporting.clean_label_doc import doc_tables
from poisonlab.reporting.clean_label_page import COMMAND, RUN_FOLDERS, clean_label_markdown, load_runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding results.json")
    parser.add_argument("--pool", action="store_true", help="the folders are seeds of one setting: pool them")
    parser.add_argument("--tables", action="store_true", help="print the tables alone, not the page")
    parser.add_argument("--out", type=Path, help="also write the page to this file")
    args = parser.parse_args(argv)
    if args.tables and args.out:
        parser.error("--tables prints the tables alone; --out writes the whole page: pick one")
    try:
        runs = load_runs(args.runs)
        runs = [pool_seeds(runs)] if args.pool else runs
        text = (
            "\n\n".join(doc_tables(runs)) + "\n"
            if args.tables
            else clean_label_markdown(runs, command=COMMAND if _committed(args) else _command(argv))
        )
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    print(text, end="")
    return 0


def _committed(args: argparse.Namespace) -> bool:
    """Whether this is the command that writes the committed page (named on it as such)."""
    root = Path(__file__).resolve().parents[1]
    committed = [root / "docs/results/clean_label" / n for n in RUN_FOLDERS]
    out = args.out is not None and args.out.resolve() == root / "docs/results/clean_label.md"
    return out and not args.pool and [p.resolve() for p in args.runs] == committed


def _command(argv: list[str] | None) -> str:
    words = sys.argv[1:] if argv is None else argv
    return " ".join(["python benchmarks/clean_label_table.py", *words])


if __name__ == "__main__":
    sys.exit(main())
