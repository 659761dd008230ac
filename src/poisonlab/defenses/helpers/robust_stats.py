"""Robust location, scale and z-scores: the median and the scaled median absolute deviation.

Poison is a minority that the statistics meant to expose it must not follow, so the detectors
measure "unusual" with the median and the median absolute deviation (MAD), scaled by 1.4826 to
match the standard deviation of a normal distribution (Rousseeuw and Croux, "Alternatives to the
median absolute deviation", JASA 88(424), 1993; the modified z-score of Iglewicz and Hoaglin,
"How to Detect and Handle Outliers", ASQC Basic References in Quality Control 16, 1993).

Two z-scores, for two different kinds of input:

* :func:`robust_z` standardises many per-sample values (distances, reconstruction errors). Where
  more than half of them are tied the MAD is 0; the mean absolute deviation scaled by 1.2533 (its
  normal-consistency factor) takes over, as in Iglewicz and Hoaglin's modified z-score.
* :func:`cross_class_z` compares a handful of per-class statistics (one silhouette or one
  bimodality coefficient per class) with each other. Its MAD is floored at 1 % of the median's
  magnitude, so that classes with near-identical statistics do not turn tiny differences into
  huge z-scores.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MAD_TO_SD",
    "MEAN_AD_TO_SD",
    "cross_class_z",
    "grouped_class_z",
    "log_robust_z",
    "robust_scale",
    "robust_threshold",
    "robust_z",
    "scaled_mad",
]

MAD_TO_SD = 1.4826
MEAN_AD_TO_SD = 1.2533


def scaled_mad(values: np.ndarray, center: np.ndarray | float, axis: int | None = None) -> np.ndarray:
    """``1.4826 * median(|values - center|)``: the normal-consistent MAD (0-d array for axis None)."""
    return MAD_TO_SD * np.median(np.abs(values - center), axis=axis)


def robust_scale(values: np.ndarray, center: np.ndarray | float, axis: int | None = None) -> np.ndarray:
    """Normal-consistent spread of ``values`` around ``center``: scaled MAD, else scaled mean AD.

    Returns an array (or a 0-d array when ``axis`` is None) with 1.0 where every value equals
    ``center`` (no spread at all), so dividing by it never produces inf or NaN.
    """
    dev = np.abs(values - center)
    scale = MAD_TO_SD * np.median(dev, axis=axis)
    mean_ad = MEAN_AD_TO_SD * np.mean(dev, axis=axis)
    scale = np.where(scale > 1e-12, scale, mean_ad)
    return np.where(scale > 1e-12, scale, 1.0)


def robust_z(values: np.ndarray) -> np.ndarray:
    """``(v - median) / robust_scale``: 0 for a typical value, about N(0, 1) for normal data."""
    values = np.asarray(values, dtype=np.float64)
    center = np.median(values)
    return (values - center) / robust_scale(values, center)


def log_robust_z(values: np.ndarray) -> np.ndarray:
    """:func:`robust_z` of ``log(values)``.

    Distances and reconstruction errors are positive and right-skewed; on the log scale they are
    close to symmetric, so a median + k * MAD threshold flags a similar share on every class.
    """
    values = np.asarray(values, dtype=np.float64)
    floor = max(float(np.max(values)) * 1e-12, 1e-300)
    return robust_z(np.log(np.maximum(values, floor)))


def cross_class_z(values: np.ndarray, reference: np.ndarray | None = None) -> list[float]:
    """Robust z-scores ``(v - median) / (1.4826 * MAD)`` of a few per-class statistics.

    The MAD is floored at 1 % of the median's magnitude (and 1e-9) so that near-identical
    values do not turn tiny differences into huge z-scores.

    Parameters
    ----------
    values : array-like of float, shape (K,)
        One statistic per class.
    reference : array-like of bool, shape (K,), optional
        Classes whose values set the median and MAD (default: all); every class is scored
        against them. Used to keep statistics that measure something else (a split that
        isolates a few outliers) out of the reference. Must select at least one class.
    """
    v = np.asarray(values, dtype=np.float64)
    ref = v if reference is None else v[np.asarray(reference, dtype=bool)]
    if ref.size == 0:
        raise ValueError(f"cross_class_z needs at least one reference class, got {ref.size} of {v.size}")
    med = np.median(ref)
    scale = max(scaled_mad(ref, med), 0.01 * abs(med), 1e-9)
    return ((v - med) / scale).tolist()


def grouped_class_z(values: np.ndarray, grouped: np.ndarray, min_classes: int) -> list[float | None]:
    """:func:`cross_class_z` against the ``grouped`` classes, for detectors that judge splits.

    Parameters
    ----------
    values : array-like of float, shape (K,)
        One statistic per class.
    grouped : array-like of bool, shape (K,)
        Classes whose split found two groups rather than a few outliers: they set the median and
        MAD when there are at least ``min_classes`` of them, else every class does.
    min_classes : int
        Fewest classes a cross-class median and MAD mean anything for; below it (K < min_classes)
        every z is None and the caller falls back to absolute rules.
    """
    grouped = np.asarray(grouped, dtype=bool)
    if len(grouped) < min_classes:
        return [None] * len(grouped)
    return list(cross_class_z(values, reference=grouped if grouped.sum() >= min_classes else None))


def robust_threshold(values: np.ndarray, k: float) -> tuple[float, float, float]:
    """``(median, scaled MAD, median + k * scaled MAD)`` of ``values``, as floats."""
    med = float(np.median(values))
    mad = float(scaled_mad(values, med))
    return med, mad, med + k * mad
