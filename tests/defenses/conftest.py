"""Fixtures for the defenses: planted poison on the embedded digits, with models trained once.

``backdoored`` is digits with a pattern backdoor (every training "7" copied, stamped with a
2x2 pattern and labelled "1", concatenated) and a small model trained on it; ``mislabeled`` is
digits with half of the training "3"s flipped to "8" and a model trained on it. Both are session-scoped
(a few seconds each on one CPU thread) so that every defense is tested on the same real poison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from poisonlab.attacks import BackdoorPoisoning, LabelFlip
from poisonlab.data.catalog import load_splits
from poisonlab.data.dataset import Dataset, Splits
from poisonlab.inference import ForwardResult, forward_pass
from poisonlab.models.base import PoisonlabModel
from poisonlab.training import train
from poisonlab.training.config import digits_recipe
from poisonlab.triggers import get_trigger


@dataclass(frozen=True)
class PoisonedCase:
    """A poisoned training set, the model trained on it, its forward pass and clean held-out data."""

    dataset: Dataset  # carries poison_mask
    model: PoisonlabModel
    forward: ForwardResult  # logits + penultimate features of ``model`` on ``dataset``
    splits: Splits  # the clean digits splits (val/test are clean, usable as trusted data)
    source: int
    target: int

    @property
    def mask(self) -> np.ndarray:
        return self.dataset.poison_mask


def _train(data: Dataset, val: Dataset, epochs: int = 12) -> PoisonlabModel:
    torch.manual_seed(0)
    config = digits_recipe().model_copy(update={"epochs": epochs, "seed": 0})
    return train(data, config, val_data=val, device="cpu", progress=False).model.eval()


@pytest.fixture(scope="session")
def digits_splits() -> Splits:
    return load_splits("digits", seed=0)


@pytest.fixture(scope="session")
def backdoored(digits_splits: Splits) -> PoisonedCase:
    """Pattern backdoor, every training "7" -> "1" (about 9% of the poisoned set), trained on."""
    attack = BackdoorPoisoning(
        perturbation=get_trigger("pattern", distance=1, pixel_value=1),
        trigger_name="pattern",
        source="7",
        target="1",
    )
    data = attack.poison(digits_splits.train).dataset
    model = _train(data, digits_splits.val)
    forward = forward_pass(model, data.x, features=True, device="cpu")
    return PoisonedCase(data, model, forward, digits_splits, source=7, target=1)


@pytest.fixture(scope="session")
def mislabeled(digits_splits: Splits) -> PoisonedCase:
    """Label flip: half of the training "3"s relabelled "8", trained on."""
    data = LabelFlip(source="3", target="8", fraction=0.5, seed=0).poison(digits_splits.train).dataset
    model = _train(data, digits_splits.val)
    forward = forward_pass(model, data.x, features=True, device="cpu")
    return PoisonedCase(data, model, forward, digits_splits, source=3, target=8)
