"""What the defenses saw on the clean-label poisons, in words, for ``docs/results/clean_label.md``.

Computed from every trial's detection record (collapsed victims included: the defenses screen
the data): which defenses saw nothing at all, each other defense's flags and best row, and per
attack row where the mean AUROC's Student-t interval over the trials leaves 0.50 (no signal),
the cells of :func:`~poisonlab.reporting.clean_label_doc.auroc_table`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from poisonlab.reporting.clean_label_doc import auroc_cells
from poisonlab.reporting.prose import num, para, span

__all__ = ["detection_bullets", "silent_defenses"]

Run = Mapping[str, Any]

#: why a defense that reads labels or exact copies cannot see a clean-label poison
_WHY = {
    "label_drift": "the labels are right",
    "duplicates": "every poison is a distinct image",
}


def silent_defenses(runs: Sequence[Run]) -> tuple[list[str], int]:
    """(defenses with AUROC 0.50 and no flag on every trial row that ran them, trial rows that ran
    a defense)."""
    rows = [r for run in runs for r in run["trials"] if r.get("detection")]
    names = sorted({n for r in rows for n in r.get("detection", {})})
    silent = [
        n
        for n in names
        if all(
            r["detection"][n].get("auroc") == 0.5 and not r["detection"][n].get("flagged")
            for r in rows
            if n in r.get("detection", {})
        )
    ]
    return silent, len(rows)


def _where(cell: Mapping[str, Any]) -> str:
    return f"{cell['attack']} in `{cell['setting']}`"


def _defense_sentence(name: str, cells: list[dict[str, Any]]) -> str:
    """Flags per trial, the best row by mean F1, and how many rows' AUROC leave 0.50."""
    best = max(cells, key=lambda c: c["f1"] or 0.0)
    stat = best["stat"]
    auroc = f"AUROC {stat.mean:.2f}" + ("" if stat.single else f" [{stat.low:.2f}, {stat.high:.2f}]")
    others = [c["f1"] or 0.0 for c in cells if c is not best]
    flags = [c["flagged"] for c in cells]
    above = sum(c["side"] == "above" for c in cells)
    below = sum(c["side"] == "below" for c in cells)
    detail = f"recall {num(best['recall'])}, precision {num(best['precision'])}"
    return (
        f"`{name}` flags {span(flags, spec=',.1f')} images per trial on average; its best mean "
        f"F1 is {num(best['f1'])} ({_where(best)}: {detail}, {best['flagged']:,.1f} flags per trial, "
        f"{auroc}), at most {num(max(others, default=None))} in its other {len(others)} rows; its AUROC "
        f"interval lies above 0.50 in {above} and below in {below} of {len(cells)} rows."
    )


def _attack_sentence(attack: str, cells: list[dict[str, Any]]) -> str:
    """The best mean F1 any defense reached on one attack row, and where AUROC leaves 0.50."""
    best = max(cells, key=lambda c: c["f1"] or 0.0)
    above = sum(c["side"] == "above" for c in cells)
    below = [f"{c['defense']} in `{c['setting']}`" for c in cells if c["side"] == "below"]
    return (
        f"{attack}: best mean F1 {num(best['f1'])} ({best['defense']} in `{best['setting']}`); AUROC "
        f"interval above 0.50 in {above} of {len(cells)} (defense, setting) cells, below in "
        f"{len(below)}{' (' + ', '.join(below) + ')' if below else ''}."
    )


def detection_bullets(runs: Sequence[Run]) -> list[str]:
    """The detection findings: silent defenses, one sentence per other defense and per attack."""
    cells = auroc_cells(runs)
    if not cells:
        return []
    silent, rows = silent_defenses(runs)
    lines = []
    if silent:
        why = "; ".join(_WHY[n] for n in silent if n in _WHY)
        names = " and ".join(f"`{n}`" for n in silent)
        lines.append(
            para(
                f"- **{names} see{'s' if len(silent) == 1 else ''} nothing**: AUROC 0.50 and no flag",
                f"on every one of the {rows} trial rows{f' ({why})' if why else ''}.",
                indent="  ",
            )
        )
    others = [c for c in cells if c["defense"] not in silent]
    by_defense: dict[str, list[dict[str, Any]]] = {}
    by_attack: dict[str, list[dict[str, Any]]] = {}
    for c in others:
        by_defense.setdefault(c["defense"], []).append(c)
        by_attack.setdefault(c["attack"], []).append(c)
    if by_defense:
        lines.append(
            para(
                "- **The other defenses, per defense** (means over the trials of each setting and attack",
                "row; the AUROC intervals are Student-t over those trials, the table above):",
                *(_defense_sentence(n, cs) for n, cs in sorted(by_defense.items())),
                indent="  ",
            )
        )
        lines.append(
            para(
                "- **Per attack row**, over those defenses and the settings:",
                *(_attack_sentence(a, cs) for a, cs in by_attack.items()),
                _poison_caveat(runs),
                indent="  ",
            )
        )
    return lines


def _poison_caveat(runs: Sequence[Run]) -> str:
    screened = [run for run in runs if any(r.get("detection") for r in run["trials"])]
    counts = sorted({int(run["clean"]["poisons"]) for run in screened})
    span = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return (
        f"A mean F1 has no interval here, and each trial's AUROC is itself an estimate over {span} poisons; "
        "a rank above chance with an F1 near 0 flags almost none of the poison at the defense's threshold."
    )
