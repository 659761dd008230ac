"""Combine clean-label benchmark runs into one table beside Schwarzschild et al.'s averages.

Reads the ``results.json`` of each run folder (``poisonlab clean-label CONFIG --out DIR``) and
prints a Markdown table: per attack and setting our successes (with the 95 % Wilson interval),
the control count, and the published average of the matching setting family; then the mean
detection F1 / recall / AUROC of every defense per attack, over all runs.

    .venv/bin/python benchmarks/clean_label_table.py docs/results/clean_label/*/ > table.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from poisonlab.experiments.clean_label.report import PUBLISHED, mean_detection, wilson_interval

KINDS = ("feature_collision", "clean_label_backdoor", "hidden_trigger", "gradient_matching")


def _load(folder: Path) -> dict:
    path = folder / "results.json"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found (run poisonlab clean-label first)")
    return json.loads(path.read_text(encoding="utf-8"))


def success_rows(runs: list[dict]) -> list[str]:
    lines = [
        "| setting | attack | eps | poisons / train | successes | rate (95% CI) | control | published avg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        cfg, clean = run["config"], run["clean"]
        family = "scratch" if cfg["setting"] == "scratch" else "transfer"
        for spec in cfg["attacks"]:
            rows = [r for r in run["trials"] if r["attack"] == spec["name"]]
            wins, n = sum(r["success"] for r in rows), len(rows)
            lo, hi = wilson_interval(wins, n)
            eps = spec.get("eps") or cfg["eps"]
            pub = PUBLISHED[family].get(spec["attack"])
            lines.append(
                f"| {cfg['setting']} | {spec['name']} | {eps * 255:.0f}/255 | {clean['poisons']} / "
                f"{clean['train_size']} | {wins}/{n} | {100 * wins / max(n, 1):.0f}% "
                f"({100 * lo:.0f}-{100 * hi:.0f}%) | {sum(r['control'] for r in rows)}/{n} | "
                f"{'-' if pub is None else f'{pub:.1f}%'} |"
            )
    return lines


def detection_rows(runs: list[dict]) -> list[str]:
    trials = [r for run in runs for r in run["trials"]]
    per_kind = {kind: mean_detection([r for r in trials if r["kind"] == kind]) for kind in KINDS}
    defenses = sorted({name for det in per_kind.values() for name in det})
    lines = ["| attack | " + " | ".join(defenses) + " |", "|---|" + "---|" * len(defenses)]
    for kind, det in per_kind.items():
        cells = [
            " / ".join(
                "-" if det.get(n, {}).get(k) is None else f"{det[n][k]:.2f}"
                for k in ("f1", "recall", "auroc")
            )
            for n in defenses
        ]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders holding results.json")
    args = parser.parse_args(argv)
    runs = [_load(f) for f in args.runs]
    print("\n".join(success_rows(runs)))
    print()
    print("\n".join(detection_rows(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
