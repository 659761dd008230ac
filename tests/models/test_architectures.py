"""simple-cifar10 and preact-resnet18: sizes, shapes, the features/head split, specs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from poisonlab.models import ARCHITECTURES, PreActResNet18, SimpleCifarCNN, build_model


def test_simple_cifar10_has_the_chapters_parameter_count():
    model = SimpleCifarCNN(input_shape=(32, 32, 3), num_classes=10)
    assert model.num_parameters() == 551_722  # the chapter's Keras model: ~552k
    assert model.arch == "simple-cifar10"


@pytest.mark.parametrize(("shape", "classes"), [((32, 32, 3), 10), ((8, 8, 1), 10), ((12, 10, 3), 4)])
def test_simple_cifar10_output_and_feature_shapes(shape, classes):
    torch.manual_seed(0)
    model = SimpleCifarCNN(input_shape=shape, num_classes=classes).eval()
    h, w, c = shape
    x = torch.rand(3, c, h, w)
    with torch.no_grad():
        logits, feats = model(x), model.features(x)
    assert logits.shape == (3, classes)
    assert feats.shape == (3, 128)


def test_head_of_features_equals_forward_in_eval_mode():
    torch.manual_seed(0)
    model = SimpleCifarCNN(input_shape=(8, 8, 3), num_classes=3).eval()
    x = torch.rand(5, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.head(model.features(x)), model(x), rtol=0, atol=0)
        # eval mode is deterministic: dropout is off
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


def test_zero_dropout_uses_identity_modules():
    model = SimpleCifarCNN(input_shape=(8, 8, 3), num_classes=3, dropout=(0.0, 0.0, 0.0, 0.0))
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    assert isinstance(model.head_dropout, nn.Identity)
    assert all(isinstance(block[-1], nn.Identity) for block in model.blocks)
    chapter = SimpleCifarCNN(input_shape=(8, 8, 3), num_classes=3)
    rates = [m.p for m in chapter.modules() if isinstance(m, nn.Dropout)]
    assert rates == [0.3, 0.5, 0.5, 0.5]


def test_normalisation_defaults_per_channel_count():
    rgb = SimpleCifarCNN(input_shape=(8, 8, 3), num_classes=3)
    grey = SimpleCifarCNN(input_shape=(8, 8, 1), num_classes=3)
    assert rgb.mean.shape == (1, 3, 1, 1) and grey.mean.shape == (1, 1, 1, 1)
    assert grey.mean.item() == pytest.approx(0.5) and grey.std.item() == pytest.approx(0.25)
    x = torch.full((1, 1, 8, 8), 0.75)
    assert torch.allclose(grey.normalize(x), torch.ones_like(x))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_shape": (4, 4, 3)},  # smaller than 8x8
        {"input_shape": (8, 8, 2)},  # 2 channels
        {"input_shape": (8, 8)},  # not (H, W, C)
        {"num_classes": 1},
        {"dropout": (0.3, 0.5, 0.5)},  # 3 rates
        {"dropout": (0.3, 0.5, 0.5, 1.0)},  # rate 1
        {"dropout": (-0.1, 0.5, 0.5, 0.5)},
        {"mean": (0.5, 0.5)},  # wrong channel count
        {"std": (0.2, 0.0, 0.2)},  # std must be > 0
    ],
)
def test_simple_cifar10_rejects_invalid_arguments(kwargs):
    args = {"input_shape": (8, 8, 3), "num_classes": 3, **kwargs}
    with pytest.raises(ValueError):
        SimpleCifarCNN(**args)


@pytest.mark.parametrize("side", [8, 32])
def test_preact_resnet18_shapes(side):
    torch.manual_seed(0)
    model = PreActResNet18(input_shape=(side, side, 3), num_classes=5, width=8).eval()
    x = torch.rand(2, 3, side, side)
    with torch.no_grad():
        feats, logits = model.features(x), model(x)
    assert feats.shape == (2, 8 * 8)  # 8 x width
    assert logits.shape == (2, 5)
    with torch.no_grad():
        torch.testing.assert_close(model.head(feats), logits, rtol=0, atol=0)


def test_preact_resnet18_default_width_has_512_features_and_11m_parameters():
    torch.manual_seed(0)
    model = PreActResNet18(input_shape=(8, 8, 1), num_classes=10).eval()
    assert model.arch == "preact-resnet18"
    assert 11.0e6 < model.num_parameters() < 11.3e6
    with torch.no_grad():
        assert model.features(torch.rand(2, 1, 8, 8)).shape == (2, 512)


@pytest.mark.parametrize("kwargs", [{"input_shape": (7, 8, 3)}, {"width": 3}, {"num_classes": 0}])
def test_preact_resnet18_rejects_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        PreActResNet18(**{"input_shape": (8, 8, 3), "num_classes": 3, "width": 8, **kwargs})


@pytest.mark.parametrize(
    "model",
    [
        SimpleCifarCNN(input_shape=(8, 8, 1), num_classes=4, dropout=(0.1, 0.2, 0.3, 0.4), bn_momentum=0.1),
        PreActResNet18(
            input_shape=(8, 8, 3), num_classes=3, width=4, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2)
        ),
    ],
    ids=["simple-cifar10", "preact-resnet18"],
)
def test_build_model_from_spec_rebuilds_the_architecture(model):
    spec = model.spec()
    rebuilt = build_model(spec)
    assert type(rebuilt) is type(model)
    assert rebuilt.spec() == spec
    assert rebuilt.num_parameters() == model.num_parameters()
    own = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == own
    # the spec is JSON-serialisable and the rebuilt model accepts the weights
    import json

    assert build_model(json.loads(json.dumps(spec))).spec() == spec
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def test_build_model_unknown_arch_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown architecture") as info:
        build_model({"arch": "resnet9000", "input_shape": [8, 8, 3], "num_classes": 3})
    for name in ARCHITECTURES:
        assert name in str(info.value)
    assert sorted(ARCHITECTURES) == ["airbench", "preact-resnet18", "simple-cifar10"]


@pytest.mark.parametrize(
    "spec",
    [
        {"arch": "simple-cifar10", "num_classes": 3},  # no input_shape
        {"arch": "simple-cifar10", "input_shape": [8, 8, 3], "num_classes": 3, "bogus": 1},
        {"input_shape": [8, 8, 3], "num_classes": 3},  # no arch
    ],
)
def test_build_model_rejects_incomplete_or_unknown_parameters(spec):
    with pytest.raises(ValueError):
        build_model(spec)
