"""Hidden-trigger backdoor: poisons move toward triggered sources in feature space, inside eps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poisonlab.attacks import HiddenTriggerBackdoor, chapter_patch_trigger
from poisonlab.attacks.crafting import CraftedPoisonResult
from poisonlab.data.dataset import Dataset
from poisonlab.models.simple_cnn import SimpleCifarCNN

CLASSES = ("airplane", "automobile", "bird", "cat")


@pytest.fixture(scope="module")
def data() -> Dataset:
    rng = np.random.default_rng(3)
    x = rng.integers(20, 230, size=(80, 16, 16, 3), dtype=np.uint8)
    y = np.tile(np.arange(4), 20)
    return Dataset(x=x, y=y, class_names=CLASSES, source="synthetic", name="synth16")


@pytest.fixture(scope="module")
def model() -> SimpleCifarCNN:
    torch.manual_seed(0)
    return SimpleCifarCNN(input_shape=(16, 16, 3), num_classes=4).eval()


def _attack(surrogate, **overrides) -> HiddenTriggerBackdoor:
    params = dict(
        model=surrogate,
        source="airplane",
        target="bird",
        count=8,
        steps=25,
        lr=0.02,
        trigger=chapter_patch_trigger(4, 1),
        seed=1,
    )
    params.update(overrides)
    return HiddenTriggerBackdoor(**params)


def _nearest_sq_distance(model, poisons: np.ndarray, sources: np.ndarray) -> float:
    with torch.no_grad():
        f = model.features(torch.from_numpy(poisons).permute(0, 3, 1, 2).float() / 255)
        s = model.features(torch.from_numpy(sources).permute(0, 3, 1, 2).float() / 255)
    return float(torch.cdist(f, s).pow(2).min(dim=1).values.mean())


def test_poisons_move_toward_triggered_sources_in_feature_space(data, model):
    attack = _attack(model)
    res = attack.poison(data)
    idx = res.indices_array()
    triggered = attack.at_test_time(data.x[data.y == 0])
    before = _nearest_sq_distance(model, data.x[idx], triggered)
    after = _nearest_sq_distance(model, res.dataset.x[idx], triggered)
    assert after < 0.7 * before
    assert isinstance(res, CraftedPoisonResult)
    assert res.report.loss_final < res.report.loss_initial
    assert res.report.loss_final == pytest.approx(after, rel=1e-3)


def test_poisons_stay_in_ball_keep_labels_and_touch_only_target_images(
    data, model, snapshot, assert_unchanged
):
    snap = snapshot(data)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    res = _attack(model, eps=8 / 255).poison(data)
    idx = res.indices_array()
    assert idx.size == 8 and np.all(data.y[idx] == 2)
    np.testing.assert_array_equal(res.dataset.y, data.y)
    diff = np.abs(res.dataset.x.astype(int) - data.x.astype(int))
    assert diff.max() <= 8 and res.report.max_linf == diff.max() > 0
    changed = np.flatnonzero(diff.reshape(len(data), -1).any(axis=1))
    assert set(changed) <= set(idx)
    np.testing.assert_array_equal(res.dataset.poison_mask, np.isin(np.arange(len(data)), idx))
    np.testing.assert_array_equal(res.dataset.source, data.source)  # arrives through the same channel
    assert_unchanged(data, snap)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_trigger_is_secret_at_training_time_and_applied_at_test_time(data, model):
    attack = _attack(model)
    res = attack.poison(data)
    poisons = res.poisoned_only.x
    triggered = attack.at_test_time(poisons)
    assert not np.array_equal(poisons, triggered)  # the poisons do not carry the patch
    assert attack.at_test_time(data.x[:2]).shape == (2, 16, 16, 3)


def test_reproducible_and_seed_dependent(data, model):
    a = _attack(model).poison(data)
    b = _attack(model).poison(data)
    c = _attack(model, seed=2).poison(data)
    assert a.dataset.content_hash == b.dataset.content_hash
    assert a.dataset.content_hash != c.dataset.content_hash


def test_intermediate_feature_layer_and_fraction_budget(data, model):
    res = _attack(model, feature_layer="blocks.1", count=None, fraction=0.05).poison(data)
    assert res.num_poison == 4  # 5 % of 80
    assert res.report.extras["feature_layer"] == "blocks.1"
    assert "layer blocks.1" in res.description


def test_source_pool_is_capped(data, model):
    full = _attack(model).poison(data)
    capped = _attack(model, max_sources=3).poison(data)
    assert capped.num_poison == full.num_poison == 8
    assert capped.dataset.content_hash != full.dataset.content_hash  # fewer sources to pair with


def test_huge_learning_rate_stays_finite_and_in_range(data, model):
    res = _attack(model, lr=1e6, steps=3).poison(data)
    diff = np.abs(res.dataset.x.astype(int) - data.x.astype(int))
    assert diff.max() <= 16


def test_default_chapter_patch_places_8px_checker_13px_from_corner():
    x = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    out = chapter_patch_trigger()(x)
    changed = np.argwhere(out[0].any(axis=2))
    assert changed[:, 0].min() >= 19 and changed[:, 0].max() <= 26
    assert changed[:, 1].min() >= 19 and changed[:, 1].max() <= 26
    with pytest.raises(ValueError, match="does not fit"):
        chapter_patch_trigger()(np.zeros((1, 8, 8, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"eps": 0}, "eps"),
        ({"eps": 2.0}, "eps"),
        ({"steps": 0}, "steps"),
        ({"lr": -1.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"count": None}, "exactly one of count or fraction"),
        ({"fraction": 0.1}, "exactly one of count or fraction"),
        ({"source": "bird"}, "differ"),
        ({"trigger": "patch"}, "trigger"),
        ({"model": "resnet"}, "model"),
        ({"feature_layer": 3}, "feature_layer"),
        ({"seed": -1}, "seed"),
        ({"max_sources": 0}, "max_sources"),
    ],
)
def test_bad_parameters_raise(model, overrides, match):
    with pytest.raises(ValueError, match=match):
        _attack(model, **overrides)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"target": "ship"}, "unknown class"),
        ({"count": 500}, "only 20 available"),
        ({"feature_layer": "blocks.9"}, "feature_layer"),
    ],
)
def test_bad_parameters_against_the_data_raise(data, model, overrides, match):
    with pytest.raises(ValueError, match=match):
        _attack(model, **overrides).poison(data)


def test_model_input_shape_must_match(data):
    torch.manual_seed(0)
    other = SimpleCifarCNN(input_shape=(32, 32, 3), num_classes=4)
    with pytest.raises(ValueError, match="expects images of shape"):
        _attack(other).poison(data)
