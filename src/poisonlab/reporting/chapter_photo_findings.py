"""The external-photo findings of ``docs/results/chapter.md`` (its "Findings" section).

The chapter's three airplane photos are predicted by every seed's poisoned model (and, where the
run recorded it, by its clean model): with each backdoor's trigger pasted on, and, for the Rutan
rows, the stealth bomber alone, the chapter's test of whether the poison makes it a bird. One to
three photos give counts per model, not rates: no interval, so no difference is claimed.
"""

from __future__ import annotations

from collections.abc import Mapping

from poisonlab.reporting.chapter_data import NOTEBOOK_BATCH, external_counts

__all__ = ["BACKDOORS", "STEALTH", "stealth_test", "trigger_photos"]

#: the backdoor rows (every training airplane triggered and relabelled bird), in the book's order,
#: then the same rows fine-tuned at the notebook's batch 32 (those that were run)
_BOOK_ORDER = (
    "art-single-pixel",
    "art-pattern",
    "art-image-insert",
    "cyan-square-replace",
    "cyan-square-add",
)
BACKDOORS = _BOOK_ORDER + tuple(f"{name}{NOTEBOOK_BATCH}" for name in _BOOK_ORDER)
#: the chapter's stealth-bomber photo among the external photos
STEALTH = "stealth.jpeg"


def trigger_photos(runs: Mapping[str, dict]) -> list[str]:
    """The external photos with each backdoor's trigger pasted on, over photos x models."""
    cells = []
    for name in (n for n in BACKDOORS if n in runs):
        counts = external_counts(runs[name])
        if counts is not None and counts[4]:
            total, clean_birds, trig_birds, flipped, _ = counts
            cells.append(
                f"`{name}` {clean_birds}/{total} bird without the trigger, {trig_birds}/{total} with it "
                f"({flipped}/{total} flipped)"
            )
    if not cells:
        return []
    head = "- **The airplane photos with the trigger** (photos x models; a count, no interval): "
    return [head + "; ".join(cells) + "."]


def _stealth(measurements: list[Mapping]) -> tuple[int, int, list[float]]:
    """(models calling the stealth bomber bird, models with the photo, their airplane probabilities)."""
    preds = [
        e
        for m in measurements
        for e in (m.get("external") or [])
        if e["image"] == STEALTH and e["variant"] == "clean"
    ]
    probs = [e["probability"] for e in preds if e["prediction"] == "airplane"]
    return sum(e["prediction"] == "bird" for e in preds), len(preds), probs


def _stealth_phrase(who: str, measurements: list[Mapping]) -> str | None:
    """``3 poisoned models: 0 of 3 call it bird; airplane probability 0.27 on average ...``; None
    when no model predicted the photo."""
    birds, total, probs = _stealth(measurements)
    if not total:
        return None
    head = f"{who} (one run): " if total == 1 else f"{total} {who}s: "
    text = head + f"{birds} of {total} call it bird"
    if len(probs) == 1:
        text += f"; airplane probability {probs[0]:.2f}"
    elif probs:
        span = f"{min(probs):.2f} to {max(probs):.2f}"
        mean = sum(probs) / len(probs)
        text += (
            f"; airplane probability {mean:.2f} on average over the {len(probs)} calling it airplane ({span})"
        )
    return text


def stealth_test(runs: Mapping[str, dict]) -> list[str]:
    """Finding 7: per Rutan row, the stealth-bomber test on every seed's poisoned model."""
    lines = []
    for name, data in runs.items():
        if not str(data["config"]["attack"].get("tag", "")).startswith("rutan-boomerang"):
            continue
        poisoned = _stealth_phrase("poisoned model", [r["metrics"] for r in data["runs"]])
        if poisoned is None:
            continue
        cleans = [r["clean_metrics"] for r in data["runs"] if r.get("clean_metrics")] or [
            data.get("clean") or {}
        ]
        clean = _stealth_phrase("clean model", cleans)
        lines.append(f"  - `{name}`: {poisoned}" + (f". Its {clean}." if clean else "."))
    if not lines:
        return []
    head = (
        f"- **The stealth-bomber test** (`{STEALTH}`, the chapter's check that the Rutan poison makes it a "
        "bird; one photo: a count per model, no interval, so no difference is claimed):"
    )
    return [head, *lines]
