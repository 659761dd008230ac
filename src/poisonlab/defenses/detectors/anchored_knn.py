"""Trusted-anchored k-NN: a training sample far, in every hidden layer, from the trusted samples of its label.

Why another k-NN detector. The clustering detectors (activation clustering, spectral
signatures, SPECTRE, SCAn) look for a *minority* inside a class; when the poison is as large as
the clean part of its target class (10 % all-to-one poison on a 10-class set) or spread over every
class (all-to-all) they have no minority to find, and Deep k-NN's neighbours are the other poisons.
A small set of clean, correctly labelled samples answers the question directly: a poisoned
sample is an image of another class (with a trigger) or a flipped label, so in the hidden layers
of the model it lies away from the trusted samples of the class it claims, whether or not other
poisons keep it company.

Method. For every hidden layer ``l`` (max-pooled channel activations of every convolution and
dense layer plus the penultimate features, the layers FLARE reads; Hou et al., "FLARE: Towards
Universal Dataset Purification against Backdoor Attacks", arXiv:2411.19479, 2024), features are
standardised with the trusted set's mean and standard deviation. For a training sample ``x``
labelled ``c``, ``d_l(x)`` is the mean Euclidean distance to its ``k`` nearest trusted samples of
class ``c``; the trusted samples of ``c`` get the same figure leave-one-out. The layer's score is
``log(d_l(x) / m_c)``, with ``m_c`` the median leave-one-out distance of class ``c``, divided by
the layer's robust scale (1.4826 x median absolute log-ratio over all trusted samples), so that
every layer and class speaks in the same units. The sample's score is the mean over layers.
The trusted samples' own leave-one-out scores give the clean reference distribution: a sample is
flagged when its score exceeds that distribution's median by ``threshold`` robust standard
deviations. No poison rate or cluster structure is assumed.

The use of a small trusted clean set follows SCAn (Tang, Wang, Wang, Tang and Zhang,
"Demon in the Variant: Statistical Analysis of DNNs for Robust Backdoor Contamination
Detection", USENIX Security 2021), which estimates its global variation model on one; k-NN in
representation space follows Deep k-NN (Peri et al., ECCV 2020 Workshops, arXiv:1909.13374).

Limits. The trusted set must be clean and hold at least ``k + 1`` samples of every class that
appears in the training set (a class without them is not scored: score 0, never flagged). A
clean-label poison that keeps its own class's content (SIG, label-consistent PGD) is only as far
from its class as its perturbation makes it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from poisonlab.defenses.base import (
    Defense,
    ScanContext,
    check_open_fraction,
    check_positive_float,
    check_positive_int,
    per_class_summary,
)
from poisonlab.defenses.helpers.layer_features import LayerFeatures, context_layer_features

__all__ = ["AnchoredKNN", "conformal_cutoff", "layer_log_ratios"]

#: MAD -> standard deviation of a normal distribution
_MAD_TO_SD = 1.4826


def _class_log_ratios(train: np.ndarray, trusted: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """log(kNN distance / median trusted leave-one-out distance) of one class's rows.

    ``train`` (n, C) and ``trusted`` (m, C) standardised features of one class, ``m >= k + 1``.
    Returns the training rows' (n,) and the trusted rows' leave-one-out (m,) log-ratios.
    """
    index = NearestNeighbors(n_neighbors=k + 1).fit(trusted)
    own, _ = index.kneighbors(trusted)
    loo = own[:, 1:].mean(axis=1)  # the first neighbour of a trusted row is itself
    scale = max(float(np.median(loo)), 1e-12)
    tiny = scale * 1e-6  # a duplicate of a trusted image has distance 0: keep the log finite
    train_ratio = np.zeros(len(train))
    if len(train):
        dist, _ = index.kneighbors(train, n_neighbors=k)
        train_ratio = np.log((dist.mean(axis=1) + tiny) / scale)
    return train_ratio, np.log((loo + tiny) / scale)


def layer_log_ratios(
    train: np.ndarray, y: np.ndarray, trusted: np.ndarray, y_trusted: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One layer's scores of the training rows and the trusted rows (leave-one-out), in robust units.

    Parameters
    ----------
    train : ndarray of shape (N, C)
        The layer's features of the training set.
    y : ndarray of shape (N,)
        Training labels.
    trusted : ndarray of shape (M, C)
        The layer's features of the trusted set.
    y_trusted : ndarray of shape (M,)
        Trusted labels.
    k : int
        Trusted neighbours per sample, >= 1.

    Returns
    -------
    train_scores : ndarray of shape (N,)
        0 for samples of a class with fewer than ``k + 1`` trusted samples.
    trusted_scores : ndarray of shape (M,)
        Leave-one-out scores (0 for classes too small to score).
    scored : ndarray of shape (N,) bool
        Which training samples were scored.
    """
    mean = trusted.mean(axis=0)
    std = trusted.std(axis=0) + 1e-6  # a dead channel (constant on trusted data) has no scale
    train_z = (train - mean) / std
    trusted_z = (trusted - mean) / std
    train_scores, trusted_scores = np.zeros(len(train)), np.zeros(len(trusted))
    scored = np.zeros(len(train), dtype=bool)
    for c in np.unique(y_trusted):
        anchors = np.flatnonzero(y_trusted == c)
        if len(anchors) < k + 1:
            continue
        rows = np.flatnonzero(y == c)
        train_scores[rows], trusted_scores[anchors] = _class_log_ratios(train_z[rows], trusted_z[anchors], k)
        scored[rows] = True
    spread = _MAD_TO_SD * float(np.median(np.abs(trusted_scores))) or 1.0
    return train_scores / spread, trusted_scores / spread, scored


def conformal_cutoff(reference: np.ndarray, max_fpr: float) -> float:
    """The split-conformal upper cut-off of ``reference`` at false-positive rate ``max_fpr``.

    Parameters
    ----------
    reference : ndarray, shape (n,)
        Scores of clean calibration samples, n >= 1.
    max_fpr : float
        In (0, 1).

    Returns
    -------
    float
        The ``ceil((n + 1)(1 - max_fpr))``-th smallest score (1-based), the largest when that
        rank exceeds ``n``: a new exchangeable clean score exceeds it with probability
        <= ``max_fpr``.
    """
    ordered = np.sort(np.asarray(reference, dtype=np.float64))
    if ordered.size == 0:
        raise ValueError("conformal_cutoff needs at least one reference score, got none")
    rank = int(np.ceil((ordered.size + 1) * (1.0 - max_fpr)))
    return float(ordered[min(rank, ordered.size) - 1])


class AnchoredKNN(Defense):
    """Flags training samples far, averaged over the hidden layers, from the trusted samples of their label.

    Parameters
    ----------
    k : int
        Trusted neighbours per sample, >= 1 (classes with fewer than ``k + 1`` trusted samples
        are not scored).
    threshold : float
        Flag when the score exceeds the trusted leave-one-out scores' median by this many robust
        standard deviations (> 0).
    max_fpr : float or None
        Optional cap on the false-positive rate, in (0, 1): the cut-off is raised, never lowered,
        to the split-conformal quantile of the trusted leave-one-out scores, the
        ``ceil((n + 1) (1 - max_fpr))``-th smallest of ``n`` (Vovk, Gammerman and Shafer,
        "Algorithmic Learning in a Random World", 2005; Angelopoulos and Bates, arXiv:2107.07511).
        A clean sample drawn like the trusted ones then exceeds it with probability at most
        ``max_fpr`` whatever the shape of the scores' tail, which the robust-SD rule assumes normal.
        When ``n`` is too small for the level (``(n + 1) (1 - max_fpr) > n``) the largest trusted
        score is used. None (default) keeps the robust-SD rule alone.

    Notes
    -----
    ``score_samples``: mean over layers of the log distance ratio in robust units (module
    docstring); higher = farther from the trusted samples of the label = more suspicious.
    Fitted attributes: ``scores_``, ``flagged_``, ``threshold_`` (the score cut-off),
    ``reference_`` (median and robust standard deviation of the trusted leave-one-out scores),
    ``conformal_cutoff_`` (the ``max_fpr`` quantile, None without it), ``layers_`` (layer names),
    ``details_``.
    """

    name = "anchored_knn"
    space = "features"
    needs_model = True
    needs_trusted = True
    paper = (
        "trusted-anchored multi-layer k-NN (this project); layers as in Hou et al., FLARE, "
        "arXiv:2411.19479; trusted clean set as in Tang et al., SCAn, USENIX Security 2021; "
        "k-NN as in Peri et al., Deep k-NN, arXiv:1909.13374"
    )

    def __init__(self, *, k: int = 5, threshold: float = 3.0, max_fpr: float | None = None) -> None:
        self.k = check_positive_int(k, "k")
        self.threshold = check_positive_float(threshold, "threshold")
        self.max_fpr = None if max_fpr is None else check_open_fraction(max_fpr, "max_fpr")

    def _fit(self, context: ScanContext) -> None:
        who = f"defense {self.name!r}"
        train_layers: LayerFeatures = context_layer_features(context, who)
        trusted_layers = context.trusted_layer_features(who)
        y, y_trusted = context.dataset.y, context.trusted.y  # type: ignore[union-attr]
        per_train, per_trusted = [], []
        # sklearn's neighbour search and numpy on one BLAS thread: the per-class searches are small
        with threadpool_limits(limits=1):
            for i in range(train_layers.n_layers):
                train_s, trusted_s, scored = layer_log_ratios(
                    train_layers.layer(i).astype(np.float64),
                    y,
                    trusted_layers.layer(i).astype(np.float64),
                    y_trusted,
                    self.k,
                )
                per_train.append(train_s)
                per_trusted.append(trusted_s)
        scores = np.mean(per_train, axis=0)
        reference = np.mean(per_trusted, axis=0)
        centre = float(np.median(reference))
        spread = _MAD_TO_SD * float(np.median(np.abs(reference - centre))) or 1.0
        self.conformal_cutoff_ = None if self.max_fpr is None else conformal_cutoff(reference, self.max_fpr)
        self.threshold_ = max(centre + self.threshold * spread, self.conformal_cutoff_ or -np.inf)
        self.reference_ = (centre, spread)
        self.scores_ = scores
        self.flagged_ = scored & (scores > self.threshold_)
        self.layers_ = train_layers.names
        self.details_ = self._details(context, scored)

    def _details(self, context: ScanContext, scored: np.ndarray) -> dict[str, Any]:
        dataset = context.dataset
        counts = np.bincount(context.trusted.y, minlength=dataset.num_classes)  # type: ignore[union-attr]
        unscored = [dataset.class_names[c] for c in np.unique(dataset.y[~scored])]
        return {
            "k": self.k,
            "threshold": float(self.threshold_),
            "max_fpr": self.max_fpr,
            "conformal_cutoff": self.conformal_cutoff_,
            # the trusted reference in score units: the screen reads how typical a sample is
            "reference_centre": self.reference_[0],
            "reference_spread": self.reference_[1],
            "layers": list(self.layers_),
            "trusted_per_class": {n: int(counts[c]) for c, n in enumerate(dataset.class_names)},
            "unscored_classes": unscored,
            "flagged": int(self.flagged_.sum()),
            "classes": per_class_summary(dataset, self.flagged_, self.scores_, "score"),
        }
