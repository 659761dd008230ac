"""The tables of ``docs/results/clean_label.md`` from the benchmark runs' ``results.json``.

The page is generated whole by :func:`poisonlab.reporting.clean_label_page.clean_label_markdown`
(``benchmarks/clean_label_table.py`` writes it, ``tests/reporting/test_clean_label_doc.py``
fails when the committed page differs); its prose is in :mod:`.clean_label_setup` and
:mod:`.clean_label_findings`. Every function takes the runs' data in page order (one
``results.json`` per run, or several seeds of one setting pooled by
:func:`poisonlab.experiments.clean_label.records.pool_seeds`); a row's setting column is the run's
label (:func:`~.clean_label_runs.label_runs`: a later run of a setting is named apart).

Success counts and rates leave out the trials whose victim collapsed (its clean accuracy fell
far below the clean victim's, :data:`~poisonlab.experiments.clean_label.report.COLLAPSE_MARGIN`);
those trials have their own table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from poisonlab.experiments.clean_label.report import (
    COLLAPSE_MARGIN,
    collapsed,
    mean_detection,
    mean_victim_accuracy,
    summarize_data,
    victim_accuracy,
)
from poisonlab.reporting.clean_label_runs import label_runs, placebo_row, setting_label, unbounded
from poisonlab.reporting.prose import pct
from poisonlab.reporting.results_docs import markdown_table
from poisonlab.reporting.stats import mean_interval, rate_difference

__all__ = [
    "KINDS",
    "accuracy_table",
    "auroc_cells",
    "auroc_table",
    "collapsed_table",
    "detection_table",
    "doc_tables",
    "paired_table",
    "setting_difference_table",
    "success_table",
]

KINDS = ("feature_collision", "clean_label_backdoor", "hidden_trigger", "gradient_matching")

Run = Mapping[str, Any]


def success_table(runs: Sequence[Run]) -> str:
    """Per setting and attack: successes among the trials whose victim trained, the 95 % Wilson
    interval, the collapsed victims left out, the control and the published average (eps
    ``none`` for a row without an L-inf budget; a placebo row's attack cell says it is the
    control)."""
    rows = []
    for run in label_runs(runs):
        clean = run["clean"]
        for r in summarize_data(run):
            lo, hi = r["interval"]
            rate = "-" if r["success_rate"] is None else f"{100 * r['success_rate']:.0f}%"
            eps = f"{r['eps'] * 255:.0f}/255"
            rows.append(
                [
                    setting_label(run),
                    # a placebo row is the control of the attacks, and reads as one
                    f"{r['attack']} ({r['kind']}, control)" if placebo_row(r) else r["attack"],
                    f"none ({eps})" if unbounded(r["eps"]) else eps,
                    f"{clean['poisons']} / {clean['train_size']}",
                    f"{r['successes']}/{r['counted']}",
                    f"{rate} ({100 * lo:.0f}-{100 * hi:.0f}%)",
                    str(len(r["collapsed"])),
                    f"{r['control']}/{r['trials']}",
                    "-" if r["published"] is None else f"{r['published']:.1f}%",
                ]
            )
    header = [
        "setting",
        "attack",
        "eps",
        "poisons / train",
        "successes (victims that trained)",
        "rate (95% Wilson)",
        "collapsed victims (left out)",
        "control",
        "published avg",
    ]
    return markdown_table(header, rows)


def collapsed_table(runs: Sequence[Run]) -> str:
    """Every trial whose victim collapsed: its clean accuracy beside the clean victim's."""
    rows = [
        [
            setting_label(run),
            str(row["trial"]) + (f" (seed {row['seed']})" if "seed" in row else ""),
            row["attack"],
            f"{row['clean_accuracy']:.3f}",
            f"{victim_accuracy(run, row):.3f}",
            "yes" if row["success"] else "no",
        ]
        for run in label_runs(runs)
        for row in run["trials"]
        if collapsed(run, row)
    ]
    header = ["setting", "trial", "attack", "victim's clean accuracy", "clean victim", "success"]
    return markdown_table(header, rows) if rows else f"(no victim fell more than {COLLAPSE_MARGIN:.2f} below)"


def accuracy_table(runs: Sequence[Run]) -> str:
    """Mean clean accuracy of the victims that trained, per setting and attack, and the
    backdoor rates (the clean model's in brackets)."""
    runs = label_runs(runs)
    names: list[str] = []
    backdoors: list[str] = []
    for run in runs:
        for r in summarize_data(run):
            names += [r["attack"]] if r["attack"] not in names else []
            if r["backdoor_rate"] is not None and r["attack"] not in backdoors:
                backdoors.append(r["attack"])
    rows = []
    for run in runs:
        by_name = {r["attack"]: r for r in summarize_data(run)}
        cells = [setting_label(run), f"{mean_victim_accuracy(run):.3f}"]
        for name in names:
            r = by_name.get(name)
            cells.append("-" if r is None or r["clean_accuracy"] is None else f"{r['clean_accuracy']:.3f}")
        for name in backdoors:
            r = by_name.get(name)
            cells.append(
                "-"
                if r is None or r["backdoor_rate"] is None
                else f"{pct(r['backdoor_rate'], 1, sep='')} ({pct(r['backdoor_rate_clean'], 1, sep='')})"
            )
        rows.append(cells)
    header = ["setting", "clean victim", *names, *(f"{n} backdoor rate" for n in backdoors)]
    return markdown_table(header, rows)


def detection_table(runs: Sequence[Run]) -> str:
    """Mean F1 / recall / AUROC of every defense per attack kind, over every trial of every run."""
    trials = [r for run in runs for r in run["trials"]]
    per_kind = {kind: mean_detection([r for r in trials if r["kind"] == kind]) for kind in KINDS}
    defenses = sorted({name for det in per_kind.values() for name in det})
    rows = [
        [
            kind,
            *(
                " / ".join(
                    "-" if det.get(n, {}).get(k) is None else f"{det[n][k]:.2f}"
                    for k in ("f1", "recall", "auroc")
                )
                for n in defenses
            ),
        ]
        for kind, det in per_kind.items()
    ]
    return markdown_table(["attack", *defenses], rows)


def _auroc_cell(run: Run, spec: Mapping[str, Any], name: str, det: Mapping[str, Any]) -> dict | None:
    """One defense on one attack row of one run (see :func:`auroc_cells`); None without AUROC."""
    rows = [r for r in run["trials"] if r["attack"] == spec["name"] and name in r.get("detection", {})]
    values = [r["detection"][name]["auroc"] for r in rows if r["detection"][name].get("auroc") is not None]
    if not values:
        return None
    stat = mean_interval(values, bounds=(0.0, 1.0))
    side = None
    if stat.contains(0.5) is False:  # None (one trial) is no verdict
        side = "above" if stat.mean > 0.5 else "below"
    flags = [r["detection"][name].get("flagged", 0) for r in rows]
    return {
        "setting": setting_label(run),
        "attack": spec["name"],
        "kind": spec["attack"],
        "defense": name,
        "stat": stat,
        "side": side,
        **{k: det[k] for k in ("f1", "recall", "precision")},
        "flagged": sum(flags) / len(flags),
    }


def auroc_cells(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Per setting, attack row and defense: the mean AUROC over every trial (collapsed victims
    included: the defenses screen the data) with its Student-t interval cut to [0, 1].

    Each cell: ``setting``, ``attack``, ``kind``, ``defense``, ``stat``
    (:class:`~poisonlab.reporting.stats.MeanInterval`), ``side`` (``"above"`` / ``"below"``
    when 0.50, no signal, is outside the interval, else ``None``), ``f1``, ``recall``,
    ``precision`` (means over trials, None when never defined) and ``flagged`` (mean flags per
    trial).
    """
    cells = []
    for run in label_runs(runs):
        for spec in run["config"]["attacks"]:
            rows = [r for r in run["trials"] if r["attack"] == spec["name"]]
            for name, det in mean_detection(rows).items():
                cell = _auroc_cell(run, spec, name, det)
                cells += [cell] if cell else []
    return cells


def _auroc_text(cell: Mapping[str, Any]) -> str:
    stat = cell["stat"]
    if stat.single:
        return f"{stat.mean:.2f} (single trial)"
    mark = f" {cell['side']}" if cell["side"] else ""
    return f"{stat.mean:.2f} [{stat.low:.2f}, {stat.high:.2f}]{mark}"


def auroc_table(runs: Sequence[Run]) -> str:
    """Per setting and attack row, every defense's mean AUROC with its t interval over the
    trials, marked *above* / *below* when 0.50 (no signal) is outside the interval."""
    cells = auroc_cells(runs)
    if not cells:
        return "(no defense ran)"
    defenses = sorted({c["defense"] for c in cells})
    by_key: dict[tuple[str, str], dict[str, dict]] = {}
    for c in cells:
        by_key.setdefault((c["setting"], c["attack"]), {})[c["defense"]] = c
    rows = []
    for (setting, attack), mine in by_key.items():
        trials = max(c["stat"].n for c in mine.values())
        texts = ["-" if name not in mine else _auroc_text(mine[name]) for name in defenses]
        rows.append([setting, attack, str(trials), *texts])
    return markdown_table(["setting", "attack", "trials", *defenses], rows)


def _change(values: list[float]) -> list[str]:
    """``mean ± sd`` in points, its t interval and whether 0 is outside it."""
    if not values:
        return ["-", "-", "-"]
    stat = mean_interval([100 * v for v in values])
    if stat.single:
        return [f"{stat.mean:+.1f}", "single trial", "-"]
    outside = "yes" if not stat.contains(0.0) else "no"
    return [f"{stat.mean:+.1f} ± {stat.std:.1f}", f"{stat.low:+.2f} to {stat.high:+.2f}", outside]


def paired_table(runs: Sequence[Run]) -> str:
    """Per setting and attack, over the trials whose victim trained: the victim's clean accuracy
    minus the clean victim's, and (backdoors) the backdoor rate minus the clean model's rate on
    the same trial, in points, with the Student-t interval over trials."""
    rows = []
    for run in label_runs(runs):
        for spec in run["config"]["attacks"]:
            ok = [r for r in run["trials"] if r["attack"] == spec["name"] and not collapsed(run, r)]
            acc = [r["clean_accuracy"] - victim_accuracy(run, r) for r in ok]
            rate = [
                r["backdoor_rate"] - r["backdoor_rate_clean"]
                for r in ok
                if r.get("backdoor_rate") is not None
            ]
            rows.append([setting_label(run), spec["name"], str(len(ok)), *_change(acc), *_change(rate)])
    header = [
        "setting",
        "attack",
        "trials",
        "clean accuracy change (points)",
        "95% t interval",
        "0 outside",
        "backdoor rate change (points)",
        "95% t interval",
        "0 outside",
    ]
    return markdown_table(header, rows)


def setting_difference_table(runs: Sequence[Run]) -> str:
    """For each attack run in two settings, the difference of their success rates (trials whose
    victim trained) with Newcombe's 95 % interval."""
    runs = label_runs(runs)
    rates = {}
    for run in runs:
        for r in summarize_data(run):
            rates[(setting_label(run), r["attack"])] = (r["successes"], r["counted"])
    settings = [setting_label(run) for run in runs]
    attacks = list(dict.fromkeys(a for _, a in rates))
    rows = []
    for attack in attacks:
        for i, first in enumerate(settings):
            for second in settings[i + 1 :]:
                a, b = rates.get((first, attack)), rates.get((second, attack))
                if a is None or b is None or not a[1] or not b[1]:
                    continue
                d = rate_difference(a[0], a[1], b[0], b[1])
                rows.append(
                    [
                        attack,
                        f"{first} - {second}",
                        f"{a[0]}/{a[1]} - {b[0]}/{b[1]}",
                        f"{100 * d.estimate:+.0f}",
                        f"{100 * d.low:+.0f} to {100 * d.high:+.0f}",
                        "yes" if d.excludes_zero else "no",
                    ]  # fmt: skip
                )
    header = ["attack", "settings", "successes", "difference (points)", "95% Newcombe interval", "0 outside"]
    return markdown_table(header, rows)


def doc_tables(runs: Sequence[Run]) -> list[str]:
    """Every table of the page, in page order."""
    runs = label_runs(runs)
    return [
        success_table(runs),
        collapsed_table(runs),
        setting_difference_table(runs),
        accuracy_table(runs),
        paired_table(runs),
        detection_table(runs),
        auroc_table(runs),
    ]
