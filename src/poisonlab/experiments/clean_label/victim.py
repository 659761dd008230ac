"""The benchmark's data and the victim model, the parts of a trial the attacker does not control.

The training set is drawn disjoint from the surrogate's pre-training set (transfer settings), the
evaluation and trusted sets are seeded subsets of the test and validation splits, and the victim
is trained in the configured setting: a linear head refit on frozen features
(``transfer_linear``), the surrogate fine-tuned (``transfer_finetune``) or a model trained from
scratch (``scratch``).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from poisonlab.data.catalog import load_splits
from poisonlab.data.dataset import Dataset
from poisonlab.defenses.helpers.linear_head import fit_linear_head
from poisonlab.experiments.clean_label.config import CleanLabelConfig
from poisonlab.inference import forward_pass
from poisonlab.models.base import PoisonlabModel
from poisonlab.training import train

__all__ = ["benchmark_data", "victim_model"]


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

    The defenses' one linear-head fit (multinomial logistic regression, scikit-learn's ``C``
    convention, standardised features folded back so the head reads raw features).
    """
    present = np.unique(data.y).size
    if present != model.num_classes:
        raise ValueError(f"the linear head saw {present} classes, the model has {model.num_classes}")
    feats = forward_pass(model, data.x, features=True, device=cfg.device).features.astype(np.float64)
    head = fit_linear_head(feats, data.y, model.num_classes, C=cfg.linear.c, max_iter=cfg.linear.max_iter)
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        out.classifier.weight.copy_(torch.as_tensor(head.weight, dtype=torch.float32))
        out.classifier.bias.copy_(torch.as_tensor(head.bias, dtype=torch.float32))
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
