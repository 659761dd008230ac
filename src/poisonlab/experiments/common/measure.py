"""What an experiment measures on one model: clean accuracy, confusions, attack success, photos.

Besides the clean test set's confusion matrix, a backdoor run gets the confusion matrix of the
*triggered* test set (trigger stamped, true labels kept, target class left out): that is where a
backdoor shows, as a column of the target class that the clean matrix does not have.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poisonlab import metrics
from poisonlab.attacks import apply_trigger
from poisonlab.data.dataset import Dataset
from poisonlab.data.images import load_image_file
from poisonlab.inference import forward_pass
from poisonlab.models.base import PoisonlabModel
from poisonlab.reprs import concise_repr


@dataclass(frozen=True)
class AttackTargets:
    """Classes an experiment watches; ``trigger`` set for backdoors (None = no trigger)."""

    source: int | None
    target: int | None
    trigger: Callable[[np.ndarray], np.ndarray] | None = None
    trigger_name: str = ""


@dataclass
class ModelMeasurement:
    """What one model does on the test data.

    Attributes
    ----------
    clean_accuracy : float
        Accuracy on the clean test set.
    per_class_accuracy : list of float
        Recall of every class on the clean test set.
    confusion : np.ndarray
        (K, K) counts on the clean test set, rows = true class.
    source_to_target : int or None
        Clean test images of the source class predicted as the target.
    attack_success_rate, mixed_accuracy : float or None
        On the triggered test set (backdoors only).
    external : list of dict
        Predictions on external photos.
    triggered_confusion : np.ndarray or None
        (K, K) counts on the triggered test set (backdoors only); the target's row is empty,
        as the triggered set leaves the target class out.
    """

    clean_accuracy: float
    per_class_accuracy: list[float]
    confusion: np.ndarray
    source_to_target: int | None = None
    attack_success_rate: float | None = None
    mixed_accuracy: float | None = None
    external: list[dict] = field(default_factory=list)
    triggered_confusion: np.ndarray | None = None

    def __repr__(self) -> str:
        return concise_repr(self, **self.scalars(), classes=len(self.per_class_accuracy))

    def scalars(self) -> dict[str, float]:
        """The numeric metrics (for tables and mean/std over seeds)."""
        out = {"clean_accuracy": self.clean_accuracy}
        for key in ("source_to_target", "attack_success_rate", "mixed_accuracy"):
            value = getattr(self, key)
            if value is not None:
                out[key] = float(value)
        return out


def triggered_test(test: Dataset, targets: AttackTargets) -> Dataset | None:
    """Test images carrying the trigger, true labels kept, target class dropped."""
    if targets.trigger is None or targets.target is None:
        return None
    return apply_trigger(
        test, targets.trigger, exclude_class=targets.target, trigger_name=targets.trigger_name
    )


def measure(
    model: PoisonlabModel,
    test: Dataset,
    targets: AttackTargets,
    *,
    triggered: Dataset | None,
    external: list[Path],
    device: str,
) -> ModelMeasurement:
    """Evaluate ``model`` on the clean test set, the triggered test set and external photos."""
    pred = forward_pass(model, test.x, device=device).predictions
    k = test.num_classes
    result = ModelMeasurement(
        clean_accuracy=metrics.accuracy(test.y, pred),
        per_class_accuracy=[float(v) for v in metrics.per_class_accuracy(test.y, pred, k)],
        confusion=metrics.confusion_matrix(test.y, pred, k),
    )
    if targets.source is not None and targets.target is not None:
        result.source_to_target = metrics.source_to_target_count(test.y, pred, targets.source, targets.target)
    if triggered is not None:
        pred_t = forward_pass(model, triggered.x, device=device).predictions
        result.attack_success_rate = metrics.attack_success_rate(
            triggered.y, pred_t, targets.target, targets.source
        )
        result.mixed_accuracy = metrics.mixed_accuracy(test.y, pred, triggered.y, pred_t)
        result.triggered_confusion = metrics.confusion_matrix(triggered.y, pred_t, k)
    result.external = predict_external(model, test.class_names, external, targets, device)
    return result


def predict_external(
    model: PoisonlabModel,
    class_names: tuple[str, ...],
    paths: list[Path],
    targets: AttackTargets,
    device: str,
) -> list[dict]:
    """Predictions on external photos, with and (for backdoors) without the trigger.

    The chapter notebook's "poisoned image" test predicted on the clean photo by mistake; here
    the triggered prediction is made on the triggered pixels.
    """
    if not paths:
        return []
    h, w, c = model.input_shape
    if c != 3 or h != w:
        raise ValueError(f"external photos need a square RGB model, this one takes {(h, w, c)}")
    x = np.stack([load_image_file(p, size=h) for p in paths])
    rows = []
    variants = [("clean", x)] + ([("triggered", targets.trigger(x))] if targets.trigger is not None else [])
    for variant, batch in variants:
        probs = forward_pass(model, batch, device=device).probabilities
        for path, p in zip(paths, probs, strict=True):
            top = int(p.argmax())
            rows.append(
                {
                    "image": Path(path).name,
                    "variant": variant,
                    "prediction": class_names[top],
                    "probability": float(p[top]),
                }
            )
    return rows


def aggregate(values: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, std (population, 0 for one seed) and the values of each metric over seeds."""
    keys = sorted({k for v in values for k in v})
    out = {}
    for key in keys:
        arr = np.array([v[key] for v in values if key in v], dtype=float)
        out[key] = {"mean": float(arr.mean()), "std": float(arr.std()), "values": arr.tolist()}
    return out
