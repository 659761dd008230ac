"""BackdoorAttack.poison must match ART 1.20.1's PoisoningAttackBackdoor.poison."""

from __future__ import annotations

import numpy as np
import pytest

from poisonlab.attacks import BackdoorAttack

pytestmark = pytest.mark.needs_art

art_poisoning = pytest.importorskip("art.attacks.poisoning")
art_perturbations = pytest.importorskip("art.attacks.poisoning.perturbations")


def _x(dtype):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8)
    return x if dtype == np.uint8 else (x / 255.0).astype(dtype)


def _triggers(local):
    return {
        "local": local,
        "art_pattern": lambda x: art_perturbations.add_pattern_bd(
            x, pixel_value=255 if x.dtype == np.uint8 else 1
        ),
        "art_single": lambda x: art_perturbations.add_single_bd(
            x, pixel_value=255 if x.dtype == np.uint8 else 1
        ),
    }


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("which", ["local", "art_pattern", "art_single"])
def test_parity_one_hot(trigger, dtype, which):
    pert = _triggers(trigger)[which]
    x = _x(dtype)
    y = np.eye(10)[np.full(6, 2)]
    ours = BackdoorAttack(pert).poison(x, y)
    theirs = art_poisoning.PoisoningAttackBackdoor(pert).poison(x.copy(), y)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_parity_broadcast_and_list(trigger, other_trigger):
    x = _x(np.uint8)
    target = np.eye(10)[2]
    ours = BackdoorAttack([trigger, other_trigger]).poison(x, target, broadcast=True)
    theirs = art_poisoning.PoisoningAttackBackdoor([trigger, other_trigger]).poison(
        x.copy(), target, broadcast=True
    )
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_parity_int_labels(trigger):
    x = _x(np.uint8)
    y = np.full(6, 2)
    ours = BackdoorAttack(trigger).poison(x, y)
    theirs = art_poisoning.PoisoningAttackBackdoor(trigger).poison(x.copy(), y)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)
