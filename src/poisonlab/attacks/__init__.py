"""Data-poisoning attacks on labelled image datasets.

Every dataset-level attack is a small immutable object with ``poison(clean) -> PoisonResult``;
:data:`ATTACKS` maps a registry name to its class and :func:`get_attack` builds one by name.
ART users can stay with arrays: ``attack.poison(x, y)`` (or ``attack.poison_arrays(x, y,
class_names=...)``) returns ``(x_poisoned, y_poisoned, poison_mask)``, labels as indices or
one-hot as given, e.g.::

    x_p, y_p, mask = LabelFlip(source=3, target=8, count=50).poison(x_train, y_train)
Capability flags on each class (``needs_model``, ``needs_source_class``, ``needs_victims``,
``needs_trigger``, ``clean_label``, ``crafted``, ...) say what an attack takes, e.g.
``ATTACKS.where(crafted=True)``. :class:`BackdoorAttack` is the array-level backdoor with ART's
``poison(x, y, broadcast)`` interface and :func:`apply_trigger` builds a triggered test set for
attack-success-rate measurement.

The optimisation-based clean-label attacks (:class:`HiddenTriggerBackdoor`,
:class:`FeatureCollision`, :class:`CleanLabelBackdoor`, :class:`GradientMatching`, and their placebo
:class:`RandomNoise`) share the
base :class:`~poisonlab.attacks.crafted.CraftedAttack`: they take a surrogate ``model`` and return
a :class:`CraftedPoisonResult` whose ``report`` records the time, peak memory and objective of the
crafting; their ``at_test_time(images)`` is what the attacker does to a test image (the trigger,
or nothing). :func:`~poisonlab.attacks.factory.build_crafted_attack` builds one from the
attacker's inputs. Shared machinery: :mod:`poisonlab.attacks.crafting`.
"""

from __future__ import annotations

# Importing the attack modules registers their classes in ATTACKS.
from poisonlab.attacks.all_to_all import AllToAllBackdoor
from poisonlab.attacks.backdoor import BackdoorAttack, BackdoorPoisoning, apply_trigger
from poisonlab.attacks.base import ATTACKS, PoisoningAttack, PoisonResult
from poisonlab.attacks.clean_label_backdoor import CleanLabelBackdoor
from poisonlab.attacks.control import NoPoison
from poisonlab.attacks.crafted import CraftedAttack
from poisonlab.attacks.crafting import CraftedPoisonResult, CraftReport
from poisonlab.attacks.factory import build_crafted_attack, get_attack
from poisonlab.attacks.feature_collision import FeatureCollision
from poisonlab.attacks.gradient_matching import GradientMatching
from poisonlab.attacks.hidden_trigger import HiddenTriggerBackdoor, chapter_patch_trigger
from poisonlab.attacks.label_flip import LabelFlip, RandomLabelFlip
from poisonlab.attacks.mislabel import MislabelInjection
from poisonlab.attacks.random_noise import RandomNoise

__all__ = [
    "ATTACKS",
    "AllToAllBackdoor",
    "BackdoorAttack",
    "BackdoorPoisoning",
    "CleanLabelBackdoor",
    "CraftReport",
    "CraftedAttack",
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
    "RandomNoise",
    "apply_trigger",
    "build_crafted_attack",
    "chapter_patch_trigger",
    "get_attack",
]
