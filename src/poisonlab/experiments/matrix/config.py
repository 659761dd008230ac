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
from typing import Literal

from pydantic import Field, ValidationError, model_validator

from poisonlab.experiments.common.specs import (
    DatasetSpec,
    DefenseSpec,
    Strict,
    TrainingSpec,
    read_config_mapping,
    validation_message,
)
from poisonlab.experiments.single.config import AttackSpec, ExperimentConfig, parse_experiment
from poisonlab.training.options import Seed

__all__ = ["MatrixAttack", "MatrixConfig", "MitigationSpec", "load_matrix", "parse_matrix"]


class MatrixAttack(Strict):
    """One row: a display name and the attack (same schema as an experiment's ``attack``)."""

    name: str
    attack: AttackSpec
    source: str | None = Field(
        None, description="class whose test images the attack aims at (default: the attack's source)"
    )


class MitigationSpec(Strict):
    """Which cells get the (expensive) drop-and-retrain step.

    ``defenses``: ``"screen"`` (the default: the screen's combined flags, no ground truth),
    ``"all"``, ``"best"`` (per attack, the defense with the highest F1 against the true poison
    mask: a reference no user can reproduce, reported as oracle-picked), ``"none"`` or a list of
    defense names. ``oracle`` also retrains without the true poison (upper bound).
    """

    defenses: Literal["screen", "all", "best", "none"] | list[str] = "screen"
    action: Literal["drop", "relabel"] = "drop"
    oracle: bool = True


class MatrixConfig(Strict):
    """Attacks (rows) x defenses (columns) on one dataset, each poisoned model trained from scratch.

    ``train_size`` subsamples the training split (seeded) to keep a CPU run short;
    ``trusted_size`` validation images become the defenses' trusted set.
    """

    name: str
    description: str = ""
    dataset: DatasetSpec = DatasetSpec()
    training: TrainingSpec = TrainingSpec()
    train_size: int | None = Field(None, ge=100, description="seeded subsample of the training split")
    trusted_size: int | None = Field(None, ge=10, description="validation images used as the trusted set")
    attacks: list[MatrixAttack] = Field(..., min_length=1)
    defenses: list[DefenseSpec] | None = Field(
        None, min_length=1, description="columns; omitted: the default screen's detectors, combined"
    )
    mitigation: MitigationSpec = MitigationSpec()
    seed: Seed = 0
    base_dir: str = Field(".", description="set by the loader: folder of the config file")

    @model_validator(mode="after")
    def _check(self) -> MatrixConfig:
        for field_name, items in (("attacks", self.attacks), ("defenses", self.defenses or [])):
            names = [item.name for item in items]
            if len(set(names)) != len(names):
                raise ValueError(f"{field_name} names must be unique, got {names}")
        chosen = self.mitigation.defenses
        if isinstance(chosen, list):
            unknown = set(chosen) - {d.name for d in self.defenses or []}
            if unknown:
                raise ValueError(f"mitigation.defenses names defenses not in the matrix: {sorted(unknown)}")
        return self

    def defense_names(self) -> list[str]:
        """The matrix's columns: the configured defenses, then, when the screen mitigates (the
        default) or no defense is configured, the screen's detectors not configured already (the
        trusted set's included) and ``"screen"``, the screen's verdict."""
        from poisonlab.defenses.scan.screen import screen_methods  # light, but keep config import-cheap

        names = [d.name for d in self.defenses or []]
        if self.defenses is not None and self.mitigation.defenses != "screen":
            return names
        return names + [m for m in screen_methods(True) if m not in names] + ["screen"]

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
    """Validate a matrix mapping, every row's experiment included; ValueError names ``origin``."""
    try:
        cfg = MatrixConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(validation_message(exc, "matrix config", origin)) from exc
    for row in cfg.attacks:  # surface bad attack/training settings before any training starts
        cfg.experiment(row)
    for spec in cfg.defenses or []:  # and bad defense parameters, before the first model trains
        _check_defense(spec, origin)
    return cfg


def _check_defense(spec: DefenseSpec, origin: str) -> None:
    """Build the defense ``spec`` names (cheap: constructors only store and check parameters)."""
    import inspect

    from poisonlab.defenses import DEFENSES

    cls = DEFENSES[spec.name]
    try:
        cls(**spec.params)
    except TypeError:  # an unknown or missing keyword: name the accepted ones
        valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        raise ValueError(
            f"invalid matrix config {origin}: defense {spec.name!r} takes {', '.join(valid)}; "
            f"got {', '.join(spec.params) or 'nothing'}"
        ) from None
    except ValueError as exc:
        raise ValueError(f"invalid matrix config {origin}: defense {spec.name!r}: {exc}") from None


def load_matrix(path: str | Path) -> MatrixConfig:
    """Read and validate a matrix config file (YAML or JSON)."""
    return parse_matrix(read_config_mapping(path, "matrix config"), origin=str(path))
