"""Deterministic minimum covariance determinant: a robust mean and covariance of one class.

The minimum covariance determinant (MCD) estimate of a sample of N points in R^p is the mean and
covariance of the ``h`` points (``h`` about half the sample) whose covariance has the smallest
determinant (Rousseeuw, "Least median of squares regression", JASA 79(388), 1984). Its
breakdown point is ``(N - h) / N``, about one half: a minority of outliers cannot move it far,
however far they lie. Poison is such a minority inside the class it is labelled as.

scikit-learn's ``MinCovDet`` approximates the MCD from random elemental subsets of ``p + 1``
points (FastMCD, Rousseeuw and Van Driessen, Technometrics 41(3), 1999). With 24 dimensions and
30 % poison, a random 25-point start is clean with probability 0.7^25 ~ 1e-4: every start holds
poison and the C-steps converge to a mixed subset. This module starts instead from a handful of
deterministic, already robust subsets, in the spirit of DetMCD (Hubert, Rousseeuw and Verdonck,
"A deterministic algorithm for robust location and scatter", JCGS 21(3), 2012):

* the ``h`` points closest to the coordinate-wise median, coordinates scaled by their MAD;
* the ``h`` points closest to the spatial (L1) median (Weiszfeld iterations);
* the ``h`` points at either end of the top principal axis (for a large minority that drags
  the medians towards itself, one end is free of it).

Each start is refined by C-steps (keep the ``h`` points of smallest Mahalanobis distance under
the current estimate, which never increases the determinant) and the lowest determinant wins.
The usual consistency correction (the median squared distance matched to the chi-squared
median) and one reweighting step (the mean and covariance of the points inside the chi-squared 0.975
quantile, the covariance unbiased for that cut) follow, as in Rousseeuw and Van Driessen (1999).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

__all__ = ["RobustEstimate", "deterministic_mcd", "mahalanobis_sq", "principal_directions"]

# Relative ridge on covariance eigenvalues: degenerate directions (a backdoor feature that is
# constant on both sides of a class) must not give a subset a zero determinant and so the win.
_RIDGE = 1e-6
# Points inside this chi-squared quantile of the raw estimate form the reweighted support.
_REWEIGHT_QUANTILE = 0.975


@dataclass(frozen=True)
class RobustEstimate:
    """Robust location ``(p,)``, scatter ``(p, p)`` and the reweighted support ``(N,)`` bool."""

    location: np.ndarray
    covariance: np.ndarray
    support: np.ndarray


def mahalanobis_sq(z: np.ndarray, location: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distances (N,) >= 0 of the rows of ``z`` (N, p) under a ridged covariance."""
    vals, vecs = np.linalg.eigh(covariance)
    vals = np.maximum(vals, _RIDGE * max(float(vals.max()), 1e-300))
    proj = (z - location) @ vecs
    return np.einsum("ij,ij->i", proj, proj / vals)


def _logdet(covariance: np.ndarray) -> float:
    vals = np.linalg.eigvalsh(covariance)
    return float(np.sum(np.log(np.maximum(vals, _RIDGE * max(float(vals.max()), 1e-300)))))


def _c_steps(z: np.ndarray, subset: np.ndarray, h: int, max_steps: int) -> tuple[np.ndarray, float]:
    """C-steps from ``subset`` (indices) until the subset is stable; returns it and its log-det."""
    subset = np.sort(subset)
    for _ in range(max_steps):
        part = z[subset]
        d2 = mahalanobis_sq(z, part.mean(axis=0), np.atleast_2d(np.cov(part, rowvar=False, bias=True)))
        new = np.sort(np.argsort(d2, kind="stable")[:h])
        if np.array_equal(new, subset):
            break
        subset = new
    return subset, _logdet(np.atleast_2d(np.cov(z[subset], rowvar=False, bias=True)))


def _spatial_median(z: np.ndarray, iters: int = 50) -> np.ndarray:
    """Weiszfeld iterations for the point minimising the sum of Euclidean distances, (p,)."""
    m = np.median(z, axis=0)
    for _ in range(iters):
        w = 1.0 / np.maximum(np.linalg.norm(z - m, axis=1), 1e-12)
        new = (w[:, None] * z).sum(axis=0) / w.sum()
        if np.linalg.norm(new - m) <= 1e-9 * (1.0 + np.linalg.norm(m)):
            return new
        m = new
    return m


def _starts(z: np.ndarray, h: int) -> list[np.ndarray]:
    """Deterministic initial subsets of ``h`` indices each (see the module docstring)."""
    med = np.median(z, axis=0)
    mad = np.median(np.abs(z - med), axis=0)
    scaled = (z - med) / np.where(mad > 1e-12, mad, 1.0)
    dist_coord = np.einsum("ij,ij->i", scaled, scaled)
    dist_spatial = np.linalg.norm(z - _spatial_median(z), axis=1)
    centred = z - z.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axis = centred @ vt[0]
    orders = [np.argsort(d, kind="stable") for d in (dist_coord, dist_spatial, axis, -axis)]
    return [o[:h] for o in orders]


def deterministic_mcd(
    z: np.ndarray, *, support_fraction: float | None = None, max_steps: int = 100
) -> RobustEstimate:
    """Robust mean and covariance of ``z`` (N, p), N > p, by a deterministic MCD with reweighting.

    Parameters
    ----------
    z : ndarray of shape (N, p)
        Samples (float); at least ``p + 2`` of them.
    support_fraction : float, optional
        Share ``h / N`` of points of the MCD subset, in (0.5, 1]; by default ``(N + p + 1) / 2N``,
        the most robust choice (breakdown point about one half).
    max_steps : int
        Most C-steps per start.

    Returns
    -------
    RobustEstimate
        Consistency-corrected, reweighted location ``(p,)`` and covariance ``(p, p)``, and the
        support ``(N,)``: the points inside the chi-squared 0.975 quantile of the raw estimate.
    """
    z = np.asarray(z, dtype=np.float64)
    n, p = z.shape
    if n < p + 2:
        raise ValueError(f"robust covariance of {p} dimensions needs at least {p + 2} samples, got {n}")
    h = (n + p + 1) // 2 if support_fraction is None else int(np.ceil(support_fraction * n))
    h = min(max(h, p + 1), n)
    fits = [_c_steps(z, s, h, max_steps) for s in _starts(z, h)]
    best = min(fits, key=lambda f: f[1])[0]
    loc = z[best].mean(axis=0)
    cov = np.atleast_2d(np.cov(z[best], rowvar=False, bias=True))
    # consistency: under normality the median squared distance is the chi-squared median
    d2 = mahalanobis_sq(z, loc, cov)
    cov = cov * (np.median(d2) / chi2.ppf(0.5, p))
    cut = chi2.ppf(_REWEIGHT_QUANTILE, p)
    support = mahalanobis_sq(z, loc, cov) <= cut
    if support.sum() > p:
        loc = z[support].mean(axis=0)
        # a normal sample cut at a distance quantile has its covariance shrunk by
        # P(chi2_{p+2} <= cut) / P(chi2_p <= cut) (Croux and Haesbroeck, J. Multivar. Anal. 71, 1999)
        shrink = chi2.cdf(cut, p + 2) / _REWEIGHT_QUANTILE
        cov = np.atleast_2d(np.cov(z[support], rowvar=False, bias=True)) / shrink
    return RobustEstimate(location=loc, covariance=cov, support=support)


def principal_directions(centred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal directions (D, m) of centred rows (N, D) as columns, and their scatter (m,) >= 0.

    Largest first; ``m = D`` when N >= D (eigenvectors of the D x D scatter, cheaper than an SVD
    when N >> D), else ``m = N`` (thin SVD).
    """
    n, d = centred.shape
    if n >= d:
        vals, vecs = np.linalg.eigh(centred.T @ centred)
        return vecs[:, ::-1], np.maximum(vals[::-1], 0.0)
    _, sing, vt = np.linalg.svd(centred, full_matrices=False)
    return vt.T, sing**2
