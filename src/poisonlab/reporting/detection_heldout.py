"""The per-cell facts of the held-out digits grid that ``docs/results/detection.md`` quotes.

From the held-out cells of the seeds kept (:mod:`poisonlab.reporting.detection_doc` chooses
them): the anchored detector's AUROC and the screen's FPR on the all-to-one backdoor cells, the
cells that took and miss their target, our reading of the two weakest groups (patch and blend
all-to-one, with the attack parameters of ``run.json`` and the split sizes), the controls with
their counts, and the families that no target covers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from poisonlab.reporting.detection_data import (
    BACKDOORS,
    CONTROL_FPR,
    TARGETS,
    SplitCounts,
    control_result,
    pooled_fpr,
    pooled_recall,
    target_results,
    took,
)
from poisonlab.reporting.prose import para, pct, rate_cell, span
from poisonlab.reporting.results_docs import markdown_table

__all__ = ["heldout_facts", "misses_section", "misses_table", "outside_table"]

_ANCHORED = "anchored_knn"


def _auroc(cell: Mapping[str, Any]) -> float | None:
    return (cell["detectors"].get(_ANCHORED) or {}).get("auroc")


def _aurocs(cells: Sequence[Mapping[str, Any]]) -> list[float]:
    return [a for a in map(_auroc, cells) if a is not None]


def _label(cell: Mapping[str, Any]) -> str:
    mode = cell["target"].replace("_", "-")
    rate = "" if cell["rate"] is None else f" {pct(cell['rate'])}"
    return f"{cell['family']} {mode}{rate}, seed {cell['seed']}"


def heldout_facts(kept: Sequence[Mapping[str, Any]]) -> list[str]:
    """The anchored detector's ranking and the screen's FPR on the poisoned cells."""
    one = [c for c in kept if c["family"] in BACKDOORS and c["target"] == "all_to_one"]
    poisoned = [c for c in kept if c["family"] != "control"]
    fprs = [c["screen"]["fpr"] for c in one]
    above = sum(f > CONTROL_FPR for f in fprs)
    text = para(
        f"The anchored detector's AUROC on the {len(one)} all-to-one patch / blend / watermark / warp",
        f"cells: {span(_aurocs(one))} (1.00 ranks every poison above every clean sample); what falls",
        "short below is the decision at its cut-off. The screen's FPR on those poisoned sets was",
        f"{span(fprs, 4)} per cell (above {CONTROL_FPR} on {above} of the {len(one)}); pooled over all",
        f"{len(poisoned)} poisoned cells: {rate_cell(pooled_fpr(poisoned), 4)}.",
    )
    return [text, ""]


def misses_table(kept: Sequence[Mapping[str, Any]]) -> str:
    """Every cell that took and falls short of a target's figure, target by target."""
    rows = []
    for result in target_results(kept):
        for c in result.misses:
            s = c["screen"]
            auroc = _auroc(c)
            rows.append(
                [
                    f"{result.target.name} (>= {result.target.figure:.2f})",
                    _label(c),
                    f"{c['model']['attack_success']:.2f}"
                    if c["model"].get("attack_success") is not None
                    else "-",
                    f"{s['true_positives']}/{s['poison']} = {s['recall']:.2f}",
                    "-" if auroc is None else f"{auroc:.3f}",
                    f"{s['fpr']:.4f}",
                ]
            )
    header = ["target", "cell", "attack success", "screen recall", "anchored AUROC", "screen FPR"]
    return markdown_table(header, rows)


def _group_misses(kept: Sequence[Mapping[str, Any]], family: str) -> list[Mapping[str, Any]]:
    seen, out = set(), []
    for result in target_results(kept):
        for c in result.misses:
            if c["family"] == family and c["target"] == "all_to_one" and c["cell"] not in seen:
                seen.add(c["cell"])
                out.append(c)
    return out


def _per_seed(cells: Sequence[Mapping[str, Any]]) -> str:
    def one(c: Mapping[str, Any]) -> str:
        return f"{c['screen']['recall']:.2f} ({pct(c['rate'])})"

    seeds = sorted({c["seed"] for c in cells})
    return "; ".join(f"seed {s}: " + ", ".join(one(c) for c in cells if c["seed"] == s) for s in seeds)


def _reading_patch(
    kept: Sequence[Mapping[str, Any]], attacks: Mapping[str, Any], splits: SplitCounts, threshold: float
) -> str:
    patch = _group_misses(kept, "patch")
    if not patch:
        return ""
    rates = sorted({c["rate"] for c in patch})
    same = [
        c
        for c in kept
        if c["family"] == "patch" and c["target"] == "all_to_one" and c["rate"] in rates and took(c)
    ]
    size = "-".join(map(str, attacks.get("patch", {}).get("size", [])))
    shape = "x".join(map(str, splits.image_shape[:2]))
    poison = span([c["screen"]["poison"] for c in same], 0)
    return para(
        f"- **all-to-one patch** (recall on the cells that took: {_per_seed(same)}): the poison",
        f"is {poison} images against {span(splits.train, 0)} training images per class; the anchored",
        f"detector ranks it (AUROC {span(_aurocs(patch))} on the cells that miss) but part of it sits",
        f"within {threshold:g} robust SDs of the trusted target samples: a {size} px patch on an {shape}",
        "digit plausibly dominates every layer of the small digits CNN. The development runs showed the",
        "same weakness ([design note](../detection-defaults.md)); it was not tuned away.",
        indent="  ",
    )


def _reading_blend(kept: Sequence[Mapping[str, Any]], attacks: Mapping[str, Any]) -> str:
    blend = _group_misses(kept, "blended")
    if not blend:
        return ""
    alpha = "-".join(map(str, attacks.get("blended", {}).get("alpha", [])))
    return para(
        f"- **all-to-one blend** (recall {span([c['screen']['recall'] for c in blend])} on the {len(blend)}",
        f"cells that took and miss, AUROC {span(_aurocs(blend))}): the blend (alpha {alpha}) is spread",
        "thinly over the image, and every layer sees a little of it.",
        indent="  ",
    )


def _controls(kept: Sequence[Mapping[str, Any]], splits: SplitCounts, threshold: float) -> str:
    control = control_result(kept)
    if not control.cells:
        return "- **controls**: none among the cells kept."
    per = "; ".join(
        f"{c['screen']['fpr']:.4f} on seed {c['seed']} ({c['screen']['flagged']} of "
        f"{c['screen']['clean']:,} clean samples)"
        for c in control.cells
    )
    alone = all(
        c["screen"]["flagged"] == (c["detectors"].get(_ANCHORED) or {}).get("flagged") for c in control.cells
    )
    who = (
        "in each the screen flagged exactly as many samples as the anchored detector, whose flags it "
        "always keeps, so every false positive is the anchored detector's"
        if alone
        else "the anchored detector's flags are only part of them"
    )
    pooled = control.pooled
    where = "includes" if pooled.low <= CONTROL_FPR <= pooled.high else "excludes"
    return para(
        f"- **controls**: FPR {per}; {who}. Its {threshold:g}-SD cut-off is calibrated on a trusted set",
        f"of {span(splits.trusted, 0)} images per class ({sum(splits.trusted):,} in all: the validation",
        f"split), which makes it noisy. Pooled: {rate_cell(pooled, 4)}; the interval {where} the",
        f"target {CONTROL_FPR}.",
        indent="  ",
    )


def outside_table(kept: Sequence[Mapping[str, Any]]) -> str:
    """The poisoned families that no target covers: did the attack take, what the screen found."""
    covered = set().union(*(t.families for t in TARGETS))
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for c in kept:
        if c["family"] not in covered and c["family"] != "control":
            groups.setdefault((c["family"], c["target"]), []).append(c)
    rows = []
    for (family, mode), cells in groups.items():
        asr = [c["model"]["attack_success"] for c in cells if c["model"].get("attack_success") is not None]
        rows.append(
            [
                f"{family} {mode.replace('_', '-')}",
                len(cells),
                sum(took(c) for c in cells) if asr else "-",
                span(asr),
                rate_cell(pooled_recall(cells)),
                span(_aurocs(cells)),
            ]
        )
    header = [
        "family",
        "cells",
        "took",
        "attack success per cell",
        "screen recall, pooled [Wilson 95 %]",
        "anchored AUROC per cell",
    ]
    return markdown_table(header, rows)


def misses_section(
    kept: Sequence[Mapping[str, Any]], run: Mapping[str, Any], splits: SplitCounts
) -> list[str]:
    """The cells short of their target, our reading of them, the controls, the other families."""
    params = (kept[0]["detectors"].get(_ANCHORED) or {}).get("params", {})
    threshold = float(params.get("threshold", float("nan")))
    attacks = (run.get("grid") or run.get("config") or {}).get("attacks") or {}
    readings = [_reading_patch(kept, attacks, splits, threshold), _reading_blend(kept, attacks)]
    return [
        "Cells that took and fall short of their target (one run each):",
        "",
        misses_table(kept),
        "",
        para(
            "Where the targets are missed, and why (the *why* is our reading of the per-detector tables",
            "of the report, not a measurement):",
        ),
        "",
        *[r for r in readings if r],
        _controls(kept, splits, threshold),
        "",
        para(
            "Families that no target covers (clean-label SIG and label-consistent PGD keep their class's",
            "content, so the anchored detector sees only their perturbation; random flips have no attack",
            "success). Where an attack did not take, its row measures detection of poison without a",
            "working backdoor:",
        ),
        "",
        outside_table(kept),
        "",
    ]
