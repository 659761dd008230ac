"""What the attacks x defenses matrix produces: one record per attack row and the whole result.

Records only: :mod:`poisonlab.experiments.matrix.run` fills them, :mod:`.report` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from poisonlab.experiments.matrix.config import MatrixConfig
from poisonlab.reprs import concise_repr

__all__ = ["DETECTION_KEYS", "AttackRow", "MatrixResult"]

#: The detection metrics of every cell, scored against the attack's ground-truth poison mask.
DETECTION_KEYS = ("precision", "recall", "f1", "fpr", "auroc")


@dataclass
class AttackRow:
    """Everything measured for one attack.

    Attributes
    ----------
    name, description : str
        The row's display name and the attack's own description.
    poison_count, train_size : int
        Poisoned samples, and the size of the poisoned training set.
    model_id : str
        Registry id of the (cached) model trained on the poisoned set.
    poisoned : dict
        ``clean_accuracy`` and ``attack_success`` of the poisoned model.
    clean_model_success : float or None
        Attack success measured on the clean model (the floor).
    detection : dict
        Defense name -> detection metrics, ``flagged`` count and ``seconds``.
    mitigation : dict
        Defense name (or ``"oracle"``) -> the retrained model's metrics, ``model_id``,
        ``removed`` and ``poison_left``.
    forward_seconds : float or None
        The forward pass the defenses shared.
    """

    name: str
    description: str
    poison_count: int
    train_size: int
    model_id: str
    poisoned: dict[str, float | None]
    clean_model_success: float | None
    detection: dict[str, dict[str, Any]] = field(default_factory=dict)
    mitigation: dict[str, dict[str, Any]] = field(default_factory=dict)
    forward_seconds: float | None = None


@dataclass
class MatrixResult:
    """The matrix so far (rows are appended as they finish).

    Attributes
    ----------
    config : MatrixConfig
        The matrix's config.
    rows : list of AttackRow
        One per finished attack, in config order.
    clean : dict
        ``model_id``, ``clean_accuracy`` and ``attack_success`` (None) of the clean model.
    seconds : float
        Wall time up to the last finished row.
    """

    config: MatrixConfig
    rows: list[AttackRow]
    clean: dict[str, float | None]
    seconds: float

    def __repr__(self) -> str:
        return concise_repr(
            self,
            matrix=self.config.name,
            attacks=[r.name for r in self.rows],
            defenses=self.config.defense_names(),
            seconds=round(self.seconds, 1),
        )

    def to_json(self) -> dict[str, Any]:
        """The contents of ``matrix.json``."""
        return {
            "name": self.config.name,
            "description": self.config.description,
            "dataset": self.config.dataset.name,
            "defenses": self.config.defense_names(),
            "clean_model": self.clean,
            "seconds": self.seconds,
            "rows": [row.__dict__ for row in self.rows],
        }
