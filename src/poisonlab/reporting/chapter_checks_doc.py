"""The robustness-test and adversarial-training sections of ``docs/results/chapter.md``.

The chapter's "Robustness Tests Against Poisoning" (canary records, ART perturbations) and its
"Adversarial Training" run as optional blocks of a chapter experiment
(:mod:`poisonlab.experiments.single.robustness`, :mod:`poisonlab.experiments.single.mitigation`);
their ``results.json`` carries ``summary.robustness`` and ``summary.mitigation``, each figure an
:func:`~poisonlab.experiments.common.measure.aggregate` entry (mean, sample std, Student-t
interval over seeds; Wilson over the canaries / test images). These tables read those entries
only: nothing is recomputed, so the page shows what the run reported. Runs without the blocks
add nothing (the page is unchanged).
"""

from __future__ import annotations

from collections.abc import Mapping

from poisonlab.experiments.single.robustness import SCALAR_BOUNDS
from poisonlab.reporting.results_docs import markdown_table
from poisonlab.reporting.stats import Difference, mean_interval, rate_difference

__all__ = ["checks_sections"]

_MODELS = ("clean", "poisoned", "mitigated", "control")
_ROBUSTNESS = {
    "canary_failures": "canaries misclassified",
    "sensitivity_flagged": "trigger test flagged (share of models)",
    "sensitivity_spikes": "trigger test spikes (trigger, class -> class)",
}
_MITIGATION = {
    "clean_accuracy": "clean accuracy",
    "attack_success_rate": "ASR",
    "source_to_target": "airplanes -> bird",
}


def _cell(entry: Mapping | None, digits: int = 3, bounds: tuple[float, float] | None = None) -> str:
    """``mean`` for one run, ``mean (low to high)`` with the t interval over several; ``-`` absent.

    With ``bounds`` the interval is recomputed from the recorded values and cut to that range
    (files written before the cut, e.g. a count of failed canaries, recorded a negative end)."""
    if not entry or entry.get("mean") is None:
        return "-"
    mean = f"{entry['mean']:.{digits}g}" if digits else f"{entry['mean']:.0f}"
    if entry.get("ci_low") is None:
        return f"{mean} (1 run)"
    low, high = entry["ci_low"], entry["ci_high"]
    if bounds is not None and entry.get("values"):
        stat = mean_interval(entry["values"], bounds=bounds)
        low, high = stat.low, stat.high
    return f"{mean} ({low:.{digits}g} to {high:.{digits}g}, n={entry['n']})"


def robustness_table(runs: Mapping[str, dict]) -> str | None:
    """Canary failures and trigger-sensitivity results per experiment and model; None without any."""
    rows = []
    for name, data in runs.items():
        summary = data.get("summary", {}).get("robustness")
        if not summary:
            continue
        for key, label in _ROBUSTNESS.items():
            cells = [
                _cell((summary.get(model) or {}).get(key), bounds=SCALAR_BOUNDS.get(key)) for model in _MODELS
            ]
            if any(c != "-" for c in cells):
                n = (summary.get("clean") or {}).get("canary_accuracy", {}).get("binomial", {}).get("n")
                shown = f"{label} (of {n})" if key == "canary_failures" and n else label
                rows.append([name, shown, *cells])
    if not rows:
        return None
    return markdown_table(["experiment", "figure", *_MODELS], rows)


def _test_image_difference(summary: Mapping, key: str) -> Difference | None:
    """One run: Newcombe's interval of mitigated minus control over the test images, from the
    two models' recorded counts (None where a count is missing). The two models are scored on the
    same images and taken as independent, which makes the interval wider than a paired one."""
    counts = [((summary.get(m) or {}).get(key) or {}).get("binomial") for m in ("mitigated", "control")]
    if any(not c or not c.get("n") for c in counts):
        return None
    (a, b) = counts
    return rate_difference(int(a["successes"]), int(a["n"]), int(b["successes"]), int(b["n"]))


def mitigation_table(runs: Mapping[str, dict]) -> str | None:
    """Poisoned, adversarially fine-tuned and control models, and the per-seed difference
    mitigated minus control with its t interval; None without any mitigation."""
    rows = []
    for name, data in runs.items():
        summary = data.get("summary", {}).get("mitigation")
        if not summary:
            continue
        for key, label in _MITIGATION.items():
            if key not in (summary.get("poisoned") or {}):
                continue
            cells = [_cell(summary[m].get(key)) for m in ("poisoned", "mitigated", "control")]
            diff = (summary.get("mitigated_minus_control") or {}).get(key)
            shown, outside = _cell(diff), "-"
            if diff and diff.get("ci_low") is not None:
                outside = "yes" if diff["ci_low"] > 0 or diff["ci_high"] < 0 else "no"
            elif (single := _test_image_difference(summary, key)) is not None:
                # a count (airplanes -> bird) is shown in images, a rate as a rate
                n = summary["mitigated"][key]["binomial"]["n"] if summary["mitigated"][key]["mean"] > 1 else 1
                low, high = (f"{n * v:+.0f}" if n > 1 else f"{v:+.3f}" for v in (single.low, single.high))
                shown = f"{shown}; {low} to {high} over the test images"
                outside = "yes" if single.excludes_zero else "no"
            rows.append([name, label, *cells, shown, outside])
    if not rows:
        return None
    header = ["experiment", "figure", "poisoned", "adversarially fine-tuned", "plain fine-tune (control)",
              "fine-tuned minus control", "0 outside the interval"]  # fmt: skip
    return markdown_table(header, rows)


def checks_sections(runs: Mapping[str, dict]) -> list[str]:
    """The page's lines for the two sections (an empty list when no run has either block)."""
    parts: list[str] = []
    robustness = robustness_table(runs)
    if robustness is not None:
        parts += [
            "## Robustness tests (canaries, ART-style trigger test)",
            "",
            "Canaries: the clean model's highest-margin held-out images per class, checked on every",
            "model of the run; a failure is a misclassified canary. Trigger test: each known trigger",
            "stamped on clean test images; flagged when one class sends at least half of its images",
            "to one other class beyond the model's own confusion. Mean (t interval over seeds).",
            "",
            robustness,
            "",
        ]
    mitigation = mitigation_table(runs)
    if mitigation is not None:
        parts += [
            "## Adversarial training",
            "",
            "Each poisoned model fine-tuned on a trusted share of the validation split with",
            "triggered copies that keep their true labels, beside a plain fine-tune on the same",
            "share (the control): what the triggered copies add is the last two columns. Over seeds",
            "the difference is the mean of each seed's fine-tuned minus control with its t interval",
            "(paired: both fine-tune the same seed's poisoned model). A single run's difference gets",
            "Newcombe's 95 % interval over the test images (the two models are scored on the same",
            "images and taken as independent: wider than a paired interval), not over training runs,",
            "which one run cannot show.",
            "",
            mitigation,
            "",
        ]
    return parts
