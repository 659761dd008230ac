"""The embedded-digits section of ``docs/results/defenses.md``: setting, table, what it shows.

The digits matrix retrains after every defense's flags and after the oracle, so its prose can
say, per attack, which retrains lowered attack success: each such claim carries the Newcombe
interval of the drop, over the test images of the source class (counted from the embedded
dataset, :class:`~poisonlab.reporting.defenses_data.DatasetCounts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from poisonlab.reporting.defenses_cifar import setting
from poisonlab.reporting.defenses_data import DefensesSources, Matrix, row_classes
from poisonlab.reporting.defenses_mitigation import every_mitigation
from poisonlab.reporting.defenses_text import FINDS, MISSES, compare, difference, prose
from poisonlab.reporting.prose import and_list, num, para, rate_cell, span
from poisonlab.reporting.results_docs import matrix_detection_table

__all__ = ["digits_section"]

_PAIR = ("spectral_signatures", "activation_clustering")
_HEADINGS = {
    "all": "every cell mitigated",
    "best": "the best cell mitigated",
    "screen": "the screen's flags mitigated",
    "none": "no mitigation",
}


def _f1(row: Mapping[str, Any], defense: str) -> float:
    return row["detection"][defense]["f1"] or 0.0


def _found(m: Matrix, row: Mapping[str, Any], defenses) -> list[str]:
    return [
        f"{prose(d)} F1 {num(_f1(row, d))}, recall {rate_cell(m.recall(row, d))}"
        for d in defenses
        if d in m.defenses and _f1(row, d) >= FINDS
    ]


def _size(m: Matrix) -> list[str]:
    backdoors = m.kind("backdoor")
    target = row_classes(backdoors[0])[1] if backdoors else None
    clean = m.counts.train_of(target)
    if clean is None:
        return []
    poison = backdoors[0]["poison_count"]
    return [
        para(
            f'- The backdoor poison ({poison} samples per row) is about as large as the clean "{target}"s',
            f"of the training split ({clean}, counted from the embedded dataset):",
            f"{100 * poison / (poison + clean):.1f} % of the label, so a detector that flags the smaller",
            "part of a class has no minority to find.",
            indent="  ",
        )
    ]


def _success(m: Matrix) -> list[str]:
    backdoors = m.kind("backdoor")
    pairs = [
        (r, m.success(r, r["poisoned"]["attack_success"]), m.success(r, r["clean_model_success"]))
        for r in backdoors
    ]
    pairs = [(r, a, c) for r, a, c in pairs if a is not None and c is not None]
    if not pairs:
        return []
    low = min(pairs, key=lambda p: p[1].rate)
    high = max(pairs, key=lambda p: p[1].rate)
    least = min(pairs, key=lambda p: difference(p[1], p[2]).estimate)
    source = row_classes(low[0])[0]
    return [
        para(
            f'- Attack success on the {len(pairs)} backdoor rows, over the {low[1].n} test "{source}"s:',
            f"from {rate_cell(low[1], 3)} ({low[0]['name']}) to {rate_cell(high[1], 3)} ({high[0]['name']});",
            "the clean model's rate under the same triggers is",
            f"{span([c.rate for _, _, c in pairs], 3)}. The smallest rise over it ({least[0]['name']}) is",
            f"{compare(least[1], least[2])}.",
            indent="  ",
        )
    ]


def _detectors(m: Matrix) -> list[str]:
    out = []
    found = [f"{r['name']} ({'; '.join(_found(m, r, _PAIR))})" for r in m.rows if _found(m, r, _PAIR)]
    missed = [
        r["name"] for r in m.kind("backdoor") if all(_f1(r, d) < MISSES for d in _PAIR if d in m.defenses)
    ]
    if all(d in m.defenses for d in _PAIR):
        out.append(
            para(
                f"- Spectral signatures and activation clustering find the poison of {and_list(found)};",
                f"both miss (F1 below {MISSES:.2f}) the {and_list(missed)} backdoors.",
                indent="  ",
            )
        )
    others = [d for d in m.defenses if d not in (*_PAIR, "provenance")]
    more = [f"{r['name']} ({'; '.join(_found(m, r, others))})" for r in m.rows if _found(m, r, others)]
    out.append(
        para(
            f"- Other detectors that find a row's poison (F1 {FINDS:.2f} or more; provenance aside):",
            f"{and_list(more)}.",
            indent="  ",
        )
    )
    if "label_drift" in m.defenses and all(_f1(r, "label_drift") < MISSES for r in m.rows):
        aurocs = [a for a in (r["detection"]["label_drift"]["auroc"] for r in m.rows) if a is not None]
        f1s = [_f1(r, "label_drift") for r in m.rows]
        out.append(
            para(
                f"- The drift test finds nothing on any digits row (F1 {span(f1s)},",
                f"AUROC {span(aurocs)}); the earlier page's explanation (the size",
                "of the trusted set, which this matrix.json does not record) is in the design note.",
                indent="  ",
            )
        )
    return out


def digits_section(src: DefensesSources, command: str) -> list[str]:
    """``## Embedded digits``: setting, the detection table, what the figures show."""
    m = src.digits
    pairs: dict[tuple, list[str]] = {}
    for r in m.rows:
        pairs.setdefault(row_classes(r), []).append(r["name"])
    classes = "; ".join(f'"{s}" -> "{t}" ({and_list(names)})' for (s, t), names in pairs.items())
    acc = m.accuracy(m.data["clean_model"]["clean_accuracy"])
    return [
        f"## Embedded digits ({_HEADINGS.get(m.mitigation_mode(), 'listed cells mitigated')}"
        f"{', with the oracle' if m.oracle() else ''})",
        "",
        setting(m, "digits", "digits", command),
        "",
        para(
            f"Source -> target, from the rows' descriptions: {classes}. The training split has",
            f"{m.base():,} images; the clean model's test accuracy is {rate_cell(acc, 3)}.",
        ),
        "",
        matrix_detection_table(m.data),
        "",
        para(
            "Per-cell mitigation (clean accuracy and attack success after dropping each defense's flags",
            f"and retraining, for all {len(m.defenses)} defenses and the oracle) is in",
            "[`defenses/digits/report.md`](defenses/digits/report.md). What the figures show:",
        ),
        "",
        *_size(m),
        *_success(m),
        *_detectors(m),
        *every_mitigation(m),
    ]
