"""SCAn: untangle each class into two subgroups and test the split with a likelihood ratio.

Tang, Wang, Tang and Zhang, "Demon in the Variant: Statistical Analysis of DNNs for Robust
Backdoor Contamination Detection", 30th USENIX Security Symposium, 2021, arXiv:1908.00686.
The two-component model and its EM are those of the "joint Bayesian" face model of Chen, Cao,
Wang, Wen and Sun, "Bayesian Face Revisited: A Joint Formulation", ECCV 2012.

Model: the penultimate representation of a sample of class k is ``r = mu_k + e``, an identity
``mu_k ~ N(0, S_mu)`` shared by the class plus a variation ``e ~ N(0, S_e)`` shared by *every*
class. A backdoor breaks this: triggered source images labelled k carry the source's identity
plus a trigger, so class k is better described by two identities with the same ``S_e``.

1. Global model: on the globally centred representations, EM estimates ``S_mu``, ``S_e`` and
   every class's identity (the posterior mean ``S_mu (m S_mu + S_e)^(-1) sum_i r_i``, with point
   estimates in the M-step as in Chen et al.).
2. Untangling of class k: two subgroups with means ``m_1, m_2`` and the shared ``F = S_e^(-1)``.
   With hard assignments, the partition that maximises the two-subgroup likelihood maximises
   ``J`` below, the between-subgroup scatter in the ``F`` metric: it is 2-means in the
   ``F``-whitened space. Start from the exact 2-means split along the top ``F``-whitened
   principal direction of the class, then alternate subgroup means and assignment to the nearer
   mean, ``(r - (m_1 + m_2)/2)^T F (m_1 - m_2) > 0``, until stable (Lloyd's iterations).
3. Test statistic: with ``S_e`` fixed, twice the log-likelihood ratio of the two-subgroup over
   the one-identity model, per sample: ``J_k = pi_1 pi_2 (m_1 - m_2)^T F (m_1 - m_2)``.
4. A class is poisoned when ``J_k`` is an outlier: its robust z-score across classes (median and
   scaled MAD, :func:`~poisonlab.defenses.helpers.robust_stats.cross_class_z`) is at least
   ``z_threshold``, the paper's e^2 ~ 7.39. Only one side is tested: a clean class has no
   reason to be *less* split than the others. With fewer than three analysed classes nothing is
   decided.

Deviation from the paper, which fits the global model on a small clean set: here no clean set is
assumed, and a poisoned class inflates the pooled within-class covariance ``S_e`` precisely along
its poison direction, which shrinks its own ``J``. When no clean sample varies along a trigger
feature, the class's own split is all the pooled variance there, ``S_e = (N_k / N) pi_1 pi_2
delta^2``, and ``J_k = N / N_k`` whatever the trigger's size: on the exact-backdoor fixture the
*lowest* J of all classes. So after a first untangling ``S_e`` is re-estimated from the
residuals around each class's two subgroup means (the variation the two-subgroup model leaves),
and the untangling and ``J`` are computed again with it. A ridge of ``ridge`` times the mean
eigenvalue keeps ``S_e`` invertible (ReLU features have dead directions).

Which subgroup is the foreign one. "The smaller subgroup" fails when the poison outnumbers the
clean samples of its class, so the evidence comes first. Every class identity lies at some typical
``F``-distance from its nearest other identity (``delta``: the median of that distance over the
classes), and so should the native subgroup of a class. A relabelled or source-specific poison
sits much nearer another class (its source); a trigger adds a direction along which no class
varies, which puts the triggered subgroup much farther from every identity. With ``d_s`` the
distance from subgroup s's mean to the nearest identity of another class, the subgroup with the
larger ``|log(d_s / delta)|`` is the foreign one when it exceeds its sibling's by at least
``log(distance_factor)`` (rule ``"atypical distance"``); otherwise the smaller subgroup is (rule
``"minority"``, the paper's premise; on a tie in size, the subgroup farther from the class's
coordinate-wise median). Only the foreign subgroup of a poisoned class is flagged. A poison that
outnumbers its class's clean samples and sits at a typical distance from the other classes
leaves no evidence but size, and is then missed.

Score of sample i of class k: ``e_k * p_i`` in [0, 1], with ``p_i`` the subgroup model's
posterior of the foreign subgroup and ``e_k = 0.5 * poisoned_k + 0.5 * z+ / (z+ + z_threshold)``.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
from scipy.special import expit
from threadpoolctl import threadpool_limits

from poisonlab.defenses.base import (
    Defense,
    ScanContext,
    check_bool,
    check_positive_float,
    check_positive_int,
    class_groups,
)
from poisonlab.defenses.helpers.identity_model import (
    fit_identity_model,
    ridged_precision,
    typical_identity_distance,
    untangle,
    within_subgroup_scatter,
)
from poisonlab.defenses.helpers.robust_stats import cross_class_z
from poisonlab.params import Interval, check_param

__all__ = ["SCAn"]

# Fewest analysed classes for a cross-class robust z-score (a median of two values is no norm).
MIN_CLASSES = 3


class SCAn(Defense):
    """Per-class two-subgroup likelihood-ratio test on a global identity/variation model.

    Parameters
    ----------
    z_threshold : float
        Lowest robust z-score of ``J`` across classes of a poisoned class, > 0 (paper: e^2).
    distance_factor : float
        How many times more atypical (as a ratio) one subgroup's distance to the nearest other
        identity must be than its sibling's for that evidence to name the foreign subgroup, > 1.
    refine_within : bool
        Re-estimate ``S_e`` within the untangled subgroups before the final test (module
        docstring); False keeps the plain EM estimate.
    em_iterations : int
        Most EM iterations of the global model, >= 1.
    ridge : float
        Ridge on ``S_e`` relative to its mean eigenvalue, > 0.
    min_class_size : int
        Classes with fewer samples are not analysed (never flagged), >= 4.
    """

    name = "scan_lrt"
    space = "features"
    needs_model = True
    needs_trusted = False
    paper = (
        "Tang, Wang, Tang and Zhang, Demon in the Variant: Statistical Analysis of DNNs for Robust "
        "Backdoor Contamination Detection, USENIX Security 2021, arXiv:1908.00686"
    )

    def __init__(
        self,
        *,
        z_threshold: float = float(np.exp(2.0)),
        distance_factor: float = 2.0,
        refine_within: bool = True,
        em_iterations: int = 20,
        ridge: float = 1e-3,
        min_class_size: int = 20,
    ) -> None:
        self.z_threshold = check_positive_float(z_threshold, "z_threshold")
        self.distance_factor = float(
            check_param("distance_factor", distance_factor, Interval(Real, 1, None, closed="neither"))
        )
        self.refine_within = check_bool(refine_within, "refine_within")
        self.em_iterations = check_positive_int(em_iterations, "em_iterations")
        self.ridge = check_positive_float(ridge, "ridge")
        self.min_class_size = check_positive_int(min_class_size, "min_class_size", minimum=4)

    def _fit(self, context: ScanContext) -> None:
        feats = np.asarray(context.representations().features, dtype=np.float64)
        dataset = context.dataset
        x = feats - feats.mean(axis=0)
        k_all = dataset.num_classes
        groups = class_groups(dataset.y, k_all)
        analysed = [k for k, g in enumerate(groups) if len(g) >= self.min_class_size]
        with threadpool_limits(limits=1):  # D x D algebra: threads only add contention
            _, s_e, ident = fit_identity_model(
                x, dataset.y, k_all, iterations=self.em_iterations, ridge=self.ridge
            )
            f, root = ridged_precision(s_e, self.ridge)
            splits = {k: untangle(x[groups[k]], f, root) for k in analysed}
            if self.refine_within and analysed:
                f, root = ridged_precision(within_subgroup_scatter(x, groups, splits), self.ridge)
                splits = {k: untangle(x[groups[k]], f, root) for k in analysed}
            typical = typical_identity_distance(ident[analysed], f)
            fits = {
                k: self._class_test(
                    x[groups[k]], splits[k], f, ident, [j for j in analysed if j != k], typical
                )
                for k in analysed
            }
        per_class = self._decide(groups, fits)
        for k, g in enumerate(groups):
            if k not in fits:
                per_class[k] = {"size": len(g), "poisoned": False, "decision": "skipped (too few samples)"}
        names = dataset.class_names
        self.details_ = {
            "z_threshold": self.z_threshold,
            "refine_within": self.refine_within,
            "poisoned_classes": [names[k] for k in sorted(per_class) if per_class[k]["poisoned"]],
            "classes": {names[k]: per_class[k] for k in sorted(per_class)},
        }

    def _class_test(
        self,
        x: np.ndarray,
        group: np.ndarray,
        f: np.ndarray,
        ident: np.ndarray,
        others: list[int],
        typical: float,
    ) -> dict[str, Any]:
        """``J``, the foreign subgroup and its posterior (n,) for a class ``x`` (n, D) split by ``group``.

        ``others`` are the other analysed classes, whose identities (rows of ``ident``) the
        subgroup means are compared with; ``typical`` is the typical identity distance.
        """
        if group.all() or not group.any():  # no spread: one identity explains the class
            return {
                "J": 0.0,
                "sizes": [int(group.sum()), int((~group).sum())],
                "posterior": np.zeros(len(x)),
                "foreign_mask": np.zeros(len(x), bool),
                "rule": "none",
                "distances": [None, None],
                "nearest": [None, None],
            }
        sides = [group, ~group]
        m = [x[s].mean(axis=0) for s in sides]
        pi = float(group.mean())
        delta = m[0] - m[1]
        j_stat = pi * (1.0 - pi) * float(delta @ f @ delta)
        dist: list[float | None] = [None, None]
        nearest: list[int | None] = [None, None]
        for s, mean in enumerate(m):
            if others:
                diff = ident[others] - mean
                d2 = np.einsum("ij,jk,ik->i", diff, f, diff)
                dist[s] = float(np.sqrt(max(d2.min(), 0.0)))
                nearest[s] = others[int(d2.argmin())]
        foreign, rule = self._foreign_side(x, sides, dist, f, typical)
        # posterior of subgroup 1 under the two-Gaussian model with shared F
        logit = (x - 0.5 * (m[0] + m[1])) @ (f @ delta) + np.log(pi / (1.0 - pi))
        p1 = expit(logit)
        return {
            "J": j_stat,
            "sizes": [int(s.sum()) for s in sides],
            "posterior": p1 if foreign == 0 else 1.0 - p1,
            "foreign_mask": sides[foreign],
            "foreign": foreign,
            "rule": rule,
            "distances": dist,
            "nearest": nearest,
        }

    def _foreign_side(
        self, x: np.ndarray, sides: list[np.ndarray], dist: list[float | None], f: np.ndarray, typical: float
    ) -> tuple[int, str]:
        """Index of the foreign subgroup and the rule that named it (module docstring)."""
        if dist[0] is not None and dist[1] is not None:
            atypical = [abs(np.log(max(d, 1e-12) / typical)) for d in dist]
            odd = int(np.argmax(atypical))
            if atypical[odd] - atypical[1 - odd] >= np.log(self.distance_factor):
                return odd, "atypical distance"
        sizes = [int(s.sum()) for s in sides]
        if sizes[0] != sizes[1]:
            return int(np.argmin(sizes)), "minority"
        centre = np.median(x, axis=0)
        far = [float((x[s].mean(axis=0) - centre) @ f @ (x[s].mean(axis=0) - centre)) for s in sides]
        return int(np.argmax(far)), "minority"

    def _decide(self, groups: list[np.ndarray], fits: dict[int, dict]) -> dict[int, dict]:
        """Poisoned classes by the robust z of ``J``; flags their foreign subgroup; sets the scores."""
        n = sum(len(g) for g in groups)
        self.scores_ = np.zeros(n)
        self.flagged_ = np.zeros(n, dtype=bool)
        j_values = np.array([fit["J"] for fit in fits.values()])
        zs: list[float | None] = cross_class_z(j_values) if len(fits) >= MIN_CLASSES else [None] * len(fits)
        out = {}
        for (k, fit), z in zip(fits.items(), zs, strict=True):
            idx = groups[k]
            poisoned = bool(z is not None and z >= self.z_threshold and fit["foreign_mask"].any())
            if poisoned:
                self.flagged_[idx[fit["foreign_mask"]]] = True
            zp = max(z or 0.0, 0.0)
            evidence = 0.5 * float(poisoned) + 0.5 * zp / (zp + self.z_threshold)
            self.scores_[idx] = evidence * fit["posterior"]
            out[k] = {
                "size": len(idx),
                "J": float(fit["J"]),
                "J_z": z,
                "subgroup_sizes": fit["sizes"],
                "nearest_other_class": fit["nearest"],
                "distance_to_nearest_identity": fit["distances"],
                "foreign_subgroup": fit.get("foreign"),
                "foreign_rule": fit["rule"],
                "flagged": int(fit["foreign_mask"].sum()) if poisoned else 0,
                "evidence": evidence,
                "poisoned": poisoned,
                "decision": "poisoned" if poisoned else "clean",
            }
        return out
