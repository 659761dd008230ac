"""Per-class robust z-scores: samples whose pixels or features sit far from their class's centre.

The textbook univariate outlier rule (Iglewicz and Hoaglin, "How to Detect and Handle Outliers",
ASQC Basic References in Quality Control 16, 1993), applied to every dimension of a sample and
combined into one score per sample:

1. within each labelled class, every dimension ``j`` is standardised, ``z_ij = (x_ij - c_j) / s_j``,
   with ``c, s`` = median and normal-consistent MAD (``center="median"``, robust to the poison
   itself) or mean and standard deviation (``center="mean"``);
2. the per-dimension values are combined: ``combine="rms"`` (root mean square, sensitive to
   samples that differ a little everywhere, e.g. a blend) or ``combine="max"`` (largest ``|z|``,
   sensitive to a few very unusual pixels, e.g. a corner trigger);
3. the combined value is put on the class's robust scale on a log axis (it is positive and
   right-skewed) and samples above ``threshold`` are flagged.

This is the simplest data-sanitisation baseline of the poisoning literature (Steinhardt, Koh and
Liang, "Certified Defenses for Data Poisoning Attacks", NeurIPS 2017, arXiv:1706.03691, discuss
such centroid-distance filters and how attacks stay inside them). It sees outliers only: poison
that makes up a large share of its class, or that looks like the class, is not flagged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from poisonlab.defenses.base import check_choice, check_positive_float
from poisonlab.defenses.helpers.feature_spaces import SpaceDetector, fit_rows
from poisonlab.defenses.helpers.robust_stats import log_robust_z, robust_scale

__all__ = ["ZScoreDetector"]


class ZScoreDetector(SpaceDetector):
    """Flag samples with a large combined robust z-score within their labelled class.

    Parameters
    ----------
    space : {"pixels", "features"}
        Raw pixels in [0, 1] or penultimate activations (needs a model or ``forward``).
    per_class : bool
        Standardise within each labelled class (True) or over the whole dataset.
    n_components : int or None
        PCA components per group before scoring; None (default) scores every pixel/feature,
        which keeps localised triggers visible.
    center : {"median", "mean"}
        Median/MAD (robust) or mean/standard deviation per dimension.
    combine : {"rms", "max"}
        How the per-dimension ``|z|`` of a sample become one value.
    threshold : float
        Flag samples whose combined value is more than ``threshold`` robust standard deviations
        above their group's median (on a log scale), > 0. The default 3.5 is Iglewicz and
        Hoaglin's cut-off for the modified z-score; it flagged 1-3 % of clean digits per class.
    seed : int
        Seed of the PCA (when ``n_components`` is set).
    device : {"auto", "cpu", "cuda"}
        Device of the forward pass when features are computed here.

    Attributes
    ----------
    scores_ : ndarray (N,)
        The combined value on its group's robust log scale (about N(0, 1) on clean data).
    """

    name = "zscore"
    paper = (
        "Iglewicz & Hoaglin, How to Detect and Handle Outliers, ASQC 1993 (modified z-score); "
        "Steinhardt, Koh & Liang, Certified Defenses for Data Poisoning Attacks, NeurIPS 2017, "
        "arXiv:1706.03691"
    )

    def __init__(
        self,
        *,
        space: str = "features",
        per_class: bool = True,
        n_components: int | None = None,
        center: str = "median",
        combine: str = "rms",
        threshold: float = 3.5,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        super().__init__(
            space=space, per_class=per_class, n_components=n_components, seed=seed, device=device
        )
        self.center = check_choice(center, "center", ("median", "mean"))
        self.combine = check_choice(combine, "combine", ("rms", "max"))
        self.threshold = check_positive_float(threshold, "threshold")

    def _detect(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        ref = fit_rows(x, self.seed)
        if self.center == "median":
            loc = np.median(ref, axis=0)
            scale = robust_scale(ref, loc, axis=0)
        else:
            loc = ref.mean(axis=0)
            std = ref.std(axis=0)
            scale = np.where(std > 1e-12, std, 1.0)
        z = np.abs(x - loc) / scale
        combined = np.sqrt(np.mean(np.square(z), axis=1)) if self.combine == "rms" else z.max(axis=1)
        scores = log_robust_z(combined)
        info = {
            "median_combined": float(np.median(combined)),
            "max_combined": float(combined.max()),
            # dimensions that are constant within the group cannot be standardised (scale 1)
            "constant_dimensions": int(np.sum(np.ptp(ref, axis=0) == 0)),
        }
        return scores, scores > self.threshold, info
