"""Turn a run's config into objects: its data, the attack of a seed, its trigger, the classes it
watches; and check that all of them can be built before anything trains (:func:`check_experiment`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.attacks.base import PoisoningAttack
from poisonlab.attacks.factory import get_attack, make_trigger
from poisonlab.data.catalog import load_dataset_path, load_named_splits
from poisonlab.data.dataset import Dataset, Splits
from poisonlab.data.images import list_image_files, load_image_file, rgb_to_gray
from poisonlab.experiments.common.measure import AttackTargets
from poisonlab.experiments.single.config import (
    BackdoorSpec,
    ControlSpec,
    ExperimentConfig,
    MislabelSpec,
)
from poisonlab.experiments.single.robustness import check_robustness

__all__ = [
    "attack_targets",
    "build_attack",
    "check_experiment",
    "experiment_splits",
    "external_images",
    "trigger_for",
]


def trigger_for(spec: BackdoorSpec) -> Callable[[np.ndarray], np.ndarray]:
    """The registry trigger a backdoor spec names, bound to its parameters."""
    return make_trigger(spec.trigger, spec.trigger_params).fn


def _folder_without(
    path: Path, exclude: list[str], class_names: tuple[str, ...], label: int, size: int
) -> Dataset:
    """A flat image folder's images, the files named in ``exclude`` left out (the notebook's 26
    Rutan Boomerang photos without the WebP copy of ``rb-14``).

    Raises
    ------
    ValueError
        ``path`` is not a plain image folder, or ``exclude`` names a file it does not hold (a
        typo would otherwise leave every file in, silently).
    """
    if not path.is_dir() or (path / "images.npy").is_file():
        raise ValueError(f"'exclude' needs a folder of image files, got {path}")
    files = list_image_files(path)
    missing = sorted(set(exclude) - {f.name for f in files})
    if missing:
        raise ValueError(f"'exclude' names files not in {path}: {missing}")
    kept = [f for f in files if f.name not in set(exclude)]
    if not kept:
        raise ValueError(f"'exclude' leaves no image in {path}")
    x = np.stack([load_image_file(f, size=size) for f in kept])
    y = np.full(len(kept), label, dtype=np.int64)
    source = np.asarray([f"folder:{path.resolve().name}"] * len(kept), dtype=object)
    return Dataset(x=x, y=y, class_names=class_names, source=source, name=path.resolve().name)


def external_images(cfg: ExperimentConfig, spec: MislabelSpec, splits: Splits) -> Dataset:
    """The images a mislabel attack injects: a folder/array file (minus ``exclude``), or a
    held-out split's class."""
    if spec.images is not None:
        path = cfg.path(spec.images)
        size = splits.train.image_shape[0]
        if spec.exclude:
            label = splits.train.class_index(spec.target)  # an unknown name fails with the usual message
            ds = _folder_without(path, spec.exclude, tuple(splits.class_names), label, size)
        else:
            ds = load_dataset_path(path, class_names=splits.class_names, label=spec.target, size=size)
        if ds.image_shape[-1] != splits.train.image_shape[-1] and splits.train.image_shape[-1] == 1:
            ds = ds.replace(x=rgb_to_gray(ds.x))
        return ds
    fs = spec.from_split
    held_out = getattr(splits, fs.split)
    idx = np.flatnonzero(held_out.y == held_out.class_index(fs.class_name))[: fs.count]
    if len(idx) < fs.count:
        raise ValueError(f"the {fs.split} split has only {len(idx)} images of class {fs.class_name}")
    return held_out.subset(idx, name=f"{fs.split}:{fs.class_name}")


def _attack_params(cfg: ExperimentConfig, splits: Splits, seed: int) -> dict[str, Any]:
    """Constructor parameters of the attack ``cfg.attack`` names (its ``kind`` is the registry name)."""
    spec = cfg.attack
    if isinstance(spec, MislabelSpec):
        images = external_images(cfg, spec, splits)
        tag = spec.tag or (Path(spec.images).name if spec.images else images.name)
        return {"images": images, "target": spec.target, "source_tag": tag}
    if isinstance(spec, BackdoorSpec):
        params = spec.model_dump(exclude={"kind", "trigger", "trigger_params"})
        return {**params, "perturbation": trigger_for(spec), "trigger_name": spec.trigger, "seed": seed}
    if isinstance(spec, ControlSpec):
        return {}
    return {**spec.model_dump(exclude={"kind"}), "seed": seed}  # label_flip, random_label_flip


def build_attack(cfg: ExperimentConfig, splits: Splits, seed: int) -> PoisoningAttack:
    """The attack of ``cfg`` for one seed, built by the attack factory."""
    return get_attack(cfg.attack.kind, **_attack_params(cfg, splits, seed))


def attack_targets(cfg: ExperimentConfig, splits: Splits) -> AttackTargets:
    """The classes a run watches (metrics override the attack's) and, for backdoors, the trigger.

    A mislabel attack drawn from a held-out split has no ``source`` of its own: the class it drew
    from is the one whose test images should now be sent to the target.
    """
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


def experiment_splits(cfg: ExperimentConfig) -> Splits:
    """The data of ``cfg``: its dataset from the config's ``data_dir``, else from where
    :func:`poisonlab.data.catalog.resolve_data_dir` finds it (the rule of every command)."""
    data_dir = cfg.path(cfg.dataset.data_dir) if cfg.dataset.data_dir else None
    return load_named_splits(cfg.dataset.name, data_dir=data_dir, seed=cfg.dataset.split_seed)


def check_experiment(cfg: ExperimentConfig, splits: Splits | None = None) -> None:
    """Build every seed's attack, and with ``splits`` poison the training split once with each
    attack that needs no model (the result is dropped): a bad attack setting fails now, before
    a clean baseline trains for minutes (13 on CIFAR-10 on 2 cores) and then the attack.

    Parameters
    ----------
    cfg
        The run.
    splits
        Its data. Without it, the attacks that need none are built (every kind but ``mislabel``,
        whose images are loaded against the data's classes and image size); with it, every
        attack, and the classes the run watches are resolved and the robustness and mitigation
        blocks checked against the data (canaries per class, trusted share size) too.

    Raises
    ------
    ValueError, FileNotFoundError
        The first attack that cannot be built, with the library's message.
    """
    if splits is not None:
        attack_targets(cfg, splits)
        check_robustness(cfg, splits)
    for seed in cfg.seeds:
        if splits is not None:
            attack = build_attack(cfg, splits, seed)
            if not getattr(attack, "needs_model", False):
                # poisoning is seconds (vectorised triggers, index draws); a count the class cannot
                # give or a trigger that does not fit the images fails here, not after the baseline
                attack.poison(splits.train)
        elif not isinstance(cfg.attack, MislabelSpec):
            get_attack(cfg.attack.kind, **_attack_params(cfg, None, seed))  # type: ignore[arg-type]
