"""Candidate triggers as the trigger-based defenses accept them, resolved to callables.

The trigger-sensitivity test and trigger-augmented training both take a ``triggers=`` argument:
registry names (with defaults fitted to the image size), :class:`~poisonlab.triggers.BoundTrigger`
objects, plain callables, or a ``{label: trigger}`` mapping. :func:`resolve_triggers` turns any of
them into ``{label: callable}`` and :func:`apply_trigger` checks what a callable returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from poisonlab.triggers import TRIGGERS, BoundTrigger, get_trigger

__all__ = ["TriggerArg", "apply_trigger", "default_triggers", "resolve_triggers"]

TriggerArg = str | BoundTrigger | Callable[[np.ndarray], np.ndarray]


def default_triggers(image_shape: tuple[int, int, int]) -> dict[str, BoundTrigger]:
    """Every registered trigger with its defaults, scaled down where a default would cover the image.

    The only registry default that does not suit small images is the 5x5 cyan square: on 8x8
    digits it covers 39% of the picture and turns any digit into an "8" or "9" for a clean
    model too. Its side becomes ``min(5, max(2, min(H, W) // 6))`` (2 on 8x8, 5 on 32x32).
    """
    side = min(image_shape[:2])
    out = {}
    for name, spec in TRIGGERS.items():
        params: dict[str, Any] = {}
        if spec.fn.__name__ == "cyan_square":
            params["size"] = min(int(spec.defaults["size"]), max(2, side // 6))
        out[name] = get_trigger(name, **params)
    return out


def resolve_triggers(triggers: object, image_shape: tuple[int, int, int]) -> dict[str, Callable]:
    """Normalise a ``triggers`` argument to ``{label: callable}`` for images of ``image_shape``.

    ``None`` gives :func:`default_triggers`; a registry name gets its size-adapted defaults; a
    :class:`~poisonlab.triggers.BoundTrigger` or any callable is used as given (labelled by its
    ``name``/``__name__``); a mapping gives the labels explicitly.

    Raises
    ------
    ValueError
        For an empty list, an unknown name, a non-callable item or a label used twice.
    """
    if triggers is None:
        return dict(default_triggers(image_shape))
    if isinstance(triggers, str) or (callable(triggers) and not isinstance(triggers, Mapping)):
        triggers = [triggers]
    if isinstance(triggers, Mapping):
        items = list(triggers.items())
    elif isinstance(triggers, Iterable):
        items = [(None, t) for t in triggers]
    else:
        raise ValueError(f"triggers must be a name, a callable or a list/mapping of them, got {triggers!r}")
    out: dict[str, Callable] = {}
    for label, trig in items:
        if isinstance(trig, str):
            fn: Callable = default_triggers(image_shape)[trig] if trig in TRIGGERS else get_trigger(trig)
        elif callable(trig):
            fn = trig
        else:
            raise ValueError(f"a trigger must be a registry name or a callable, got {type(trig).__name__}")
        name = str(label) if label is not None else _label(fn)
        if name in out:
            raise ValueError(f"trigger label {name!r} appears twice; pass a mapping with distinct labels")
        out[name] = fn
    if not out:
        raise ValueError("triggers is empty: give at least one trigger")
    return out


def _label(fn: Callable) -> str:
    return str(getattr(fn, "name", None) or getattr(fn, "__name__", "trigger"))


def apply_trigger(fn: Callable, x: np.ndarray) -> np.ndarray:
    """``fn(x)``, checked to be a uint8 batch of the shape of ``x`` (ValueError otherwise)."""
    out = fn(x)
    if not isinstance(out, np.ndarray) or out.shape != x.shape or out.dtype != np.uint8:
        got = f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
        raise ValueError(f"the trigger must return a uint8 batch of shape {x.shape}, got {got}")
    return out
