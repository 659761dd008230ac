"""Turn an experiment config into data, attack objects and cached baseline models."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from poisonlab.attacks import BackdoorPoisoning, LabelFlip, MislabelInjection, NoPoison, RandomLabelFlip
from poisonlab.attacks.base import PoisoningAttack
from poisonlab.data.catalog import load_dataset_path
from poisonlab.data.dataset import Dataset, Splits
from poisonlab.data.images import rgb_to_gray
from poisonlab.experiments.config import (
    BackdoorSpec,
    ControlSpec,
    ExperimentConfig,
    LabelFlipSpec,
    MislabelSpec,
)
from poisonlab.models.base import PoisonlabModel
from poisonlab.models.checkpoint import load_model, read_card, write_card
from poisonlab.models.store import ModelStore, poisonlab_home
from poisonlab.training import TrainConfig
from poisonlab.workflows import train_and_save


def trigger_for(spec: BackdoorSpec) -> Callable[[np.ndarray], np.ndarray]:
    from poisonlab.triggers import get_trigger  # imported lazily: only backdoor runs need it

    return get_trigger(spec.trigger, **spec.trigger_params)


def external_images(cfg: ExperimentConfig, spec: MislabelSpec, splits: Splits) -> Dataset:
    """The images a mislabel attack injects: a folder/array file, or a held-out split's class."""
    if spec.images is not None:
        path = cfg.path(spec.images)
        ds = load_dataset_path(
            path, class_names=splits.class_names, label=spec.target, size=splits.train.image_shape[0]
        )
        if ds.image_shape[-1] != splits.train.image_shape[-1] and splits.train.image_shape[-1] == 1:
            ds = ds.replace(x=rgb_to_gray(ds.x))
        return ds
    fs = spec.from_split
    held_out = getattr(splits, fs.split)
    idx = np.flatnonzero(held_out.y == held_out.class_index(fs.class_name))[: fs.count]
    if len(idx) < fs.count:
        raise ValueError(f"the {fs.split} split has only {len(idx)} images of class {fs.class_name}")
    return held_out.subset(idx, name=f"{fs.split}:{fs.class_name}")


def build_attack(cfg: ExperimentConfig, splits: Splits, seed: int) -> PoisoningAttack:
    """The attack object of ``cfg`` for one seed."""
    spec = cfg.attack
    if isinstance(spec, MislabelSpec):
        images = external_images(cfg, spec, splits)
        tag = spec.tag or (Path(spec.images).name if spec.images else images.name)
        return MislabelInjection(images=images, target=spec.target, source_tag=tag)
    if isinstance(spec, LabelFlipSpec):
        return LabelFlip(
            source=spec.source, target=spec.target, count=spec.count, fraction=spec.fraction, seed=seed
        )
    if isinstance(spec, BackdoorSpec):
        return BackdoorPoisoning(
            perturbation=trigger_for(spec),
            trigger_name=spec.trigger,
            source=spec.source,
            target=spec.target,
            count=spec.count,
            fraction=spec.fraction,
            fraction_of=spec.fraction_of,
            integration=spec.integration,
            seed=seed,
        )
    if isinstance(spec, ControlSpec):
        return NoPoison()
    return RandomLabelFlip(fraction=spec.fraction, seed=seed)


def baseline_key(train: Dataset, config: TrainConfig) -> str:
    """Cache key of a clean baseline: training data hash + full training config (incl. model)."""
    blob = json.dumps({"data": train.content_hash, "config": config.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_model(
    splits: Splits,
    config: TrainConfig,
    *,
    device: str,
    progress: bool,
    name: str,
    cache_dir: Path | None = None,
) -> tuple[PoisonlabModel, str, list, bool]:
    """The model trained from scratch on ``splits.train`` with ``config``, trained once and reused.

    Models are cached under ``$POISONLAB_HOME/baselines/<key>`` where the key hashes the training
    data and the full config (:func:`baseline_key`), so a clean baseline, a poisoned model or a
    model retrained after mitigation is each trained only once. Returns the model, its id, its
    training history (empty when loaded from cache) and whether it came from the cache.
    """
    folder = (cache_dir or poisonlab_home() / "baselines") / baseline_key(splits.train, config)
    if (folder / "model.json").is_file():
        model, card = load_model(folder)
        return model, card.id, card.metrics.get("history", []), True
    trained = train_and_save(
        splits.train,
        config,
        folder,
        val_data=splits.val,
        test_data=splits.test,
        device=device,
        progress=progress,
        name=name,
        store=ModelStore(),
    )
    history = [h.__dict__ for h in trained.result.history]
    card = read_card(folder)
    write_card(card.model_copy(update={"metrics": {**card.metrics, "history": history}}), folder)
    return trained.result.model, trained.card.id, history, False


def clean_baseline(
    splits: Splits, config: TrainConfig, *, device: str, progress: bool, cache_dir: Path | None = None
) -> tuple[PoisonlabModel, str, list, bool]:
    """The clean model for (data, config), trained once and reused by every experiment."""
    return cached_model(
        splits,
        config,
        device=device,
        progress=progress,
        name=f"baseline-{splits.train.name}",
        cache_dir=cache_dir,
    )
