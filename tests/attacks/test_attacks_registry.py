"""Every registered attack returns a consistent PoisonResult and leaves its input alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poisonlab.attacks import ATTACKS, PoisoningAttack, PoisonResult, get_attack
from poisonlab.data.dataset import Dataset
from poisonlab.models.simple_cnn import SimpleCifarCNN

_SURROGATE: list[SimpleCifarCNN] = []


def _surrogate() -> SimpleCifarCNN:
    """One small untrained CNN for the crafted attacks (8x8x3 like the ``clean`` fixture)."""
    if not _SURROGATE:
        torch.manual_seed(0)
        _SURROGATE.append(SimpleCifarCNN(input_shape=(8, 8, 3), num_classes=10).eval())
    return _SURROGATE[0]


def _params(name: str, clean: Dataset, trigger) -> dict:
    crafted = dict(model=_surrogate(), target="bird", count=5, seed=1)
    return {
        "hidden_trigger": dict(crafted, source="airplane", trigger=trigger, steps=3),
        "feature_collision": dict(crafted, victims=clean.x[0], steps=3),
        "clean_label_backdoor": dict(crafted, trigger=trigger, steps=2),
        "gradient_matching": dict(crafted, victims=clean.x[0], steps=2),
        "random_noise": dict(crafted, eps=8 / 255),
        "mislabel": dict(images=clean.x[:5].copy(), target="bird", source_tag="boomerang"),
        "label_flip": dict(source="airplane", target="bird", count=7, seed=1),
        "random_label_flip": dict(fraction=0.1, seed=1),
        "backdoor": dict(perturbation=trigger, trigger_name="corner", source="airplane", target="bird"),
        "none": {},
        "all_to_all": dict(perturbation=trigger, trigger_name="corner", count=20, seed=1),
    }[name]


CRAFTED = ("hidden_trigger", "feature_collision", "clean_label_backdoor", "gradient_matching", "random_noise")
EXPECTED_LEN = {
    "mislabel": 205,
    "label_flip": 200,
    "random_label_flip": 200,
    "backdoor": 220,
    "none": 200,
    "all_to_all": 200,
    **dict.fromkeys(CRAFTED, 200),
}
EXPECTED_POISON = {
    "mislabel": 5,
    "label_flip": 7,
    "random_label_flip": 20,
    "backdoor": 20,
    "none": 0,
    "all_to_all": 20,
    **dict.fromkeys(CRAFTED, 5),
}


def test_registry_names():
    assert set(ATTACKS) == {
        "mislabel",
        "label_flip",
        "random_label_flip",
        "backdoor",
        "none",
        "all_to_all",
        *CRAFTED,
    }
    assert all(issubclass(c, PoisoningAttack) for c in ATTACKS.values())


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_result_is_consistent(name, clean, trigger, snapshot, assert_unchanged):
    snap = snapshot(clean)
    attack = ATTACKS[name](**_params(name, clean, trigger))
    assert attack.name == name
    res = attack.poison(clean)
    assert isinstance(res, PoisonResult)
    mask = res.dataset.poison_mask
    assert mask is not None and mask.dtype == bool
    assert set(np.flatnonzero(mask).tolist()) == set(res.poison_indices)
    assert int(mask.sum()) == len(res.poison_indices) == EXPECTED_POISON[name] == res.num_poison
    assert len(res.dataset) == EXPECTED_LEN[name]
    assert len(res.poisoned_only) == res.num_poison
    assert res.poisoned_only.poison_mask.all()
    idx = res.indices_array()
    np.testing.assert_array_equal(res.poisoned_only.x, res.dataset.x[idx])
    np.testing.assert_array_equal(res.poisoned_only.y, res.dataset.y[idx])
    assert res.description.startswith(name.split("_")[0] if name != "random_label_flip" else name)
    assert "\n" not in res.description
    assert res.dataset.class_names == clean.class_names
    assert_unchanged(clean, snap)
    # clean (unflagged) positions of the original range keep their pixels and labels
    keep = np.flatnonzero(~mask[: len(clean)])
    np.testing.assert_array_equal(res.dataset.x[keep], clean.x[keep])
    np.testing.assert_array_equal(res.dataset.y[keep], clean.y[keep])


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_is_reproducible(name, clean, trigger):
    a = ATTACKS[name](**_params(name, clean, trigger)).poison(clean)
    b = ATTACKS[name](**_params(name, clean, trigger)).poison(clean)
    assert a.dataset.content_hash == b.dataset.content_hash
    assert a.poison_indices == b.poison_indices


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attacks_are_frozen(name, clean, trigger):
    attack = ATTACKS[name](**_params(name, clean, trigger))
    with pytest.raises(AttributeError):
        attack.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_constructors_are_keyword_only(name):
    with pytest.raises(TypeError):
        ATTACKS[name](1, 2)


def test_poison_marks_accumulate(clean, trigger):
    first = get_attack("mislabel", images=clean.x[:3].copy(), target="bird").poison(clean)
    second = get_attack("backdoor", perturbation=trigger, source="airplane", target="bird", count=4).poison(
        first.dataset
    )
    assert second.num_poison == 3 + 4
    assert set(range(200, 203)) <= second.poison_indices
    assert len(second.poisoned_only) == 7


def test_get_attack_unknown():
    with pytest.raises(ValueError, match="unknown attack 'nope'; expected one of"):
        get_attack("nope")


def test_poison_result_validates(clean):
    ds = clean.replace(poison_mask=np.arange(200) < 3)
    with pytest.raises(ValueError, match="poison_indices must equal"):
        PoisonResult(
            dataset=ds, poison_indices=frozenset({0, 1}), poisoned_only=ds.subset([0, 1]), description="x"
        )
    with pytest.raises(ValueError, match="must carry a poison_mask"):
        PoisonResult(
            dataset=clean,
            poison_indices=frozenset(),
            poisoned_only=clean.subset(np.array([], dtype=np.int64)),
            description="x",
        )
    with pytest.raises(ValueError, match="poisoned_only must hold the 3"):
        PoisonResult(
            dataset=ds, poison_indices=frozenset({0, 1, 2}), poisoned_only=ds.subset([0]), description="x"
        )
