"""Backdoor triggers: pure, vectorised functions on image batches, and a registry of them.

Every function takes ``uint8`` images in ``[0, 255]`` or float images in ``[0, 1]``, returns a new
array of the same shape and dtype, never modifies its input and refuses anything else with a
``ValueError`` (a missing trigger file: ``FileNotFoundError``).  Intensities (``pixel_value``,
``blend``, ``alpha``) are on the unit scale (1 = 255 for ``uint8``); colours on the 8-bit scale.

Other code should use the registry::

    from poisonlab.triggers import get_trigger
    poisoned = get_trigger("pattern", distance=3)(x_uint8_nhwc)

:data:`TRIGGERS` maps each name to a :class:`TriggerSpec`; :func:`get_trigger` returns a function
of one ``(N, H, W, C)`` batch (``C`` 1 or 3, any size from 8x8 up) with the defaults and the
overrides bound.  The drawing code for the shipped images is in :mod:`poisonlab.triggers.assets`
(not imported here, so that ``python -m poisonlab.triggers.assets`` runs cleanly).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any

import numpy as np

from poisonlab.triggers._checks import positive_int, unit_value
from poisonlab.triggers._paths import SHIPPED_TRIGGERS, default_trigger_path
from poisonlab.triggers.art_compatible import add_pattern_bd, add_single_bd
from poisonlab.triggers.blended import blend_pattern
from poisonlab.triggers.cyan_square import CYAN, check_color, cyan_square
from poisonlab.triggers.image_insert import (
    DEFAULT_BACKDOOR_PATH,
    auto_trigger_size,
    insert_image,
    resolve_size,
)

__all__ = [
    "CYAN",
    "DEFAULT_BACKDOOR_PATH",
    "SHIPPED_TRIGGERS",
    "TRIGGERS",
    "BoundTrigger",
    "TriggerSpec",
    "add_pattern_bd",
    "add_single_bd",
    "auto_trigger_size",
    "blend_pattern",
    "cyan_square",
    "default_trigger_path",
    "get_trigger",
    "insert_image",
]

_NOT_OVERRIDABLE = ("channels_first",)  # registry triggers always take NHWC batches


def _check_insert_size(value: Any) -> None:
    resolve_size(value, (1, 1))


def _check_insert_mode(value: Any) -> None:
    if value not in (None, "L", "RGB"):
        raise ValueError(f"mode: expected 'L', 'RGB' or None, got {value!r}")


def _check_square_mode(value: Any) -> None:
    if value not in ("add", "replace"):
        raise ValueError(f"mode: expected 'add' or 'replace', got {value!r}")


# Checks of override values that do not depend on the images (the rest is checked on use).
_VALUE_CHECKS: dict[tuple[str, str], Callable[[Any], Any]] = {
    **{(fn, "distance"): partial(positive_int, "distance") for fn in ("add_single_bd", "add_pattern_bd")},
    **{(fn, "pixel_value"): partial(unit_value, "pixel_value") for fn in ("add_single_bd", "add_pattern_bd")},
    ("insert_image", "blend"): partial(unit_value, "blend"),
    ("insert_image", "x_shift"): partial(positive_int, "x_shift", minimum=0),
    ("insert_image", "y_shift"): partial(positive_int, "y_shift", minimum=0),
    ("insert_image", "size"): _check_insert_size,
    ("insert_image", "mode"): _check_insert_mode,
    ("cyan_square", "size"): partial(positive_int, "size"),
    ("cyan_square", "color"): check_color,
    ("cyan_square", "mode"): _check_square_mode,
    ("blend_pattern", "alpha"): partial(unit_value, "alpha"),
}


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


TRIGGERS: dict[str, TriggerSpec] = {
    spec.name: spec
    for spec in (
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
    )
}


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
    if name not in TRIGGERS:
        raise ValueError(f"unknown trigger {name!r}; valid names: {', '.join(TRIGGERS)}")
    spec = TRIGGERS[name]
    unknown = sorted(set(overrides) - set(spec.parameters))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} for trigger {name!r}; "
            f"valid parameters: {', '.join(spec.parameters)}"
        )
    for key, value in overrides.items():
        check = _VALUE_CHECKS.get((spec.fn.__name__, key))
        if check is not None:
            check(value)
    return BoundTrigger(name, spec.fn, MappingProxyType({**spec.defaults, **overrides}))
