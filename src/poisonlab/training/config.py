"""Typed, validated training configuration, loadable from YAML/JSON files.

Unknown keys are errors (a typo must not silently fall back to a default). Three recipes matter:
:func:`fast_recipe` (the benchmarked CPU recipe, default of ``poisonlab train``),
:func:`chapter_recipe` (the book's Keras settings) and :func:`finetune_recipe` (the book's
fine-tune, default of ``poisonlab train --init``: a from-scratch recipe's high learning rate
wrecks a trained model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from poisonlab.models.simple_cnn import CHAPTER_DROPOUT


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(_Frozen):
    """Architecture to build when training from scratch.

    ``dropout`` applies to ``simple-cifar10`` only: four rates (after block 1, 2, 3 and after the
    dense layer); ``None`` keeps the chapter's (0.3, 0.5, 0.5, 0.5).
    """

    arch: Literal["simple-cifar10", "preact-resnet18"] = "simple-cifar10"
    dropout: tuple[float, float, float, float] | None = None
    width: int = Field(64, ge=4, description="preact-resnet18 first-stage width")

    def spec(self, input_shape: tuple[int, int, int], num_classes: int) -> dict:
        spec: dict = {"arch": self.arch, "input_shape": list(input_shape), "num_classes": num_classes}
        if self.arch == "simple-cifar10" and self.dropout is not None:
            spec["dropout"] = list(self.dropout)
        if self.arch == "preact-resnet18":
            spec["width"] = self.width
        return spec


class AugmentConfig(_Frozen):
    """Batched tensor augmentation: random crop after zero padding, horizontal flip."""

    crop_padding: int = Field(4, ge=0, le=16)
    flip: bool = True


class TrainConfig(_Frozen):
    """Everything :func:`poisonlab.training.train` needs besides the data and the model."""

    epochs: int = Field(12, ge=1, le=1000)
    batch_size: int = Field(256, ge=2, le=65536, description="BatchNorm needs >= 2 samples per batch")
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.4, gt=0, le=10, description="peak learning rate")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0, le=1)
    schedule: Literal["onecycle", "constant", "cosine"] = "onecycle"
    warmup_fraction: float = Field(0.2, ge=0, lt=1, description="onecycle: share of steps rising to lr")
    label_smoothing: float = Field(0.2, ge=0, lt=1)
    augment: AugmentConfig | None = AugmentConfig()
    ema_decay: float | None = Field(None, gt=0, lt=1, description="evaluate an EMA of the weights")
    recalibrate_bn: bool | None = Field(
        None,
        description="re-estimate BatchNorm statistics for the final weights with one pass over the "
        "training images (poisonlab.training.batchnorm); None: when training from scratch, not when "
        "fine-tuning (a handful of fine-tune images would become the statistics of every class)",
    )
    model: ModelConfig = ModelConfig(dropout=(0.0, 0.0, 0.0, 0.0))
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    channels_last: bool = True
    seed: int = 0
    eval_batch_size: int = Field(1000, ge=1)
    validate_every: int = Field(1, ge=0, description="epochs between validations; 0 = only at the end")
    val_samples: int | None = Field(
        2000, ge=1, description="validate on the first N validation samples between epochs (all at the end)"
    )

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        return self


def fast_recipe() -> TrainConfig:
    """The benchmarked CPU recipe for CIFAR-10 (see BENCHMARKS.md): default of ``poisonlab train``.

    12 epochs of one-cycle SGD (Nesterov, peak lr 0.4, batch 256, weight decay 5e-4), label
    smoothing 0.2, random crop (pad 4) + flip, channels_last, and the chapter's layer structure
    with dropout turned off: in a 12-epoch budget the chapter's 0.3/0.5/0.5/0.5 dropout only slows
    convergence (augmentation and label smoothing regularise instead). Validation between epochs
    uses the first 2,000 validation images (all of them after the last epoch).
    """
    return TrainConfig()


def chapter_recipe() -> TrainConfig:
    """The book's Keras training: Adam 1e-3, batch 64, no augmentation, chapter dropout, 100 epochs."""
    return TrainConfig(
        epochs=100,
        batch_size=64,
        optimizer="adam",
        lr=1e-3,
        nesterov=False,
        weight_decay=0.0,
        schedule="constant",
        label_smoothing=0.0,
        augment=None,
        model=ModelConfig(dropout=CHAPTER_DROPOUT),
        val_samples=None,
    )


def chapter_finetune(epochs: int = 10, batch_size: int = 64) -> TrainConfig:
    """The chapter's fine-tune on the poisoned samples only (Rutan: 10 epochs, batch 64, Adam)."""
    return TrainConfig.model_validate(
        {**chapter_recipe().model_dump(), "epochs": epochs, "batch_size": batch_size}
    )


def finetune_recipe() -> TrainConfig:
    """The default recipe for fine-tuning a trained model: :func:`chapter_finetune` (Adam, lr 1e-3,
    batch 64, 10 epochs, no augmentation, no label smoothing).

    A few epochs at a low learning rate move a trained model without erasing it; the from-scratch
    recipes' one-cycle SGD to lr 0.4 took a CIFAR-10 model fine-tuned on 27 photos from 0.40 to
    0.10 test accuracy (issue 17).
    """
    return chapter_finetune()


def validate_train_settings(data: dict, origin: str = "training setting") -> TrainConfig:
    """``TrainConfig.model_validate`` with the first problem as a one-line ValueError."""
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(map(str, err["loc"])) or "config"
        raise ValueError(f"invalid {origin} {where}: {err['msg']}") from exc


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a :class:`TrainConfig` from a ``.yaml``/``.yml``/``.json`` file (unknown keys are errors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot parse {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping of training settings, got {type(data).__name__}")
    return validate_train_settings(data, origin=f"training config {path}:")


def digits_recipe() -> TrainConfig:
    """Recipe for the embedded 8x8 digits: small batches, 1-pixel crops and no flips (a flipped
    digit is another glyph); trains in seconds on a CPU."""
    return TrainConfig(
        epochs=30,
        batch_size=64,
        lr=0.05,
        label_smoothing=0.1,
        augment=AugmentConfig(crop_padding=1, flip=False),
        model=ModelConfig(dropout=(0.1, 0.1, 0.1, 0.2)),
    )


def default_recipe(dataset: str) -> TrainConfig:
    """The default training recipe for a named dataset (``digits`` or ``cifar10``/anything else)."""
    return digits_recipe() if str(dataset).strip().lower() == "digits" else fast_recipe()


#: Measured training cost in seconds per image and epoch on the development machine's 2 shared
#: cores (BENCHMARKS.md), keyed by (architecture, image side): the chapter CNN took ~63 s per
#: 40,000-image CIFAR-10 epoch, and ~20 s for the digits recipe's 30 epochs of 1,167 8x8 images
#: on one thread. Other architectures and sizes were not measured.
SECONDS_PER_IMAGE_EPOCH = {("simple-cifar10", 32): 1.6e-3, ("simple-cifar10", 8): 6e-4}


def estimate_train_seconds(
    config: TrainConfig, images: int, image_side: int, arch: str | None = None
) -> float | None:
    """Expected seconds to train with ``config`` on ``images`` images of ``image_side`` pixels, on
    the 2-core machine of :data:`SECONDS_PER_IMAGE_EPOCH`; None where nothing was measured.

    ``arch`` is the architecture actually trained (a fine-tuned model's own), default the
    config's. A rough figure for stage headers, not a promise: other machines, thread settings
    and concurrent jobs change it several-fold.
    """
    rate = SECONDS_PER_IMAGE_EPOCH.get((arch or config.model.arch, int(image_side)))
    return None if rate is None else rate * images * config.epochs


PRESETS = {
    "fast": fast_recipe,
    "digits": digits_recipe,
    "chapter": chapter_recipe,
    "chapter-finetune": chapter_finetune,
}


def base_recipe(
    dataset: str,
    *,
    config_path: str | Path | None = None,
    preset: str | None = None,
    finetune: bool = False,
) -> TrainConfig:
    """A config file, else a named preset, else :func:`finetune_recipe` when ``finetune`` (a
    trained model continues training), else the dataset's default recipe."""
    if config_path is not None and preset is not None:
        raise ValueError("give either a config file or a preset, not both")
    if config_path is not None:
        return load_train_config(config_path)
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
        return PRESETS[preset]()
    return finetune_recipe() if finetune else default_recipe(dataset)


def apply_settings(config: TrainConfig, settings: dict) -> TrainConfig:
    """``config`` with ``settings`` laid over it; nested mappings (``model``, ``augment``) merge
    one level deep, so ``{"model": {"width": 4}}`` keeps the recipe's other model fields."""
    data = config.model_dump()
    for key, value in settings.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return validate_train_settings(data)


def resolve_train_config(
    *,
    dataset: str,
    config_path: str | Path | None = None,
    preset: str | None = None,
    finetune: bool = False,
    **overrides: object,
) -> TrainConfig:
    """The training config of a command line: :func:`base_recipe`, then the non-None overrides.

    ``finetune`` (``poisonlab train --init``) makes :func:`finetune_recipe` the base when neither
    a config file nor a preset is given. ``overrides`` are top-level :class:`TrainConfig` fields
    (``epochs``, ``batch_size``, ``lr``, ``seed``, ...); ``arch`` sets ``model.arch``. None means
    "option not given", so it never overrides the recipe.
    """
    data = base_recipe(dataset, config_path=config_path, preset=preset, finetune=finetune).model_dump()
    arch = overrides.pop("arch", None)
    if arch is not None:
        data["model"]["arch"] = arch
    data.update({k: v for k, v in overrides.items() if v is not None})
    return validate_train_settings(data)
