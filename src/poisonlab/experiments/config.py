"""Declarative experiment configs: dataset, model + training, attack, integration mode, seeds, metrics.

Files are YAML or JSON; unknown keys anywhere are errors. Paths inside a config are resolved
relative to the config file, and ``${POISONLAB_SHARED}`` (default ``../shared`` next to the
working directory) may be used for the chapter's photos.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from poisonlab.training.config import PRESETS, TrainConfig


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatasetSpec(_Strict):
    name: Literal["cifar10", "digits"] = "digits"
    data_dir: str | None = None
    split_seed: int = 0


class TrainingSpec(_Strict):
    """A preset name, a config file, or inline settings (``settings`` overrides the preset)."""

    preset: str | None = None
    file: str | None = None
    settings: dict = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> TrainingSpec:
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; expected one of {sorted(PRESETS)}")
        if self.preset is not None and self.file is not None:
            raise ValueError("give a training preset or a file, not both")
        return self


class FromSplit(_Strict):
    """External images taken from a held-out split (for datasets without external photos)."""

    split: Literal["val", "test"] = "val"
    class_name: str
    count: int = Field(25, ge=1)


class MislabelSpec(_Strict):
    kind: Literal["mislabel"]
    images: str | None = Field(None, description="image folder, prepared folder or .npz")
    from_split: FromSplit | None = None
    target: str
    tag: str | None = None

    @model_validator(mode="after")
    def _check(self) -> MislabelSpec:
        if (self.images is None) == (self.from_split is None):
            raise ValueError("mislabel needs exactly one of 'images' (a path) or 'from_split'")
        return self


class LabelFlipSpec(_Strict):
    kind: Literal["label_flip"]
    source: str
    target: str
    count: int | None = None
    fraction: float | None = None


class RandomLabelFlipSpec(_Strict):
    kind: Literal["random_label_flip"]
    fraction: float


class BackdoorSpec(_Strict):
    kind: Literal["backdoor"]
    trigger: str = "pattern"
    trigger_params: dict = Field(default_factory=dict)
    source: str | None = Field(..., description="source class; null = all-to-one")
    target: str
    count: int | None = None
    fraction: float | None = None
    fraction_of: Literal["source", "train"] = "source"
    integration: Literal["concat", "replace"] = "concat"


class ControlSpec(_Strict):
    """No poison: the same integration as an attack, to measure what the integration alone costs."""

    kind: Literal["none"]


AttackSpec = Annotated[
    MislabelSpec | LabelFlipSpec | RandomLabelFlipSpec | BackdoorSpec | ControlSpec,
    Field(discriminator="kind"),
]


class MetricsSpec(_Strict):
    """What to measure besides clean accuracy and (for backdoors) attack success rate."""

    source: str | None = Field(None, description="count source->target confusions (default: attack's)")
    target: str | None = None
    external_images: list[str] = Field(default_factory=list, description="photos to predict before/after")


class ExperimentConfig(_Strict):
    name: str
    description: str = ""
    dataset: DatasetSpec = DatasetSpec()
    training: TrainingSpec = TrainingSpec()
    attack: AttackSpec
    integration: Literal["retrain", "finetune", "finetune_poison_only"] = "retrain"
    finetune: TrainingSpec = TrainingSpec(preset="chapter-finetune")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    metrics: MetricsSpec = MetricsSpec()
    base_dir: str = Field(".", description="set by the loader: folder of the config file")

    def clean_train_config(self) -> TrainConfig:
        return _resolve(self.training, self.dataset.name, self.base_dir)

    def poison_train_config(self, seed: int) -> TrainConfig:
        """Training config of the poisoned model: the clean recipe (retrain) or the fine-tune one."""
        spec = self.training if self.integration == "retrain" else self.finetune
        cfg = _resolve(spec, self.dataset.name, self.base_dir)
        return cfg.model_copy(update={"seed": seed})

    def path(self, value: str) -> Path:
        """A path from the config, with variables expanded, relative to the config's folder."""
        expanded = os.path.expandvars(value.replace("${POISONLAB_SHARED}", _shared_dir()))
        p = Path(expanded).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p


def _shared_dir() -> str:
    return os.environ.get("POISONLAB_SHARED") or str(Path.cwd().parent / "shared")


def _resolve(spec: TrainingSpec, dataset: str, base_dir: str) -> TrainConfig:
    from poisonlab.training.config import default_recipe, load_train_config, validate_train_settings

    if spec.file is not None:
        base = load_train_config(Path(base_dir) / spec.file)
    elif spec.preset is not None:
        base = PRESETS[spec.preset]()
    else:
        base = default_recipe(dataset)
    data = base.model_dump()
    for key, value in spec.settings.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return validate_train_settings(data)


def read_config_mapping(path: str | Path, what: str = "experiment config") -> dict:
    """The mapping stored in a YAML/JSON config file, with ``base_dir`` set to the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping, got {type(data).__name__}")
    data.setdefault("base_dir", str(path.parent.resolve()))
    return data


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment config (YAML or JSON)."""
    return parse_experiment(read_config_mapping(path), origin=str(path))


def parse_experiment(data: dict, origin: str = "config") -> ExperimentConfig:
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]]
        raise ValueError(f"invalid experiment config {origin}: " + "; ".join(lines)) from exc
    cfg.clean_train_config()  # surface bad training settings now, not after an hour of training
    cfg.poison_train_config(cfg.seeds[0])
    return cfg
