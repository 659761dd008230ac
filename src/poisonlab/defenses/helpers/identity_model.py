"""The identity/variation model of SCAn and its untangling of one class into two subgroups.

Chen, Cao, Wang, Wen and Sun, "Bayesian Face Revisited: A Joint Formulation", ECCV 2012, model a
representation as ``x = mu + e``: an identity ``mu ~ N(0, S_mu)`` shared by the samples of a
class plus a variation ``e ~ N(0, S_e)`` shared by every class, fitted by EM. Tang, Wang, Tang
and Zhang ("Demon in the Variant", USENIX Security 2021, arXiv:1908.00686) test whether a class
is better described by two identities with the same ``S_e``; :mod:`poisonlab.defenses.detectors.scan_lrt`
is the detector, this module the numerics: the EM, the untangling (2-means in the metric
``F = S_e^(-1)``) and the pieces the detector's decisions rest on.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

from poisonlab.defenses.helpers.two_groups import two_means_1d

__all__ = [
    "fit_identity_model",
    "ridged_precision",
    "typical_identity_distance",
    "untangle",
    "within_subgroup_scatter",
]


def ridged_precision(cov: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """``F = (cov + ridge * mean eigenvalue * I)^(-1)`` (D, D) and a root ``R`` (D, D), ``F = R R^T``."""
    d = cov.shape[0]
    scale = max(float(np.trace(cov)) / d, 1e-12)
    vals, vecs = np.linalg.eigh(cov + ridge * scale * np.eye(d))
    root = vecs / np.sqrt(np.maximum(vals, 1e-300))
    return root @ root.T, root


def top_whitened_direction(centred: np.ndarray, root: np.ndarray) -> np.ndarray:
    """Top principal direction (D,) of ``centred @ root`` (n, D), the class whitened by ``F``."""
    d = root.shape[0]
    if d <= 64:
        return np.linalg.eigh(root.T @ (centred.T @ centred) @ root)[1][:, -1]
    # Lanczos on the implicit D x D scatter: O(n D) per product instead of O(n D^2 + D^3)
    op = LinearOperator(
        (d, d), matvec=lambda v: root.T @ (centred.T @ (centred @ (root @ v))), dtype=np.float64
    )
    return eigsh(op, k=1, which="LA", v0=np.ones(d), tol=1e-6, maxiter=5000)[1][:, 0]


def fit_identity_model(
    x: np.ndarray, y: np.ndarray, num_classes: int, *, iterations: int = 20, ridge: float = 1e-3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM of the two-component model ``x = mu_y + e`` on centred ``x`` (N, D) with labels ``y`` (N,).

    Returns ``(S_mu (D, D), S_e (D, D), identities (K, D))``; absent classes get a zero identity.
    Each EM step costs O(D^3), whatever N: the E-step is diagonal after simultaneous
    diagonalisation of ``S_e`` and ``S_mu``, and the M-step's ``S_e`` is the within-class
    scatter (computed once) plus each class's identity shrinkage.
    """
    d = x.shape[1]
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    present = counts > 0
    means = np.zeros((num_classes, d))
    for k in np.flatnonzero(present):
        means[k] = x[y == k].mean(axis=0)
    resid = x - means[y]
    within = resid.T @ resid
    n_present = max(int(present.sum()), 1)
    s_mu = means[present].T @ means[present] / n_present  # identities ~ N(0, S_mu), x is centred
    s_e = within / len(x)
    ident = means.copy()
    for _ in range(iterations):
        # whiten S_e (ridged), diagonalise S_mu there: E[mu | class] = T diag(m l / (m l + 1)) T^-1 mean
        vals, vecs = np.linalg.eigh(s_e + ridge * max(np.trace(s_e) / d, 1e-12) * np.eye(d))
        root = np.sqrt(np.maximum(vals, 1e-300))
        half = vecs / root  # S_e^(-1/2) in the original basis (columns)
        lam, u = np.linalg.eigh(half.T @ s_mu @ half)
        basis = half @ u  # whitening-and-rotation: basis.T @ S_e @ basis = I
        inverse = u.T @ (vecs * root).T  # basis^(-1), without a general inverse
        shrink = (counts[:, None] * lam) / (counts[:, None] * np.maximum(lam, 0.0) + 1.0)
        new = ((means @ basis) * np.clip(shrink, 0.0, 1.0)) @ inverse
        new[~present] = 0.0
        off = means - new
        s_mu_new = new[present].T @ new[present] / n_present
        s_e_new = (within + (off * counts[:, None]).T @ off) / len(x)
        done = np.abs(new - ident).max() <= 1e-6 * (1.0 + np.abs(ident).max())
        ident, s_mu, s_e = new, s_mu_new, s_e_new
        if done:
            break
    return s_mu, s_e, ident


def untangle(x: np.ndarray, f: np.ndarray, root: np.ndarray, *, iterations: int = 30) -> np.ndarray:
    """Two subgroups of one class ``x`` (n, D) under the within-class precision ``f = root root^T`` (D, D).

    Returns the subgroup mask (n,) bool (True: subgroup 1); both subgroups are non-empty when
    n >= 2 and the class has any spread.
    """
    centred = x - x.mean(axis=0)
    group = two_means_1d(centred @ (root @ top_whitened_direction(centred, root)))
    for _ in range(iterations):
        m1, m2 = x[group].mean(axis=0), x[~group].mean(axis=0)
        # nearer mean in the F metric, without a prior term: a prior pulls the boundary outwards
        # and a unimodal class then drifts to a small tail group, a J not comparable across classes
        new = (x - 0.5 * (m1 + m2)) @ (f @ (m1 - m2)) > 0
        if new.all() or not new.any() or np.array_equal(new, group):
            break
        group = new
    return group


def within_subgroup_scatter(
    x: np.ndarray, groups: list[np.ndarray], splits: dict[int, np.ndarray]
) -> np.ndarray:
    """Pooled scatter (D, D) of ``x`` around the subgroup means of each class (class means where unsplit)."""
    resid = np.empty_like(x)
    for k, idx in enumerate(groups):
        if len(idx) == 0:
            continue
        part = x[idx]
        split = splits.get(k)
        if split is None or split.all() or not split.any():
            resid[idx] = part - part.mean(axis=0)
            continue
        resid[idx[split]] = part[split] - part[split].mean(axis=0)
        resid[idx[~split]] = part[~split] - part[~split].mean(axis=0)
    return resid.T @ resid / len(x)


def typical_identity_distance(ident: np.ndarray, f: np.ndarray) -> float:
    """Median over classes of the ``F``-distance from a class identity (K, D) to its nearest other one.

    Returns a float > 0 (1.0 with fewer than two identities).
    """
    if len(ident) < 2:
        return 1.0
    gram = ident @ f @ ident.T  # d2_ij = g_ii + g_jj - 2 g_ij, without a (K, K, D) array
    sq = np.diag(gram)
    d2 = sq[:, None] + sq[None, :] - 2.0 * gram
    np.fill_diagonal(d2, np.inf)
    return float(max(np.median(np.sqrt(np.maximum(d2.min(axis=1), 0.0))), 1e-12))
