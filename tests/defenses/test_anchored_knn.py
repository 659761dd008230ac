"""Trusted-anchored k-NN: distance, layer by layer, to the trusted samples of the claimed label.

Mechanics on constructed features (the log-ratio and its units, unscored classes, duplicates of
trusted images) and on the hand-wired :class:`ExactBackdoor` of tests/conftest.py, whose poisons
are other digits relabelled "1" with a trigger: in every layer of the clean network they look like
their own digit, far from the trusted "1"s, whatever the trained weights (issue 12).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from poisonlab.defenses import DEFENSES, get_defense
from poisonlab.defenses.detectors.anchored_knn import AnchoredKNN, conformal_cutoff, layer_log_ratios
from poisonlab.metrics import detection_scores


def _blobs(
    rng: np.random.Generator, centres: list[tuple[float, float]], n: int
) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([rng.normal(c, 1.0, size=(n, 2)) for c in centres])
    return x, np.repeat(np.arange(len(centres)), n)


def test_log_ratios_put_a_mislabelled_point_far_and_typical_points_near() -> None:
    rng = np.random.default_rng(0)
    trusted, y_trusted = _blobs(rng, [(0, 0), (10, 0)], 40)
    train, y = _blobs(rng, [(0, 0), (10, 0)], 30)
    train = np.vstack([train, [[10.0, 0.0]]])  # a class-1 point labelled 0
    y = np.append(y, 0)
    scores, reference, scored = layer_log_ratios(train, y, trusted, y_trusted, k=5)
    assert scored.all() and scores.shape == (61,) and reference.shape == (80,)
    # robust units: the trusted leave-one-out scores have a median absolute value of 1 / 1.4826
    np.testing.assert_allclose(np.median(np.abs(reference)) * 1.4826, 1.0, rtol=1e-9)
    assert scores.argmax() == 60 and scores[-1] > 3
    assert abs(np.median(scores[:-1])) < 1.0


def test_classes_without_enough_trusted_samples_are_not_scored_and_duplicates_stay_finite() -> None:
    rng = np.random.default_rng(1)
    trusted, y_trusted = _blobs(rng, [(0, 0)], 20)
    trusted = np.vstack([trusted, [[50.0, 50.0]] * 3])  # class 1: three trusted samples only
    y_trusted = np.append(y_trusted, [1, 1, 1])
    train = np.vstack([trusted[:2], [[50.0, 50.0]]])  # two exact copies of trusted images
    scores, _, scored = layer_log_ratios(train, np.array([0, 0, 1]), trusted, y_trusted, k=5)
    assert scored.tolist() == [True, True, False] and scores[2] == 0.0
    assert np.isfinite(scores).all()


def test_contract_and_parameters() -> None:
    assert DEFENSES["anchored_knn"] is AnchoredKNN
    assert AnchoredKNN.needs_model and AnchoredKNN.needs_trusted
    assert get_defense("anchored_knn", k=3, threshold=2.5).get_params() == {
        "k": 3,
        "threshold": 2.5,
        "max_fpr": None,
    }
    bad_params = (
        {"k": 0},
        {"threshold": 0.0},
        {"threshold": -1.0},
        {"k": 2.5},
        {"max_fpr": 0.0},
        {"max_fpr": 1},
    )
    for bad in bad_params:
        with pytest.raises(ValueError):
            AnchoredKNN(**bad)


def test_needs_a_trusted_set_and_the_model(exact_backdoor) -> None:
    with pytest.raises(ValueError, match="trusted"):
        AnchoredKNN().fit(exact_backdoor.dataset, exact_backdoor.model)
    with pytest.raises(ValueError, match="model"):
        AnchoredKNN().fit(
            exact_backdoor.dataset, forward=exact_backdoor.forward, trusted=exact_backdoor.splits.val
        )


@pytest.fixture(scope="module")
def anchored(exact_backdoor) -> AnchoredKNN:
    return AnchoredKNN().fit(exact_backdoor.dataset, exact_backdoor.model, trusted=exact_backdoor.splits.val)


def test_finds_relabelled_triggered_digits(anchored: AnchoredKNN, exact_backdoor) -> None:
    d = detection_scores(exact_backdoor.mask, anchored.predict(), anchored.score_samples())
    # the poisons are other digits: far from the trusted "1"s in every layer of the network
    assert d["auroc"] >= 0.98 and d["recall"] >= 0.9 and d["fpr"] <= 0.02
    details = anchored.details_
    assert details["unscored_classes"] == [] and details["layers"][-1] == "penultimate"
    assert details["classes"]["1"]["flagged"] >= 0.9 * exact_backdoor.mask.sum()
    centre, spread = anchored.reference_
    assert anchored.threshold_ == pytest.approx(centre + anchored.threshold * spread)
    json.dumps(details, allow_nan=False)


def test_a_higher_threshold_flags_a_subset(anchored: AnchoredKNN, exact_backdoor) -> None:
    strict = AnchoredKNN(threshold=6.0).fit(
        exact_backdoor.dataset, exact_backdoor.model, trusted=exact_backdoor.splits.val
    )
    np.testing.assert_allclose(strict.score_samples(), anchored.score_samples())
    assert not np.any(strict.predict() & ~anchored.predict())


def test_conformal_cutoff_is_the_finite_sample_quantile() -> None:
    scores = np.arange(1.0, 100.0)  # n = 99 scores 1..99, shuffled order must not matter
    rng = np.random.default_rng(0)
    # rank ceil(100 * 0.9) = 90 -> the 90th smallest
    assert conformal_cutoff(rng.permutation(scores), 0.1) == 90.0
    # too few scores for the level: the largest
    assert conformal_cutoff(scores[:10], 0.01) == 10.0
    with pytest.raises(ValueError, match="at least one"):
        conformal_cutoff(np.array([]), 0.1)


def test_conformal_cutoff_bounds_the_false_positive_rate_of_heavy_tailed_scores() -> None:
    # Student-t(2) scores: the robust-SD rule at 3 SDs flags ~4 % of them; the conformal cap holds ~1 %
    rng = np.random.default_rng(1)
    rates = []
    for _ in range(200):
        reference, fresh = rng.standard_t(2, 500), rng.standard_t(2, 500)
        rates.append(np.mean(fresh > conformal_cutoff(reference, 0.01)))
    assert np.mean(rates) <= 0.012


def test_max_fpr_only_raises_the_cut_off(anchored: AnchoredKNN, exact_backdoor) -> None:
    capped = AnchoredKNN(max_fpr=0.05).fit(
        exact_backdoor.dataset, exact_backdoor.model, trusted=exact_backdoor.splits.val
    )
    np.testing.assert_allclose(capped.score_samples(), anchored.score_samples())
    assert capped.threshold_ >= anchored.threshold_
    assert capped.threshold_ == max(anchored.threshold_, capped.conformal_cutoff_)
    assert not np.any(capped.predict() & ~anchored.predict())
    assert capped.details_["max_fpr"] == 0.05 and anchored.details_["conformal_cutoff"] is None
