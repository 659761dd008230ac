"""Per-sample validity checks: the first line of defense, before any model is trained.

:class:`~poisonlab.data.dataset.Dataset` already guarantees uint8 (N, H, W, C) images and labels
in range. :class:`DataChecks` looks for samples that are *valid arrays but implausible data*:

``blank``
    (near-)constant images: pixel standard deviation at most ``blank_std`` grey levels.
``saturated``
    clipped images: at least ``saturation_fraction`` of the pixel values are 0 or 255.
``brightness`` / ``contrast``
    mean / standard deviation of the pixels far from the class's typical value: robust z-score
    ``|v - median| / (1.4826 MAD)`` above ``z_threshold``, against the same class of ``trusted``
    when given (else of the dataset itself; median and MAD tolerate a minority of poison).
``grayscale``
    an image with R == G == B (within ``gray_tolerance``) in a colour dataset whose reference
    has fewer than ``gray_share`` grayscale images.
``label``
    a label outside ``allowed_labels``.

Robust z-scores follow Iglewicz & Hoaglin, "How to Detect and Handle Outliers", ASQC Basic
References in Quality Control vol. 16, 1993 (median absolute deviation scaled by 1.4826).

:func:`validate_arrays` checks raw arrays before a Dataset is even built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import Defense, ScanContext, check_fraction, check_positive_int, class_groups
from poisonlab.defenses.helpers.robust_stats import scaled_mad

__all__ = ["CHECKS", "DataChecks", "validate_arrays"]

CHECKS = ("blank", "saturated", "brightness", "contrast", "grayscale", "label")
_MIN_REFERENCE = 5  # fewer reference samples in a class: use the whole reference instead
_MAX_REASONS = 100  # flagged samples listed one by one in details_


def _describe_range(a: np.ndarray) -> str:
    return f"[{a.min():g}, {a.max():g}]"


def _validate_images(x: np.ndarray, image_shape: Sequence[int] | None) -> None:
    if x.dtype == np.bool_ or x.dtype.kind not in "uif":
        raise ValueError(f"images must be uint8, integer or float, got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"images must have shape (N, H, W, C) with C in (1, 3), got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"images must hold at least one image, got shape {x.shape}")
    if image_shape is not None and tuple(x.shape[1:]) != tuple(int(s) for s in image_shape):
        raise ValueError(f"images must have shape (H, W, C) = {tuple(image_shape)}, got {tuple(x.shape[1:])}")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            first = int(np.flatnonzero(bad.reshape(len(x), -1).any(axis=1))[0])
            raise ValueError(
                f"images must be finite, got {int(bad.sum())} NaN/inf values (first in image {first})"
            )
    if x.min() < 0 or x.max() > 255:
        scale = "[0, 1] or [0, 255]" if x.dtype.kind == "f" else "[0, 255]"
        raise ValueError(f"image values must be in {scale}, got range {_describe_range(x)}")


def validate_arrays(
    x: np.ndarray, y: np.ndarray, *, num_classes: int, image_shape: Sequence[int] | None = None
) -> None:
    """Raise ValueError unless raw arrays could become a :class:`Dataset` of ``num_classes`` classes.

    Parameters
    ----------
    x : np.ndarray
        Images, shape (N, H, W, C) with C in (1, 3): uint8/integers in [0, 255] or finite floats in
        [0, 1] or [0, 255].
    y : np.ndarray
        Integer labels, shape (N,), values in [0, num_classes).
    num_classes : int
        Number of classes, >= 1.
    image_shape : tuple of int, optional
        Expected (H, W, C) of every image.

    Raises
    ------
    ValueError
        Naming what was expected and what was got (shape, dtype, value range, first bad label).
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    if image_shape is not None and (
        not isinstance(image_shape, Sequence)
        or len(image_shape) != 3
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in image_shape)
    ):
        raise ValueError(f"image_shape must be a tuple (H, W, C) of 3 ints, got {image_shape!r}")
    x, y = np.asarray(x), np.asarray(y)
    _validate_images(x, image_shape)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have shape ({x.shape[0]},) to match the images, got shape {y.shape}")
    if y.dtype == np.bool_ or y.dtype.kind not in "ui":
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
    bad = (y < 0) | (y >= num_classes)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"labels must be in [0, {num_classes - 1}] for {num_classes} classes, got {int(bad.sum())} "
            f"outside (first: {int(y[first])} at index {first})"
        )


def _reference_z(
    values: np.ndarray, labels: np.ndarray, ref_values: np.ndarray, ref_labels: np.ndarray, k: int
) -> np.ndarray:
    """|v - median| / (1.4826 MAD) against the reference of each sample's class (floor: 1 grey level).

    Unlike :func:`~poisonlab.defenses.helpers.robust_stats.robust_z`, the centre and scale come
    from a reference set (trusted data) and the result is absolute: too bright and too dark
    both count.
    """
    z = np.zeros(values.shape[0])
    groups, ref_groups = class_groups(labels, k), class_groups(ref_labels, k)
    for idx, ref_idx in zip(groups, ref_groups, strict=True):
        ref = ref_values[ref_idx] if ref_idx.size >= _MIN_REFERENCE else ref_values
        med = np.median(ref)
        scale = max(float(scaled_mad(ref, med)), 1.0)
        z[idx] = np.abs(values[idx] - med) / scale
    return z


def _gray(x: np.ndarray, tolerance: int) -> np.ndarray:
    """True for colour images whose channels differ by at most ``tolerance`` at every pixel."""
    r, g, b = (x[..., c].astype(np.int16) for c in range(3))
    hi, lo = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    return ((hi - lo) <= tolerance).reshape(len(x), -1).all(axis=1)


def _pixel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image mean, standard deviation (grey levels) and share of 0/255 values, in chunks."""
    flat = x.reshape(len(x), -1)
    mean, std, clipped = (np.empty(len(x)) for _ in range(3))
    for s in range(0, len(x), chunk):
        block = flat[s : s + chunk].astype(np.float32)
        mean[s : s + chunk] = block.mean(axis=1, dtype=np.float64)
        std[s : s + chunk] = block.std(axis=1, dtype=np.float64)
        clipped[s : s + chunk] = ((block == 0) | (block == 255)).mean(axis=1)
    return mean, std, clipped


class DataChecks(Defense):
    """Flag samples that fail simple validity checks (see the module docstring for each check).

    Parameters
    ----------
    allowed_labels : sequence of str or int, optional
        Class names or indices a sample may carry; ``None`` allows every class.
    checks : sequence of str
        Which checks to run, a subset of :data:`CHECKS` (default: all).
    blank_std : float
        Largest pixel standard deviation, in grey levels [0, 255], of a "blank" image.
    saturation_fraction : float
        Share of 0/255 values, in (0, 1], from which an image counts as clipped. Clean digits
        reach at most 0.78 (a black background), clean CIFAR-10 at most 0.8.
    z_threshold : float
        Robust z-score above which brightness or contrast is an outlier for the class. Measured
        on the clean training sets: no sample above 5 on digits or CIFAR-10 (45 above 4 on CIFAR).
    gray_tolerance : int
        Largest channel spread, in grey levels, of an image that counts as grayscale.
    gray_share : float
        The grayscale check runs only when the reference has fewer grayscale images than this
        share, in [0, 1]; CIFAR-10 holds 1.3% genuine grayscale images, so the default 0.005
        leaves them alone.
    weights : mapping of str to float, optional
        Weight of each check in the score (default 1 each); a weight 0 reports without flagging.

    Notes
    -----
    ``scores_`` is the weighted number of failed checks and ``flagged_`` is ``scores_ > 0``.
    ``failures_`` (N, len(checks)) bool records which check each sample failed, in the order of
    ``check_names_``. The reference is ``trusted`` when given, else the dataset itself.
    """

    name = "data_checks"
    space = "pixels"
    needs_model = False
    needs_trusted = False
    paper = "Iglewicz & Hoaglin, How to Detect and Handle Outliers, ASQC 1993 (robust z-scores)"

    def __init__(
        self,
        *,
        allowed_labels: Sequence[str | int] | None = None,
        checks: Sequence[str] = CHECKS,
        blank_std: float = 2.0,
        saturation_fraction: float = 0.95,
        z_threshold: float = 5.0,
        gray_tolerance: int = 2,
        gray_share: float = 0.005,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        if allowed_labels is not None:
            if (
                isinstance(allowed_labels, str)
                or not isinstance(allowed_labels, Sequence)
                or not allowed_labels
            ):
                raise ValueError(
                    f"allowed_labels must be a non-empty list of class names/indices, got {allowed_labels!r}"
                )
            if any(isinstance(c, bool) or not isinstance(c, (str, int, np.integer)) for c in allowed_labels):
                raise ValueError(
                    f"allowed_labels must hold class names (str) or indices (int), got {allowed_labels!r}"
                )
            allowed_labels = tuple(allowed_labels)
        if isinstance(checks, str) or not isinstance(checks, Sequence) or not checks:
            raise ValueError(f"checks must be a non-empty list of names from {CHECKS}, got {checks!r}")
        unknown = [c for c in checks if c not in CHECKS]
        if unknown or len(set(checks)) != len(checks):
            raise ValueError(f"checks must be distinct names from {CHECKS}, got {list(checks)}")
        self.allowed_labels = allowed_labels
        self.checks = tuple(checks)
        self.blank_std = check_fraction(blank_std, "blank_std", high=255.0, inclusive_low=True)
        self.saturation_fraction = check_fraction(saturation_fraction, "saturation_fraction")
        self.z_threshold = check_fraction(z_threshold, "z_threshold", high=np.inf)
        self.gray_tolerance = check_positive_int(gray_tolerance, "gray_tolerance", minimum=0)
        self.gray_share = check_fraction(gray_share, "gray_share", inclusive_low=True)
        self.weights = self._check_weights(weights)

    @staticmethod
    def _check_weights(weights: Mapping[str, float] | None) -> dict[str, float] | None:
        if weights is None:
            return None
        if not isinstance(weights, Mapping):
            raise ValueError(f"weights must be a mapping of check name to weight, got {weights!r}")
        for key, w in weights.items():
            if key not in CHECKS:
                raise ValueError(f"weights keys must be check names from {CHECKS}, got {key!r}")
            check_fraction(w, f"weights[{key!r}]", high=np.inf, inclusive_low=True)
        return {k: float(w) for k, w in weights.items()}

    def _fit(self, context: ScanContext) -> None:
        dataset, trusted = context.dataset, context.trusted
        reference = dataset if trusted is None else trusted
        k = dataset.num_classes
        mean, std, clipped = _pixel_stats(dataset.x)
        ref_mean, ref_std, _ = (mean, std, None) if trusted is None else _pixel_stats(reference.x)
        skipped: dict[str, str] = {}
        results = {
            "blank": std <= self.blank_std,
            "saturated": clipped >= self.saturation_fraction,
            "brightness": _reference_z(mean, dataset.y, ref_mean, reference.y, k) > self.z_threshold,
            "contrast": _reference_z(std, dataset.y, ref_std, reference.y, k) > self.z_threshold,
            "label": self._label_failures(dataset),
        }
        results["grayscale"] = np.zeros(len(dataset), dtype=bool)
        if "grayscale" in self.checks:
            if dataset.image_shape[-1] == 1:
                skipped["grayscale"] = "single-channel images"
            elif (share := float(_gray(reference.x, self.gray_tolerance).mean())) >= self.gray_share:
                skipped["grayscale"] = f"the reference holds {share:.2%} grayscale images (>= gray_share)"
            else:
                results["grayscale"] = _gray(dataset.x, self.gray_tolerance)
        self.check_names_ = self.checks
        self.failures_ = np.stack([results[c] for c in self.checks], axis=1)
        weights = np.array([(self.weights or {}).get(c, 1.0) for c in self.checks])
        self.scores_ = self.failures_.astype(np.float64) @ weights
        self.flagged_ = self.scores_ > 0
        self.details_ = self._details(dataset, skipped, trusted is not None)

    def _label_failures(self, dataset: Dataset) -> np.ndarray:
        if self.allowed_labels is None:
            return np.zeros(len(dataset), dtype=bool)
        allowed = [dataset.class_index(c) for c in self.allowed_labels]
        return ~np.isin(dataset.y, allowed)

    def _details(self, dataset: Dataset, skipped: dict[str, str], has_trusted: bool) -> dict[str, Any]:
        names, y = dataset.class_names, dataset.y
        per_check = {}
        for col, check in enumerate(self.check_names_):
            failed = self.failures_[:, col]
            per_check[check] = {
                "failed": int(failed.sum()),
                "per_class": {
                    names[c]: int(n) for c, n in enumerate(np.bincount(y[failed], minlength=len(names)))
                },
            }
        order = np.argsort(-self.scores_, kind="stable")[: min(int(self.flagged_.sum()), _MAX_REASONS)]
        return {
            "reference": "trusted" if has_trusted else "dataset",
            "flagged": int(self.flagged_.sum()),
            "checks": per_check,
            "skipped": skipped,
            "reasons": [
                {
                    "index": int(i),
                    "label": names[y[i]],
                    "failed": [c for c, f in zip(self.check_names_, self.failures_[i], strict=True) if f],
                }
                for i in order
            ],
        }
