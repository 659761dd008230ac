"""SCAn: the identity/variation EM, the untangling, the LRT statistic and the foreign-subgroup rule.

Mechanics on constructed inputs: samples drawn from the two-component model itself, planted
Gaussian classes with a poison group labelled "c1" (including a label flip that outnumbers the
class's clean samples), and the exact backdoor.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from poisonlab.defenses import NotFittedError
from poisonlab.defenses.detectors.scan_lrt import SCAn
from poisonlab.defenses.helpers.identity_model import fit_identity_model, untangle
from poisonlab.metrics import detection_scores

E2 = math.exp(2.0)


def _fit(planted, *args, **kwargs):
    params = kwargs.pop("params", {})
    data, forward = planted(*args, **kwargs)
    det = SCAn(**params).fit(data, forward=forward)
    return data, det, detection_scores(data.poison_mask, det.predict(), det.score_samples())


# ------------------------------------------------------------------ the model
def test_em_recovers_the_identity_and_variation_covariances():
    rng = np.random.default_rng(0)
    k, m, d = 300, 40, 4
    s_mu = np.diag([4.0, 2.0, 1.0, 0.5])
    a = rng.normal(size=(d, d))
    s_e = a @ a.T / d + 0.2 * np.eye(d)
    ident = rng.multivariate_normal(np.zeros(d), s_mu, size=k)
    y = np.repeat(np.arange(k), m)
    x = ident[y] + rng.multivariate_normal(np.zeros(d), s_e, size=k * m)
    est_mu, est_e, est_ident = fit_identity_model(x - x.mean(axis=0), y, k, ridge=1e-9)
    np.testing.assert_allclose(est_e, s_e, atol=0.05 * np.abs(s_e).max())
    np.testing.assert_allclose(est_mu, s_mu, atol=0.15 * s_mu.max())
    assert np.corrcoef(est_ident[:, 0], ident[:, 0])[0, 1] > 0.99


def test_untangle_splits_two_groups_and_j_is_the_likelihood_ratio():
    rng = np.random.default_rng(1)
    cov = np.array([[4.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.25]])
    f = np.linalg.inv(cov)
    root = np.linalg.cholesky(f)  # f = root @ root.T
    # the groups differ along the low-variance axis only: the whitened metric must find it
    x = rng.multivariate_normal(np.zeros(3), cov, size=400)
    x[:120, 2] += 3.0
    group = untangle(x, f, root)
    truth = np.arange(400) < 120
    assert max(np.mean(group == truth), np.mean(group != truth)) >= 0.99  # 6 sd apart: a stray or two
    m1, m2, m = x[group].mean(axis=0), x[~group].mean(axis=0), x.mean(axis=0)
    pi = group.mean()
    j = pi * (1 - pi) * (m1 - m2) @ f @ (m1 - m2)

    def quad(r, c):
        return np.einsum("ij,jk,ik->", r - c, f, r - c)

    llr = quad(x, m) - quad(x[group], m1) - quad(x[~group], m2)  # 2 log LR with S_e fixed
    assert j == pytest.approx(llr / len(x), rel=1e-9)


# ------------------------------------------------------------------ planted poison
def test_planted_backdoor_minority_is_flagged(planted):
    data, det, r = _fit(planted, 60)
    assert r["recall"] == 1.0 and r["precision"] == 1.0 and r["auroc"] == 1.0
    c1 = det.details_["classes"]["c1"]
    assert det.details_["poisoned_classes"] == ["c1"]
    assert c1["J_z"] >= E2 and c1["foreign_rule"] == "minority" and c1["flagged"] == 60


def test_label_flip_that_outnumbers_its_class_is_found_by_distance(planted):
    # 200 "c0" samples labelled "c1" against 150 clean "c1": the smaller subgroup is the clean one
    data, det, r = _fit(planted, 200, source_weight=1.0, trigger=0.0)
    assert r["recall"] == 1.0 and r["precision"] == 1.0
    c1 = det.details_["classes"]["c1"]
    assert c1["foreign_rule"] == "atypical distance"
    foreign = c1["foreign_subgroup"]
    assert c1["subgroup_sizes"][foreign] == 200 and c1["nearest_other_class"][foreign] == 0
    # the relabelled subgroup sits on "c0"'s identity, the native one at a typical distance
    assert (
        c1["distance_to_nearest_identity"][foreign] < 0.25 * c1["distance_to_nearest_identity"][1 - foreign]
    )


def test_small_label_flip_and_source_free_trigger(planted):
    for kwargs, rule in (
        ({"source_weight": 1.0, "trigger": 0.0}, "atypical distance"),
        ({"source_weight": 0.0}, None),
    ):
        data, det, r = _fit(planted, 40, **kwargs)
        assert r["recall"] == 1.0 and r["precision"] == 1.0, kwargs
        assert rule is None or det.details_["classes"]["c1"]["foreign_rule"] == rule


def test_clean_planted_classes_are_not_flagged(planted):
    data, det, _ = _fit(planted, 0, classes=10)
    assert not det.predict().any() and det.details_["poisoned_classes"] == []
    assert max(c["J_z"] for c in det.details_["classes"].values()) < E2


def test_too_few_classes_decide_nothing(planted):
    data, det, _ = _fit(planted, 30, classes=2)
    assert not det.predict().any()
    assert all(c["J_z"] is None for c in det.details_["classes"].values())


def test_exact_backdoor_flags_the_triggered_subgroup(exact_backdoor):
    case = exact_backdoor
    det = SCAn().fit(case.dataset, case.model, forward=case.forward)
    r = detection_scores(case.mask, det.predict(), det.score_samples())
    assert r["recall"] >= 0.95 and r["precision"] >= 0.95
    target = case.dataset.class_names[case.target]
    assert det.details_["poisoned_classes"] == [target]
    # the poison is half of its class: size cannot tell; the trigger puts it far from every identity
    assert det.details_["classes"][target]["foreign_rule"] == "atypical distance"
    # the paper's pooled S_e: the class's own split is all the variation along the trigger
    # feature, so J = N / N_k, below the clean classes'; the within-subgroup S_e repairs it
    plain = SCAn(refine_within=False).fit(case.dataset, case.model, forward=case.forward)
    n_k = int((case.dataset.y == case.target).sum())
    assert plain.details_["classes"][target]["J"] == pytest.approx(len(case.dataset) / n_k, rel=0.1)
    assert plain.details_["poisoned_classes"] == []


# ------------------------------------------------------------------ contract
@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"z_threshold": 0}, "z_threshold"),
        ({"distance_factor": 1.0}, "distance_factor"),
        ({"distance_factor": "2"}, "distance_factor"),
        ({"refine_within": "yes"}, "refine_within"),
        ({"em_iterations": 0}, "em_iterations"),
        ({"ridge": 0}, "ridge"),
        ({"min_class_size": 3}, "min_class_size"),
    ],
)
def test_parameter_validation(params, match):
    with pytest.raises(ValueError, match=match):
        SCAn(**params)


def test_contract_details_and_determinism(planted):
    data, forward = planted(60)
    det = SCAn()
    with pytest.raises(NotFittedError):
        det.predict()
    det.fit(data, forward=forward)
    scores = det.score_samples()
    assert scores.dtype == np.float64 and np.all((scores >= 0) & (scores <= 1))
    assert scores[data.poison_mask].min() > scores[~data.poison_mask].max()
    json.loads(json.dumps(det.details_))
    again = SCAn().fit(data, forward=forward)
    np.testing.assert_array_equal(again.score_samples(), scores)
    np.testing.assert_array_equal(again.predict(), det.predict())
    plain = SCAn(refine_within=False).fit(data, forward=forward)
    assert plain.details_["refine_within"] is False and plain.details_["poisoned_classes"] == ["c1"]
    with pytest.raises(ValueError, match="needs a model"):
        SCAn().fit(data)
