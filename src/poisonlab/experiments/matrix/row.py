"""One attack row of the matrix: poison, train, measure, scan with every column, mitigate.

The science of :mod:`poisonlab.experiments.matrix.run` (see its docstring for the protocol);
the runner there turns each row into a cell an executor runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from poisonlab.data.catalog import load_splits
from poisonlab.data.dataset import Dataset, Splits
from poisonlab.defenses.mitigation import mitigate
from poisonlab.defenses.scan import ScanResult, scan
from poisonlab.experiments.common.cache import cached_model
from poisonlab.experiments.common.measure import AttackTargets, measure, triggered_test
from poisonlab.experiments.matrix.config import MatrixAttack, MatrixConfig
from poisonlab.experiments.matrix.records import AttackRow
from poisonlab.experiments.single.build import attack_targets, build_attack
from poisonlab.models.base import PoisonlabModel

__all__ = ["matrix_splits", "model_success", "run_row"]


def matrix_splits(cfg: MatrixConfig) -> tuple[Splits, Dataset]:
    """Training/validation/test splits (training optionally subsampled) and the trusted set.

    The trusted set is a seeded share of the validation split (``trusted_size``, default half)
    and is removed from the returned validation split, so that images a mislabel attack draws
    from ``val`` can never also sit in the defender's trusted set.
    """
    data_dir = (
        None if cfg.dataset.data_dir is None else cfg.experiment(cfg.attacks[0]).path(cfg.dataset.data_dir)
    )
    splits = load_splits(cfg.dataset.name, data_dir=data_dir, seed=cfg.dataset.split_seed)
    rng = np.random.default_rng(cfg.seed)
    train, n_val = splits.train, len(splits.val)
    # sizes the data cannot give are errors, not silently clamped (a late, misleading failure)
    if cfg.train_size is not None and cfg.train_size > len(train):
        raise ValueError(
            f"train_size={cfg.train_size} is larger than the training split of {cfg.dataset.name} "
            f"({len(train)} images); lower it, or leave it out to use them all"
        )
    if cfg.trusted_size is not None and cfg.trusted_size >= n_val:
        raise ValueError(
            f"trusted_size={cfg.trusted_size} must be below the validation split of {cfg.dataset.name} "
            f"({n_val} images): the rest stays the validation split"
        )
    if cfg.train_size is not None and cfg.train_size < len(train):
        train = train.subset(np.sort(rng.choice(len(train), cfg.train_size, replace=False)))
    n_trusted = min(cfg.trusted_size or n_val // 2, n_val - 1)
    order = rng.permutation(n_val)
    trusted = splits.val.subset(np.sort(order[:n_trusted]), name=f"{splits.val.name}-trusted")
    val = splits.val.subset(np.sort(order[n_trusted:]))
    return Splits(train=train, val=val, test=splits.test), trusted


def model_success(
    model: PoisonlabModel, splits: Splits, targets: AttackTargets, device: str
) -> dict[str, Any]:
    """Clean accuracy and attack success of ``model`` (see :mod:`poisonlab.experiments.matrix.run`)."""
    triggered = triggered_test(splits.test, targets)
    m = measure(model, splits.test, targets, triggered=triggered, external=[], device=device)
    success = m.attack_success_rate
    if success is None and targets.source is not None and targets.target is not None:
        n_source = int(np.sum(splits.test.y == targets.source))
        success = None if n_source == 0 else (m.source_to_target or 0) / n_source
    return {"clean_accuracy": m.clean_accuracy, "attack_success": success}


def _mitigated_cells(cfg: MatrixConfig, result: ScanResult) -> list[str]:
    chosen = cfg.mitigation.defenses
    if chosen == "none":
        return []
    if chosen == "screen":
        return ["screen"] if result.screen is not None else []
    if chosen == "all":
        return [m.name for m in result.methods]
    if chosen == "best":
        scored = [(m.metrics.get("f1") or 0.0, m.name) for m in result.methods if m.metrics]
        best = max(scored, default=(0.0, None))
        return [best[1]] if best[1] is not None and best[0] > 0 else []
    return list(chosen)


def _retrain_without(
    cfg: MatrixConfig,
    splits: Splits,
    data: Dataset,
    flagged: np.ndarray,
    targets: AttackTargets,
    suggested: np.ndarray | None,
    device: str,
    progress: bool,
    action: str,
) -> dict[str, Any]:
    relabel = action == "relabel"
    if relabel and suggested is None:
        raise ValueError(
            "mitigation action 'relabel' needs a defense that suggests labels (confident_learning)"
        )
    cleaned = mitigate(data, flagged, action=action, suggested_labels=suggested if relabel else None)
    config = cfg.experiment(cfg.attacks[0]).clean_train_config().model_copy(update={"seed": cfg.seed})
    model, model_id, _, _ = cached_model(
        Splits(train=cleaned, val=splits.val, test=splits.test),
        config,
        device=device,
        progress=progress,
        name=f"{cfg.name}-mitigated",
    )
    out = model_success(model, splits, targets, device)
    mask = data.poison_mask
    out |= {"model_id": model_id, "removed": int(flagged.sum()), "poison_left": int((mask & ~flagged).sum())}
    return out


def _scan_row(
    cfg: MatrixConfig, data: Dataset, model: PoisonlabModel, trusted: Dataset, device: str
) -> ScanResult:
    """The row's scan over the matrix's columns (:meth:`MatrixConfig.defense_names`): the
    configured defenses with their parameters, the screen's other detectors with their frozen
    defaults, combined into the screen's verdict when ``"screen"`` is a column."""
    names = cfg.defense_names()
    params = {d.name: dict(d.params) for d in cfg.defenses or []}
    methods = [(n, params.get(n, {})) for n in names if n != "screen"]
    return scan(data, methods, model=model, trusted=trusted, device=device, screen="screen" in names)


def run_row(
    cfg: MatrixConfig,
    row: MatrixAttack,
    splits: Splits,
    trusted: Dataset,
    clean_model: Callable[[], PoisonlabModel],
    device: str,
    progress: bool,
) -> AttackRow:
    """Poison the training set with ``row``'s attack, train on it, measure, scan, mitigate.

    Parameters
    ----------
    cfg, row
        The matrix and the row's attack.
    splits, trusted
        :func:`matrix_splits`.
    clean_model
        Returns the clean model; called only once the row's own model has trained, so that a
        row can start while the clean model is still training in another process (the model
        cache makes it wait for that model instead of training it twice).
    device, progress
        Torch device and progress bars.

    Returns
    -------
    AttackRow
    """
    exp = cfg.experiment(row)
    targets = attack_targets(exp, splits)
    poison = build_attack(exp, splits, cfg.seed).poison(splits.train)
    data = poison.dataset.replace(name=f"{splits.train.name}+{row.name}")
    model, model_id, _, _ = cached_model(
        Splits(train=data, val=splits.val, test=splits.test),
        exp.poison_train_config(cfg.seed),
        device=device,
        progress=progress,
        name=f"{cfg.name}-{row.name}",
    )
    record = AttackRow(
        name=row.name,
        description=poison.description,
        poison_count=poison.num_poison,
        train_size=len(data),
        model_id=model_id,
        poisoned=model_success(model, splits, targets, device),
        clean_model_success=model_success(clean_model(), splits, targets, device)["attack_success"],
    )
    result = _scan_row(cfg, data, model, trusted, device)
    record.forward_seconds = result.forward_seconds
    for m in result.methods:
        record.detection[m.name] = {
            **(m.metrics or {}),
            "flagged": int(m.flagged.sum()),
            "seconds": m.seconds,
            "params": dict(m.params),  # what ran in this cell, defaults included
        }
    if result.screen is not None:
        record.detection["screen"] = {
            **(result.screen.metrics or {}),
            "flagged": int(result.screen.flagged.sum()),
        }
    for name in _mitigated_cells(cfg, result):
        if name == "screen":
            flagged, suggested = result.screen.flagged, None  # type: ignore[union-attr]
        else:
            method = result.method(name)
            flagged, suggested = method.flagged, getattr(method.defense, "suggested_labels_", None)
        record.mitigation[name] = _retrain_without(
            cfg, splits, data, flagged, targets, suggested, device, progress, cfg.mitigation.action
        )
    if cfg.mitigation.oracle:
        record.mitigation["oracle"] = _retrain_without(
            cfg, splits, data, data.poison_mask.copy(), targets, None, device, progress, "drop"
        )
    return record
