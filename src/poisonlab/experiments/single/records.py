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
from poisonlab.reporting.stamp import result_provenance
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
    clean_model_id : str or None
        With ``baseline: per_seed``, the registry id of this seed's own clean model; None when
        every seed shares the run's clean model.
    clean : ModelMeasurement or None
        What this seed's own clean model does (``baseline: per_seed``); None when shared.
    """

    seed: int
    poison: PoisonResult
    model_id: str
    measurement: ModelMeasurement
    history: list[dict]
    clean_model_id: str | None = None
    clean: ModelMeasurement | None = None

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

    def clean_measurements(self) -> list[ModelMeasurement]:
        """The clean model(s) the seeds are compared with: one per seed with ``baseline:
        per_seed``, else the shared one."""
        own = [r.clean for r in self.runs if r.clean is not None]
        return own if own else [self.clean]

    def summary(self) -> dict:
        """The clean and poisoned metrics over seeds and the accuracy drop, with intervals.

        Returns
        -------
        dict
            ``baseline`` (shared / per_seed); ``clean``: metric -> mean over the clean model(s)
            (one value when shared); ``clean_stats`` and ``poisoned``: metric ->
            :func:`~poisonlab.experiments.common.measure.aggregate` (mean, sample std, t interval
            over seeds, Wilson interval over the pooled test images); ``accuracy_drop``: mean
            clean minus mean poisoned accuracy; ``accuracy_drop_stats``: the per-seed drops
            (clean model of the seed minus its poisoned model) with their t interval.
        """
        cleans = self.clean_measurements()
        clean_stats = aggregate([m.scalars() for m in cleans], [m.counts for m in cleans])
        poisoned = aggregate(
            [r.measurement.scalars() for r in self.runs], [r.measurement.counts for r in self.runs]
        )
        summary: dict[str, Any] = {
            "baseline": self.config.baseline,
            "clean": {k: v["mean"] for k, v in clean_stats.items()},
            "clean_stats": clean_stats,
            "poisoned": poisoned,
        }
        if "clean_accuracy" in poisoned:
            summary["accuracy_drop"] = summary["clean"]["clean_accuracy"] - poisoned["clean_accuracy"]["mean"]
            drops = [(r.clean or self.clean).clean_accuracy - r.measurement.clean_accuracy for r in self.runs]
            summary["accuracy_drop_stats"] = aggregate([{"drop": d} for d in drops])["drop"]
        return summary

    def provenance(self) -> dict[str, Any]:
        """The ``provenance`` block: commit, versions, seeds and every parameter (the config, the
        resolved training configs of the clean and the poisoned models)."""
        cfg = self.config
        parameters = {
            "config": cfg.model_dump(mode="json", exclude={"base_dir"}),
            "clean_training": {str(s): cfg.clean_train_config(s).model_dump(mode="json") for s in cfg.seeds},
            "poisoned_training": {
                str(s): cfg.poison_train_config(s).model_dump(mode="json") for s in cfg.seeds
            },
            "clean_models": sorted({r.clean_model_id or self.clean_model_id for r in self.runs})
            or [self.clean_model_id],
        }
        return result_provenance(seeds=cfg.seeds, parameters=parameters)

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
            "provenance": self.provenance(),
            "summary": self.summary(),
            "clean": _measurement_json(self.clean),
            "runs": [
                {
                    "seed": r.seed,
                    "model": r.model_id,
                    "clean_model": r.clean_model_id or self.clean_model_id,
                    "clean_metrics": None if r.clean is None else _measurement_json(r.clean),
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
        "counts": dict(m.counts),
        "per_class_accuracy": m.per_class_accuracy,
        "confusion_matrix": m.confusion.tolist(),
        "external": m.external,
    }
