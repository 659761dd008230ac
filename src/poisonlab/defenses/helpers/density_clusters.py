"""HDBSCAN* clusters of a sample matrix, and how persistently each stands apart from the largest.

HDBSCAN* (Campello, Moulavi and Sander, "Density-Based Clustering Based on Hierarchical Density
Estimates", PAKDD 2013) builds the single-linkage hierarchy of the *mutual reachability*
distance ``max(core(a), core(b), d(a, b))``, where ``core(a)`` is the distance from ``a`` to its
``min_samples``-th nearest neighbour (itself included), and selects the clusters of greatest
stability (excess of mass). A flat cut of that hierarchy at distance ``delta`` is DBSCAN* at
``eps = delta``; scikit-learn exposes it as ``HDBSCAN.dbscan_clustering``.

:func:`join_distance` finds, by bisection over such cuts, the distance ``delta`` at which one
cluster first falls into the same connected component as another: their merge height in the
hierarchy. Divided by the cluster's own typical core distance it is a scale-free *persistence*:
how many times farther the cluster lies from the reference than its members lie from one
another. A cluster that split off the bulk of the data only as the density threshold rose (a
subpopulation of one blob) has a persistence near 1; a cluster with a wide empty gap around it
has a large one. Noise points take part in the cuts, so a chain of them bridges two clusters as
it does in the hierarchy itself.

HDBSCAN costs O(N log N) to O(N^2) with the dimension; :func:`fit_density_clusters` fits it on at
most ``max_fit_samples`` rows (44k rows in 8 dimensions took 28 s, 10k took a few) and gives
every other row the label of its nearest fitted row when it lies within that row's core
distance (else noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import HDBSCAN
from sklearn.neighbors import NearestNeighbors

__all__ = ["DensityClusters", "cluster_persistence", "fit_density_clusters", "fit_rows", "join_distance"]

# Bisection steps of a merge height on the log scale: the bracket is a factor of 2 wide, so 12
# steps locate it within 2 ** (1 / 4096), about 0.02 %.
_BISECTION_STEPS = 12
# Doublings/halvings of the bracket before giving up (2 ** 40: beyond any finite data spread).
_MAX_DOUBLINGS = 40


@dataclass(frozen=True)
class DensityClusters:
    """HDBSCAN* labels of every row and what the persistence computation needs.

    Attributes
    ----------
    labels : np.ndarray, shape (N,), int
        Cluster of every row, -1 for noise.
    probabilities : np.ndarray, shape (N,), float in [0, 1]
        HDBSCAN membership strength (0 for noise).
    fit_rows : np.ndarray, shape (n_fit,), int
        The rows HDBSCAN was fitted on (sorted).
    core : np.ndarray, shape (n_fit,), float
        Core distance of every fitted row.
    clusterer : HDBSCAN or None
        The fitted estimator (None when there were too few rows to cluster).
    """

    labels: np.ndarray
    probabilities: np.ndarray
    fit_rows: np.ndarray
    core: np.ndarray
    clusterer: HDBSCAN | None

    @property
    def fit_labels(self) -> np.ndarray:
        return self.labels[self.fit_rows]


def fit_rows(n: int, max_fit_samples: int, seed: int) -> np.ndarray:
    """All of ``range(n)``, or a seeded sorted subset of ``max_fit_samples`` of it when n is larger."""
    if n <= max_fit_samples:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_fit_samples, replace=False))


def fit_density_clusters(
    x: np.ndarray, *, rows: np.ndarray, min_cluster_size: int, min_samples: int
) -> DensityClusters:
    """HDBSCAN* (excess-of-mass selection, at least two clusters) of the rows of ``x`` (N, d).

    HDBSCAN is fitted on ``x[rows]`` (``rows`` sorted, see :func:`fit_rows`); ``min_cluster_size``
    counts fitted rows. With fewer than ``2 * min_cluster_size`` of them every row is noise and
    ``clusterer`` is None.
    """
    n = x.shape[0]
    fit_rows = np.asarray(rows)
    xf = x[fit_rows]
    labels = np.full(n, -1, dtype=np.int64)
    probs = np.zeros(n)
    if len(fit_rows) < max(2 * min_cluster_size, min_samples + 1):
        return DensityClusters(labels, probs, fit_rows, np.zeros(len(fit_rows)), None)
    k = min(min_samples, len(fit_rows))
    index = NearestNeighbors(n_neighbors=k).fit(xf)
    core = index.kneighbors(xf)[0][:, -1]  # the row itself is its first neighbour, as in HDBSCAN
    clusterer = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, copy=True).fit(xf)
    labels[fit_rows] = clusterer.labels_
    probs[fit_rows] = clusterer.probabilities_
    rest = np.setdiff1d(np.arange(n), fit_rows, assume_unique=True)
    if rest.size:
        dist, nearest = index.kneighbors(x[rest], n_neighbors=1)
        dist, nearest = dist[:, 0], nearest[:, 0]
        inside = dist <= core[nearest]  # within the neighbour's core ball: same dense region
        labels[rest] = np.where(inside, clusterer.labels_[nearest], -1)
        probs[rest] = np.where(inside, clusterer.probabilities_[nearest], 0.0)
    return DensityClusters(labels, probs, fit_rows, core, clusterer)


def _component(flat: np.ndarray) -> int:
    """Most common flat label of a set of rows, noise (-1) included."""
    return int(np.bincount(flat + 1).argmax()) - 1


def join_distance(clusterer: HDBSCAN, members: np.ndarray, reference: np.ndarray, start: float) -> float:
    """Cut distance at which most of ``members`` first share a component with most of ``reference``.

    Parameters
    ----------
    clusterer : HDBSCAN
        Fitted estimator; ``members`` and ``reference`` index its rows (disjoint, non-empty).
    start : float
        Where the bracketing starts (> 0), e.g. the members' typical core distance.

    Returns
    -------
    float
        The merge height, within 0.02 %; ``inf`` if they never join (cannot happen for finite data).
    """

    def joined(cut: float) -> bool:
        flat = clusterer.dbscan_clustering(cut_distance=cut, min_cluster_size=2)
        a, b = _component(flat[members]), _component(flat[reference])
        return a == b and a != -1

    lo = hi = max(float(start), 1e-12)
    if joined(hi):
        for _ in range(_MAX_DOUBLINGS):
            lo /= 2.0
            if not joined(lo):
                break
            hi = lo
        else:
            return hi
    else:
        for _ in range(_MAX_DOUBLINGS):
            hi *= 2.0
            if joined(hi):
                break
            lo = hi
        else:
            return math.inf
    for _ in range(_BISECTION_STEPS):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if joined(mid) else (mid, hi)
    return hi


def cluster_persistence(clusters: DensityClusters, reference: int) -> dict[int, dict[str, float]]:
    """Merge height of every cluster with cluster ``reference``, over its median core distance.

    Returns
    -------
    dict
        cluster label -> ``{"join_distance", "core_distance", "persistence"}`` (floats; the
        persistence is >= about 1 for any cluster, as its members are noise below their core
        distance), for every cluster but ``reference``.
    """
    fit_labels = clusters.fit_labels
    ref_idx = np.flatnonzero(fit_labels == reference)
    # Exact duplicates have core distance 0; a floor keeps the ratio finite and still very large.
    floor = max(1e-6 * float(np.median(clusters.core)), 1e-12)
    out = {}
    for k in np.unique(fit_labels[fit_labels >= 0]):
        if k == reference:
            continue
        idx = np.flatnonzero(fit_labels == k)
        own = max(float(np.median(clusters.core[idx])), floor)
        join = join_distance(clusters.clusterer, idx, ref_idx, own)
        out[int(k)] = {"join_distance": join, "core_distance": own, "persistence": join / own}
    return out
