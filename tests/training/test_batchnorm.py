"""BatchNorm recalibration: the running statistics become those the final weights produce."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from poisonlab.training import TrainConfig, train
from poisonlab.training.augment import random_crop_flip
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


def test_the_statistics_are_those_of_the_augmented_batches() -> None:
    # white images zero-padded by one pixel and cropped back: every crop has a dark border row
    # or column unless its shift is 0, so their mean is below 1 while the plain images' is 1
    white = torch.full((64, 2, 4, 4), 255, dtype=torch.uint8)
    plain, shifted = _Tiny(), _Tiny()
    recalibrate_batchnorm(plain, white, batch_size=16, device=torch.device("cpu"), channels_last=False)
    g = torch.Generator().manual_seed(0)
    seen = []

    def crop(batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch.dtype)
        return random_crop_flip(batch, padding=1, flip=False, generator=g)

    used = recalibrate_batchnorm(
        shifted, white, batch_size=16, device=torch.device("cpu"), channels_last=False, augment=crop
    )
    assert used == 64 and seen == [torch.uint8] * 4  # each uint8 batch, before the forward pass
    torch.testing.assert_close(plain.bn.running_mean, torch.ones(2))
    assert torch.all(shifted.bn.running_mean < 0.95) and torch.all(shifted.bn.running_mean > 0.5)


@pytest.mark.parametrize("augment", [None, {"crop_padding": 2, "flip": True}], ids=["plain", "crop+flip"])
def test_training_recalibrates_with_its_own_augmentation(monkeypatch, make_colour_dataset, augment) -> None:
    calls = []

    def spy(model, images, **kwargs):
        calls.append(kwargs["augment"])
        return 0

    monkeypatch.setattr("poisonlab.training.loop.recalibrate_batchnorm", spy)
    data = make_colour_dataset(per_class=4, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=8, augment=augment, recalibrate_bn=True)
    train(data, cfg, device="cpu", progress=False)
    assert len(calls) == 1
    if augment is None:
        assert calls[0] is None
    else:  # the recipe's crop and flip: same shape and dtype, different pixels
        batch = torch.from_numpy(data.x[:8]).permute(0, 3, 1, 2)
        out = calls[0](batch)
        assert out.shape == batch.shape and out.dtype == torch.uint8 and not torch.equal(out, batch)


def test_crop_flip_of_follows_the_recipe() -> None:
    from poisonlab.training.augment import crop_flip_of
    from poisonlab.training.options import AugmentConfig

    assert crop_flip_of(None) is None
    white = torch.full((16, 3, 6, 6), 255, dtype=torch.uint8)
    zeros = crop_flip_of(AugmentConfig(crop_padding=2, flip=False), torch.Generator().manual_seed(0))
    reflect = crop_flip_of(
        AugmentConfig(crop_padding=2, padding_mode="reflect"), torch.Generator().manual_seed(0)
    )
    assert zeros(white).dtype == torch.uint8 and (zeros(white) == 0).any()  # zero-padded borders
    assert torch.equal(reflect(white), white)  # a mirrored white image stays white
