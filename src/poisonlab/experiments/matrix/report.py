"""Report of the attacks x defenses matrix: ``matrix.json``, ``run.json``, heatmaps, Markdown
and HTML.

Attack success always sits beside the clean accuracy of the same model and is marked not
meaningful where that accuracy is at chance level (:mod:`poisonlab.reporting.success`): a model
that collapsed onto the target class would otherwise read as a perfect attack, or a mitigation
that wrecked the model as a failed one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from poisonlab.data.cifar10 import CIFAR10_CLASSES
from poisonlab.data.digits import DIGITS_CLASSES
from poisonlab.experiments.matrix.records import MatrixResult, aggregate_seeds
from poisonlab.provenance import read_run_json, run_record, write_run_json
from poisonlab.reporting import Report, heatmap_png
from poisonlab.reporting.success import asr_text, chance_note, meaningful

__all__ = ["detection_matrix", "mitigation_matrix", "seed_cell", "write_matrix", "write_matrix_seeds"]

_TITLES = {
    "precision": "detection precision",
    "recall": "detection recall",
    "f1": "detection F1",
    "fpr": "false-positive rate",
    "auroc": "detection AUROC (scores)",
}


def detection_matrix(result: MatrixResult, key: str) -> np.ndarray:
    """(attacks, defenses) float matrix of one detection metric; NaN where undefined."""
    defenses = result.config.defense_names()
    out = np.full((len(result.rows), len(defenses)), np.nan)
    for i, row in enumerate(result.rows):
        for j, name in enumerate(defenses):
            value = row.detection.get(name, {}).get(key)
            if value is not None:
                out[i, j] = value
    return out


def _mitigation_columns(result: MatrixResult) -> list[str]:
    names = result.config.defense_names()
    used = {name for row in result.rows for name in row.mitigation}
    return [n for n in names if n in used] + (["oracle"] if "oracle" in used else [])


def mitigation_matrix(result: MatrixResult, key: str) -> tuple[np.ndarray, list[str]]:
    """(attacks, 1 + mitigated columns): the poisoned model first, then each mitigation; NaN = not run."""
    cols = _mitigation_columns(result)
    out = np.full((len(result.rows), 1 + len(cols)), np.nan)
    for i, row in enumerate(result.rows):
        value = row.poisoned.get(key)
        out[i, 0] = np.nan if value is None else value
        for j, name in enumerate(cols, start=1):
            cell = row.mitigation.get(name)
            if cell is not None and cell.get(key) is not None:
                out[i, j] = cell[key]
    return out, ["no defense", *(_mitigation_label(result, c) for c in cols)]


def _mitigation_label(result: MatrixResult, column: str) -> str:
    """A mitigation column's name, saying where ground truth chose or made the flags."""
    if column == "oracle":
        return "oracle (true poison dropped)"
    if result.config.mitigation.defenses == "best":
        return f"{column} (oracle-picked: best F1 against the true poison)"
    return column


#: classes of the datasets a matrix runs on, for chance level (a result may carry its own)
_CLASS_COUNTS = {
    "cifar10": len(CIFAR10_CLASSES),
    "cifar-10": len(CIFAR10_CLASSES),
    "digits": len(DIGITS_CLASSES),
}


def num_classes(result: MatrixResult) -> int | None:
    """K of the matrix's dataset: the result's ``num_classes`` if it has one, else the catalog's."""
    own = getattr(result, "num_classes", None)
    return own if own is not None else _CLASS_COUNTS.get(result.config.dataset.name.strip().lower())


def chance_mask(result: MatrixResult) -> np.ndarray:
    """(attacks, 1 + mitigated columns) bool: True where the model's clean accuracy is at chance."""
    acc, _ = mitigation_matrix(result, "clean_accuracy")
    k = num_classes(result)
    return np.array(
        [[not np.isnan(a) and not meaningful(float(a), k) for a in row] for row in acc], dtype=bool
    )


def _fmt(v: float) -> str:
    return "n/a" if np.isnan(v) else f"{v:.3f}"


def _overview(report: Report, result: MatrixResult) -> None:
    """Intro paragraphs and the attacks table (what each poisoned model does)."""
    cfg = result.config
    if cfg.description:
        report.paragraph(cfg.description)
    report.paragraph(
        f"Dataset {cfg.dataset.name}, training set {result.rows[0].train_size - result.rows[0].poison_count}"
        f"+poison samples; clean model accuracy {result.clean['clean_accuracy']:.4f}; "
        f"whole run {result.seconds / 60:.1f} min. Every poisoned model and every mitigated model is "
        "trained from scratch with the same recipe; detection is scored against the attack's "
        "ground-truth poison mask."
    )
    report.heading("Attacks", 2)
    k = num_classes(result)
    clean_acc = result.clean.get("clean_accuracy")
    report.table(
        ["attack", "poison", "clean acc (poisoned model)", "attack success", "attack success on clean model"],
        [
            [
                r.name,
                r.poison_count,
                r.poisoned["clean_accuracy"],
                asr_text(r.poisoned["attack_success"], r.poisoned["clean_accuracy"], k),
                asr_text(r.clean_model_success, clean_acc, k),
            ]
            for r in result.rows
        ],
    )
    accuracies = [clean_acc, *(r.poisoned["clean_accuracy"] for r in result.rows)]
    if k is not None and not all(meaningful(a, k) for a in accuracies):
        report.paragraph(chance_note(k))


def _detection(report: Report, result: MatrixResult, out: Path) -> None:
    """One heatmap per detection metric and the F1 / AUROC table."""
    attacks = [r.name for r in result.rows]
    defenses = result.config.defense_names()
    report.heading("Detection", 2)
    for key in ("f1", "recall", "precision", "auroc", "fpr"):
        m = detection_matrix(result, key)
        heatmap_png(
            m, out / f"heatmap_{key}.png", row_labels=attacks, col_labels=defenses, title=_TITLES[key]
        )
        report.image(f"heatmap_{key}.png", _TITLES[key])
    f1, auroc = detection_matrix(result, "f1"), detection_matrix(result, "auroc")
    report.table(
        ["attack", *defenses],
        [
            [a, *(f"{_fmt(f1[i, j])} / {_fmt(auroc[i, j])}" for j in range(len(defenses)))]
            for i, a in enumerate(attacks)
        ],
    )
    report.paragraph("Cells: F1 / AUROC. n/a: undefined (e.g. nothing flagged, so no precision).")


def _mitigation(report: Report, result: MatrixResult, out: Path) -> None:
    """Clean accuracy and attack success after drop-and-retrain, beside the poisoned model."""
    attacks = [r.name for r in result.rows]
    collapsed = chance_mask(result)
    report.heading("Mitigation (drop flagged, retrain)", 2)
    for key, title in (
        ("clean_accuracy", "clean accuracy after"),
        ("attack_success", "attack success after"),
    ):
        m, cols = mitigation_matrix(result, key)
        shown = np.where(collapsed, np.nan, m) if key == "attack_success" else m
        heatmap_png(shown, out / f"mitigation_{key}.png", row_labels=attacks, col_labels=cols, title=title)
        caption = f"{title} (first column: the poisoned model, no defense)"
        if key == "attack_success" and collapsed.any():
            caption += "; grey: not run, or not meaningful (that model's clean accuracy is at chance)"
        report.image(f"mitigation_{key}.png", caption)
        if key == "attack_success":  # each success beside the clean accuracy of the same model
            acc, _ = mitigation_matrix(result, "clean_accuracy")
            cells = [
                [_success_cell(m[i, j], acc[i, j], collapsed[i, j]) for j in range(m.shape[1])]
                for i in range(m.shape[0])
            ]
        else:
            cells = [[_fmt(v) for v in row] for row in m]
        report.table(["attack", *cols], [[a, *cells[i]] for i, a in enumerate(attacks)])
    k = num_classes(result)
    if k is not None and collapsed.any():
        report.paragraph(chance_note(k))


def _seconds(cell: dict) -> float | None:
    """A column's time in a row (None for a column without its own, e.g. a combined verdict)."""
    seconds = cell.get("seconds")
    return None if seconds is None else round(seconds, 2)


def _success_cell(success: float, accuracy: float, collapsed: bool) -> str:
    """``success (clean acc accuracy)``, marked not meaningful when the model is at chance."""
    if np.isnan(success):
        return "n/a"
    text = f"{success:.3f} (clean acc {_fmt(accuracy)})"
    return f"{text}, not meaningful" if collapsed else text


def write_matrix(result: MatrixResult, out: Path) -> dict[str, Path]:
    """Write ``matrix.json``, the heatmaps and ``report.md``/``report.html`` into ``out``.

    Returns
    -------
    dict
        Paths under ``json``, ``report_md``, ``report_html`` and ``run_json``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "matrix.json").write_text(json.dumps(result.to_json(), indent=2, default=str), encoding="utf-8")
    defenses = result.config.defense_names()
    report = Report(f"Attacks x defenses: {result.config.name}")
    _overview(report, result)
    _detection(report, result, out)
    _mitigation(report, result, out)
    report.heading("Cost", 2)
    report.table(
        ["attack", "forward pass s", *defenses],
        [
            [r.name, r.forward_seconds, *(_seconds(r.detection.get(d, {})) for d in defenses)]
            for r in result.rows
        ],
    )
    md, page = report.write(out)
    write_run_json(out, matrix_record(result, out))
    return {"json": out / "matrix.json", "report_md": md, "report_html": page, "run_json": out / "run.json"}


def matrix_record(result: MatrixResult, out: Path) -> dict:
    """The ``run.json`` of a matrix folder, rewritten after every row of the run.

    The rows of one run keep its run id and start time: an existing ``run.json`` of the same
    config with fewer rows done is this run's. Refusing a folder that holds an earlier run is
    the caller's, before the run starts (:func:`poisonlab.provenance.claim_run_dir`).
    """
    config = result.config.model_dump(mode="json", exclude={"base_dir"})
    extra = {
        "rows_done": len(result.rows),
        "seconds": result.seconds,
        "clean_model": result.clean.get("model_id"),
    }
    record = run_record("matrix", config=config, extra=extra)
    previous = read_run_json(out) or {}
    same_run = previous.get("kind") == "matrix" and previous.get("config") == config
    if same_run and int(previous.get("rows_done", 0)) < len(result.rows):
        record |= {"run_id": previous["run_id"], "created_at": previous["created_at"]}
    return record


def seed_cell(stat: dict, digits: int = 2) -> str:
    """A figure over seeds (:func:`~.records.aggregate_seeds`): ``mean ± std [t interval]``;
    ``mean (1 seed)`` for one; ``n/a`` when never defined; ``(k of n seeds)`` when undefined in
    some (e.g. a precision with nothing flagged)."""
    if not stat.get("defined"):
        return "n/a"
    if stat["std"] is None:
        text = f"{stat['mean']:.{digits}f} (1 seed)"
    else:
        text = (
            f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f} "
            f"[{stat['ci_low']:.{digits}f}, {stat['ci_high']:.{digits}f}]"
        )
    return (
        text if stat["defined"] == stat["seeds"] else f"{text} ({stat['defined']} of {stat['seeds']} seeds)"
    )


def write_matrix_seeds(results: list[dict], out: Path) -> dict[str, Path]:
    """The matrix over several seeds: ``matrix_seeds.json`` (:func:`~.records.aggregate_seeds`)
    and ``report.md`` / ``report.html`` with every figure as mean ± sample std [95 % t interval].

    Parameters
    ----------
    results : list of dict
        One ``matrix.json`` per seed (:meth:`MatrixResult.to_json`, or read from disk).
    out : Path
        Folder of the combined report.

    Returns
    -------
    dict
        Paths under ``json``, ``report_md`` and ``report_html``.
    """
    agg = aggregate_seeds(results)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "matrix_seeds.json").write_text(json.dumps(agg, indent=2), encoding="utf-8")
    report = Report(f"Attacks x defenses over {len(agg['seeds'])} seeds: {agg['name']}")
    report.paragraph(
        f"Dataset {agg['dataset']}, seeds {', '.join(map(str, agg['seeds']))}; clean model accuracy "
        f"{seed_cell(agg['clean']['clean_accuracy'], 4)}. Every cell: mean ± sample std over seeds "
        "[95% Student-t interval of the mean]; one seed has no interval."
    )
    report.heading("Attacks", 2)
    report.table(
        ["attack", "poison", "clean acc (poisoned model)", "attack success", "attack success on clean model"],
        [
            [
                r["name"],
                "/".join(map(str, sorted(set(r["poison_count"])))),
                seed_cell(r["poisoned"]["clean_accuracy"], 4),
                seed_cell(r["poisoned"]["attack_success"], 3),
                seed_cell(r["clean_model_success"], 3),
            ]
            for r in agg["rows"]
        ],
    )
    for key, title in (("f1", "Detection F1"), ("auroc", "Detection AUROC"), ("recall", "Detection recall")):
        report.heading(title, 2)
        report.table(
            ["attack", *agg["defenses"]],
            [[r["name"], *(seed_cell(r["detection"][d][key]) for d in agg["defenses"])] for r in agg["rows"]],
        )
    columns = list(dict.fromkeys(c for r in agg["rows"] for c in r["mitigation"]))
    if columns:
        report.heading("Mitigation: attack success after drop-and-retrain", 2)
        report.table(
            ["attack", *columns],
            [
                [
                    r["name"],
                    *(
                        seed_cell(r["mitigation"][c]["attack_success"], 3) if c in r["mitigation"] else "-"
                        for c in columns
                    ),
                ]  # fmt: skip
                for r in agg["rows"]
            ],
        )
    md, page = report.write(out)
    return {"json": out / "matrix_seeds.json", "report_md": md, "report_html": page}
