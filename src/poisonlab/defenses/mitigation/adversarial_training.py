"""Trigger-augmented ("adversarial") training: teach the model that known triggers mean nothing.

A backdoor works because, in the training data, the trigger is the strongest predictor of the
target label. Triggered copies of ordinary samples that keep their *correct* labels break that
correlation: the trigger becomes noise that co-occurs with every class. This is data
augmentation with the suspected triggers, the data-side counterpart of adversarial training
(Madry, Makelov, Schmidt, Tsipras and Vladu, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018, arXiv:1706.06083), and, used to fine-tune a suspect model on a
small trusted clean set, the "unlearning" patch of Neural Cleanse (Wang, Yao, Shan, Li,
Viswanath, Zheng and Zhao, "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in
Neural Networks", IEEE S&P 2019), which stamps the trigger on 20% of the clean samples.

Two ways to use it, with very different strength:

* **Fine-tune a suspect model on trusted clean data** (``adversarial_training(trusted, config,
  model=suspect, ...)``): the backdoor is unlearned in a few epochs. On the embedded digits a
  pattern backdoor fell from 100% to about 20% attack success after 5 epochs on the 270 clean
  validation images with half of them stamped, while plain fine-tuning left it at 100%.
* **Train from scratch on the suspect set itself**: the planted poison stays in with its wrong
  labels and the correctly-labelled triggered copies of the source class are too few to
  outvote it (a random 10% share copies only about 10% of the source class). On digits the
  attack success stayed at 100% up to ``fraction=0.5`` and at 78% with every sample copied.
  Samples the trigger leaves unchanged already carry it (the poison itself) and are never
  copied (``skip_triggered``): copying them would only repeat the poisoned label.

Training itself is :func:`poisonlab.training.train`; this module only builds the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.base import check_fraction, check_positive_int
from poisonlab.defenses.helpers.trigger_args import TriggerArg, apply_trigger, resolve_triggers
from poisonlab.models.base import PoisonlabModel
from poisonlab.training import TrainConfig, TrainResult, train

__all__ = ["SOURCE_PREFIX", "adversarial_training", "trigger_augmented_dataset"]

#: Source tag prefix of the triggered copies: ``"augment:trigger:<name>"``.
SOURCE_PREFIX = "augment:trigger:"

Triggers = TriggerArg | Iterable[TriggerArg] | Mapping[str, TriggerArg]


def trigger_augmented_dataset(
    dataset: Dataset,
    *,
    triggers: Triggers,
    fraction: float = 0.1,
    skip_triggered: bool = True,
    seed: int = 0,
) -> Dataset:
    """``dataset`` followed by triggered copies of a random share of it, with unchanged labels.

    For every trigger, an independent seeded draw of ``round(fraction * N)`` samples (without
    replacement) is stamped with the trigger and appended with the original labels, tagged
    ``"augment:trigger:<name>"``. A copy's poison-mask entry is its original's.

    Parameters
    ----------
    dataset : Dataset
        uint8 (N, H, W, C) training samples.
    triggers : str, callable, or an iterable or mapping of them
        Registry names (registry defaults, sized for the images as in
        :func:`~poisonlab.defenses.sensitivity.default_triggers`),
        :class:`~poisonlab.triggers.BoundTrigger` objects, or ``{name: callable}`` with callables
        mapping a uint8 batch to one of the same shape and dtype.
    fraction : float, default 0.1
        Share of ``dataset`` drawn per trigger, in (0, 1].
    skip_triggered : bool, default True
        Do not copy drawn samples that the trigger leaves pixel-identical (they already carry it).
    seed : int, default 0

    Returns
    -------
    Dataset
        At most ``N + len(triggers) * round(fraction * N)`` samples, the originals first.

    Raises
    ------
    ValueError
        For a non-Dataset, an empty set, no trigger, an unknown name, a trigger that returns
        another shape or dtype, or a bad ``fraction``/``seed``/``skip_triggered``.
    """
    if not isinstance(dataset, Dataset):
        raise ValueError(f"dataset must be a poisonlab Dataset, got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError("dataset is empty: nothing to augment")
    frac = check_fraction(fraction, "fraction")
    check_positive_int(seed, "seed", minimum=0)
    if not isinstance(skip_triggered, bool):
        raise ValueError(f"skip_triggered must be True or False, got {skip_triggered!r}")
    bound = resolve_triggers(triggers, dataset.image_shape)
    n_copy = int(round(frac * len(dataset)))
    if n_copy == 0:
        raise ValueError(f"fraction={fraction} of {len(dataset)} samples rounds to 0 copies")
    rng = np.random.default_rng(seed)
    out = dataset
    for name, fn in bound.items():
        part = dataset.subset(np.sort(rng.choice(len(dataset), size=n_copy, replace=False)))
        triggered = apply_trigger(fn, part.x)
        if skip_triggered:
            changed = np.any(triggered != part.x, axis=(1, 2, 3))
            part, triggered = part.subset(changed), triggered[changed]
        out = out.concat(part.replace(x=triggered, source=f"{SOURCE_PREFIX}{name}"))
    return out.replace(name=f"{dataset.name}+trigger-augmented")


def adversarial_training(
    dataset: Dataset,
    config: TrainConfig | None = None,
    *,
    triggers: Triggers,
    fraction: float = 0.1,
    skip_triggered: bool = True,
    seed: int = 0,
    val_data: Dataset | None = None,
    model: PoisonlabModel | None = None,
    device: str = "auto",
    progress: bool = True,
) -> TrainResult:
    """Train (or fine-tune ``model``) on :func:`trigger_augmented_dataset` of ``dataset``.

    Parameters
    ----------
    dataset, triggers, fraction, skip_triggered, seed
        As in :func:`trigger_augmented_dataset`.
    config : TrainConfig, optional
        Recipe for :func:`poisonlab.training.train` (its default when None).
    val_data : Dataset, optional
        Evaluated after each epoch.
    model : PoisonlabModel, optional
        Fine-tune a copy of this model (the unlearning use, on trusted clean ``dataset``)
        instead of training a new one.
    device : {"auto", "cpu", "cuda"}
    progress : bool

    Returns
    -------
    TrainResult
        The trained model (eval mode) and its history.
    """
    augmented = trigger_augmented_dataset(
        dataset, triggers=triggers, fraction=fraction, skip_triggered=skip_triggered, seed=seed
    )
    return train(augmented, config, model=model, val_data=val_data, device=device, progress=progress)
