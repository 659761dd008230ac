"""Build attacks by name: the one place that turns a name and inputs into an attack object.

* :func:`get_attack` - any registered attack from its constructor parameters.
* :func:`build_crafted_attack` - an optimisation-based attack from the attacker's inputs (model,
  classes, budget, victims, trigger): it passes each attack only what its capability flags say it
  takes, so ``poisonlab craft`` and the clean-label benchmark share one code path and no list of
  "which attack needs what" exists outside the attack classes.
* :func:`check_crafted_inputs` - the same capability check on its own, for callers that want to
  fail before loading a model or data (the CLI names its options in the messages).
* :func:`make_trigger` - the trigger of a backdoor attack: a registry trigger or the chapter's
  hidden-trigger patch, with its name and a JSON-ready record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from poisonlab.attacks.base import ATTACKS, Perturbation, PoisoningAttack
from poisonlab.attacks.crafted import CraftedAttack
from poisonlab.attacks.hidden_trigger import chapter_patch_trigger
from poisonlab.models.base import PoisonlabModel

__all__ = [
    "CRAFT_INPUTS",
    "TriggerChoice",
    "attack_parameters",
    "build_crafted_attack",
    "check_crafted_inputs",
    "crafted_attack_class",
    "get_attack",
    "make_trigger",
]

#: inputs of a crafted attack that only some attacks take: input -> the capability flag saying so
CRAFT_INPUTS = {"source": "needs_source_class", "victims": "needs_victims", "trigger": "needs_trigger"}
#: constructor parameters :func:`build_crafted_attack` sets itself; ``params`` may not set them
_DEDICATED = ("model", "target", "count", "fraction", "eps", "seed", "device", *CRAFT_INPUTS, "trigger_name")


def attack_parameters(attack: str | type[PoisoningAttack]) -> tuple[str, ...]:
    """The constructor parameters of an attack (a registry name or a class), in field order."""
    cls = ATTACKS.lookup(attack) if isinstance(attack, str) else attack
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)  # type: ignore[arg-type]


def get_attack(name: str, /, **params: Any) -> PoisoningAttack:
    """Build the attack registered as ``name`` with keyword ``params``.

    Raises
    ------
    ValueError
        For an unknown name or parameter (the message lists the valid ones), a missing required
        parameter or a bad value.
    """
    cls = ATTACKS.lookup(name)
    valid = attack_parameters(cls)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} for attack {name!r}; "
            f"valid parameters: {', '.join(valid)}"
        )
    try:
        return cls(**params)
    except TypeError as exc:  # a required parameter is missing
        raise ValueError(f"bad parameters for attack {name!r}: {exc}") from None


def crafted_attack_class(name: str) -> type[CraftedAttack]:
    """The class of the crafted (optimisation-based) attack ``name``; ValueError for any other name."""
    crafted = list(ATTACKS.where(crafted=True))
    if name not in ATTACKS:
        raise ATTACKS.unknown(name, crafted)
    if name not in crafted:
        raise ValueError(f"not a crafted attack {name!r}; expected one of {', '.join(crafted)}")
    return ATTACKS[name]  # type: ignore[return-value]


def check_crafted_inputs(
    name: str, *, given: Mapping[str, bool], labels: Mapping[str, str] | None = None
) -> type[CraftedAttack]:
    """Check which of :data:`CRAFT_INPUTS` the caller gives against what attack ``name`` takes.

    Parameters
    ----------
    name : str
        A crafted attack.
    given : mapping of str to bool
        For ``"source"``, ``"victims"`` and ``"trigger"``: whether the caller has one.
    labels : mapping of str to str, optional
        How to call each input in messages (the CLI passes its option names); default the name.

    Returns
    -------
    type
        The attack's class.

    Raises
    ------
    ValueError
        When an input the attack needs is missing (a trigger never is: the chapter's patch is the
        default) or an input is given that the attack does not take.
    """
    cls = crafted_attack_class(name)
    for item, flag in CRAFT_INPUTS.items():
        label = (labels or {}).get(item, item)
        needed, has = getattr(cls, flag), bool(given.get(item, False))
        if needed and not has and item != "trigger":
            raise ValueError(f"{name} needs {label}")
        if has and not needed:
            takers = " and ".join(ATTACKS.where(crafted=True, **{flag: True}))
            raise ValueError(f"{label} applies to {takers} only, not {name}")
    return cls


@dataclass(frozen=True)
class TriggerChoice:
    """A backdoor trigger with the name descriptions use and a JSON-ready record of how it was made."""

    fn: Perturbation
    name: str
    record: dict[str, Any]


def make_trigger(
    name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    patch_size: int = 8,
    patch_offset: int = 5,
) -> TriggerChoice:
    """The registry trigger ``name`` (with ``overrides``), or without a name the chapter's patch.

    The patch is :func:`~poisonlab.attacks.hidden_trigger.chapter_patch_trigger` of
    ``patch_size`` pixels, ``patch_offset`` from the bottom-right corner, named ``patch<size>``.
    """
    if name is None:
        fn = chapter_patch_trigger(patch_size, patch_offset)
        record = {"kind": "htbd_patch", "size": patch_size, "offset": patch_offset}
        return TriggerChoice(fn, f"patch{patch_size}", record)
    from poisonlab.triggers import get_trigger

    bound = get_trigger(name, **dict(overrides or {}))
    return TriggerChoice(bound, name, {"kind": "registry", "name": name, "params": dict(bound.params)})


def build_crafted_attack(
    name: str,
    *,
    model: PoisonlabModel,
    target: str | int,
    count: int | None = None,
    fraction: float | None = None,
    eps: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    source: str | int | None = None,
    victims: np.ndarray | None = None,
    trigger: Perturbation | Sequence[Perturbation] | None = None,
    trigger_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    ignore_unused: bool = False,
) -> CraftedAttack:
    """Build the crafted attack ``name`` from the attacker's inputs.

    Parameters
    ----------
    name : str
        ``hidden_trigger``, ``feature_collision``, ``clean_label_backdoor`` or ``gradient_matching``
        (any attack registered with ``crafted = True``).
    model, target, count, fraction, seed, device
        Passed to every crafted attack (see :class:`~poisonlab.attacks.crafted.CraftedAttack`).
    eps : float, optional
        L-inf radius on the [0, 1] scale; ``None`` keeps the attack's default.
    source, victims, trigger
        Passed to the attacks that take them (:data:`CRAFT_INPUTS`). An attack that takes a
        trigger gets the chapter's 8x8 patch when none is given.
    trigger_name : str, optional
        Label of ``trigger``; default its ``name`` attribute, else ``"custom"``.
    params : mapping, optional
        Further constructor parameters (``steps``, ``lr``, ...); they may not set the inputs above.
    ignore_unused : bool
        Drop ``source``/``victims``/``trigger`` an attack does not take instead of refusing them
        (a benchmark that draws a victim and a source for every attack of a trial wants this).

    Raises
    ------
    ValueError
        For an unknown or non-crafted attack, a missing or inapplicable input, an unknown or
        reserved key in ``params``, or a bad value.
    """
    given = {"source": source is not None, "victims": victims is not None, "trigger": trigger is not None}
    cls = crafted_attack_class(name) if ignore_unused else check_crafted_inputs(name, given=given)
    extra = dict(params or {})
    reserved = sorted(set(extra) & set(_DEDICATED))
    if reserved:
        raise ValueError(f"params may not set {reserved}: pass them as arguments of their own")
    kwargs: dict[str, Any] = {"model": model, "target": target, "count": count, "fraction": fraction}
    kwargs.update(seed=seed, device=device)
    if eps is not None:
        kwargs["eps"] = eps
    kwargs.update(_optional_inputs(cls, source, victims, trigger, trigger_name))
    return get_attack(name, **kwargs, **extra)  # type: ignore[return-value]


def _optional_inputs(
    cls: type[CraftedAttack],
    source: str | int | None,
    victims: np.ndarray | None,
    trigger: Perturbation | Sequence[Perturbation] | None,
    trigger_name: str | None,
) -> dict[str, Any]:
    """The inputs of :data:`CRAFT_INPUTS` that ``cls`` takes (the chapter's patch if it needs a trigger)."""
    out: dict[str, Any] = {}
    if cls.needs_source_class:
        out["source"] = source
    if cls.needs_victims:
        out["victims"] = victims
    if cls.needs_trigger:
        if trigger is None:
            patch = make_trigger()
            trigger, trigger_name = patch.fn, trigger_name or patch.name
        out["trigger"] = trigger
        out["trigger_name"] = trigger_name or getattr(trigger, "name", None) or "custom"
    return out
