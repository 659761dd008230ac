"""Activation clustering on the digits fixtures, on a clean model, and on planted synthetic features.

Measured on the digits fixtures (seeded, one CPU thread): ``mislabeled`` precision 0.90, recall
1.00, FPR 0.006, AUROC 0.9997, only "8" judged poisoned, source "3"; ``backdoored`` nothing
flagged (the tiny model draws the triggered 7s fully into "1": their activations are not a
separate cluster, AUROC 0.41); a clean model on ``digits_splits.train`` nothing flagged.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from poisonlab.defenses import DEFENSES, get_defense
from poisonlab.defenses.detectors.activation_clustering import ActivationClustering
from poisonlab.inference import ForwardResult
from poisonlab.metrics import detection_scores


@pytest.fixture
def clean_case(planted):
    """Planted features without poison: ten Gaussian classes, nothing to find.

    (A trained clean model's false alarms are a measurement, made by the detection benchmark:
    they change with the checkpoint, and so with the CPU.)"""
    return planted(0, classes=10)


def test_registry_and_contract():
    assert DEFENSES["activation_clustering"] is ActivationClustering
    det = get_defense("activation_clustering")
    assert det.space == "features" and det.needs_model and not det.needs_trusted
    assert "1811.03728" in det.paper
    assert det.get_params()["analysis"] == "silhouette"


def test_label_flip_flags_the_flipped_cluster_only(planted):
    data, forward = planted(60, source_weight=1.0, trigger=0.0)  # 60 "c0" features labelled "c1"
    det = ActivationClustering().fit(data, forward=forward)
    r = detection_scores(data.poison_mask, det.predict(), det.score_samples())
    assert r["recall"] >= 0.95 and r["precision"] >= 0.85
    assert r["fpr"] <= 0.01 and r["auroc"] >= 0.99
    assert det.details_["poisoned_classes"] == ["c1"]
    # a pure flip has no second mode inside "c1" besides the genuine one, so reclassification
    # is not decisive and names no source
    assert det.details_["classes"]["c1"].get("source_class") in (None, 0)
    # the flip's source class is left alone
    assert det.details_["classes"]["c0"]["decision"] == "clean"
    json.dumps(det.details_)


def test_reclassification_analysis_finds_the_planted_samples(planted):
    data, forward = planted(60)  # "c0"-like features plus a trigger direction, labelled "c1"
    det = ActivationClustering(analysis="reclassification").fit(data, forward=forward)
    r = detection_scores(data.poison_mask, det.predict(), det.score_samples())
    assert r["recall"] >= 0.95 and r["precision"] >= 0.85
    assert det.details_["poisoned_classes"] == ["c1"]
    assert det.details_["classes"]["c1"]["source_class"] == 0


def test_no_reclassification_with_a_model_that_does_not_fit_its_labels(planted):
    data, forward = planted(120)
    shuffled = ForwardResult(
        logits=np.random.default_rng(0).permutation(forward.logits), features=forward.features
    )
    det = ActivationClustering(analysis="reclassification").fit(data, forward=shuffled)
    assert det.details_["model_fit_accuracy"] < 0.5 and not det.details_["reclassification_available"]
    assert not det.predict().any()


def test_exact_backdoor_poison_is_found(exact_backdoor):
    """The wired backdoor's poison is found in the target class. Whether some clean class of the
    clean checkpoint also looks bimodal is the checkpoint's property, not the detector's: only a
    low false-positive rate overall is asserted."""
    case = exact_backdoor
    det = ActivationClustering().fit(case.dataset, case.model, forward=case.forward)
    r = detection_scores(case.mask, det.predict(), det.score_samples())
    assert r["recall"] >= 0.95 and r["fpr"] <= 0.05
    assert case.dataset.class_names[case.target] in det.details_["poisoned_classes"]


@pytest.mark.parametrize("n_odd", [1, 4])
def test_outliers_split_off_are_neither_flagged_nor_in_the_reference(planted, n_odd):
    """One odd image far out in each of ``n_odd`` clean classes (of ten): 2-means splits it off
    with the highest silhouette of all (0.99). Those classes are clean, and the real poison's
    z-score is measured against the classes split in two (with four such images in the
    reference, c1 scored z 0.6 and nothing was found)."""
    data, forward = planted(30, classes=10)
    feats = forward.features.copy()
    odd_classes = range(2, 2 + n_odd)
    odd = [int(np.flatnonzero(data.y == c)[0]) for c in odd_classes]
    feats[odd] += 200.0
    det = ActivationClustering().fit(data, forward=ForwardResult(logits=forward.logits, features=feats))
    classes = det.details_["classes"]
    assert all(classes[f"c{c}"]["decision"] == "clean (outliers split off)" for c in odd_classes)
    assert det.details_["poisoned_classes"] == ["c1"]
    assert classes["c1"]["silhouette_z"] >= det.z_threshold
    assert not det.predict()[odd].any()


def test_the_papers_size_rule_still_flags_an_outlier_split(planted):
    data, forward = planted(30, classes=10)
    feats = forward.features.copy()
    odd = int(np.flatnonzero(data.y == 2)[0])
    feats[odd] += 200.0
    det = ActivationClustering(analysis="size").fit(
        data, forward=ForwardResult(logits=forward.logits, features=feats)
    )
    assert det.predict()[odd] and det.details_["classes"]["c2"]["cluster_sizes"] == [149, 1]


def test_clean_model_few_flags(clean_case):
    data, forward = clean_case
    det = ActivationClustering().fit(data, forward=forward)
    assert det.predict().mean() <= 0.02
    assert len(det.details_["poisoned_classes"]) <= 1
    # the paper's "smaller cluster" rule, by contrast, flags a cluster in every class
    naive = ActivationClustering(analysis="size").fit(data, forward=forward)
    assert len(naive.details_["poisoned_classes"]) == data.num_classes
    assert naive.predict().mean() >= 0.2


@pytest.mark.parametrize("reduction", ["pca", "ica"])
def test_planted_cluster_is_found_and_its_source_reported(reduction, planted):
    data, forward = planted(120)  # 44 % of the class "c1"
    # ICA whitens every component to unit variance: splits look less clean (c1: 0.10 vs 0.53)
    floor = 0.05 if reduction == "ica" else 0.25
    det = ActivationClustering(reduction=reduction, silhouette_threshold=floor).fit(data, forward=forward)
    r = detection_scores(data.poison_mask, det.predict(), det.score_samples())
    assert r["recall"] >= 0.98 and r["precision"] >= 0.98 and r["auroc"] >= 0.99
    stats = det.details_["classes"]["c1"]
    assert stats["decision"] == "poisoned" and stats["silhouette_z"] >= 4.0
    assert stats["source_class"] == 0  # reclassification sends the suspect back to class c0
    assert det.details_["poisoned_classes"] == ["c1"]


def test_absorbed_minority_poison_is_found_by_silhouette_only(planted):
    # no trace of the source class: reclassification keeps the label, the split is still clean
    data, forward = planted(40, source_weight=0.0)
    det = ActivationClustering().fit(data, forward=forward)
    r = detection_scores(data.poison_mask, det.predict(), det.score_samples())
    assert r["recall"] >= 0.95 and r["precision"] >= 0.95
    stats = det.details_["classes"]["c1"]
    assert "source_class" not in stats and stats["silhouette_z"] >= 4.0
    only_reclass = ActivationClustering(analysis="reclassification").fit(data, forward=forward)
    assert not only_reclass.predict().any()


@pytest.mark.parametrize("analysis", ["relative-size", "distance", "reclassification"])
def test_other_analyses_find_a_minority_cluster(analysis, planted):
    data, forward = planted(40)
    det = ActivationClustering(analysis=analysis).fit(data, forward=forward)
    r = detection_scores(data.poison_mask, det.predict(), det.score_samples())
    assert r["recall"] >= 0.95 and r["auroc"] >= 0.99


def test_deterministic_and_score_consistent(planted):
    data, forward = planted(40, seed=3)
    a = ActivationClustering().fit(data, forward=forward)
    b = ActivationClustering().fit(data, forward=forward)
    np.testing.assert_array_equal(a.score_samples(), b.score_samples())
    scores, flags = a.score_samples(), a.predict()
    assert np.all(np.isfinite(scores)) and scores.min() >= 0 and scores.max() <= 1
    assert scores[flags].min() > np.median(scores[~flags])


@pytest.mark.parametrize(
    "params",
    [
        {"n_components": 0},
        {"reduction": "tsne"},
        {"analysis": "smaller"},
        {"size_threshold": 0.6},
        {"silhouette_threshold": 0},
        {"z_threshold": -1},
        {"distance_threshold": float("nan")},
        {"reclass_threshold": 1.0},
        {"reclass_margin": 1.5},
        {"max_train_per_class": 5},
        {"min_fraction": 0},
        {"min_fraction": 0.6},
        {"min_class_size": 2},
        {"random_state": -1},
        {"n_components": True},
    ],
)
def test_rejects_bad_parameters(params):
    with pytest.raises(ValueError):
        ActivationClustering(**params)


def test_constructor_is_keyword_only():
    with pytest.raises(TypeError):
        ActivationClustering(10)  # type: ignore[misc]


def test_bad_inputs(colour_data, tiny_model):
    with pytest.raises(ValueError, match="needs a model"):
        ActivationClustering().fit(colour_data)
    with pytest.raises(ValueError, match="min_class_size"):  # 12 per class, below the default 20
        ActivationClustering().fit(colour_data, tiny_model)
    no_features = ForwardResult(logits=np.zeros((len(colour_data), 3), np.float32), features=None)
    with pytest.raises(ValueError, match="features"):
        ActivationClustering(min_class_size=4).fit(colour_data, forward=no_features)
    wrong_classes = ForwardResult(logits=np.zeros((len(colour_data), 5), np.float32), features=None)
    with pytest.raises(ValueError, match="classes"):
        ActivationClustering().fit(colour_data, forward=wrong_classes)


def test_runs_through_a_model_with_few_classes(colour_data, tiny_model):
    det = ActivationClustering(min_class_size=4).fit(colour_data, tiny_model)
    assert det.score_samples().shape == (len(colour_data),)
    assert set(det.details_["classes"]) == set(colour_data.class_names)
    assert all(c["silhouette_z"] is None for c in det.details_["classes"].values())
