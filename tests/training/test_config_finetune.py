"""The fine-tune default of resolve_train_config and the training-time estimate of stage headers."""

from __future__ import annotations

import pytest

from poisonlab.training.config import (
    chapter_finetune,
    default_recipe,
    digits_recipe,
    estimate_train_seconds,
    fast_recipe,
    finetune_recipe,
    resolve_train_config,
)


def test_finetune_recipe_is_few_epochs_at_a_low_learning_rate():
    cfg = finetune_recipe()
    assert cfg == chapter_finetune()
    assert (cfg.optimizer, cfg.lr, cfg.epochs, cfg.batch_size) == ("adam", 1e-3, 10, 64)
    assert cfg.augment is None and cfg.schedule == "constant" and cfg.label_smoothing == 0.0
    assert cfg.lr < fast_recipe().lr / 100  # the from-scratch peak lr 0.4 wrecked trained models


@pytest.mark.parametrize("dataset", ["digits", "cifar10"])
def test_finetune_mode_replaces_the_datasets_default_recipe(dataset):
    assert resolve_train_config(dataset=dataset) == default_recipe(dataset)
    assert resolve_train_config(dataset=dataset, finetune=True) == finetune_recipe()


def test_finetune_mode_keeps_explicit_presets_files_and_overrides(tmp_path):
    assert resolve_train_config(dataset="digits", preset="digits", finetune=True) == digits_recipe()
    path = tmp_path / "cfg.yaml"
    path.write_text("epochs: 2\nlr: 0.01\n", encoding="utf-8")
    from_file = resolve_train_config(dataset="digits", config_path=path, finetune=True)
    assert (from_file.epochs, from_file.lr, from_file.optimizer) == (2, 0.01, "sgd")
    tuned = resolve_train_config(dataset="cifar10", finetune=True, epochs=3, lr=None, seed=7)
    assert (tuned.epochs, tuned.lr, tuned.seed, tuned.optimizer) == (3, 1e-3, 7, "adam")


def test_estimate_train_seconds_uses_the_measured_rates():
    # 12 epochs of 40,000 CIFAR-10 images: the benchmarked 13 minutes
    assert estimate_train_seconds(fast_recipe(), 40_000, 32) == pytest.approx(768.0)
    assert estimate_train_seconds(digits_recipe(), 1_000, 8) == pytest.approx(18.0)
    assert estimate_train_seconds(fast_recipe(), 100, 32, arch="simple-cifar10") == pytest.approx(1.92)
    # nothing measured: no figure rather than a wrong one
    assert estimate_train_seconds(fast_recipe(), 40_000, 64) is None
    assert estimate_train_seconds(fast_recipe(), 40_000, 32, arch="preact-resnet18") is None
