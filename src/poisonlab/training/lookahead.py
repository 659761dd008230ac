"""Lookahead on the weights, scheduled as airbench does.

Zhang, Lucas, Hinton & Ba, "Lookahead Optimizer: k steps forward, 1 step back" (NeurIPS 2019,
arXiv:1907.08610): a slow copy of the weights follows the trained ("fast") weights every ``k``
steps, and the fast weights restart from it. airbench (Jordan 2024, arXiv:2404.00498, section
3.5) averages the BatchNorm statistics with the weights and lets the slow copy's decay grow as
``decay * (step / total) ** power``: almost no averaging early, strong averaging at the end.
"""

from __future__ import annotations

import torch
from torch import nn

from poisonlab.training.options import LookaheadConfig


class Lookahead:
    """The slow copy of a network's floating-point state (weights and BatchNorm statistics).

    Parameters
    ----------
    config : LookaheadConfig
        ``every``, ``decay``, ``power``, ``start_epoch``.
    total_steps : int
        Optimiser steps of the whole run (>= 1).
    steps_per_epoch : int
        Steps per epoch (>= 1): the slow copy starts at the first step of ``start_epoch``.
    """

    def __init__(self, config: LookaheadConfig, *, total_steps: int, steps_per_epoch: int) -> None:
        if total_steps < 1 or steps_per_epoch < 1:
            raise ValueError(
                f"need total_steps and steps_per_epoch >= 1, got {total_steps}, {steps_per_epoch}"
            )
        self.config = config
        self.total_steps = total_steps
        self.first_step = (config.start_epoch - 1) * steps_per_epoch + 1
        self.slow: dict[str, torch.Tensor] | None = None

    def decay_at(self, step: int) -> float:
        """The slow copy's decay at optimiser step ``step`` (1-based), in [0, config.decay]."""
        frac = min(1.0, step / self.total_steps)
        return self.config.decay * frac**self.config.power

    @torch.no_grad()
    def after_step(self, net: nn.Module, step: int) -> None:
        """Call after optimiser step ``step`` (1-based): every ``every`` steps from ``first_step``
        on, ``slow = d * slow + (1 - d) * fast`` and ``fast = slow`` (the first time, ``slow = fast``)."""
        if step < self.first_step or step % self.config.every != 0:
            return
        state = _float_state(net)
        if self.slow is None:
            self.slow = {k: v.detach().clone() for k, v in state.items()}
            return
        weight = 1.0 - self.decay_at(step)
        for key, fast in state.items():
            self.slow[key].lerp_(fast, weight)
            fast.copy_(self.slow[key])

    @torch.no_grad()
    def end_epoch(self, net: nn.Module) -> None:
        """Reset the fast weights to the slow copy (once it exists): each epoch ends on it."""
        if self.slow is None:
            return
        for key, fast in _float_state(net).items():
            fast.copy_(self.slow[key])


def _float_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """Floating-point parameters and buffers by name (not BatchNorm's integer batch counters)."""
    return {k: v for k, v in net.state_dict(keep_vars=True).items() if v.is_floating_point()}
