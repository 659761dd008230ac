"""The chapter's "Adversarial Training" as a step of a single run: unlearn the backdoor of each
seed's poisoned model on trusted clean data, against a plain fine-tune on the same data.

The chapter describes adversarial training as training "with both clean and poisoned data (with
correct labels)". Here each poisoned model is fine-tuned on a trusted clean share of the
*validation* split (never the test split the figures are measured on) plus trigger-stamped
copies of a ``fraction`` of it that keep their true labels
(:func:`poisonlab.defenses.mitigation.adversarial_training.adversarial_training`; the unlearning
patch of Wang et al., "Neural Cleanse", IEEE S&P 2019, and the data side of Madry et al.,
ICLR 2018). The control fine-tunes the same poisoned model on the same trusted share without
the copies, with the same recipe and epochs: what the mitigation adds beyond more clean
training is the difference between the two.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from poisonlab.data.dataset import Dataset, Splits
from poisonlab.defenses.mitigation.adversarial_training import adversarial_training, trigger_augmented_dataset
from poisonlab.experiments.common.measure import AttackTargets, ModelMeasurement
from poisonlab.experiments.single.config import ExperimentConfig
from poisonlab.experiments.single.robust_config import bind_triggers
from poisonlab.models.base import PoisonlabModel
from poisonlab.training import TrainConfig, train

__all__ = ["MitigationRun", "mitigation_config", "mitigation_triggers", "run_mitigation", "trusted_share"]


@dataclass
class MitigationRun:
    """One seed's mitigated and control models, measured like the poisoned one.

    Attributes
    ----------
    trusted_hash : str
        sha256 of the trusted share (:func:`trusted_share` with the run's seed rebuilds it).
    trusted_size, augmented_size : int
        Images of the trusted share, and of it plus the triggered copies.
    triggers : list of str
        Labels of the triggers stamped on the copies.
    mitigated, control : ModelMeasurement
        The adversarially fine-tuned model and the plain fine-tune on the same share.
    mitigated_history, control_history : list of dict
        Per-epoch statistics (validation on the val images outside the trusted share).
    mitigated_checks, control_checks : dict or None
        Their robustness checks, when the run has a robustness block.
    """

    trusted_hash: str
    trusted_size: int
    augmented_size: int
    triggers: list[str]
    mitigated: ModelMeasurement
    control: ModelMeasurement
    mitigated_history: list[dict]
    control_history: list[dict]
    mitigated_checks: dict | None = None
    control_checks: dict | None = None


def trusted_share(val: Dataset, size: int, seed: int) -> tuple[Dataset, Dataset | None]:
    """``size`` val images drawn with ``seed`` (``np.sort(default_rng(seed).choice(len(val),
    size, replace=False))``) and the rest of the val split (None when nothing is left).

    Raises
    ------
    ValueError
        ``size`` larger than the validation split.
    """
    if size > len(val):
        raise ValueError(f"trusted_size={size} is larger than the validation split ({len(val)} images)")
    idx = np.sort(np.random.default_rng(seed).choice(len(val), size=size, replace=False))
    rest = np.setdiff1d(np.arange(len(val)), idx)
    share = val.subset(idx, name=f"{val.name}[trusted {size}, seed {seed}]")
    return share, (val.subset(rest) if rest.size else None)


def mitigation_config(cfg: ExperimentConfig, seed: int) -> TrainConfig:
    """The fine-tune recipe of both mitigation models: the block's ``training`` (default the
    config's ``finetune``) with its ``epochs`` and the run's seed."""
    spec = cfg.mitigation
    recipe = (spec.training or cfg.finetune).resolve(cfg.dataset.name, cfg.base_dir)
    return recipe.model_copy(update={"epochs": spec.epochs, "seed": seed})


def mitigation_triggers(cfg: ExperimentConfig, targets: AttackTargets, shape: tuple[int, int, int]) -> dict:
    """``{label: trigger}`` of the triggered copies: the block's list, else the attack's own
    trigger for a backdoor, else every registered trigger (size-adapted defaults)."""
    spec = cfg.mitigation
    if spec.triggers is None and targets.trigger is not None:
        return {f"attack:{targets.trigger_name}": targets.trigger}
    return bind_triggers(spec.triggers, shape)


def run_mitigation(
    cfg: ExperimentConfig,
    splits: Splits,
    poisoned: PoisonlabModel,
    targets: AttackTargets,
    seed: int,
    *,
    measured: Callable[[PoisonlabModel], ModelMeasurement],
    checked: Callable[[PoisonlabModel], dict | None],
    device: str,
    progress: bool,
) -> MitigationRun:
    """Fine-tune ``poisoned`` with and without triggered copies and measure both.

    Parameters
    ----------
    cfg
        The run; its ``mitigation`` block is set.
    splits
        The data; the trusted share comes from ``splits.val``.
    poisoned
        The seed's poisoned model (each fine-tune works on a copy).
    targets
        The classes the run watches and the attack's trigger.
    seed
        The run's seed: the trusted draw, the triggered copies and the training.
    measured, checked
        The run's measurement and robustness checks of one model.
    device, progress
        Torch device and progress bars.
    """
    spec = cfg.mitigation
    trusted, rest = trusted_share(splits.val, spec.trusted_size, seed)
    triggers = mitigation_triggers(cfg, targets, trusted.image_shape)
    recipe = mitigation_config(cfg, seed)
    augmented = trigger_augmented_dataset(trusted, triggers=triggers, fraction=spec.fraction, seed=seed)
    common: dict[str, Any] = {"val_data": rest, "device": device, "progress": progress}
    mitigated = adversarial_training(
        trusted, recipe, triggers=triggers, fraction=spec.fraction, seed=seed, model=poisoned, **common
    )
    control = train(trusted, recipe, model=poisoned, **common)
    return MitigationRun(
        trusted_hash=trusted.content_hash,
        trusted_size=len(trusted),
        augmented_size=len(augmented),
        triggers=list(triggers),
        mitigated=measured(mitigated.model),
        control=measured(control.model),
        mitigated_history=[h.__dict__ for h in mitigated.history],
        control_history=[h.__dict__ for h in control.history],
        mitigated_checks=checked(mitigated.model),
        control_checks=checked(control.model),
    )
