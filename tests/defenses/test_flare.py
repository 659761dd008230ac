"""FLARE: all-layer abnormal activations, HDBSCAN, persistence of the clusters apart from the benign one.

The backdoored model is the hand-wired :class:`ExactBackdoor` of tests/conftest.py: its trigger
unit (10 on triggered images, 0 elsewhere) sits in the penultimate layer, so the poison stands
apart there by construction, not by what a trained checkpoint learnt (issue 12). Over eight
model seeds its cluster's persistence was 3.3-15.7 and that of every benign cluster at most 1.41
(the default threshold is 2). The helpers are tested on constructed features and point clouds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from poisonlab.data.dataset import Dataset
from poisonlab.defenses import DEFENSES
from poisonlab.defenses.base import ScanContext
from poisonlab.defenses.detectors.flare import FLARE
from poisonlab.defenses.helpers.density_clusters import cluster_persistence, fit_density_clusters
from poisonlab.defenses.helpers.layer_features import (
    PENULTIMATE,
    LayerFeatures,
    hidden_layers,
    layer_abnormality,
    layer_features,
)
from poisonlab.metrics import detection_scores


@pytest.fixture(scope="module")
def flare(exact_backdoor) -> FLARE:
    return FLARE(device="cpu").fit(exact_backdoor.dataset, exact_backdoor.model)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------ the detector
def test_contract(flare: FLARE, exact_backdoor) -> None:
    if "flare" in DEFENSES:  # registered by the package's __init__
        assert DEFENSES["flare"] is FLARE
    assert FLARE.needs_model and not FLARE.needs_trusted and FLARE.name == "flare"
    n = len(exact_backdoor.dataset)
    scores, flags = flare.score_samples(), flare.predict()
    assert scores.shape == (n,) and flags.dtype == bool and flags.shape == (n,)
    assert np.all((scores >= 0) & (scores < 1))
    assert flare.abnormality_.shape == (n, len(flare.details_["layers"]))
    # the flagged samples are exactly the members of the clusters judged poisoned
    assert np.array_equal(flags, np.isin(flare.cluster_labels_, flare.details_["poisoned_clusters"]))
    json.dumps(flare.details_, allow_nan=False)


def test_finds_the_wired_backdoor(flare: FLARE, exact_backdoor) -> None:
    flags = flare.predict()
    d = detection_scores(exact_backdoor.mask, flags, flare.score_samples())
    # a few triggered images may fall to HDBSCAN noise, a few clean ones may join the poison's
    # cluster at its edge; no clean class is flagged. How many depends on the clean model's
    # features, so on the CPU's kernels: recall 0.94-1.0, fpr 0-0.002, AUROC 0.985-1.0 on an AMD
    # EPYC over model seeds 0-2 (AVX-512) and 0, 3 (oneDNN capped at AVX2); the bounds leave room
    assert d["recall"] >= 0.9 and d["fpr"] <= 0.01 and d["auroc"] >= 0.95
    missed = exact_backdoor.mask & ~flags
    assert np.all(flare.cluster_labels_[missed] == -1)  # at the edge: noise, never a benign cluster
    (poisoned,) = [c for c in flare.details_["clusters"] if c["poisoned"]]
    assert poisoned["persistence"] >= flare.min_persistence
    assert next(iter(poisoned["labels"])) == "1" and poisoned["label_purity"] >= 0.9
    # the trigger unit lives in the penultimate features, and that is where the cluster stands out
    assert poisoned["most_abnormal_layer"] == PENULTIMATE
    benign = [c for c in flare.details_["clusters"] if not c["poisoned"]]
    assert all(c["persistence"] < flare.min_persistence for c in benign)


def test_clean_data_is_left_alone(exact_backdoor) -> None:
    """Without poison, the benign subpopulations split off at about their own density: no flags."""
    f = FLARE(device="cpu").fit(exact_backdoor.splits.train, exact_backdoor.model)
    assert f.flagged_.sum() == 0 and f.details_["poisoned_clusters"] == []


def test_tiny_model_no_poison(tiny_model, make_colour_dataset) -> None:
    # random images: one benign blob, nothing stands apart
    rng = np.random.default_rng(0)
    noise = Dataset(
        x=rng.integers(0, 256, (400, 8, 8, 3)).astype(np.uint8),
        y=rng.integers(0, 3, 400),
        class_names=("red", "green", "blue"),
    )
    assert FLARE(device="cpu").fit(noise, tiny_model).flagged_.sum() == 0
    # three pure colours: one class excites the untrained network unlike the other two and stands
    # apart, but a third of the data is a benign mode, not poison
    data = make_colour_dataset(per_class=100, seed=3)
    f = FLARE(device="cpu").fit(data, tiny_model)
    assert f.flagged_.sum() == 0
    for c in f.details_["clusters"]:
        assert not c["poisoned"] and (c["persistence"] < 2.0 or c["share"] > f.max_cluster_fraction)
    json.dumps(f.details_, allow_nan=False)


def test_deterministic_and_model_untouched(exact_backdoor) -> None:
    model = exact_backdoor.model
    before, mode = _state(model), model.training
    a = FLARE(device="cpu").fit(exact_backdoor.dataset, model)
    b = FLARE(device="cpu").fit(exact_backdoor.dataset, model)
    np.testing.assert_array_equal(a.scores_, b.scores_)
    np.testing.assert_array_equal(a.flagged_, b.flagged_)
    after = _state(model)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert model.training == mode and not any(m._forward_hooks for m in model.modules())


def test_subsampled_fit_assigns_the_rest(exact_backdoor) -> None:
    """HDBSCAN on 600 of 1,283 rows; the others join the cluster of their nearest fitted row."""
    f = FLARE(max_fit_samples=600, device="cpu").fit(exact_backdoor.dataset, exact_backdoor.model)
    assert f.details_["fit_samples"] == 600
    d = detection_scores(exact_backdoor.mask, f.predict(), f.score_samples())
    assert d["recall"] >= 0.85 and d["fpr"] <= 0.01


def test_subspace_search_and_mean_pooling(exact_backdoor) -> None:
    # nothing to find on clean data: every subspace is tried, the last one is reported
    f = FLARE(max_dropped_layers=2, device="cpu").fit(exact_backdoor.splits.train, exact_backdoor.model)
    assert f.details_["dropped_layers"] == 2
    assert f.details_["subspace_layers"] == len(f.details_["layers"]) - 2
    # mean pooling runs the same search (whether its averaged channels still separate the wired
    # trigger depends on the clean checkpoint: they did for model seeds 0-1, not for seed 2, so
    # only the mechanics are asserted; max pooling, the default, is tested to find it)
    g = FLARE(max_dropped_layers=2, pooling="mean", device="cpu").fit(
        exact_backdoor.dataset, exact_backdoor.model
    )
    assert g.details_["dropped_layers"] in (0, 1, 2) and g.details_["pooling"] == "mean"
    assert np.isfinite(g.score_samples()).all() and g.predict().dtype == bool


def test_uses_the_scan_cache(exact_backdoor) -> None:
    """A context with ``layer_features(who)`` (the scan's cache) is asked instead of recomputing."""
    case = exact_backdoor
    context = ScanContext(case.dataset, case.model, device="cpu")
    computed = layer_features(case.model, case.dataset.x, device="cpu")
    calls = []

    def cached(who: str) -> LayerFeatures:
        calls.append(who)
        return computed

    object.__setattr__(context, "layer_features", cached)  # what the context will hold
    f = FLARE(device="cpu").fit_context(context)
    assert calls == ["flare"] and f.flagged_.sum() > 0


@pytest.mark.parametrize(
    "params",
    [
        {"min_persistence": 1.0},
        {"min_persistence": 0},
        {"max_cluster_fraction": 0},
        {"max_cluster_fraction": 0.75},
        {"min_cluster_fraction": 0},
        {"min_cluster_fraction": 0.6},
        {"min_cluster_size": 1},
        {"min_samples": 0},
        {"n_components": 0},
        {"max_dropped_layers": -1},
        {"max_fit_samples": 50},
        {"pooling": "median"},
        {"batch_size": 0},
        {"random_state": -1},
        {"device": "tpu"},
    ],
)
def test_parameter_validation(params) -> None:
    with pytest.raises(ValueError):
        FLARE(**params)


def test_needs_the_model_itself(exact_backdoor) -> None:
    with pytest.raises(ValueError, match="model itself"):
        FLARE().fit(exact_backdoor.dataset, forward=exact_backdoor.forward)


# ------------------------------------------------------------------ layer features
def test_layer_features_record_every_hidden_layer(tiny_model, make_colour_dataset) -> None:
    data = make_colour_dataset(per_class=5)
    lf = layer_features(tiny_model, data.x, device="cpu")
    convs = [name for name, _ in hidden_layers(tiny_model) if name != "classifier"]
    assert lf.names == (*convs, PENULTIMATE)  # the head's Linear is not a hidden layer
    assert lf.widths() == [32, 32, 64, 64, 128, 128, 128, 128]
    assert lf.values.shape == (15, sum(lf.widths())) and lf.values.dtype == np.float32
    # first layer: the spatial max of the first convolution, taken before its in-place ReLU
    x = torch.from_numpy(data.x).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        conv = tiny_model.blocks[0][0](tiny_model.normalize(x))
        feats = tiny_model.features(x)
    np.testing.assert_allclose(lf.layer(0), conv.flatten(2).amax(2).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lf.layer(lf.n_layers - 1), feats.numpy(), rtol=1e-5, atol=1e-5)
    # batching does not change the result; mean pooling is the spatial mean
    small = layer_features(tiny_model, data.x, batch_size=4, device="cpu")
    np.testing.assert_allclose(small.values, lf.values, rtol=1e-5, atol=1e-5)
    mean = layer_features(tiny_model, data.x, pooling="mean", device="cpu")
    np.testing.assert_allclose(mean.layer(0), conv.flatten(2).mean(2).numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        layer_features(tiny_model, data.x, pooling="median")
    with pytest.raises(ValueError, match="uint8"):
        layer_features(tiny_model, data.x.astype(np.float32))


def test_layer_abnormality_points_at_the_planted_layer() -> None:
    """A unit far above its layer's range on 20 of 400 samples, in layer 1 only."""
    rng = np.random.default_rng(0)
    values = rng.normal(0.0, 1.0, (400, 30)).astype(np.float32)
    values[:20, 17] += 12.0  # layer 1 = columns 10..20
    lf = LayerFeatures(values=values, names=("a", "b", "c"), offsets=np.array([0, 10, 20, 30]), pooling="max")
    a = layer_abnormality(lf)
    assert a.shape == (400, 3)
    assert np.all(a[:20, 1] > 3.0) and np.median(np.abs(a[20:, 1])) < 1.0
    assert np.all(np.abs(np.median(a[:20, [0, 2]], axis=0)) < 1.0)  # other layers unaffected
    # statistics from a subsample of rows give about the same picture
    b = layer_abnormality(lf, rows=np.arange(0, 400, 2))
    assert np.all(b[:20, 1] > 3.0)


# ------------------------------------------------------------------ density clusters
def _blobs(gap: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    big = rng.normal(0.0, 1.0, (900, 3))
    small = rng.normal(0.0, 0.5, (60, 3)) + np.array([gap, 0.0, 0.0])
    return np.vstack([big, small])


def test_persistence_separates_a_distant_group_from_a_subpopulation() -> None:
    rows = np.arange(960)
    far = fit_density_clusters(_blobs(12.0), rows=rows, min_cluster_size=20, min_samples=10)
    labels = far.labels
    small = int(np.bincount(labels[900:][labels[900:] >= 0]).argmax())
    big = int(np.bincount(labels[:900][labels[:900] >= 0]).argmax())
    stats = cluster_persistence(far, big)
    assert stats[small]["persistence"] > 3.0
    assert np.mean(labels[900:] == small) > 0.9
    # two unit blobs 4 SDs apart: HDBSCAN splits them, but each is about as dense as the gap
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (600, 3)), rng.normal(0, 1, (300, 3)) + [4.0, 0.0, 0.0]])
    near = fit_density_clusters(x, rows=np.arange(900), min_cluster_size=20, min_samples=10)
    ks, counts = np.unique(near.labels[near.labels >= 0], return_counts=True)
    assert len(ks) == 2
    stats = cluster_persistence(near, int(ks[np.argmax(counts)]))
    assert all(1.0 <= s["persistence"] < 1.5 for s in stats.values())


def test_subsample_assignment() -> None:
    x = _blobs(12.0)
    rows = np.arange(0, 960, 3)
    c = fit_density_clusters(x, rows=rows, min_cluster_size=10, min_samples=5)
    assert c.labels.shape == (960,) and c.core.shape == (len(rows),)
    small = c.labels[900:]
    assert np.mean(small == np.bincount(small[small >= 0]).argmax()) > 0.8
    # too few rows to cluster: all noise
    tiny = fit_density_clusters(x, rows=np.arange(15), min_cluster_size=10, min_samples=5)
    assert tiny.clusterer is None and np.all(tiny.labels == -1)
