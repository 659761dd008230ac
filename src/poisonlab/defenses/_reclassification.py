"""Shared pieces of the representation-space backdoor detectors (activation clustering, spectral signatures).

Both detectors split a class in two; the suspect is the smaller side (the papers' premise: poison
is a minority of the class it is labelled as; a backdoor that does not fire on every poisoned
image also leaves the poison mode a little smaller than the poison count at one half).

Exclusionary reclassification (Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks
by Activation Clustering", SafeAI@AAAI 2019, arXiv:1811.03728) asks a classifier that never saw
the suspect which class it belongs to. The paper retrains the network; here a linear softmax head
(L2 logistic regression) is trained on the frozen, standardised penultimate features of a seeded,
class-capped subsample (well under a second per side). With frozen features of the poisoned
model the verdict is reliable for mislabelled samples (they go back to their true class) but
not for a backdoor: the feature extractor has already mapped triggered images into the target
class, so a head trained on the clean target images keeps them there (on the CIFAR-10 benchmark
of ``benchmarks/defenses.py``: 0.1 % of the poison mode reclassified, 99 % of the clean half of
"bird" once the head saw only the poison as "bird"), and confusable clean classes (cat/dog)
have halves that go elsewhere. It is therefore reported, and used as a decision only where
asked for.

Cross-class calibration uses robust z-scores: median and MAD scaled by 1.4826 (Rousseeuw and
Croux, "Alternatives to the median absolute deviation", JASA 88(424), 1993).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

__all__ = [
    "MIN_CLASSES_FOR_Z",
    "judge_sides",
    "reclassify_sides",
    "robust_z",
    "standardized_features",
]

# Below this many analysed classes a cross-class median/MAD is meaningless: absolute rules only.
MIN_CLASSES_FOR_Z = 5


def judge_sides(
    sizes: list[int], reclass: list[dict[str, Any]], *, threshold: float, margin: float
) -> dict[str, Any]:
    """Reclassification verdict on the smaller side (the suspect) of a class split in two.

    Decisive means: the suspect's share ``o_s`` given another class is at least ``threshold``
    and exceeds its sibling's by ``margin``. ``strength`` is ``o_s * (1 - o_sibling)`` in [0, 1].
    """
    o = np.array([r["other_share"] for r in reclass])
    suspect = int(np.argmin(sizes))
    o_s, o_sib = float(o[suspect]), float(o[1 - suspect])
    decisive = bool(o_s >= threshold and o_s - o_sib >= margin)
    return {"suspect": suspect, "decisive": decisive, "strength": o_s * (1.0 - o_sib)}


def robust_z(values: np.ndarray) -> list[float]:
    """Robust z-scores ``(v - median) / (1.4826 * MAD)`` of a few per-class statistics.

    The MAD is floored at 1 % of the median's magnitude (and 1e-9) so that near-identical
    values do not turn tiny differences into huge z-scores.
    """
    v = np.asarray(values, dtype=np.float64)
    med = np.median(v)
    scale = max(1.4826 * np.median(np.abs(v - med)), 0.01 * abs(med), 1e-9)
    return ((v - med) / scale).tolist()


def standardized_features(feats: np.ndarray) -> np.ndarray:
    """Features centred and scaled per dimension (constant dimensions left at 0), (N, D)."""
    sd = feats.std(axis=0)
    return (feats - feats.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def reclassify_sides(
    std: np.ndarray, y: np.ndarray, cls: int, sides: list[np.ndarray], *, max_per_class: int, seed: int
) -> list[dict[str, Any]]:
    """Exclusionary reclassification of each side (sample indices) of class ``cls``.

    For every side, a linear softmax head (L2 logistic regression) is trained on a seeded,
    class-capped subsample of all samples except that side, then classifies the side.

    Returns
    -------
    list of dict
        Per side: ``size``, ``other_share`` (share given a class other than ``cls``, in [0, 1]),
        ``top_other_class`` (most frequent other class or None) and its ``top_other_share``. A side
        that is empty, or without which a single class is left, gets share 0 (no verdict).
    """
    order = np.random.default_rng(seed).permutation(len(y))
    out = []
    for side in sides:
        if len(side) == 0:
            out.append({"size": 0, "other_share": 0.0, "top_other_class": None, "top_other_share": 0.0})
            continue
        keep = np.ones(len(y), dtype=bool)
        keep[side] = False
        train = _capped(order[keep[order]], y, max_per_class)
        if np.unique(y[train]).size < 2:  # nothing to tell apart without the side: no verdict
            out.append(
                {"size": len(side), "other_share": 0.0, "top_other_class": None, "top_other_share": 0.0}
            )
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            head = LogisticRegression(C=1.0, max_iter=300).fit(std[train], y[train])
        pred = head.predict(std[side])
        other = np.bincount(pred[pred != cls], minlength=int(y.max()) + 1)
        out.append(
            {
                "size": int(len(side)),
                "other_share": float(np.mean(pred != cls)),
                "top_other_class": int(other.argmax()) if other.sum() else None,
                "top_other_share": float(other.max() / len(side)),
            }
        )
    return out


def _capped(candidates: np.ndarray, y: np.ndarray, cap: int) -> np.ndarray:
    """The first ``cap`` of each class among ``candidates`` (already in random order)."""
    labels = y[candidates]
    by_class = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[by_class], labels[by_class])
    rank = np.empty(len(candidates), dtype=np.int64)
    rank[by_class] = np.arange(len(candidates)) - starts
    return candidates[rank < cap]
