"""``print(result)`` shows a line, not thousands of indices (issue 17)."""

from __future__ import annotations

import numpy as np
import torch

from poisonlab.attacks import HiddenTriggerBackdoor, LabelFlip, chapter_patch_trigger
from poisonlab.data.dataset import Dataset
from poisonlab.models.simple_cnn import SimpleCifarCNN


def _big(n_per_class: int = 600) -> Dataset:
    y = np.tile(np.arange(10), n_per_class)
    x = np.zeros((len(y), 4, 4, 1), dtype=np.uint8)
    return Dataset(x=x, y=y, class_names=tuple("abcdefghij"), name="big")


def test_a_poison_result_repr_is_one_short_line_with_its_counts():
    res = LabelFlip(source="a", target="b", fraction=1.0).poison(_big())
    assert res.num_poison == 600
    text = repr(res)
    assert "\n" not in text and len(text) < 200
    assert text.startswith("PoisonResult(description='label_flip: 600 a->b, in place'")
    assert "samples=6000" in text and "num_poison=600" in text and "poison_rate=0.1" in text
    assert str(res) == text  # print() shows the same line
    assert "frozenset" not in text and "599" not in text  # no index is listed


def test_a_crafted_result_repr_adds_the_crafting_report(clean):
    torch.manual_seed(0)
    model = SimpleCifarCNN(input_shape=(8, 8, 3), num_classes=10).eval()
    attack = HiddenTriggerBackdoor(
        model=model, source=0, target=2, count=3, steps=1, trigger=chapter_patch_trigger(2, 1)
    )
    res = attack.poison(clean)
    text = repr(res)
    assert text.startswith("CraftedPoisonResult(description=")
    assert "hidden_trigger[htbd-patch]: 3 poisons of 'bird' for triggered 'airplane'" in text
    assert "num_poison=3" in text and "seconds=" in text and "loss=" in text and "max_linf=" in text
    assert len(text) < 320 and "\n" not in text
