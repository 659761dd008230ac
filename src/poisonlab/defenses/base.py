"""The contract every poison detector follows, in the style of scikit-learn estimators.

A defense is a small configuration object (keyword-only, validated constructor parameters). It is
fitted on one dataset and then answers for that same dataset:

``fit(dataset, model=None, *, forward=None, trusted=None) -> self``
    Examine ``dataset`` (optionally through ``model``). ``forward`` is a precomputed
    :class:`~poisonlab.inference.ForwardResult` of ``model`` on ``dataset.x`` with penultimate
    features, so that every feature-space defense of one scan shares a single forward pass.
    ``trusted`` is a small clean reference set the defender vouches for (the validation set of
    RONI and the provenance defense, the reference distribution of drift tests, the calibration
    set of STRIP); defenses that need it say so in :attr:`Defense.needs_trusted`.
``score_samples() -> (N,) float64``
    Per-sample suspicion. **Higher means more suspicious** (the opposite sign of scikit-learn's
    ``score_samples``, where higher means more normal), so scores feed straight into
    :func:`poisonlab.metrics.detection_scores` for AUROC.
``predict() -> (N,) bool``
    True for the samples the defense flags as poison.

Fitted attributes end in ``_``: ``scores_``, ``flagged_``, ``n_samples_`` and ``details_`` (a
JSON-ready dict of per-class or per-group statistics for reports).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.inference import ForwardResult, forward_pass
from poisonlab.models.base import PoisonlabModel

__all__ = [
    "DEVICES",
    "Defense",
    "NotFittedError",
    "check_bool",
    "check_choice",
    "check_device",
    "check_fraction",
    "check_open_fraction",
    "check_positive_float",
    "check_positive_int",
    "class_groups",
    "flag_top_fraction",
    "pixel_matrix",
    "representations",
]


class NotFittedError(ValueError):
    """Raised when ``score_samples``/``predict`` is called before ``fit``."""


class Defense(ABC):
    """Base class of every training-data poison detector.

    Subclasses set the class attributes below and implement :meth:`_fit`, which must set
    ``self.scores_`` (float array (N,), finite, higher = more suspicious) and ``self.flagged_``
    (bool array (N,)), and may fill ``self.details_``.
    """

    name: ClassVar[str] = "defense"
    #: "pixels", "features" or "labels": what the defense looks at (for reports)
    space: ClassVar[str] = "pixels"
    #: True when ``fit`` needs a model (or a ``forward`` result).
    needs_model: ClassVar[bool] = False
    #: True when ``fit`` needs a ``trusted`` clean reference dataset.
    needs_trusted: ClassVar[bool] = False
    #: Citation shown in reports.
    paper: ClassVar[str] = ""

    scores_: np.ndarray
    flagged_: np.ndarray
    n_samples_: int
    details_: dict[str, Any]

    # ------------------------------------------------------------------ public API
    def fit(
        self,
        dataset: Dataset,
        model: PoisonlabModel | None = None,
        *,
        forward: ForwardResult | None = None,
        trusted: Dataset | None = None,
    ) -> Defense:
        """Examine ``dataset`` and store per-sample scores and flags; returns ``self``."""
        if not isinstance(dataset, Dataset):
            raise ValueError(f"dataset must be a poisonlab Dataset, got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise ValueError("dataset is empty: nothing to scan")
        if self.needs_model and model is None and forward is None:
            raise ValueError(f"defense {self.name!r} needs a model (or a precomputed forward pass)")
        if self.needs_trusted and trusted is None:
            raise ValueError(f"defense {self.name!r} needs a trusted clean reference dataset")
        if trusted is not None:
            check_compatible(dataset, trusted, "trusted")
        if forward is not None:
            check_forward(forward, dataset)
        self.details_ = {}
        self._fit(dataset, model, forward, trusted)
        scores = np.asarray(self.scores_, dtype=np.float64)
        flagged = np.asarray(self.flagged_, dtype=bool)
        if scores.shape != (len(dataset),) or flagged.shape != (len(dataset),):
            raise RuntimeError(f"{self.name}: scores/flags do not match the dataset length")  # our bug
        self.scores_ = np.nan_to_num(scores, nan=0.0, posinf=np.finfo(np.float64).max / 2)
        self.flagged_ = flagged
        self.n_samples_ = len(dataset)
        return self

    def score_samples(self) -> np.ndarray:
        """Suspicion score per sample of the fitted dataset, shape (N,); higher = more suspicious."""
        self._check_fitted()
        return self.scores_.copy()

    def predict(self) -> np.ndarray:
        """Boolean poison mask over the fitted dataset, shape (N,)."""
        self._check_fitted()
        return self.flagged_.copy()

    def fit_predict(self, dataset: Dataset, model: PoisonlabModel | None = None, **kwargs: Any) -> np.ndarray:
        """``fit(dataset, model, **kwargs).predict()``."""
        return self.fit(dataset, model, **kwargs).predict()

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (public attributes without a trailing underscore)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and not k.endswith("_")}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # ------------------------------------------------------------------ for subclasses
    @abstractmethod
    def _fit(
        self,
        dataset: Dataset,
        model: PoisonlabModel | None,
        forward: ForwardResult | None,
        trusted: Dataset | None,
    ) -> None:
        """Set ``scores_``, ``flagged_`` and optionally ``details_``."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "scores_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit(dataset, ...) first")


# ---------------------------------------------------------------------------------- helpers
def check_compatible(dataset: Dataset, other: Dataset, what: str) -> None:
    """Raise ValueError unless ``other`` has the image shape and class names of ``dataset``."""
    if not isinstance(other, Dataset):
        raise ValueError(f"{what} must be a poisonlab Dataset, got {type(other).__name__}")
    if other.image_shape != dataset.image_shape:
        raise ValueError(f"{what} images must have shape {dataset.image_shape}, got {other.image_shape}")
    if other.class_names != dataset.class_names:
        raise ValueError(f"{what} must have class names {dataset.class_names}, got {other.class_names}")
    if len(other) == 0:
        raise ValueError(f"{what} dataset is empty")


def check_forward(forward: ForwardResult, dataset: Dataset, *, need_features: bool = False) -> None:
    """Raise ValueError unless ``forward`` covers ``dataset`` (and holds features if needed)."""
    if not isinstance(forward, ForwardResult):
        raise ValueError(f"forward must be a ForwardResult, got {type(forward).__name__}")
    if forward.logits.shape[0] != len(dataset):
        raise ValueError(f"forward pass covers {forward.logits.shape[0]} samples, dataset has {len(dataset)}")
    if forward.logits.shape[1] != dataset.num_classes:
        raise ValueError(
            f"forward pass has {forward.logits.shape[1]} classes, dataset has {dataset.num_classes}"
        )
    if need_features and forward.features is None:
        raise ValueError("forward pass holds no penultimate features: run forward_pass(..., features=True)")


def representations(
    dataset: Dataset,
    model: PoisonlabModel | None,
    forward: ForwardResult | None,
    *,
    device: str = "auto",
) -> ForwardResult:
    """The model's logits and penultimate features on ``dataset``: ``forward`` when given, else one pass.

    Raises ValueError when neither a model nor a forward result is available, or when the model
    does not fit the dataset's images.
    """
    if forward is not None:
        check_forward(forward, dataset, need_features=True)
        return forward
    if model is None:
        raise ValueError("this defense needs a model (or a precomputed forward pass) for features")
    if model.num_classes != dataset.num_classes:
        raise ValueError(f"model has {model.num_classes} classes, dataset has {dataset.num_classes}")
    return forward_pass(model, dataset.x, features=True, device=device)


def pixel_matrix(dataset: Dataset) -> np.ndarray:
    """Images as a float32 matrix (N, H*W*C) with values in [0, 1]."""
    return dataset.x.reshape(len(dataset), -1).astype(np.float32) / 255.0


def class_groups(labels: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """Indices of each class, in class order (empty arrays for absent classes)."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(num_classes + 1))
    return [order[bounds[k] : bounds[k + 1]] for k in range(num_classes)]


def flag_top_fraction(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ``round(fraction * N)`` highest scores (ties broken by index)."""
    n = scores.shape[0]
    k = int(round(fraction * n))
    mask = np.zeros(n, dtype=bool)
    if k > 0:
        mask[np.argsort(-scores, kind="stable")[:k]] = True
    return mask


def check_fraction(
    value: object, name: str, *, low: float = 0.0, high: float = 1.0, inclusive_low: bool = False
) -> float:
    """Validate a float parameter in (low, high] (or [low, high] when ``inclusive_low``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    ok_low = v >= low if inclusive_low else v > low
    if not (ok_low and v <= high and np.isfinite(v)):
        bracket = "[" if inclusive_low else "("
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")
    return v


def check_positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    """Validate an integer parameter >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


DEVICES = ("auto", "cpu", "cuda")


def check_positive_float(value: object, name: str) -> float:
    """Validate a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_open_fraction(value: object, name: str) -> float:
    """Validate a float parameter in the open interval (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    """Validate a string parameter against ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_bool(value: object, name: str) -> bool:
    """Validate a boolean parameter (numpy booleans accepted)."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_device(value: object) -> str:
    """Validate a device parameter: ``auto``, ``cpu``, ``cuda`` or ``cuda:<n>``."""
    if not isinstance(value, str) or not (value in DEVICES or re.fullmatch(r"cuda:\d+", value)):
        raise ValueError(f"device must be one of {list(DEVICES)} (or 'cuda:<n>'), got {value!r}")
    return value
