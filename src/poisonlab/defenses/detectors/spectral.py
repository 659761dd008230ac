"""Spectral signatures: poison leaves a trace along the top singular vector of its class's representations.

Tran, Li and Madry, "Spectral Signatures in Backdoor Attacks", Advances in Neural Information
Processing Systems 31 (NeurIPS), 2018, arXiv:1811.00636.

Per labelled class k with penultimate representations R_k (N_k, D), centred by their class mean,
the top right singular vector v_k is computed and every sample gets the paper's outlier score
``tau_i = <r_i - mean_k, v_k>^2``. When the poison in a class is strong enough to be
detected, it dominates v_k, and the poison scores high.

Two modes (``mode``):

* ``"fixed"`` (the paper's rule): remove the ``eps_multiplier * expected_fraction`` share of each
  class with the highest scores (the paper uses 1.5 times the expected poison share epsilon). The
  cap is the flaw: when poison is half of its class, 1.5 epsilon of a 10 % guess removes at most
  30 % of that poison, and a share of every clean class is removed too.
* ``"adaptive"`` (default): a two-component Gaussian mixture is fitted to the 1-D projection
  ``<r_i - mean_k, v_k>`` and the class counts as poisoned only when the projection is clearly
  bimodal: Ashman's D = sqrt(2) |mu_1 - mu_2| / sqrt(s_1^2 + s_2^2) (Ashman, Bird and Zepf,
  Astronomical Journal 108, 1994) at least ``separation_threshold``, the smaller component
  holding at least ``min_component`` of the class and, with five or more classes, D a robust
  z-score (median, scaled MAD) of at least ``z_threshold`` above the other classes'. The squared
  projection cannot tell which mode is the poison (half of a class is as far from the mean as the
  other half); the suspect is the smaller mode (see :mod:`poisonlab.defenses.helpers.reclassification`),
  and only it is flagged. For a bimodal class, exclusionary reclassification of its modes (Chen
  et al., arXiv:1811.03728) is reported in ``details_``, with ``source_class`` when decisive.

Scores, both continuous and comparable across classes: in the fixed mode ``tau_i`` divided by the
class mean of ``tau``; in the adaptive mode ``e_k * a_i``, with ``a_i`` the mixture's posterior
of the suspect mode and ``e_k = 0.5 * poisoned_k + 0.5 * D_k / (D_k + separation_threshold)``
in [0, 1], so that poisoned classes rank above the others.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import (
    check_choice,
    check_fraction,
    check_open_fraction,
    check_positive_float,
    flag_top_fraction,
)
from poisonlab.defenses.helpers.reclassification import (
    MIN_CLASSES_FOR_Z,
    ClassSplitDetector,
    standardized_features,
)
from poisonlab.defenses.helpers.robust_stats import cross_class_z
from poisonlab.inference import ForwardResult

__all__ = ["SpectralSignatures"]

MODES = ("adaptive", "fixed")


class SpectralSignatures(ClassSplitDetector):
    """Per-class top-singular-vector scores; flags a bimodal class's poison mode, or the top 1.5 epsilon.

    Parameters
    ----------
    mode : {"adaptive", "fixed"}
        Bimodality test per class (default) or the paper's fixed removal share.
    expected_fraction : float
        ``"fixed"``: expected poison share epsilon of a class, in (0, 1).
    eps_multiplier : float
        ``"fixed"``: the share removed per class is ``eps_multiplier * expected_fraction``
        (capped at 1); the paper uses 1.5. > 0.
    separation_threshold : float
        ``"adaptive"``: lowest Ashman's D of a bimodal projection, > 0 (two equal Gaussian
        modes show a dip between them from D > 2).
    z_threshold : float
        ``"adaptive"``: lowest robust z-score of D across classes, > 0.
    min_component : float
        ``"adaptive"``: lowest weight of the smaller mixture component, in (0, 0.5].
    reclass_threshold, reclass_margin : float
        When the reported reclassification of a bimodal class's modes counts as decisive, as in
        :func:`poisonlab.defenses.helpers.reclassification.judge_sides`; in (0, 1) and [0, 1].
    max_train_per_class : int
        Samples per class of each reclassification head, >= 10.
    min_class_size : int
        Classes with fewer samples are not analysed (never flagged), >= 4.
    random_state : int
        Seed of the mixture fit and subsampling.
    """

    name = "spectral_signatures"
    paper = "Tran, Li and Madry, Spectral Signatures in Backdoor Attacks, NeurIPS 2018, arXiv:1811.00636"

    def __init__(
        self,
        *,
        mode: str = "adaptive",
        expected_fraction: float = 0.1,
        eps_multiplier: float = 1.5,
        separation_threshold: float = 3.0,
        z_threshold: float = 3.5,
        min_component: float = 0.02,
        reclass_threshold: float = 0.5,
        reclass_margin: float = 0.25,
        max_train_per_class: int = 500,
        min_class_size: int = 20,
        random_state: int = 0,
    ) -> None:
        self.mode = check_choice(mode, "mode", MODES)
        self.expected_fraction = check_open_fraction(expected_fraction, "expected_fraction")
        self.eps_multiplier = check_positive_float(eps_multiplier, "eps_multiplier")
        self.separation_threshold = check_positive_float(separation_threshold, "separation_threshold")
        self.z_threshold = check_positive_float(z_threshold, "z_threshold")
        self.min_component = check_fraction(min_component, "min_component", high=0.5)
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
        groups, evaluated = self._large_classes(dataset, "spectral signatures need")
        self.scores_ = np.zeros(len(dataset))
        self.flagged_ = np.zeros(len(dataset), dtype=bool)
        projections = {k: top_projection(feats[groups[k]]) for k in evaluated}
        if self.mode == "fixed":
            per_class = self._fixed(groups, projections)
        else:
            per_class = self._adaptive(dataset, feats, groups, projections)
        for k, g in enumerate(groups):
            if k not in projections:
                per_class[k] = {"size": len(g), "decision": "skipped (too few samples)"}
        names = dataset.class_names
        self.details_ = {
            "mode": self.mode,
            "poisoned_classes": [names[k] for k, c in per_class.items() if c.get("poisoned")],
            "classes": {names[k]: per_class[k] for k in sorted(per_class)},
        }

    def _fixed(self, groups: list[np.ndarray], projections: dict[int, np.ndarray]) -> dict[int, dict]:
        """The paper's rule: the top ``eps_multiplier * expected_fraction`` of each class."""
        share = min(1.0, self.eps_multiplier * self.expected_fraction)
        out = {}
        for k, p in projections.items():
            tau = p**2
            self.scores_[groups[k]] = tau / max(tau.mean(), 1e-12)
            flags = flag_top_fraction(tau, share)
            self.flagged_[groups[k]] = flags
            out[k] = {
                "size": len(p),
                "removed": int(flags.sum()),
                "poisoned": True,
                "decision": "top share removed",
            }
        return out

    def _adaptive(
        self,
        dataset: Dataset,
        feats: np.ndarray,
        groups: list[np.ndarray],
        projections: dict[int, np.ndarray],
    ) -> dict[int, dict]:
        """Bimodality per class, calibrated across classes; flag the suspect mode of bimodal classes."""
        fits = {k: self._mixture(p) for k, p in projections.items()}
        d = np.array([fits[k]["ashman_d"] for k in fits])
        zs = cross_class_z(d) if len(fits) >= MIN_CLASSES_FOR_Z else [None] * len(d)
        std = None
        out = {}
        for (k, fit), z in zip(fits.items(), zs, strict=True):
            idx, post, sizes = groups[k], fit.pop("posterior"), fit["mode_sizes"]
            bimodal = (
                fit["ashman_d"] >= self.separation_threshold
                and min(sizes) >= self.min_component * len(idx)
                and (z is None or z >= self.z_threshold)
            )
            stats = {"size": len(idx), **fit, "ashman_d_z": z, "poisoned": bool(bimodal)}
            suspect = int(np.argmin(sizes))
            if bimodal:
                std = standardized_features(feats) if std is None else std
                sides = [idx[post.argmax(axis=1) == c] for c in (0, 1)]
                verdict = self._reclassify_sides(k, sides, sizes, std, dataset.y, stats)
                stats["reclassification_decisive"] = verdict["decisive"]
                self.flagged_[idx] = post.argmax(axis=1) == suspect
            strength = fit["ashman_d"] / (fit["ashman_d"] + self.separation_threshold)
            stats["evidence"] = 0.5 * float(bimodal) + 0.5 * strength
            stats.update(suspect_mode=suspect, decision="poisoned" if bimodal else "clean")
            self.scores_[idx] = stats["evidence"] * post[:, suspect]
            out[k] = stats
        return out

    def _mixture(self, p: np.ndarray) -> dict[str, Any]:
        """Two-component 1-D Gaussian mixture of a projection: Ashman's D, sizes, posteriors (N, 2)."""
        if np.ptp(p) <= 1e-12 * max(1.0, float(np.abs(p).max())):  # no spread: one mode
            post = np.zeros((len(p), 2))
            post[:, 0] = 1.0
            return {"ashman_d": 0.0, "mode_sizes": [len(p), 0], "mode_means": [0.0, 0.0], "posterior": post}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm = GaussianMixture(2, n_init=3, random_state=self.random_state).fit(p[:, None])
        mu = gm.means_.ravel()
        var = gm.covariances_.ravel()
        post = gm.predict_proba(p[:, None])
        d = float(np.sqrt(2.0) * abs(mu[0] - mu[1]) / np.sqrt(var.sum()))
        sizes = np.bincount(post.argmax(axis=1), minlength=2).tolist()
        return {"ashman_d": d, "mode_sizes": sizes, "mode_means": mu.tolist(), "posterior": post}


def top_projection(x: np.ndarray) -> np.ndarray:
    """Projection of the class-centred rows of ``x`` (N, D) on their top right singular vector, (N,)."""
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[0]
