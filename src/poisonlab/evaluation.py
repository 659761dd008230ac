"""Model evaluation: accuracy, per-class accuracy, confusion matrix and a chosen confusion.

With test-time augmentation (``tta``, :class:`poisonlab.inference.TestTimeAugmentation`) the
accuracy of the augmented predictions is reported as ``tta_accuracy`` beside the plain
``accuracy``, from the same pass; the confusion matrix and the per-class figures stay those of the
plain predictions, the figures every earlier result used.

:func:`evaluate` computes; :func:`write_evaluation` writes ``metrics.json``, ``confusion.json``,
``confusion.png``, a grid of the ``source -> target`` confusions and ``report.md``/``report.html``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from poisonlab import metrics
from poisonlab.data.dataset import Dataset
from poisonlab.inference import TestTimeAugmentation, forward_pass
from poisonlab.models.base import PoisonlabModel
from poisonlab.reporting import Report, confusion_matrix_png, image_grid_png
from poisonlab.reprs import concise_repr


@dataclass(frozen=True)
class Evaluation:
    """Results of one model on one dataset.

    ``confusion`` is (K, K) int64 (rows = true class); ``predictions`` (N,) int64;
    ``confusion_indices`` the dataset indices of ``source -> target`` confusions (when asked);
    ``tta_accuracy`` the accuracy with test-time augmentation ``tta`` (None without).
    """

    dataset_name: str
    dataset_hash: str
    class_names: tuple[str, ...]
    accuracy: float
    per_class_accuracy: np.ndarray
    confusion: np.ndarray
    predictions: np.ndarray
    source: int | None = None
    target: int | None = None
    confusion_indices: np.ndarray | None = None
    tta: TestTimeAugmentation | None = None
    tta_accuracy: float | None = None

    @property
    def confusion_count(self) -> int | None:
        return None if self.confusion_indices is None else int(len(self.confusion_indices))

    def __repr__(self) -> str:
        # the dataclass default prints every prediction and the confusion matrix
        return concise_repr(
            self,
            dataset=self.dataset_name,
            n=len(self.predictions),
            classes=len(self.class_names),
            accuracy=self.accuracy,
            tta_accuracy=self.tta_accuracy,
            confusions=self.confusion_count,
        )

    def to_json(self) -> dict:
        names = self.class_names
        out = {
            "dataset": self.dataset_name,
            "dataset_hash": self.dataset_hash,
            "n": int(len(self.predictions)),
            "accuracy": self.accuracy,
            "per_class_accuracy": {
                n: (None if np.isnan(a) else float(a))
                for n, a in zip(names, self.per_class_accuracy, strict=True)
            },
            "confusion_matrix": self.confusion.tolist(),
            "class_names": list(names),
        }
        if self.tta is not None:
            out["tta_accuracy"] = self.tta_accuracy
            out["tta"] = {"flip": self.tta.flip, "translate": self.tta.translate}
        if self.source is not None and self.target is not None:
            out["confusion_of_interest"] = {
                "source": names[self.source],
                "target": names[self.target],
                "count": self.confusion_count,
            }
        return out


def evaluate(
    model: PoisonlabModel,
    dataset: Dataset,
    *,
    source: str | int | None = None,
    target: str | int | None = None,
    device: str = "auto",
    tta: TestTimeAugmentation | None = None,
) -> Evaluation:
    """Evaluate ``model`` on ``dataset``; optionally count ``source`` images predicted as ``target``.

    ``tta`` adds ``tta_accuracy`` (test-time augmentation, one pass over the data for both
    figures); everything else is computed from the plain predictions.
    """
    if (source is None) != (target is None):
        raise ValueError("give both source and target classes, or neither")
    if model.num_classes != dataset.num_classes:
        raise ValueError(
            f"model has {model.num_classes} classes, dataset {dataset.name} has {dataset.num_classes}"
        )
    out = forward_pass(model, dataset.x, device=device, tta=tta)
    plain = out.logits if tta is None else out.plain_logits
    pred = plain.argmax(1).astype(np.int64)
    tta_acc = None
    if tta is not None:
        tta_acc = metrics.accuracy(dataset.y, out.predictions) if len(dataset) else float("nan")
    k = dataset.num_classes
    src = tgt = idx = None
    if source is not None:
        src, tgt = dataset.class_index(source), dataset.class_index(target)
        if src == tgt:
            raise ValueError(f"source and target must differ, got {dataset.class_names[src]} twice")
        idx = np.flatnonzero((dataset.y == src) & (pred == tgt))
    return Evaluation(
        dataset_name=dataset.name,
        dataset_hash=dataset.content_hash,
        class_names=dataset.class_names,
        accuracy=metrics.accuracy(dataset.y, pred) if len(dataset) else float("nan"),
        per_class_accuracy=metrics.per_class_accuracy(dataset.y, pred, k),
        confusion=metrics.confusion_matrix(dataset.y, pred, k),
        predictions=pred,
        source=src,
        target=tgt,
        confusion_indices=idx,
        tta=tta,
        tta_accuracy=tta_acc,
    )


def write_evaluation(
    result: Evaluation, dataset: Dataset, out_dir: str | Path, *, title: str, model_info: dict | None = None
) -> dict[str, Path]:
    """Write metrics, confusion matrix (JSON + PNG), confusion grid and the report; returns paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = result.to_json()
    if model_info:
        data["model"] = model_info
    paths = {"metrics": out / "metrics.json", "confusion_json": out / "confusion.json"}
    paths["metrics"].write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    paths["confusion_json"].write_text(
        json.dumps({"class_names": list(result.class_names), "matrix": result.confusion.tolist()}) + "\n",
        encoding="utf-8",
    )
    paths["confusion_png"] = confusion_matrix_png(result.confusion, result.class_names, out / "confusion.png")
    report = Report(title)
    if model_info:
        report.table(["model", "value"], [[k, v] for k, v in model_info.items()])
    report.paragraph(
        f"Dataset `{result.dataset_name}` ({len(dataset)} images, sha256 {result.dataset_hash[:16]}...)."
    )
    rows = [["accuracy", result.accuracy]]
    if result.tta is not None:
        rows.append([f"accuracy with test-time augmentation ({_tta_words(result.tta)})", result.tta_accuracy])
    report.table(["metric", "value"], rows)
    report.heading("Per-class accuracy")
    report.table(
        ["class", "accuracy", "support"],
        [
            [n, a, int(s)]
            for n, a, s in zip(
                result.class_names, result.per_class_accuracy, result.confusion.sum(1), strict=True
            )
        ],
    )
    report.heading("Confusion matrix").image("confusion.png", "rows: true class, columns: predicted")
    if result.confusion_indices is not None:
        src, tgt = result.class_names[result.source], result.class_names[result.target]
        grid = out / f"confusion_{src}_as_{tgt}.png"
        shown = result.confusion_indices[:50]
        paths["confusion_grid"] = image_grid_png(dataset.x[shown], grid, titles=[str(i) for i in shown])
        report.heading(f"{src} predicted as {tgt}")
        report.paragraph(
            f"{result.confusion_count} test images of class {src} were predicted as {tgt} "
            f"(first {len(shown)} shown, titled by index)."
        )
        report.image(grid.name, f"{src} -> {tgt}")
    paths["report_md"], paths["report_html"] = report.write(out)
    return paths


def _tta_words(tta: TestTimeAugmentation) -> str:
    parts = (["mirror"] if tta.flip else []) + ([f"{tta.translate}-pixel shifts"] if tta.translate else [])
    return " + ".join(parts)
