"""Clean-label attack benchmark: craft, train the victim, count successes, run the defenses.

Protocol of Schwarzschild et al., "Just How Toxic is Data Poisoning?", ICML 2021
(arXiv:2006.12557), scaled to a CPU (see :mod:`poisonlab.experiments.clean_label_config`). Every
trial draws one victim test image that the clean victim model classifies correctly and one
adversarial target class; all attacks of a trial share that draw, so their success rates are a
paired comparison. Besides the success of each trial the runner records the *control* (does the
clean victim model already give the target label to the attacker's test input? - the patch alone
can flip an image), clean accuracy, for backdoors the rate over every triggered source-class test
image, the crafting time and memory, and the defenses' detection scores on the poisoned set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poisonlab.attacks.hidden_trigger import chapter_patch_trigger
from poisonlab.data.catalog import load_splits
from poisonlab.data.dataset import Dataset, Splits
from poisonlab.experiments.build import cached_model
from poisonlab.experiments.clean_label_config import CleanLabelConfig, CraftedAttackSpec
from poisonlab.inference import forward_pass, predict
from poisonlab.models.base import PoisonlabModel
from poisonlab.training import train

__all__ = ["CleanLabelRun", "run_clean_label", "victim_model"]


@dataclass
class CleanLabelRun:
    """Everything measured; ``trials`` holds one dict per (trial, attack)."""

    config: CleanLabelConfig
    clean: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        config = self.config.model_dump(mode="json")
        config.pop("base_dir", None)  # a local path, not a setting
        return {"config": config, "clean": self.clean, "trials": self.trials}


def _subset(ds: Dataset, idx: np.ndarray, name: str) -> Dataset:
    return ds.subset(np.sort(idx), name=name)


def benchmark_data(cfg: CleanLabelConfig) -> tuple[Dataset | None, Dataset, Dataset, Dataset]:
    """(pretrain set or None, victim training set, evaluation test subset, trusted subset)."""
    splits = load_splits(cfg.dataset.name, data_dir=cfg.dataset.data_dir, seed=cfg.dataset.split_seed)
    need = cfg.train_size + (cfg.pretrain_size or 0)
    if need > len(splits.train):
        raise ValueError(
            f"pretrain_size + train_size = {need} exceeds the {len(splits.train)} training images"
        )
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(len(splits.train))
    pre = None
    if cfg.pretrain_size:
        pre = _subset(splits.train, perm[: cfg.pretrain_size], f"{cfg.name}:pretrain")
    start = cfg.pretrain_size or 0
    train_set = _subset(splits.train, perm[start : start + cfg.train_size], f"{cfg.name}:train")
    missing = set(range(train_set.num_classes)) - set(np.unique(train_set.y).tolist())
    if missing:
        raise ValueError(f"train_size {cfg.train_size} leaves classes {sorted(missing)} without images")
    test = splits.test
    evaluation = _subset(test, rng.permutation(len(test))[: min(cfg.eval_size, len(test))], "eval")
    trusted = _subset(
        splits.val, rng.permutation(len(splits.val))[: min(cfg.trusted_size, len(splits.val))], "trusted"
    )
    return pre, train_set, evaluation, trusted


def _fit_linear_head(model: PoisonlabModel, data: Dataset, cfg: CleanLabelConfig) -> PoisonlabModel:
    """A copy of ``model`` whose last layer is refit on ``data``'s frozen penultimate features.

    Multinomial logistic regression on standardised features (lbfgs converges there); the
    scaling is folded back into the weights so the head reads the raw features.
    """
    import copy

    import torch
    from sklearn.linear_model import LogisticRegression

    feats = forward_pass(model, data.x, features=True, device=cfg.device).features.astype(np.float64)
    mean, std = feats.mean(axis=0), feats.std(axis=0) + 1e-6
    head = LogisticRegression(C=cfg.linear.c, max_iter=cfg.linear.max_iter)
    head.fit((feats - mean) / std, data.y)
    if head.coef_.shape[0] != model.num_classes:
        raise ValueError(
            f"the linear head saw {head.coef_.shape[0]} classes, the model has {model.num_classes}"
        )
    weight = head.coef_ / std
    bias = head.intercept_ - weight @ mean
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        out.classifier.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        out.classifier.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return out


def victim_model(
    cfg: CleanLabelConfig, surrogate: PoisonlabModel, data: Dataset, val: Dataset
) -> PoisonlabModel:
    """Train the victim on ``data`` in the configured setting (the attacker does not control this)."""
    if cfg.setting == "transfer_linear":
        return _fit_linear_head(surrogate, data, cfg)
    model = surrogate if cfg.setting == "transfer_finetune" else None
    return train(
        data, cfg.victim_config(), model=model, val_data=val, device=cfg.device, progress=False
    ).model


def _trigger_fn(spec: CraftedAttackSpec) -> Callable[[np.ndarray], np.ndarray]:
    return chapter_patch_trigger(spec.patch.size, spec.patch.offset)


def build_crafted_attack(
    spec: CraftedAttackSpec,
    cfg: CleanLabelConfig,
    *,
    surrogate: PoisonlabModel,
    victim: np.ndarray,
    source: int,
    target: int,
    seed: int,
):
    """The attack of one trial (model, victim, classes, budget and eps fixed by the benchmark)."""
    from poisonlab.attacks import ATTACKS

    params: dict[str, Any] = {
        "model": surrogate,
        "target": target,
        "count": cfg.num_poisons,
        "eps": cfg.eps if spec.eps is None else spec.eps,
        "seed": seed,
        "device": cfg.device,
        **spec.params,
    }
    if spec.attack == "hidden_trigger":
        params.update(source=source, trigger=_trigger_fn(spec), trigger_name=f"patch{spec.patch.size}")
    elif spec.attack == "clean_label_backdoor":
        params.update(trigger=_trigger_fn(spec), trigger_name=f"patch{spec.patch.size}")
    else:
        params["victims"] = victim[None]
    try:
        return ATTACKS[spec.attack](**params)
    except TypeError as exc:  # an unknown key in params
        raise ValueError(f"attack {spec.name}: {exc}") from None


def _draw_trial(rng: np.random.Generator, evaluation: Dataset, correct: np.ndarray) -> tuple[int, int, int]:
    """(index into ``evaluation`` of the victim, its class, the adversarial target class)."""
    victim = int(rng.choice(np.flatnonzero(correct)))
    source = int(evaluation.y[victim])
    target = int(rng.choice([k for k in range(evaluation.num_classes) if k != source]))
    return victim, source, target


def _backdoor_rate(
    model: PoisonlabModel, attack: Any, evaluation: Dataset, source: int, target: int, device: str
) -> float:
    """Share of triggered source-class evaluation images classified as ``target``."""
    imgs = evaluation.x[evaluation.y == source]
    return float(np.mean(predict(model, attack.at_test_time(imgs), device=device) == target))


def _scan_metrics(cfg: CleanLabelConfig, poisoned: Dataset, model: PoisonlabModel, trusted: Dataset) -> dict:
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


def _run_trial(ctx: dict[str, Any], spec: CraftedAttackSpec, trial: int, draw: tuple[int, int, int]) -> dict:
    cfg: CleanLabelConfig = ctx["cfg"]
    evaluation: Dataset = ctx["evaluation"]
    v, source, target = draw
    victim_img = evaluation.x[v]
    attack = build_crafted_attack(
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
    if spec.is_backdoor:
        row["backdoor_rate"] = _backdoor_rate(model, attack, evaluation, source, target, cfg.device)
        row["backdoor_rate_clean"] = _backdoor_rate(
            ctx["clean_model"], attack, evaluation, source, target, cfg.device
        )
    row["detection"] = _scan_metrics(cfg, result.dataset, model, ctx["trusted"])
    return row


def _prepare(cfg: CleanLabelConfig, progress: bool) -> dict[str, Any]:
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


def run_clean_label(
    cfg: CleanLabelConfig,
    out_dir: str | Path,
    *,
    progress: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> CleanLabelRun:
    """Run every trial of every attack; ``results.json`` and the report are rewritten after each."""
    from poisonlab.experiments.clean_label_report import write_clean_label_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = _prepare(cfg, progress)
    if not ctx["correct"].any():
        raise ValueError("the clean victim model classifies no evaluation image correctly; train it longer")
    run = CleanLabelRun(config=cfg, clean=ctx["clean"])
    rng = np.random.default_rng(cfg.seed + 7)
    for trial in range(cfg.trials):
        draw = _draw_trial(rng, ctx["evaluation"], ctx["correct"])
        for spec in cfg.attacks:
            row = _run_trial(ctx, spec, trial, draw)
            run.trials.append(row)
            (out / "results.json").write_text(json.dumps(run.to_json(), indent=2), encoding="utf-8")
            write_clean_label_report(run, out)
            if on_row is not None:
                on_row(row)
    return run
