"""Every attack's errors name parameters its constructor has (issue 17: a hidden-trigger error
named arguments that do not exist)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from poisonlab.attacks import ATTACKS, HiddenTriggerBackdoor, chapter_patch_trigger
from poisonlab.attacks.factory import attack_parameters
from poisonlab.data.dataset import Dataset
from poisonlab.models.simple_cnn import SimpleCifarCNN


class _Bad:
    """A value no constraint admits (not a number, string, array, callable, model or dataset)."""

    def __repr__(self) -> str:
        return "<bad>"


def _surrogate(size: int = 8) -> SimpleCifarCNN:
    torch.manual_seed(0)
    return SimpleCifarCNN(input_shape=(size, size, 3), num_classes=10).eval()


def _valid(name: str, clean: Dataset, trigger) -> dict:
    crafted = dict(model=_surrogate(), target="bird", count=5, seed=1)
    return {
        "hidden_trigger": dict(crafted, source="airplane", trigger=trigger, steps=2),
        "feature_collision": dict(crafted, victims=clean.x[0], steps=2),
        "clean_label_backdoor": dict(crafted, trigger=trigger, steps=2),
        "gradient_matching": dict(crafted, victims=clean.x[0], steps=2),
        "random_noise": dict(crafted, eps=8 / 255),
        "mislabel": dict(images=clean.x[:5].copy(), target="bird"),
        "label_flip": dict(source="airplane", target="bird", count=7),
        "random_label_flip": dict(fraction=0.1),
        "backdoor": dict(perturbation=trigger, source="airplane", target="bird"),
        "none": {},
        "all_to_all": dict(perturbation=trigger, count=20),
    }[name]


def _named(message: str) -> list[str]:
    """The parameters a message names: its leading ``name must``/``name:``/``name=`` and every
    ``name=`` outside a call's parentheses (``f(patch_size=2)`` names ``f``'s arguments)."""
    outside_calls = re.sub(r"\w+\([^()]*\)", "", message)
    lead = re.match(r"(\w+)(?: must\b|:|=)", message)
    return ([lead.group(1)] if lead else []) + re.findall(r"\b(\w+)=", outside_calls)


def _assert_names_real_parameters(message: str, name: str) -> None:
    named = _named(message)
    assert named, f"{name}: the message names no parameter: {message!r}"
    real = set(attack_parameters(name))
    assert set(named) <= real, f"{name}: {message!r} names {sorted(set(named) - real)}, not in {sorted(real)}"


def test_every_constrained_parameter_is_every_constructor_parameter():
    for name, cls in ATTACKS.items():
        assert set(cls.parameter_constraints) == set(attack_parameters(name)), name


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_one_bad_value_names_that_constructor_parameter(name, clean, trigger):
    params = _valid(name, clean, trigger)
    ATTACKS[name](**params)  # the baseline is valid
    for field in attack_parameters(name):
        with pytest.raises(ValueError) as err:
            ATTACKS[name](**{**params, field: _Bad()})
        message = str(err.value)
        assert message.startswith(f"{field} must be "), message
        assert message.endswith("got _Bad"), message
        _assert_names_real_parameters(message, name)


_CROSS = {  # one rule tying parameters together, per attack that has one
    "backdoor": {"count": 3, "fraction": 0.5},
    "label_flip": {"source": "bird"},
    "all_to_all": {"fraction": 0.1},
    "hidden_trigger": {"source": "bird"},
    "feature_collision": {"fraction": 0.1},
    "clean_label_backdoor": {"count": None},
    "gradient_matching": {"fraction": 0.1},
    "random_label_flip": {"classes": ["bird"]},
}


@pytest.mark.parametrize("name", sorted(_CROSS))
def test_cross_parameter_errors_name_constructor_parameters(name, clean, trigger):
    with pytest.raises(ValueError) as err:
        ATTACKS[name](**{**_valid(name, clean, trigger), **_CROSS[name]})
    message = str(err.value)
    mentioned = set(re.findall(r"\b[a-z_]+\b", message)) & {
        "count",
        "fraction",
        "source",
        "target",
        "classes",
    }
    assert mentioned and mentioned <= set(attack_parameters(name)), message


_AGAINST_DATA = {  # a valid attack that meets data it cannot use
    "backdoor": {"target": "unicorn"},
    "label_flip": {"source": "unicorn"},
    "all_to_all": {"source": "unicorn"},
    "random_label_flip": {"classes": ["bird", "unicorn"]},
    "mislabel": {"target": 12},
    "hidden_trigger": {"source": "unicorn"},
    "feature_collision": {"count": 500},
    "clean_label_backdoor": {"target": "unicorn"},
    "gradient_matching": {"target": 11},
}


@pytest.mark.parametrize("name", sorted(_AGAINST_DATA))
def test_errors_against_the_data_name_constructor_parameters(name, clean, trigger):
    attack = ATTACKS[name](**{**_valid(name, clean, trigger), **_AGAINST_DATA[name]})
    with pytest.raises(ValueError) as err:
        attack.poison(clean)
    message = str(err.value)
    if name == "feature_collision":  # a budget the target class cannot fill
        assert message.startswith("count=500: cannot poison 500 samples")
    _assert_names_real_parameters(message, name)


def test_the_default_hidden_trigger_that_does_not_fit_names_the_trigger_parameter():
    with pytest.raises(ValueError) as err:
        HiddenTriggerBackdoor(model=_surrogate(8), source=0, target=2, count=2)
    message = str(err.value)
    assert message.startswith("trigger: the default trigger")
    assert "8x8 images" in message and "trigger=chapter_patch_trigger(patch_size=2, offset=1)" in message
    _assert_names_real_parameters(message, "hidden_trigger")
    assert "lower patch_size" not in message
    # the advice works
    fits = chapter_patch_trigger(patch_size=2, offset=1)
    HiddenTriggerBackdoor(model=_surrogate(8), source=0, target=2, count=2, trigger=fits)
    HiddenTriggerBackdoor(model=_surrogate(16), source=0, target=2, count=2)  # 16 px: the default fits


def test_the_patch_trigger_names_its_own_arguments_as_a_call():
    with pytest.raises(ValueError, match=r"^chapter_patch_trigger\(patch_size=8, offset=5\): the patch"):
        chapter_patch_trigger()(np.zeros((1, 8, 8, 3), dtype=np.uint8))


def test_non_finite_crafting_names_each_attack_s_own_step_parameter(clean, trigger):
    from poisonlab.attacks.crafting import quantize_in_ball

    nan = torch.full((1, 3, 8, 8), float("nan"))
    for name, step in (
        ("hidden_trigger", "lr"),
        ("feature_collision", "lr"),
        ("gradient_matching", "lr"),
        ("clean_label_backdoor", "step_size"),
    ):
        attack = ATTACKS[name](**_valid(name, clean, trigger))
        assert attack.step_parameter == step and step in attack_parameters(name)
        with pytest.raises(ValueError, match=f"lower {step} or check the model"):
            attack._quantize(nan, clean.x[:1])
    with pytest.raises(ValueError, match="became non-finite during crafting; check the model$"):
        quantize_in_ball(nan, clean.x[:1], None, step_param=None)


def test_a_gpu_device_without_a_gpu_names_the_device_parameter(clean, trigger, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError) as err:
        ATTACKS["clean_label_backdoor"](
            **{**_valid("clean_label_backdoor", clean, trigger), "device": "cuda"}
        )
    message = str(err.value)
    assert message.startswith("device must be 'auto' or 'cpu' here") and "--device" not in message
