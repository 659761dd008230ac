"""DBSCAN within each class: samples in no dense region of their class are noise, hence suspect.

DBSCAN (Ester, Kriegel, Sander and Xu, "A density-based algorithm for discovering clusters in
large spatial databases with noise", KDD 1996) labels a point *noise* when fewer than
``min_samples`` points (itself included) lie within ``eps`` of it and it is not within ``eps``
of such a dense (core) point. Per class, on PCA-reduced pixels or penultimate features, the
noise points are flagged; the continuous score is the distance to the ``min_samples``-th nearest
neighbour (the "k-distance" of the paper), on the class's robust log scale.

Choosing ``eps``: the paper sorts the k-distances and takes the value at the first "valley", the
elbow of the sorted k-distance graph. ``eps=None`` (default) automates that per class:

* ``eps_rule="knee"``: the point of the sorted curve farthest below the chord joining its ends,
  both axes scaled to [0, 1] (the "Kneedle" criterion of Satopaa, Albrecht, Irwin and Raghavan,
  "Finding a 'Kneedle' in a Haystack", ICDCS Workshops 2011);
* ``eps_rule="robust"``: the median k-distance times ``exp(eps_mads * MAD)`` of the log
  k-distances, which stays put when a large share of the class is poison.

Schubert et al. ("DBSCAN revisited, revisited", ACM TODS 42(3), 2017) discuss both heuristics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.neighbors import NearestNeighbors

from poisonlab.defenses.base import check_choice, check_positive_float, check_positive_int
from poisonlab.defenses.helpers.feature_spaces import SpaceDetector
from poisonlab.defenses.helpers.robust_stats import log_robust_z, robust_scale

__all__ = ["DBSCANDetector"]


def knee_of_sorted(values: np.ndarray) -> float:
    """Value at the elbow of ``sorted(values)``: farthest below the chord, both axes in [0, 1]."""
    v = np.sort(values)
    span = v[-1] - v[0]
    if v.size < 3 or span <= 0:
        return float(v[-1])
    x = np.linspace(0.0, 1.0, v.size)
    gap = x - (v - v[0]) / span  # chord from (0, 0) to (1, 1) minus the curve
    return float(v[int(np.argmax(gap))])


class DBSCANDetector(SpaceDetector):
    """Flag DBSCAN noise points within each labelled class; score = k-distance.

    Parameters
    ----------
    space : {"pixels", "features"}
        Raw pixels in [0, 1] or penultimate activations (needs a model or ``forward``).
    per_class : bool
        Run DBSCAN on each labelled class (True) or on the whole dataset.
    n_components : int or None
        PCA components per group (density estimates degrade in many dimensions); None keeps all.
    min_samples : int
        DBSCAN's core-point threshold (the point itself included), >= 2; also the ``k`` of the
        k-distance score.
    eps : float or None
        Neighbourhood radius in the (reduced) space; None chooses it per group by ``eps_rule``.
    eps_rule : {"robust", "knee"}
        Automatic ``eps`` when ``eps`` is None (see the module docstring).
    eps_mads : float
        Robust rule: how many robust standard deviations of the log k-distance above the median.
    seed : int
        Seed of the PCA.
    device : {"auto", "cpu", "cuda"}
        Device of the forward pass when features are computed here.

    Attributes
    ----------
    details_ : dict
        Per group: the ``eps`` used, number of clusters and of noise points.
    """

    name = "dbscan"
    paper = (
        "Ester, Kriegel, Sander & Xu, A density-based algorithm for discovering clusters in large "
        "spatial databases with noise, KDD 1996"
    )

    def __init__(
        self,
        *,
        space: str = "features",
        per_class: bool = True,
        n_components: int | None = 16,
        min_samples: int = 5,
        eps: float | None = None,
        eps_rule: str = "robust",
        eps_mads: float = 3.0,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(
            space=space, per_class=per_class, n_components=n_components, seed=seed, device=device
        )
        self.min_samples = check_positive_int(min_samples, "min_samples", minimum=2)
        self.eps = None if eps is None else check_positive_float(eps, "eps")
        self.eps_rule = check_choice(eps_rule, "eps_rule", ("robust", "knee"))
        self.eps_mads = check_positive_float(eps_mads, "eps_mads")

    def _auto_eps(self, kdist: np.ndarray) -> float:
        if self.eps_rule == "knee":
            return knee_of_sorted(kdist)
        logd = np.log(np.maximum(kdist, 1e-12))
        center = np.median(logd)
        return float(np.exp(center + self.eps_mads * robust_scale(logd, center)))

    def _detect(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        k = min(self.min_samples, x.shape[0])
        # kneighbors on the training points returns each point first, at distance 0, matching
        # DBSCAN's count of min_samples that includes the point itself
        dist, _ = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)
        kdist = dist[:, -1]
        eps = self.eps if self.eps is not None else self._auto_eps(kdist)
        eps = max(eps, 1e-12)
        labels = DBSCAN(eps=eps, min_samples=k).fit_predict(x)
        noise = labels < 0
        info = {
            "eps": float(eps),
            "clusters": int(labels.max() + 1),
            "noise": int(noise.sum()),
            "median_k_distance": float(np.median(kdist)),
        }
        return log_robust_z(kdist), noise, info
