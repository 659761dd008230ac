"""The literature's recipes: the airbench and chapter-fast presets, the fields they add, test-time
augmentation per recipe, and training the airbench network end to end on tiny synthetic images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from poisonlab.inference import TestTimeAugmentation, forward_pass
from poisonlab.models import AirbenchNet, SimpleCifarCNN
from poisonlab.models.checkpoint import load_model
from poisonlab.training import (
    AugmentConfig,
    LookaheadConfig,
    TrainConfig,
    airbench_recipe,
    chapter_fast_recipe,
    chapter_recipe,
    digits_recipe,
    fast_recipe,
    load_train_config,
    train,
)
from poisonlab.training.config import airbench_sgd, apply_settings, resolve_train_config
from poisonlab.training.save import train_and_save

NEW_FIELDS = {"lr_start_factor", "lr_end_factor", "bn_bias_lr_scale", "decay_biases"}
NEW_FIELDS |= {"whitening_bias_epochs", "lookahead", "drop_last"}


def _tiny(recipe: TrainConfig, **settings) -> TrainConfig:
    """A recipe at a size tiny synthetic data can train on in a second."""
    return apply_settings(recipe, {"epochs": 1, "batch_size": 12, **settings})


def test_airbench_sgd_converts_the_decoupled_hyper_parameters():
    lr, wd = airbench_sgd(1024)
    assert lr == pytest.approx(1.5) and wd == pytest.approx(0.0153 / 11.5)
    half_lr, half_wd = airbench_sgd(512)
    assert half_lr == pytest.approx(0.75) and half_wd == wd  # the per-example step is the same
    with pytest.raises(ValueError):
        airbench_sgd(0)


def test_airbench_preset_validates_and_round_trips(tmp_path):
    cfg = airbench_recipe()
    assert cfg.model.arch == "airbench" and (cfg.batch_size, cfg.epochs, cfg.momentum) == (1024, 10, 0.85)
    assert cfg.nesterov and cfg.label_smoothing == 0.2 and cfg.bn_bias_lr_scale == 64.0
    assert cfg.augment == AugmentConfig(crop_padding=2, flip_mode="alternating", padding_mode="reflect")
    assert cfg.lookahead == LookaheadConfig() and cfg.whitening_bias_epochs == 3
    assert cfg.drop_last  # airbench's loader drops the partial batch
    assert (cfg.lr_start_factor, cfg.warmup_fraction, cfg.lr_end_factor) == (0.2, 0.23, 0.07)
    assert TrainConfig.model_validate(cfg.model_dump()) == cfg
    path = tmp_path / "airbench.json"
    path.write_text(json.dumps(cfg.model_dump(mode="json")))
    assert load_train_config(path) == cfg


def test_chapter_fast_keeps_the_chapter_network_and_the_fast_optimiser():
    cfg, fast = chapter_fast_recipe(), fast_recipe()
    assert cfg.model == fast.model and cfg.model.arch == "simple-cifar10"
    assert (cfg.optimizer, cfg.lr, cfg.batch_size, cfg.label_smoothing) == (
        fast.optimizer,
        fast.lr,
        fast.batch_size,
        fast.label_smoothing,
    )
    assert cfg.augment.flip_mode == "alternating" and cfg.lookahead is not None and cfg.drop_last
    assert fast_recipe() == TrainConfig()  # the default recipe did not change


@pytest.mark.parametrize("recipe", [fast_recipe, chapter_recipe, digits_recipe])
def test_older_recipes_dump_without_the_new_fields(recipe):
    data = recipe().model_dump(mode="json")
    assert not NEW_FIELDS & set(data) and "widths" not in data["model"]
    if data["augment"] is not None:
        assert set(data["augment"]) == {"crop_padding", "flip"}
    assert TrainConfig.model_validate(data) == recipe()


def test_new_fields_dump_when_set():
    cfg = apply_settings(fast_recipe(), {"lookahead": {"every": 3}, "model": {"arch": "airbench"}})
    data = cfg.model_dump()
    assert data["lookahead"]["every"] == 3 and data["model"]["arch"] == "airbench"
    widths = apply_settings(cfg, {"model": {"widths": (8, 8, 8)}}).model_dump()["model"]["widths"]
    assert widths == (8, 8, 8)


@pytest.mark.parametrize(
    ("recipe", "expected"),
    [
        (fast_recipe(), TestTimeAugmentation(flip=True, translate=1)),
        (airbench_recipe(), TestTimeAugmentation(flip=True, translate=1)),
        (digits_recipe(), TestTimeAugmentation(flip=False, translate=1)),  # no mirrored digits
        (chapter_recipe(), None),
        (TrainConfig(augment={"crop_padding": 0, "flip": True}), TestTimeAugmentation(translate=0)),
        (TrainConfig(augment={"crop_padding": 0, "flip": False}), None),
    ],
)
def test_test_time_augmentation_follows_the_training_augmentation(recipe, expected):
    assert recipe.test_time_augmentation() == expected


def test_arch_option_builds_the_airbench_network(make_colour_dataset):
    cfg = resolve_train_config(dataset="cifar10", preset="fast", arch="airbench", epochs=1, batch_size=12)
    result = train(make_colour_dataset(size=16), cfg, device="cpu", progress=False)
    assert isinstance(result.model, AirbenchNet) and result.model.widths == (64, 128, 128)


def test_one_airbench_epoch_whitens_from_the_data_and_survives_a_checkpoint(make_colour_dataset, tmp_path):
    data, test = make_colour_dataset(size=16), make_colour_dataset(size=16, per_class=4, seed=1)
    cfg = _tiny(airbench_recipe(), model={"widths": (8, 16, 16)}, lookahead={"start_epoch": 1, "every": 1})
    trained = train_and_save(data, cfg, tmp_path / "m", test_data=test, device="cpu", progress=False)
    net = trained.result.model
    assert isinstance(net, AirbenchNet) and np.isfinite(trained.result.history[0].train_loss)
    fresh = AirbenchNet(input_shape=(16, 16, 3), num_classes=3, widths=(8, 16, 16))
    fresh.init_whitening(data.x)
    torch.testing.assert_close(net.whiten.weight, fresh.whiten.weight)  # train() whitened on the data
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in norms)  # scales stayed frozen
    assert any(not torch.equal(m.bias, torch.zeros_like(m.bias)) for m in norms)  # biases trained
    loaded, card = load_model(tmp_path / "m")
    assert isinstance(loaded, AirbenchNet) and not loaded.whiten.weight.requires_grad
    np.testing.assert_array_equal(
        forward_pass(loaded, test.x, device="cpu").logits, forward_pass(net, test.x, device="cpu").logits
    )
    assert card.metrics["test_accuracy"] == trained.test_accuracy
    assert card.metrics["test_tta_accuracy"] == trained.test_tta_accuracy is not None
    assert card.metrics["tta"] == {"flip": True, "translate": 1}
    assert card.train_config == cfg.model_dump(mode="json")


@pytest.mark.parametrize("bias_epochs", [1, None])
def test_whitening_bias_trains_for_its_epochs_only(make_colour_dataset, bias_epochs):
    biases = []
    cfg = _tiny(
        airbench_recipe(),
        epochs=3,
        model={"widths": (8, 8, 8)},
        lookahead=None,
        whitening_bias_epochs=bias_epochs,
    )
    train(
        make_colour_dataset(size=16),
        cfg,
        device="cpu",
        progress=False,
        on_epoch_end=lambda stats, model: biases.append(model.whiten.bias.detach().clone()),
    )
    later_changes = [not torch.equal(biases[0], biases[1]), not torch.equal(biases[1], biases[2])]
    assert later_changes == ([False, False] if bias_epochs == 1 else [True, True])


def test_the_trained_model_has_its_whitening_bias_trainable_again(make_colour_dataset):
    """Freezing the bias is the recipe's schedule: the returned model is like one loaded from disk."""
    cfg = _tiny(airbench_recipe(), epochs=2, model={"widths": (8, 8, 8)}, whitening_bias_epochs=1)
    net = train(make_colour_dataset(size=16), cfg, device="cpu", progress=False).model
    assert net.whiten.bias.requires_grad and not net.whiten.weight.requires_grad


def test_chapter_fast_trains_and_is_deterministic(make_colour_dataset):
    data = make_colour_dataset()
    cfg = _tiny(chapter_fast_recipe(), epochs=2, lookahead={"start_epoch": 1, "every": 2})
    a = train(data, cfg, device="cpu", progress=False)
    b = train(data, cfg, device="cpu", progress=False)
    assert isinstance(a.model, SimpleCifarCNN)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "settings",
    [
        {"model": {"arch": "airbench", "widths": (8, 2, 8)}},
        {"augment": {"flip_mode": "sometimes"}},
        {"augment": {"padding_mode": "edge"}},
        {"lookahead": {"every": 0}},
        {"lookahead": {"decay": 1.0}},
        {"bn_bias_lr_scale": 0},
        {"whitening_bias_epochs": -1},
        {"lr_start_factor": 0},
    ],
)
def test_invalid_new_settings_are_value_errors(settings):
    with pytest.raises(ValueError, match="invalid training setting"):
        apply_settings(fast_recipe(), settings)
