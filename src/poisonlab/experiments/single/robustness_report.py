"""The report sections of a run's robustness tests and mitigation (only for the blocks present).

Rows for the console/result table (:func:`robustness_metric_rows`) and full sections for
``report.md``/``report.html`` (:func:`write_robustness_sections`): canary failures per model and
class, the trigger-sensitivity spikes, the external photos under every trigger, and the poisoned,
mitigated and control models side by side with the per-seed differences and their t interval.
"""

from __future__ import annotations

from poisonlab.experiments.common.measure import aggregate
from poisonlab.experiments.single.intervals import LABELS, fmt_stat, num
from poisonlab.experiments.single.records import ExperimentResult
from poisonlab.reporting import Report

__all__ = ["robustness_metric_rows", "write_robustness_sections"]


def _canary_cell(checks: list[dict]) -> str:
    """``0 of 50`` for one model, ``mean ± std of 50`` failures over several."""
    reps = [c["canaries"] for c in checks if c and "canaries" in c]
    if not reps:
        return "-"
    fails = [float(r["n_failures"]) for r in reps]
    n = reps[0]["n_canaries"]
    if len(fails) == 1:
        return f"{fails[0]:.0f} of {n}"
    stat = aggregate([{"failures": f} for f in fails])["failures"]
    return f"{stat['mean']:.3g} ± {stat['std']:.2g} of {n}"  # a count: no fixed decimals


def _sensitivity_cell(checks: list[dict]) -> str:
    """``passed`` / ``flagged (3 spikes)`` for one model, ``flagged in k of n`` over several."""
    reps = [c["sensitivity"] for c in checks if c and "sensitivity" in c]
    if not reps:
        return "-"
    if len(reps) == 1:
        r = reps[0]
        n = len(r["spikes"])
        return "passed" if r["passed"] else f"flagged ({n} spike{'s' * (n > 1)})"
    return f"flagged in {sum(not r['passed'] for r in reps)} of {len(reps)}"


def robustness_metric_rows(result: ExperimentResult) -> list[list[str]]:
    """Rows ``[metric, clean model, poisoned model]`` for the result table: canaries failed, the
    sensitivity verdict and, with a mitigation, each metric as ``poisoned -> mitigated (control)``;
    empty when the config has neither block."""
    rows: list[list[str]] = []
    if result.config.robustness is not None:
        poisoned = [r.checks or {} for r in result.runs]
        cleans = result.clean_check_list()
        if result.config.robustness.canaries is not None:
            rows.append(["canaries misclassified", _canary_cell(cleans), _canary_cell(poisoned)])
        if result.config.robustness.sensitivity is not None:
            rows.append(["trigger-sensitivity test", _sensitivity_cell(cleans), _sensitivity_cell(poisoned)])
    if result.config.mitigation is not None:
        mit = result.summary()["mitigation"]
        for key, stat in mit["poisoned"].items():
            if key not in LABELS or key == "mixed_accuracy":
                continue
            label = _label(result, key)
            cell = (
                f"{fmt_stat(key, stat)} -> {fmt_stat(key, mit['mitigated'].get(key))} adversarial training "
                f"({fmt_stat(key, mit['control'].get(key))} plain fine-tune)"
            )
            rows.append([f"{label}, after mitigation", "", cell])
    return rows


def _label(result: ExperimentResult, key: str) -> str:
    names, t = result.splits.class_names, result.targets
    label = LABELS[key]
    return label.format(src=names[t.source], tgt=names[t.target]) if key == "source_to_target" else label


def _models(result: ExperimentResult) -> list[tuple[str, dict | None]]:
    """(model name, robustness checks) of every model of the run, in the order of the report."""
    out = [("clean", result.clean_checks)]
    out += [(f"clean, seed {r.seed}", r.clean_checks) for r in result.runs if r.clean_checks is not None][1:]
    for r in result.runs:
        out.append((f"poisoned, seed {r.seed}", r.checks))
        if r.mitigation is not None:
            out.append((f"adversarially fine-tuned, seed {r.seed}", r.mitigation.mitigated_checks))
            out.append((f"plain fine-tune (control), seed {r.seed}", r.mitigation.control_checks))
    return out


def _spikes(rep: dict) -> str:
    if not rep["spikes"]:
        return "-"
    return "; ".join(
        f"{s['trigger']}: {s['source_name']} -> {s['target_name']} "
        f"{s['rate']:.2f} (base {s['base_rate']:.2f})"
        for s in rep["spikes"]
    )


def _robustness_tables(report: Report, result: ExperimentResult) -> None:
    setup = result.robustness_setup or {}
    models = [(name, c) for name, c in _models(result) if c]
    if "canaries" in setup:
        c = setup["canaries"]
        report.heading("Canary records", level=3)
        report.paragraph(
            f"{c['per_class']} canaries per class from the {c['split']} split, picked by the clean "
            f"model {c['picked_by']} ({c['rule']}); their indices are in results.json. A model "
            "fails when it misclassifies any of them."
        )
        rows = [
            [name, f"{ch['canaries']['n_failures']} of {ch['canaries']['n_canaries']}",
             ", ".join(f"{k} ({v})" for k, v in ch["canaries"]["failures_per_class"].items()) or "-"]
            for name, ch in models
        ]  # fmt: skip
        report.table(["model", "canaries misclassified", "classes failed (count)"], rows)
    if "sensitivity" in setup:
        s = setup["sensitivity"]
        report.heading("Trigger sensitivity (ART perturbations)", level=3)
        report.paragraph(
            f"Each trigger stamped on {s['images']} clean test images; a class of which at least "
            f"{result.config.robustness.sensitivity.spike_threshold:.0%} more is sent to one other "
            "class than without the trigger is a spike (rate with the trigger, base rate without)."
        )
        rows = [
            [name, "passed" if ch["sensitivity"]["passed"] else "flagged", _spikes(ch["sensitivity"])]
            for name, ch in models
        ]
        report.table(["model", "verdict", "spikes"], rows)


def _photo_table(report: Report, result: ExperimentResult) -> None:
    first = result.runs[0]
    cols = [("clean model", result.clean_checks), (f"poisoned (seed {first.seed})", first.checks)]
    if first.mitigation is not None:
        cols.append(("adversarially fine-tuned", first.mitigation.mitigated_checks))
    tables = [
        {(e["image"], e["trigger"]): e for e in (c or {}).get("external_triggers", [])} for _, c in cols
    ]
    rows = [
        [image, trigger, *(_photo(t.get((image, trigger))) for t in tables)] for image, trigger in tables[0]
    ]
    report.heading("External photos with every trigger", level=3)
    report.table(["image", "trigger", *(name for name, _ in cols)], rows)


def _photo(entry: dict | None) -> str:
    if entry is None:
        return "-"
    if "skipped" in entry:  # the trigger cannot be applied to the photo (reason in results.json)
        return "skipped"
    return f"{entry['prediction']} ({entry['probability']:.2f})"


def _mitigation_tables(report: Report, result: ExperimentResult) -> None:
    spec = result.config.mitigation
    mit = result.summary()["mitigation"]
    report.heading("Mitigation: adversarial training")
    report.paragraph(
        f"Each poisoned model fine-tuned {spec.epochs} epochs on {spec.trusted_size} trusted clean "
        f"validation images plus triggered copies of {spec.fraction:.0%} of them per trigger, true "
        "labels kept (adversarial training); the control fine-tunes the same model on the same "
        "images without the copies. Mean ± sample std over seeds; the differences are per seed, "
        "with their 95% t interval (two seeds or more)."
    )
    rows = []
    for key, stat in mit["poisoned"].items():
        if key not in LABELS:
            continue
        rows.append(
            [_label(result, key), fmt_stat(key, stat), fmt_stat(key, mit["mitigated"].get(key)),
             fmt_stat(key, mit["control"].get(key)), _diff(key, mit["mitigated_minus_poisoned"].get(key)),
             _diff(key, mit["mitigated_minus_control"].get(key))]
        )  # fmt: skip
    header = ["metric", "poisoned", "adversarially fine-tuned", "plain fine-tune (control)",
              "mitigated - poisoned", "mitigated - control"]  # fmt: skip
    report.table(header, rows)


def _diff(key: str, stat: dict | None) -> str:
    if stat is None:
        return "-"
    text = f"{stat['mean']:+.4f}" if key != "source_to_target" else f"{stat['mean']:+.1f}"
    if stat.get("ci_low") is None:
        return text
    return f"{text} [{num(key, stat['ci_low'])}, {num(key, stat['ci_high'])}]"


def write_robustness_sections(report: Report, result: ExperimentResult) -> None:
    """Add the sections of the blocks the config has (nothing without them)."""
    rob = result.config.robustness
    if rob is not None:
        report.heading("Robustness tests")
        _robustness_tables(report, result)
        if rob.external_triggers:
            _photo_table(report, result)
    if result.config.mitigation is not None:
        _mitigation_tables(report, result)
