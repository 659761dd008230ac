"""Config of the attacks x defenses matrix experiment (YAML/JSON, unknown keys are errors).

Example (``experiments/defenses/matrix-digits.yaml``)::

    name: defense-matrix-digits
    dataset: {name: digits}
    attacks:
      - {name: label-flip, attack: {kind: label_flip, source: "3", target: "8", fraction: 0.5}}
      - {name: pattern, attack: {kind: backdoor, trigger: pattern, source: "7", target: "1"}}
    defenses:
      - {name: spectral_signatures}
      - {name: confident_learning, params: {folds: 5}}
    mitigation: {defenses: best, action: drop}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from poisonlab.defenses import DEFENSES
from poisonlab.experiments.config import (
    AttackSpec,
    DatasetSpec,
    ExperimentConfig,
    TrainingSpec,
    parse_experiment,
    read_config_mapping,
)


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MatrixAttack(_Strict):
    """One row: a display name and the attack (same schema as an experiment's ``attack``)."""

    name: str
    attack: AttackSpec
    source: str | None = Field(
        None, description="class whose test images the attack aims at (default: the attack's source)"
    )


class MatrixDefense(_Strict):
    """One column: a registered defense and its constructor parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in DEFENSES:
            raise ValueError(f"unknown defense {value!r}; expected one of {sorted(DEFENSES)}")
        return value


class MitigationSpec(_Strict):
    """Which cells get the (expensive) drop-and-retrain step.

    ``defenses``: ``"all"``, ``"best"`` (per attack, the defense with the highest F1), ``"none"``
    or a list of defense names. ``oracle`` also retrains without the true poison (upper bound).
    """

    defenses: Literal["all", "best", "none"] | list[str] = "best"
    action: Literal["drop", "relabel"] = "drop"
    oracle: bool = True


class MatrixConfig(_Strict):
    name: str
    description: str = ""
    dataset: DatasetSpec = DatasetSpec()
    training: TrainingSpec = TrainingSpec()
    train_size: int | None = Field(None, ge=100, description="seeded subsample of the training split")
    trusted_size: int | None = Field(None, ge=10, description="validation images used as the trusted set")
    attacks: list[MatrixAttack] = Field(..., min_length=1)
    defenses: list[MatrixDefense] = Field(..., min_length=1)
    mitigation: MitigationSpec = MitigationSpec()
    seed: int = 0
    base_dir: str = Field(".", description="set by the loader: folder of the config file")

    @model_validator(mode="after")
    def _check(self) -> MatrixConfig:
        for field_name, items in (("attacks", self.attacks), ("defenses", self.defenses)):
            names = [item.name for item in items]
            if len(set(names)) != len(names):
                raise ValueError(f"{field_name} names must be unique, got {names}")
        chosen = self.mitigation.defenses
        if isinstance(chosen, list):
            unknown = set(chosen) - {d.name for d in self.defenses}
            if unknown:
                raise ValueError(f"mitigation.defenses names defenses not in the matrix: {sorted(unknown)}")
        return self

    def experiment(self, row: MatrixAttack) -> ExperimentConfig:
        """The single-attack experiment of one row (retrain from scratch with ``training``)."""
        data = {
            "name": f"{self.name}-{row.name}",
            "dataset": self.dataset.model_dump(),
            "training": self.training.model_dump(),
            "attack": row.attack.model_dump(),
            "integration": "retrain",
            "seeds": [self.seed],
            "metrics": {"source": row.source},
            "base_dir": self.base_dir,
        }
        return parse_experiment(data, origin=f"{self.name}: attack {row.name}")


def parse_matrix(data: dict, origin: str = "config") -> MatrixConfig:
    try:
        cfg = MatrixConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]]
        raise ValueError(f"invalid matrix config {origin}: " + "; ".join(lines)) from exc
    for row in cfg.attacks:  # surface bad attack/training settings before any training starts
        cfg.experiment(row)
    return cfg


def load_matrix(path: str | Path) -> MatrixConfig:
    """Read and validate a matrix config file (YAML or JSON)."""
    return parse_matrix(read_config_mapping(path, "matrix config"), origin=str(path))
