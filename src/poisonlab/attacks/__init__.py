"""Data-poisoning attacks on labelled image datasets.

Every dataset-level attack is a small immutable object with ``poison(clean) -> PoisonResult``;
:data:`ATTACKS` maps a registry name to its class. :class:`BackdoorAttack` is the array-level
backdoor with ART's ``poison(x, y, broadcast)`` interface and :func:`apply_trigger` builds a
triggered test set for attack-success-rate measurement.

The optimisation-based clean-label attacks (:class:`HiddenTriggerBackdoor`,
:class:`FeatureCollision`, :class:`CleanLabelBackdoor`, :class:`GradientMatching`) take a
surrogate ``model`` and return a :class:`CraftedPoisonResult` whose ``report`` records the time,
peak memory and objective of the crafting; their ``at_test_time(images)`` is what the attacker
does to a test image (the trigger, or nothing). Shared machinery: :mod:`poisonlab.attacks.crafting`.
"""

from __future__ import annotations

from poisonlab.attacks.backdoor import BackdoorAttack, BackdoorPoisoning, apply_trigger
from poisonlab.attacks.base import PoisoningAttack, PoisonResult
from poisonlab.attacks.clean_label_backdoor import CleanLabelBackdoor
from poisonlab.attacks.control import NoPoison
from poisonlab.attacks.crafting import CraftedPoisonResult, CraftReport
from poisonlab.attacks.feature_collision import FeatureCollision
from poisonlab.attacks.gradient_matching import GradientMatching
from poisonlab.attacks.hidden_trigger import HiddenTriggerBackdoor, chapter_patch_trigger
from poisonlab.attacks.label_flip import LabelFlip, RandomLabelFlip
from poisonlab.attacks.mislabel import MislabelInjection

ATTACKS: dict[str, type[PoisoningAttack]] = {
    "mislabel": MislabelInjection,
    "label_flip": LabelFlip,
    "random_label_flip": RandomLabelFlip,
    "backdoor": BackdoorPoisoning,
    "none": NoPoison,
    "hidden_trigger": HiddenTriggerBackdoor,
    "feature_collision": FeatureCollision,
    "clean_label_backdoor": CleanLabelBackdoor,
    "gradient_matching": GradientMatching,
}


def get_attack(name: str, **params: object) -> PoisoningAttack:
    """Build the attack registered as ``name`` with keyword ``params``."""
    try:
        cls = ATTACKS[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; expected one of {sorted(ATTACKS)}") from None
    return cls(**params)  # type: ignore[call-arg]


__all__ = [
    "ATTACKS",
    "BackdoorAttack",
    "BackdoorPoisoning",
    "CleanLabelBackdoor",
    "CraftReport",
    "CraftedPoisonResult",
    "FeatureCollision",
    "GradientMatching",
    "HiddenTriggerBackdoor",
    "LabelFlip",
    "MislabelInjection",
    "NoPoison",
    "PoisonResult",
    "PoisoningAttack",
    "RandomLabelFlip",
    "apply_trigger",
    "chapter_patch_trigger",
    "get_attack",
]
