"""SPECTRE: whiten each class with a robust covariance, then score it with quantum entropy.

Hayase, Kong, Somani and Oh, "SPECTRE: Defending Against Backdoor Attacks Using Robust
Statistics", Proceedings of the 38th International Conference on Machine Learning (ICML), PMLR
139, 2021, arXiv:2104.11315. The QUantum Entropy (QUE) score is from Dong, Hopkins and Li,
"Quantum Entropy Scoring for Fast Robust Mean Estimation and Improved Outlier Detection",
NeurIPS 2019, arXiv:1906.11366.

Spectral signatures (:mod:`.spectral`) look for the poison along the top singular vector of a
class, which its clean variation can hide. SPECTRE first removes that variation; per labelled
class k with penultimate representations (N_k, D):

1. project the class-centred representations on their top ``r`` principal directions (``r`` at
   most ``n_components``, the numerical rank and ``N_k / samples_per_dim``, so that the
   covariance below rests on enough samples);
2. estimate the mean and covariance of the clean majority robustly. The paper uses a filtering
   estimator from the robust-statistics literature; this implementation uses a deterministic
   minimum covariance determinant estimate with reweighting
   (:mod:`poisonlab.defenses.helpers.robust_covariance`), which also ignores any minority
   (breakdown point about one half). In finite samples its subset mixes a large poison group
   (35-40 % of the class) with the clean samples, so when the top principal direction holds two
   well-separated groups (exact 2-means, Ashman's D >= ``BIMODAL_D``) it is fitted on the
   larger group: the poison is assumed to be the minority. Eigenvalues are floored at
   ``EIG_FLOOR`` times their mean: ReLU features can be degenerate on the robust subset along a
   direction where a few other samples vary, which whitening would make extreme outliers;
3. whiten every sample with it, ``w_i = Sigma^(-1/2) (z_i - mu)``, so that the clean samples
   have about the identity covariance and the poison stands out as a spike of the whitened
   covariance ``S = mean(w w^T)``;
4. score each sample by QUE: ``tau_i = w_i^T Q w_i`` with ``Q = exp(alpha (S - I) / (||S|| -
   1))`` divided by its trace. ``alpha = 0`` gives the squared Mahalanobis distance over ``r``;
   a large ``alpha`` the squared projection on the top whitened direction (a spectral
   signature); the paper uses ``alpha = 4``, which weighs every spiked direction;
5. estimate the poison share ``eps`` of the class (as the paper does, since it is unknown), or
   take ``expected_fraction`` when given, and remove the ``eps_multiplier * eps`` share (the
   paper: 1.5 eps) of highest QUE scores. The estimate: along the spike (the top eigenvector of
   ``S``) a poison group is a separate mode (Ashman's D of the exact 2-means split at least
   ``BIMODAL_D``), and eps is the share of the mode farther from the clean mean; without such
   a mode, the share of samples beyond the chi-squared ``1 - TAIL`` quantile of ``|w_i|^2``,
   less ``TAIL``.

Which classes are poisoned, without ground truth (the paper runs on a given class): a clean class
whitened by its own robust estimate has at most a heavy tail along its spike, a poisoned one a
second mode. A class is poisoned when, along its spike, the split has Ashman's D at least
``separation_threshold``, its far mode holds at least ``min_fraction`` of the class and, with
five or more classes, ``log D`` has a robust z-score (median, scaled MAD,
:func:`~poisonlab.defenses.helpers.robust_stats.cross_class_z`) of at least ``z_threshold``; the
median and MAD come from the classes whose far mode holds ``min_fraction`` (all of them when
fewer than five do), since a far mode of one or two odd images has a D of any size.
(The mean QUE score ``tr(Q S)`` was tried first: a few extreme samples of a clean class raise
it as much as a poison group. On the exact-backdoor fixture, clean digits classes mostly have D
under 6.5 and the poisoned class 20-30, but a clean class can hold a far mode of 1-3 images with
D from 10 to 220, depending on the training seed.) Only poisoned classes are flagged.

Score of sample i in class k: ``e_k * tau_i / (tau_i + t_k)`` in [0, 1), with ``t_k`` the QUE
score at the class's removal boundary (its largest score when nothing is removed) and ``e_k =
0.5 * poisoned_k + 0.5 * D_k / (D_k + separation_threshold)``, so poisoned classes rank above
the others.

Limits: the poison must be a minority of its class and form a group; at one half nothing but
their sizes tells the two groups apart, and a diffuse poison without a mode of its own is
scored (QUE) but its class is not decided on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import chi2
from threadpoolctl import threadpool_limits

from poisonlab.defenses.base import (
    Defense,
    ScanContext,
    check_fraction,
    check_open_fraction,
    check_positive_float,
    check_positive_int,
    class_groups,
)
from poisonlab.defenses.helpers.reclassification import MIN_CLASSES_FOR_Z
from poisonlab.defenses.helpers.robust_covariance import deterministic_mcd, principal_directions
from poisonlab.defenses.helpers.robust_stats import grouped_class_z
from poisonlab.defenses.helpers.two_groups import split_groups

__all__ = ["SPECTRE", "que_scores"]

# Share of a clean Gaussian class beyond the chi-squared (1 - TAIL) quantile: subtracted from the
# observed exceedance when the poison share is estimated.
TAIL = 0.01
# Ashman's D above which a direction holds two separate groups (halves of one Gaussian give 2.65).
BIMODAL_D = 4.0
# Floor of the robust covariance's eigenvalues, relative to their mean, when whitening.
EIG_FLOOR = 0.1


def que_scores(w: np.ndarray, alpha: float) -> tuple[np.ndarray, float, float, np.ndarray]:
    """QUE scores of whitened samples (module docstring, step 4).

    Parameters
    ----------
    w : ndarray of shape (N, r)
        Samples whitened by the clean (robust) mean and covariance.
    alpha : float
        Exponent >= 0 of the quantum-entropy weighting.

    Returns
    -------
    tau : ndarray of shape (N,)
        ``w_i^T Q w_i`` >= 0 with ``Q = exp(alpha (S - I) / (lambda_max - 1)) / trace``.
    statistic : float
        ``mean(tau) = tr(Q S)`` >= 0, between the mean and the largest eigenvalue of ``S``.
    lambda_max, spike : float, ndarray of shape (r,)
        Largest eigenvalue of ``S = w^T w / N`` and its unit eigenvector.
    """
    lam, vecs = np.linalg.eigh(w.T @ w / len(w))
    top = float(lam[-1])
    # with no eigenvalue above 1 there is no spike: QUE is the plain Mahalanobis score
    weights = np.exp(alpha * (lam - 1.0) / (top - 1.0)) if top > 1.0 + 1e-9 else np.ones_like(lam)
    weights /= weights.sum()
    tau = ((w @ vecs) ** 2) @ weights
    return tau, float(weights @ lam), top, vecs[:, -1]


def _spike_modes(w: np.ndarray, spike: np.ndarray) -> tuple[float, np.ndarray]:
    """Ashman's D >= 0 of the 2-means split of ``w @ spike`` (N,) and the mask (N,) of its far mode.

    The far mode is the one whose mean is farther from the clean mean (0 in whitened coordinates).
    """
    t = w @ spike
    upper, d = split_groups(t)
    far_upper = abs(t[upper].mean()) > abs(t[~upper].mean())
    return d, upper if far_upper else ~upper


def _poison_share(w: np.ndarray, d: float, far: np.ndarray) -> float:
    """Estimated poison share in [0, 1) of a class whitened by its clean estimate, ``w`` (N, r)."""
    if d >= BIMODAL_D:
        return float(far.mean())
    beyond = np.mean(np.einsum("ij,ij->i", w, w) > chi2.ppf(1.0 - TAIL, w.shape[1]))
    return float(max(0.0, beyond - TAIL))


class SPECTRE(Defense):
    """Robust whitening and QUE scores per class; flags the top ``1.5 * eps`` of classes with a poison mode.

    Parameters
    ----------
    n_components : int
        Most principal directions kept per class, >= 1.
    samples_per_dim : int
        At least this many class samples per kept direction, >= 2 (robust covariances need
        many more samples than dimensions).
    alpha : float
        QUE exponent, > 0 (the paper uses 4).
    expected_fraction : float, optional
        Poison share of a poisoned class, in (0, 1); by default estimated per class.
    eps_multiplier : float
        The removed share of a poisoned class is ``eps_multiplier * eps`` (capped at 1), > 0.
    separation_threshold : float
        Lowest Ashman's D along the spike of a poisoned class, > 0.
    z_threshold : float
        Lowest robust z-score of ``log D`` across classes (five or more), > 0.
    min_fraction : float
        Smallest share of its class the far mode of a poisoned class holds, in (0, 0.5].
    min_class_size : int
        Classes with fewer samples are not analysed (never flagged), >= 4.
    """

    name = "spectre"
    space = "features"
    needs_model = True
    needs_trusted = False
    paper = (
        "Hayase, Kong, Somani and Oh, SPECTRE: Defending Against Backdoor Attacks Using Robust "
        "Statistics, ICML 2021, arXiv:2104.11315"
    )

    def __init__(
        self,
        *,
        n_components: int = 32,
        samples_per_dim: int = 20,
        alpha: float = 4.0,
        expected_fraction: float | None = None,
        eps_multiplier: float = 1.5,
        separation_threshold: float = 6.0,
        z_threshold: float = 3.5,
        min_fraction: float = 0.02,
        min_class_size: int = 20,
    ) -> None:
        self.n_components = check_positive_int(n_components, "n_components")
        self.samples_per_dim = check_positive_int(samples_per_dim, "samples_per_dim", minimum=2)
        self.alpha = check_positive_float(alpha, "alpha")
        if expected_fraction is not None:
            expected_fraction = check_open_fraction(expected_fraction, "expected_fraction")
        self.expected_fraction = expected_fraction
        self.eps_multiplier = check_positive_float(eps_multiplier, "eps_multiplier")
        self.separation_threshold = check_positive_float(separation_threshold, "separation_threshold")
        self.z_threshold = check_positive_float(z_threshold, "z_threshold")
        self.min_fraction = check_fraction(min_fraction, "min_fraction", high=0.5)
        self.min_class_size = check_positive_int(min_class_size, "min_class_size", minimum=4)

    def _fit(self, context: ScanContext) -> None:
        feats = np.asarray(context.representations().features, dtype=np.float64)
        dataset = context.dataset
        groups = class_groups(dataset.y, dataset.num_classes)
        n = len(dataset)
        self.scores_ = np.zeros(n)
        self.flagged_ = np.zeros(n, dtype=bool)
        # small per-class problems: BLAS threads cost more in synchronisation than they save
        with threadpool_limits(limits=1):
            fits = {
                k: self._class_fit(feats[g]) for k, g in enumerate(groups) if len(g) >= self.min_class_size
            }
        per_class = self._decide(groups, fits)
        for k, g in enumerate(groups):
            if k not in fits:
                per_class[k] = {"size": len(g), "poisoned": False, "decision": "skipped (too few samples)"}
        names = dataset.class_names
        self.details_ = {
            "expected_fraction": self.expected_fraction,
            "poisoned_classes": [names[k] for k in sorted(per_class) if per_class[k]["poisoned"]],
            "classes": {names[k]: per_class[k] for k in sorted(per_class)},
        }

    def _class_fit(self, x: np.ndarray) -> dict[str, Any]:
        """Robust whitening and QUE scores of one class (N_k, D); ``tau`` (N_k,) and statistics."""
        n = len(x)
        centred = x - x.mean(axis=0)
        directions, variances = principal_directions(centred)
        rank = int(np.sum(variances > 1e-12 * variances[0])) if variances[0] > 0 else 0
        r = min(self.n_components, rank, n // self.samples_per_dim)
        if r < 1:  # no spread (or too few samples for one direction): nothing to whiten
            empty = np.zeros(n, dtype=bool)
            return {"tau": np.zeros(n), "statistic": 0.0, "r": 0, "d": 0.0, "far": empty, "two_groups": False}
        z = centred @ directions[:, :r]
        upper, d = split_groups(z[:, 0])
        larger = upper if 2 * int(upper.sum()) >= n else ~upper
        two_groups = bool(d >= BIMODAL_D and int(larger.sum()) >= r + 2)
        # two obvious groups: the larger is the clean one (module docstring, step 2)
        est = deterministic_mcd(z[larger] if two_groups else z)
        vals, vecs = np.linalg.eigh(est.covariance)
        vals = np.maximum(vals, EIG_FLOOR * max(float(vals.mean()), 1e-300))
        w = ((z - est.location) @ vecs) / np.sqrt(vals)
        tau, statistic, top, spike = que_scores(w, self.alpha)
        d_spike, far = _spike_modes(w, spike)
        return {
            "tau": tau,
            "statistic": statistic,
            "lambda_max": top,
            "r": r,
            "d": d_spike,
            "far": far,
            "eps": _poison_share(w, d_spike, far),
            "two_groups": two_groups,
        }

    def _decide(self, groups: list[np.ndarray], fits: dict[int, dict]) -> dict[int, dict]:
        """Poisoned classes (module docstring), their flags and every sample's score."""
        ds = np.array([f["d"] for f in fits.values()])
        # a far mode of a few samples measures how far some outliers lie, not a second group:
        # kept out of the median and MAD (one odd image of a clean class has D in the hundreds)
        grouped = [f["far"].mean() >= self.min_fraction for f in fits.values()]
        zs = grouped_class_z(np.log(np.maximum(ds, 1e-12)), grouped, MIN_CLASSES_FOR_Z)
        out = {}
        for (k, fit), z in zip(fits.items(), zs, strict=True):
            tau, idx = fit["tau"], groups[k]
            poisoned = bool(
                fit["d"] >= self.separation_threshold
                and fit["far"].mean() >= self.min_fraction
                and (z is None or z >= self.z_threshold)
            )
            eps = self.expected_fraction if self.expected_fraction is not None else fit.get("eps", 0.0)
            n_remove = int(np.ceil(min(1.0, self.eps_multiplier * eps) * len(idx) - 1e-9)) if poisoned else 0
            order = np.argsort(-tau, kind="stable")
            self.flagged_[idx[order[:n_remove]]] = True
            boundary = tau[order[n_remove - 1]] if n_remove else tau.max(initial=0.0)
            evidence = 0.5 * float(poisoned) + 0.5 * fit["d"] / (fit["d"] + self.separation_threshold)
            self.scores_[idx] = evidence * tau / (tau + max(float(boundary), 1e-12))
            out[k] = {
                "size": len(idx),
                "n_components": fit["r"],
                "que_statistic": float(fit["statistic"]),
                "lambda_max": float(fit.get("lambda_max", 0.0)),
                "spike_ashman_d": float(fit["d"]),
                "spike_d_z": z,
                "far_mode_size": int(fit["far"].sum()),
                "estimated_fraction": float(fit.get("eps", 0.0)),
                "two_groups": fit["two_groups"],
                "removed": n_remove,
                "evidence": evidence,
                "poisoned": poisoned,
                "decision": "poisoned" if poisoned else "clean",
            }
        return out
