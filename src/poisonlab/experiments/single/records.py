"""What a single run produces: one record per seed and the run's result.

Records only: the runner (:mod:`poisonlab.experiments.single.run`) fills them and the writers
(:mod:`poisonlab.experiments.single.report`) read them, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poisonlab.attacks.base import PoisonResult
from poisonlab.data.dataset import Splits
from poisonlab.experiments.common.measure import AttackTargets, ModelMeasurement, aggregate
from poisonlab.experiments.single.config import ExperimentConfig
from poisonlab.reprs import concise_repr

__all__ = ["ExperimentResult", "SeedRun"]


@dataclass
class SeedRun:
    """The poisoned model of one seed.

    Attributes
    ----------
    seed : int
        Seed of the attack and of the poisoned model's training.
    poison : PoisonResult
        The poisoned training set with its ground-truth mask.
    model_id : str
        Registry id of the poisoned model (saved under ``models/seed-<seed>``).
    measurement : ModelMeasurement
        What the poisoned model does on the test set.
    history : list of dict
        Per-epoch training statistics.
    """

    seed: int
    poison: PoisonResult
    model_id: str
    measurement: ModelMeasurement
    history: list[dict]

    def __repr__(self) -> str:
        m = self.measurement
        return concise_repr(
            self,
            seed=self.seed,
            model_id=self.model_id,
            num_poison=self.poison.num_poison,
            clean_accuracy=m.clean_accuracy,
            attack_success_rate=m.attack_success_rate,
        )


@dataclass
class ExperimentResult:
    """A finished run: the clean baseline and every seed's poisoned model.

    Attributes
    ----------
    config : ExperimentConfig
        The run's config.
    splits : Splits
        The data it ran on.
    clean_model_id : str
        Registry id of the (cached) clean baseline.
    clean : ModelMeasurement
        What the clean baseline does on the test set.
    clean_history : list of dict
        The baseline's training history (as cached with it).
    targets : AttackTargets
        The classes watched and the trigger, if any.
    runs : list of SeedRun
        One per seed, in config order.
    out_dir : Path
        The folder the poisoned models were saved under (``models/seed-<seed>``).
    """

    config: ExperimentConfig
    splits: Splits
    clean_model_id: str
    clean: ModelMeasurement
    clean_history: list[dict]
    targets: AttackTargets
    runs: list[SeedRun] = field(default_factory=list)
    out_dir: Path = Path(".")

    def __repr__(self) -> str:
        # the default prints every seed's poison indices, confusion matrices and history
        return concise_repr(
            self,
            experiment=self.config.name,
            attack=self.runs[0].poison.description if self.runs else None,
            seeds=[r.seed for r in self.runs],
            clean_accuracy=self.clean.clean_accuracy,
            out_dir=self.out_dir,
        )

    def summary(self) -> dict:
        """Clean metrics, poisoned metrics as mean/std over seeds, and the accuracy drop."""
        clean = self.clean.scalars()
        poisoned = aggregate([r.measurement.scalars() for r in self.runs])
        summary = {"clean": clean, "poisoned": poisoned}
        if "clean_accuracy" in poisoned:
            summary["accuracy_drop"] = clean["clean_accuracy"] - poisoned["clean_accuracy"]["mean"]
        return summary

    def to_json(self) -> dict[str, Any]:
        """The contents of ``results.json`` (numpy scalars may remain; the writer converts them)."""
        cfg = self.config
        return {
            "experiment": cfg.name,
            "config": cfg.model_dump(mode="json", exclude={"base_dir"}),
            "dataset": {
                "name": cfg.dataset.name,
                "train_hash": self.splits.train.content_hash,
                "test_hash": self.splits.test.content_hash,
            },
            "clean_model": self.clean_model_id,
            "summary": self.summary(),
            "clean": _measurement_json(self.clean),
            "runs": [
                {
                    "seed": r.seed,
                    "model": r.model_id,
                    "poisoned_train_hash": r.poison.dataset.content_hash,
                    "num_poison": len(r.poison.poison_indices),
                    "poison_rate": len(r.poison.poison_indices) / len(r.poison.dataset),
                    "description": r.poison.description,
                    "metrics": _measurement_json(r.measurement),
                    "history": r.history,
                }
                for r in self.runs
            ],
        }


def _measurement_json(m: ModelMeasurement) -> dict:
    return {
        **m.scalars(),
        "per_class_accuracy": m.per_class_accuracy,
        "confusion_matrix": m.confusion.tolist(),
        "external": m.external,
    }
