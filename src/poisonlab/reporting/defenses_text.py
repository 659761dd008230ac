"""The defense names and comparisons of ``docs/results/defenses.md``, and its "Read this first"
caveats (the prose formatters are :mod:`poisonlab.reporting.prose`'s).

Every figure the caveats quote is computed from :class:`~poisonlab.reporting.defenses_data.
DefensesSources`; comparisons carry their interval (:func:`compare`: Newcombe's for the
difference of two rates) and say whether it excludes 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from poisonlab.reporting.defenses_data import DefensesSources, Matrix, row_classes, row_kind
from poisonlab.reporting.prose import and_list, k_of_n, para, rate_cell, span
from poisonlab.reporting.stats import (
    Difference,
    RateInterval,
    describe_difference,
    rate_difference,
    rate_interval,
)

__all__ = [
    "FINDS",
    "MISSES",
    "best_defenses",
    "caveats",
    "compare",
    "dev_case",
    "difference",
    "mode_text",
    "prose",
]

#: wording thresholds, not results: a cell "finds" the poison from this F1 ...
FINDS = 0.5
#: ... and "misses" it (flags next to none of it, or mostly clean samples) below this one
MISSES = 0.1
_PROSE = {
    "data_checks": "data checks",
    "zscore": "z-score",
    "kmeans": "k-means",
    "dbscan": "DBSCAN",
    "roni": "RONI",
    "strip": "STRIP",
    "label_drift": "the drift test",
    "spectre": "SPECTRE",
    "scan_lrt": "SCAn",
    "flare": "FLARE",
    "deep_knn": "deep k-NN",
    "anchored_knn": "anchored k-NN",
}
_SPECTRAL, _AC = "poisonlab SpectralSignatures", "poisonlab ActivationClustering"


def prose(defense: str) -> str:
    """A defense's name in a sentence (``spectral_signatures`` -> ``spectral signatures``)."""
    return _PROSE.get(defense, defense.replace("_", " "))


def difference(a: RateInterval, b: RateInterval) -> Difference:
    """Newcombe's 95 % interval of ``a - b`` (two rates with their counts)."""
    return rate_difference(a.successes, a.n, b.successes, b.n)


def compare(a: RateInterval, b: RateInterval) -> str:
    """``a - b`` in points with its Newcombe 95 % interval and whether that excludes 0."""
    return describe_difference(difference(a, b))


def mode_text(mode: str, oracle: bool, *, short: bool = False) -> str:
    """How a matrix mitigated, in words (``short``: the setting alone)."""
    setting = {"none": "no mitigation"}.get(mode, f"`mitigation: {mode}`")
    why = {
        "best": " (one retrain per attack, for the detector with the highest F1)",
        "all": " (a retrain for every defense's flags)",
        "screen": " (drop what the default screen flags; the screen's detectors and verdict join"
        " the columns)",
    }.get(mode, "")
    oracle_text = ", with the oracle" + ("" if short else " (the true poison dropped)")
    return setting + ("" if short else why) + (oracle_text if oracle else "")


def best_defenses(row: Mapping[str, Any], defenses: Sequence[str]) -> list[str]:
    """The defenses that share the highest F1 of ``row`` (none when every F1 is 0)."""
    top = max((row["detection"][d]["f1"] or 0.0 for d in defenses), default=0.0)
    return [d for d in defenses if top > 0 and (row["detection"][d]["f1"] or 0.0) == top]


def dev_case(case: Mapping[str, Any]) -> dict[str, Any]:
    """The full-size development case's poisonlab rows (``spectral``, ``ac``) and sizes.

    Raises
    ------
    ValueError
        The record holds no poisonlab row for one of the two detectors.
    """
    for worker in case["results"]:
        rows = {r.get("method"): r for r in worker.get("rows", [])}
        if worker.get("worker") == "ours" and _SPECTRAL in rows and _AC in rows:
            samples, poison = int(worker["samples"]), int(worker["poison"])
            spectral = rows[_SPECTRAL]
            tp = round(spectral["recall"] * poison)
            return {
                "samples": samples,
                "poison": poison,
                "recall": rate_interval(tp, poison),
                "fpr": rate_interval(int(spectral["flagged"]) - tp, samples - poison),
                "ac_auroc": rows[_AC]["auroc"],
                "ac_flagged": int(rows[_AC]["flagged"]),
            }
    raise ValueError(f"development case lacks the poisonlab rows {_SPECTRAL!r} and {_AC!r}")


def _one_run(m: Matrix, seeded: bool = False) -> str:
    widths = [
        100 * (s.high - s.low)
        for s in (m.success(r, r["poisoned"]["attack_success"]) for r in m.rows)
        if s is not None
    ]
    source = row_classes((m.kind("backdoor") or m.rows)[0])[0]
    n = m.counts.test_of(source)
    text = [
        f"- **One run per cell{' in the earlier single runs' if seeded else ''}**: `matrix.json` holds"
        " one figure per cell and no per-sample scores,",
        "so each F1 / AUROC below is one scan of one model without an interval, no difference",
        'between two cells is tested, and "finds" and "misses" describe single scans. Where the',
        "prose quotes a detector's recall or false-positive rate it gives the count (the flagged",
        "poison of the row's poison, the flagged clean samples of its clean samples) with its Wilson",
        "95 % interval. Attack success and clean accuracy are rates over the test split; matrix.json",
        "records the rates only, and every one of them is a whole count of the test images behind",
        "it (checked by the generator)",
    ]
    if n is not None:
        text[-1] += f": attack successes on CIFAR-10 are over {n:,} test {source}s, so the poisoned"
        text.append(f"models' Wilson intervals are {span(widths, 1)} points wide.")
    else:
        text[-1] += "."
    mislabel = m.kind("mislabel")
    if mislabel:
        r = mislabel[0]
        asr, clean = m.success(r, r["poisoned"]["attack_success"]), m.success(r, r["clean_model_success"])
        if asr is not None and clean is not None:
            verdict = "an effect" if difference(asr, clean).excludes_zero else "no effect shown"
            text.append(
                f"E.g. the {r['name']} row's {asr.rate:.3f} against the clean model's {clean.rate:.3f}"
                f" is {compare(asr, clean)}: {verdict}."
            )
    text.append(
        "The two models are scored on the same test images; without per-image predictions the"
        " interval treats them as independent, which makes it wider than a paired one."
    )
    return para(*text, indent="  ")


def _rerun(src: DefensesSources) -> str:
    parts, changed, bare = [], 0, []
    for label, m, key in (("CIFAR-10", src.cifar, "cifar10"), ("digits", src.digits, "digits")):
        own = (m.data.get("provenance") or {}).get("commit")
        bare += [] if own else [label]
        mode = mode_text(m.mitigation_mode(), m.oracle(), short=True)
        text = f"The {label} matrix ran at commit `{m.commit() or 'unknown'}`"
        text += f"{' (its provenance block)' if own else ''} with {mode}"
        today = src.today.get(key)
        if today is not None:
            now = mode_text(str(today.get("defenses")), bool(today.get("oracle")), short=True)
            text += f"; today's `experiments/defenses/matrix-{key}.yaml` has {now}"
            changed += today.get("defenses") != m.mitigation_mode()
        parts.append(text + ".")
    head = {2: "**Neither matrix is what its command reruns today.**"}.get(
        changed, "**One matrix is not what its command reruns today.**" if changed else "**Where they ran.**"
    )
    if src.seeded and changed:
        head = "**The earlier single runs are not what the commands rerun today** (the runs over seeds are)."
    note = (
        f"The {and_list(bare)} file{'s' if len(bare) > 1 else ''} predate{'' if len(bare) > 1 else 's'} the"
        " provenance block: the commit named is the one that added the file, and neither the commit"
        " nor the detectors' effective parameters are recorded."
        if bare
        else ""
    )
    return para(
        f"- {head}",
        *parts,
        note,
        "`mitigation: screen` drops what the default screen flags, and the screen's detectors and",
        "verdict join the columns. Detector defaults changed since (issue 11); files written from",
        "issue 14 on record the commit and every detector's parameters.",
        indent="  ",
    )


def _oracle_pick(m: Matrix, earlier: bool = False) -> list[str]:
    """The caveat on a mitigation column that picked each row's detector by its F1; ``earlier``
    when runs over seeds of the same matrix (mitigating with the screen) are on the page too."""
    if m.mitigation_mode() != "best":
        return []
    picked = [(r, next(k for k in r["mitigation"] if k != "oracle")) for r in m.rows]
    other = [r["name"] for r, d in picked if d not in best_defenses(r, m.defenses)]
    ties = [
        f"on {r['name']}, {and_list(map(prose, best))} tie and {prose(d)} was picked"
        for r, d in picked
        if len(best := best_defenses(r, m.defenses)) > 1
    ]
    check = (
        f"in {k_of_n(len(picked) - len(other), len(picked))} rows the mitigated detector"
        " has the highest F1 in"
        f" matrix.json{'' if not other else '; not on ' + and_list(other)}"
    )
    tied = f"; ties at the highest F1 were broken by name: {'; '.join(ties)}" if ties else ""
    whose = "earlier single run's " if earlier else ""
    return [
        para(
            f"- **The {whose}CIFAR-10 mitigation column is oracle-picked**: per attack, the detector",
            "with the best F1 against the true poison, which no defender can choose that way",
            f"({check}{tied}).",
            indent="  ",
        )
    ]


def _margin(m: Matrix, earlier: bool = False) -> list[str]:
    """The caveat on a mitigation that rests on the smaller-mode rule of spectral signatures
    (``earlier``: as in :func:`_oracle_pick`)."""
    out = []
    for r in m.rows:
        if "spectral_signatures" not in r["mitigation"] or row_kind(r) != "backdoor":
            continue
        target = row_classes(r)[1]
        recall, fpr = m.recall(r, "spectral_signatures"), m.fpr(r, "spectral_signatures")
        clean = m.counts.train_of(target)
        tie = (
            f"the share holds {r['poison_count']:,} poisons and {clean:,} clean {target}s"
            if clean is not None
            else f"matrix.json does not count the share's clean {target}s, and the CIFAR-10 share cannot"
            " be recounted without the dataset; the earlier page counted a margin of a few images"
            " (not committed; see the [design note](../defenses-notes.md))"
        )
        out.append(
            para(
                f"- **The {r['name']} mitigation{' of the earlier single run' if earlier else ''} rests on"
                f" which mode of {target} is smaller**: spectral",
                f"signatures flags the smaller of the two modes of {target}; here it flagged",
                f"{rate_cell(recall)} of the poison",
                f"and {fpr.successes:,} of the {fpr.n:,} clean samples. Had the clean {target}s been the",
                f"smaller mode, the same rule would have flagged them instead: {tie}.",
                indent="  ",
            )
        )
    return out


def _provenance_perfect(row: Mapping[str, Any]) -> bool:
    """Whether provenance scores F1 1.00 on ``row``."""
    return row["detection"]["provenance"]["f1"] == 1.0


def _seeded_caveat(src: DefensesSources) -> list[str]:
    """What the runs over seeds measure and what they do not (none without such runs)."""
    if not src.seeded:
        return []
    runs = [
        f"{ {'digits': 'digits', 'cifar10': 'CIFAR-10'}.get(k, k) } {len(sm.seeds)} seeds"
        for k, sm in src.seeded.items()
    ]
    return [
        para(
            f"- **Runs over seeds** ({and_list(runs)}; the first sections): today's configs, every",
            "detector's effective parameters and the commit recorded in each seed's `matrix.json`; each",
            "seed draws its own data and poison and trains its own models, so a figure's t interval covers",
            "training variance, not only the test images. Mitigation drops what the default screen flags",
            "(no ground truth picks anything; where an oracle column is there, the true poison dropped, it",
            "is a reference, not a defense). They are **not held out**: the matrices' earlier single",
            "runs were in view when detector defaults changed (issue 11), and detection is scored on the",
            "run it ran on.",
            indent="  ",
        )
    ]


def caveats(src: DefensesSources) -> list[str]:
    """The page's "Read this first" list, every figure computed from the records."""
    case = dev_case(src.dev_case)
    prov = [
        f"{k_of_n(sum(_provenance_perfect(r) for r in rows), len(rows))} {label} backdoor rows"
        for label, m in (("CIFAR-10", src.cifar), ("digits", src.digits))
        if "provenance" in m.defenses and (rows := m.kind("backdoor"))
    ]
    return [
        "**Read this first** (a reviewer's caveats; see also the checklist in [`README.md`](README.md)):",
        "",
        *_seeded_caveat(src),
        _one_run(src.cifar, bool(src.seeded)),
        _rerun(src),
        para(
            "- **Defaults changed on a quoted case**: spectral signatures and activation clustering got",
            "their current decision rules after the full-size CIFAR-10 pattern-backdoor case",
            f"(`benchmarks/results/defenses.json`: {case['samples']:,} samples, {case['poison']:,} of them",
            'poison) had been measured (BENCHMARKS.md: "not a held-out measurement any more"); the',
            "full-size figures quoted below are that development case.",
            indent="  ",
        ),
        para(
            f"- **Provenance's F1 1.00 is by construction** (on {and_list(prov)}): each of those attacks",
            "tags its poison with its own source.",
            indent="  ",
        ),
        *_oracle_pick(src.cifar, "cifar10" in src.seeded),
        *_margin(src.cifar, "cifar10" in src.seeded),
        "",
    ]
