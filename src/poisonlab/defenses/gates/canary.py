"""Canary records: a few unambiguous, trusted samples per class that every model must get right.

A targeted poisoning attack (a label flip of one class, a clean-label collision, a backdoor that
leaks into clean inputs) often leaves the overall accuracy almost untouched while breaking a
handful of specific predictions. Canaries are the cheapest regression test against that: pick
samples no reasonable model should miss (the highest-margin correctly classified samples of a
trusted reference model, one group per class), keep them out of training, and refuse to promote
any model that misclassifies even one of them. Passing canaries is necessary, not sufficient: a
backdoored model keeps its clean accuracy and passes; the trigger-sensitivity test
(:mod:`poisonlab.defenses.sensitivity`) and STRIP (:mod:`poisonlab.defenses.strip`) cover that.

Canaries as a data-poisoning safeguard follow the practice of "golden" evaluation sets for
model promotion; the margin-based pick is the usual classification margin (true-class logit
minus the largest other logit).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import check_positive_int, class_groups
from poisonlab.inference import check_images, forward_pass
from poisonlab.models.base import PoisonlabModel

__all__ = ["CanaryFailure", "CanaryReport", "CanarySet", "check_canaries", "select_canaries"]

_FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class CanarySet:
    """Canary images with their labels and where they came from.

    Attributes
    ----------
    images : np.ndarray
        uint8 (M, H, W, C) in [0, 255].
    labels : np.ndarray
        int64 (M,) class indices in [0, len(class_names)).
    class_names : tuple of str
    sources : np.ndarray
        str (M,): the provenance tag of every canary in the set it was picked from.
    indices : np.ndarray
        int64 (M,): the position of every canary in that set.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    sources: np.ndarray = field(default=None)  # type: ignore[assignment]
    indices: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        # Dataset runs the image/label/class checks; an empty set is refused by len() below.
        checked = Dataset(x=self.images, y=self.labels, class_names=self.class_names)
        m = len(checked)
        if m == 0:
            raise ValueError("a canary set needs at least one canary, got 0")
        sources = np.full(m, "unknown") if self.sources is None else np.asarray(self.sources, dtype=str)
        indices = np.arange(m) if self.indices is None else np.asarray(self.indices)
        if sources.shape != (m,) or indices.shape != (m,):
            raise ValueError(
                f"sources and indices must have shape ({m},), got {sources.shape}, {indices.shape}"
            )
        if not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"indices must be integers, got dtype {indices.dtype}")
        object.__setattr__(self, "labels", checked.y)
        object.__setattr__(self, "class_names", checked.class_names)
        object.__setattr__(self, "sources", sources)
        object.__setattr__(self, "indices", indices.astype(np.int64))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def save(self, path: str | os.PathLike) -> Path:
        """Write the set to an ``.npz`` file (no pickles); returns the path written."""
        p = Path(path)
        if p.suffix != ".npz":
            p = p.with_name(p.name + ".npz")  # np.savez would append it silently otherwise
        p.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            p,
            version=np.int64(_FORMAT_VERSION),
            images=self.images,
            labels=self.labels,
            class_names=np.asarray(self.class_names, dtype=str),
            sources=self.sources,
            indices=self.indices,
        )
        return p

    @classmethod
    def load(cls, path: str | os.PathLike) -> CanarySet:
        """Read a set written by :meth:`save` (ValueError for a file that is not one)."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no canary file at {p}")
        try:
            with np.load(p, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError) as exc:
            raise ValueError(f"{p} is not a canary .npz file: {exc}") from exc
        missing = {"version", "images", "labels", "class_names", "sources", "indices"} - set(arrays)
        if missing:
            raise ValueError(f"{p} is not a canary file: missing {sorted(missing)}")
        if int(arrays["version"]) != _FORMAT_VERSION:
            raise ValueError(
                f"{p}: canary format version {int(arrays['version'])}, expected {_FORMAT_VERSION}"
            )
        return cls(
            images=arrays["images"],
            labels=arrays["labels"],
            class_names=tuple(str(c) for c in arrays["class_names"]),
            sources=arrays["sources"],
            indices=arrays["indices"],
        )


@dataclass(frozen=True)
class CanaryFailure:
    """One misclassified canary."""

    index: int  # position in the canary set
    label: int
    label_name: str
    predicted: int
    predicted_name: str
    source: str


@dataclass(frozen=True)
class CanaryReport:
    """Outcome of :func:`check_canaries`: ``passed`` only when every canary is right."""

    passed: bool
    accuracy: float
    n_canaries: int
    failures: tuple[CanaryFailure, ...]
    failures_per_class: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "passed": self.passed,
            "accuracy": self.accuracy,
            "n_canaries": self.n_canaries,
            "failures": [vars(f).copy() for f in self.failures],
            "failures_per_class": dict(self.failures_per_class),
        }


def select_canaries(
    trusted: Dataset,
    model: PoisonlabModel | None = None,
    *,
    per_class: int = 5,
    seed: int = 0,
    device: str = "auto",
) -> CanarySet:
    """Pick ``per_class`` canaries of every class from a trusted clean set.

    Parameters
    ----------
    trusted : Dataset
        Clean samples the defender vouches for (keep them out of every training set).
    model : PoisonlabModel, optional
        A trusted reference model: each class's canaries are its correctly classified samples
        with the largest margin (true-class logit minus the largest other logit). Without a
        model, a seeded random pick per class.
    per_class : int, default 5
    seed : int, default 0
        Seed of the random pick (unused with a model).

    Raises
    ------
    ValueError
        For a non-Dataset, a model that does not fit, or a class with fewer than ``per_class``
        samples (correctly classified ones, with a model).
    """
    if not isinstance(trusted, Dataset):
        raise ValueError(f"trusted must be a poisonlab Dataset, got {type(trusted).__name__}")
    per_class = check_positive_int(per_class, "per_class")
    check_positive_int(seed, "seed", minimum=0)
    if model is not None:
        _check_model(model, trusted.class_names, trusted.x)
        logits = forward_pass(model, trusted.x, device=device).logits.astype(np.float64)
        own = logits[np.arange(len(trusted)), trusted.y]
        logits[np.arange(len(trusted)), trusted.y] = -np.inf
        margin = own - logits.max(axis=1)  # > 0 exactly when correctly classified
    rng = np.random.default_rng(seed)
    picked = []
    for k, idx in enumerate(class_groups(trusted.y, trusted.num_classes)):
        pool = idx if model is None else idx[margin[idx] > 0]
        if len(pool) < per_class:
            what = "samples" if model is None else "correctly classified samples"
            raise ValueError(
                f"class {trusted.class_names[k]!r} has {len(pool)} {what} in the trusted set, "
                f"need per_class={per_class}"
            )
        if model is None:
            picked.append(np.sort(rng.choice(pool, size=per_class, replace=False)))
        else:
            picked.append(pool[np.argsort(-margin[pool], kind="stable")[:per_class]])
    chosen = np.concatenate(picked)
    return CanarySet(
        images=trusted.x[chosen],
        labels=trusted.y[chosen],
        class_names=trusted.class_names,
        sources=trusted.source[chosen].astype(str),
        indices=chosen,
    )


def check_canaries(model: PoisonlabModel, canaries: CanarySet, *, device: str = "auto") -> CanaryReport:
    """Predict every canary; the model passes only when it gets all of them right.

    Raises
    ------
    ValueError
        For a non-CanarySet or a model whose classes or input shape do not match the canaries.
    """
    if not isinstance(canaries, CanarySet):
        raise ValueError(f"canaries must be a CanarySet, got {type(canaries).__name__}")
    _check_model(model, canaries.class_names, canaries.images)
    pred = forward_pass(model, canaries.images, device=device).predictions
    wrong = np.flatnonzero(pred != canaries.labels)
    names = canaries.class_names
    failures = tuple(
        CanaryFailure(
            index=int(i),
            label=int(canaries.labels[i]),
            label_name=names[canaries.labels[i]],
            predicted=int(pred[i]),
            predicted_name=names[pred[i]],
            source=str(canaries.sources[i]),
        )
        for i in wrong
    )
    per_class = np.bincount(canaries.labels[wrong], minlength=len(names))
    return CanaryReport(
        passed=wrong.size == 0,
        accuracy=float(np.mean(pred == canaries.labels)),
        n_canaries=len(canaries),
        failures=failures,
        failures_per_class={names[k]: int(c) for k, c in enumerate(per_class) if c},
    )


def _check_model(model: object, class_names: tuple[str, ...], images: np.ndarray) -> None:
    if not isinstance(model, PoisonlabModel):
        raise ValueError(f"model must be a PoisonlabModel, got {type(model).__name__}")
    if model.num_classes != len(class_names):
        raise ValueError(f"model has {model.num_classes} classes, the canaries have {len(class_names)}")
    check_images(model, images)
