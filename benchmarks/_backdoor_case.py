"""The benchmark case of the defenses issue: CIFAR-10, pattern backdoor, all airplanes -> bird.

Every training airplane (about 4,000 of the 40,000-image training split) is copied, stamped with
ART's ``add_pattern_bd(distance=2, pixel_value=1)`` and labelled bird, and the copies are
concatenated to the clean set (43,988-ish samples). The chapter CNN is trained from scratch on
it with the default fast recipe. The model is cached under ``$POISONLAB_HOME/baselines`` keyed by
data hash + config, so every benchmark run after the first reuses it.

Run ``python benchmarks/_backdoor_case.py --data-dir ../shared/datasets/cifar10-jpeg`` to train
(about 15 minutes on 2 cores) and print its clean accuracy and attack success rate.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from poisonlab.attacks import BackdoorPoisoning
from poisonlab.data.catalog import load_splits
from poisonlab.data.dataset import Dataset, Splits
from poisonlab.experiments.common.cache import cached_model
from poisonlab.inference import predict
from poisonlab.metrics import accuracy, attack_success_rate
from poisonlab.models.base import PoisonlabModel
from poisonlab.training.config import fast_recipe
from poisonlab.triggers import get_trigger


@dataclass(frozen=True)
class BackdoorCase:
    splits: Splits  # clean splits
    poisoned: Dataset  # training set with poison_mask
    model: PoisonlabModel
    model_id: str
    source: int
    target: int


def backdoor_case(data_dir: str | None, *, device: str = "auto", progress: bool = True) -> BackdoorCase:
    splits = load_splits("cifar10", data_dir=data_dir, seed=0)
    trigger = get_trigger("pattern", distance=2, pixel_value=1)
    attack = BackdoorPoisoning(perturbation=trigger, trigger_name="pattern", source="airplane", target="bird")
    poisoned = attack.poison(splits.train).dataset.replace(name="cifar10-pattern-airplane-bird")
    model, model_id, _, _ = cached_model(
        Splits(train=poisoned, val=splits.val, test=splits.test),
        fast_recipe(),
        device=device,
        progress=progress,
        name="bench-cifar10-pattern-backdoor",
    )
    return BackdoorCase(splits, poisoned, model.eval(), model_id, source=0, target=2)


def attack_figures(case: BackdoorCase, device: str = "auto") -> dict[str, float]:
    """Clean test accuracy and attack success rate (triggered test airplanes predicted bird)."""
    test = case.splits.test
    clean_acc = accuracy(test.y, predict(case.model, test.x, device=device))
    trigger = get_trigger("pattern", distance=2, pixel_value=1)
    src = test.y == case.source
    triggered = trigger(test.x[src])
    asr = attack_success_rate(
        test.y[src], predict(case.model, triggered, device=device), case.target, case.source
    )
    return {"clean_accuracy": float(clean_acc), "attack_success_rate": float(asr)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    case = backdoor_case(args.data_dir, device=args.device)
    print(
        len(case.poisoned),
        int(np.sum(case.poisoned.poison_mask)),
        case.model_id,
        attack_figures(case, args.device),
    )
