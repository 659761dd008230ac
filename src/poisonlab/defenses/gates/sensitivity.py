"""Trigger-sensitivity test: does a known trigger pull clean inputs towards one class?

The chapter's "robustness test with ART perturbations": stamp each candidate trigger on clean,
held-out images and watch the predictions. A clean model shrugs off a small patch (a few
predictions move, in no particular direction); a backdoored model sends the images of its
source class, or of every class, to the attacker's target. This is a model-level check in the
spirit of the trigger-probing defenses (e.g. Wang et al., "Neural Cleanse: Identifying and
Mitigating Backdoor Attacks in Neural Networks", IEEE S&P 2019), restricted to *known* triggers:
it cannot find a trigger that is not in the list.

Decision rule (per trigger, per true class ``c`` with at least ``min_class_samples`` images and
per other class ``k``):

* ``T[c, k]``: share of the class-``c`` images predicted ``k`` once the trigger is applied;
* ``B[c, k]``: share predicted ``k`` on the untouched images (the model's own base confusion),
  or, when a trusted ``reference`` model is given, the larger of that and the reference model's
  ``T[c, k]`` (so that a trigger that destroys the image for any model does not count);
* ``(trigger, c -> k)`` is a suspected backdoor when ``T[c, k] - B[c, k] >= spike_threshold``.

Since the spike must exceed ``spike_threshold`` (default 0.5) of a class, at least half of the
class moves to ``k``: more than all other destinations together. The test passes when no pair
is flagged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import check_fraction, check_positive_int
from poisonlab.defenses.gates.checks import check_models
from poisonlab.defenses.helpers.trigger_args import (
    TriggerArg,
    apply_trigger,
    default_triggers,
    resolve_triggers,
)
from poisonlab.inference import predict
from poisonlab.metrics import confusion_matrix
from poisonlab.models.base import PoisonlabModel

# default_triggers is what ``triggers=None`` tests, so it stays importable from here.
__all__ = ["SensitivityReport", "Spike", "default_triggers", "trigger_sensitivity"]


@dataclass(frozen=True)
class Spike:
    """One suspected backdoor: ``trigger`` sends class ``source`` to ``target``."""

    trigger: str
    source: int
    target: int
    source_name: str
    target_name: str
    rate: float  # T[source, target]: share of the source class predicted target with the trigger
    base_rate: float  # B[source, target]
    excess: float  # rate - base_rate


@dataclass(frozen=True)
class SensitivityReport:
    """Outcome of :func:`trigger_sensitivity`.

    ``flip_rate[t]`` is the share of all images whose prediction changed under trigger ``t``;
    ``flip_matrix[t][c][k]`` counts images of true class ``c`` whose prediction changed to
    ``k`` (the diagonal counts images that moved back to their true class). ``skipped`` maps a
    trigger that could not be applied to these images to the reason.
    """

    passed: bool
    class_names: tuple[str, ...]
    n_samples: int
    clean_accuracy: float
    spike_threshold: float
    triggers: tuple[str, ...]
    flip_rate: dict[str, float]
    flip_matrix: dict[str, list[list[int]]]
    suspected: tuple[Spike, ...]
    skipped: dict[str, str]
    used_reference: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists, dicts, str, int, float, bool only)."""
        out = asdict(self)
        out["class_names"] = list(self.class_names)
        out["triggers"] = list(self.triggers)
        out["suspected"] = [asdict(s) for s in self.suspected]
        return out


def trigger_sensitivity(
    model: PoisonlabModel,
    clean: Dataset,
    *,
    triggers: Iterable[TriggerArg] | Mapping[str, TriggerArg] | None = None,
    spike_threshold: float = 0.5,
    min_class_samples: int = 5,
    reference: PoisonlabModel | None = None,
    device: str = "auto",
) -> SensitivityReport:
    """Apply every trigger to ``clean`` and flag classes whose predictions spike towards one target.

    Parameters
    ----------
    model : PoisonlabModel
        The model under test.
    clean : Dataset
        Clean held-out images (uint8 (N, H, W, C)) with their true labels.
    triggers : iterable or mapping, optional
        Registry names, :class:`~poisonlab.triggers.BoundTrigger` objects or ``{label: callable}``
        (a callable maps a uint8 (N, H, W, C) batch to one of the same shape). Default:
        :func:`default_triggers` (every registered trigger).
    spike_threshold : float, default 0.5
        Minimum excess share ``T[c, k] - B[c, k]`` in (0, 1] (see the module docstring).
    min_class_samples : int, default 5
        Classes with fewer images in ``clean`` are not judged (too noisy).
    reference : PoisonlabModel, optional
        A trusted clean model of the same task; its own reaction to each trigger is discounted.
    device : {"auto", "cpu", "cuda"}

    Returns
    -------
    SensitivityReport

    Raises
    ------
    ValueError
        For a non-Dataset, an empty set, models that do not fit the images or classes, bad
        parameters, an unknown trigger name, or when no trigger could be applied.
    """
    threshold = check_fraction(spike_threshold, "spike_threshold")
    min_n = check_positive_int(min_class_samples, "min_class_samples")
    _check_inputs(model, clean, reference)
    bound = resolve_triggers(triggers, clean.image_shape)
    y = clean.y
    judged = np.bincount(y, minlength=clean.num_classes) >= min_n
    p0 = predict(model, clean.x, device=device)
    flip_rate, flip_matrix, skipped, suspected = _probe_triggers(
        model, clean, bound, p0, reference=reference, judged=judged, threshold=threshold, device=device
    )
    if not flip_rate:
        raise ValueError(f"none of the triggers could be applied to {clean.image_shape} images: {skipped}")
    return SensitivityReport(
        passed=not suspected,
        class_names=clean.class_names,
        n_samples=len(clean),
        clean_accuracy=float(np.mean(p0 == y)),
        spike_threshold=threshold,
        triggers=tuple(flip_rate),
        flip_rate=flip_rate,
        flip_matrix=flip_matrix,
        suspected=tuple(suspected),
        skipped=skipped,
        used_reference=reference is not None,
    )


# ---------------------------------------------------------------------------------- helpers
def _probe_triggers(
    model: PoisonlabModel,
    clean: Dataset,
    bound: Mapping[str, Callable],
    p0: np.ndarray,
    *,
    reference: PoisonlabModel | None,
    judged: np.ndarray,
    threshold: float,
    device: str,
) -> tuple[dict[str, float], dict[str, list[list[int]]], dict[str, str], list[Spike]]:
    """Apply every trigger of ``bound`` to ``clean`` and compare with the untriggered predictions ``p0``.

    Returns the flip rate and flip matrix per applied trigger, the reason per skipped trigger and
    every suspected spike.
    """
    k, y = clean.num_classes, clean.y
    counts = np.bincount(y, minlength=k)
    base = _rates(confusion_matrix(y, p0, k), counts)
    flip_rate: dict[str, float] = {}
    flip_matrix: dict[str, list[list[int]]] = {}
    skipped: dict[str, str] = {}
    suspected: list[Spike] = []
    for label, fn in bound.items():
        try:
            xt = apply_trigger(fn, clean.x)
        except (ValueError, OSError) as exc:  # a patch too large, a missing/unreadable trigger file
            skipped[label] = str(exc)
            continue
        p1 = predict(model, xt, device=device)
        moved = p1 != p0
        flip_rate[label] = float(moved.mean())
        flip_matrix[label] = confusion_matrix(y[moved], p1[moved], k).tolist()
        reference_rates = None
        if reference is not None:
            reference_rates = _rates(confusion_matrix(y, predict(reference, xt, device=device), k), counts)
        triggered = _rates(confusion_matrix(y, p1, k), counts)
        suspected += _spikes(label, triggered, base, reference_rates, judged, threshold, clean.class_names)
    return flip_rate, flip_matrix, skipped, suspected


def _check_inputs(model: PoisonlabModel, clean: Dataset, reference: PoisonlabModel | None) -> None:
    if not isinstance(clean, Dataset):
        raise ValueError(f"clean must be a poisonlab Dataset, got {type(clean).__name__}")
    if len(clean) == 0:
        raise ValueError("clean dataset is empty: nothing to test the triggers on")
    check_models(model, reference, clean)


def _rates(cm: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Row-normalised confusion matrix (rows of empty classes stay 0)."""
    return cm / np.maximum(counts, 1)[:, None]


def _spikes(
    label: str,
    triggered: np.ndarray,
    base: np.ndarray,
    reference: np.ndarray | None,
    judged: np.ndarray,
    threshold: float,
    names: tuple[str, ...],
) -> list[Spike]:
    floor = base if reference is None else np.maximum(base, reference)
    excess = triggered - floor
    np.fill_diagonal(excess, -np.inf)  # staying in the true class is never a spike
    excess[~judged] = -np.inf
    return [
        Spike(
            label,
            int(c),
            int(k),
            names[c],
            names[k],
            float(triggered[c, k]),
            float(floor[c, k]),
            float(excess[c, k]),
        )
        for c, k in zip(*np.nonzero(excess >= threshold), strict=True)
    ]
