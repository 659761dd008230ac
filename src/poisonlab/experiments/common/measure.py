"""What an experiment measures on one model: clean accuracy, confusions, attack success, photos.

Besides the clean test set's confusion matrix, a backdoor run gets the confusion matrix of the
*triggered* test set (trigger stamped, true labels kept, target class left out): that is where a
backdoor shows, as a column of the target class that the clean matrix does not have.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poisonlab import metrics
from poisonlab.attacks import apply_trigger
from poisonlab.data.dataset import Dataset
from poisonlab.data.images import load_image_file
from poisonlab.inference import forward_pass
from poisonlab.models.base import PoisonlabModel
from poisonlab.reporting.stats import mean_interval, rate_interval
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
    counts : dict
        Metric name -> the number of test images its figure is taken over (the ``n`` of its
        binomial interval): all test images for clean accuracy, the source class's test images
        for ``source_to_target`` and the attack success rate, clean + triggered images for the
        mixed accuracy.
    """

    clean_accuracy: float
    per_class_accuracy: list[float]
    confusion: np.ndarray
    source_to_target: int | None = None
    attack_success_rate: float | None = None
    mixed_accuracy: float | None = None
    external: list[dict] = field(default_factory=list)
    triggered_confusion: np.ndarray | None = None
    counts: dict[str, int] = field(default_factory=dict)

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
        counts={"clean_accuracy": len(test)},
    )
    if targets.source is not None and targets.target is not None:
        result.source_to_target = metrics.source_to_target_count(test.y, pred, targets.source, targets.target)
        result.counts["source_to_target"] = int(np.sum(test.y == targets.source))
    if triggered is not None:
        pred_t = forward_pass(model, triggered.x, device=device).predictions
        result.attack_success_rate = metrics.attack_success_rate(
            triggered.y, pred_t, targets.target, targets.source
        )
        result.mixed_accuracy = metrics.mixed_accuracy(test.y, pred, triggered.y, pred_t)
        result.triggered_confusion = metrics.confusion_matrix(triggered.y, pred_t, k)
        counted = triggered.y != targets.target if targets.source is None else triggered.y == targets.source
        result.counts["attack_success_rate"] = int(np.sum(counted))  # the images the ASR is over
        result.counts["mixed_accuracy"] = len(test) + len(triggered)
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


#: metrics that are counts of test images (``source_to_target``); the others are rates
COUNT_METRICS = frozenset({"source_to_target"})


def aggregate(
    values: list[dict[str, float]],
    counts: list[dict[str, int]] | None = None,
    *,
    level: float = 0.95,
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, dict]:
    """Each metric over seeds: mean, sample std, Student-t interval and, with ``counts``, the
    binomial (Wilson) interval of the rate over the test images.

    Parameters
    ----------
    values : list of dict
        One ``{metric: value}`` per seed (:meth:`ModelMeasurement.scalars`); a metric missing
        from a seed is left out of that seed.
    counts : list of dict, optional
        One ``{metric: n}`` per seed, same order (:attr:`ModelMeasurement.counts`): the test
        images each figure is over. Rates are turned back into counts with it.
    level : float
        Interval level.
    bounds : mapping, optional
        Metric -> the range it cannot leave, for figures without a denominator (a count of
        canaries, a 0/1 flag); the t interval is cut to it. A metric with a denominator needs none:
        a rate is cut to [0, 1], a count of test images to [0, n].

    Returns
    -------
    dict
        Metric -> ``values``, ``n`` (seeds), ``mean``, ``std`` (ddof=1; None for one seed:
        a single run has no spread, not a spread of 0), ``ci_low`` / ``ci_high`` (Student-t over
        seeds, cut to the metric's range; None for one seed), ``interval`` and, with counts,
        ``binomial``: successes, n, rate and Wilson ``ci_low`` / ``ci_high`` over the test
        images of one model at the mean rate (the test-set sampling noise only; the spread
        between seeds is the t interval's). The seeds share one test set, so their counts are
        not pooled.
    """
    keys = sorted({k for v in values for k in v})
    out: dict[str, dict] = {}
    for key in keys:
        seeds = [i for i, v in enumerate(values) if key in v]
        vals = [float(values[i][key]) for i in seeds]
        ns = [counts[i].get(key) for i in seeds] if counts is not None else []
        binomial = bool(ns) and all(n is not None and n > 0 for n in ns)
        # every seed is scored on the same test images: one model's n at the mean rate, not
        # the pooled count, which would count each test image once per seed
        n = int(round(sum(ns) / len(ns))) if binomial else 0
        # a share stays in [0, 1] and a count of test images in [0, n]: a t interval over a few
        # seeds is often wider than either
        cut = ((0.0, float(n)) if key in COUNT_METRICS else (0.0, 1.0)) if binomial else None
        cut = cut or (bounds or {}).get(key)
        entry: dict = {"values": vals, **mean_interval(vals, level, bounds=cut).to_dict()}
        if binomial:
            rates = [v / m if key in COUNT_METRICS else v for v, m in zip(vals, ns, strict=True)]
            entry["binomial"] = rate_interval(int(round(n * sum(rates) / len(rates))), n, level).to_dict()
        out[key] = entry
    return out
