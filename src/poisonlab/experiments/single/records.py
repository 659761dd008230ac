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
from poisonlab.experiments.single.mitigation import MitigationRun, mitigation_config
from poisonlab.experiments.single.robustness import SCALAR_BOUNDS, robustness_scalars
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
    checks : dict or None
        The poisoned model's robustness checks (config block ``robustness``).
    clean_checks : dict or None
        This seed's own clean model's checks (``baseline: per_seed`` with ``robustness``).
    mitigation : MitigationRun or None
        The mitigated and control models (config block ``mitigation``).
    resumed_from : dict or None
        For a model reused by ``--resume``, the run that trained it (``run_id``, ``created_at``,
        ``commit``); None when this run trained it.
    """

    seed: int
    poison: PoisonResult
    model_id: str
    measurement: ModelMeasurement
    history: list[dict]
    clean_model_id: str | None = None
    clean: ModelMeasurement | None = None
    checks: dict | None = None
    clean_checks: dict | None = None
    mitigation: MitigationRun | None = None
    resumed_from: dict | None = None

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
    robustness_setup : dict or None
        What the robustness tests ran on (canary indices, sensitivity images, photo triggers).
    clean_checks : dict or None
        The robustness checks of the run's (first) clean model.
    """

    config: ExperimentConfig
    splits: Splits
    clean_model_id: str
    clean: ModelMeasurement
    clean_history: list[dict]
    targets: AttackTargets
    runs: list[SeedRun] = field(default_factory=list)
    out_dir: Path = Path(".")
    robustness_setup: dict | None = None
    clean_checks: dict | None = None

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
        if self.config.robustness is not None:
            summary["robustness"] = self._robustness_summary()
        if self.config.mitigation is not None:
            summary["mitigation"] = self._mitigation_summary()
        return summary

    def clean_check_list(self) -> list[dict]:
        """The robustness checks of the clean model(s), as :meth:`clean_measurements`."""
        own = [r.clean_checks for r in self.runs if r.clean_checks is not None]
        return own if own else [self.clean_checks or {}]

    def _robustness_summary(self) -> dict:
        """``{model: aggregate(...)}`` of :func:`robustness_scalars` over the clean model(s), the
        poisoned models and, with a mitigation, the mitigated and control models."""
        groups = {"clean": self.clean_check_list(), "poisoned": [r.checks or {} for r in self.runs]}
        mits = [r.mitigation for r in self.runs if r.mitigation is not None]
        if mits:
            groups["mitigated"] = [m.mitigated_checks or {} for m in mits]
            groups["control"] = [m.control_checks or {} for m in mits]
        out = {}
        for name, checks in groups.items():
            pairs = [robustness_scalars(c) for c in checks]
            out[name] = aggregate([v for v, _ in pairs], [n for _, n in pairs], bounds=SCALAR_BOUNDS)
        return out

    def _mitigation_summary(self) -> dict:
        """Poisoned, mitigated and control models over seeds (:func:`aggregate`), and the per-seed
        differences ``mitigated - poisoned``, ``control - poisoned``, ``mitigated - control``."""
        mits = [(r.measurement, r.mitigation) for r in self.runs if r.mitigation is not None]
        models = {
            "poisoned": [p for p, _ in mits],
            "mitigated": [m.mitigated for _, m in mits],
            "control": [m.control for _, m in mits],
        }
        out: dict[str, Any] = {
            k: aggregate([m.scalars() for m in v], [m.counts for m in v]) for k, v in models.items()
        }
        for a, b in (("mitigated", "poisoned"), ("control", "poisoned"), ("mitigated", "control")):
            diffs = [
                {k: v - mb.scalars()[k] for k, v in ma.scalars().items() if k in mb.scalars()}
                for ma, mb in zip(models[a], models[b], strict=True)
            ]
            out[f"{a}_minus_{b}"] = aggregate(diffs)
        return out

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
                | self._run_extras(r)
                for r in self.runs
            ],
        } | self._robustness_json()

    def _robustness_json(self) -> dict[str, Any]:
        """The top-level ``robustness`` block (only with the config block: no key otherwise)."""
        if self.config.robustness is None:
            return {}
        return {"robustness": {"setup": self.robustness_setup, "clean": self.clean_checks}}

    def _run_extras(self, r: SeedRun) -> dict[str, Any]:
        """A seed's ``robustness`` / ``clean_robustness`` / ``mitigation`` entries, when configured."""
        out: dict[str, Any] = {}
        if r.resumed_from is not None:
            out["resumed_from"] = r.resumed_from
        if self.config.robustness is not None:
            out["robustness"] = r.checks
            if r.clean_checks is not None:
                out["clean_robustness"] = r.clean_checks
        m = r.mitigation
        if m is not None:
            out["mitigation"] = {
                "trusted_size": m.trusted_size,
                "trusted_hash": m.trusted_hash,
                "augmented_size": m.augmented_size,
                "triggers": m.triggers,
                "training": mitigation_config(self.config, r.seed).model_dump(mode="json"),
                "mitigated": _measurement_json(m.mitigated) | {"robustness": m.mitigated_checks},
                "control": _measurement_json(m.control) | {"robustness": m.control_checks},
                "mitigated_history": m.mitigated_history,
                "control_history": m.control_history,
            }
        return out


def _measurement_json(m: ModelMeasurement) -> dict:
    return {
        **m.scalars(),
        "counts": dict(m.counts),
        "per_class_accuracy": m.per_class_accuracy,
        "confusion_matrix": m.confusion.tolist(),
        "external": m.external,
    }
