"""The provenance defense (``poisonlab.defenses.detectors.provenance``) on contributed and backdoored data.

Contributed data: the clean digits training set ("digits:train") plus held-out test images from
two contributors, 30 "7"s labelled "1" ("contrib:attacker") and 40 correctly labelled images
("contrib:honest"); the trusted set is the clean validation split and the model the one of the
``mislabeled`` fixture, which never saw the contributed images.
"""

from __future__ import annotations

import numpy as np
import pytest

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.detectors.provenance import ProvenanceDefense
from poisonlab.defenses.helpers.sources import provenance_groups
from poisonlab.metrics import detection_scores


def fit(data: Dataset, case, **params) -> ProvenanceDefense:
    return ProvenanceDefense(device="cpu", **params).fit(data, case.model, trusted=case.splits.val)


def test_rejects_the_attacker_keeps_the_honest(contributed, mislabeled) -> None:
    defense = fit(contributed, mislabeled)
    groups = defense.details_["groups"]
    assert groups["contrib:attacker"]["decision"] == "rejected"
    assert groups["contrib:honest"]["decision"] == "kept"
    assert groups["digits:train"]["decision"] == "kept"
    # measured impacts (trusted loss gained by removing the group): attacker 0.0245, honest
    # -0.0005, the clean base -1.5
    assert groups["contrib:attacker"]["impact"] >= 0.01
    assert groups["contrib:honest"]["impact"] <= 0.0005
    assert groups["contrib:attacker"]["size"] == 30 and groups["contrib:honest"]["size"] == 40
    m = detection_scores(contributed.poison_mask, defense.predict(), defense.score_samples())
    assert m["precision"] == 1.0 and m["recall"] == 1.0 and m["auroc"] == 1.0
    scores = defense.score_samples()
    assert len(np.unique(scores[contributed.source == "contrib:attacker"])) == 1  # one score per group


def test_catches_the_class_the_attacker_hurts(contributed, mislabeled) -> None:
    defense = fit(contributed, mislabeled, metric="max_class_loss")
    groups = defense.details_["groups"]
    # measured: "7" gains 0.21 without the attacker; removing the honest group (+0.005) or the
    # clean base (+0.014) helps one class while the mean worsens, which the guard refuses
    assert (
        groups["contrib:attacker"]["decision"] == "rejected" and groups["contrib:attacker"]["impact"] >= 0.1
    )
    for name in ("digits:train", "contrib:honest"):
        assert groups[name]["decision"] == "kept" and groups[name]["mean_loss_improvement"] < 0


def test_prefix_groups_reject_the_whole_contribution(contributed, mislabeled) -> None:
    defense = fit(contributed, mislabeled, group_by="prefix")
    assert set(defense.details_["groups"]) == {"contrib", "digits"}
    assert defense.details_["groups"]["contrib"]["decision"] == "rejected"  # measured impact 0.024
    assert np.array_equal(defense.predict(), contributed.source != "digits:train")  # honest goes too


def test_trusted_sources_are_never_evaluated(contributed, mislabeled) -> None:
    defense = fit(contributed, mislabeled, trusted_sources=["digits:"])
    assert defense.details_["groups"]["digits:train"] == {"size": 1167, "impact": None, "decision": "trusted"}
    base = contributed.source == "digits:train"
    assert not defense.predict()[base].any()
    assert defense.score_samples()[base].max() <= defense.score_samples()[~base].min()


def test_trusted_samples_stay_inside_a_rejected_group(contributed, mislabeled) -> None:
    defense = fit(contributed, mislabeled, group_by="prefix", trusted_sources=["contrib:honest"])
    assert defense.details_["groups"]["contrib"]["decision"] == "rejected"
    assert np.array_equal(defense.predict(), contributed.source == "contrib:attacker")


def test_refuses_too_many_groups(contributed, mislabeled) -> None:
    per_file = contributed.replace(
        source=np.array([f"file:{i}" for i in range(len(contributed))], dtype=object)
    )
    with pytest.raises(ValueError, match="1237 untrusted provenance groups exceed max_groups=200"):
        fit(per_file, mislabeled)


def test_tolerance(contributed, mislabeled) -> None:
    assert not fit(contributed, mislabeled, tolerance=1.0).predict().any()


def test_rejects_a_backdoor_source(backdoored) -> None:
    # the triggered "7"s labelled "1" cost the head a little on clean "1"s and "7"s
    defense = fit(backdoored.dataset, backdoored)
    group = defense.details_["groups"]["backdoor:pattern"]
    assert group["decision"] == "rejected" and group["impact"] >= 0.0015  # measured 0.0023
    assert np.array_equal(defense.predict(), backdoored.mask)


def test_one_source_cannot_be_judged(digits_splits, mislabeled) -> None:
    defense = fit(digits_splits.train, mislabeled)
    assert defense.details_["groups"]["digits:train"]["decision"] == "kept (nothing left without it)"
    assert not defense.predict().any() and np.all(defense.score_samples() == 0.0)


def test_provenance_groups() -> None:
    tags = np.array(["contrib:alice", "contrib/bob", "folder:x/y", "plain"], dtype=object)
    assert provenance_groups(tags, "prefix").tolist() == ["contrib", "contrib", "folder", "plain"]
    assert provenance_groups(tags, "source").tolist() == tags.tolist()


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"group_by": "owner"}, "group_by must be one of"),
        ({"trusted_sources": "digits:"}, "trusted_sources must be None or a non-empty list"),
        ({"metric": "accuracy"}, "metric must be one of"),
        ({"tolerance": -0.1}, "tolerance must be in"),
        ({"l2": 0}, "l2 must be in"),
        ({"max_iter": 0}, "max_iter must be an integer >= 1"),
        ({"max_groups": 0}, "max_groups must be an integer >= 1"),
        ({"device": "tpu"}, "device must be"),
    ],
)
def test_rejects_bad_parameters(params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ProvenanceDefense(**params)


def test_needs_the_model_for_the_trusted_set(mislabeled) -> None:
    with pytest.raises(ValueError, match="needs the model itself"):
        ProvenanceDefense().fit(mislabeled.dataset, forward=mislabeled.forward, trusted=mislabeled.splits.val)
