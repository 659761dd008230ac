"""The control "attack": no poison at all.

An experiment with ``kind: none`` goes through exactly the same integration (retrain or
fine-tune) as a real attack, so the accuracy cost of the integration itself (for example the
chapter's Adam fine-tune of a model trained another way) can be separated from the cost of the
poison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poisonlab.attacks.base import ATTACKS, PoisoningAttack, PoisonResult, make_result
from poisonlab.data.dataset import Dataset


@ATTACKS.register
@dataclass(frozen=True)
class NoPoison(PoisoningAttack):
    """Returns the clean set unchanged with an all-clean poison mask."""

    name = "none"

    def poison(self, clean: Dataset) -> PoisonResult:
        if not isinstance(clean, Dataset):
            raise ValueError(f"clean must be a Dataset, got {type(clean).__name__}")
        return make_result(
            clean.replace(poison_mask=np.zeros(len(clean), dtype=bool)), "none: control run, no poison"
        )
