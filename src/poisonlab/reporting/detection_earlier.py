"""The earlier-status section of ``docs/results/detection.md``: the development seed-0 grid.

Before the trusted-anchored k-NN existed, the screen ran on the development grid of seed 0
(``docs/results/detection/digits-dev-seed0/``). This section groups its cells (backdoors that took,
by target mode; label and random flips; the control) and shows, per group, the screen's pooled
recall and FPR with their Wilson intervals beside how well the screen and the best single detector
ranked the poison: the gap the anchored detector was added to close.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from poisonlab.reporting.detection_data import (
    BACKDOORS,
    TOOK,
    DetectionSources,
    pooled_fpr,
    pooled_recall,
    took,
)
from poisonlab.reporting.prose import para, rate_cell, span
from poisonlab.reporting.results_docs import markdown_table

__all__ = ["earlier_status_section", "earlier_table"]


def _groups(cells: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """The development cells by kind: backdoors that took (all-to-one, all-to-all), flips, control."""

    def pick(test: Callable[[Mapping[str, Any]], bool]) -> list[Mapping[str, Any]]:
        return [c for c in cells if test(c)]

    def backdoor(mode: str) -> Callable[[Mapping[str, Any]], bool]:
        return lambda c: c["family"] in BACKDOORS and c["target"] == mode and took(c)

    return [
        ("all-to-one backdoors that took", pick(backdoor("all_to_one"))),
        ("all-to-all backdoors that took", pick(backdoor("all_to_all"))),
        ("label flips", pick(lambda c: c["family"] == "label_flip")),
        ("random flips", pick(lambda c: c["family"] == "random_flip")),
        ("no-poison control", pick(lambda c: c["family"] == "control")),
    ]


def _best_auroc(cell: Mapping[str, Any]) -> float | None:
    values = [d["auroc"] for d in cell["detectors"].values() if d.get("auroc") is not None]
    return max(values) if values else None


def _screen(cells: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [c["screen"][key] for c in cells if c["screen"].get(key) is not None]


def earlier_table(cells: Sequence[Mapping[str, Any]]) -> str:
    """The development seed-0 screen (before the anchored detector) per group of cells."""
    rows = []
    for name, group in _groups(cells):
        best = [b for b in map(_best_auroc, group) if b is not None]
        rows.append(
            [
                name,
                len(group),
                rate_cell(pooled_recall(group)),
                span(_screen(group, "tpr_at_1fpr")),
                span(_screen(group, "auroc")),
                span(best),
                rate_cell(pooled_fpr(group), 4),
            ]
        )
    header = [
        "cells",
        "n",
        "screen recall, pooled [Wilson 95 %]",
        "screen TPR at 1 % FPR per cell",
        "screen AUROC per cell",
        "best single detector's AUROC per cell",
        "screen FPR, pooled [Wilson 95 %]",
    ]
    return markdown_table(header, rows)


def earlier_status_section(src: DetectionSources) -> list[str]:
    """``## The earlier status``: the development seed-0 grid before the anchored detector."""
    cells = src.dev
    commits = ", ".join(f"`{c}`" for c in sorted({str(c.get("commit", ""))[:7] for c in cells}))
    methods = (cells[0]["screen"].get("params") or {}).get("methods") or sorted(cells[0]["detectors"])
    seeds = ", ".join(str(s) for s in sorted({c["seed"] for c in cells}))
    (_, one), (_, every) = _groups(cells)[:2]
    best_one = [b for b in map(_best_auroc, one) if b is not None]
    best_every = [b for b in map(_best_auroc, every) if b is not None]
    return [
        "## The earlier status (kept for the record)",
        "",
        para(
            f"Before the anchored detector, the development grid of seed {seeds}",
            "([`detection/digits-dev-seed0/report.md`](detection/digits-dev-seed0/report.md), commit",
            f"{commits}, {len(cells)} cells, one run each) ran the screen of {len(methods)} detectors",
            f"without a trusted set. *Took*: attack success >= {TOOK}. The best single detector is the",
            "one with the highest AUROC in that cell (chosen with the ground truth, so an upper bound",
            "on the ranking).",
        ),
        "",
        earlier_table(cells),
        "",
        para(
            f"The screen's decision flagged {rate_cell(pooled_recall(one))} of the all-to-one and",
            f"{rate_cell(pooled_recall(every))} of the all-to-all backdoor poison that took; the best single",
            f"detector's AUROC was {span(best_every)} on the all-to-all cells (the poison a minority in",
            f"every class) against {span(best_one)} on the all-to-one cells (the poison as large as its",
            "class at the higher rates). The anchored detector was added for the latter.",
        ),
    ]
