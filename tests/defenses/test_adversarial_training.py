"""Trigger-augmented training: the augmented data, and unlearning the digits pattern backdoor."""

from __future__ import annotations

import numpy as np
import pytest

from poisonlab.defenses.mitigation.adversarial_training import adversarial_training, trigger_augmented_dataset
from poisonlab.inference import predict
from poisonlab.metrics import accuracy, attack_success_rate
from poisonlab.training import train
from poisonlab.training.config import digits_recipe
from poisonlab.triggers import get_trigger

TRIGGER = get_trigger("pattern", distance=1, pixel_value=1)


def _asr_and_accuracy(model, case) -> tuple[float, float]:
    test = case.splits.test
    sevens = test.y == case.source
    asr = attack_success_rate(
        test.y[sevens], predict(model, TRIGGER(test.x[sevens]), device="cpu"), case.target
    )
    return asr, accuracy(test.y, predict(model, test.x, device="cpu"))


def test_augmented_dataset_keeps_labels_and_tags(backdoored) -> None:
    data = backdoored.dataset
    out = trigger_augmented_dataset(data, triggers={"pattern": TRIGGER}, fraction=0.1, seed=0)
    n = len(data)
    copies = out.subset(np.arange(n, len(out)))
    assert out.subset(np.arange(n)).content_hash == data.content_hash  # originals first, untouched
    assert set(copies.source) == {"augment:trigger:pattern"}
    # each copy is a triggered original with the original's label: find the originals by pixels
    stamped = TRIGGER(data.x)
    keys = {(stamped[i].tobytes(), int(data.y[i])) for i in range(n)}
    assert all((copies.x[i].tobytes(), int(copies.y[i])) in keys for i in range(len(copies)))
    # the planted poison already carries the trigger: never copied (skip_triggered)
    assert not copies.poison_mask.any()
    assert 0.08 * n <= len(copies) <= round(0.1 * n)
    unskipped = trigger_augmented_dataset(data, triggers={"pattern": TRIGGER}, skip_triggered=False)
    assert len(unskipped) == n + round(0.1 * n)
    # without the skip, copies of planted poison come along and stay marked as poison
    poison = {data.x[i].tobytes() for i in np.flatnonzero(data.poison_mask)}
    is_poison_copy = np.array([x.tobytes() in poison for x in unskipped.x[n:]]) & (unskipped.y[n:] == 1)
    assert is_poison_copy.any()
    assert np.array_equal(unskipped.poison_mask[n:], is_poison_copy)


def test_several_triggers_and_seed(backdoored) -> None:
    data = backdoored.splits.val
    out = trigger_augmented_dataset(data, triggers=["pattern", "single_pixel"], fraction=0.2, seed=3)
    tags = out.source[len(data) :]
    assert {"augment:trigger:pattern", "augment:trigger:single_pixel"} == set(tags)
    assert np.sum(tags == "augment:trigger:pattern") == round(0.2 * len(data))
    again = trigger_augmented_dataset(data, triggers=["pattern", "single_pixel"], fraction=0.2, seed=3)
    other = trigger_augmented_dataset(data, triggers=["pattern", "single_pixel"], fraction=0.2, seed=4)
    assert again.content_hash == out.content_hash != other.content_hash


def test_fine_tuning_with_trigger_augmentation_unlearns_the_backdoor(backdoored) -> None:
    """Neural-Cleanse-style unlearning on the 270 trusted validation images (5 epochs)."""
    config = digits_recipe().model_copy(update={"epochs": 5, "lr": 0.01, "seed": 0})
    trusted, model = backdoored.splits.val, backdoored.model
    asr_before, acc_before = _asr_and_accuracy(model, backdoored)
    plain = train(trusted, config, model=model, device="cpu", progress=False).model
    asr_plain, _ = _asr_and_accuracy(plain, backdoored)
    result = adversarial_training(
        trusted,
        config,
        triggers={"pattern": TRIGGER},
        fraction=0.5,
        model=model,
        device="cpu",
        progress=False,
    )
    asr_after, acc_after = _asr_and_accuracy(result.model, backdoored)
    # relative claims: the trained backdoor works (a precondition with a wide margin), plain
    # fine-tuning on clean data keeps most of it, the trigger-augmented fine-tune removes most
    # of it at no real cost in clean accuracy
    assert asr_before >= 0.5
    assert asr_after <= asr_plain - 0.25 and asr_after <= 0.5 * asr_before
    assert acc_after >= acc_before - 0.05
    assert result.model is not model


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fraction": 0}, "fraction"),
        ({"fraction": 1.5}, "fraction"),
        ({"seed": -1}, "seed"),
        ({"skip_triggered": "yes"}, "skip_triggered"),
        ({"triggers": []}, "empty"),
        ({"triggers": ["nope"]}, "unknown trigger"),
        ({"triggers": [3]}, "registry name or a callable"),
        ({"triggers": {"half": lambda x: x[:, :4]}}, "uint8 batch"),
        ({"fraction": 0.0001}, "rounds to 0"),
    ],
)
def test_bad_inputs(backdoored, kwargs, match) -> None:
    params = {"triggers": ["pattern"], **kwargs}
    with pytest.raises(ValueError, match=match):
        trigger_augmented_dataset(backdoored.splits.val, **params)


def test_not_a_dataset() -> None:
    with pytest.raises(ValueError, match="Dataset"):
        trigger_augmented_dataset(np.zeros((4, 8, 8, 1), np.uint8), triggers=["pattern"])
