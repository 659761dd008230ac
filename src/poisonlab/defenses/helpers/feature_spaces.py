"""What the generic anomaly detectors share: the sample matrix, per-class groups, PCA, robust scales.

The z-score, k-means, DBSCAN and Isolation Forest detectors all follow one recipe, written once
in :class:`SpaceDetector`:

1. build a sample matrix in the chosen ``space``: raw pixels in [0, 1] (N, H*W*C) or the model's
   penultimate activations (N, D), shared with every other feature-space defense of a scan;
2. split it into groups: one per labelled class (``per_class=True``: poison hides inside the class
   it is labelled as, so "unusual" is judged against that class) or one global group;
3. optionally reduce each group with randomized PCA (Halko, Martinsson and Tropp, "Finding
   structure with randomness", SIAM Review 53(2), 2011, arXiv:0909.4061), which keeps a 44k-image
   CIFAR-10 pixel scan to seconds;
4. let the detector score and flag the group; scores are put on one robust scale per group
   (median 0, scaled MAD 1, :mod:`poisonlab.defenses.helpers.robust_stats`) so that scores of
   different classes are comparable.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import (
    Defense,
    ScanContext,
    check_bool,
    check_choice,
    check_device,
    check_positive_int,
    class_groups,
    pixel_matrix,
)

__all__ = ["FIT_ROWS", "SPACES", "SpaceDetector", "fit_rows", "reduce_dimensions"]

SPACES = ("pixels", "features")
# PCA and per-dimension statistics are estimated on at most this many rows of a group (then applied
# to all): on CIFAR-10 pixels a global fit on 44k x 3072 would otherwise dominate the scan time
# (a column-wise median of 44k x 3072 took 9 s) for no visible gain in the estimates.
FIT_ROWS = 8192
# At most one principal axis per this many samples: axes estimated from fewer samples are mostly
# noise, and detectors that pick dimensions at random (Isolation Forest) or weigh them equally
# (k-means, DBSCAN) then see the outliers in a vanishing share of the dimensions.
SAMPLES_PER_COMPONENT = 10
# The per-group PCA and clustering run BLAS/OpenMP on one thread: on the loaded 2-core test machine
# two threads spin-waited on each other and were 8x slower (randomized PCA of a 4.4k x 3072
# CIFAR-10 class: 0.9 s on one thread, 8 s on two), and after PCA the problems are small.
BLAS_THREADS = 1


class _NeedsModel:
    """``needs_model`` that follows ``space``: the class default at class level, the instance's own.

    A plain class attribute would be wrong for one of the two spaces; an instance attribute would
    show up in ``get_params``.
    """

    def __get__(self, obj: object, owner: type) -> bool:
        return (owner if obj is None else obj).space == "features"


def fit_rows(x: np.ndarray, seed: int) -> np.ndarray:
    """``x`` (n, d), or a seeded random subset of :data:`FIT_ROWS` of its rows when n is larger."""
    if x.shape[0] <= FIT_ROWS:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(x.shape[0], FIT_ROWS, replace=False))]


def reduce_dimensions(x: np.ndarray, n_components: int | None, seed: int) -> np.ndarray:
    """Project ``x`` (n, d) on its first ``n_components`` principal axes (randomized PCA).

    Returns ``x`` itself when no reduction is asked for or when it would not reduce anything.
    """
    n, d = x.shape
    k = None if n_components is None else min(n_components, max(n // SAMPLES_PER_COMPONENT, 2), d)
    if k is None or k >= d or k < 1:
        return x
    pca = PCA(n_components=k, svd_solver="randomized", random_state=seed).fit(fit_rows(x, seed))
    return pca.transform(x).astype(np.float32, copy=False)


class SpaceDetector(Defense):
    """Base of the detectors that score samples in pixel or feature space, per class or globally.

    Parameters
    ----------
    space : {"pixels", "features"}
        Raw pixels in [0, 1] or the model's penultimate activations (needs a model or a
        precomputed ``forward``).
    per_class : bool
        Score each labelled class on its own (True) or the whole dataset as one group.
    n_components : int or None
        PCA components kept per group before detection, at most one per
        :data:`SAMPLES_PER_COMPONENT` samples of the group; None keeps every dimension.
    seed : int
        Seed of PCA and of the detector's own randomness.
    device : {"auto", "cpu", "cuda"}
        Where the forward pass runs when features have to be computed from ``model``.
    """

    space = "features"
    needs_model = _NeedsModel()  # type: ignore[assignment]
    #: groups smaller than this are not scored (scores 0, nothing flagged), see details_["skipped"]
    min_group_size = 5

    def __init__(
        self,
        *,
        space: str = "features",
        per_class: bool = True,
        n_components: int | None = 32,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.space = check_choice(space, "space", SPACES)
        self.per_class = check_bool(per_class, "per_class")
        if n_components is not None:
            n_components = check_positive_int(n_components, "n_components")
        self.n_components = n_components
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.device = check_device(device)

    def _fit(self, context: ScanContext) -> None:
        dataset = context.dataset
        x = context.features() if self.space == "features" else pixel_matrix(dataset)
        groups = self._groups(dataset)
        n = len(dataset)
        if max(len(idx) for _, idx in groups) < self.min_group_size:
            what = "every class has" if self.per_class else "the dataset has"
            raise ValueError(
                f"{self.name}: {what} fewer than {self.min_group_size} samples; "
                f"got {n} samples in {len(groups)} group(s)"
            )
        scores, flagged = np.zeros(n), np.zeros(n, dtype=bool)
        report, skipped = [], []
        for label, idx in groups:
            if len(idx) < self.min_group_size:
                skipped.append(label)
                continue
            with threadpool_limits(limits=BLAS_THREADS):
                rows = x if len(idx) == n else x[idx]  # the global group: no 0.5 GB copy on CIFAR-10
                z = reduce_dimensions(rows, self.n_components, self.seed)
                scores[idx], flagged[idx], info = self._detect(z)
            report.append({"group": label, "n": len(idx), "flagged": int(flagged[idx].sum()), **info})
        self.scores_, self.flagged_ = scores, flagged
        self.details_ = {
            "space": self.space,
            "per_class": self.per_class,
            "dimensions": int(x.shape[1]),
            "groups": report,
            "skipped": skipped,
        }

    def _groups(self, dataset: Dataset) -> list[tuple[str, np.ndarray]]:
        if not self.per_class:
            return [("all", np.arange(len(dataset)))]
        parts = class_groups(dataset.y, dataset.num_classes)
        return [(dataset.class_names[k], idx) for k, idx in enumerate(parts) if len(idx)]

    @abstractmethod
    def _detect(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Score one group ``x`` (n, d) float32.

        Returns scores (n,) float on the group's robust scale (higher = more suspicious), flags
        (n,) bool and a JSON-ready dict of group statistics for ``details_``.
        """
