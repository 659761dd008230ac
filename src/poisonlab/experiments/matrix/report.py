"""Report of the attacks x defenses matrix: ``matrix.json``, heatmaps, Markdown and HTML."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from poisonlab.experiments.matrix.records import MatrixResult
from poisonlab.reporting import Report, heatmap_png

__all__ = ["detection_matrix", "mitigation_matrix", "write_matrix"]

_TITLES = {
    "precision": "detection precision",
    "recall": "detection recall",
    "f1": "detection F1",
    "fpr": "false-positive rate",
    "auroc": "detection AUROC (scores)",
}


def detection_matrix(result: MatrixResult, key: str) -> np.ndarray:
    """(attacks, defenses) float matrix of one detection metric; NaN where undefined."""
    defenses = [d.name for d in result.config.defenses]
    out = np.full((len(result.rows), len(defenses)), np.nan)
    for i, row in enumerate(result.rows):
        for j, name in enumerate(defenses):
            value = row.detection.get(name, {}).get(key)
            if value is not None:
                out[i, j] = value
    return out


def _mitigation_columns(result: MatrixResult) -> list[str]:
    names = [d.name for d in result.config.defenses]
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
    return out, ["no defense", *cols]


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
    report.table(
        ["attack", "poison", "clean acc (poisoned model)", "attack success", "attack success on clean model"],
        [
            [
                r.name,
                r.poison_count,
                r.poisoned["clean_accuracy"],
                r.poisoned["attack_success"],
                r.clean_model_success,
            ]
            for r in result.rows
        ],
    )


def _detection(report: Report, result: MatrixResult, out: Path) -> None:
    """One heatmap per detection metric and the F1 / AUROC table."""
    attacks = [r.name for r in result.rows]
    defenses = [d.name for d in result.config.defenses]
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
    report.heading("Mitigation (drop flagged, retrain)", 2)
    for key, title, vmax in (
        ("clean_accuracy", "clean accuracy after", 1.0),
        ("attack_success", "attack success after", 1.0),
    ):
        m, cols = mitigation_matrix(result, key)
        heatmap_png(
            m, out / f"mitigation_{key}.png", row_labels=attacks, col_labels=cols, title=title, vmax=vmax
        )
        report.image(f"mitigation_{key}.png", f"{title} (first column: the poisoned model, no defense)")
        report.table(["attack", *cols], [[a, *(_fmt(v) for v in m[i])] for i, a in enumerate(attacks)])


def write_matrix(result: MatrixResult, out: Path) -> dict[str, Path]:
    """Write ``matrix.json``, the heatmaps and ``report.md``/``report.html`` into ``out``.

    Returns
    -------
    dict
        Paths under ``json``, ``report_md`` and ``report_html``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "matrix.json").write_text(json.dumps(result.to_json(), indent=2, default=str), encoding="utf-8")
    defenses = [d.name for d in result.config.defenses]
    report = Report(f"Attacks x defenses: {result.config.name}")
    _overview(report, result)
    _detection(report, result, out)
    _mitigation(report, result, out)
    report.heading("Cost", 2)
    report.table(
        ["attack", "forward pass s", *defenses],
        [
            [r.name, r.forward_seconds, *(round(r.detection[d]["seconds"], 2) for d in defenses)]
            for r in result.rows
        ],
    )
    md, page = report.write(out)
    return {"json": out / "matrix.json", "report_md": md, "report_html": page}
