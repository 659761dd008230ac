"""``poisonlab run CONFIG``: one poisoning experiment end to end, over seeds, with a report.

Steps: load the splits; train (or reuse from the cache) the clean baseline; for each seed build
the attack, poison the training set, integrate it (retrain from scratch, fine-tune the clean
model on the poisoned set, or fine-tune on the poisoned samples only); measure both models; write
``results.json``, ``report.md`` and ``report.html``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poisonlab.attacks.base import PoisonResult
from poisonlab.data.arrays import save_arrays
from poisonlab.data.catalog import load_splits
from poisonlab.data.dataset import Splits
from poisonlab.experiments.build import build_attack, clean_baseline, trigger_for
from poisonlab.experiments.config import BackdoorSpec, ExperimentConfig, MislabelSpec
from poisonlab.experiments.measure import AttackTargets, ModelMeasurement, aggregate, measure, triggered_test
from poisonlab.experiments.report import write_report
from poisonlab.models.base import PoisonlabModel
from poisonlab.workflows import train_and_save


@dataclass
class SeedRun:
    seed: int
    poison: PoisonResult
    model_id: str
    measurement: ModelMeasurement
    history: list[dict]


@dataclass
class ExperimentResult:
    config: ExperimentConfig
    splits: Splits
    clean_model_id: str
    clean: ModelMeasurement
    clean_history: list[dict]
    targets: AttackTargets
    runs: list[SeedRun] = field(default_factory=list)
    out_dir: Path = Path(".")

    def summary(self) -> dict:
        clean = self.clean.scalars()
        poisoned = aggregate([r.measurement.scalars() for r in self.runs])
        summary = {"clean": clean, "poisoned": poisoned}
        if "clean_accuracy" in poisoned:
            summary["accuracy_drop"] = clean["clean_accuracy"] - poisoned["clean_accuracy"]["mean"]
        return summary


def attack_targets(cfg: ExperimentConfig, splits: Splits) -> AttackTargets:
    spec, names = cfg.attack, splits.train
    source = cfg.metrics.source or getattr(spec, "source", None)
    target = cfg.metrics.target or getattr(spec, "target", None)
    if isinstance(spec, MislabelSpec) and cfg.metrics.source is None and spec.from_split is not None:
        source = spec.from_split.class_name
    trigger = trigger_for(spec) if isinstance(spec, BackdoorSpec) else None
    return AttackTargets(
        source=None if source is None else names.class_index(source),
        target=None if target is None else names.class_index(target),
        trigger=trigger,
        trigger_name=spec.trigger if isinstance(spec, BackdoorSpec) else "",
    )


def _poisoned_model(
    cfg: ExperimentConfig,
    splits: Splits,
    poison: PoisonResult,
    clean: PoisonlabModel,
    clean_id: str,
    seed: int,
    out_dir: Path,
    device: str,
    progress: bool,
) -> tuple[PoisonlabModel, str, list[dict]]:
    train_cfg = cfg.poison_train_config(seed)
    data = poison.poisoned_only if cfg.integration == "finetune_poison_only" else poison.dataset
    init = None if cfg.integration == "retrain" else clean
    trained = train_and_save(
        data,
        train_cfg,
        out_dir / "models" / f"seed-{seed}",
        val_data=splits.val,
        init=init,
        parent_id=None if init is None else clean_id,
        name=f"{cfg.name}-seed{seed}",
        device=device,
        progress=progress,
    )
    return trained.result.model, trained.card.id, [h.__dict__ for h in trained.result.history]


def run_experiment(
    cfg: ExperimentConfig,
    out_dir: str | Path,
    *,
    device: str = "auto",
    progress: bool = True,
    splits: Splits | None = None,
    save_data: bool = False,
) -> ExperimentResult:
    """Run ``cfg`` and write its results and report into ``out_dir``.

    With ``save_data`` each seed's poisoned training set (with its ground-truth poison mask) is
    also written to ``out_dir/data/seed-<seed>.npz``, next to its model in ``models/seed-<seed>``,
    ready for ``poisonlab scan``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if splits is None:
        data_dir = cfg.path(cfg.dataset.data_dir) if cfg.dataset.data_dir else None
        splits = load_splits(cfg.dataset.name, data_dir=data_dir, seed=cfg.dataset.split_seed)
    targets = attack_targets(cfg, splits)
    external = [cfg.path(p) for p in cfg.metrics.external_images]
    for path in external:
        if not path.is_file():
            raise FileNotFoundError(f"external image not found: {path}")
    clean, clean_id, clean_history, _ = clean_baseline(
        splits, cfg.clean_train_config(), device=device, progress=progress
    )
    triggered = triggered_test(splits.test, targets)
    result = ExperimentResult(
        config=cfg,
        splits=splits,
        clean_model_id=clean_id,
        clean_history=clean_history,
        targets=targets,
        clean=measure(clean, splits.test, targets, triggered=triggered, external=external, device=device),
        out_dir=out,
    )
    for seed in cfg.seeds:
        poison = build_attack(cfg, splits, seed).poison(splits.train)
        if save_data:
            save_arrays(poison.dataset, out / "data" / f"seed-{seed}.npz")
        model, model_id, history = _poisoned_model(
            cfg, splits, poison, clean, clean_id, seed, out, device, progress
        )
        m = measure(model, splits.test, targets, triggered=triggered, external=external, device=device)
        result.runs.append(
            SeedRun(seed=seed, poison=poison, model_id=model_id, measurement=m, history=history)
        )
    write_results_json(result, out / "results.json")
    write_report(result, out)
    return result


def write_results_json(result: ExperimentResult, path: Path) -> None:
    cfg = result.config
    data = {
        "experiment": cfg.name,
        "config": cfg.model_dump(mode="json", exclude={"base_dir"}),
        "dataset": {
            "name": cfg.dataset.name,
            "train_hash": result.splits.train.content_hash,
            "test_hash": result.splits.test.content_hash,
        },
        "clean_model": result.clean_model_id,
        "summary": result.summary(),
        "clean": _measurement_json(result.clean),
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
            for r in result.runs
        ],
    }
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")


def _measurement_json(m: ModelMeasurement) -> dict:
    return {
        **m.scalars(),
        "per_class_accuracy": m.per_class_accuracy,
        "confusion_matrix": m.confusion.tolist(),
        "external": m.external,
    }


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
