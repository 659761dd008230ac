"""Config pieces every experiment kind shares: dataset, training, defenses, file reading.

A single run, the attacks x defenses matrix and the clean-label benchmark each have their own
top-level config, but they name their dataset, their training recipes and their defenses with
the same blocks, validated the same way: unknown keys anywhere are errors (a typo must not fall
back to a default silently) and the first problems are reported on one line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from poisonlab.configfile import read_mapping_file
from poisonlab.defenses import DEFENSES
from poisonlab.error_text import field_problems
from poisonlab.training.config import PRESETS, TrainConfig, apply_settings, base_recipe

__all__ = [
    "DatasetSpec",
    "DefenseSpec",
    "Strict",
    "TrainingSpec",
    "read_config_mapping",
    "shared_dir",
    "validation_message",
]


class Strict(BaseModel):
    """Base of every config block: immutable, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class DatasetSpec(Strict):
    """Which dataset, where it lives and the seed of its train/validation split."""

    name: Literal["cifar10", "digits"] = "digits"
    data_dir: str | None = None
    split_seed: int = 0


class TrainingSpec(Strict):
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

    def resolve(self, dataset: str, base_dir: str | Path) -> TrainConfig:
        """The training config this spec names.

        Parameters
        ----------
        dataset
            Dataset name; its default recipe is used when neither preset nor file is given.
        base_dir
            Folder a relative ``file`` is read from (the config file's folder).

        Returns
        -------
        TrainConfig
            The preset, file or default recipe with ``settings`` laid over it.
        """
        path = None if self.file is None else Path(base_dir) / self.file
        return apply_settings(base_recipe(dataset, config_path=path, preset=self.preset), self.settings)


class DefenseSpec(Strict):
    """A registered defense and its constructor parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in DEFENSES:
            raise ValueError(f"unknown defense {value!r}; expected one of {sorted(DEFENSES)}")
        return value


def shared_dir() -> str:
    """``$POISONLAB_SHARED``, else ``../shared`` next to the working directory (the chapter's photos)."""
    return os.environ.get("POISONLAB_SHARED") or str(Path.cwd().parent / "shared")


def validation_message(exc: ValidationError, what: str, origin: str) -> str:
    """One line naming the first five problems of a config that did not validate.

    Parameters
    ----------
    exc
        The pydantic error.
    what
        The kind of config (``"experiment config"``, ``"matrix config"``, ...).
    origin
        Where it came from (a path, or a label such as ``"demo"``).
    """
    return f"invalid {what} {origin}: {field_problems(exc.errors())}"


def read_config_mapping(path: str | Path, what: str = "experiment config") -> dict:
    """The mapping stored in a YAML/JSON config file, with ``base_dir`` set to the file's folder.

    Parameters
    ----------
    path
        A ``.yaml``/``.yml`` or ``.json`` file.
    what
        The kind of config, for error messages.

    Returns
    -------
    dict
        The raw mapping, not yet validated.

    Raises
    ------
    FileNotFoundError
        When ``path`` is not a file.
    ValueError
        When it cannot be parsed or does not hold a mapping.
    """
    path = Path(path)
    data = read_mapping_file(path, what)
    data.setdefault("base_dir", str(path.parent.resolve()))
    return data
