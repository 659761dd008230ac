"""Lookahead: when the slow copy starts, how it moves, what it averages, and the epoch reset."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from poisonlab.training.lookahead import Lookahead
from poisonlab.training.options import LookaheadConfig


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))


def _set(net: nn.Module, value: float) -> None:
    with torch.no_grad():
        for t in net.state_dict(keep_vars=True).values():
            if t.is_floating_point():
                t.fill_(value)


def test_decay_grows_from_zero_to_the_configured_value():
    la = Lookahead(LookaheadConfig(decay=0.8, power=3.0), total_steps=100, steps_per_epoch=10)
    assert la.decay_at(0) == 0.0
    assert la.decay_at(50) == pytest.approx(0.8 * 0.5**3)
    assert la.decay_at(100) == pytest.approx(0.8) and la.decay_at(150) == pytest.approx(0.8)


def test_slow_copy_starts_at_the_start_epoch_then_interpolates_and_resets_the_fast_weights():
    cfg = LookaheadConfig(every=2, decay=0.5, power=0.0, start_epoch=2)  # power 0: constant decay 0.5
    net, la = _net(), Lookahead(cfg, total_steps=20, steps_per_epoch=4)
    assert la.first_step == 5
    _set(net, 1.0)
    la.after_step(net, 4)  # epoch 1: nothing yet
    assert la.slow is None
    la.after_step(net, 6)  # first update of epoch 2: the slow copy is the fast weights
    assert la.slow is not None and torch.equal(la.slow["0.weight"], torch.ones(2, 2))
    _set(net, 3.0)
    la.after_step(net, 7)  # not a multiple of `every`
    assert torch.equal(net[0].weight, torch.full((2, 2), 3.0))
    la.after_step(net, 8)  # slow = 0.5 * 1 + 0.5 * 3 = 2, and the fast weights jump to it
    assert torch.equal(la.slow["0.weight"], torch.full((2, 2), 2.0))
    assert torch.equal(net[0].weight, torch.full((2, 2), 2.0))
    assert torch.equal(net[1].running_mean, torch.full((2,), 2.0))  # BatchNorm statistics too
    assert int(net[1].num_batches_tracked) == 0  # integer counters are left alone
    _set(net, 9.0)
    la.end_epoch(net)
    assert torch.equal(net[0].bias, torch.full((2,), 2.0))


def test_end_epoch_before_the_start_changes_nothing():
    net = _net()
    la = Lookahead(LookaheadConfig(start_epoch=3), total_steps=30, steps_per_epoch=10)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    la.end_epoch(net)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_parameters_stay_trainable_leaves():
    net = _net()
    la = Lookahead(LookaheadConfig(every=1, start_epoch=1), total_steps=4, steps_per_epoch=2)
    for step in (1, 2):
        la.after_step(net, step)
    assert all(p.is_leaf and p.requires_grad for p in net.parameters())
    net(torch.randn(4, 2)).sum().backward()


def test_invalid_step_counts():
    with pytest.raises(ValueError):
        Lookahead(LookaheadConfig(), total_steps=0, steps_per_epoch=1)
