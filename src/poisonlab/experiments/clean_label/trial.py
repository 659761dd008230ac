"""One trial of the clean-label benchmark, and what every trial shares.

The science of :mod:`poisonlab.experiments.clean_label.run` (see its docstring for the protocol
of Schwarzschild et al., ICML 2021, arXiv:2006.12557): :func:`prepare_context` trains (or loads)
the surrogate and the clean victim, :func:`draw_trial` draws a trial's victim image and target
class, :func:`run_trial` crafts one attack for it, trains the victim and measures the row.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from poisonlab.attacks.crafted import CraftedAttack
from poisonlab.attacks.factory import build_crafted_attack, make_trigger
from poisonlab.data.dataset import Dataset, Splits
from poisonlab.experiments.clean_label.config import CleanLabelConfig, CraftedAttackSpec
from poisonlab.experiments.clean_label.victim import benchmark_data, victim_model
from poisonlab.experiments.common.cache import cached_model
from poisonlab.inference import predict
from poisonlab.models.base import PoisonlabModel

__all__ = ["check_attacks", "draw_trial", "prepare_context", "run_trial"]


def _trial_attack(
    spec: CraftedAttackSpec,
    cfg: CleanLabelConfig,
    *,
    surrogate: PoisonlabModel,
    victim: np.ndarray,
    source: int,
    target: int,
    seed: int,
) -> CraftedAttack:
    """The attack of one trial (model, victim, classes, budget and eps fixed by the benchmark).

    Every attack of a trial is offered the same draw; the attack factory passes each one only the
    inputs it takes (the source class, the victim image, the row's patch trigger).
    """
    patch = make_trigger(patch_size=spec.patch.size, patch_offset=spec.patch.offset)
    try:
        return build_crafted_attack(
            spec.attack,
            model=surrogate,
            target=target,
            count=cfg.num_poisons,
            eps=cfg.eps if spec.eps is None else spec.eps,
            seed=seed,
            device=cfg.device,
            source=source,
            victims=victim[None],
            trigger=patch.fn,
            trigger_name=patch.name,
            params=spec.params,
            ignore_unused=True,
        )
    except ValueError as exc:  # e.g. an unknown key in params: name the config's row
        raise ValueError(f"attack {spec.name}: {exc}") from None


def check_attacks(cfg: CleanLabelConfig) -> None:
    """Build every attack row against an untrained stand-in of the surrogate, and stamp its patch
    on a blank victim image: a bad setting (``steps: -4``, an unknown parameter, a patch larger
    than the image) fails now, before the surrogate and the clean victim train, and is not
    retried by the executor as a failed cell would be.

    Raises
    ------
    ValueError
        The first row that cannot be built, named.
    """
    from poisonlab.data.catalog import DATASET_SHAPES
    from poisonlab.models.registry import build_model

    shape, classes = DATASET_SHAPES[cfg.dataset.name]
    stand_in = build_model(cfg.pretrain_config().model.spec(shape, classes))
    blank = np.zeros(shape, np.uint8)
    for spec in cfg.attacks:
        attack = _trial_attack(spec, cfg, surrogate=stand_in, victim=blank, source=0, target=1, seed=cfg.seed)
        if not attack.needs_trigger:  # the row's patch is not used
            continue
        try:
            attack.at_test_time(blank[None])
        except ValueError as exc:
            raise ValueError(f"attack {spec.name}: patch: {exc}") from None


def draw_trial(
    rng: np.random.Generator, labels: np.ndarray, num_classes: int, correct: np.ndarray
) -> tuple[int, int, int]:
    """(index into the evaluation set of the victim, its class, the adversarial target class).

    ``labels``: int (N,) the evaluation set's labels; ``correct``: bool (N,) whether the clean
    victim model classifies each image correctly.
    """
    victim = int(rng.choice(np.flatnonzero(correct)))
    source = int(labels[victim])
    target = int(rng.choice([k for k in range(num_classes) if k != source]))
    return victim, source, target


def _backdoor_rate(
    model: PoisonlabModel, attack: CraftedAttack, evaluation: Dataset, source: int, target: int, device: str
) -> float:
    """Share of triggered source-class evaluation images classified as ``target``."""
    imgs = evaluation.x[evaluation.y == source]
    return float(np.mean(predict(model, attack.at_test_time(imgs), device=device) == target))


def _scan_metrics(cfg: CleanLabelConfig, poisoned: Dataset, model: PoisonlabModel, trusted: Dataset) -> dict:
    """Detection metrics of every configured defense on the poisoned set (empty without defenses)."""
    from poisonlab.defenses.scan import scan

    if not cfg.defenses:
        return {}
    result = scan(
        poisoned,
        [(d.name, dict(d.params)) for d in cfg.defenses],
        model=model,
        trusted=trusted,
        device=cfg.device,
    )
    return {m.name: {**(m.metrics or {}), "flagged": int(m.flagged.sum())} for m in result.methods}


def run_trial(ctx: dict[str, Any], spec: CraftedAttackSpec, trial: int, draw: tuple[int, int, int]) -> dict:
    """Craft one attack for one trial's draw, train the victim on its poison, measure the row."""
    cfg: CleanLabelConfig = ctx["cfg"]
    evaluation: Dataset = ctx["evaluation"]
    v, source, target = draw
    victim_img = evaluation.x[v]
    attack = _trial_attack(
        spec,
        cfg,
        surrogate=ctx["surrogate"],
        victim=victim_img,
        source=source,
        target=target,
        seed=cfg.seed * 1000 + trial,
    )
    result = attack.poison(ctx["train"])
    start = time.perf_counter()
    model = victim_model(cfg, ctx["surrogate"], result.dataset, ctx["trusted"])
    train_seconds = time.perf_counter() - start
    test_input = attack.at_test_time(victim_img[None])
    row: dict[str, Any] = {
        "trial": trial,
        "attack": spec.name,
        "kind": spec.attack,
        "victim_index": v,
        "victim_class": evaluation.class_names[source],
        "target_class": evaluation.class_names[target],
        "success": bool(predict(model, test_input, device=cfg.device)[0] == target),
        "control": bool(predict(ctx["clean_model"], test_input, device=cfg.device)[0] == target),
        "clean_accuracy": float(np.mean(predict(model, evaluation.x, device=cfg.device) == evaluation.y)),
        "poisons": result.num_poison,
        "craft": result.report.to_dict() if result.report else None,
        "victim_train_seconds": train_seconds,
    }
    if attack.needs_trigger:  # a backdoor: also its rate over every triggered source image
        row["backdoor_rate"] = _backdoor_rate(model, attack, evaluation, source, target, cfg.device)
        row["backdoor_rate_clean"] = _backdoor_rate(
            ctx["clean_model"], attack, evaluation, source, target, cfg.device
        )
    row["detection"] = _scan_metrics(cfg, result.dataset, model, ctx["trusted"])
    return row


def prepare_context(cfg: CleanLabelConfig, progress: bool) -> dict[str, Any]:
    """The data, the (cached) surrogate and the clean victim every trial shares, and its figures."""
    pre, train_set, evaluation, trusted = benchmark_data(cfg)
    base = pre if pre is not None else train_set
    surrogate, model_id, _, cached = cached_model(
        Splits(train=base, val=trusted, test=evaluation),
        cfg.pretrain_config(),
        device=cfg.device,
        progress=progress,
        name=f"{cfg.name}-surrogate",
    )
    if cfg.setting == "scratch" and cfg.victim_config() != cfg.pretrain_config():
        clean_model = cached_model(
            Splits(train=train_set, val=trusted, test=evaluation),
            cfg.victim_config(),
            device=cfg.device,
            progress=progress,
            name=f"{cfg.name}-clean-victim",
        )[0]
    elif cfg.setting == "scratch":
        clean_model = surrogate
    else:
        clean_model = victim_model(cfg, surrogate, train_set, trusted)
    correct = predict(clean_model, evaluation.x, device=cfg.device) == evaluation.y
    clean = {
        "surrogate_id": model_id,
        "surrogate_cached": cached,
        "surrogate_accuracy": float(
            np.mean(predict(surrogate, evaluation.x, device=cfg.device) == evaluation.y)
        ),
        "victim_accuracy": float(correct.mean()),
        "train_size": len(train_set),
        "pretrain_size": None if pre is None else len(pre),
        "eval_size": len(evaluation),
        "poisons": cfg.num_poisons,
        "train_hash": train_set.content_hash,
    }
    return {
        "cfg": cfg,
        "train": train_set,
        "evaluation": evaluation,
        "trusted": trusted,
        "surrogate": surrogate,
        "clean_model": clean_model,
        "correct": correct,
        "clean": clean,
    }
