"""Wording of attack success and accuracy changes in reports."""

from __future__ import annotations

import pytest

from poisonlab.reporting.success import NOT_MEANINGFUL, accuracy_change, asr_text, chance_note, meaningful


def test_accuracy_change_says_which_way_and_how_much():
    assert accuracy_change(0.912, 0.901) == "clean accuracy 0.912 -> 0.901 (-1.1 points)"
    assert accuracy_change(0.5, 0.62) == "clean accuracy 0.500 -> 0.620 (+12.0 points)"
    assert accuracy_change(0.9, 0.9004) == "clean accuracy 0.900 -> 0.900 (±0.0 points)"
    assert accuracy_change(0.4, 0.1, what="test accuracy") == "test accuracy 0.400 -> 0.100 (-30.0 points)"


def test_an_asr_of_a_model_at_chance_is_marked():
    assert asr_text(0.987, 0.91, 10) == "0.9870"
    assert asr_text(1.0, 0.10, 10) == f"1.0000 ({NOT_MEANINGFUL}: clean accuracy 0.1000 is at chance)"
    assert asr_text(None, 0.10, 10) == "-"
    assert asr_text(1.0, None, 10) == "1.0000"  # nothing known to warn about
    assert meaningful(0.5, None) and not meaningful(0.12, 10)


def test_chance_note_explains_the_mark():
    note = chance_note(10)
    assert NOT_MEANINGFUL in note and "1/10 = 0.10" in note and "+ 5 points" in note
    with pytest.raises(ValueError):
        chance_note(0)
