"""``docs/results/clean_label.md``, whole, from the clean-label benchmark runs' ``results.json``.

:func:`clean_label_markdown` writes the page from the runs (:func:`load_runs`, one folder per
run; :mod:`.clean_label_runs` labels a later run of a setting apart and names each run's config):
the attacks and the protocol (:mod:`.clean_label_setup`), the scaled settings
(:mod:`.clean_label_settings`), the tables (:mod:`.clean_label_doc`), the collapsed victims and
the placebo control where a placebo run is on the page (:mod:`.clean_label_collapse`), the
findings (:mod:`.clean_label_findings`, :mod:`.clean_label_changes`,
:mod:`.clean_label_detection`) and how to reproduce it. Prose is a template: every figure in it
is computed from the runs (or read from the configs they recorded and the code's defaults, said
so where used); the paper's figures are literal citations marked as the paper's.
``benchmarks/clean_label_table.py`` writes the page; ``tests/reporting/test_clean_label_doc.py``
fails when the committed page differs.

Figures of earlier versions of the page whose raw runs are not committed (the runs' wall-clock
times) are in a design note, ``docs/clean-label-notes.md``, linked from the page and never
generated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from poisonlab.reporting.clean_label_collapse import collapse_paragraph
from poisonlab.reporting.clean_label_doc import (
    accuracy_table,
    auroc_table,
    collapsed_table,
    detection_table,
    paired_table,
    setting_difference_table,
    success_table,
)
from poisonlab.reporting.clean_label_findings import findings_section
from poisonlab.reporting.clean_label_runs import config_path, label_runs, setting_label
from poisonlab.reporting.clean_label_settings import settings_section
from poisonlab.reporting.clean_label_setup import (
    attacks_table,
    bounds_paragraph,
    dataset_text,
    protocol_paragraph,
    trial_count,
)
from poisonlab.reporting.prose import and_list, para
from poisonlab.reporting.results_docs import load_json

__all__ = ["COMMAND", "RUN_FOLDERS", "clean_label_markdown", "load_run", "load_runs"]

#: the committed runs, in page order, under ``docs/results/clean_label/``
RUN_FOLDERS = (
    "transfer-linear",
    "transfer-finetune",
    "scratch",
    "feature-collision-chapter",
    "transfer-finetune-placebo",
)
#: the command that writes ``docs/results/clean_label.md`` (named on the page)
COMMAND = (
    "python benchmarks/clean_label_table.py "
    + " ".join(f"docs/results/clean_label/{name}" for name in RUN_FOLDERS)
    + " --out docs/results/clean_label.md"
)
#: trials per setting that issue 14 asks for "where the budget allows"; the page names the settings cut
TRIALS_WANTED = 50
_CONFIG_KEYS = ("name", "setting", "eps", "budget", "attacks", "dataset")
_CLEAN_KEYS = ("victim_accuracy", "poisons", "train_size", "eval_size", "surrogate_id", "surrogate_accuracy")
_TRIAL_KEYS = ("trial", "attack", "kind", "success", "control", "clean_accuracy")

Run = Mapping[str, Any]


def _lacks(where: str, data: Any, keys: Sequence[str]) -> None:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(f"{where}: lacks {', '.join(missing)}")


def load_run(folder: str | Path) -> dict[str, Any]:
    """The ``results.json`` of one run folder, checked for every field the page reads.

    A folder of several seeds (``poisonlab clean-label --seeds N``: ``seed-K/`` below it) is read
    from its ``results_pooled.json`` (:func:`~poisonlab.experiments.clean_label.records.pool_seeds`)
    and ``report_pooled.md`` instead. The run's report, where the folder has one, is read for one
    fact the page states: whether it has a *collapsed victims* column (``report_collapsed``, None
    without a report).

    Raises
    ------
    FileNotFoundError
        Neither ``results_pooled.json`` nor ``results.json`` in ``folder`` (the message names the
        path).
    ValueError
        Not JSON, or a missing field, no trial row, or a row of an attack the config lacks (the
        message names the file, and the row).
    """
    pooled = (Path(folder) / "results_pooled.json").is_file()
    path = Path(folder) / ("results_pooled.json" if pooled else "results.json")
    try:
        data = load_json(path)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    _lacks(str(path), data, ("config", "clean", "trials"))
    _lacks(f"{path}: config", data["config"], _CONFIG_KEYS)
    _lacks(f"{path}: clean", data["clean"], _CLEAN_KEYS)
    if not isinstance(data["trials"], list) or not data["trials"]:
        raise ValueError(f"{path}: no trial rows")
    names = {spec.get("name") for spec in data["config"]["attacks"]}
    for i, row in enumerate(data["trials"]):
        _lacks(f"{path}: trial row {i}", row, _TRIAL_KEYS)
        if row["attack"] not in names:
            raise ValueError(f"{path}: trial row {i} is of attack {row['attack']!r}, not in the config")
    report = Path(folder) / ("report_pooled.md" if pooled else "report.md")
    data["report_collapsed"] = (
        "collapsed victims" in report.read_text(encoding="utf-8") if report.is_file() else None
    )
    return data


def load_runs(folders: Sequence[str | Path]) -> list[dict[str, Any]]:
    """:func:`load_run` of each folder, in page order."""
    return [load_run(f) for f in folders]


def _intro(runs: Sequence[Run], command: str) -> list[str]:
    counts = sorted({trial_count(run) for run in runs})
    span = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return [
        '# Clean-label attacks beside "Just How Toxic is Data Poisoning?"',
        "",
        f"Generated by `{command}`",
        para(
            f"from the {len(runs)} committed `results.json` (every trial's record, under",
            "[`clean_label/`](clean_label/)); do not edit it by hand:",
            "`tests/reporting/test_clean_label_doc.py`",
            "regenerates it and fails when it differs. Figures of earlier versions of this page whose raw",
            "runs are not committed (the runs' wall-clock times) are in a design note:",
            "[`docs/clean-label-notes.md`](../clean-label-notes.md).",
        ),
        "",
        para(
            "Measured with `poisonlab clean-label` (`poisonlab.experiments.clean_label`) on",
            f"{', '.join(sorted({dataset_text(run) for run in runs}))} with the chapter's",
            'CNN, following the protocol of Schwarzschild, Goldblum, Gupta, Dickerson and Goldstein, "Just',
            'How Toxic is Data Poisoning? A Unified Benchmark for Backdoor and Data Poisoning Attacks", ICML',
            "2021 (arXiv:2006.12557), scaled down to run on a CPU. The attacks:",
        ),
        "",
        attacks_table(runs),
        "",
        bounds_paragraph(runs),
        "",
        protocol_paragraph(runs),
        "",
        *settings_section(runs),
        "",
        para(
            f"Every table below is generated from the {len(runs)} `results.json`. With {span} trials an",
            f"interval spans tens of points (the widest Wilson interval below: {_widest(runs)} points): read",
            "the 95 % intervals, not the digits.",
        ),
        "",
    ]


def _widest(runs: Sequence[Run]) -> str:
    from poisonlab.experiments.clean_label.report import summarize_data

    widths = [
        r["interval"][1] - r["interval"][0] for run in runs for r in summarize_data(run) if r["counted"]
    ]
    return f"{100 * max(widths):.0f}" if widths else "-"


def _tables(runs: Sequence[Run]) -> list[str]:
    defenses = sorted({n for run in runs for r in run["trials"] for n in r.get("detection", {})})
    bare = [f"`{setting_label(run)}`" for run in runs if not any(r.get("detection") for r in run["trials"])]
    screened = (
        f"all {len(runs)} settings"
        if not bare
        else f"the {len(runs) - len(bare)} settings that ran them ({and_list(bare)} ran none)"
    )
    return [
        "## Success rates",
        "",
        collapse_paragraph(runs),
        "",
        success_table(runs),
        "",
        "The collapsed victims:",
        "",
        collapsed_table(runs),
        "",
        para(
            "Differences between settings (success rates over the victims that trained, Newcombe's 95 %",
            "interval):",
        ),
        "",
        setting_difference_table(runs),
        "",
        para(
            "Clean accuracy of the victims that trained, and the backdoor rates (all patched victim-class",
            "test images sent to the target; the clean model's rate in brackets), means over those trials:",
        ),
        "",
        accuracy_table(runs),
        "",
        para(
            "The same as paired changes per trial (the victim minus the clean victim; the backdoor rate",
            "minus the clean model's rate on the same trial's images), in points, with the Student-t",
            "interval over the trials:",
        ),
        "",
        paired_table(runs),
        "",
        "## Defenses on the poisoned training sets",
        "",
        para(
            f"Each poisoned training set was screened by {len(defenses)} defenses of `poisonlab.defenses`",
            "with",
            "the model trained on it: **F1 / recall / AUROC** against the ground-truth mask (AUROC 0.50 = no",
            f"signal), means over all trials of {screened}, collapsed victims included (the",
            "defenses screen the data):",
        ),
        "",
        detection_table(runs),
        "",
        para(
            "Per setting and attack row, the mean AUROC with its Student-t 95 % interval over the trials",
            "(cut to [0, 1]); *above* / *below*: 0.50 (no signal) is outside the interval:",
        ),
        "",
        auroc_table(runs),
        "",
    ]


def _reproduce(runs: Sequence[Run]) -> list[str]:
    commands = [
        f"poisonlab clean-label {config_path(run)} --out runs/{run['config']['name']}{_seeds_option(run)}"
        for run in runs
    ]
    folders = " ".join(f"runs/{run['config']['name']}" for run in runs)
    times = []
    for run in runs:
        seconds = _recorded_seconds(run)
        per_trial = seconds / trial_count(run)
        times.append(f"`{setting_label(run)}` {seconds / 60:.0f} min ({per_trial:.0f} s per trial)")
    return [
        "## Reproduce",
        "",
        "```",
        "export POISONLAB_DATA=../shared/datasets/cifar10-jpeg/cifar-10-batches-py",
        *commands,
        f".venv/bin/python benchmarks/clean_label_table.py {folders} --out docs/results/clean_label.md",
        "```",
        "",
        para(
            "Time recorded in the runs (crafting plus victim training, summed over every attack of every",
            "trial; the surrogate's pretraining, the clean victim, evaluation and the defenses are not in",
            f"the record): {'; '.join(times)}. The runs' wall-clock times were not recorded; the figures",
            "typed on earlier versions of this page",
            "are in the design note. Each run's `report.md` (per-attack table, clean accuracy, crafting time",
            "and memory, exact settings and data hashes) and `results.json` (every trial) are under",
            '[`clean_label/`](clean_label/). The "peak RSS" column of those reports is the process\'',
            "high-water mark, CIFAR-10 arrays included; per-attack crafting memory is in `BENCHMARKS.md`.",
            "A `report.md` without a *collapsed victims* column counts every trial in its success columns",
            _old_reports(runs),
        ),
        "",
        _cut_runs(runs),
    ]


def _recorded_seconds(run: Run) -> float:
    """Crafting plus victim training, summed over every attack of every trial of ``run``."""
    return sum(
        (r.get("craft") or {}).get("seconds", 0.0) + r.get("victim_train_seconds", 0.0) for r in run["trials"]
    )


def _cut_runs(runs: Sequence[Run]) -> str:
    """Which settings ran fewer than :data:`TRIALS_WANTED` trials, and what the rest would cost.

    The cost is the recorded time per trial times the trials missing: a lower bound (pretraining,
    evaluation and the defenses are not in the record).
    """
    cut = [run for run in runs if trial_count(run) < TRIALS_WANTED]
    if not cut:
        return f"Every setting ran at least {TRIALS_WANTED} trials."
    parts = []
    for run in cut:
        done = trial_count(run)
        hours = _recorded_seconds(run) / done * (TRIALS_WANTED - done) / 3600
        parts.append(
            f"`{setting_label(run)}` ran {done} (the other {TRIALS_WANTED - done} would take at least"
            f" {hours:.1f} h more at its recorded time per trial)"
        )
    return para(
        f"Cut below our aim of {TRIALS_WANTED} trials per setting, to fit the runs",
        f"on 2 CPU cores: {and_list(parts)}. Their intervals are the wider for it.",
    )


def _seeds_option(run: Run) -> str:
    """`` --seeds N`` for a run pooled over seeds 0..N-1 (what wrote its seed-K folders), else ""."""
    seeds = run["config"].get("seeds")
    if not seeds:
        return ""
    if list(seeds) != list(range(len(seeds))):
        raise ValueError(
            f"{run['config']['name']}: pooled seeds {seeds} are not 0..N-1 (what --seeds N runs)"
        )
    return f" --seeds {len(seeds)}"


def _old_reports(runs: Sequence[Run]) -> str:
    """Which runs' reports lack the collapsed column (all, unless a report was read with one)."""
    if not any(run.get("report_collapsed") for run in runs):
        which = "the committed ones have none"
    else:
        old = [f"`{setting_label(run)}`" for run in runs if run.get("report_collapsed") is False]
        if not old:
            return "(every committed one has that column)."
        which = f"those of {and_list(old)} have none"
    return f"({which}: they were written before collapsed victims were reported apart)."


def clean_label_markdown(runs: Sequence[Run], *, command: str = COMMAND) -> str:
    """The whole ``clean_label.md``.

    Parameters
    ----------
    runs : sequence of dict
        The runs' ``results.json`` in page order (:func:`load_runs`; one setting each, or several
        seeds of one setting pooled by :func:`~poisonlab.experiments.clean_label.records.pool_seeds`).
    command : str
        The command named on the page as the one that writes it.

    Raises
    ------
    ValueError
        No run.
    """
    if not runs:
        raise ValueError("clean_label_markdown needs at least one run")
    runs = label_runs(runs)
    parts = [*_intro(runs, command), *_tables(runs), *findings_section(runs), *_reproduce(runs)]
    return "\n".join(parts).rstrip("\n") + "\n"
