"""Feature collision (Poison Frogs) on a small synthetic problem: 16x16x3 images, 10 classes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from poisonlab.attacks.crafting import CraftedPoisonResult
from poisonlab.attacks.feature_collision import FeatureCollision
from poisonlab.models import SimpleCifarCNN

SIZE = 16
TARGET = "automobile"  # class 1; the conftest interleaves the classes
TARGET_IDX = 1


@pytest.fixture(scope="module")
def model(calibrated_model) -> SimpleCifarCNN:
    return calibrated_model


@pytest.fixture
def data(make_dataset):
    return make_dataset(per_class=12, size=SIZE)


@pytest.fixture(scope="module")
def victim() -> np.ndarray:
    return np.random.default_rng(99).integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)


def _attack(model, victim, /, **kw) -> FeatureCollision:
    params = dict(model=model, target=TARGET, victims=victim, count=4, steps=25)
    params.update(kw)
    return FeatureCollision(**params)


def _float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def _penultimate(model, images: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model.features(_float(images))


def _block1(model, images: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model.blocks[:2](model.normalize(_float(images))).flatten(1)


def _poisons(res: CraftedPoisonResult, clean) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = res.indices_array()
    return idx, clean.x[idx], res.dataset.x[idx]


# ------------------------------------------------------------------------------------- objective
@pytest.mark.parametrize("watermark", [None, 0.3])
def test_feature_distance_to_victim_decreases(model, victim, data, watermark):
    res = _attack(model, victim, watermark=watermark).poison(data)
    _, before, after = _poisons(res, data)
    t = _penultimate(model, victim[None])
    d0 = (_penultimate(model, before) - t).pow(2).sum(1)
    d1 = (_penultimate(model, after) - t).pow(2).sum(1)
    assert bool((d1 < d0).all())
    assert float(d1.mean()) < 0.5 * float(d0.mean())
    rep = res.report
    assert rep.loss_final < rep.loss_initial and rep.steps == 25
    assert rep.extras["feature_dist_final"] == pytest.approx(float(d1.mean()), rel=1e-3)


@pytest.mark.parametrize("eps", [8 / 255, 0.05])
def test_eps_ball_respected(model, victim, data, eps):
    res = _attack(model, victim, eps=eps).poison(data)
    _, before, after = _poisons(res, data)
    change = np.abs(after.astype(int) - before.astype(int)).max()
    assert 0 < change <= np.floor(eps * 255)
    assert res.report.max_linf == change


def test_unbounded_watermark_moves_poisons_toward_victim_in_pixels(model, victim, data):
    res = _attack(model, victim, eps=None, watermark=0.3).poison(data)
    _, before, after = _poisons(res, data)
    gap0 = np.abs(before.astype(int) - victim.astype(int)).mean(axis=(1, 2, 3))
    gap1 = np.abs(after.astype(int) - victim.astype(int)).mean(axis=(1, 2, 3))
    assert (gap1 < gap0).all()


def test_selectable_feature_layer(model, victim, data):
    res = _attack(model, victim, feature_layer="blocks.1", watermark=None).poison(data)
    _, before, after = _poisons(res, data)
    t = _block1(model, victim[None])
    d0 = (_block1(model, before) - t).pow(2).sum(1).mean()
    d1 = (_block1(model, after) - t).pow(2).sum(1).mean()
    assert float(d1) < 0.8 * float(d0)


def test_several_victims_collide_toward_their_mean_feature(model, data):
    victims = np.random.default_rng(5).integers(0, 256, size=(3, SIZE, SIZE, 3), dtype=np.uint8)
    res = _attack(model, victims, watermark=None).poison(data)
    _, before, after = _poisons(res, data)
    t = _penultimate(model, victims).mean(0, keepdim=True)
    d0 = (_penultimate(model, before) - t).pow(2).sum(1).mean()
    d1 = (_penultimate(model, after) - t).pow(2).sum(1).mean()
    assert float(d1) < 0.5 * float(d0)
    assert res.report.extras["num_victims"] == 3


# ------------------------------------------------------------------------------------- contract
def test_only_target_samples_change_labels_and_inputs_untouched(
    model, victim, data, snapshot, assert_unchanged, assert_clean_label_result
):
    snap = snapshot(data)
    state = copy.deepcopy(model.state_dict())
    res = _attack(model, victim).poison(data)
    assert_clean_label_result(res, data, model, state, TARGET_IDX, 4)
    assert_unchanged(data, snap)
    assert res.description.startswith("feature_collision: 4 poisons of 'automobile'")


def test_fraction_is_of_the_whole_training_set(model, victim, data):
    res = _attack(model, victim, count=None, fraction=0.025, steps=2).poison(data)
    assert res.num_poison == 3  # 2.5% of 120


def test_reproducible_by_seed_and_seed_matters(model, victim, data):
    a = _attack(model, victim, seed=1, steps=5).poison(data)
    b = _attack(model, victim, seed=1, steps=5).poison(data)
    c = _attack(model, victim, seed=2, steps=5).poison(data)
    assert a.dataset.x.tobytes() == b.dataset.x.tobytes()
    assert a.poison_indices == b.poison_indices
    assert a.poison_indices != c.poison_indices


def test_chunks_are_independent(model, victim, data):
    whole = _attack(model, victim, steps=10).poison(data).dataset.x.astype(int)
    chunked = _attack(model, victim, steps=10, batch_size=3).poison(data).dataset.x.astype(int)
    # the same poisons up to float rounding of differently sized convolutions
    assert np.abs(whole - chunked).max() <= 2


def test_at_test_time_is_identity(model, victim):
    images = np.random.default_rng(0).integers(0, 256, size=(3, SIZE, SIZE, 3), dtype=np.uint8)
    out = _attack(model, victim).at_test_time(images)
    np.testing.assert_array_equal(out, images)
    assert out is not images


# ----------------------------------------------------------------------------------- degenerate
def test_victim_equal_to_a_base_is_finite(model, data):
    victim = data.x[np.flatnonzero(data.y == TARGET_IDX)[0]]
    res = _attack(model, victim, count=12, steps=5).poison(data)
    assert np.isfinite([res.report.loss_initial, res.report.loss_final]).all()


def test_all_zero_images(model, data):
    zeros = data.replace(x=np.zeros_like(data.x))
    res = _attack(model, np.zeros((SIZE, SIZE, 3), np.uint8), steps=5).poison(zeros)
    assert res.report.loss_final == pytest.approx(0.0, abs=1e-6) and res.report.max_linf == 0
    np.testing.assert_array_equal(res.dataset.x, zeros.x)


@pytest.mark.parametrize("lr", [1e6, 1e30])
def test_huge_learning_rate_stays_finite(model, victim, data, lr):
    res = _attack(model, victim, lr=lr, steps=5, eps=None).poison(data)
    rep = res.report
    assert np.isfinite([rep.loss_initial, rep.loss_final]).all()
    assert rep.loss_final <= rep.loss_initial  # rejected steps never raise the objective


# ----------------------------------------------------------------------------------- validation
_BAD = [
    (dict(eps=0.0), "eps"),
    (dict(eps=2.0), "eps"),
    (dict(steps=0), "steps"),
    (dict(lr=-1.0), "lr"),
    (dict(lr=float("nan")), "lr"),
    (dict(similarity_coeff=0.0), "similarity_coeff"),
    (dict(count=4, fraction=0.1), "exactly one of count or fraction"),
    (dict(count=None), "exactly one of count or fraction"),
    (dict(count=0), "count"),
    (dict(victims=np.zeros((SIZE, SIZE, 3), np.float32)), "victims"),
    (dict(victims=np.zeros((SIZE, SIZE), np.uint8)), "victims"),
    (dict(victims=np.zeros((0, SIZE, SIZE, 3), np.uint8)), "victims"),
    (dict(victims=np.zeros((8, 8, 3), np.uint8)), "victims"),
    (dict(model="resnet"), "model"),
    (dict(watermark=1.0), "watermark"),
    (dict(watermark=-0.1), "watermark"),
    (dict(feature_layer="no_such_layer"), "feature_layer"),
    (dict(batch_size=0), "batch_size"),
    (dict(seed=-1), "seed"),
    (dict(target=-1), "target"),
    (dict(device="tpu"), "device"),
]


@pytest.mark.parametrize(("kw", "match"), _BAD, ids=[f"{next(iter(k))}-{i}" for i, (k, _) in enumerate(_BAD)])
def test_bad_parameters_raise(model, victim, kw, match):
    with pytest.raises(ValueError, match=match):
        _attack(model, victim, **kw)


@pytest.mark.parametrize(
    ("kw", "match"),
    [(dict(target="zebra"), "target"), (dict(target=10), "target"), (dict(count=13), "only 12 available")],
)
def test_bad_at_poison_time(model, victim, data, kw, match):
    with pytest.raises(ValueError, match=match):
        _attack(model, victim, **kw).poison(data)


def test_images_of_another_shape_are_refused(model, victim, make_dataset):
    with pytest.raises(ValueError, match="expects images of shape"):
        _attack(model, victim).poison(make_dataset(per_class=12, size=8))
