"""Config of a single poisoning run: dataset, model + training, attack, integration mode, seeds,
metrics.

Files are YAML or JSON; unknown keys anywhere are errors. Paths inside a config are resolved
relative to the config file, and ``${POISONLAB_SHARED}`` (default ``../shared`` next to the
working directory) may be used for the chapter's photos.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SerializerFunctionWrapHandler, ValidationError, model_serializer, model_validator

from poisonlab.experiments.common.specs import (
    DatasetSpec,
    Strict,
    TrainingSpec,
    read_config_mapping,
    shared_dir,
    validation_message,
)
from poisonlab.experiments.single.robust_config import AdversarialTrainingSpec, RobustnessSpec
from poisonlab.training.config import TrainConfig
from poisonlab.training.options import Seed

__all__ = [
    "AttackSpec",
    "BackdoorSpec",
    "ControlSpec",
    "ExperimentConfig",
    "FromSplit",
    "LabelFlipSpec",
    "MetricsSpec",
    "MislabelSpec",
    "RandomLabelFlipSpec",
    "load_experiment",
    "parse_experiment",
]


class FromSplit(Strict):
    """External images taken from a held-out split (for datasets without external photos)."""

    split: Literal["val", "test"] = "val"
    class_name: str
    count: int = Field(25, ge=1)


class MislabelSpec(Strict):
    """External images injected with the target label (the chapter's Rutan Boomerang attack).

    ``exclude`` names files of an image folder to leave out: the chapter's companion folder holds
    26 Rutan Boomerang JPEGs and a WebP copy of ``rb-14``; the notebook read the 26
    (``exclude: [rb-14.webp]``), reading the folder whole gives 27.
    """

    kind: Literal["mislabel"]
    images: str | None = Field(None, description="image folder, prepared folder or .npz")
    from_split: FromSplit | None = None
    target: str
    tag: str | None = None
    exclude: list[str] = Field(
        default_factory=list, description="file names in the 'images' folder to leave out"
    )

    @model_validator(mode="after")
    def _check(self) -> MislabelSpec:
        if (self.images is None) == (self.from_split is None):
            raise ValueError("mislabel needs exactly one of 'images' (a path) or 'from_split'")
        if self.exclude and self.images is None:
            raise ValueError("'exclude' names files of an 'images' folder; this mislabel has none")
        return self


class LabelFlipSpec(Strict):
    """Training images of ``source`` relabelled ``target`` (a count or a fraction of them)."""

    kind: Literal["label_flip"]
    source: str
    target: str
    count: int | None = None
    fraction: float | None = None


class RandomLabelFlipSpec(Strict):
    """A fraction of all training labels replaced by random other classes."""

    kind: Literal["random_label_flip"]
    fraction: float


class BackdoorSpec(Strict):
    """Source images stamped with a registered trigger and relabelled ``target``."""

    kind: Literal["backdoor"]
    trigger: str = "pattern"
    trigger_params: dict = Field(default_factory=dict)
    source: str | None = Field(..., description="source class; null = all-to-one")
    target: str
    count: int | None = None
    fraction: float | None = None
    fraction_of: Literal["source", "train"] = "source"
    integration: Literal["concat", "replace"] = "concat"


class ControlSpec(Strict):
    """No poison: the same integration as an attack, to measure what the integration alone costs."""

    kind: Literal["none"]


AttackSpec = Annotated[
    MislabelSpec | LabelFlipSpec | RandomLabelFlipSpec | BackdoorSpec | ControlSpec,
    Field(discriminator="kind"),
]


class MetricsSpec(Strict):
    """What to measure besides clean accuracy and (for backdoors) attack success rate."""

    source: str | None = Field(None, description="count source->target confusions (default: attack's)")
    target: str | None = None
    external_images: list[str] = Field(default_factory=list, description="photos to predict before/after")


class ExperimentConfig(Strict):
    """One poisoning run: the attack, how its poison reaches the model, and over which seeds.

    ``integration`` is ``retrain`` (train from scratch on the poisoned set), ``finetune`` (fine-tune
    the clean model on the poisoned set with ``finetune``) or ``finetune_poison_only`` (fine-tune
    on the poisoned samples alone, the chapter's Rutan Boomerang procedure).

    ``baseline`` is ``shared`` (one clean model, the training config's seed, for every seed: the
    spread over seeds is then the attack's and the poisoned training's only) or ``per_seed``
    (seed ``s`` trains its own clean model with training seed ``s``, and the poisoned model of
    seed ``s`` is fine-tuned from / compared with it: the spread includes the clean model's
    training variance, which is what a replicate of the whole experiment would see).
    """

    name: str
    description: str = ""
    dataset: DatasetSpec = DatasetSpec()
    training: TrainingSpec = TrainingSpec()
    attack: AttackSpec
    integration: Literal["retrain", "finetune", "finetune_poison_only"] = "retrain"
    finetune: TrainingSpec = TrainingSpec(preset="chapter-finetune")
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    baseline: Literal["shared", "per_seed"] = "shared"
    metrics: MetricsSpec = MetricsSpec()
    robustness: RobustnessSpec | None = None
    mitigation: AdversarialTrainingSpec | None = None
    base_dir: str = Field(".", description="set by the loader: folder of the config file")

    @model_validator(mode="after")
    def _unique_seeds(self) -> ExperimentConfig:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        return self

    @model_validator(mode="after")
    def _robustness_inputs(self) -> ExperimentConfig:
        rob = self.robustness
        if rob is not None and rob.external_triggers and not self.metrics.external_images:
            raise ValueError("robustness.external_triggers needs photos in metrics.external_images")
        if rob is not None and rob.canaries is not None and rob.canaries.split == "val" and self.mitigation:
            # the mitigation fine-tunes on the val split: canaries must stay out of every training set
            raise ValueError(
                "canaries from the val split would be trained on by the mitigation; use split: test"
            )
        return self

    @model_serializer(mode="wrap")
    def _without_absent_blocks(self, handler: SerializerFunctionWrapHandler) -> dict:
        # a run without the optional blocks writes the same results.json/run.json as before they existed
        data = handler(self)
        for key in ("robustness", "mitigation"):
            if key in data and data[key] is None:
                del data[key]
        return data

    def clean_train_config(self, seed: int | None = None) -> TrainConfig:
        """Training config of the clean baseline: the shared one, or with ``baseline: per_seed``
        and a ``seed``, that seed's (the training seed set to it)."""
        cfg = self.training.resolve(self.dataset.name, self.base_dir)
        if seed is None or self.baseline == "shared":
            return cfg
        return cfg.model_copy(update={"seed": seed})

    def poison_train_config(self, seed: int) -> TrainConfig:
        """Training config of the poisoned model: the clean recipe (retrain) or the fine-tune one."""
        spec = self.training if self.integration == "retrain" else self.finetune
        cfg = spec.resolve(self.dataset.name, self.base_dir)
        return cfg.model_copy(update={"seed": seed})

    def path(self, value: str) -> Path:
        """A path from the config, with variables expanded, relative to the config's folder."""
        expanded = os.path.expandvars(value.replace("${POISONLAB_SHARED}", shared_dir()))
        p = Path(expanded).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment config (YAML or JSON)."""
    return parse_experiment(read_config_mapping(path), origin=str(path))


def parse_experiment(data: dict, origin: str = "config") -> ExperimentConfig:
    """Validate an experiment mapping; ValueError names ``origin`` and the first problems.

    The training configs are resolved and every seed's attack is built (all kinds but
    ``mislabel``, whose images need the data: see
    :func:`~poisonlab.experiments.single.build.check_experiment`), so that bad settings such as
    ``fraction: 1.5`` fail now rather than after the clean baseline has trained.
    """
    from poisonlab.experiments.single.build import check_experiment  # build imports this module

    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(validation_message(exc, "experiment config", origin)) from exc
    cfg.clean_train_config()  # surface bad training settings now, not after an hour of training
    cfg.poison_train_config(cfg.seeds[0])
    try:
        check_experiment(cfg)
    except ValueError as exc:
        raise ValueError(f"invalid experiment config {origin}: attack ({cfg.attack.kind}): {exc}") from None
    return cfg
