"""The attack factory and the class-level declarations it relies on (constraints, capabilities)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from poisonlab.attacks import ATTACKS, CraftedAttack, build_crafted_attack, get_attack
from poisonlab.attacks.factory import (
    CRAFT_INPUTS,
    attack_parameters,
    check_crafted_inputs,
    crafted_attack_class,
    make_trigger,
)
from poisonlab.models.simple_cnn import SimpleCifarCNN
from poisonlab.triggers import BoundTrigger

CRAFTED = {"hidden_trigger", "feature_collision", "clean_label_backdoor", "gradient_matching", "random_noise"}


@pytest.fixture(scope="module")
def surrogate() -> SimpleCifarCNN:
    torch.manual_seed(0)
    return SimpleCifarCNN(input_shape=(8, 8, 3), num_classes=10).eval()


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_constructor_parameter_has_a_constraint(name):
    cls = ATTACKS[name]
    assert set(attack_parameters(cls)) == set(cls.parameter_constraints), name


def test_capabilities_describe_the_attacks():
    assert set(ATTACKS.where(crafted=True)) == CRAFTED
    assert all(issubclass(ATTACKS[n], CraftedAttack) and ATTACKS[n].clean_label for n in CRAFTED)
    assert set(ATTACKS.where(crafted=True, needs_victims=True)) == {"feature_collision", "gradient_matching"}
    assert set(ATTACKS.where(crafted=True, needs_trigger=True)) == {"hidden_trigger", "clean_label_backdoor"}
    assert ATTACKS.where(crafted=True, needs_source_class=True) == ("hidden_trigger",)
    for name in ATTACKS:  # a flag implies the field it promises
        cls, params = ATTACKS[name], set(attack_parameters(ATTACKS[name]))
        for item, flag in CRAFT_INPUTS.items():
            if getattr(cls, flag) and cls.crafted:
                assert item in params, (name, item)


def test_get_attack_names_unknown_parameters_and_missing_ones():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) 'colour' for attack 'label_flip'; valid"):
        get_attack("label_flip", source="cat", target="dog", count=1, colour=3)
    with pytest.raises(ValueError, match="bad parameters for attack 'label_flip'.*target"):
        get_attack("label_flip", source="cat", count=1)
    with pytest.raises(ValueError, match="unknown attack 'nope'; expected one of"):
        get_attack("nope")


def test_crafted_attack_class_refuses_other_attacks():
    assert crafted_attack_class("gradient_matching") is ATTACKS["gradient_matching"]
    with pytest.raises(ValueError, match="not a crafted attack 'backdoor'; expected one of"):
        crafted_attack_class("backdoor")


@pytest.mark.parametrize(
    ("name", "given", "message"),
    [
        ("gradient_matching", {}, "gradient_matching needs victims"),
        ("hidden_trigger", {}, "hidden_trigger needs source"),
        ("hidden_trigger", {"source": True, "victims": True}, "victims applies to"),
        ("feature_collision", {"victims": True, "trigger": True}, "trigger applies to"),
        (
            "clean_label_backdoor",
            {"source": True},
            "source applies to hidden_trigger only, not clean_label_backdoor",
        ),
    ],
)
def test_check_crafted_inputs(name, given, message):
    with pytest.raises(ValueError, match=message):
        check_crafted_inputs(name, given=given)


def test_check_crafted_inputs_uses_the_callers_labels():
    with pytest.raises(ValueError, match="gradient_matching needs --victim"):
        check_crafted_inputs("gradient_matching", given={}, labels={"victims": "--victim"})


def test_build_passes_each_attack_only_its_inputs(surrogate, clean):
    common = dict(model=surrogate, target="bird", count=3, eps=8 / 255, seed=2, params={"steps": 1})
    inputs = dict(source="airplane", victims=clean.x[:1], trigger=lambda x: x, trigger_name="id")
    for name in sorted(CRAFTED):
        attack = build_crafted_attack(name, **common, **inputs, ignore_unused=True)
        assert attack.name == name and attack.eps == 8 / 255 and attack.steps == 1
    ht = build_crafted_attack("hidden_trigger", model=surrogate, target="bird", count=3, source="airplane")
    assert ht.trigger_name == "patch8" and ht.trigger is not None  # the chapter's patch by default
    with pytest.raises(ValueError, match="victims applies to"):
        build_crafted_attack(
            "hidden_trigger", model=surrogate, target=2, count=3, source=0, victims=clean.x[:1]
        )
    with pytest.raises(ValueError, match=r"params may not set \['eps'\]"):
        build_crafted_attack("clean_label_backdoor", model=surrogate, target=2, count=3, params={"eps": 0.1})


def test_built_attack_matches_the_direct_constructor(surrogate, clean):
    built = build_crafted_attack(
        "feature_collision", model=surrogate, target="bird", count=4, victims=clean.x[:1], params={"steps": 2}
    ).poison(clean)
    direct = ATTACKS["feature_collision"](
        model=surrogate, target="bird", count=4, victims=clean.x[:1], steps=2
    ).poison(clean)
    assert built.dataset.content_hash == direct.dataset.content_hash


def test_make_trigger():
    patch = make_trigger(patch_size=3, patch_offset=0)
    assert patch.name == "patch3" and patch.record == {"kind": "htbd_patch", "size": 3, "offset": 0}
    out = patch.fn(np.zeros((1, 8, 8, 3), np.uint8))
    assert out.shape == (1, 8, 8, 3) and out[0, 5:, 5:].any() and not out[0, :5, :5].any()
    registry = make_trigger("pattern", {"distance": 1})
    assert isinstance(registry.fn, BoundTrigger) and registry.record["params"]["distance"] == 1
    with pytest.raises(ValueError, match="unknown trigger 'nope'"):
        make_trigger("nope")


def test_attack_fields_follow_the_base_order():
    names = [f.name for f in dataclasses.fields(ATTACKS["gradient_matching"])]
    assert names[:9] == [
        "model",
        "target",
        "count",
        "fraction",
        "eps",
        "steps",
        "batch_size",
        "device",
        "seed",
    ]
