"""What the clean-label benchmark produces: the clean models' figures and one row per trial.

Records only: :mod:`poisonlab.experiments.clean_label.run` fills them, :mod:`.report` reads
them, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from poisonlab.experiments.clean_label.config import CleanLabelConfig
from poisonlab.reprs import concise_repr

__all__ = ["CleanLabelResult"]


@dataclass
class CleanLabelResult:
    """Everything measured; ``trials`` holds one dict per (trial, attack).

    Attributes
    ----------
    config : CleanLabelConfig
        The benchmark's config.
    clean : dict
        The surrogate's id, whether it came from the cache, its accuracy and the clean victim's,
        the data sizes, the poison count and the training set's hash.
    trials : list of dict
        One row per (trial, attack), in the order they ran: the draw (victim image, its class,
        the target class), ``success``, ``control``, the poisoned victim's clean accuracy, the
        crafting report, the backdoor rates and the defenses' detection metrics.
    """

    config: CleanLabelConfig
    clean: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)

    def __repr__(self) -> str:
        return concise_repr(self, benchmark=getattr(self.config, "name", None), trials=len(self.trials))

    def to_json(self) -> dict[str, Any]:
        """The contents of ``results.json``."""
        config = self.config.model_dump(mode="json")
        config.pop("base_dir", None)  # a local path, not a setting
        return {"config": config, "clean": self.clean, "trials": self.trials}
