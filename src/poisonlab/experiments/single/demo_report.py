"""What ``poisonlab demo`` writes: each run's results and report, the scan report of the
backdoored set, ``summary.md``/``summary.html`` tying them together, and ``run.json``.

The summary says what each table shows, gives every attack a verdict (effective or not, and the
figures why: its success on the poisoned model beside the clean model's, with the clean accuracy
beside it) and says whether the default screen caught the backdoor (recall and false-positive
rate). The ASR sits beside the poisoned model's clean accuracy and is marked not meaningful when
that accuracy is at chance level (:mod:`poisonlab.reporting.success`).
"""

from __future__ import annotations

from pathlib import Path

from poisonlab.defenses.scan import ScanResult
from poisonlab.defenses.scan.report import write_scan_report
from poisonlab.experiments.single.demo import DemoResult, InjectedHits
from poisonlab.experiments.single.records import ExperimentResult
from poisonlab.experiments.single.report import write_experiment
from poisonlab.provenance import claim_run_dir, run_record, write_run_json
from poisonlab.reporting import Report
from poisonlab.reporting.success import NOT_MEANINGFUL, accuracy_change, chance_note, meaningful

__all__ = [
    "ATTACKS_LOOKING_AT",
    "CAUGHT_MAX_FPR",
    "CAUGHT_MIN_RECALL",
    "EFFECT_MARGIN",
    "attack_verdict",
    "attack_verdicts",
    "scan_looking_at",
    "scan_rows",
    "screen_verdict_line",
    "silent_detectors_line",
    "summary_rows",
    "write_demo",
]

#: Folder of the scan report, inside the demo's output folder.
SCAN_DIR = "scan-backdoor"
#: An attack is effective when its success rate beats the clean model's by at least this much.
EFFECT_MARGIN = 0.2
#: The screen caught the poison when it flags at least this share of it ...
CAUGHT_MIN_RECALL = 0.9
#: ... and at most this share of the clean samples (flagging everything catches nothing).
CAUGHT_MAX_FPR = 0.05

ATTACKS_LOOKING_AT = (
    "What you are looking at: one row per attack. 'clean acc' is the clean model's test accuracy, "
    "'poisoned acc' the attacked model's (a stealthy attack keeps it); ASR (attack success rate) is "
    "the share of triggered test images, trigger stamped on images of the source class, that the "
    "backdoored model puts in the target class; src->tgt counts clean test images of the source "
    "class predicted as the target, by the clean model -> by the poisoned one."
)


def _collapsed(result: ExperimentResult) -> bool:
    """Whether a poisoned model of ``result`` is at chance level on clean data."""
    k = len(result.splits.class_names)
    return any(not meaningful(r.measurement.clean_accuracy, k) for r in result.runs)


def summary_rows(results: list[ExperimentResult]) -> list[list[str]]:
    """One row per run: name, clean and poisoned accuracy, ASR, source->target, report path.

    The ASR follows the poisoned accuracy it depends on; it reads ``"(not meaningful)"`` when a
    poisoned model is at chance level on clean data.
    """
    rows = []
    for r in results:
        s = r.summary()
        p = s["poisoned"]
        asr = p.get("attack_success_rate")
        st_clean = s["clean"].get("source_to_target")
        st_pois = p.get("source_to_target")
        asr_cell = "-" if asr is None else f"{asr['mean']:.4f}"
        if asr is not None and _collapsed(r):
            asr_cell += f" ({NOT_MEANINGFUL})"
        rows.append(
            [
                r.config.name,
                f"{s['clean']['clean_accuracy']:.4f}",
                f"{p['clean_accuracy']['mean']:.4f}",
                asr_cell,
                "-" if st_pois is None else f"{st_clean:.0f} -> {st_pois['mean']:.0f}",
                f"{r.config.name}/report.html",
            ]
        )
    return rows


def _class_names(run: ExperimentResult) -> tuple[str, str]:
    names, t = run.splits.class_names, run.targets
    source = "?" if t.source is None else names[t.source]
    return source, "?" if t.target is None else names[t.target]


def _effect(run: ExperimentResult, hits: InjectedHits | None) -> tuple[float, str, str] | None:
    """(gain over the clean model, the figures, why it failed) of one attack; None: not measured."""
    s, (source, target) = run.summary(), _class_names(run)
    asr = s["poisoned"].get("attack_success_rate")
    if asr is not None:
        clean_asr = s["clean"].get("attack_success_rate", 0.0)
        figures = (
            f"{asr['mean']:.0%} of triggered test '{source}' images are classified '{target}' "
            f"(attack success; clean model: {clean_asr:.0%})"
        )
        return asr["mean"] - clean_asr, figures, "the model did not learn the trigger"
    if hits is None or hits.total == 0:
        return None
    figures = (
        f"{hits.mean_poisoned:.0f} of {hits.total} injected images labelled '{target}' are now "
        f"classified '{target}' (clean model: {hits.clean} of {hits.total})"
    )
    spread = s["poisoned"].get("source_to_target")
    if spread is not None and run.targets.source is not None:
        n_source = int((run.splits.test.y == run.targets.source).sum())
        figures += (
            f", and {spread['mean']:.0f} of {n_source} clean test '{source}' images with them "
            f"(clean model: {s['clean']['source_to_target']:.0f})"
        )
    return (hits.mean_poisoned - hits.clean) / hits.total, figures, "the fine-tune did not learn them"


def attack_verdict(run: ExperimentResult, hits: InjectedHits | None = None) -> str:
    """One line: is the attack of ``run`` effective, and the figures why.

    Effective means its success (a backdoor's ASR; a mislabel injection's injected images given
    the attacker's label, ``hits``) beats the clean model's by :data:`EFFECT_MARGIN` or more, on
    a poisoned model that is not at chance level. The clean accuracy change follows.
    """
    s = run.summary()
    clean_acc, acc = s["clean"]["clean_accuracy"], s["poisoned"]["clean_accuracy"]["mean"]
    accuracy = accuracy_change(clean_acc, acc)
    name = run.config.name
    if _collapsed(run):
        return (
            f"{name}: NOT MEANINGFUL: the poisoned model is at chance level ({accuracy}); it predicts "
            "(nearly) one class for everything, so no success figure means anything"
        )
    effect = _effect(run, hits)
    if effect is None:
        return f"{name}: not measured: the demo has no success measure for this attack; {accuracy}"
    gain, figures, why = effect
    if gain >= EFFECT_MARGIN:
        return f"{name}: EFFECTIVE: {figures}; {accuracy}"
    return f"{name}: NOT effective ({why}): {figures}; {accuracy}"


def attack_verdicts(result: DemoResult) -> list[str]:
    """:func:`attack_verdict` of every run of the demo, in order."""
    return [attack_verdict(r, result.injected.get(r.config.name)) for r in result.results]


def scan_rows(scanned: ScanResult) -> list[list[str]]:
    """One row per defense: name, flagged count, precision, recall, F1, AUROC."""

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    keys = ("precision", "recall", "f1", "auroc")
    rows = [[m.name, str(int(m.flagged.sum())), *(fmt(m.metrics[k]) for k in keys)] for m in scanned.methods]
    if scanned.screen is not None:
        v = scanned.screen
        rows.append(["screen (combined)", str(int(v.flagged.sum())), *(fmt(v.metrics[k]) for k in keys)])
    return rows


def scan_looking_at(scanned: ScanResult) -> str:
    """What the scan table shows, in one paragraph."""
    return (
        f"What you are looking at: the backdoored training set ({len(scanned.dataset)} samples) screened by "
        f"{len(scanned.methods)} defenses on one shared forward pass of the backdoored model, the "
        "validation split as the trusted clean reference. 'flagged' is how many samples each defense "
        "calls poison; precision, recall and F1 compare those flags with the attack's real poison "
        "mask, AUROC how well its scores rank poison above clean samples without any threshold "
        "(0.5 = chance). The last row is the default screen's verdict, decided without the ground "
        "truth. provenance knows each sample's source tag and the poison arrives under its own tag "
        "here, so its score is an upper bound, not a detection."
    )


#: AUROC from which a detector that flagged nothing is said to rank the poison high all the same
RANKS_WELL = 0.8


def silent_detectors_line(scanned: ScanResult) -> str | None:
    """A sentence on the detectors that flagged none of the poison (None when every one found some):
    those that do not even rank it high, and those whose ranking is good but whose threshold fired
    on none of it."""
    silent = [m for m in scanned.methods if m.metrics is not None and not m.metrics.get("recall")]
    if not silent:
        return None

    def group(ms: list) -> str:
        aurocs = [m.metrics["auroc"] for m in ms if m.metrics.get("auroc") is not None]
        low, high = (f"{min(aurocs):.2f}", f"{max(aurocs):.2f}") if aurocs else ("", "")
        span = "" if not aurocs else f" (AUROC {low})" if low == high else f" (AUROC {low}-{high})"
        return ", ".join(m.name for m in ms) + span

    blind = [m for m in silent if (m.metrics.get("auroc") or 0.0) < RANKS_WELL]
    ranking = [m for m in silent if m not in blind]
    parts = []
    if blind:
        parts.append(
            f"{group(blind)} {'does' if len(blind) == 1 else 'do'} not rank it high: this poison forms "
            "no separate cluster or direction in what they look at in this model"
        )
    if ranking:
        one = len(ranking) == 1
        parts.append(
            f"{group(ranking)} {'ranks' if one else 'rank'} it high, but "
            f"{'its threshold' if one else 'their thresholds'} fired on none of it"
        )
    return (
        "Flagged none of the poison: " + "; ".join(parts) + ". The screen combines detectors so that "
        "it does not depend on any one of them: see its verdict."
    )


def screen_verdict_line(scanned: ScanResult) -> str:
    """One sentence: did the default screen catch the poison, with recall and false-positive rate.

    Caught means a recall of at least :data:`CAUGHT_MIN_RECALL` at a false-positive rate of at
    most :data:`CAUGHT_MAX_FPR`.
    """
    v = scanned.screen
    mask = scanned.dataset.poison_mask
    if v is None or mask is None or not mask.any():
        return "The screen did not run on a set with known poison: no verdict."
    caught, total = int((v.flagged & mask).sum()), int(mask.sum())
    false, clean = int((v.flagged & ~mask).sum()), int((~mask).sum())
    recall, fpr = caught / total, false / max(clean, 1)
    figures = (
        f"{caught} of {total} poisoned samples flagged (recall {recall:.2f}), {false} of {clean} clean "
        f"samples flagged (false-positive rate {fpr:.1%})"
    )
    if recall >= CAUGHT_MIN_RECALL and fpr <= CAUGHT_MAX_FPR:
        return f"Verdict: the default screen CAUGHT the backdoor: {figures}."
    return (
        f"Verdict: the default screen did NOT catch the backdoor: {figures}; it needs recall >= "
        f"{CAUGHT_MIN_RECALL:.2f} at a false-positive rate <= {CAUGHT_MAX_FPR:.0%}. Where it misses, the "
        "poison does not separate in this model's features (see the per-detector AUROC), the open "
        "problem of docs/results/detection.md."
    )


def _summary_report(result: DemoResult) -> Report:
    report = Report(f"poisonlab demo on {result.dataset}")
    report.paragraph(ATTACKS_LOOKING_AT)
    report.table(
        ["experiment", "clean acc", "poisoned acc", "ASR", "source->target (clean -> poisoned)", "report"],
        summary_rows(result.results),
    )
    collapsed = [r for r in result.results if _collapsed(r)]
    if collapsed:
        report.paragraph(chance_note(len(collapsed[0].splits.class_names)))
    report.heading("Verdicts", 2)
    for line in attack_verdicts(result):
        report.paragraph(line)
    report.heading("Detecting the backdoor's poison", 2)
    report.paragraph(scan_looking_at(result.scan) + f" Full report: {SCAN_DIR}/report.html")
    report.paragraph(screen_verdict_line(result.scan))
    report.table(["defense", "flagged", "precision", "recall", "F1", "AUROC"], scan_rows(result.scan))
    silent = silent_detectors_line(result.scan)
    if silent:
        report.paragraph(silent)
    return report


def write_demo(result: DemoResult, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write every report of the demo into ``out_dir``; return ``summary.html``.

    Each run goes to ``<experiment name>/`` (as ``poisonlab run`` writes it), the scan to
    ``scan-backdoor/``, the summary and ``run.json`` next to them. A folder holding an earlier
    demo's ``run.json`` is refused (FileExistsError) unless ``overwrite`` is True.
    """
    out = claim_run_dir(out_dir, overwrite=overwrite)
    for run in result.results:
        write_experiment(run, out / run.config.name, overwrite=overwrite)
    first = result.results[0].runs[0]
    write_scan_report(result.scan, out / SCAN_DIR, top=30, model_info={"id": first.model_id})
    page = _summary_report(result).write(out, stem="summary")[1]
    runs = {r.config.name: r.config.model_dump(mode="json", exclude={"base_dir"}) for r in result.results}
    extra = {"dataset": result.dataset, "verdicts": attack_verdicts(result)}
    write_run_json(out, run_record("demo", config=runs, extra=extra))
    return page
