"""The trigger-sensitivity test: a backdoored digits model spikes towards "1", a clean one does not.

The backdoored model is the hand-wired :class:`ExactBackdoor` (tests/conftest.py): whether a
*trained* backdoor also answers the gate's shifted default pattern depends on the checkpoint.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.gates.sensitivity import default_triggers, trigger_sensitivity
from poisonlab.triggers import TRIGGERS, get_trigger


@pytest.fixture(scope="module")
def clean_model(clean_digits_model):
    return clean_digits_model


@pytest.fixture(scope="module")
def backdoor_report(exact_backdoor):
    return trigger_sensitivity(exact_backdoor.model, exact_backdoor.splits.test, device="cpu")


def _pairs(report):
    return {(s.trigger, s.source, s.target) for s in report.suspected}


def test_backdoored_model_spikes_towards_target(backdoor_report) -> None:
    r = backdoor_report
    assert not r.passed
    assert set(r.triggers) == set(TRIGGERS) and not r.skipped
    assert ("pattern", 7, 1) in _pairs(r)
    spike = next(s for s in r.suspected if (s.trigger, s.source, s.target) == ("pattern", 7, 1))
    # the wired backdoor sends every triggered "7" to "1"; the clean model rarely says "1" for a "7"
    assert spike.rate == 1.0 and spike.base_rate <= 0.05
    assert spike.source_name == "7" and spike.target_name == "1"
    # every pair the pattern flags points at the real target (the clean part of the model may
    # have its own generic reaction to another trigger: see the clean-model test)
    assert {s.target for s in r.suspected if s.trigger == "pattern"} == {1}
    assert r.clean_accuracy > 0.9


def test_clean_model_reacts_far_less_than_a_backdoored_one(clean_model, backdoor_report, backdoored) -> None:
    """A clean checkpoint's generic reactions to the triggers (an "8" read into a square, say)
    vary from checkpoint to checkpoint, and one measured 0.53 for one pair, above the 0.5 rule
    (model seed 2); what holds for every clean model is the distance to a real backdoor's spike."""
    loose = trigger_sensitivity(clean_model, backdoored.splits.test, spike_threshold=0.01, device="cpu")
    worst_clean = max((s.excess for s in loose.suspected), default=0.0)
    spike = max(s.excess for s in backdoor_report.suspected)
    assert spike >= worst_clean + 0.25


def test_reference_model_discounts_generic_reactions(exact_backdoor, clean_model) -> None:
    r = trigger_sensitivity(
        exact_backdoor.model,
        exact_backdoor.splits.test,
        triggers=["pattern"],
        reference=clean_model,
        device="cpu",
    )
    assert r.used_reference and ("pattern", 7, 1) in _pairs(r)
    # a model compared with itself has no excess at all
    same = trigger_sensitivity(clean_model, exact_backdoor.splits.test, reference=clean_model, device="cpu")
    assert same.passed


def test_flip_matrix_and_report(backdoor_report, exact_backdoor) -> None:
    r = backdoor_report
    n = len(exact_backdoor.splits.test)
    for name in r.triggers:
        matrix = np.array(r.flip_matrix[name])
        assert matrix.shape == (10, 10)
        assert matrix.sum() == round(r.flip_rate[name] * n)
    test7 = int(np.sum(exact_backdoor.splits.test.y == 7))
    assert r.flip_matrix["pattern"][7][1] == test7
    data = json.loads(json.dumps(r.to_dict()))
    assert data["passed"] is False and data["suspected"][0]["target"] == 1


def test_default_triggers_fit_small_and_cifar_images() -> None:
    small, cifar = default_triggers((8, 8, 1)), default_triggers((32, 32, 3))
    assert small["cyan_square_add"].params["size"] == 2 and cifar["cyan_square_add"].params["size"] == 5
    rng = np.random.default_rng(0)
    for shape, triggers in (((3, 8, 8, 1), small), ((3, 32, 32, 3), cifar)):
        x = rng.integers(0, 256, size=shape, dtype=np.uint8)
        for fn in triggers.values():
            assert fn(x).shape == shape


def test_unusable_trigger_is_skipped(backdoored) -> None:
    too_big = get_trigger("cyan_square_replace", size=20)  # does not fit 8x8
    r = trigger_sensitivity(
        backdoored.model,
        backdoored.splits.test,
        triggers={"big": too_big, "pattern": "pattern"},
        device="cpu",
    )
    assert r.triggers == ("pattern",) and "big" in r.skipped
    with pytest.raises(ValueError, match="none of the triggers"):
        trigger_sensitivity(backdoored.model, backdoored.splits.test, triggers=[too_big], device="cpu")


def test_bad_inputs(backdoored, make_colour_dataset, tiny_model) -> None:
    model, test = backdoored.model, backdoored.splits.test
    colour = make_colour_dataset()  # 8x8x3 images: not what the digits model takes
    for kwargs in ({"spike_threshold": 0}, {"spike_threshold": 1.5}, {"min_class_samples": 0}):
        with pytest.raises(ValueError):
            trigger_sensitivity(model, test, device="cpu", **kwargs)
    with pytest.raises(ValueError, match="classes"):
        trigger_sensitivity(tiny_model, test, device="cpu")
    with pytest.raises(ValueError, match="shape"):
        trigger_sensitivity(model, Dataset(colour.x, colour.y, test.class_names), device="cpu")
    with pytest.raises(ValueError, match="empty"):
        trigger_sensitivity(model, test, triggers=[], device="cpu")
    with pytest.raises(ValueError, match="unknown trigger"):
        trigger_sensitivity(model, test, triggers=["nope"], device="cpu")
    with pytest.raises(ValueError, match="Dataset"):
        trigger_sensitivity(model, test.x, device="cpu")
    with pytest.raises(ValueError, match="PoisonlabModel"):
        trigger_sensitivity(model, test, reference="model", device="cpu")
    with pytest.raises(ValueError, match="uint8 batch"):
        trigger_sensitivity(model, test, triggers={"float": lambda x: x / 255.0}, device="cpu")
