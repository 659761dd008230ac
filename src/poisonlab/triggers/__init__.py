"""Backdoor triggers: pure, vectorised functions on image batches, and a registry of them.

Every function takes ``uint8`` images in ``[0, 255]`` or float images in ``[0, 1]``, returns a new
array of the same shape and dtype, never modifies its input and refuses anything else with a
``ValueError`` (a missing trigger file: ``FileNotFoundError``).  Intensities (``pixel_value``,
``blend``, ``alpha``) are on the unit scale (1 = 255 for ``uint8``); colours on the 8-bit scale.

Other code should use the registry::

    from poisonlab.triggers import get_trigger
    poisoned = get_trigger("pattern", distance=3)(x_uint8_nhwc)

:data:`TRIGGERS` (a :class:`poisonlab.registry.Registry`) maps each name to a :class:`TriggerSpec`;
:func:`get_trigger` returns a function of one ``(N, H, W, C)`` batch (``C`` 1 or 3, any size from
8x8 up) with the defaults and the overrides bound (:mod:`poisonlab.triggers.registry`).  The
drawing code for the shipped images is in :mod:`poisonlab.triggers.assets`
(not imported here, so that ``python -m poisonlab.triggers.assets`` runs cleanly).
"""

from __future__ import annotations

from poisonlab.triggers._paths import SHIPPED_TRIGGERS, default_trigger_path
from poisonlab.triggers.art_compatible import add_pattern_bd, add_single_bd
from poisonlab.triggers.blended import blend_pattern
from poisonlab.triggers.cyan_square import CYAN, cyan_square
from poisonlab.triggers.image_insert import DEFAULT_BACKDOOR_PATH, auto_trigger_size, insert_image
from poisonlab.triggers.registry import TRIGGERS, BoundTrigger, TriggerSpec, get_trigger

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
