"""What every detector of one scan is given: the data, the model's view of it, the trusted set.

A scan fits several detectors on the same training set. Many of them look at the same things:
the penultimate features of the model on the training set (activation clustering, spectral
signatures, confident learning, the feature-space anomaly detectors) and the features of the
trusted clean set (RONI, provenance, label drift in feature space). :class:`ScanContext` holds
the inputs of one scan and computes each of these at most once, on first use, so a scan of six
feature-space defenses runs the model once over the training set and once over the trusted set.

:meth:`poisonlab.defenses.base.Defense.fit` builds a context from its arguments when it is called
on its own; :func:`poisonlab.defenses.scan.scan` builds one per scan and hands it to every
detector through :meth:`~poisonlab.defenses.base.Defense.fit_context`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.helpers.layer_features import LayerFeatures, layer_features
from poisonlab.inference import ForwardResult, forward_pass
from poisonlab.models.base import PoisonlabModel

__all__ = ["ScanContext", "check_compatible", "check_dataset", "check_forward"]


def check_dataset(dataset: object) -> None:
    """Raise ValueError unless ``dataset`` is a non-empty poisonlab :class:`Dataset`."""
    if not isinstance(dataset, Dataset):
        raise ValueError(f"dataset must be a poisonlab Dataset, got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError("dataset is empty: nothing to scan")


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


def _check_model_classes(model: PoisonlabModel, dataset: Dataset) -> None:
    if model.num_classes != dataset.num_classes:
        raise ValueError(f"model has {model.num_classes} classes, dataset has {dataset.num_classes}")


# eq=False: two contexts are the same scan only if they are the same object (the lazily filled
# caches make field-wise equality meaningless), and identity hashing stays available.
@dataclass(frozen=True, eq=False)
class ScanContext:
    """The inputs of one scan, with the model's representations computed once, on first use.

    Parameters
    ----------
    dataset : Dataset
        The training set to screen (non-empty).
    model : PoisonlabModel, optional
        The model trained on ``dataset``; needed by feature-space detectors unless ``forward``
        is given, and by those that embed the trusted set or predict on new images.
    forward : ForwardResult, optional
        A precomputed pass of ``model`` over ``dataset.x`` (with penultimate features for the
        feature-space detectors).
    trusted : Dataset, optional
        Clean reference data with the images shape and class names of ``dataset``.
    device : str
        Where a pass that has to be computed here runs (``"auto"``, ``"cpu"``, ``"cuda[:n]"``).

    Raises
    ------
    ValueError
        For an empty or non-Dataset ``dataset``, an incompatible ``trusted`` set or a
        ``forward`` result that does not cover ``dataset``.
    """

    dataset: Dataset
    model: PoisonlabModel | None = None
    forward: ForwardResult | None = None
    trusted: Dataset | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        check_dataset(self.dataset)
        if self.trusted is not None:
            check_compatible(self.dataset, self.trusted, "trusted")
        if self.forward is not None:
            check_forward(self.forward, self.dataset)

    @property
    def has_model(self) -> bool:
        """True when the model, or at least its pass over the dataset, is available."""
        return self.model is not None or self.forward is not None

    def representations(self) -> ForwardResult:
        """Logits and penultimate features of the model on ``dataset``, computed at most once.

        Raises ValueError when neither a model nor a forward result is available, when the given
        forward result holds no features, or when the model does not fit the dataset.
        """
        return self._representations

    def features(self) -> np.ndarray:
        """Penultimate features (N, D) of the model on ``dataset``: ``representations().features``."""
        return self._representations.features

    def trusted_features(self, who: str) -> np.ndarray:
        """Penultimate features (M, D) float32 of the model on ``trusted``, computed at most once.

        ``who`` names the detector in the error raised when only a forward pass (no model) or
        no trusted set was given.
        """
        if self.model is None:
            raise ValueError(
                f"{who} needs the model itself (not only a forward pass) to embed the trusted set"
            )
        if self.trusted is None:
            raise ValueError(f"{who} needs a trusted clean reference dataset")
        _check_model_classes(self.model, self.dataset)
        return self._trusted_features

    # cached_property writes straight into the instance __dict__, which a frozen dataclass allows:
    # the fields stay read-only while each representation is computed once per context.
    @cached_property
    def _representations(self) -> ForwardResult:
        if self.forward is not None:
            check_forward(self.forward, self.dataset, need_features=True)
            return self.forward
        if self.model is None:
            raise ValueError("this defense needs a model (or a precomputed forward pass) for features")
        _check_model_classes(self.model, self.dataset)
        return forward_pass(self.model, self.dataset.x, features=True, device=self.device)

    @cached_property
    def _trusted_features(self) -> np.ndarray:
        assert self.model is not None and self.trusted is not None  # checked by trusted_features
        rep = forward_pass(self.model, self.trusted.x, features=True, device=self.device)
        return np.asarray(rep.features, np.float32)

    def layer_features(self, who: str) -> LayerFeatures:
        """Max-pooled activations of every hidden layer on ``dataset`` (N, D), computed at most once.

        Raises ValueError (naming ``who``) without the model itself: a forward result holds only
        the penultimate layer.
        """
        if self.model is None:
            raise ValueError(f"{who} needs the model itself (its hidden layers), not only a forward pass")
        _check_model_classes(self.model, self.dataset)
        return self._layer_features

    @cached_property
    def _layer_features(self) -> LayerFeatures:
        assert self.model is not None  # checked by layer_features
        return layer_features(self.model, self.dataset.x, pooling="max", device=self.device)

    def trusted_layer_features(self, who: str) -> LayerFeatures:
        """Max-pooled activations of every hidden layer on ``trusted`` (M, D), computed at most once.

        Raises ValueError (naming ``who``) without the model itself or without a trusted set.
        """
        if self.model is None:
            raise ValueError(f"{who} needs the model itself (its hidden layers), not only a forward pass")
        if self.trusted is None:
            raise ValueError(f"{who} needs a trusted clean reference dataset")
        _check_model_classes(self.model, self.dataset)
        return self._trusted_layer_features

    @cached_property
    def _trusted_layer_features(self) -> LayerFeatures:
        assert self.model is not None and self.trusted is not None  # checked by the caller
        return layer_features(self.model, self.trusted.x, pooling="max", device=self.device)
