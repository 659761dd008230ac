"""The placebo attack: the crafted attacks' images and ball, a random perturbation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poisonlab.attacks import ATTACKS, RandomNoise, build_crafted_attack
from poisonlab.models.simple_cnn import SimpleCifarCNN


@pytest.fixture(scope="module")
def surrogate() -> SimpleCifarCNN:
    torch.manual_seed(0)
    return SimpleCifarCNN(input_shape=(8, 8, 3), num_classes=10).eval()


def _attack(surrogate, **kw) -> RandomNoise:
    return RandomNoise(**{"model": surrogate, "target": "bird", "count": 6, "eps": 8 / 255, "seed": 3, **kw})


def test_sign_noise_moves_every_value_by_the_radius_inside_the_range(surrogate, clean):
    result = _attack(surrogate).poison(clean)
    idx = np.flatnonzero(result.dataset.poison_mask)
    assert idx.size == 6 and set(result.dataset.y[idx]) == {clean.class_names.index("bird")}
    diff = result.dataset.x[idx].astype(int) - clean.x[idx].astype(int)
    unclipped = (clean.x[idx] >= 8) & (clean.x[idx] <= 247)  # elsewhere the clip to [0, 255] may bite
    assert set(np.abs(diff[unclipped]).ravel()) == {8}
    assert np.all(np.abs(diff) <= 8)
    assert 0.3 < np.mean(diff[unclipped] > 0) < 0.7  # both signs, in about equal shares
    untouched = np.setdiff1d(np.arange(len(clean)), idx)
    np.testing.assert_array_equal(result.dataset.x[untouched], clean.x[untouched])
    np.testing.assert_array_equal(result.dataset.y, clean.y)  # clean label
    assert result.report.max_linf == 8 and result.report.steps == 1


def test_uniform_noise_fills_the_ball(surrogate, clean):
    result = _attack(surrogate, distribution="uniform", eps=4 / 255).poison(clean)
    idx = np.flatnonzero(result.dataset.poison_mask)
    diff = result.dataset.x[idx].astype(int) - clean.x[idx].astype(int)
    inside = (clean.x[idx] >= 4) & (clean.x[idx] <= 251)
    assert set(np.unique(diff[inside])) == set(range(-4, 5))
    assert result.report.extras["mean_abs_change"] == pytest.approx(np.abs(diff).mean())


def test_same_seed_same_poison_other_seed_other_noise(surrogate, clean):
    a, b = (_attack(surrogate).poison(clean).dataset.x for _ in range(2))
    np.testing.assert_array_equal(a, b)
    c = _attack(surrogate, seed=4).poison(clean).dataset.x
    assert not np.array_equal(a, c)


def test_the_model_is_not_read_and_not_changed(surrogate, clean):
    state = {k: v.clone() for k, v in surrogate.state_dict().items()}
    torch.manual_seed(1)
    other = SimpleCifarCNN(input_shape=(8, 8, 3), num_classes=10).eval()
    a = _attack(surrogate).poison(clean).dataset.x
    np.testing.assert_array_equal(a, _attack(other).poison(clean).dataset.x)
    assert all(torch.equal(v, state[k]) for k, v in surrogate.state_dict().items())


def test_bad_parameters_are_refused_with_what_was_given(surrogate):
    with pytest.raises(ValueError, match="eps must be a number in"):
        _attack(surrogate, eps=None)
    with pytest.raises(ValueError, match="distribution"):
        _attack(surrogate, distribution="gaussian")


def test_registered_as_a_crafted_clean_label_attack_the_factory_builds(surrogate, clean):
    cls = ATTACKS["random_noise"]
    assert cls is RandomNoise and cls.crafted and cls.clean_label and not cls.needs_trigger
    built = build_crafted_attack(
        "random_noise",
        model=surrogate,
        target="bird",
        count=6,
        eps=8 / 255,
        seed=3,
        victims=clean.x[:1],
        ignore_unused=True,
    )
    np.testing.assert_array_equal(built.poison(clean).dataset.x, _attack(surrogate).poison(clean).dataset.x)
