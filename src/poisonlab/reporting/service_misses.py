"""The gates-alone candidates and the first campaign's misses, for ``docs/results/service.md``.

Every figure is computed from the campaign records (:mod:`poisonlab.reporting.service_figures`);
the first campaign's attack successes and quarantine reasons come from its diagnostic rerun, whose
outcomes :func:`poisonlab.reporting.service_doc.comparison_section` checks to be the first run's.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from poisonlab.defenses.detectors.anchored_knn import AnchoredKNN
from poisonlab.defenses.gates.neural_cleanse import neural_cleanse
from poisonlab.redteam.summary import EFFECTIVE
from poisonlab.reporting.prose import num, para, pct
from poisonlab.reporting.results_docs import markdown_table
from poisonlab.reporting.service_data import Campaign, ServiceResults, campaign_settings
from poisonlab.reporting.service_figures import (
    clean_per_seed,
    clean_reasons,
    flagged_by,
    gate_candidates,
    retry_outcomes,
)
from poisonlab.reporting.service_setup import default, parameter_default, trigger_draws

__all__ = ["candidate_table", "gate_stats", "gates_section", "misses_section"]


def candidate_table(c: Campaign) -> str:
    """One row per gates-alone candidate of ``c``: outcome, failed gates, attack success, evidence."""
    rows = []
    for g in gate_candidates(c.records):
        e, acc = g.evidence, g.evidence.get("accuracy") or [None, None]
        rows.append(
            [
                g.seed,
                g.status,
                "yes" if g.poisoned else "no",
                ", ".join(g.failed_gates) or "none",
                num(g.asr_gain if g.status == "promoted" else None, 3, signed=True),
                num(e.get("nc_gap"), 3),
                num(e.get("nc_index"), 3),
                num(e.get("spike"), 3),
                num(e.get("shift"), 3),
                f"{num(acc[0], 4)} -> {num(acc[1], 4)}",
            ]
        )
    header = [
        "seed", "outcome", "poison in training set", "failed gates", "attack-success gain",
        "largest Neural Cleanse gap", "largest anomaly index", "sensitivity spike",
        "largest behaviour shift", "accuracy serving -> candidate",
    ]  # fmt: skip
    return markdown_table(header, rows, ["r", "l", "l", "l", "r", "r", "r", "r", "r", "l"])


def gate_stats(candidates: Campaign, c: Campaign) -> dict[str, Any]:
    """Counts over the gates-alone candidates (from ``candidates``) and the clean fine-tunes and
    retries (from ``c``)."""
    index_limit = parameter_default(neural_cleanse, "anomaly_threshold")
    cands = gate_candidates(candidates.records)
    rejected = [g for g in cands if g.status == "rejected"]
    promoted = [g for g in cands if g.poisoned]
    gains = [g.asr_gain for g in promoted if g.asr_gain is not None]
    clean = [run["evidence"] for r in c.records if r["attack"] == "clean" for run in r["runs"]]
    failed = Counter(gate for g in rejected for gate in g.failed_gates)
    best = max(promoted, key=lambda g: g.asr_gain if g.asr_gain is not None else -1.0, default=None)
    return {
        "candidates": len(cands),
        "rejected": len(rejected),
        "failed": failed,
        "poisoned": len(promoted),
        "gains": (min(gains), max(gains)) if gains else None,
        "effective": sum(v >= EFFECTIVE for v in gains),
        "best_seed": best.seed if best is not None and gains else None,
        "index_candidates": sum((g.evidence.get("nc_index") or 0) > index_limit for g in cands),
        "index_clean": sum((e.get("nc_index") or 0) > index_limit for e in clean),
        "clean_runs": len(clean),
        "clean_gap": max((e["nc_gap"] for e in clean if e.get("nc_gap") is not None), default=None),
        "rolled_back": retry_outcomes(c.records)["rolled_back"],
        "collateral": c.summary["clean_collateral_in_poisoned_scenarios"].get("retry", {}).get("gates", 0),
    }


def _stat_cells(s: dict[str, Any]) -> list[object]:
    gains = "-" if s["gains"] is None else f"{s['gains'][0]:+.3f} to {s['gains'][1]:+.3f}"
    failed = s["failed"]
    return [
        f"{s['rejected']} of {s['candidates']}",
        failed["neural_cleanse"],
        failed["sensitivity"],
        failed["accuracy"],
        failed["behaviour"] + failed["canaries"],
        s["poisoned"],
        gains,
        s["effective"],
        f"{s['index_candidates']} of {s['candidates']}",
        f"{s['index_clean']} of {s['clean_runs']}",
        num(s["clean_gap"], 3),
        f"{s['rolled_back']} of {s['poisoned']}",
        s["collateral"],
    ]


def _stats_table(second: dict[str, Any], first: dict[str, Any], labels: tuple[str, str]) -> str:
    limit = parameter_default(neural_cleanse, "anomaly_threshold")
    names = [
        "gates-alone candidates rejected",
        "... with `neural_cleanse` failed",
        "... with `sensitivity` failed",
        "... with `accuracy` failed",
        "... with `behaviour` or `canaries` failed",
        "candidates promoted with poison in their training set",
        "their attack-success gains",
        f"... {EFFECTIVE:.2f} or more (effective)",
        f"candidates with an anomaly index above {limit:g}",
        f"clean fine-tunes (`clean` runs) with one above {limit:g}",
        "largest Neural Cleanse gap of a clean fine-tune",
        "poisoned models the plain retry rolled back",
        "honest contributions held with a rejected run",
    ]
    rows = zip(names, _stat_cells(second), _stat_cells(first), strict=True)
    return markdown_table(["figure", *labels], [list(r) for r in rows])


def gates_section(res: ServiceResults) -> list[str]:
    """``## The gates alone, candidate by candidate``: both campaigns' candidates and counts."""
    second = gate_stats(res.second, res.second)
    first = gate_stats(res.diagnostic, res.first)
    labels = (f"second, seeds {res.second.seeds}", f"first, seeds {res.first.seeds}")
    return [
        "## The gates alone, candidate by candidate",
        "",
        para(
            "The first run of `retry`: an admin's run without the screen on honest images and the",
            "patch poison, so the gates alone decide. *Gain*: attack success of the promoted model",
            "minus the base model's (the first campaign's from its diagnostic rerun; a rejected",
            "candidate never served, so it has none here). Gate evidence: the largest Neural Cleanse",
            "gap (how much more often a reverse-engineered trigger works on the candidate than on the",
            "serving model), its largest anomaly index, the sensitivity test's largest spike, the",
            "largest per-class behaviour shift.",
            keep_percent=False,
        ),
        "",
        _stats_table(second, first, labels),
        "",
        f"Seeds {res.second.seeds}:",
        "",
        candidate_table(res.second),
        "",
        f"Seeds {res.first.seeds} (diagnostic rerun):",
        "",
        candidate_table(res.diagnostic),
        "",
    ]


def _reasons_table(second: Counter, first: Counter, labels: tuple[str, str]) -> str:
    keys = sorted(set(first) | set(second), key=lambda k: (-first[k] - second[k], k))
    rows = [[f"`{k}`", second[k], first[k]] for k in keys]
    rows.append(["all", sum(second.values()), sum(first.values())])
    return markdown_table(["reason (as recorded)", *labels], rows, ["l", "r", "r"])


def _per_seed(c: Campaign) -> str:
    counts = clean_per_seed(c.records)
    sent = sorted({n for _, _, n in counts})
    return f"{min(q for _, q, _ in counts)}-{max(q for _, q, _ in counts)} of {'/'.join(map(str, sent))}"


def _clean_paragraph(res: ServiceResults) -> list[str]:
    first, second = res.first.summary["clean_control"], res.second.summary["clean_control"]
    ours, theirs = clean_reasons(res.diagnostic.records), clean_reasons(res.second.records)
    if ours is None:
        raise ValueError(f"{res.diagnostic.folder} did not record the clean contributions' reasons")
    theirs = theirs or Counter()
    named, alone = flagged_by(ours, "anchored_knn")
    named2, alone2 = flagged_by(theirs, "anchored_knn")
    by = ", ".join(f"{k} {v}" for k, v in sorted(first["by_reason"].items()))
    trusted = res.world.trusted_class_counts
    k, thr = parameter_default(AnchoredKNN, "k"), parameter_default(AnchoredKNN, "threshold")
    labels = (f"second, seeds {res.second.seeds}", f"first (rerun), seeds {res.first.seeds}")
    return [
        para(
            f"**The clean quarantine rate, {pct(first['quarantined'] / first['sent'], 2)} against <= 1 %**",
            f"(the second campaign, with the cap: {pct(second['quarantined'] / second['sent'], 2)}). By",
            f"layer: {by}. The recorded reasons, per campaign:",
            keep_percent=False,
        ),
        "",
        _reasons_table(theirs, ours, labels),
        "",
        para(
            f"The trusted-anchored k-NN (`anchored_knn`) is named in {named} of the first campaign's",
            f"{sum(ours.values())} ({alone} it alone) and in {named2} of the second's",
            f"{sum(theirs.values())} ({alone2} it alone). Per seed, {_per_seed(res.first)} clean",
            f"contributions were quarantined in the first campaign, {_per_seed(res.second)} in the",
            f"second. Without the cap, the anchored detector flags a sample more than {thr:g} robust",
            "standard deviations above the median of the trusted set's own leave-one-out scores",
            f"(k = {k}); with {min(trusted)}-{max(trusted)} trusted images per class (the validation",
            "and test splits) the scores of clean, never-seen digits appear to have a heavier tail",
            "than that rule assumes; the split-conformal cut-off of the second campaign assumes no",
            "shape. These contributions are held for review, not deleted: an admin's release puts",
            "them back.",
            keep_percent=False,
        ),
        "",
    ]


def misses_section(res: ServiceResults) -> list[str]:
    """``## What was missed in the first campaign, and why``."""
    s = gate_stats(res.diagnostic, res.first)
    s2 = gate_stats(res.second, res.second)
    cfg, draws = campaign_settings(), trigger_draws((res.first, res.second))
    h, w = res.world.image_shape[:2]
    shares = "-".join(
        f"{100 * side * side / (h * w):.0f}" for side in (draws["sides"][0], draws["sides"][-1])
    )
    nc = s["failed"].get("neural_cleanse", 0)
    every = f"all {s['rejected']}" if nc == s["rejected"] else f"{nc} of the {s['rejected']}"
    gains = "none" if s["gains"] is None else f"{s['gains'][0]:+.3f} to {s['gains'][1]:+.3f}"
    epochs = default("finetune_epochs")
    return [
        "## What was missed in the first campaign, and why",
        "",
        *_clean_paragraph(res),
        para(
            "**The gates alone let poisoned candidates through.** With the screen off,",
            f"{s['poisoned']} of {s['candidates']} candidates trained on {cfg.poison} patch images",
            f"passed every gate ({s2['poisoned']} of {s2['candidates']} in the second campaign).",
            f"{epochs} fine-tuning epochs at the pipeline's lowered learning rate rarely teach the",
            f"backdoor: the gains of those promotions run {gains}, {s['effective']} of them",
            f"{EFFECTIVE:.2f} or more (seed {s['best_seed']}). A {draws['sizes']} patch covers",
            f"{shares} % of the {h}x{w} image, not much smaller than the masks that reach a class",
            "naturally, so Neural Cleanse's outlier rule separates little here (the anomaly-index",
            "rows above); the comparison with the serving model (a trigger that works at least",
            f"{default('reverse_engineer_gap')} more often on the candidate) failed in {every}",
            "rejected candidates, and other gates joined in on some (the table above). In the",
            "service the gates are the second line: the plain retry re-screened the accepted poison,",
            f"quarantined it, and rolled {s['rolled_back']} of the {s['poisoned']} poisoned models",
            "back to the version trained without it.",
            keep_percent=False,
        ),
        "",
        para(
            f"**Collateral of a rejection.** The {cfg.clean_per_run} honest images trained with the",
            "poison in a rejected `retry` run wait in quarantine with the failed gates as the reason",
            f"({s['collateral']} over {s['rejected']} rejections in the first campaign,",
            f"{s2['collateral']} over {s2['rejected']} in the second): by design, a rejected run's",
            "contributions are not retried automatically.",
            keep_percent=False,
        ),
        "",
        para(
            "**Not covered.** Clean-label attacks (the poison keeps its true label), many sybil",
            f"sources each under the distrust rule's {default('source_flag_min')}-flag minimum,",
            "attacks adapted to the anchored detector, CIFAR-10 (the screen and the gates run there,",
            f"the campaign does not), and the gates against backdoors a {epochs}-epoch fine-tune",
            "learns only partly.",
            keep_percent=False,
        ),
        "",
    ]
