"""Config of the trigger figures: which registered triggers, with which parameters, on what canvas.

The chapter draws its figures 4.11-4.13 by applying IBM ART's ``add_single_bd``,
``add_pattern_bd`` and ``insert_image`` to one black 32x32x3 image; a figures config names the
same triggers from :data:`poisonlab.triggers.TRIGGERS` with the chapter's parameters, the canvas,
and optionally photos to apply them to as well.  Unknown keys anywhere are errors and every
trigger's parameters are checked against the registry when the config is read.  Paths
(``photos`` and an ``image_insert`` ``backdoor_path``) may use ``${POISONLAB_SHARED}`` and are
resolved relative to the config file; a missing one is skipped at run time, with the reason in the
report, rather than refused here (the shared data is not on every machine).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from poisonlab.experiments.common.specs import Strict, read_config_mapping, shared_dir, validation_message
from poisonlab.training.options import Seed

__all__ = [
    "DEFAULT_PHOTOS",
    "CanvasSpec",
    "FigureSpec",
    "FiguresConfig",
    "load_figures",
    "parse_figures",
]

#: the chapter's one photo per CIFAR-10 class (used when a config does not say ``photos:``)
DEFAULT_PHOTOS = ("${POISONLAB_SHARED}/datasets/ch4/class-examples",)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # used in file names: no separators, no spaces


class CanvasSpec(Strict):
    """The image every trigger is drawn on: ``height x width x channels``, one fill value.

    ``fill`` is on the unit scale (0 black, 1 white); the canvas is ``float64`` like the chapter's
    ``np.zeros((1, 32, 32, 3))``, so IBM ART's functions can be called on the very same array.
    """

    height: int = Field(32, ge=8, le=512)
    width: int = Field(32, ge=8, le=512)
    channels: int = 3
    fill: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: int) -> int:
        if value not in (1, 3):
            raise ValueError(f"expected 1 (grey) or 3 (RGB) channels, got {value}")
        return value


class FigureSpec(Strict):
    """One figure: a registered trigger with its parameter overrides and a caption."""

    name: str
    trigger: str
    params: dict[str, Any] = Field(default_factory=dict)
    caption: str = ""

    @field_validator("name")
    @classmethod
    def _file_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"expected letters, digits, '.', '_' or '-' (a file name), got {value!r}")
        return value

    @model_validator(mode="after")
    def _known_trigger(self) -> FigureSpec:
        from poisonlab.triggers import get_trigger

        # unknown trigger or parameter, or a bad value: refused now; whether a backdoor_path
        # exists is settled at run time (a missing shared file skips the figure, with the reason)
        get_trigger(self.trigger, **self.params)
        return self


class FiguresConfig(Strict):
    """A figures run: the canvas, the figures, the photos and the viewing scale of the PNGs."""

    name: str = "trigger-figures"
    description: str = ""
    canvas: CanvasSpec = CanvasSpec()
    figures: list[FigureSpec] = Field(min_length=1)
    photos: list[str] | None = Field(
        None, description="image files or folders; None: the chapter's class examples; []: none"
    )
    photo_size: int = Field(32, ge=8, le=512)
    upscale: int = Field(8, ge=1, le=32)
    seed: Seed = Field(0, description="seed of the triggers that take one (random placement or key)")
    base_dir: str = Field(".", description="set by the loader: folder of the config file")

    @model_validator(mode="after")
    def _unique_names(self) -> FiguresConfig:
        names = [f.name for f in self.figures]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"figure names must be distinct, got {', '.join(twice)} more than once")
        return self

    def path(self, value: str) -> Path:
        """A path from the config with ``${POISONLAB_SHARED}`` and ``$VARS`` expanded, relative to it."""
        expanded = os.path.expandvars(value.replace("${POISONLAB_SHARED}", shared_dir()))
        p = Path(expanded).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def photo_paths(self) -> list[Path]:
        """The ``photos`` entries as paths (the chapter's class examples when not given)."""
        return [self.path(p) for p in (DEFAULT_PHOTOS if self.photos is None else self.photos)]

    def trigger_params(self, figure: FigureSpec) -> dict[str, Any]:
        """``figure.params`` with its ``backdoor_path`` (if any) resolved like every config path."""
        params = dict(figure.params)
        if "backdoor_path" in params:
            params["backdoor_path"] = str(self.path(params["backdoor_path"]))
        return params


def load_figures(path: str | Path) -> FiguresConfig:
    """Read and validate a figures config (YAML or JSON).

    Raises
    ------
    FileNotFoundError
        When ``path`` is not a file.
    ValueError
        When it cannot be parsed or does not validate (one line naming the first problems).
    """
    return parse_figures(read_config_mapping(path, "figures config"), origin=str(path))


def parse_figures(data: dict, origin: str = "config") -> FiguresConfig:
    """Validate a figures mapping; ``ValueError`` names ``origin`` and the first problems."""
    try:
        return FiguresConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(validation_message(exc, "figures config", origin)) from exc
