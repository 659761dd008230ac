"""Label-consistent backdoor (Turner et al.) on a small synthetic problem: 16x16x3, 10 classes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from poisonlab.attacks.clean_label_backdoor import CleanLabelBackdoor
from poisonlab.models import SimpleCifarCNN
from poisonlab.triggers import get_trigger

SIZE = 16
TARGET = "automobile"  # class 1; the conftest interleaves the classes
TARGET_IDX = 1
PATTERN = get_trigger("pattern")


@pytest.fixture(scope="module")
def model(calibrated_model) -> SimpleCifarCNN:
    return calibrated_model


@pytest.fixture
def data(make_dataset):
    return make_dataset(per_class=12, size=SIZE)


def _attack(model, /, **kw) -> CleanLabelBackdoor:
    params = dict(model=model, target=TARGET, trigger=PATTERN, trigger_name="pattern", count=4, steps=5)
    params.update(kw)
    return CleanLabelBackdoor(**params)


def _ce(model, images: np.ndarray, label: int) -> torch.Tensor:
    """Per-image cross-entropy of ``model`` on ``label``, measured here independently."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        logits = model(x)
    return F.cross_entropy(logits, torch.full((len(x),), label), reduction="none")


def _trigger_mask(trigger) -> np.ndarray:
    """(H, W, C) bool: pixels the trigger *replaces* (its output there does not depend on the input)."""
    lo = trigger(np.zeros((1, SIZE, SIZE, 3), np.uint8))[0]
    hi = trigger(np.full((1, SIZE, SIZE, 3), 100, np.uint8))[0]
    return lo == hi


# ------------------------------------------------------------------------------------- objective
def test_pgd_raises_the_surrogate_loss_on_the_true_label(model, data):
    res = _attack(model).poison(data)
    idx = res.indices_array()
    before = _ce(model, data.x[idx], TARGET_IDX)
    after = _ce(model, res.dataset.x[idx], TARGET_IDX)
    assert bool((after > before).all())
    rep = res.report
    assert rep.loss_initial == pytest.approx(-float(before.mean()), rel=1e-4)
    assert rep.loss_final == pytest.approx(-float(after.mean()), rel=1e-4)
    assert rep.extras["loss_adversarial"] < rep.loss_initial and rep.steps == 5


@pytest.mark.parametrize("eps", [8 / 255, 16 / 255, 0.05])
def test_perturbation_before_the_trigger_is_inside_the_ball(model, data, eps):
    res = _attack(model, eps=eps).poison(data)
    idx = res.indices_array()
    outside = ~_trigger_mask(PATTERN)
    delta = np.abs(res.dataset.x[idx].astype(int) - data.x[idx].astype(int))[:, outside]
    r = int(np.floor(eps * 255 + 1e-6))
    assert 0 < delta.max() <= r
    assert 0 < res.report.extras["max_linf_adversarial"] <= r
    assert res.report.max_linf > r  # the trigger itself may (and here does) leave the ball


def test_trigger_is_present_and_matches_test_time(model, data):
    attack = _attack(model)
    res = attack.poison(data)
    mask = _trigger_mask(PATTERN)
    assert mask.any()
    stamp = PATTERN(np.zeros((1, SIZE, SIZE, 3), np.uint8))[0]
    poisons = res.dataset.x[res.indices_array()]
    np.testing.assert_array_equal(poisons[:, mask], np.broadcast_to(stamp[mask], poisons[:, mask].shape))
    test_images = data.x[:5]
    triggered = attack.at_test_time(test_images)
    np.testing.assert_array_equal(triggered, PATTERN(test_images))
    np.testing.assert_array_equal(triggered[:, mask], poisons[:1, mask].repeat(5, 0))
    np.testing.assert_array_equal(test_images, data.x[:5])  # not modified in place


def test_list_of_triggers_applied_in_order(model, data, trigger, other_trigger):
    attack = _attack(model, trigger=[trigger, other_trigger])
    poisons = attack.poison(data).poisoned_only.x
    assert (poisons[:, -2:, -2:, :] == 255).all() and (poisons[:, 0, 0, :] == 255).all()
    np.testing.assert_array_equal(attack.at_test_time(data.x[:3]), other_trigger(trigger(data.x[:3])))


def test_default_step_size(model):
    assert _attack(model, eps=8 / 255, steps=10).alpha == pytest.approx(2.5 * (8 / 255) / 10)
    assert _attack(model, step_size=0.01).alpha == 0.01


# ------------------------------------------------------------------------------------- contract
def test_only_target_samples_change_labels_and_inputs_untouched(
    model, data, snapshot, assert_unchanged, assert_clean_label_result
):
    snap = snapshot(data)
    state = copy.deepcopy(model.state_dict())
    res = _attack(model).poison(data)
    assert_clean_label_result(res, data, model, state, TARGET_IDX, 4)
    assert_unchanged(data, snap)
    assert res.description.startswith("clean_label_backdoor[pattern]: 4 poisons of 'automobile'")


def test_fraction_is_of_the_whole_training_set(model, data):
    assert _attack(model, count=None, fraction=0.05, steps=1).poison(data).num_poison == 6


def test_reproducible_by_seed_and_seed_matters(model, data):
    # all 12 automobiles: only the random start depends on the seed
    a = _attack(model, count=12, seed=3).poison(data).dataset.x
    b = _attack(model, count=12, seed=3).poison(data).dataset.x
    c = _attack(model, count=12, seed=4).poison(data).dataset.x
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    d = _attack(model, count=12, seed=3, random_start=False).poison(data).dataset.x
    e = _attack(model, count=12, seed=4, random_start=False).poison(data).dataset.x
    assert d.tobytes() == e.tobytes()


def test_chunks_match_one_batch(model, data):
    whole = _attack(model, count=12, batch_size=250).poison(data).dataset.x.astype(int)
    chunked = _attack(model, count=12, batch_size=5).poison(data).dataset.x.astype(int)
    # the same generator stream in the same order; only float rounding may differ
    assert (whole != chunked).mean() < 0.01


# ----------------------------------------------------------------------------------- degenerate
def test_all_zero_images_are_finite(model, data):
    zeros = data.replace(x=np.zeros_like(data.x))
    res = _attack(model, random_start=False).poison(zeros)
    assert np.isfinite([res.report.loss_initial, res.report.loss_final]).all()
    assert res.report.extras["max_linf_adversarial"] <= 16


def test_huge_step_size_stays_in_the_ball(model, data):
    res = _attack(model, step_size=1e30).poison(data)
    assert res.report.extras["max_linf_adversarial"] <= 16
    assert np.isfinite(res.report.loss_final)


# ----------------------------------------------------------------------------------- validation
_BAD = [
    (dict(eps=0.0), "eps"),
    (dict(eps=2.0), "eps"),
    (dict(eps=None), "eps"),
    (dict(steps=0), "steps"),
    (dict(step_size=-1.0), "step_size"),
    (dict(step_size=float("inf")), "step_size"),
    (dict(count=4, fraction=0.1), "exactly one of count or fraction"),
    (dict(count=None), "exactly one of count or fraction"),
    (dict(fraction=1.5, count=None), "fraction"),
    (dict(model=object()), "model"),
    (dict(trigger="pattern"), "trigger"),
    (dict(trigger=[]), "trigger"),
    (dict(trigger_name=""), "trigger_name"),
    (dict(random_start="yes"), "random_start"),
    (dict(batch_size=0), "batch_size"),
    (dict(seed=-1), "seed"),
    (dict(target=None), "target"),
    (dict(device="tpu"), "device"),
]


@pytest.mark.parametrize(("kw", "match"), _BAD, ids=[f"{next(iter(k))}-{i}" for i, (k, _) in enumerate(_BAD)])
def test_bad_parameters_raise(model, kw, match):
    with pytest.raises(ValueError, match=match):
        _attack(model, **kw)


@pytest.mark.parametrize(
    ("kw", "match"),
    [(dict(target="zebra"), "target"), (dict(target=10), "target"), (dict(count=13), "only 12 available")],
)
def test_bad_at_poison_time(model, data, kw, match):
    with pytest.raises(ValueError, match=match):
        _attack(model, **kw).poison(data)


def test_trigger_changing_the_shape_is_refused(model, data):
    with pytest.raises(ValueError, match="must keep the shape"):
        _attack(model, trigger=lambda x: x[:, :-1]).poison(data)
