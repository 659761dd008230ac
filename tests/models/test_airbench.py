"""The airbench-style network: patch whitening, shapes, frozen parameters, identity init, specs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from poisonlab.models import AirbenchNet, build_model
from poisonlab.models.whitening import patch_moments, whitening_filters


def _correlated_images(n: int = 40, side: int = 16, channels: int = 3, seed: int = 0) -> np.ndarray:
    """uint8 images whose neighbouring pixels and channels are strongly correlated (smoothed noise
    plus a shared grey level), so their 2x2 patch covariance is far from the identity."""
    rng = np.random.default_rng(seed)
    noise = torch.from_numpy(rng.normal(size=(n, channels, side + 2, side + 2)))
    smooth = F.avg_pool2d(noise, 3, stride=1)  # (n, C, side, side)
    grey = smooth.mean(1, keepdim=True)
    x = 128 + 60 * (0.6 * grey + 0.4 * smooth) + torch.from_numpy(rng.normal(scale=4, size=smooth.shape))
    return x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _whitened_patches(model: AirbenchNet, images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        out = model.whiten(model.normalize(x))  # (N, 2d, H-1, W-1)
    return out.permute(0, 2, 3, 1).reshape(-1, out.shape[1]).double()


@pytest.mark.parametrize("channels", [3, 1])
def test_whitening_makes_the_patch_covariance_the_identity(channels):
    images = _correlated_images(channels=channels)
    model = AirbenchNet(input_shape=(16, 16, channels), num_classes=3)
    values = model.init_whitening(images, eps=0.0)
    d = channels * 4
    assert values.shape == (d,) and (values[:-1] >= values[1:]).all()  # descending
    assert values[0] / values[-1] > 10  # the constructed patches are far from white
    out = _whitened_patches(model, images)
    first, second = out[:, :d], out[:, d:]
    torch.testing.assert_close(second, -first, rtol=0, atol=1e-4)  # the negated copy
    torch.testing.assert_close(first.mean(0), torch.zeros(d, dtype=torch.float64), rtol=0, atol=1e-3)
    cov = torch.cov(first.T, correction=0)
    torch.testing.assert_close(cov, torch.eye(d, dtype=torch.float64), rtol=0, atol=1e-3)


def test_whitening_eps_damps_the_weakest_directions():
    images = _correlated_images()
    model = AirbenchNet(input_shape=(16, 16, 3), num_classes=3)
    values = model.init_whitening(images, eps=0.05)
    cov = torch.cov(_whitened_patches(model, images)[:, :12].T, correction=0)
    # each direction's variance is lambda / (lambda + eps): below 1, most for the smallest lambda
    expected = values / (values + 0.05)
    torch.testing.assert_close(torch.diagonal(cov), expected, rtol=1e-3, atol=1e-4)


def test_patch_moments_match_a_direct_computation():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.integers(0, 256, size=(3, 2, 5, 4), dtype=np.uint8))
    mean, cov = patch_moments(x, 2, chunk=2)
    xf = x.double() / 255.0
    rows = [xf[n, :, i : i + 2, j : j + 2].reshape(-1) for n in range(3) for i in range(4) for j in range(3)]
    rows = torch.stack(rows)
    torch.testing.assert_close(mean, rows.mean(0))
    torch.testing.assert_close(cov, torch.cov(rows.T, correction=0))


def test_whitening_filters_reject_a_singular_covariance_without_eps():
    cov = torch.zeros(4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="eps"):
        whitening_filters(torch.zeros(4, dtype=torch.float64), cov, channels=1, kernel=2, eps=0.0)
    weight, bias, _ = whitening_filters(
        torch.zeros(4, dtype=torch.float64), cov, channels=1, kernel=2, eps=1.0
    )
    assert weight.shape == (8, 1, 2, 2) and bias.shape == (8,)


@pytest.mark.parametrize(("shape", "classes"), [((32, 32, 3), 10), ((16, 16, 1), 4), ((20, 24, 3), 3)])
def test_forward_shapes_and_dtype(shape, classes):
    torch.manual_seed(0)
    model = AirbenchNet(input_shape=shape, num_classes=classes, widths=(8, 16, 16)).eval()
    h, w, c = shape
    x = torch.rand(3, c, h, w)
    with torch.no_grad():
        feats, logits = model.features(x), model(x)
        cl = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    assert feats.shape == (3, 16) and feats.dtype == torch.float32
    assert logits.shape == (3, classes) and logits.dtype == torch.float32
    torch.testing.assert_close(model.head(feats), logits, rtol=0, atol=0)
    torch.testing.assert_close(cl, logits, rtol=1e-4, atol=1e-5)


def test_default_size_and_the_paper_width():
    default = AirbenchNet(input_shape=(32, 32, 3), num_classes=10)
    assert default.widths == (64, 128, 128)
    assert 560_000 < default.num_parameters() < 580_000  # the ~0.57M network of issue 15
    paper = AirbenchNet(input_shape=(32, 32, 3), num_classes=10, widths=(64, 256, 256))
    assert 1.9e6 < paper.num_parameters() < 2.0e6  # airbench94's ~2M


def test_frozen_parameters_and_logit_scale():
    model = AirbenchNet(input_shape=(16, 16, 3), num_classes=3, widths=(8, 8, 8))
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"whiten.weight"} | {f"blocks.{i}.norm{j}.weight" for i in range(3) for j in (1, 2)}
    assert model.whitening_bias is model.whiten.bias and model.whitening_bias.requires_grad
    assert model.classifier.bias is None
    f = torch.ones(2, 8)
    torch.testing.assert_close(model.head(f), model.classifier(f) / 9.0)


def test_convolutions_start_as_partial_identities():
    model = AirbenchNet(input_shape=(16, 16, 3), num_classes=3, widths=(16, 32, 32))
    block = model.blocks[1]  # 16 -> 32 channels, then 32 -> 32
    x = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(block.conv1(x)[:, :16], x)  # first c_in filters pass through
        y = torch.randn(2, 32, 6, 6)
        torch.testing.assert_close(block.conv2(y), y)


def test_spec_round_trip_and_weights():
    model = AirbenchNet(input_shape=(16, 16, 3), num_classes=5, widths=(8, 12, 16), bn_momentum=0.3)
    model.init_whitening(_correlated_images())
    spec = json.loads(json.dumps(model.spec()))
    rebuilt = build_model(spec)
    assert isinstance(rebuilt, AirbenchNet) and rebuilt.spec() == model.spec()
    assert rebuilt.widths == (8, 12, 16) and rebuilt.bn_momentum == 0.3
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert not rebuilt.whiten.weight.requires_grad  # loading keeps the layer frozen
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_shape": (14, 16, 3)},
        {"input_shape": (16, 16, 2)},
        {"widths": (8, 8)},
        {"widths": (8, 8, 3)},
        {"bn_momentum": 0.0},
        {"logit_scale": 0.0},
        {"num_classes": 1},
    ],
)
def test_invalid_arguments_are_value_errors(kwargs):
    with pytest.raises(ValueError):
        AirbenchNet(**{"input_shape": (16, 16, 3), "num_classes": 3, **kwargs})


@pytest.mark.parametrize(
    "images",
    [
        np.zeros((4, 16, 16, 3), np.float32),  # not uint8
        np.zeros((4, 3, 16, 16), np.uint8),  # NCHW
        np.zeros((4, 12, 12, 3), np.uint8),  # another size
        np.zeros((0, 16, 16, 3), np.uint8),  # none
    ],
    ids=["float", "nchw", "size", "empty"],
)
def test_init_whitening_rejects_other_images(images):
    model = AirbenchNet(input_shape=(16, 16, 3), num_classes=3, widths=(8, 8, 8))
    with pytest.raises(ValueError, match="whitening needs"):
        model.init_whitening(images)
