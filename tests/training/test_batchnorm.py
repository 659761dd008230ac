"""BatchNorm recalibration: the running statistics become those the final weights produce."""

from __future__ import annotations

import torch
from torch import nn

from poisonlab.training.batchnorm import recalibrate_batchnorm


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(2, momentum=0.01)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.bn(x))


def _images(n: int = 40) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 4, 4, 2), generator=g, dtype=torch.uint8).permute(0, 3, 1, 2)


def test_statistics_are_the_data_s_and_the_model_is_restored() -> None:
    model, images = _Tiny().train(), _images()
    used = recalibrate_batchnorm(model, images, batch_size=8, device=torch.device("cpu"), channels_last=False)
    x = images.float() / 255.0
    assert used == 40
    torch.testing.assert_close(model.bn.running_mean, x.mean(dim=(0, 2, 3)), atol=1e-5, rtol=0)
    # cumulative average of per-batch unbiased variances, close to the data's variance
    torch.testing.assert_close(model.bn.running_var, x.var(dim=(0, 2, 3)), atol=5e-3, rtol=0)
    assert model.bn.momentum == 0.01 and model.training and model.bn.training


def test_nothing_measurable_keeps_the_old_statistics_and_no_batchnorm_is_a_no_op() -> None:
    model = _Tiny()
    model.bn.running_mean.fill_(0.3)
    assert recalibrate_batchnorm(model, _images(1), batch_size=8, device=torch.device("cpu")) == 0
    assert torch.all(model.bn.running_mean == 0.3)
    assert recalibrate_batchnorm(nn.Identity(), _images(), batch_size=8, device=torch.device("cpu")) == 0
