"""Parameter groups (BatchNorm-bias lr, decay of biases), the one-cycle factor's end points."""

from __future__ import annotations

import pytest
import torch

from poisonlab.models import AirbenchNet, SimpleCifarCNN
from poisonlab.training import TrainConfig
from poisonlab.training.optim import make_optimizer, one_cycle_factor, param_groups


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def test_default_groups_are_weights_with_decay_and_the_rest_without():
    model = SimpleCifarCNN(input_shape=(8, 8, 3), num_classes=3)
    groups = param_groups(model, TrainConfig(weight_decay=0.01))
    assert len(groups) == 2 and "lr" not in groups[0] and "lr" not in groups[1]
    assert _ids(groups[0]["params"]) == _ids(p for p in model.parameters() if p.ndim > 1)
    assert groups[0]["weight_decay"] == 0.01 and groups[1]["weight_decay"] == 0.0


def test_batchnorm_biases_get_the_scaled_lr_and_every_parameter_the_same_shrinkage():
    model = AirbenchNet(input_shape=(16, 16, 3), num_classes=3, widths=(8, 8, 8))
    cfg = TrainConfig(lr=0.5, weight_decay=0.01, bn_bias_lr_scale=64.0, decay_biases=True)
    opt = make_optimizer(model, cfg)
    weights, others, bn = opt.param_groups
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert _ids(bn["params"]) == _ids(m.bias for m in norms)
    assert _ids(others["params"]) == _ids([model.whiten.bias, *(m.weight for m in norms)])
    assert bn["lr"] == pytest.approx(32.0) and weights["lr"] == others["lr"] == pytest.approx(0.5)
    for group in (weights, others, bn):  # lr x weight decay: the same shrinkage per step
        assert group["lr"] * group["weight_decay"] == pytest.approx(0.5 * 0.01)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_biases_undecayed_without_decay_biases():
    model = AirbenchNet(input_shape=(16, 16, 3), num_classes=3, widths=(8, 8, 8))
    groups = param_groups(model, TrainConfig(lr=0.5, bn_bias_lr_scale=4.0))
    assert [g["weight_decay"] for g in groups] == [TrainConfig().weight_decay, 0.0, 0.0]
    assert groups[2]["lr"] == pytest.approx(2.0)


@pytest.mark.parametrize(("start", "end"), [(0.1, 0.01), (0.2, 0.07), (0.5, 0.0)])
def test_one_cycle_factor_start_peak_end(start, end):
    total, warm = 200, 0.23
    f = [one_cycle_factor(s, total, warm, start, end) for s in range(total)]
    assert f[0] == pytest.approx(start) and f[-1] == pytest.approx(end)
    assert max(f) == pytest.approx(1.0) and f.index(max(f)) == round(total * warm)
    assert min(f) == pytest.approx(min(start, end))


def test_default_factors_are_the_original_schedule():
    for s in range(50):
        assert one_cycle_factor(s, 50, 0.2) == one_cycle_factor(s, 50, 0.2, 0.1, 0.01)
