"""TrainConfig validation, presets, config files and resolve_train_config."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from poisonlab.training import (
    PRESETS,
    AugmentConfig,
    ModelConfig,
    TrainConfig,
    chapter_finetune,
    chapter_recipe,
    default_recipe,
    digits_recipe,
    fast_recipe,
    load_train_config,
)
from poisonlab.training.config import resolve_train_config


def test_fast_recipe_is_the_default():
    cfg = fast_recipe()
    assert cfg == TrainConfig()
    assert (cfg.optimizer, cfg.lr, cfg.batch_size, cfg.epochs, cfg.schedule) == (
        "sgd",
        0.4,
        256,
        12,
        "onecycle",
    )
    assert cfg.model.dropout == (0.0, 0.0, 0.0, 0.0) and cfg.label_smoothing == 0.2
    assert cfg.augment == AugmentConfig(crop_padding=4, flip=True)
    assert cfg.model == ModelConfig(dropout=(0.0, 0.0, 0.0, 0.0)) and cfg.model.arch == "simple-cifar10"
    assert cfg.precision == "fp32"


def test_chapter_recipe_matches_the_book():
    cfg = chapter_recipe()
    assert cfg.optimizer == "adam"
    assert cfg.lr == pytest.approx(1e-3)
    assert cfg.batch_size == 64
    assert cfg.augment is None
    assert cfg.epochs == 100
    assert cfg.schedule == "constant"
    assert cfg.label_smoothing == 0.0 and cfg.weight_decay == 0.0
    assert cfg.model.dropout == (0.3, 0.5, 0.5, 0.5)  # the chapter's dropout rates
    assert cfg.model.spec((32, 32, 3), 10) == {
        "arch": "simple-cifar10",
        "input_shape": [32, 32, 3],
        "num_classes": 10,
        "dropout": [0.3, 0.5, 0.5, 0.5],
    }


def test_chapter_finetune():
    cfg = chapter_finetune()
    assert (cfg.epochs, cfg.batch_size, cfg.optimizer, cfg.lr, cfg.augment) == (10, 64, "adam", 1e-3, None)
    assert chapter_finetune(epochs=3, batch_size=8).model_dump() == {
        **chapter_recipe().model_dump(),
        "epochs": 3,
        "batch_size": 8,
    }


def test_chapter_finetune_validates_its_arguments():
    with pytest.raises(ValueError):
        chapter_finetune(epochs=0)


def test_digits_recipe():
    cfg = digits_recipe()
    assert (cfg.epochs, cfg.batch_size, cfg.lr) == (30, 64, 0.05)
    assert cfg.augment == AugmentConfig(crop_padding=1, flip=False)  # a flipped digit is another glyph
    assert cfg.model.dropout == (0.1, 0.1, 0.1, 0.2)
    assert default_recipe("digits") == cfg
    assert default_recipe("cifar10") == fast_recipe()


def test_presets_table():
    assert set(PRESETS) == {"fast", "digits", "chapter", "chapter-finetune", "airbench", "chapter-fast"}
    assert PRESETS["chapter"]() == chapter_recipe()
    assert PRESETS["chapter-finetune"]() == chapter_finetune()
    assert PRESETS["fast"]() == fast_recipe() and PRESETS["digits"]() == digits_recipe()


def test_configs_are_frozen():
    cfg = TrainConfig()
    with pytest.raises(ValidationError):
        cfg.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"epochs": 0},
        {"batch_size": 0},
        {"lr": 0},
        {"optimizer": "rmsprop"},
        {"schedule": "step"},
        {"momentum": 1.0},
        {"label_smoothing": 1.0},
        {"precision": "fp16"},
        {"ema_decay": 1.0},
        {"augment": {"crop_padding": 17}},
        {"model": {"arch": "vgg"}},
        {"model": {"width": 2}},
        {"model": {"dropout": [0.1, 0.2]}},
        {"unknown_key": 1},
    ],
)
def test_invalid_values_are_rejected(kwargs):
    with pytest.raises(ValueError):
        TrainConfig.model_validate(kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": float("nan")}, "finite number"),  # not "less than or equal to 10"
        ({"weight_decay": float("inf")}, "finite number"),
        ({"seed": -1}, "greater than or equal to 0"),
        ({"seed": 2**32}, "less than or equal to 4294967295"),  # torch's own overflow message otherwise
    ],
)
def test_non_finite_numbers_and_out_of_range_seeds_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.model_validate(kwargs)
    assert TrainConfig(seed=2**32 - 1).seed == 2**32 - 1


def test_sgd_nesterov_without_momentum_is_rejected():
    with pytest.raises(ValueError, match="nesterov"):
        TrainConfig(optimizer="sgd", momentum=0.0, nesterov=True)


def test_adam_ignores_momentum_settings():
    assert TrainConfig(optimizer="adam", momentum=0.0).optimizer == "adam"


def test_model_config_spec():
    assert ModelConfig(arch="preact-resnet18", width=8).spec((8, 8, 1), 10) == {
        "arch": "preact-resnet18",
        "input_shape": [8, 8, 1],
        "num_classes": 10,
        "width": 8,
    }
    assert ModelConfig(dropout=(0, 0, 0, 0.5)).spec((8, 8, 3), 3)["dropout"] == [0, 0, 0, 0.5]
    # dropout only applies to simple-cifar10
    assert "dropout" not in ModelConfig(arch="preact-resnet18", dropout=(0, 0, 0, 0)).spec((8, 8, 3), 3)


def test_load_yaml(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "epochs: 3\nbatch_size: 16\noptimizer: adamw\nlr: 0.01\naugment: null\n"
        "model:\n  arch: preact-resnet18\n  width: 8\n",
        encoding="utf-8",
    )
    cfg = load_train_config(path)
    assert (cfg.epochs, cfg.batch_size, cfg.optimizer, cfg.lr, cfg.augment) == (3, 16, "adamw", 0.01, None)
    assert cfg.model == ModelConfig(arch="preact-resnet18", width=8)
    assert cfg.schedule == "onecycle"  # unset keys keep their defaults


def test_load_yml_and_json(tmp_path):
    (tmp_path / "a.yml").write_text("epochs: 2\n", encoding="utf-8")
    assert load_train_config(tmp_path / "a.yml").epochs == 2
    data = {"epochs": 4, "schedule": "cosine", "augment": {"crop_padding": 0, "flip": False}}
    (tmp_path / "b.json").write_text(json.dumps(data), encoding="utf-8")
    cfg = load_train_config(tmp_path / "b.json")
    assert (
        cfg.epochs == 4
        and cfg.schedule == "cosine"
        and cfg.augment == AugmentConfig(crop_padding=0, flip=False)
    )


def test_dumped_config_round_trips(tmp_path):
    path = tmp_path / "chapter.json"
    path.write_text(json.dumps(chapter_recipe().model_dump(mode="json")), encoding="utf-8")
    assert load_train_config(path) == chapter_recipe()


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("typo.yaml", "epochs: 2\nlearning_rate: 0.1\n", "learning_rate"),
        ("nested.yaml", "model:\n  arch: simple-cifar10\n  depth: 3\n", "depth"),
        ("bad.yaml", "epochs: -1\n", "epochs"),
        ("bad.json", '{"optimizer": "lbfgs"}', "optimizer"),
        ("list.yaml", "- 1\n- 2\n", "mapping"),
        ("empty.yaml", "", "mapping"),
        ("broken.json", '{"epochs": ', "cannot parse"),
        ("broken.yaml", "epochs: [1, 2\n", "cannot parse"),
    ],
)
def test_load_errors_are_value_errors(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        load_train_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_train_config(tmp_path / "nope.yaml")


def test_resolve_defaults_per_dataset():
    assert resolve_train_config(dataset="digits") == digits_recipe()
    assert resolve_train_config(dataset="cifar10") == fast_recipe()


def test_resolve_default_accepts_dataset_aliases():
    assert resolve_train_config(dataset="Digits") == digits_recipe()


def test_resolve_overrides():
    cfg = resolve_train_config(
        dataset="digits", preset="chapter", epochs=2, batch_size=8, lr=0.5, seed=7, arch="preact-resnet18"
    )
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed) == (2, 8, 0.5, 7)
    assert cfg.model.arch == "preact-resnet18"
    assert cfg.optimizer == "adam" and cfg.augment is None  # the rest of the preset is kept
    # None means "not given"
    assert resolve_train_config(dataset="digits", epochs=None, lr=None, arch=None) == digits_recipe()


def test_resolve_from_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 5\noptimizer: adam\nnesterov: false\n", encoding="utf-8")
    cfg = resolve_train_config(dataset="digits", config_path=path, epochs=1)
    assert cfg.epochs == 1 and cfg.optimizer == "adam"
    assert cfg.augment == AugmentConfig()  # the file, not the digits recipe


def test_resolve_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 5\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not both"):
        resolve_train_config(dataset="digits", config_path=path, preset="fast")
    with pytest.raises(ValueError, match="unknown preset") as info:
        resolve_train_config(dataset="digits", preset="turbo")
    assert "chapter-finetune" in str(info.value)
    with pytest.raises(ValueError, match="epochs"):
        resolve_train_config(dataset="digits", epochs=0)
    with pytest.raises(ValueError, match="arch"):
        resolve_train_config(dataset="digits", arch="vgg16")
    with pytest.raises(FileNotFoundError):
        resolve_train_config(dataset="digits", config_path=tmp_path / "missing.yaml")
