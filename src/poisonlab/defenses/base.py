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
``fit_context(context) -> self``
    The same, given a :class:`~poisonlab.defenses.context.ScanContext`: a scan builds one and
    passes it to every detector, so that the trusted set is embedded once per scan too.
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

from abc import ABC, abstractmethod
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.context import ScanContext
from poisonlab.inference import ForwardResult, check_images
from poisonlab.models.base import PoisonlabModel
from poisonlab.params import BOOLEAN, DEVICE, DEVICES, POSITIVE, Interval, Options, check_param

__all__ = [
    "DEVICES",
    "Defense",
    "NotFittedError",
    "ScanContext",
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
]


class NotFittedError(ValueError):
    """Raised when ``score_samples``/``predict`` is called before ``fit``."""


class Defense(ABC):
    """Base class of every training-data poison detector.

    Subclasses set the class attributes below and implement :meth:`_fit`, which reads the
    scan's :class:`~poisonlab.defenses.context.ScanContext` and must set ``self.scores_`` (float
    array (N,), finite, higher = more suspicious) and ``self.flagged_`` (bool array (N,)), and
    may fill ``self.details_``.
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
        """Examine ``dataset`` and store per-sample scores and flags; returns ``self``.

        Builds a :class:`~poisonlab.defenses.context.ScanContext` of the arguments (its forward
        pass, if one is needed, runs on this defense's ``device`` when it has one) and calls
        :meth:`fit_context`.
        """
        device = getattr(self, "device", "auto")
        return self.fit_context(ScanContext(dataset, model, forward=forward, trusted=trusted, device=device))

    def fit_context(self, context: ScanContext) -> Defense:
        """Examine ``context.dataset`` with what ``context`` holds; returns ``self``.

        Raises ValueError when this defense needs a model or a trusted set the context lacks.
        """
        if not isinstance(context, ScanContext):
            raise ValueError(f"context must be a ScanContext, got {type(context).__name__}")
        if self.needs_model and not context.has_model:
            raise ValueError(f"defense {self.name!r} needs a model (or a precomputed forward pass)")
        if self.needs_trusted and context.trusted is None:
            raise ValueError(f"defense {self.name!r} needs a trusted clean reference dataset")
        n = len(context.dataset)
        self.details_ = {}
        self._fit(context)
        scores = np.asarray(self.scores_, dtype=np.float64)
        flagged = np.asarray(self.flagged_, dtype=bool)
        if scores.shape != (n,) or flagged.shape != (n,):
            raise RuntimeError(f"{self.name}: scores/flags do not match the dataset length")  # our bug
        self.scores_ = np.nan_to_num(scores, nan=0.0, posinf=np.finfo(np.float64).max / 2)
        self.flagged_ = flagged
        self.n_samples_ = n
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
    def _fit(self, context: ScanContext) -> None:
        """Set ``scores_``, ``flagged_`` and optionally ``details_`` from ``context``."""

    def _check_fitted(self) -> None:
        if not hasattr(self, "scores_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit(dataset, ...) first")


# ---------------------------------------------------------------------------------- helpers
def pixel_matrix(dataset: Dataset) -> np.ndarray:
    """Images as a float32 matrix (N, H*W*C) with values in [0, 1]."""
    return dataset.x.reshape(len(dataset), -1).astype(np.float32) / 255.0


def class_groups(labels: np.ndarray, num_classes: int) -> list[np.ndarray]:
    """Indices of each class, in class order (empty arrays for absent classes)."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(num_classes + 1))
    return [order[bounds[k] : bounds[k + 1]] for k in range(num_classes)]


def check_calibration_inputs(
    model: object, trusted: object, *, who: str, why: str, minimum: int = 10
) -> None:
    """Raise ValueError unless ``model`` is a PoisonlabModel (``why`` a forward pass is not enough)
    and ``trusted`` a Dataset of at least ``minimum`` images the model takes, of its classes:
    what the inference-time input filters (STRIP, IBD-PSC) calibrate on."""
    if not isinstance(model, PoisonlabModel):
        raise ValueError(
            f"{who} needs the model itself (a precomputed forward pass is not enough: it {why}), "
            f"got {type(model).__name__}"
        )
    if not isinstance(trusted, Dataset):
        raise ValueError(f"trusted must be a poisonlab Dataset, got {type(trusted).__name__}")
    if model.num_classes != trusted.num_classes:
        raise ValueError(f"model has {model.num_classes} classes, trusted data has {trusted.num_classes}")
    check_images(model, trusted.x)
    if len(trusted) < minimum:
        raise ValueError(f"{who} calibration needs at least {minimum} trusted samples, got {len(trusted)}")


def per_class_summary(
    dataset: Dataset, flagged: np.ndarray, values: np.ndarray, value_name: str
) -> dict[str, dict[str, Any]]:
    """Per class name: samples ``n``, ``flagged`` count and the mean of ``values`` (``mean_<value_name>``,
    None for an empty class); ``flagged`` (N,) bool and ``values`` (N,) float over ``dataset``."""
    k = dataset.num_classes
    counts = np.bincount(dataset.y, minlength=k)
    hits = np.bincount(dataset.y[flagged], minlength=k)
    sums = np.bincount(dataset.y, weights=values, minlength=k)
    return {
        name: {
            "n": int(counts[c]),
            "flagged": int(hits[c]),
            f"mean_{value_name}": float(sums[c] / counts[c]) if counts[c] else None,
        }
        for c, name in enumerate(dataset.class_names)
    }


def flag_top_fraction(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Boolean mask of the ``round(fraction * N)`` highest scores (ties broken by index)."""
    n = scores.shape[0]
    k = int(round(fraction * n))
    mask = np.zeros(n, dtype=bool)
    if k > 0:
        mask[np.argsort(-scores, kind="stable")[:k]] = True
    return mask


# Parameter checks: thin names over poisonlab.params, kept because every defense imports them from
# here; the constraint (and so the message) comes from the one shared vocabulary.
def check_fraction(
    value: object, name: str, *, low: float = 0.0, high: float = 1.0, inclusive_low: bool = False
) -> float:
    """Validate a number in (low, high] (or [low, high] when ``inclusive_low``); return it as float."""
    closed = "both" if inclusive_low else "right"
    return float(check_param(name, value, Interval(Real, low, high, closed=closed)))


def check_positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    """Validate an integer parameter >= ``minimum``; return it as int."""
    return int(check_param(name, value, Interval(Integral, minimum, None, closed="left")))


def check_positive_float(value: object, name: str) -> float:
    """Validate a finite number > 0; return it as float."""
    return float(check_param(name, value, POSITIVE))


def check_open_fraction(value: object, name: str) -> float:
    """Validate a number in the open interval (0, 1); return it as float."""
    return float(check_param(name, value, Interval(Real, 0, 1, closed="neither")))


def check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    """Validate a string parameter against ``choices``."""
    return check_param(name, value, Options(*choices))


def check_bool(value: object, name: str) -> bool:
    """Validate a boolean parameter (numpy booleans accepted); return it as bool."""
    return bool(check_param(name, value, BOOLEAN))


def check_device(value: object) -> str:
    """Validate a device parameter: ``auto``, ``cpu``, ``cuda`` or ``cuda:<n>``."""
    return check_param("device", value, DEVICE)
