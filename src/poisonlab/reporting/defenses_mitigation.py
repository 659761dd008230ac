"""What the mitigation retrains of ``docs/results/defenses.md`` show, for both matrices.

A matrix that mitigated one cell per attack (``mitigation: best``, the CIFAR-10 one) gets a
reading of its backdoor rows (what the oracle-picked detector dropped, and whether that gave back
the clean model), its label-flip retrain and its mislabel row; a matrix that mitigated every
cell (``mitigation: all``, the digits one) gets, per attack, the retrains that lowered attack
success. Every drop is a difference of two rates with its Newcombe 95 % interval.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from poisonlab.reporting.defenses_data import Matrix
from poisonlab.reporting.defenses_text import compare, difference, prose
from poisonlab.reporting.prose import and_list, diff_points, k_of_n, para, rate_cell
from poisonlab.reporting.stats import RateInterval

__all__ = ["best_mitigation", "every_mitigation"]


def _drop(after: RateInterval, before: RateInterval) -> str:
    """``-65.2 points [-68.3, -61.8], excludes 0``."""
    diff = difference(after, before)
    return f"{diff_points(diff)}, {'excludes' if diff.excludes_zero else 'includes'} 0"


def _cell(row: Mapping[str, Any]) -> tuple[str, dict]:
    """The one mitigated cell of a ``mitigation: best`` row (the oracle aside)."""
    ((name, cell),) = [(k, v) for k, v in row["mitigation"].items() if k != "oracle"]
    return name, cell


def _backdoors(m: Matrix) -> list[str]:
    clean = m.data["clean_model"]
    rows = [(r, *_cell(r)) for r in m.kind("backdoor")]
    if not rows:
        return []
    exact = [r for r, _, c in rows if c["removed"] == r["poison_count"] and c["poison_left"] == 0]
    same = [r for r, _, c in rows if c.get("model_id") == clean.get("model_id")]
    picks = and_list(f"{prose(d)} ({n})" for d, n in Counter(d for _, d, _ in rows).most_common())
    each = [
        f"{r['name']} {r['poisoned']['attack_success']:.3f} -> {c['attack_success']:.3f}, "
        f"{_drop(m.success(r, c['attack_success']), m.success(r, r['poisoned']['attack_success']))}"
        for r, _, c in rows
    ]
    n = len(rows)
    return [
        para(
            f"- **Mitigation** with the oracle-picked detector: on the {n} backdoor rows the picks are",
            f"{picks}; {k_of_n(len(exact), n)} dropped exactly the poison, and",
            f"{k_of_n(len(same), n)} retrained",
            "into the clean model itself (the same cached model id, since dropping exactly the poison",
            f"gives back the clean share): its clean accuracy {clean['clean_accuracy']:.3f} and, per row,",
            "the clean model's own rate under that trigger. Attack success before -> after, with the",
            f"Newcombe 95 % interval of the drop: {'; '.join(each)}. These rows show what a perfect",
            "detection buys, not what a defender choosing without the ground truth gets",
            "([`detection.md`](detection.md) has the screen's mitigation on digits).",
            indent="  ",
        )
    ]


def _flip_retrain(m: Matrix) -> list[str]:
    out = []
    clean = m.accuracy(m.data["clean_model"]["clean_accuracy"])
    for r in m.kind("label_flip"):
        d, c = _cell(r)
        after, before = m.accuracy(c["clean_accuracy"]), m.accuracy(r["poisoned"]["clean_accuracy"])
        below = difference(after, before)
        failed = (
            " A retrain that ends below the poisoned model failed to train (the earlier page's account"
            " of why is in the design note)."
            if below.excludes_zero and below.estimate < 0
            else ""
        )
        kept = r["train_size"] - c["removed"]
        out.append(
            para(
                f"- The {r['name']} row's retrain after {prose(d)}'s drop ({c['removed']:,} removed,",
                f"{c['poison_left']:,} of the {r['poison_count']:,} flipped labels left, {kept:,} samples)",
                f"reached a clean accuracy of {rate_cell(after, 3)}: {compare(after, clean)} against the",
                f"clean model, {compare(after, before)} against the poisoned model; its attack success of",
                f"{c['attack_success']:.3f} means little at that accuracy.{failed} We did not rerun it with",
                "another seed, to keep the table as measured.",
                indent="  ",
            )
        )
    return out


def _mislabel(m: Matrix) -> list[str]:
    out = []
    for r in m.kind("mislabel"):
        asr, clean = m.success(r, r["poisoned"]["attack_success"]), m.success(r, r["clean_model_success"])
        if asr is None or clean is None:
            continue
        d, c = _cell(r)
        shown = "an effect" if difference(asr, clean).excludes_zero else "no effect"
        acc_drop = _drop(m.accuracy(c["clean_accuracy"]), m.accuracy(r["poisoned"]["clean_accuracy"]))
        out.append(
            para(
                f"- The {r['name']} injection ({r['poison_count']} appended files) shows {shown} on a model",
                f"retrained from scratch here: attack success {rate_cell(asr, 3)} against the clean model's",
                f"{rate_cell(clean, 3)}, {compare(asr, clean)} (one run each). {prose(d).capitalize()}'s",
                f"drop ({c['removed']:,} removed, {c['poison_left']} of the {r['poison_count']} left)",
                f"retrained to attack success {c['attack_success']:.3f}, against the poisoned model",
                f"{_drop(m.success(r, c['attack_success']), asr)}, and clean accuracy",
                f"{c['clean_accuracy']:.3f}, {acc_drop}.",
                indent="  ",
            )
        )
    return out


def best_mitigation(m: Matrix) -> list[str]:
    """The reading of a ``mitigation: best`` matrix's retrains (nothing for another mode)."""
    if m.mitigation_mode() != "best":
        return []
    return _backdoors(m) + _flip_retrain(m) + _mislabel(m)


def _lowered(m: Matrix, row: Mapping[str, Any]) -> str:
    """The retrains of ``row`` whose attack success fell with an interval that excludes 0."""
    before = m.success(row, row["poisoned"]["attack_success"])
    if before is None:
        return f"{row['name']}: the test count of its source class is unknown"
    if before.successes == 0:
        return f"{row['name']}: nothing to lower (attack success {before.rate:.3f})"
    fell = []
    for d, cell in row["mitigation"].items():
        diff = difference(m.success(row, cell["attack_success"]), before)
        if diff.excludes_zero and diff.estimate < 0:
            name = "the oracle" if d == "oracle" else prose(d)
            acc = cell["clean_accuracy"]
            fell.append(
                f"{name} {cell['attack_success']:.3f} at clean accuracy {acc:.3f}, {diff_points(diff)}"
            )
    return f"{row['name']} (from {before.rate:.3f}): {'; '.join(fell) or 'none'}"


def every_mitigation(m: Matrix) -> list[str]:
    """The reading of a ``mitigation: all`` matrix's retrains (nothing for another mode)."""
    if m.mitigation_mode() != "all":
        return []
    clean_id = m.data["clean_model"].get("model_id")
    same = [r["name"] for r in m.rows if (r["mitigation"].get("oracle") or {}).get("model_id") == clean_id]
    lines = [
        para(
            "- Retrains whose attack success fell below the poisoned model's with a Newcombe 95 % interval",
            "that excludes 0 (each: attack success after, the retrained model's clean accuracy, the drop in",
            "points and its interval; the other retrains of the row did not lower it by more than their",
            "interval):",
            indent="  ",
        )
    ]
    lines += [para(f"- {_lowered(m, r)}.", first="  ", indent="    ") for r in m.rows]
    if same:
        lines.append(
            para(
                "- The oracle's retrain is the clean model itself (the same cached model id) on",
                f"{and_list(same)}: dropping exactly the appended poison gives back the clean training",
                "split.",
                indent="  ",
            )
        )
    return lines
