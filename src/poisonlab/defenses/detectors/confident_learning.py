"""Confident learning: find training labels that disagree with out-of-sample predictions.

Northcutt, Jiang, Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels", Journal
of Artificial Intelligence Research 70, 2021 (arXiv:1911.00068). Our own implementation of the
method as the paper describes it:

1. out-of-sample predicted probabilities ``p(j; x)`` by K-fold cross-validation of a cheap
   classifier (here multinomial logistic regression on the model's standardised penultimate
   features);
2. per-class thresholds ``t_j`` = mean self-confidence ``p(j; x)`` of the samples labelled j;
3. the confident joint ``C[i][j]``: samples labelled i whose most probable class among those
   above their threshold is j, calibrated so each row sums to the count of label i, then
   normalised into the joint distribution ``Q`` of (given, true) labels;
4. pruning: "prune_by_noise_rate" flags, for each off-diagonal (i, j), the ``N * Q[i][j]``
   samples labelled i with the largest margin ``p(j; x) - p(i; x)``; "prune_by_class" flags,
   per class i, the ``N * sum_{j != i} Q[i][j]`` least self-confident samples; "both" keeps the
   samples both rules flag; "confident_joint_offdiagonal" flags the off-diagonal entries of C.

Aimed at label flips and mislabelling. A backdoor's poison is correctly "labelled" as far as the
features go (the trigger maps it to the target class the model learned), so confident learning
is not expected to find it. The method assumes that, within each true class, the correct label
stays the most frequent one; at a 50 % flip rate of a class the flipped and genuine halves become
indistinguishable, and recall drops accordingly.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import Defense, ScanContext, check_choice, check_fraction, check_positive_int

__all__ = ["ConfidentLearning"]

METHODS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_joint_offdiagonal")
SCORES = ("self_confidence", "normalized_margin")


def confident_joint(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, ...]:
    """Per-class thresholds (K,), confident joint (K, K) int and its confident class per sample.

    ``probs`` (N, K) are out-of-sample probabilities, ``labels`` (N,) the given labels. The
    confident class of a sample is -1 when no class reaches its threshold. Classes without
    samples get an infinite threshold (nothing is confidently of a class nobody labelled).
    """
    counts = np.bincount(labels, minlength=num_classes)
    self_conf = probs[np.arange(len(labels)), labels]
    sums = np.bincount(labels, weights=self_conf, minlength=num_classes)
    thresholds = np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)
    above = probs >= thresholds
    confident = np.where(above.any(axis=1), np.where(above, probs, -np.inf).argmax(axis=1), -1)
    ok = confident >= 0
    joint = np.bincount(labels[ok] * num_classes + confident[ok], minlength=num_classes**2)
    return thresholds, joint.reshape(num_classes, num_classes), confident


def calibrated_joint(joint: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Joint distribution Q (K, K) of (given, true) labels: rows rescaled to the label counts."""
    rows = joint.sum(axis=1, keepdims=True)
    scaled = np.where(rows > 0, joint / np.maximum(rows, 1) * counts[:, None], 0.0)
    return scaled / max(scaled.sum(), 1e-12)


def _lowest(values: np.ndarray, members: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` members with the lowest ``values`` (ties by index)."""
    return members[np.argsort(values[members], kind="stable")[:k]]


def prune(probs: np.ndarray, labels: np.ndarray, joint_q: np.ndarray, method: str) -> np.ndarray:
    """Boolean mask (N,) of the samples the pruning rule ``method`` removes (not the CJ rule)."""
    n, k = probs.shape
    by_class = np.zeros(n, dtype=bool)
    by_rate = np.zeros(n, dtype=bool)
    self_conf = probs[np.arange(n), labels]
    for i in range(k):
        members = np.flatnonzero(labels == i)
        if members.size == 0:
            continue
        off = joint_q[i].copy()
        off[i] = 0.0
        by_class[_lowest(self_conf, members, int(round(n * off.sum())))] = True
        for j in np.flatnonzero(np.round(n * off) > 0):
            by_rate[_lowest(probs[:, i] - probs[:, j], members, int(round(n * off[j])))] = True
    return {"prune_by_class": by_class, "prune_by_noise_rate": by_rate, "both": by_class & by_rate}[method]


class ConfidentLearning(Defense):
    """Flag likely mislabelled samples by confident learning on penultimate features.

    Parameters
    ----------
    folds : int
        Cross-validation folds for the out-of-sample probabilities (>= 2). Every labelled class
        needs at least this many samples.
    method : {"prune_by_noise_rate", "prune_by_class", "both", "confident_joint_offdiagonal"}
        Which samples are flagged (see the module docstring).
    score : {"self_confidence", "normalized_margin"}
        Label-quality score, in [0, 1], higher = more suspicious: ``1 - p(y; x)``, or
        ``(1 - (p(y; x) - max_{j != y} p(j; x))) / 2``.
    C : float
        Inverse L2 strength of the logistic regression (> 0).
    max_iter : int
        Iterations of each logistic-regression fit.
    seed : int
        Seed of the fold split.

    Attributes
    ----------
    probabilities_ : np.ndarray, shape (N, K)
        Out-of-sample predicted probabilities.
    suggested_labels_ : np.ndarray, shape (N,), int64
        Most probable class out of sample, the label a "relabel" mitigation would give.
    details_ : dict
        ``thresholds``, ``confident_joint`` (counts) and ``joint_estimate`` (Q), ``noise_matrix``
        ``p(given = i | true = j)`` (rows given, columns true), ``estimated_noise_rate``,
        ``flagged_per_class`` and ``flagged_given_vs_suggested`` (counts among flagged samples).
    """

    name = "confident_learning"
    space = "features"
    needs_model = True
    paper = "Northcutt, Jiang, Chuang, Confident Learning, JAIR 2021 (arXiv:1911.00068)"

    def __init__(
        self,
        *,
        folds: int = 5,
        method: str = "prune_by_noise_rate",
        score: str = "self_confidence",
        C: float = 1.0,
        max_iter: int = 1000,
        seed: int = 0,
    ) -> None:
        self.folds = check_positive_int(folds, "folds", minimum=2)
        self.method = check_choice(method, "method", METHODS)
        self.score = check_choice(score, "score", SCORES)
        self.C = check_fraction(C, "C", high=1e6)
        self.max_iter = check_positive_int(max_iter, "max_iter")
        self.seed = check_positive_int(seed, "seed", minimum=0)

    def _fit(self, context: ScanContext) -> None:
        dataset = context.dataset
        k, labels = dataset.num_classes, dataset.y
        counts = np.bincount(labels, minlength=k)
        if np.count_nonzero(counts) < 2:
            raise ValueError("confident learning needs samples of at least two labelled classes")
        small = np.flatnonzero((counts > 0) & (counts < self.folds))
        if small.size:
            names = {dataset.class_names[c]: int(counts[c]) for c in small}
            raise ValueError(
                f"every labelled class needs at least folds={self.folds} samples for cross-validation, "
                f"got {names}; lower folds or drop those classes"
            )
        features = context.features()
        probs = self._out_of_sample(np.asarray(features, np.float64), labels, k)
        thresholds, joint, confident = confident_joint(probs, labels, k)
        joint_q = calibrated_joint(joint, counts)
        suggested = probs.argmax(axis=1)
        if self.method == "confident_joint_offdiagonal":
            flagged = (confident >= 0) & (confident != labels)
        else:
            flagged = prune(probs, labels, joint_q, self.method)
        self_conf = probs[np.arange(len(labels)), labels]
        if self.score == "self_confidence":
            scores = 1.0 - self_conf
        else:
            others = np.where(np.eye(k, dtype=bool)[labels], -np.inf, probs).max(axis=1)
            scores = (1.0 - (self_conf - others)) / 2.0
        self.probabilities_ = probs
        self.suggested_labels_ = suggested.astype(np.int64)
        self.scores_ = scores
        self.flagged_ = flagged
        self._report(dataset, thresholds, joint, joint_q, flagged)

    def _out_of_sample(self, features: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
        """Predicted probabilities (N, K) of each sample by a classifier that never saw it."""
        probs = np.zeros((len(labels), k))
        split = StratifiedKFold(n_splits=self.folds, shuffle=True, random_state=self.seed)
        # The (n, 128) x (128, K) products of L-BFGS are too small for threaded BLAS: on 2 busy
        # cores, 40k samples took 25 s with the default threads and 3.8 s with one.
        with threadpool_limits(limits=1, user_api="blas"):
            for train, test in split.split(features, labels):
                clf = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=self.max_iter))
                clf.fit(features[train], labels[train])
                probs[np.ix_(test, clf.classes_)] = clf.predict_proba(features[test])
        return probs

    def _report(
        self,
        dataset: Dataset,
        thresholds: np.ndarray,
        joint: np.ndarray,
        joint_q: np.ndarray,
        flagged: np.ndarray,
    ) -> None:
        k, labels = dataset.num_classes, dataset.y
        true_mass = joint_q.sum(axis=0)
        noise = np.where(true_mass > 0, joint_q / np.maximum(true_mass, 1e-12), 0.0)
        relabel = np.bincount(labels[flagged] * k + self.suggested_labels_[flagged], minlength=k * k).reshape(
            k, k
        )
        self.details_ = {
            "method": self.method,
            "folds": self.folds,
            "out_of_sample_accuracy": float(np.mean(self.suggested_labels_ == labels)),
            "thresholds": [None if not np.isfinite(t) else float(t) for t in thresholds],
            "confident_joint": joint.astype(int).tolist(),
            "joint_estimate": [[float(v) for v in row] for row in joint_q],
            "noise_matrix": [[float(v) for v in row] for row in noise],
            "estimated_noise_rate": float(joint_q.sum() - np.trace(joint_q)),
            "n_flagged": int(flagged.sum()),
            "flagged_per_class": np.bincount(labels[flagged], minlength=k).tolist(),
            "flagged_given_vs_suggested": relabel.tolist(),
        }
