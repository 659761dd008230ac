"""Deep k-NN: a sample whose nearest neighbours in feature space mostly carry another label is poison.

Peri, Gupta, Huang, Fowl, Zhu, Feizi, Goldstein and Dickerson, "Deep k-NN Defense Against
Clean-label Data Poisoning Attacks", ECCV 2020 Workshops (Adversarial Robustness in the Real
World), LNCS 12535, arXiv:1909.13374.

Clean-label poisons (feature collision, convex polytope) keep their base-class label but are
crafted to sit, in the penultimate feature space of the network, among the target class. Their
neighbours there carry the target's label. For every training sample, the labels of its ``k``
nearest other samples (Euclidean distance in penultimate feature space, the sample itself
excluded) are counted; the sample is flagged when its own label is not the plurality label
(a tie that includes its own label keeps it). Its score is the share of neighbours with another
label, in [0, 1].

The choice of k. The paper's ablation measures k against the number of poisons ("normalized
k" = k / #poisons) and finds that values from about 1 to 2 remove nearly all of them: a group of
P poisons around one target must be outvoted by the target's samples, so k has to exceed about
twice P - 1 for the poisons' own votes to lose. The number of poisons is unknown, so the default
plans for a poison budget of ``expected_fraction`` of a class (10 %, an upper end of the
clean-label attacks' budgets) and takes ``k = 2 * expected_fraction * (median class size)``,
normalized k = 2 at that budget; it is capped at half the smallest class, so that a clean sample
of a small class can still hold the plurality among its neighbours (the paper's warning about
class imbalance), and at ``max_k``. A poison group larger than about k / 2 outvotes the test
and is missed: pass ``k`` when a larger budget is feared.

Search: exact, in the top ``n_components`` principal directions of the features (all of them
with ``n_components=None``), by the cell-pruned search of
:mod:`poisonlab.defenses.helpers.knn`. The projection keeps the distances along the directions
that hold the variance of the features and makes the search on 44,000 x 512 features a matter of
seconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from poisonlab.defenses.base import (
    Defense,
    ScanContext,
    check_open_fraction,
    check_positive_int,
)
from poisonlab.defenses.helpers.knn import nearest_neighbours
from poisonlab.defenses.helpers.robust_covariance import principal_directions

__all__ = ["DeepKNN", "default_k", "neighbour_votes"]


def default_k(class_sizes: np.ndarray, expected_fraction: float, max_k: int) -> int:
    """``2 * expected_fraction * median class size``, capped at half the smallest class and ``max_k``.

    ``class_sizes`` (K,) counts the samples of each class; empty classes are ignored. Returns an
    integer >= 1.
    """
    sizes = np.asarray(class_sizes)[np.asarray(class_sizes) > 0]
    k = int(round(2.0 * expected_fraction * float(np.median(sizes))))
    return max(1, min(k, int(sizes.min()) // 2, max_k))


def neighbour_votes(
    neighbour_labels: np.ndarray, labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Plurality test of every sample's neighbours.

    Parameters
    ----------
    neighbour_labels : ndarray of shape (N, k)
        Labels of each sample's k nearest other samples.
    labels : ndarray of shape (N,)
        Each sample's own label.
    num_classes : int
        Number of classes K (labels in [0, K)).

    Returns
    -------
    other_share : ndarray of shape (N,)
        Share of neighbours with another label, in [0, 1].
    outvoted : ndarray of shape (N,) bool
        True when another label has more neighbours than the sample's own label.
    """
    n, k = neighbour_labels.shape
    rows = np.repeat(np.arange(n), k)
    counts = np.bincount(rows * num_classes + neighbour_labels.ravel(), minlength=n * num_classes)
    counts = counts.reshape(n, num_classes)
    own = counts[np.arange(n), labels]
    return 1.0 - own / k, own < counts.max(axis=1)


def principal_projection(x: np.ndarray, n_components: int | None) -> np.ndarray:
    """The centred rows of ``x`` (N, D) on their top ``n_components`` principal directions (N, r)."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    if n_components is None or n_components >= x.shape[1]:
        return centred
    return centred @ principal_directions(centred)[0][:, :n_components]


class DeepKNN(Defense):
    """Flags samples whose k nearest neighbours in penultimate feature space mostly carry another label.

    Parameters
    ----------
    k : int, optional
        Neighbours per sample, >= 1; by default from ``expected_fraction`` (module docstring).
    expected_fraction : float
        Poison budget, as a share of a class, that the default k plans for, in (0, 1).
    max_k : int
        Largest default k, >= 1 (a given ``k`` is not capped).
    n_components : int, optional
        Principal directions the search runs in, >= 1; None for the full feature space.
    random_state : int
        Seed of the search's cells (the neighbours do not depend on it, exact ties aside).
    """

    name = "deep_knn"
    space = "features"
    needs_model = True
    needs_trusted = False
    paper = (
        "Peri, Gupta, Huang, Fowl, Zhu, Feizi, Goldstein and Dickerson, Deep k-NN Defense Against "
        "Clean-label Data Poisoning Attacks, ECCV 2020 Workshops, arXiv:1909.13374"
    )

    def __init__(
        self,
        *,
        k: int | None = None,
        expected_fraction: float = 0.1,
        max_k: int = 200,
        n_components: int | None = 64,
        random_state: int = 0,
    ) -> None:
        self.k = None if k is None else check_positive_int(k, "k")
        self.expected_fraction = check_open_fraction(expected_fraction, "expected_fraction")
        self.max_k = check_positive_int(max_k, "max_k")
        self.n_components = None if n_components is None else check_positive_int(n_components, "n_components")
        self.random_state = check_positive_int(random_state, "random_state", minimum=0)

    def _fit(self, context: ScanContext) -> None:
        feats = context.representations().features
        dataset = context.dataset
        y, n, n_classes = dataset.y, len(dataset), dataset.num_classes
        sizes = np.bincount(y, minlength=n_classes)
        k = self.k if self.k is not None else default_k(sizes, self.expected_fraction, self.max_k)
        k = min(k, n - 1)
        if k < 1:  # a single sample has no neighbours: nothing to vote
            self.scores_, self.flagged_ = np.zeros(n), np.zeros(n, dtype=bool)
            self.details_ = {"k": 0, "decision": "skipped (a single sample)"}
            return
        # BLAS and OpenMP (the projection, the cells' k-means) on one thread: on busy cores more
        # threads wait on each other; the search's torch threads follow poisonlab.threads
        with threadpool_limits(limits=1):
            z = principal_projection(feats, self.n_components)
            neighbours = nearest_neighbours(z, k, seed=self.random_state)
        other, outvoted = neighbour_votes(y[neighbours], y, n_classes)
        self.scores_ = other
        self.flagged_ = outvoted
        self.details_ = self._details(dataset.class_names, y, y[neighbours], k, z.shape[1])

    def _details(
        self, names: tuple[str, ...], y: np.ndarray, neighbour_labels: np.ndarray, k: int, dims: int
    ) -> dict[str, Any]:
        """Per-class flag counts and the label that outvoted the flagged samples most often."""
        per_class = {}
        for c, name in enumerate(names):
            members = np.flatnonzero(y == c)
            flagged = members[self.flagged_[members]]
            entry: dict[str, Any] = {
                "size": int(len(members)),
                "flagged": int(len(flagged)),
                "mean_other_share": float(self.scores_[members].mean()) if len(members) else 0.0,
            }
            if len(flagged):
                plurality = np.array(
                    [np.bincount(row, minlength=len(names)).argmax() for row in neighbour_labels[flagged]]
                )
                entry["main_neighbour_class"] = names[int(np.bincount(plurality).argmax())]
            per_class[name] = entry
        return {
            "k": int(k),
            "k_rule": "given" if self.k is not None else "2 x expected_fraction x median class size",
            "search_dimensions": int(dims),
            "flagged": int(self.flagged_.sum()),
            "classes": per_class,
        }
