"""The interval table of a single run's report: every metric of the clean model(s) and the
poisoned models with the sample std, the Student-t interval over seeds and the Wilson interval
over the test images (issue 14). Also the metric labels and number formats the report shares.
"""

from __future__ import annotations

from poisonlab.experiments.single.records import ExperimentResult

__all__ = ["INTERVAL_HEADER", "LABELS", "fmt_stat", "interval_rows", "num"]

LABELS = {
    "clean_accuracy": "clean test accuracy",
    "attack_success_rate": "attack success rate",
    "mixed_accuracy": "accuracy on clean + triggered test set",
    "source_to_target": "test {src} predicted as {tgt}",
}


def num(key: str, value: float) -> str:
    """A figure as the report prints it: a count whole, a rate to 4 decimals."""
    return f"{value:.0f}" if key == "source_to_target" else f"{value:.4f}"


def fmt_stat(key: str, stat: dict | None) -> str:
    """``mean`` for one seed, ``mean ± std`` (sample std) over several."""
    if stat is None:
        return "-"
    if len(stat["values"]) == 1 or stat.get("std") is None:
        return num(key, stat["mean"])
    return (
        f"{stat['mean']:.4g} ± {stat['std']:.2g}"
        if key == "source_to_target"
        else (f"{stat['mean']:.4f} ± {stat['std']:.4f}")
    )


#: columns of :func:`interval_rows`
INTERVAL_HEADER = [
    "metric",
    "model",
    "seeds",
    "mean ± sample std",
    "95% interval of the mean over seeds (Student t)",
    "95% interval over the test images (Wilson, one model at the mean rate)",
]


def _interval_cells(key: str, stat: dict) -> list[str]:
    """Seeds, mean ± std, t interval, Wilson interval of one aggregated metric (see
    :func:`poisonlab.experiments.common.measure.aggregate`)."""
    n = stat.get("n", len(stat["values"]))
    spread = fmt_stat(key, stat) if n > 1 else f"{num(key, stat['mean'])} (single run)"
    if stat.get("ci_low") is None:
        t_cell = "- (single run: no spread to estimate)"
    else:
        t_cell = f"{num(key, stat['ci_low'])} - {num(key, stat['ci_high'])}"
    binomial = stat.get("binomial")
    if binomial is None:
        w_cell = "-"
    else:
        scale = binomial["n"] if key == "source_to_target" else 1.0  # a count: images of one model
        lo, hi = binomial["ci_low"] * scale, binomial["ci_high"] * scale
        w_cell = f"{num(key, lo)} - {num(key, hi)} (n = {binomial['n']:,})"
    return [str(n), spread, t_cell, w_cell]


def interval_rows(result: ExperimentResult) -> list[list[str]]:
    """Rows of the interval table (:data:`INTERVAL_HEADER`): every metric of the clean model(s)
    and of the poisoned models, with the sample std, the t interval over seeds and the binomial
    interval over the test images.

    The two intervals answer different questions: the t interval is how much the figure moves
    between replicates (seeds); the Wilson interval how much it would move on another test set
    of the same size, for a fixed model. A count (test airplanes predicted bird) is shown per
    model, its Wilson interval scaled from the mean rate.
    """
    summary = result.summary()
    names = result.splits.class_names
    t = result.targets
    shared = summary["baseline"] == "shared"
    rows = []
    for key, label in LABELS.items():
        if key == "source_to_target":
            if t.source is None or t.target is None:
                continue
            label = label.format(src=names[t.source], tgt=names[t.target])
        for model, stats in (("clean", summary["clean_stats"]), ("poisoned", summary["poisoned"])):
            if key in stats:
                what = "clean (shared)" if model == "clean" and shared else model
                rows.append([label, what, *_interval_cells(key, stats[key])])
    return rows
