"""Issue 11's targets checked against a detection benchmark's records (``cells.jsonl``).

For each target: the cells it covers, the screen's recall per cell (min, mean), the poison pooled
over those cells (true positives / poisons), and whether every cell meets the figure. Cells where
the attack did not take (attack success < 0.5, the report's "took") are listed apart for the
backdoor targets: an attack that did not implant its backdoor leaves nothing for a detector to
find in the model, and its poison is still counted in the pooled figure.

Reproduce: ``.venv/bin/python benchmarks/detection_targets.py runs/detection-digits-heldout/cells.jsonl``
(``--seeds 1000,1001`` keeps only the seeds that finished whole).
"""

from __future__ import annotations

import json
import sys
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


if __name__ == "__main__":
    rows = [json.loads(line) for line in Path(sys.argv[1]).read_text().splitlines() if line.strip()]
    if len(sys.argv) > 3 and sys.argv[2] == "--seeds":
        keep = {int(s) for s in sys.argv[3].split(",")}
        rows = [r for r in rows if r["seed"] in keep]
    print(f"{len(rows)} cells, seeds {sorted({r['seed'] for r in rows})}")
    print("\n".join(check(rows)))
