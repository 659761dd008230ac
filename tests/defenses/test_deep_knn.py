"""Deep k-NN: the exact pruned neighbour search, the plurality vote and the choice of k.

Mechanics on constructed inputs: planted Gaussian classes with relabelled samples (the geometry
of a feature-collision poison: features of one class, label of another) and small triggered
groups; the search against scikit-learn's brute force.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from poisonlab.defenses import NotFittedError
from poisonlab.defenses.detectors.deep_knn import DeepKNN, default_k, neighbour_votes, principal_projection
from poisonlab.defenses.helpers.knn import nearest_neighbours
from poisonlab.metrics import detection_scores


def _reference(x: np.ndarray, k: int) -> list[set[int]]:
    """Brute-force k nearest other samples (scikit-learn, float64)."""
    idx = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(x).kneighbors(x, return_distance=False)
    return [set(j for j in row if j != i) for i, row in enumerate(idx)]


# ------------------------------------------------------------------ the search
@pytest.mark.parametrize(
    ("n", "d", "separation", "k", "cells"),
    [(3000, 16, 3.0, 10, None), (2500, 32, 0.5, 30, None), (1500, 8, 0.0, 5, 12), (2000, 24, 2.0, 60, 1)],
)
def test_pruned_search_is_exact(n, d, separation, k, cells):
    rng = np.random.default_rng(n)
    centres = separation * rng.normal(size=(10, d))
    # integer-valued coordinates on a coarse grid would tie; a continuous sample does not
    x = (centres[rng.integers(0, 10, n)] + rng.normal(size=(n, d))).astype(np.float32)
    ours = nearest_neighbours(x, k, n_cells=cells)
    assert ours.shape == (n, k)
    assert not (ours == np.arange(n)[:, None]).any()  # a sample is not its own neighbour
    ref = _reference(x.astype(np.float64), k)
    same = np.mean([set(row.tolist()) == r for row, r in zip(ours, ref, strict=True)])
    assert same >= 0.999  # float32 against float64 distances: a rare tie may swap


def test_search_with_duplicates_and_bad_k():
    x = np.repeat(np.arange(10, dtype=np.float32)[:, None], 3, axis=0)  # every point three times
    nn = nearest_neighbours(x, 2, n_cells=1)
    assert (x[nn][..., 0] == x[:, None, 0]).all()  # the two neighbours are the copies
    with pytest.raises(ValueError, match="k must be in"):
        nearest_neighbours(x, 30)


def test_neighbour_votes_and_ties():
    nl = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [2, 2, 1, 0], [0, 0, 0, 0]])
    y = np.array([0, 0, 0, 0])
    other, outvoted = neighbour_votes(nl, y, 3)
    np.testing.assert_allclose(other, [0.5, 0.75, 0.75, 0.0])
    # a tie with the own label keeps the sample; a plurality of another label flags it
    np.testing.assert_array_equal(outvoted, [False, True, True, False])


def test_default_k_rule():
    assert default_k(np.array([150] * 6), 0.1, 200) == 30  # normalized k = 2 at a 10 % budget
    assert default_k(np.array([5000] * 10), 0.1, 200) == 200  # capped
    assert default_k(np.array([150, 150, 40, 0]), 0.1, 200) == 20  # half the smallest class
    assert default_k(np.array([2, 300]), 0.1, 200) == 1


def test_principal_projection_keeps_distances_of_low_rank_features():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 40))  # rank 5 in 40 dimensions
    z = principal_projection(x, 8)
    assert z.shape == (400, 8)
    d_x = np.linalg.norm(x[:50, None] - x[None, :50], axis=2)
    d_z = np.linalg.norm(z[:50, None] - z[None, :50], axis=2)
    np.testing.assert_allclose(d_z, d_x, atol=1e-8)
    assert principal_projection(x, None).shape == (400, 40)


# ------------------------------------------------------------------ planted poison
def test_relabelled_features_are_flagged(planted):
    # "c0" features labelled "c1": a clean-label collision's geometry, every poison among "c0"
    data, forward = planted(60, source_weight=1.0, trigger=0.0)
    det = DeepKNN().fit(data, forward=forward)
    r = detection_scores(data.poison_mask, det.predict(), det.score_samples())
    assert r["recall"] == 1.0 and r["fpr"] == 0.0 and r["auroc"] == 1.0
    assert det.details_["k"] == 30 and det.details_["classes"]["c1"]["main_neighbour_class"] == "c0"


def test_a_small_triggered_group_is_outvoted(planted):
    data, forward = planted(10, seed=1)  # 10 triggered samples: the default k = 30 is 3x their number
    det = DeepKNN().fit(data, forward=forward)
    r = detection_scores(data.poison_mask, det.predict(), det.score_samples())
    assert r["recall"] >= 0.9 and r["fpr"] == 0.0


def test_a_group_larger_than_half_k_outvotes_the_test(planted):
    # the paper's normalized k: 60 poisons vote for their own label unless k is well above 2 x 60
    data, forward = planted(60, seed=1)
    small_k = DeepKNN(k=30).fit(data, forward=forward)
    assert small_k.predict()[data.poison_mask].mean() <= 0.1
    large_k = DeepKNN(k=150).fit(data, forward=forward)
    assert large_k.predict()[data.poison_mask].mean() >= 0.9
    assert not large_k.predict()[~data.poison_mask].any()


def test_clean_planted_classes_are_not_flagged(planted):
    data, forward = planted(0, classes=10)
    det = DeepKNN().fit(data, forward=forward)
    assert not det.predict().any()
    assert det.score_samples().max() < 0.5


# ------------------------------------------------------------------ contract
@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"k": 0}, "k"),
        ({"k": 2.5}, "k"),
        ({"expected_fraction": 0}, "expected_fraction"),
        ({"expected_fraction": 1}, "expected_fraction"),
        ({"max_k": 0}, "max_k"),
        ({"n_components": 0}, "n_components"),
        ({"random_state": -1}, "random_state"),
    ],
)
def test_parameter_validation(params, match):
    with pytest.raises(ValueError, match=match):
        DeepKNN(**params)


def test_contract_details_and_determinism(planted):
    data, forward = planted(60, source_weight=1.0, trigger=0.0)
    det = DeepKNN(k=12)
    with pytest.raises(NotFittedError):
        det.score_samples()
    det.fit(data, forward=forward)
    scores = det.score_samples()
    assert scores.dtype == np.float64 and np.all((scores >= 0) & (scores <= 1))
    json.loads(json.dumps(det.details_))
    assert det.details_["k_rule"] == "given" and det.details_["search_dimensions"] == 24
    again = DeepKNN(k=12, random_state=5).fit(data, forward=forward)  # the cells' seed changes nothing
    np.testing.assert_array_equal(again.score_samples(), scores)
    with pytest.raises(ValueError, match="needs a model"):
        DeepKNN().fit(data)
