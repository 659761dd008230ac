"""What the class-splitting backdoor detectors share (activation clustering, spectral signatures).

Both detectors split a class in two; the suspect is the smaller side (the papers' premise: poison
is a minority of the class it is labelled as; a backdoor that does not fire on every poisoned
image also leaves the poison mode a little smaller than the poison count at one half).

Exclusionary reclassification (Chen et al., "Detecting Backdoor Attacks on Deep Neural Networks
by Activation Clustering", SafeAI@AAAI 2019, arXiv:1811.03728) asks a classifier that never saw
the suspect which class it belongs to. The paper retrains the network; here a linear softmax head
(L2 logistic regression, :func:`poisonlab.defenses.helpers.linear_head.fit_linear_head`) is
trained on the frozen, standardised penultimate features of a seeded, class-capped subsample
(well under a second per side). With frozen features of the poisoned model the verdict is
reliable for mislabelled samples (they go back to their true class) but not for a backdoor: the
feature extractor has already mapped triggered images into the target class, so a head trained
on the clean target images keeps them there (on the CIFAR-10 benchmark of
``benchmarks/defenses.py``: 0.1 % of the poison mode reclassified, 99 % of the clean half of
"bird" once the head saw only the poison as "bird"), and confusable clean classes (cat/dog) have
halves that go elsewhere. It is therefore reported, and used as a decision only where asked for.

Cross-class calibration of the split statistics uses
:func:`poisonlab.defenses.helpers.robust_stats.cross_class_z`.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import (
    Defense,
    ScanContext,
    check_fraction,
    check_open_fraction,
    check_positive_int,
    class_groups,
)
from poisonlab.defenses.helpers.linear_head import fit_linear_head
from poisonlab.inference import ForwardResult

__all__ = [
    "MIN_CLASSES_FOR_Z",
    "ClassSplitDetector",
    "judge_sides",
    "reclassify_sides",
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
        k = int(y.max()) + 1
        # std is already standardised over every sample: the head must not rescale the subsample
        head = fit_linear_head(std[train], y[train], k, C=1.0, max_iter=300, scale=False)
        pred = head.predict(std[side])
        other = np.bincount(pred[pred != cls], minlength=k)
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


class ClassSplitDetector(Defense):
    """Base of the detectors that split each class's penultimate activations in two.

    Activation clustering and spectral signatures share the reclassification parameters (see
    the subclasses' docstrings), the per-class loop over the model's representations, and the
    exclusionary reclassification of a split's two sides (:meth:`_reclassify_sides`).
    Subclasses implement :meth:`_analyse`.
    """

    space = "features"
    needs_model = True
    needs_trusted = False

    reclass_threshold: float
    reclass_margin: float
    max_train_per_class: int
    min_class_size: int
    random_state: int

    def _set_split_params(
        self,
        *,
        reclass_threshold: float,
        reclass_margin: float,
        max_train_per_class: int,
        min_class_size: int,
        random_state: int,
    ) -> None:
        """Validate and set the parameters every class-split detector has (set last, in this order)."""
        self.reclass_threshold = check_open_fraction(reclass_threshold, "reclass_threshold")
        self.reclass_margin = check_fraction(reclass_margin, "reclass_margin", inclusive_low=True)
        self.max_train_per_class = check_positive_int(max_train_per_class, "max_train_per_class", minimum=10)
        self.min_class_size = check_positive_int(min_class_size, "min_class_size", minimum=4)
        self.random_state = check_positive_int(random_state, "random_state", minimum=0)

    def _fit(self, context: ScanContext) -> None:
        # Every problem here is small (a class of activations, a head on a few thousand rows):
        # BLAS/OpenMP threads cost more in synchronisation than they save, and on a busy machine
        # their spin-waits made one fit 100x slower.
        rep = context.representations()
        with threadpool_limits(limits=1):
            self._analyse(context.dataset, rep)

    @abstractmethod
    def _analyse(self, dataset: Dataset, rep: ForwardResult) -> None:
        """Per-class analysis of the activations in ``rep``; sets the fitted attributes."""

    def _large_classes(self, dataset: Dataset, what: str) -> tuple[list[np.ndarray], list[int]]:
        """Every class's sample indices, and the classes with at least ``min_class_size`` samples.

        Raises ValueError, naming the detector as ``what``, when no class is that large.
        """
        groups = class_groups(dataset.y, dataset.num_classes)
        large = [k for k, g in enumerate(groups) if len(g) >= self.min_class_size]
        if not large:
            raise ValueError(
                f"{what} a class of at least min_class_size={self.min_class_size} samples, "
                f"the largest has {max(len(g) for g in groups)}"
            )
        return groups, large

    def _reclassify_sides(
        self, k: int, sides: list[np.ndarray], sizes: list[int], std: np.ndarray, y: np.ndarray, stats: dict
    ) -> dict[str, Any]:
        """Exclusionary reclassification of the two ``sides`` of class ``k``; returns the verdict.

        Fills ``stats`` with the per-side ``reclassification`` and, when decisive, the suspect's
        likely ``source_class``.
        """
        reclass = reclassify_sides(
            std, y, k, sides, max_per_class=self.max_train_per_class, seed=self.random_state
        )
        verdict = judge_sides(sizes, reclass, threshold=self.reclass_threshold, margin=self.reclass_margin)
        stats["reclassification"] = reclass
        if verdict["decisive"]:
            stats["source_class"] = reclass[verdict["suspect"]]["top_other_class"]
        return verdict
