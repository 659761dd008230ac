"""The robustness tests of a single run: canary records, trigger sensitivity, triggered photos.

The chapter's section "Robustness Tests Against Poisoning" names two checks a defender runs on a
model before trusting it: a few unambiguous *canary* images it must get right, and ART's
backdoor triggers (``add_single_bd``, ``add_pattern_bd``, ``insert_image``) stamped on clean
inputs to see whether the predictions move towards one class. :func:`prepare_robustness` builds
what both need once per run (the canaries are picked by the clean model on held-out images,
never training ones), and :func:`robustness_checks` runs them on one model:

* canaries: :func:`poisonlab.defenses.gates.canary.check_canaries` (a targeted flip fails the
  canaries of its source class; a backdoor keeps clean inputs right and passes);
* sensitivity: :func:`poisonlab.defenses.gates.sensitivity.trigger_sensitivity` (Wang et al.,
  "Neural Cleanse", IEEE S&P 2019, restricted to known triggers): a spike ``c -> k`` of at least
  ``spike_threshold`` of class ``c`` flags the model;
* external photos with every trigger (the chapter quotes only ``insert_image``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.data.dataset import Dataset, Splits
from poisonlab.data.images import load_image_file, rgb_to_gray
from poisonlab.defenses.gates.canary import CanarySet, check_canaries, select_canaries
from poisonlab.defenses.gates.sensitivity import trigger_sensitivity
from poisonlab.defenses.helpers.trigger_args import apply_trigger
from poisonlab.experiments.common.measure import AttackTargets
from poisonlab.experiments.single.config import ExperimentConfig
from poisonlab.experiments.single.robust_config import RobustnessSpec, bind_triggers
from poisonlab.inference import forward_pass
from poisonlab.models.base import PoisonlabModel

__all__ = [
    "RobustnessContext",
    "check_robustness",
    "external_trigger_predictions",
    "prepare_robustness",
    "robustness_checks",
    "robustness_scalars",
    "sensitivity_images",
]


@dataclass
class RobustnessContext:
    """What the robustness tests of one run share.

    Attributes
    ----------
    spec : RobustnessSpec
    canaries : CanarySet or None
        Picked by the clean model from ``canary_split``.
    sensitivity_data : Dataset or None
        The clean test images the triggers are stamped on.
    photo_triggers : dict
        ``{label: trigger}`` stamped on the external photos (empty without ``external_triggers``).
    photos : list of Path
        ``metrics.external_images``.
    record : dict
        JSON-ready description of the above (canary indices, image hash), for ``results.json``.
    """

    spec: RobustnessSpec
    canaries: CanarySet | None = None
    sensitivity_data: Dataset | None = None
    photo_triggers: dict = field(default_factory=dict)
    photos: list[Path] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)


def check_robustness(cfg: ExperimentConfig, splits: Splits) -> None:
    """Check the robustness and mitigation blocks against the data, before anything trains.

    Raises
    ------
    ValueError
        A canary split with a class of fewer than ``per_class`` images, a ``trusted_size``
        larger than the validation split, or a ``fraction`` of it that rounds to no copy.
    """
    rob, mit = cfg.robustness, cfg.mitigation
    if rob is not None and rob.canaries is not None:
        held_out = getattr(splits, rob.canaries.split)
        counts = np.bincount(held_out.y, minlength=held_out.num_classes)
        if counts.min() < rob.canaries.per_class:
            k = int(counts.argmin())
            raise ValueError(
                f"robustness.canaries.per_class={rob.canaries.per_class}, but the {rob.canaries.split} "
                f"split has only {counts[k]} images of class {splits.class_names[k]!r}"
            )
    if mit is not None and mit.trusted_size > len(splits.val):
        raise ValueError(
            f"mitigation.trusted_size={mit.trusted_size} is larger than the validation split "
            f"({len(splits.val)} images)"
        )
    if mit is not None and round(mit.fraction * mit.trusted_size) == 0:
        raise ValueError(
            f"mitigation.fraction={mit.fraction} of trusted_size={mit.trusted_size} "
            "rounds to 0 triggered copies"
        )


def sensitivity_images(test: Dataset, images: int | None, seed: int) -> Dataset:
    """The test images the sensitivity test uses: all, or a seeded pick of ``images`` of them
    (``np.sort(default_rng(seed).choice(len(test), images, replace=False))``)."""
    if images is None or images >= len(test):
        return test
    idx = np.sort(np.random.default_rng(seed).choice(len(test), size=images, replace=False))
    return test.subset(idx, name=f"{test.name}[{images} seeded {seed}]")


def _photo_triggers(cfg: ExperimentConfig, targets: AttackTargets, shape: tuple[int, int, int]) -> dict:
    """The attack's own trigger (backdoors) first, then the sensitivity list (or the library's)."""
    out = {}
    if targets.trigger is not None:
        out[f"attack:{targets.trigger_name}"] = targets.trigger
    sens = cfg.robustness.sensitivity if cfg.robustness else None
    out.update(bind_triggers(None if sens is None else sens.triggers, shape))
    return out


def prepare_robustness(
    cfg: ExperimentConfig,
    splits: Splits,
    clean: PoisonlabModel,
    clean_id: str,
    targets: AttackTargets,
    *,
    device: str,
) -> RobustnessContext | None:
    """Pick the canaries with ``clean`` and fix the sensitivity images and photo triggers;
    None when the config has no robustness block."""
    spec = cfg.robustness
    if spec is None:
        return None
    ctx = RobustnessContext(spec=spec, photos=[cfg.path(p) for p in cfg.metrics.external_images])
    if spec.canaries is not None:
        held_out = getattr(splits, spec.canaries.split)
        ctx.canaries = select_canaries(held_out, clean, per_class=spec.canaries.per_class, device=device)
        ctx.record["canaries"] = {
            "split": spec.canaries.split,
            "split_hash": held_out.content_hash,
            "per_class": spec.canaries.per_class,
            "picked_by": clean_id,
            "rule": "largest margin of the clean model among its correct predictions, per class",
            "indices": [int(i) for i in ctx.canaries.indices],
        }
    if spec.sensitivity is not None:
        s = spec.sensitivity
        ctx.sensitivity_data = sensitivity_images(splits.test, s.images, s.seed)
        ctx.record["sensitivity"] = {
            "images": len(ctx.sensitivity_data),
            "seed": s.seed,
            "images_hash": ctx.sensitivity_data.content_hash,
            "triggers": None if s.triggers is None else [t.label for t in s.triggers],
        }
    if spec.external_triggers:
        ctx.photo_triggers = _photo_triggers(cfg, targets, splits.test.image_shape)
        ctx.record["external_triggers"] = list(ctx.photo_triggers)
    return ctx


def external_trigger_predictions(
    model: PoisonlabModel, photos: list[Path], triggers: dict, class_names: tuple[str, ...], device: str
) -> list[dict]:
    """Each photo, clean and with every trigger, predicted by ``model``.

    Returns
    -------
    list of dict
        ``image``, ``trigger`` (``"none"`` for the clean photo), ``prediction``, ``probability``
        (in [0, 1]) and, for a trigger that cannot be applied to the photo, ``skipped`` (reason).
    """
    h, w, c = model.input_shape
    x = np.stack([load_image_file(p, size=h) for p in photos])  # (P, h, h, 3) uint8
    if c == 1:
        x = rgb_to_gray(x)
    rows: list[dict] = []
    for label, fn in {"none": None, **triggers}.items():
        try:
            batch = x if fn is None else apply_trigger(fn, x)
        except (ValueError, OSError) as exc:  # e.g. a patch larger than the image
            rows += [{"image": p.name, "trigger": label, "skipped": str(exc)} for p in photos]
            continue
        probs = forward_pass(model, batch, device=device).probabilities
        for path, p in zip(photos, probs, strict=True):
            top = int(p.argmax())
            rows.append(
                {
                    "image": path.name,
                    "trigger": label,
                    "prediction": class_names[top],
                    "probability": float(p[top]),
                }
            )
    return rows


def robustness_checks(
    model: PoisonlabModel,
    ctx: RobustnessContext,
    class_names: tuple[str, ...],
    *,
    reference: PoisonlabModel | None = None,
    device: str,
) -> dict[str, Any]:
    """Run the configured tests on ``model``.

    Parameters
    ----------
    model
        The model under test.
    ctx
        From :func:`prepare_robustness`.
    class_names
        The dataset's classes.
    reference
        The seed's clean model, used by the sensitivity test with ``reference: clean``.

    Returns
    -------
    dict
        ``canaries`` (passed, accuracy in [0, 1], n_canaries, n_failures, failures_per_class,
        failed_classes, failures), ``sensitivity`` (passed, spikes ``source -> target`` with
        rate and base rate, flip_rate per trigger, skipped) and ``external_triggers`` (rows of
        :func:`external_trigger_predictions`), each only when configured.
    """
    out: dict[str, Any] = {}
    if ctx.canaries is not None:
        rep = check_canaries(model, ctx.canaries, device=device).to_dict()
        rep["n_failures"] = len(rep["failures"])
        rep["failed_classes"] = sorted(rep["failures_per_class"], key=class_names.index)
        out["canaries"] = rep
    if ctx.sensitivity_data is not None:
        s = ctx.spec.sensitivity
        rep = trigger_sensitivity(
            model,
            ctx.sensitivity_data,
            triggers=bind_triggers(s.triggers, ctx.sensitivity_data.image_shape),
            spike_threshold=s.spike_threshold,
            min_class_samples=s.min_class_samples,
            reference=reference if s.reference == "clean" else None,
            device=device,
        ).to_dict()
        rep.pop("flip_matrix")  # K x K per trigger per model: the spikes and flip rates say it
        rep["spikes"] = rep.pop("suspected")
        out["sensitivity"] = rep
    if ctx.photo_triggers:
        out["external_triggers"] = external_trigger_predictions(
            model, ctx.photos, ctx.photo_triggers, class_names, device
        )
    return out


#: the range of each figure of :func:`robustness_scalars` that has no denominator (its t
#: interval over seeds is cut to it: a count of failed canaries cannot fall below 0)
SCALAR_BOUNDS: dict[str, tuple[float, float]] = {
    "canary_failures": (0.0, math.inf),
    "sensitivity_spikes": (0.0, math.inf),
    "sensitivity_flagged": (0.0, 1.0),
}


def robustness_scalars(checks: dict[str, Any]) -> tuple[dict[str, float], dict[str, int]]:
    """The figures of :func:`robustness_checks` aggregated over seeds, with their image counts.

    Returns
    -------
    values : dict
        ``canary_accuracy`` in [0, 1], ``canary_failures`` (a count), ``sensitivity_spikes`` (flagged
        ``trigger, source -> target`` triples) and ``sensitivity_flagged`` (1.0 when flagged).
    counts : dict
        ``{"canary_accuracy": number of canaries}`` (the n of its Wilson interval).
    """
    values: dict[str, float] = {}
    counts: dict[str, int] = {}
    if "canaries" in checks:
        c = checks["canaries"]
        values["canary_accuracy"] = float(c["accuracy"])
        values["canary_failures"] = float(c["n_failures"])
        counts["canary_accuracy"] = int(c["n_canaries"])
    if "sensitivity" in checks:
        values["sensitivity_spikes"] = float(len(checks["sensitivity"]["spikes"]))
        values["sensitivity_flagged"] = float(not checks["sensitivity"]["passed"])
    return values, counts
