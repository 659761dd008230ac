"""Config of the detection benchmark (YAML/JSON, unknown keys are errors).

The benchmark is a seeded grid: for every seed, every attack family (with its target modes) and
every poison rate it draws one *case* (trigger, colours, position, classes: see
:mod:`poisonlab.experiments.detection.cases`), trains a model from scratch on the poisoned set
and scores the detectors, which run with their frozen defaults: a config names detectors, never
their parameters, so the figures cannot be tuned to the grid.  Seeds below 1000 are the
development grid, seeds from 1000 on the held-out grid; a config uses one or the other.

Every model of the grid trains with one recipe: ``training`` (a preset, a file or inline
settings, as in the other experiments; default the dataset's recipe), with ``epochs`` laid over
it when set.  ``training: {preset: airbench}`` trains the airbench network (Jordan 2024,
arXiv:2404.00498) instead of the chapter CNN.  The loader builds the recipe's network for the
dataset's images before anything trains, so a network that cannot take them (airbench on the
8x8 digits) is a one-line error at load time.

Example (``experiments/detection/digits-dev.yaml``)::

    name: detection-digits-dev
    dataset: {name: digits}
    seeds: {start: 0, count: 3}
    rates: [0.005, 0.01, 0.05, 0.1]
    families: [patch, blended, watermark, warp, sig, clean_label_pgd, label_flip, random_flip]
    targets: [all_to_one, all_to_all]
    detectors: null            # the default screen (poisonlab.defenses.scan.SCREEN_METHODS)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from poisonlab.data.catalog import DATASET_SHAPES
from poisonlab.experiments.common.specs import (
    DatasetSpec,
    Strict,
    TrainingSpec,
    read_config_mapping,
    validation_message,
)
from poisonlab.models.registry import build_model
from poisonlab.training.config import TrainConfig
from poisonlab.training.options import SEED_MAX, Seed

__all__ = [
    "CLEAN_LABEL_FAMILIES",
    "DATASET_SHAPES",
    "FAMILIES",
    "HELD_OUT_START",
    "TARGET_MODES",
    "TRIGGER_FAMILIES",
    "AttackSettings",
    "DetectionConfig",
    "Seeds",
    "load_detection",
    "parse_detection",
]

#: families that stamp a trigger and relabel: all-to-one and all-to-all
TRIGGER_FAMILIES = ("patch", "blended", "watermark", "warp")
#: families that keep every label (poisons are target-class images): all-to-one only
CLEAN_LABEL_FAMILIES = ("sig", "clean_label_pgd")
#: every attack family, in report order
FAMILIES = (*TRIGGER_FAMILIES, *CLEAN_LABEL_FAMILIES, "label_flip", "random_flip")
TARGET_MODES = ("all_to_one", "all_to_all")
#: the first seed of the held-out grid
HELD_OUT_START = 1000

Family = Literal[
    "patch", "blended", "watermark", "warp", "sig", "clean_label_pgd", "label_flip", "random_flip"
]


def _ordered(value: tuple, what: str = "range") -> tuple:
    if value[0] > value[1]:
        raise ValueError(f"{what} must be (low, high) with low <= high, got {list(value)}")
    return value


#: a (low, high) range of blend ratios in [0, 1]
UnitRange = Annotated[
    tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]], AfterValidator(_ordered)
]


class Seeds(Strict):
    """Seeds ``start, start + 1, ..., start + count - 1``; each seed is one replicate of the grid."""

    start: Seed
    count: int = Field(..., ge=1)

    @model_validator(mode="after")
    def _one_side(self) -> Seeds:
        if self.start + self.count - 1 > SEED_MAX:
            raise ValueError(f"the last seed, {self.start + self.count - 1}, is above {SEED_MAX}")
        if self.start < HELD_OUT_START < self.start + self.count:
            raise ValueError(
                f"seeds {self.start}..{self.start + self.count - 1} mix the development grid "
                f"(< {HELD_OUT_START}) and the held-out grid (>= {HELD_OUT_START}); use one"
            )
        return self

    @property
    def values(self) -> list[int]:
        return list(range(self.start, self.start + self.count))

    @property
    def split(self) -> str:
        """``"dev"`` (seeds below 1000) or ``"held-out"`` (seeds from 1000 on)."""
        return "held-out" if self.start >= HELD_OUT_START else "dev"


class PatchSettings(Strict):
    """Local patch: a random-colour square of a random side at a random position per case."""

    size: tuple[int, int] = Field((2, 5), description="side range in pixels, inclusive")

    @field_validator("size")
    @classmethod
    def _size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] < 1:
            raise ValueError(f"size must be at least 1 pixel, got {list(value)}")
        return _ordered(value, "size")


class BlendedSettings(Strict):
    """Blended key (Chen et al. 2017): random noise or another training image."""

    alpha: UnitRange = (0.05, 0.2)
    image_share: float = Field(0.5, ge=0, le=1, description="probability the key is a training image")


class WatermarkSettings(Strict):
    """Trojan-style watermark: a random binary logo per case, blended towards white."""

    alpha: UnitRange = (0.3, 0.5)
    cells: int = Field(8, ge=1)
    density: float = Field(0.3, gt=0, le=1)


class WarpSettings(Strict):
    """WaNet (Nguyen and Tran 2021): a random field per case on a ``grid x grid`` control grid."""

    grid: int = Field(4, ge=2)
    strength: float = Field(0.5, gt=0)


class SigSettings(Strict):
    """SIG (Barni et al. 2019): horizontal sinusoid on target-class images, labels kept."""

    delta: float = Field(20 / 255, gt=0, le=1, description="amplitude on the [0, 1] scale")
    frequency: float = Field(6.0, gt=0)


class PgdSettings(Strict):
    """Label-consistent backdoor (Turner et al. 2019): PGD on target-class images, then a patch."""

    eps: float = Field(16 / 255, gt=0, le=1, description="L-inf radius on the [0, 1] scale")
    steps: int = Field(10, ge=1)


class AttackSettings(Strict):
    """The ranges cases are drawn from (defaults: the papers' settings)."""

    patch: PatchSettings = PatchSettings()
    blended: BlendedSettings = BlendedSettings()
    watermark: WatermarkSettings = WatermarkSettings()
    warp: WarpSettings = WarpSettings()
    sig: SigSettings = SigSettings()
    clean_label_pgd: PgdSettings = PgdSettings()


class DetectionConfig(Strict):
    """The grid (seeds x families x target modes x rates, plus controls) and what runs on it."""

    name: str = Field(..., min_length=1)
    description: str = ""
    dataset: DatasetSpec = DatasetSpec()
    seeds: Seeds
    rates: list[float] = Field([0.005, 0.01, 0.05, 0.1], min_length=1)
    families: list[Family] = Field(list(FAMILIES), min_length=1)
    targets: list[Literal["all_to_one", "all_to_all"]] = Field(list(TARGET_MODES), min_length=1)
    controls: bool = Field(True, description="one no-poison cell per seed")
    training: TrainingSpec = Field(
        TrainingSpec(), description="the recipe of every model (default: the dataset's recipe)"
    )
    epochs: int | None = Field(None, ge=1, le=1000, description="overrides the training recipe's epochs")
    detectors: list[str] | None = Field(
        None, description="detector names (frozen defaults); null runs the default screen"
    )
    attacks: AttackSettings = AttackSettings()
    device: str = "auto"
    base_dir: str = Field(".", description="set by the loader: folder of the config file")

    @field_validator("rates")
    @classmethod
    def _rates(cls, value: list[float]) -> list[float]:
        bad = [r for r in value if not 0 < r <= 0.5]
        if bad:
            raise ValueError(f"rates must be in (0, 0.5], got {bad}")
        if len(set(value)) != len(value):
            raise ValueError(f"rates must be unique, got {value}")
        return value

    @field_validator("families", "targets")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"entries must be unique, got {value}")
        return value

    @field_validator("detectors")
    @classmethod
    def _detectors(cls, value: list[str] | None) -> list[str] | None:
        from poisonlab.defenses import DEFENSES

        if value is None:
            return None
        if not value or len(set(value)) != len(value):
            raise ValueError(f"detectors must be a non-empty list of distinct names, got {value}")
        unknown = [d for d in value if d not in DEFENSES]
        if unknown:
            raise ValueError(f"unknown detector(s) {unknown}; expected names from {sorted(DEFENSES)}")
        return value

    def train_config(self, seed: int) -> TrainConfig:
        """The training recipe, ``epochs`` overridden when set, seeded with the grid seed.

        With the default ``training`` block this is the dataset's default recipe, dumped and
        validated exactly as before the block existed, so the models' cache keys are unchanged.
        """
        update: dict = {"seed": seed}
        if self.epochs is not None:
            update["epochs"] = self.epochs
        base = self.training.resolve(self.dataset.name, self.base_dir)
        return TrainConfig.model_validate({**base.model_dump(), **update})

    def recipe(self) -> dict[str, Any]:
        """What trains the grid's models, for records and the report.

        Returns
        -------
        dict
            ``arch`` (the network), ``recipe`` (``"preset airbench"``, ``"file x.yaml"`` or the
            dataset's default, with any inline settings) and ``epochs`` (after ``epochs``).
        """
        spec = self.training
        if spec.file is not None:
            name = f"file {spec.file}"
        elif spec.preset is not None:
            name = f"preset {spec.preset}"
        else:
            name = f"the {self.dataset.name} default recipe"
        if spec.settings:
            name += f" with {json.dumps(spec.settings, sort_keys=True)}"
        cfg = self.train_config(self.seeds.start)
        return {"arch": cfg.model.arch, "recipe": name, "epochs": cfg.epochs}

    def check_model(self) -> None:
        """Resolve the recipe and build its network for the dataset's images, on the meta device
        (no memory, no weights): a ValueError now instead of a crash after the first training,
        e.g. airbench (16x16 images at least) on the 8x8 digits."""
        shape, classes = DATASET_SHAPES[self.dataset.name]
        spec = self.train_config(self.seeds.start).model.spec(shape, classes)
        with torch.device("meta"):
            build_model(spec)

    def data_dir(self) -> Path | None:
        """``dataset.data_dir`` resolved against the config file's folder (None when not set)."""
        if self.dataset.data_dir is None:
            return None
        path = Path(self.dataset.data_dir).expanduser()
        return path if path.is_absolute() else Path(self.base_dir) / path

    def grid_settings(self) -> dict:
        """Everything that decides the grid's figures (what a resumed run must share)."""
        data = self.model_dump(mode="json")
        for key in ("base_dir", "device", "description"):
            data.pop(key)
        data["dataset"].pop("data_dir")
        training = data.pop("training")
        if self.training != TrainingSpec():
            # a named recipe is compared as what it resolves to: a training file edited between
            # sessions must not mix two recipes in one grid (the default stays out of the
            # settings, so folders written before the block existed still resume)
            recipe = self.train_config(self.seeds.start).model_dump(mode="json")
            recipe.pop("seed")
            data["training"] = {**training, "resolved": recipe}
        return data


def parse_detection(data: dict, origin: str = "config") -> DetectionConfig:
    """Validate a detection-benchmark mapping; ValueError names ``origin`` and the first problems.

    The training recipe is resolved and its network built for the dataset's images
    (:meth:`DetectionConfig.check_model`), so bad training settings fail now, not after the first
    model has trained.  A training file that does not exist raises FileNotFoundError.
    """
    try:
        cfg = DetectionConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(validation_message(exc, "detection config", origin)) from exc
    try:
        cfg.check_model()
    except ValidationError as exc:  # the recipe with this config's seeds (a seed out of range)
        raise ValueError(validation_message(exc, "detection config", f"{origin} (training)")) from None
    except ValueError as exc:
        raise ValueError(f"invalid detection config {origin}: training: {exc}") from None
    return cfg


def load_detection(path: str | Path) -> DetectionConfig:
    """Read and validate a detection-benchmark config (YAML or JSON)."""
    return parse_detection(read_config_mapping(path, "detection config"), origin=str(path))
