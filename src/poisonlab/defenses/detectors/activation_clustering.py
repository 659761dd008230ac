"""Activation clustering: split each class's penultimate activations in two and judge the split.

Chen, Carvalho, Baracaldo, Ludwig, Edwards, Lee, Molloy and Srivastava, "Detecting Backdoor
Attacks on Deep Neural Networks by Activation Clustering", AAAI Workshop on Artificial
Intelligence Safety (SafeAI), 2019, arXiv:1811.03728.

A backdoored model gives triggered source images the target label for another reason (the
trigger) than the target's own images, so the target class's activations form two groups. Per
labelled class: reduce the activations (N_k, D) to ``n_components`` dimensions (PCA, or ICA as in
the paper), split them with 2-means; the suspect is the smaller cluster. Then judge the split
(``analysis``):

* ``"silhouette"`` (default): the split is much cleaner than the other classes': silhouette at
  least ``silhouette_threshold`` and, with five or more classes, a robust z-score across classes
  of at least ``z_threshold`` (every class has some natural two-mode structure);
* ``"reclassification"`` (the paper's exclusionary reclassification, with a linear head on the
  frozen features, see :mod:`poisonlab.defenses.helpers.reclassification`): the suspect is mostly
  (``reclass_threshold``) given another class by a head trained without it, and
  ``reclass_margin`` more often than its sibling (when both are, the whole class is confused with
  another: the source class of a label flip). Finds mislabelled clusters, not backdoors;
* ``"relative-size"``: the smaller cluster holds at most ``size_threshold`` of its class;
* ``"size"``: the smaller cluster of every class, clean ones too (the paper's simplest rule);
* ``"distance"``: the smaller cluster's centroid is at least ``distance_threshold`` times as far
  from its sibling as from the nearest other class mean (full feature space).

A split whose smaller cluster holds under ``min_fraction`` of its class has isolated a few
outliers (one odd image gives the highest silhouette of all), which says nothing about two
populations and would hide a poison group of the same class. Under every analysis but
``"size"`` those samples are set aside (never flagged; ``set_aside`` in ``details_``) and the
rest of the class is reduced and split again, up to ``MAX_OUTLIER_ROUNDS`` times; a class still
split that way after them is judged clean and its silhouette kept out of the cross-class median
and MAD.

Only the suspect cluster of a poisoned class is flagged. For every poisoned class the
reclassification of its suspect is reported in ``details_`` (with ``source_class`` when
decisive). Reclassification presumes features that separate the labelled classes: when the model
fits under ``MIN_FIT_ACCURACY`` of the scanned labels, it is not run.

Score of sample i in class k: ``e_k * a_i``. ``a_i`` in [0, 1] is the affinity to the suspect
cluster, ``d(i, other centroid) / (d(i, suspect centroid) + d(i, other centroid))`` in the
reduced space (above 0.5 exactly for the suspect's members); ``e_k = 0.5 * poisoned_k + 0.5 *
strength_k`` in [0, 1] lifts poisoned classes above the others, ``strength_k`` being the
analysis' continuous evidence: the silhouette (clipped to [0, 1]), the reclassification margin
``o_s * (1 - o_sibling)`` (``o`` = share given another class), one minus twice the smaller
cluster's share, or ``r / (1 + r)`` for the distance ratio ``r``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA, FastICA
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import check_choice, check_fraction, check_positive_float, check_positive_int
from poisonlab.defenses.helpers.reclassification import (
    MIN_CLASSES_FOR_Z,
    ClassSplitDetector,
    standardized_features,
)
from poisonlab.defenses.helpers.robust_stats import grouped_class_z
from poisonlab.inference import ForwardResult

__all__ = ["ActivationClustering"]

ANALYSES = ("silhouette", "reclassification", "relative-size", "size", "distance")
REDUCTIONS = ("pca", "ica")
# Below this accuracy of the model on the scanned labels, reclassification is not run.
MIN_FIT_ACCURACY = 0.5
# Silhouette on a seeded subsample: O(n^2) on 8,000 activations would dominate the run.
SILHOUETTE_SAMPLE = 2000
# Rounds of setting aside a few outliers split off before a class is split again (``_split``).
MAX_OUTLIER_ROUNDS = 3


class ActivationClustering(ClassSplitDetector):
    """Per-class 2-means on reduced penultimate activations; flags the smaller cluster of outlying splits.

    Parameters
    ----------
    n_components : int
        Dimensions kept before 2-means (the paper uses 10), >= 1; capped at the feature
        dimension and the class size.
    reduction : {"pca", "ica"}
        PCA, or FastICA as in the paper (slower, less stable on the digits fixtures).
    analysis : {"silhouette", "reclassification", "relative-size", "size", "distance"}
        How a class is judged poisoned (module docstring).
    size_threshold : float
        ``"relative-size"``: largest class share of a poisoned smaller cluster, in (0, 0.5].
    silhouette_threshold : float
        Lowest silhouette of a poisoned split, in (0, 1]; ICA's whitened components give lower
        silhouettes than PCA's (0.1 vs 0.5 on the planted test features).
    z_threshold : float
        Lowest robust z-score of the silhouette across classes, > 0.
    distance_threshold : float
        ``"distance"``: lowest ratio sibling distance / nearest other class distance, > 0.
    reclass_threshold : float
        Share of a cluster given another class that counts as "mostly", in (0, 1).
    reclass_margin : float
        How much more often than its sibling the suspect must be given another class, in [0, 1].
    max_train_per_class : int
        Samples per class (seeded subsample) of each reclassification head, >= 10.
    min_fraction : float
        Smallest share of its class a cluster must hold to count as one, in (0, 0.5]; smaller
        ones are outliers, set aside before the class is split again (module docstring). Not
        applied by ``"size"``.
    min_class_size : int
        Classes with fewer samples are not analysed (never flagged), >= 4.
    random_state : int
        Seed of the reduction, 2-means and subsampling, >= 0.
    """

    name = "activation_clustering"
    paper = (
        "Chen et al., Detecting Backdoor Attacks on Deep Neural Networks by Activation Clustering, "
        "SafeAI@AAAI 2019, arXiv:1811.03728"
    )

    def __init__(
        self,
        *,
        n_components: int = 10,
        reduction: str = "pca",
        analysis: str = "silhouette",
        size_threshold: float = 0.35,
        silhouette_threshold: float = 0.25,
        z_threshold: float = 4.0,
        distance_threshold: float = 1.0,
        reclass_threshold: float = 0.5,
        reclass_margin: float = 0.25,
        max_train_per_class: int = 500,
        min_fraction: float = 0.02,
        min_class_size: int = 20,
        random_state: int = 0,
    ) -> None:
        check_choice(reduction, "reduction", REDUCTIONS)
        check_choice(analysis, "analysis", ANALYSES)
        self.n_components = check_positive_int(n_components, "n_components")
        self.reduction = reduction
        self.analysis = analysis
        self.size_threshold = check_fraction(size_threshold, "size_threshold", high=0.5)
        self.silhouette_threshold = check_fraction(silhouette_threshold, "silhouette_threshold")
        self.z_threshold = check_positive_float(z_threshold, "z_threshold")
        self.distance_threshold = check_positive_float(distance_threshold, "distance_threshold")
        self.min_fraction = check_fraction(min_fraction, "min_fraction", high=0.5)
        self._set_split_params(
            reclass_threshold=reclass_threshold,
            reclass_margin=reclass_margin,
            max_train_per_class=max_train_per_class,
            min_class_size=min_class_size,
            random_state=random_state,
        )

    def _analyse(self, dataset: Dataset, rep: ForwardResult) -> None:
        """Per-class analysis of the activations in ``rep``; sets the fitted attributes."""
        feats = rep.features.astype(np.float64)
        fit_accuracy = float(np.mean(rep.predictions == dataset.y))
        groups, analysed = self._large_classes(dataset, "activation clustering needs")
        splits = {k: self._split(feats[groups[k]]) for k in analysed}
        sil = [splits[k]["silhouette"] for k in analysed]
        outliers = [self._outlier_split(splits[k]["sizes"], len(groups[k])) for k in analysed]
        zs = grouped_class_z(sil, [not o for o in outliers], MIN_CLASSES_FOR_Z)
        std = standardized_features(feats) if fit_accuracy >= MIN_FIT_ACCURACY else None
        means = np.stack(
            [feats[g].mean(axis=0) if len(g) else np.full(feats.shape[1], np.inf) for g in groups]
        )
        self.scores_ = np.zeros(len(dataset))
        self.flagged_ = np.zeros(len(dataset), dtype=bool)
        per_class: dict[str, Any] = {
            name: {"size": len(g), "decision": "skipped (too few samples)"}
            for name, g in zip(dataset.class_names, groups, strict=True)
        }
        for k, z in zip(analysed, zs, strict=True):
            idx, split = groups[k], splits[k]
            stats = self._judge(k, idx, split, z, std, dataset.y, feats, means)
            s, dist = stats["suspect_cluster"], split.pop("distance")
            self.scores_[idx] = stats["evidence"] * dist[:, 1 - s] / np.maximum(dist.sum(axis=1), 1e-12)
            self.flagged_[idx] = stats["poisoned"] & (split["labels"] == s)
            per_class[dataset.class_names[k]] = stats
        self.details_ = {
            "analysis": self.analysis,
            "model_fit_accuracy": fit_accuracy,
            "reclassification_available": std is not None,
            "poisoned_classes": [n for n, c in per_class.items() if c.get("poisoned")],
            "classes": per_class,
        }

    def _split(self, x: np.ndarray) -> dict[str, Any]:
        """Reduce one class (N_k, D) and 2-means it; a few outliers split off are set aside first.

        While the smaller cluster holds under ``min_fraction`` of the class (at most
        ``MAX_OUTLIER_ROUNDS`` times, never under ``"size"``), its samples are set aside and the
        rest is reduced and split again: one odd image would otherwise take the split that a
        poison group in the same class needs. Returns ``labels`` (N_k,) in {0, 1}, -1 for the
        samples set aside; ``distance`` (N_k, 2) to the final centroids in the final reduced space;
        ``silhouette`` of the final split; ``sizes`` of its two clusters; ``set_aside`` (count).
        """
        keep = np.arange(len(x))
        for rounds_left in range(MAX_OUTLIER_ROUNDS, -1, -1):
            reducer, centers, part = self._split_once(x[keep])
            if not rounds_left or min(part["sizes"]) == 0 or not self._outlier_split(part["sizes"], len(x)):
                break
            keep = keep[part["labels"] != int(np.argmin(part["sizes"]))]
        labels = np.full(len(x), -1, dtype=np.int64)
        labels[keep] = part["labels"]
        dist = np.linalg.norm(reducer.transform(x)[:, None, :] - centers[None], axis=2)
        return {**part, "labels": labels, "distance": dist, "set_aside": len(x) - len(keep)}

    def _split_once(self, x: np.ndarray) -> tuple[Any, np.ndarray, dict[str, Any]]:
        """One reduction and 2-means of ``x``: (fitted reducer, centroids (2, c), labels/sizes/silhouette)."""
        n_comp = max(1, min(self.n_components, x.shape[1], x.shape[0] - 1))
        if self.reduction == "ica":
            reducer = FastICA(n_comp, whiten="unit-variance", max_iter=500, random_state=self.random_state)
        else:
            reducer = PCA(n_comp, random_state=self.random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            z = reducer.fit_transform(x)
            km = KMeans(2, n_init=10, random_state=self.random_state).fit(z)
        labels = km.labels_.astype(np.int64)
        sizes = np.bincount(labels, minlength=2).tolist()
        sil = 0.0  # identical activations: nothing to split
        if min(sizes) > 0:
            n_sil = min(len(x), SILHOUETTE_SAMPLE)
            sil = float(silhouette_score(z, labels, sample_size=n_sil, random_state=self.random_state))
        return reducer, km.cluster_centers_, {"labels": labels, "silhouette": sil, "sizes": sizes}

    def _judge(
        self,
        k: int,
        idx: np.ndarray,
        split: dict[str, Any],
        z: float | None,
        std: np.ndarray | None,
        y: np.ndarray,
        feats: np.ndarray,
        means: np.ndarray,
    ) -> dict[str, Any]:
        """Decision, suspect cluster, evidence and statistics of class ``k`` under ``self.analysis``."""
        sizes, sil = split["sizes"], split["silhouette"]
        smaller = int(np.argmin(sizes))
        rel = sizes[smaller] / len(idx)
        stats: dict[str, Any] = {
            "size": len(idx),
            "cluster_sizes": sizes,
            "relative_size": rel,
            "silhouette": sil,
            "silhouette_z": z,
            "set_aside": split["set_aside"],
        }
        if self._outlier_split(sizes, len(idx)):  # no second cluster: identical activations, or outliers left
            return {
                **stats,
                "suspect_cluster": smaller,
                "poisoned": False,
                "evidence": 0.0,
                "decision": "clean (outliers split off)" if sizes[smaller] else "clean",
            }
        poisoned, strength = False, 0.0
        if self.analysis == "reclassification" and std is not None:
            poisoned, strength = self._reclassify(k, idx, split, std, y, stats)
        elif self.analysis == "silhouette":
            poisoned = sil >= self.silhouette_threshold and (z is None or z >= self.z_threshold)
            strength = min(max(sil, 0.0), 1.0)
        elif self.analysis in ("size", "relative-size"):
            poisoned, strength = self.analysis == "size" or rel <= self.size_threshold, 1.0 - 2.0 * rel
        elif self.analysis == "distance":
            ratio = _distance_ratio(k, feats[idx], split["labels"], smaller, means)
            poisoned, strength = ratio >= self.distance_threshold, ratio / (1.0 + ratio)
            stats["distance_ratio"] = ratio
        if poisoned and std is not None and "reclassification" not in stats:
            self._reclassify(k, idx, split, std, y, stats)  # reported: the likely source class
        stats.update(
            suspect_cluster=smaller, poisoned=bool(poisoned), evidence=0.5 * poisoned + 0.5 * strength
        )
        stats["decision"] = "poisoned" if poisoned else "clean"
        return stats

    def _outlier_split(self, sizes: list[int], class_size: int) -> bool:
        """Whether a split's smaller cluster is empty or, except for ``"size"``, holds under
        ``min_fraction`` of the class's ``class_size`` samples."""
        smallest = min(sizes)
        return smallest == 0 or (self.analysis != "size" and smallest < self.min_fraction * class_size)

    def _reclassify(
        self, k: int, idx: np.ndarray, split: dict[str, Any], std: np.ndarray, y: np.ndarray, stats: dict
    ) -> tuple[bool, float]:
        """Exclusionary reclassification of both clusters: (decisive, strength); fills ``stats``."""
        sides = [idx[split["labels"] == c] for c in (0, 1)]
        verdict = self._reclassify_sides(k, sides, split["sizes"], std, y, stats)
        return verdict["decisive"], verdict["strength"]


def _distance_ratio(k: int, x: np.ndarray, labels: np.ndarray, suspect: int, means: np.ndarray) -> float:
    """||suspect centroid - sibling centroid|| / min over other classes j of ||suspect centroid - mean_j||."""
    c_s, c_o = x[labels == suspect].mean(axis=0), x[labels == 1 - suspect].mean(axis=0)  # -1: set aside
    nearest = np.linalg.norm(np.delete(means, k, axis=0) - c_s, axis=1).min()
    return float(np.linalg.norm(c_s - c_o) / max(nearest, 1e-12))
