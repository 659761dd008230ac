"""LabelDrift: the backdoor's added target-class samples drift the label distribution."""

from __future__ import annotations

import json

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from poisonlab.defenses.data_checks.drift import LabelDrift
from poisonlab.metrics import detection_scores


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """The ranking's small SVDs and logistic regressions took ~3 s with 2 OpenBLAS threads on
    the 2 shared test cores (threads spinning on a busy core) and ~0.02 s with one."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def test_backdoor_additions_are_detected_against_the_validation_split(backdoored, digits_splits) -> None:
    det = LabelDrift().fit(backdoored.dataset, trusted=digits_splits.val)
    d = det.details_
    assert d["drifted"] == ["1"]
    # measured: p = 0.0017 for class "1" (234 observed vs 121 expected), >= 0.5 for every other class
    assert d["p_values"]["1"] < d["bonferroni_alpha"] == pytest.approx(0.005)
    assert min(p for c, p in d["p_values"].items() if c != "1") > 0.3
    assert 100 <= d["excess"]["1"] <= 130  # 117 triggered "7"s were added
    s = detection_scores(backdoored.mask, det.predict(), det.score_samples())
    # measured (classifier ranking): precision 1.0, recall 0.974, fpr 0.0, auroc 1.0
    assert s["precision"] >= 0.95 and s["recall"] >= 0.93 and s["fpr"] <= 0.005 and s["auroc"] >= 0.99
    assert d["flagged"] == det.predict().sum() == round(d["excess"]["1"])
    # the cheap distance-to-mean ranking: precision 0.973, recall 0.948, auroc 0.999 measured
    by_distance = LabelDrift(ranking="distance").fit(backdoored.dataset, trusted=digits_splits.val)
    s = detection_scores(backdoored.mask, by_distance.predict(), by_distance.score_samples())
    assert s["precision"] >= 0.9 and s["recall"] >= 0.9 and s["auroc"] >= 0.98
    json.dumps(d)


def test_exact_reference_is_more_powerful(backdoored, mislabeled, digits_splits) -> None:
    det = LabelDrift(reference="exact").fit(backdoored.dataset, trusted=digits_splits.val)
    assert det.details_["drifted"] == ["1"] and det.details_["p_values"]["1"] < 1e-12
    # an in-place flip of 60 "3"s into "8" is not significant as a two-sample test (p = 0.021) ...
    assert LabelDrift().fit(mislabeled.dataset, trusted=digits_splits.val).details_["drifted"] == []
    # ... but is against exact reference shares, and the flipped "3"s are the farthest "8"s
    det = LabelDrift(reference="exact").fit(mislabeled.dataset, trusted=digits_splits.val)
    assert det.details_["drifted"] == ["8"]
    s = detection_scores(mislabeled.mask, det.predict(), det.score_samples())
    assert s["recall"] >= 0.85 and s["precision"] >= 0.75 and s["auroc"] >= 0.98  # 0.933 / 0.836 / 0.998


def test_clean_data_does_not_drift(digits_splits) -> None:
    det = LabelDrift().fit(digits_splits.train, trusted=digits_splits.val)
    assert det.details_["drifted"] == [] and det.predict().sum() == 0
    assert det.details_["homogeneity"]["p_value"] > 0.9
    # random unstratified trusted sets: the two-sample test stays quiet (measured 0 of 100 draws)
    pool = digits_splits.val.concat(digits_splits.test)
    for seed in range(15):
        idx = np.random.default_rng(seed).choice(len(pool), 270, replace=False)
        assert LabelDrift().fit(digits_splits.train, trusted=pool.subset(idx)).details_["drifted"] == []


def test_feature_space_ranking(backdoored, digits_splits) -> None:
    det = LabelDrift(representation="features").fit(
        backdoored.dataset, backdoored.model, forward=backdoored.forward, trusted=digits_splits.val
    )
    s = detection_scores(backdoored.mask, det.predict(), det.score_samples())
    # the backdoored model pulls the triggered "7"s towards "1": features rank worse than pixels
    # (measured precision 0.885, recall 0.862, auroc 0.993)
    assert det.details_["representation"] == "features"
    assert s["precision"] >= 0.75 and s["recall"] >= 0.75 and s["auroc"] >= 0.97
    with pytest.raises(ValueError, match="representation='features' needs a model"):
        LabelDrift(representation="features").fit(backdoored.dataset, trusted=digits_splits.val)


def test_a_class_missing_from_the_reference_is_flagged_entirely(digits_splits) -> None:
    trusted = digits_splits.val.subset(digits_splits.val.y != 0)
    det = LabelDrift().fit(digits_splits.train, trusted=trusted)
    assert det.details_["drifted"] == ["0"]
    assert np.array_equal(det.predict(), digits_splits.train.y == 0)


def test_needs_trusted_and_validates_parameters(backdoored) -> None:
    with pytest.raises(ValueError, match="needs a trusted"):
        LabelDrift().fit(backdoored.dataset)
    for params, match in [
        ({"alpha": 0}, "alpha must be in"),
        ({"alpha": 1.0}, r"alpha must be in \(0, 1\)"),
        ({"alpha": "0.1"}, "alpha must be a number"),
        ({"representation": "logits"}, "representation must be one of"),
        ({"reference": "known"}, "reference must be one of"),
        ({"ranking": "knn"}, "ranking must be one of"),
    ]:
        with pytest.raises(ValueError, match=match):
            LabelDrift(**params)
