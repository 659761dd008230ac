"""The behaviour-shift gate: a candidate that moves one class to another is refused, on constructed models."""

from __future__ import annotations

import numpy as np
import pytest

from poisonlab.defenses.gates.behaviour import behaviour_shift


def test_the_same_model_passes_with_no_shift(clean_digits_model, digits_splits) -> None:
    r = behaviour_shift(clean_digits_model, clean_digits_model, digits_splits.test)
    assert r.passed and r.shifts == [] and r.largest["shift"] == 0.0
    assert r.candidate_accuracy == r.reference_accuracy and r.n_samples == len(digits_splits.test)


def test_a_learnt_flip_is_a_shift_of_its_pair_and_a_recall_drop(
    clean_digits_model, digits_splits, learned_flip
) -> None:
    flipped = learned_flip(clean_digits_model, source=3, target=8).eval()
    r = behaviour_shift(flipped, clean_digits_model, digits_splits.test, max_shift=0.5)
    assert not r.passed
    pairs = {(s["source"], s["target"]) for s in r.shifts}
    assert pairs == {("3", "8"), ("3", "3")}  # the flip, and class 3's own recall
    flip = next(s for s in r.shifts if s["target"] == "8")
    assert flip["candidate"] - flip["reference"] == pytest.approx(flip["shift"], abs=1e-3)
    assert flip["shift"] >= 0.9 and r.largest["source"] == "3"
    assert r.to_dict()["passed"] is False


def test_small_classes_are_not_judged(clean_digits_model, digits_splits, learned_flip) -> None:
    test = digits_splits.test
    few = np.concatenate([np.flatnonzero(test.y != 3), np.flatnonzero(test.y == 3)[:2]])
    flipped = learned_flip(clean_digits_model, source=3, target=8).eval()
    r = behaviour_shift(flipped, clean_digits_model, test.subset(few), min_class_samples=5)
    assert all(s["source"] != "3" for s in r.shifts)


def test_bad_inputs_are_refused(clean_digits_model, digits_splits, tiny_model) -> None:
    with pytest.raises(ValueError):
        behaviour_shift(clean_digits_model, clean_digits_model, digits_splits.test, max_shift=0)
    with pytest.raises(ValueError, match="classes"):
        behaviour_shift(tiny_model, clean_digits_model, digits_splits.test)
    with pytest.raises(ValueError, match="non-empty"):
        behaviour_shift(clean_digits_model, clean_digits_model, digits_splits.test.subset([]))
