"""Optimiser and learning-rate schedule of a training run.

Parameter groups: weights (tensors of 2+ dimensions) get the weight decay; biases and
BatchNorm parameters get none unless ``decay_biases`` (airbench decays everything). BatchNorm
biases can train at a multiple of the lr (airbench: 64x, with the BatchNorm scales frozen); when
they are decayed too, their decay is divided by that multiple, so every parameter shrinks by the
same ``lr x weight_decay`` per step.
"""

from __future__ import annotations

import torch
from torch import nn

from poisonlab.training.options import TrainConfig

__all__ = ["make_optimizer", "make_schedule", "one_cycle_factor", "param_groups"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """The optimiser's parameter groups (frozen parameters included: they may unfreeze later).

    Returns
    -------
    list of dict
        ``params``, ``weight_decay`` and, for the BatchNorm-bias group, ``lr``; empty groups
        are left out.
    """
    params = list(model.parameters())
    decay = [p for p in params if p.ndim > 1]
    if cfg.bn_bias_lr_scale == 1.0 and not cfg.decay_biases:  # the original two groups, same order
        return [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
    bn_bias_ids = {id(m.bias) for m in model.modules() if isinstance(m, _BN) and m.bias is not None}
    bn_biases = [p for p in params if id(p) in bn_bias_ids]
    others = [p for p in params if p.ndim <= 1 and id(p) not in bn_bias_ids]
    scale = cfg.bn_bias_lr_scale
    small_decay = cfg.weight_decay if cfg.decay_biases else 0.0
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": others, "weight_decay": small_decay},
        {"params": bn_biases, "weight_decay": small_decay / scale, "lr": cfg.lr * scale},
    ]
    return [g for g in groups if g["params"]]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (optionally Nesterov), Keras-style Adam (L2 in the gradient) or AdamW."""
    groups = param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "adam":
        # Keras-style Adam (the chapter's): L2 folded into the gradient is what weight_decay does here.
        return torch.optim.Adam(groups, lr=cfg.lr)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def one_cycle_factor(
    step: int, total: int, warmup_fraction: float, start: float = 0.1, end: float = 0.01
) -> float:
    """Multiplier of the peak lr at ``step`` (0-based) of ``total``.

    A linear rise from ``start`` to 1 over the warm-up share, then a linear fall to ``end`` at
    the last step (Smith & Topin 2017, "Super-Convergence", arXiv:1708.07120; airbench's
    triangular schedule is the same shape with start 0.2, peak at 23% and end 0.07).
    """
    warm = min(max(1, round(total * warmup_fraction)), max(1, total - 1))
    if step < warm:
        return start + (1.0 - start) * step / warm
    rest = max(1, total - 1 - warm)
    return max(end, 1.0 - (1.0 - end) * (step - warm) / rest)


def make_schedule(
    opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-step lr schedule of ``cfg.schedule`` (None for a constant lr)."""
    if cfg.schedule == "onecycle":
        start, end = cfg.lr_start_factor, cfg.lr_end_factor
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: one_cycle_factor(step, total_steps, cfg.warmup_fraction, start, end)
        )
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    return None
