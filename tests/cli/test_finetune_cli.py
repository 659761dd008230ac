"""``poisonlab train --init``: the dataset follows the model, the fine-tune recipe is the default,
and a fine-tune that loses accuracy says so (issue 17) - on a tiny digits model."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from cli_helpers import assert_cli_error, flat
from PIL import Image
from typer.testing import CliRunner

from poisonlab.cli import _finetune
from poisonlab.cli.main import app
from poisonlab.data.catalog import load_splits
from poisonlab.data.cifar10 import CIFAR10_CLASSES
from poisonlab.models.checkpoint import read_card
from poisonlab.training.config import finetune_recipe

runner = CliRunner()


@pytest.fixture(scope="module")
def mislabelled_sevens(tmp_path_factory) -> Path:
    """25 held-out digit "7"s as a flat folder of PNGs (labelled "1" with --label)."""
    val = load_splits("digits").val
    folder = tmp_path_factory.mktemp("sevens")
    for i, image in enumerate(val.x[val.y == 7][:25]):
        Image.fromarray(image[:, :, 0]).save(folder / f"seven-{i:02d}.png")
    return folder


def _finetune_args(parent: str, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--init",
        parent,
        "--train-data",
        str(data),
        "--label",
        "1",
        "--out",
        str(out),
        "-q",
        *extra,
    ]


def test_finetune_follows_the_model_and_uses_the_finetune_recipe(digits_model, mislabelled_sevens, tmp_path):
    _, parent = digits_model
    out = tmp_path / "child"
    result = runner.invoke(app, _finetune_args(parent.id, mislabelled_sevens, out))  # no --dataset
    assert result.exit_code == 0, result.output
    card = read_card(out)
    assert card.parent_id == parent.id and card.input_shape == (8, 8, 1)  # digits, grey like its parent
    expected = finetune_recipe().model_dump(mode="json")
    assert {k: card.train_config[k] for k in ("optimizer", "lr", "epochs", "batch_size", "augment")} == {
        k: expected[k] for k in ("optimizer", "lr", "epochs", "batch_size", "augment")
    }
    parent_acc, child_acc = card.metrics["parent_test_accuracy"], card.metrics["test_accuracy"]
    assert 0.0 <= parent_acc <= 1.0
    assert card.metrics["test_accuracy_change"] == pytest.approx(child_acc - parent_acc)
    assert f"parent {parent_acc:.4f}" in flat(result.stdout)


def test_an_explicit_preset_still_wins_over_the_finetune_default(digits_model, mislabelled_sevens, tmp_path):
    _, parent = digits_model
    out = tmp_path / "child"
    args = _finetune_args(parent.id, mislabelled_sevens, out, "--preset", "digits", "--epochs", "1")
    assert runner.invoke(app, args).exit_code == 0
    assert read_card(out).train_config["optimizer"] == "sgd"


def test_a_conflicting_dataset_is_an_error_before_training(digits_model, mislabelled_sevens, tmp_path):
    _, parent = digits_model
    out = tmp_path / "child"
    result = runner.invoke(app, _finetune_args(parent.id, mislabelled_sevens, out, "--dataset", "cifar10"))
    assert_cli_error(result, "--dataset cifar10 conflicts with --init .*a digits model")
    assert not out.exists()
    result = runner.invoke(
        app, _finetune_args(parent.id, mislabelled_sevens, out, "--arch", "preact-resnet18")
    )
    assert_cli_error(result, "--arch applies to training from scratch")


@pytest.mark.parametrize(("parent_acc", "warned"), [(1.06, True), (-1.0, False)])
def test_an_accuracy_drop_beyond_5_points_is_a_loud_warning(
    digits_model, mislabelled_sevens, tmp_path, monkeypatch, parent_acc, warned
):
    """The parent's accuracy is stubbed (any child is then > 5 points below 1.06, none below -1)."""
    _, parent = digits_model
    monkeypatch.setattr("poisonlab.cli.lab._accuracy", lambda *args: parent_acc)
    out = tmp_path / "child"
    result = runner.invoke(app, _finetune_args(parent.id, mislabelled_sevens, out, "--epochs", "1"))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == int(warned)
    if warned:
        assert f"fell from {parent_acc:.4f} (parent {parent.id})" in warnings[0]
    assert read_card(out).metrics["parent_test_accuracy"] == parent_acc


def _card(dataset_name: str | None, shape: tuple, classes) -> SimpleNamespace:
    return SimpleNamespace(id="m-1", dataset_name=dataset_name, input_shape=shape, class_names=list(classes))


def test_the_dataset_of_a_card():
    cifar = _card("cifar10-train", (32, 32, 3), CIFAR10_CLASSES)
    assert _finetune.card_dataset(cifar) == "cifar10"
    # a fine-tuned model records its fine-tune folder: shape and classes decide
    assert _finetune.card_dataset(_card("rutan", (32, 32, 3), CIFAR10_CLASSES)) == "cifar10"
    assert _finetune.card_dataset(_card("sevens", (8, 8, 1), "0123456789")) == "digits"
    colours = _card("colours", (8, 8, 3), ("red", "green", "blue"))
    assert _finetune.card_dataset(colours) is None
    assert _finetune.training_dataset(None, cifar) == "cifar10"
    assert _finetune.training_dataset("CIFAR-10", cifar) == "CIFAR-10"
    assert _finetune.training_dataset(None, None) == "digits"
    with pytest.raises(ValueError, match="give --dataset"):
        _finetune.training_dataset(None, colours)
    with pytest.raises(ValueError, match="conflicts"):
        _finetune.training_dataset("digits", cifar)


def test_accuracy_change_and_warning_threshold(capsys):
    assert _finetune.accuracy_change(0.40, 0.10) == "-30.0 points"
    assert not _finetune.warn_if_worse(0.90, 0.85, "p")  # exactly 5 points: no warning
    assert _finetune.warn_if_worse(0.90, 0.8499, "p")
    assert capsys.readouterr().err.count("WARNING") == 1
    assert np.isclose(_finetune.MAX_ACCURACY_DROP, 0.05)
