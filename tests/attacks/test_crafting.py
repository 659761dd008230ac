"""Shared crafting machinery: feature layers, the integer eps ball, reports, parameter checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from poisonlab.attacks.crafting import (
    EPS,
    CraftReport,
    Surrogate,
    minibatches,
    quantize_in_ball,
    to_tensor,
)
from poisonlab.params import check_param


def test_named_layer_returns_that_modules_output_not_a_later_inplace_relu(calibrated_model):
    x = np.random.default_rng(0).integers(0, 256, size=(4, 16, 16, 3), dtype=np.uint8)
    sur = Surrogate(calibrated_model, device="cpu", feature_layer="blocks.0.0")  # conv before ReLU(inplace)
    feats = sur.batched_features(x)
    conv = calibrated_model.blocks[0][0]
    with torch.no_grad():
        expected = conv(calibrated_model.normalize(to_tensor(x, torch.device("cpu")))).flatten(1)
    assert feats.min() < 0  # a ReLU'd copy could not be negative
    torch.testing.assert_close(feats, expected, rtol=1e-4, atol=1e-4)


def test_surrogate_is_a_frozen_copy(calibrated_model):
    sur = Surrogate(calibrated_model, device="cpu")
    assert sur.net is not calibrated_model and not sur.net.training
    assert all(not p.requires_grad for p in sur.net.parameters())
    assert all(
        p.requires_grad for p in Surrogate(calibrated_model, device="cpu", trainable=True).net.parameters()
    )
    with pytest.raises(ValueError, match="expected uint8 images"):
        sur.check_images(np.zeros((1, 16, 16, 3), np.float32), "victims")


def test_quantize_keeps_the_integer_ball_for_non_integer_eps():
    base = np.full((2, 4, 4, 3), 100, dtype=np.uint8)
    far = to_tensor(base, torch.device("cpu")) + 0.5
    out = quantize_in_ball(far, base, 10.7 / 255)  # radius floor(10.7) = 10 grey levels
    assert out.dtype == np.uint8 and int(out.max()) == 110 and int(out.min()) == 110
    with pytest.raises(ValueError, match="non-finite"):
        quantize_in_ball(far * float("nan"), base, 10 / 255)


def test_report_extras_cannot_overwrite_core_fields():
    report = CraftReport(
        seconds=1.0,
        peak_rss_mib=2.0,
        steps=3,
        loss_initial=4.0,
        loss_final=5.0,
        max_linf=6,
        extras={"steps": 99, "restarts": 2},
    )
    d = report.to_dict()
    assert d["steps"] == 3 and d["restarts"] == 2


@pytest.mark.parametrize("eps", [0, -0.1, 1.5, True, "8/255", float("nan")])
def test_eps_constraint_refuses(eps):
    with pytest.raises(ValueError, match=r"eps must be (a number )?in \(0, 1\] \(pixel scale"):
        check_param("eps", eps, EPS)


def test_minibatches():
    assert minibatches(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        minibatches(5, 0)


@pytest.mark.parametrize("explicit", [1, 2])
def test_crafting_runs_under_the_thread_policy_and_restores_the_setting(clean, monkeypatch, explicit):
    """Two threads of a small crafting step on a busy machine ran ~14x slower than one: the
    crafted template applies the project's thread choice (here the explicit one) around
    ``_craft`` and gives the caller's setting back."""
    from poisonlab.attacks import RandomNoise
    from poisonlab.models.simple_cnn import SimpleCifarCNN
    from poisonlab.threads import set_threads

    seen: list[int] = []
    original = RandomNoise._craft

    def spy(self, *args):
        seen.append(torch.get_num_threads())
        return original(self, *args)

    monkeypatch.setattr(RandomNoise, "_craft", spy)
    before = torch.get_num_threads()
    other = 3 if explicit != 3 else 4
    torch.set_num_threads(other)
    set_threads(explicit)
    try:
        model = SimpleCifarCNN(input_shape=(8, 8, 3), num_classes=10).eval()
        RandomNoise(model=model, target="bird", count=4, eps=8 / 255, seed=0).poison(clean)
        assert seen == [explicit] and torch.get_num_threads() == other
    finally:
        set_threads(None)
        torch.set_num_threads(before)
