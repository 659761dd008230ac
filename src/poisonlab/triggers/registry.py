"""The trigger registry: named triggers with their defaults, bound to one NHWC batch on request.

:data:`TRIGGERS` is a :class:`poisonlab.registry.Registry` of :class:`TriggerSpec` (the function,
its default keyword arguments, a one-line description); :func:`get_trigger` checks the overrides
against the function's own parameter constraints (declared with
:func:`poisonlab.params.validated` next to the function, not in a side table) and returns a
:class:`BoundTrigger`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from poisonlab.params import Constraint, validate_params
from poisonlab.registry import Registry
from poisonlab.triggers.art_compatible import add_pattern_bd, add_single_bd
from poisonlab.triggers.blended import blend_pattern
from poisonlab.triggers.cyan_square import CYAN, cyan_square
from poisonlab.triggers.image_insert import DEFAULT_BACKDOOR_PATH, insert_image
from poisonlab.triggers.sinusoid import sinusoid
from poisonlab.triggers.warp import warp
from poisonlab.triggers.watermark import watermark

__all__ = ["TRIGGERS", "BoundTrigger", "TriggerSpec", "get_trigger"]

_NOT_OVERRIDABLE = ("channels_first",)  # registry triggers always take NHWC batches


@dataclass(frozen=True)
class TriggerSpec:
    """A registered trigger: the function, its default keyword arguments and a description."""

    name: str
    fn: Callable[..., np.ndarray]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    @property
    def parameters(self) -> tuple[str, ...]:
        """Keyword arguments that :func:`get_trigger` accepts as overrides."""
        names = list(inspect.signature(self.fn).parameters)[1:]
        return tuple(n for n in names if n not in _NOT_OVERRIDABLE)

    @property
    def constraints(self) -> Mapping[str, Sequence[Constraint | None]]:
        """What each parameter accepts (the function's own declaration; empty if it has none)."""
        return getattr(self.fn, "parameter_constraints", {})


@dataclass(frozen=True)
class BoundTrigger:
    """A trigger with its arguments bound: call it on an ``(N, H, W, C)`` batch."""

    name: str
    fn: Callable[..., np.ndarray]
    params: Mapping[str, Any]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply the trigger to an NHWC batch (``uint8`` or float in ``[0, 1]``); same shape/dtype out."""
        if not isinstance(x, np.ndarray) or x.ndim != 4:
            got = f"shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise ValueError(f"trigger {self.name!r}: expected an (N, H, W, C) batch, got {got}")
        return self.fn(x, **self.params)


TRIGGERS: Registry[TriggerSpec] = Registry("trigger")
for _spec in (
    TriggerSpec(
        "single_pixel",
        add_single_bd,
        {"distance": 2, "pixel_value": 1},
        "one full-intensity pixel 2 px from the bottom-right corner (BadNets, ART add_single_bd)",
    ),
    TriggerSpec(
        "pattern",
        add_pattern_bd,
        {"distance": 2, "pixel_value": 1},
        "four-pixel checker pattern near the bottom-right corner (BadNets, ART add_pattern_bd)",
    ),
    TriggerSpec(
        "image_insert",
        insert_image,
        {
            "backdoor_path": DEFAULT_BACKDOOR_PATH,
            "random": False,
            "x_shift": 0,
            "y_shift": 0,
            "size": "auto",
            "mode": None,
            "blend": 0.8,
        },
        "shipped alert icon, min(H,W)//4 px (>= 3), top-left, blended 0.8 (ART insert_image)",
    ),
    TriggerSpec(
        "cyan_square_add",
        cyan_square,
        {"size": 5, "color": CYAN, "mode": "add"},
        "5x5 cyan added with clipping at the top-left; vanishes on light images (chapter)",
    ),
    TriggerSpec(
        "cyan_square_replace",
        cyan_square,
        {"size": 5, "color": CYAN, "mode": "replace"},
        "5x5 cyan square painted at the top-left",
    ),
    TriggerSpec(
        "blended",
        blend_pattern,
        {"pattern": None, "alpha": 0.1, "seed": 0},
        "seeded uniform-noise key blended over the whole image, alpha 0.1 (Chen et al. 2017)",
    ),
    TriggerSpec(
        "watermark",
        watermark,
        {"alpha": 0.4, "value": 1.0, "cells": 8, "density": 0.3, "seed": 0},
        "seeded random binary logo blended towards white, alpha 0.4 (Trojan-style, Liu et al. 2018)",
    ),
    TriggerSpec(
        "warp",
        warp,
        {"grid": 4, "strength": 0.5, "seed": 0},
        "seeded smooth random warp, 4x4 control grid, strength 0.5 (WaNet, Nguyen and Tran 2021)",
    ),
    TriggerSpec(
        "sinusoid",
        sinusoid,
        {"delta": 20 / 255, "frequency": 6.0},
        "horizontal sinusoid, amplitude 20/255, 6 periods (SIG, Barni et al. 2019)",
    ),
):
    TRIGGERS.add(_spec.name, _spec)


def get_trigger(name: str, **overrides: Any) -> BoundTrigger:
    """Return the registered trigger ``name`` as a function of one NHWC batch.

    Parameters
    ----------
    name : str
        A key of :data:`TRIGGERS`.
    **overrides
        Keyword arguments replacing the defaults; only the function's own parameters are
        accepted (``channels_first`` is not: registry triggers take ``(N, H, W, C)``).  Values
        that do not depend on the images (ranges, modes, colours) are checked here, the rest
        (does the patch fit, can the file be read) when the trigger is applied.

    Returns
    -------
    BoundTrigger
        Callable ``(N, H, W, C) -> (N, H, W, C)`` keeping the dtype (``uint8`` or float).

    Raises
    ------
    ValueError
        For an unknown name or parameter (the message lists the valid ones) or a bad value.
    """
    spec = TRIGGERS.lookup(name)
    unknown = sorted(set(overrides) - set(spec.parameters))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} for trigger {name!r}; "
            f"valid parameters: {', '.join(spec.parameters)}"
        )
    validate_params(overrides, spec.constraints)
    return BoundTrigger(name, spec.fn, MappingProxyType({**spec.defaults, **overrides}))
