"""Config of the clean-label attack benchmark (YAML/JSON, unknown keys are errors).

The benchmark follows the protocol of Schwarzschild et al., "Just How Toxic is Data Poisoning?
A Unified Benchmark for Backdoor and Data Poisoning Attacks", ICML 2021 (arXiv:2006.12557),
scaled to a CPU: per trial a random correctly classified test image (the *victim*) and a random
adversarial *target* class; the attacker perturbs ``budget`` x ``train_size`` training images of
the target class within ``eps``; the victim model is then trained in one of three settings and
the trial succeeds when the victim image (with the trigger, for backdoor attacks) is classified
as the target class.

Example (``experiments/clean_label/transfer-cifar10.yaml``)::

    name: clean-label-transfer-cifar10
    dataset: {name: cifar10}
    setting: transfer_finetune        # transfer_linear | transfer_finetune | scratch
    pretrain_size: 20000
    train_size: 2500
    budget: 0.01
    eps: 0.0313725                    # 8/255
    trials: 8
    pretraining: {preset: fast}
    victim_training: {settings: {epochs: 10, lr: 0.01, schedule: constant}}
    attacks:
      - {name: FC, attack: feature_collision, params: {steps: 200}}
      - {name: HTBD, attack: hidden_trigger, patch: {size: 5, offset: 3}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from poisonlab.attacks import ATTACKS
from poisonlab.experiments.common.specs import (
    DatasetSpec,
    DefenseSpec,
    Strict,
    TrainingSpec,
    read_config_mapping,
    validation_message,
)
from poisonlab.training.config import TrainConfig
from poisonlab.training.options import Seed

__all__ = [
    "CRAFTED_ATTACKS",
    "TRIAL_PARAMS",
    "CleanLabelConfig",
    "CraftedAttackSpec",
    "LinearHead",
    "PatchSpec",
    "load_clean_label",
    "parse_clean_label",
]

#: Every attack that crafts its poisons against a model (their classes say so: ``crafted = True``).
CRAFTED_ATTACKS: tuple[str, ...] = tuple(ATTACKS.where(crafted=True))
#: set by the benchmark for every trial; a config may not override them
TRIAL_PARAMS = (
    "model",
    "victims",
    "source",
    "target",
    "count",
    "fraction",
    "eps",
    "seed",
    "device",
    "trigger",
    "trigger_name",
)


class PatchSpec(Strict):
    """The chapter-style patch trigger (shipped ``htbd.png``) of the backdoor attacks."""

    size: int = Field(8, ge=1, description="patch side in pixels")
    offset: int = Field(5, ge=0, description="distance of the patch from the bottom-right corner")


class CraftedAttackSpec(Strict):
    """One attack row: display name, registry name, constructor parameters."""

    name: str = Field(..., min_length=1)
    attack: str = Field(..., description="a crafted attack of the registry (see CRAFTED_ATTACKS)")
    params: dict[str, Any] = Field(default_factory=dict)
    patch: PatchSpec = PatchSpec()
    eps: float | None = Field(None, gt=0, le=1, description="overrides the benchmark's eps for this row")

    @model_validator(mode="after")
    def _check(self) -> CraftedAttackSpec:
        if self.attack not in CRAFTED_ATTACKS:
            raise ValueError(f"attack must be one of {list(CRAFTED_ATTACKS)}, got {self.attack!r}")
        fixed = sorted(set(self.params) & set(TRIAL_PARAMS))
        if fixed:
            raise ValueError(f"params may not set {fixed}: the benchmark sets them for every trial")
        return self


class LinearHead(Strict):
    """transfer_linear: multinomial logistic regression on the frozen penultimate features."""

    c: float = Field(1.0, gt=0, description="inverse L2 strength (sklearn's C)")
    max_iter: int = Field(500, ge=10)


class CleanLabelConfig(Strict):
    """The benchmark: setting, data sizes, poison budget and eps, trials, attacks and defenses."""

    name: str
    description: str = ""
    dataset: DatasetSpec = DatasetSpec()
    setting: Literal["transfer_linear", "transfer_finetune", "scratch"]
    pretrain_size: int | None = Field(
        None, ge=50, description="transfer: images the surrogate is pre-trained on (disjoint from train)"
    )
    train_size: int = Field(..., ge=20, description="the victim's training (fine-tune) set")
    eval_size: int = Field(2000, ge=10, description="test images for clean accuracy and backdoor ASR")
    trusted_size: int = Field(200, ge=10, description="validation images given to defenses as trusted")
    budget: float = Field(..., gt=0, le=0.5, description="poisons as a share of train_size")
    eps: float = Field(..., gt=0, le=1, description="L-inf radius, [0, 1] scale")
    trials: int = Field(..., ge=1)
    pretraining: TrainingSpec = TrainingSpec()
    victim_training: TrainingSpec = TrainingSpec()
    linear: LinearHead = LinearHead()
    attacks: list[CraftedAttackSpec] = Field(..., min_length=1)
    defenses: list[DefenseSpec] = Field(default_factory=list)
    device: str = "cpu"
    seed: Seed = 0
    base_dir: str = Field(".", description="set by the loader: folder of the config file")

    @model_validator(mode="after")
    def _check(self) -> CleanLabelConfig:
        names = [a.name for a in self.attacks]
        if len(set(names)) != len(names):
            raise ValueError(f"attack names must be unique, got {names}")
        transfer = self.setting.startswith("transfer")
        if transfer and self.pretrain_size is None:
            raise ValueError(f"setting {self.setting} needs pretrain_size (the surrogate's own data)")
        if not transfer and self.pretrain_size is not None:
            raise ValueError("setting scratch pre-trains on the training set itself; drop pretrain_size")
        if round(self.budget * self.train_size) < 1:
            raise ValueError(f"budget {self.budget} of {self.train_size} training images is < 1 poison")
        return self

    @property
    def num_poisons(self) -> int:
        """Poisons per trial: ``budget`` x ``train_size``, rounded."""
        return int(round(self.budget * self.train_size))

    def pretrain_config(self) -> TrainConfig:
        """Training config of the surrogate (pre-trained on its own data, or on the training set)."""
        return self.pretraining.resolve(self.dataset.name, self.base_dir)

    def victim_config(self) -> TrainConfig:
        """Training config of the victim (fine-tune, or from scratch in the ``scratch`` setting)."""
        return self.victim_training.resolve(self.dataset.name, self.base_dir)


def parse_clean_label(data: dict, origin: str = "config") -> CleanLabelConfig:
    """Validate a benchmark mapping and its training configs; ValueError names ``origin``."""
    try:
        cfg = CleanLabelConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(validation_message(exc, "clean-label config", origin)) from exc
    cfg.pretrain_config()  # surface bad training settings before any training starts
    cfg.victim_config()
    return cfg


def load_clean_label(path: str | Path) -> CleanLabelConfig:
    """Read and validate a clean-label benchmark config (YAML or JSON)."""
    return parse_clean_label(read_config_mapping(path, "clean-label config"), origin=str(path))
