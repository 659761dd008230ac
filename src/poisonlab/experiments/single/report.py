"""What a single run writes: ``results.json``, ``run.json``, the poisoned sets, and the report
(trigger and poisoned samples, confusion matrices before/after on the clean and on the triggered
test set, accuracy curves, the metric table over seeds (mean ± sample std) with its intervals
(Student t over seeds, Wilson over the test images), external photos, exact config and data
hashes).

The metric table keeps clean accuracy beside the attack success rate and marks an ASR whose
model is at chance level on clean data as not meaningful (:mod:`poisonlab.reporting.success`);
the accuracy cost of the attack reads ``clean accuracy 0.912 -> 0.901 (-1.1 points)``. The
optional robustness and mitigation blocks add their rows and sections
(:mod:`poisonlab.experiments.single.robustness_report`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from poisonlab.data.arrays import save_arrays
from poisonlab.experiments.single.intervals import INTERVAL_HEADER, LABELS, fmt_stat, interval_rows, num
from poisonlab.experiments.single.records import ExperimentResult
from poisonlab.experiments.single.robustness_report import robustness_metric_rows, write_robustness_sections
from poisonlab.provenance import claim_run_dir, run_record, write_run_json
from poisonlab.reporting import Report, confusion_matrix_png, curves_png, image_grid_png
from poisonlab.reporting.success import accuracy_change, asr_text, chance_note, meaningful

__all__ = [
    "INTERVAL_HEADER",
    "interval_rows",
    "metric_rows",
    "save_poisoned_sets",
    "write_experiment",
    "write_report",
    "write_results_json",
]


def _seed_accuracies(result: ExperimentResult) -> list[float]:
    return [r.measurement.clean_accuracy for r in result.runs]


def _poisoned_asr(result: ExperimentResult, stat: dict | None) -> str:
    """The poisoned models' ASR, marked when some seed's model is at chance on clean data."""
    k = len(result.splits.class_names)
    accs = _seed_accuracies(result)
    collapsed = sum(not meaningful(a, k) for a in accs)
    if stat is None or collapsed == 0:
        return fmt_stat("attack_success_rate", stat)
    if len(accs) == 1:
        return asr_text(stat["mean"], accs[0], k)
    return (
        f"{fmt_stat('attack_success_rate', stat)} (not meaningful in {collapsed} of {len(accs)} "
        "seeds: clean accuracy at chance)"
    )


def asr_not_meaningful(result: ExperimentResult) -> bool:
    """Whether the clean model or any poisoned model has an ASR but chance-level clean accuracy."""
    k = len(result.splits.class_names)
    models = [result.clean, *(r.measurement for r in result.runs)]
    return any(m.attack_success_rate is not None and not meaningful(m.clean_accuracy, k) for m in models)


def metric_rows(result: ExperimentResult) -> list[list[str]]:
    """Rows (metric, clean model, poisoned model) of the result table.

    Clean accuracy comes first, right above the attack success rate it qualifies; the last row
    says how the clean accuracy changed from the clean to the poisoned model, in points.
    """
    summary = result.summary()
    names = result.splits.class_names
    t = result.targets
    rows = []
    for key, label in LABELS.items():
        clean = summary["clean"].get(key)
        poisoned = summary["poisoned"].get(key)
        if clean is None and poisoned is None:
            continue
        if key == "source_to_target":
            label = label.format(src=names[t.source], tgt=names[t.target])
        if key == "attack_success_rate":
            acc = result.clean.clean_accuracy
            rows.append([label, asr_text(clean, acc, len(names)), _poisoned_asr(result, poisoned)])
            continue
        rows.append([label, "-" if clean is None else num(key, clean), fmt_stat(key, poisoned)])
    poisoned_acc = summary["poisoned"].get("clean_accuracy")
    if poisoned_acc is not None:
        change = accuracy_change(summary["clean"]["clean_accuracy"], poisoned_acc["mean"])
        rows.append(["stealth (cost of the attack)", "", change])
    return rows + robustness_metric_rows(result)  # nothing without the optional blocks


def _figures(result: ExperimentResult, out: Path) -> dict[str, str]:
    figs: dict[str, str] = {}
    names = result.splits.class_names
    first = result.runs[0]
    poisoned_only = first.poison.poisoned_only
    shown = poisoned_only.x[:20]
    titles = [names[y] for y in poisoned_only.y[:20]]
    image_grid_png(shown, out / "poisoned_samples.png", titles=titles)
    figs["poisoned"] = "poisoned_samples.png"
    if result.targets.trigger is not None:
        test = result.splits.test
        pick = np.flatnonzero(test.y == (result.targets.source if result.targets.source is not None else 0))[
            :8
        ]
        before, after = test.x[pick], result.targets.trigger(test.x[pick])
        image_grid_png(
            np.concatenate([before, after]),
            out / "trigger.png",
            cols=8,
            titles=["clean"] * len(pick) + ["triggered"] * len(pick),
            scale=1.4,
        )
        figs["trigger"] = "trigger.png"
    confusion_matrix_png(result.clean.confusion, names, out / "confusion_clean.png", "clean model")
    confusion_matrix_png(
        first.measurement.confusion,
        names,
        out / "confusion_poisoned.png",
        f"poisoned model (seed {first.seed})",
    )
    figs |= _triggered_confusions(result, out)
    series = {}
    if result.clean_history:
        series["clean model (val)"] = [h.get("val_accuracy") for h in result.clean_history]
    for run in (r for r in result.runs if r.history):  # a model resumed from an older run may have none
        series[f"poisoned seed {run.seed} (val)"] = [h.get("val_accuracy") for h in run.history]
    if any(any(v is not None for v in s) for s in series.values()):
        curves_png(series, out / "curves.png", title="validation accuracy per epoch")
        figs["curves"] = "curves.png"
    return figs


def _triggered_confusions(result: ExperimentResult, out: Path) -> dict[str, str]:
    """Confusion matrices of both models on the triggered test set (backdoors only)."""
    first = result.runs[0]
    names = result.splits.class_names
    figs = {}
    for key, m, title in (
        ("triggered_clean", result.clean, "clean model, triggered test set"),
        ("triggered_poisoned", first.measurement, f"poisoned model (seed {first.seed}), triggered test set"),
    ):
        if m.triggered_confusion is not None:
            figs[key] = f"confusion_{key}.png"
            confusion_matrix_png(m.triggered_confusion, names, out / figs[key], title)
    return figs


def write_report(result: ExperimentResult, out: Path) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and their figures into ``out``; return both pages."""
    cfg = result.config
    figs = _figures(result, out)
    report = Report(f"Experiment: {cfg.name}")
    if cfg.description:
        report.paragraph(cfg.description)
    report.table(["setting", "value"], _setting_rows(result))
    report.heading("Results")
    report.table(
        ["metric", "clean model", f"poisoned model ({len(result.runs)} seed(s))"], metric_rows(result)
    )
    if asr_not_meaningful(result):
        report.paragraph(chance_note(len(result.splits.class_names)))
    report.heading("Intervals")
    report.paragraph(_intervals_text(cfg.baseline))
    report.table(INTERVAL_HEADER, interval_rows(result))
    _figure_sections(report, result, figs)
    _external_section(report, result)
    write_robustness_sections(report, result)
    first = result.runs[0]
    report.heading("Reproduce")
    report.paragraph(
        f"Training data sha256: clean {result.splits.train.content_hash}; poisoned (seed "
        f"{first.seed}) {first.poison.dataset.content_hash}; test {result.splits.test.content_hash}."
    )
    report.code(yaml.safe_dump(cfg.model_dump(mode="json", exclude={"base_dir"}), sort_keys=False))
    return report.write(out)


def _setting_rows(result: ExperimentResult) -> list[list[str]]:
    """The report's first table: data, attack, poison count, integration, seeds, model ids."""
    cfg, poison = result.config, result.runs[0].poison
    poisoned, total = len(poison.poison_indices), len(poison.dataset)
    return [
        ["dataset", f"{cfg.dataset.name} (train {len(result.splits.train)}, test {len(result.splits.test)})"],
        ["attack", poison.description],
        ["poisoned samples", f"{poisoned} of {total} ({poisoned / total:.2%})"],
        ["integration", cfg.integration],
        ["seeds", ", ".join(map(str, cfg.seeds))],
        ["clean baseline", cfg.baseline],
        ["clean model", result.clean_model_id],
        ["poisoned models", ", ".join(r.model_id for r in result.runs)],
    ]


def _intervals_text(baseline: str) -> str:
    """What the spread over seeds includes under ``baseline``, and what each interval covers."""
    spread = (
        "one clean model for every seed: the spread over seeds is the attack's and the poisoned "
        "training's only)"
        if baseline == "shared"
        else "each seed trained its own clean model: the spread includes the clean training's)"
    )
    return (
        f"Baseline: **{baseline}** ({spread}. The t interval needs two seeds or more; a single run has "
        "none (its std is not 0, it is unknown). The Wilson interval covers only the sampling of the "
        "test images."
    )


def _figure_sections(report: Report, result: ExperimentResult, figs: dict[str, str]) -> None:
    """The trigger, the poisoned samples, the confusion matrices and the accuracy curves."""
    if "trigger" in figs:
        report.heading("Trigger").image(
            figs["trigger"], "test images of the source class, clean and triggered"
        )
    report.heading("Poisoned training samples").image(
        figs["poisoned"], "first poisoned samples with their training labels"
    )
    report.heading("Confusion matrices")
    report.image("confusion_clean.png", "clean model").image("confusion_poisoned.png", "poisoned model")
    if "triggered_poisoned" in figs:
        report.heading("Confusion matrices on the triggered test set")
        report.paragraph(
            "The test images carry the trigger and keep their true labels (rows); the target class "
            f"({result.splits.class_names[result.targets.target]}) is left out. A working backdoor "
            "shows as a filled target column in the poisoned model's matrix, absent from the clean one's."
        )
        report.image(figs["triggered_clean"], "clean model, triggered test set")
        report.image(figs["triggered_poisoned"], "poisoned model, triggered test set")
    if "curves" in figs:
        report.heading("Accuracy curves").image(figs["curves"], "validation accuracy per epoch")


def _external_section(report: Report, result: ExperimentResult) -> None:
    """The external photos' predictions by the clean and the (first) poisoned model, if any."""
    external = result.runs[0].measurement.external
    if not external:
        return
    report.heading("External photos")
    before = {(e["image"], e["variant"]): e for e in result.clean.external}
    rows = [
        [e["image"], e["variant"], _pred(before.get((e["image"], e["variant"]))), _pred(e)] for e in external
    ]
    report.table(["image", "input", "clean model", "poisoned model"], rows)


def _pred(entry: dict | None) -> str:
    return "-" if entry is None else f"{entry['prediction']} ({entry['probability']:.2f})"


def write_results_json(result: ExperimentResult, path: Path) -> None:
    """Write :meth:`ExperimentResult.to_json` to ``path``."""
    text = json.dumps(result.to_json(), indent=2, default=_json_default)
    path.write_text(text + "\n", encoding="utf-8")


def save_poisoned_sets(result: ExperimentResult, out: Path) -> list[Path]:
    """Each seed's poisoned training set, with its ground-truth mask, as ``out/data/seed-<seed>.npz``.

    They sit next to their models (``out/models/seed-<seed>``), ready for ``poisonlab scan``.
    """
    paths = []
    for run in result.runs:
        path = out / "data" / f"seed-{run.seed}.npz"
        save_arrays(run.poison.dataset, path)
        paths.append(path)
    return paths


def write_experiment(
    result: ExperimentResult, out_dir: str | Path, *, save_data: bool = False, overwrite: bool = False
) -> Path:
    """Everything ``poisonlab run`` leaves in ``out_dir``: ``results.json``, ``run.json``, the
    report and, with ``save_data``, the poisoned training sets (:func:`save_poisoned_sets`).

    Parameters
    ----------
    result
        The finished run.
    out_dir
        The run folder.
    save_data
        Also write the poisoned training sets.
    overwrite
        Replace the files of an earlier run in ``out_dir`` (its ``run.json``); without it such a
        folder is refused. Callers check it before the run too
        (:func:`poisonlab.provenance.claim_run_dir`), not to learn it after training.

    Returns
    -------
    Path
        ``report.html``.

    Raises
    ------
    FileExistsError
        ``out_dir`` holds another run's ``run.json`` and ``overwrite`` is False.
    """
    out = claim_run_dir(out_dir, overwrite=overwrite)  # models/seed-N below are this run's own
    out.mkdir(parents=True, exist_ok=True)
    if save_data:
        save_poisoned_sets(result, out)
    write_results_json(result, out / "results.json")
    page = write_report(result, out)[1]
    write_run_json(out, experiment_record(result))
    return page


def experiment_record(result: ExperimentResult) -> dict:
    """The ``run.json`` of an experiment folder: provenance, the config, data hashes, model ids."""
    cfg = result.config
    extra = {
        "experiment": cfg.name,
        "train_hash": result.splits.train.content_hash,
        "test_hash": result.splits.test.content_hash,
        "clean_model": result.clean_model_id,
        "clean_models": {str(r.seed): r.clean_model_id or result.clean_model_id for r in result.runs},
        "models": {str(r.seed): r.model_id for r in result.runs},
        "seeds": list(cfg.seeds),
    }
    return run_record("experiment", config=cfg.model_dump(mode="json", exclude={"base_dir"}), extra=extra)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
