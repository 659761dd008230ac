"""Config blocks of a single run's robustness tests and mitigation (issue 14, item 3).

The chapter's "Robustness Tests Against Poisoning" (canary records, ART triggers stamped on clean
images to probe a model) and its "Adversarial Training" become two optional blocks of
:class:`~poisonlab.experiments.single.config.ExperimentConfig`:

.. code-block:: yaml

    robustness:
      canaries: {per_class: 5, split: test}
      sensitivity: {triggers: [pattern, single_pixel], spike_threshold: 0.5, images: 2000}
      external_triggers: true
    mitigation:
      kind: adversarial_training
      trusted_size: 1000
      fraction: 0.5
      epochs: 5

Absent blocks leave a run exactly as before (its ``results.json`` included). Unknown keys are
errors, as everywhere in the configs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from poisonlab.defenses.helpers.trigger_args import default_triggers
from poisonlab.experiments.common.specs import Strict, TrainingSpec
from poisonlab.triggers import TRIGGERS, get_trigger

__all__ = [
    "AdversarialTrainingSpec",
    "CanarySpec",
    "RobustnessSpec",
    "SensitivitySpec",
    "TriggerRef",
    "bind_triggers",
]


class TriggerRef(Strict):
    """A registered trigger, by name, with optional parameters (a bare name is accepted too).

    Without ``params`` the trigger gets the size-adapted registry defaults of
    :func:`poisonlab.defenses.helpers.trigger_args.default_triggers` (e.g. a 2-pixel cyan square on
    8x8 digits instead of the 5-pixel one that covers the digit).
    """

    name: str
    params: dict = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: object) -> object:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _known(self) -> TriggerRef:
        if self.name not in TRIGGERS:
            raise ValueError(f"unknown trigger {self.name!r}; expected one of {sorted(TRIGGERS)}")
        try:
            get_trigger(self.name, **self.params)
        except (TypeError, ValueError) as exc:  # a misspelt or out-of-range parameter
            raise ValueError(f"trigger {self.name!r} with params {self.params}: {exc}") from None
        return self

    @property
    def label(self) -> str:
        """``name``, or ``name(k=v, ...)`` with parameters (the key of every per-trigger record)."""
        if not self.params:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in sorted(self.params.items()))})"


def bind_triggers(
    refs: list[TriggerRef] | None, image_shape: tuple[int, int, int]
) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """``{label: trigger}`` for images of ``image_shape``; ``None`` gives every registered trigger
    with its size-adapted defaults (the library's default list)."""
    if refs is None:
        return dict(default_triggers(image_shape))
    defaults = default_triggers(image_shape)
    out: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for ref in refs:
        out[ref.label] = get_trigger(ref.name, **ref.params) if ref.params else defaults[ref.name]
    return out


def _distinct(refs: list[TriggerRef] | None) -> list[TriggerRef] | None:
    if refs is not None:
        if not refs:
            raise ValueError("triggers is empty: give at least one, or null for the library's list")
        labels = [r.label for r in refs]
        if len(set(labels)) != len(labels):
            raise ValueError(f"triggers must be distinct, got {labels}")
    return refs


class CanarySpec(Strict):
    """Canary records: ``per_class`` held-out images per class that the clean model classifies
    with the largest margin (:func:`poisonlab.defenses.gates.canary.select_canaries`); every
    model of the run is then checked on them. Never training images: ``split`` is ``test`` or
    ``val`` (``val`` cannot be combined with a mitigation, which fine-tunes on the val split)."""

    per_class: int = Field(5, ge=1)
    split: Literal["test", "val"] = "test"


class SensitivitySpec(Strict):
    """The chapter's robustness test with ART perturbations
    (:func:`poisonlab.defenses.gates.sensitivity.trigger_sensitivity`) on clean test images.

    ``triggers``: null = every registered trigger (size-adapted defaults). ``images``: how many
    test images (a seeded random pick with ``seed``; null = the whole test split).
    ``reference: clean`` discounts each trigger's effect on the seed's clean model when judging
    a poisoned model (a trigger that wrecks the image for any model is then not a spike).
    """

    triggers: list[TriggerRef] | None = None
    spike_threshold: float = Field(0.5, gt=0.0, le=1.0)
    images: int | None = Field(None, ge=1)
    min_class_samples: int = Field(5, ge=1)
    reference: Literal["none", "clean"] = "none"
    seed: int = Field(0, ge=0)

    @field_validator("triggers")
    @classmethod
    def _distinct_triggers(cls, value: list[TriggerRef] | None) -> list[TriggerRef] | None:
        return _distinct(value)


class RobustnessSpec(Strict):
    """The robustness tests run on the clean model and on every poisoned model (at least one).

    ``external_triggers``: every trigger of the sensitivity list (the library's list without a
    sensitivity block) and, for a backdoor, the attack's own trigger, stamped on each photo of
    ``metrics.external_images``.
    """

    canaries: CanarySpec | None = None
    sensitivity: SensitivitySpec | None = None
    external_triggers: bool = False

    @model_validator(mode="after")
    def _something(self) -> RobustnessSpec:
        if self.canaries is None and self.sensitivity is None and not self.external_triggers:
            raise ValueError("robustness needs canaries, sensitivity or external_triggers: true")
        return self


class AdversarialTrainingSpec(Strict):
    """Fine-tune each poisoned model on a trusted clean share of the validation split with
    trigger-stamped copies (correct labels kept), and, as control, on the same share without
    them (:func:`poisonlab.defenses.mitigation.adversarial_training.adversarial_training`).

    ``trusted_size`` images of the val split (never the test split), drawn with the run's seed;
    ``fraction`` of them stamped per trigger; ``epochs`` of the ``training`` recipe (default:
    the config's ``finetune`` recipe). ``triggers``: default the attack's own trigger for a
    backdoor, else the library's list.
    """

    kind: Literal["adversarial_training"]
    trusted_size: int = Field(..., ge=1)
    fraction: float = Field(0.5, gt=0.0, le=1.0)
    epochs: int = Field(5, ge=1)
    triggers: list[TriggerRef] | None = None
    training: TrainingSpec | None = None

    @field_validator("triggers")
    @classmethod
    def _distinct_triggers(cls, value: list[TriggerRef] | None) -> list[TriggerRef] | None:
        return _distinct(value)
