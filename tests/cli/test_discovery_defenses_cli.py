"""One rule finds named datasets for every command (resolve_data_dir), and ``defenses list``
shows the parameters ``--method NAME:key=value`` takes (a misspelt one names the valid ones)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import assert_cli_error
from typer.testing import CliRunner

import poisonlab.data.catalog as catalog
from poisonlab.cli.experiments_cmd import dataset_location
from poisonlab.cli.main import app
from poisonlab.data.catalog import resolve_data_dir
from poisonlab.experiments.common.specs import DatasetSpec

runner = CliRunner()


@pytest.fixture
def shared_cifar(tmp_path, monkeypatch) -> Path:
    """``$POISONLAB_SHARED/datasets/cifar10-jpeg`` holding (the marker file of) CIFAR-10."""
    root = tmp_path / "shared"
    batches = root / "datasets" / "cifar10-jpeg" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    (batches / "data_batch_1").write_bytes(b"")
    monkeypatch.setenv("POISONLAB_SHARED", str(root))
    return root / "datasets" / "cifar10-jpeg"


def test_resolve_data_dir_order(shared_cifar, tmp_path, monkeypatch):
    assert resolve_data_dir("cifar10", tmp_path / "mine") == tmp_path / "mine"  # explicit wins
    assert resolve_data_dir("CIFAR-10") == shared_cifar  # the shared copy, like the configs name it
    assert resolve_data_dir("digits") is None  # embedded
    monkeypatch.setenv("POISONLAB_DATA", str(tmp_path / "env"))
    assert resolve_data_dir("cifar10") is None  # load_cifar10 reads $POISONLAB_DATA itself
    monkeypatch.delenv("POISONLAB_DATA")
    monkeypatch.setenv("POISONLAB_SHARED", str(tmp_path / "nothing-here"))
    assert resolve_data_dir("cifar10") is None  # then the cache, then a download


@pytest.fixture
def seen_locations(monkeypatch) -> list:
    """Replace catalog.load_splits: record where CIFAR-10 would be read from, then stop."""
    seen, real = [], catalog.load_splits

    def fake(name, *, data_dir=None, **kwargs):
        if name == "digits":
            return real(name, data_dir=data_dir, **kwargs)
        seen.append(data_dir)
        raise ValueError("stopped before reading CIFAR-10")

    monkeypatch.setattr(catalog, "load_splits", fake)
    return seen


@pytest.mark.parametrize(
    "args",
    [
        ["scan", "digits", "--method", "duplicates", "--trusted", "cifar10:val"],
        ["scan", "cifar10", "--method", "duplicates"],
        ["train", "--dataset", "cifar10"],
        ["demo", "--dataset", "cifar10"],
    ],
    ids=["scan --trusted", "scan", "train", "demo"],
)
def test_commands_find_named_data_the_same_way(args, shared_cifar, seen_locations, tmp_path):
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.stderr.splitlines()[-1] == "error: stopped before reading CIFAR-10"  # after a stage header
    assert seen_locations == [shared_cifar]


def test_evaluate_and_finetune_follow_a_cifar_models_dataset(shared_cifar, seen_locations, tmp_path):
    """No --dataset: a CIFAR-10 model is evaluated / fine-tuned on CIFAR-10 (found like above)."""
    import torch

    from poisonlab.data.cifar10 import CIFAR10_CLASSES
    from poisonlab.models import SimpleCifarCNN
    from poisonlab.models.checkpoint import save_model

    torch.manual_seed(0)
    model_dir = tmp_path / "cifar-model"
    save_model(
        SimpleCifarCNN(input_shape=(32, 32, 3), num_classes=10),
        model_dir,
        class_names=CIFAR10_CLASSES,
        dataset_name="cifar10-train",
    )
    for args in (["evaluate", str(model_dir)], ["train", "--init", str(model_dir)]):
        result = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
        assert result.stderr.splitlines()[-1] == "error: stopped before reading CIFAR-10", result.output
    assert seen_locations == [shared_cifar, shared_cifar]


def test_config_commands_fill_in_the_same_location(shared_cifar, tmp_path):
    assert dataset_location(DatasetSpec(name="cifar10"), None) == str(shared_cifar.resolve())
    assert dataset_location(DatasetSpec(name="cifar10", data_dir="rel/dir"), None) == "rel/dir"
    assert dataset_location(DatasetSpec(name="cifar10"), Path("x")) == str(Path("x").resolve())
    assert dataset_location(DatasetSpec(name="digits"), None) is None


# ------------------------------------------------------------------------------------------ defenses
def test_defenses_list_shows_parameters(wide_consoles):
    result = runner.invoke(app, ["defenses", "list"])
    assert result.exit_code == 0, result.output
    assert "threshold: float = 3.5" in result.output  # zscore
    assert "max_distance: int = 6" in result.output  # duplicates
    assert "public_key:" in result.output and "(required)" in result.output  # manifest
    assert "allowed_labels: Sequence[str | int] | None = None" in result.output  # not eaten as markup


def test_defenses_list_json():
    from poisonlab.defenses import DEFENSES

    result = runner.invoke(app, ["defenses", "list", "--json"])
    assert result.exit_code == 0, result.output
    records = {d["name"]: d for d in json.loads(result.stdout)["defenses"]}
    assert set(records) == set(DEFENSES)
    space = next(p for p in records["zscore"]["parameters"] if p["name"] == "space")
    assert space == {"name": "space", "type": "str", "required": False, "default": "features"}
    assert records["strip"]["needs"] == ["model", "trusted"]
    assert {p["name"] for p in records["manifest"]["parameters"] if p["required"]} == {
        "manifest",
        "public_key",
    }


def test_misspelt_method_parameter_names_the_valid_ones(tmp_path):
    result = runner.invoke(app, ["scan", "digits", "--method", "zscore:treshold=4", "--out", str(tmp_path)])
    line = assert_cli_error(result, r"unknown parameter 'treshold' for defense 'zscore'")
    assert "valid parameters: space, per_class, n_components" in line and "threshold" in line
    assert "__init__" not in line
    assert not (tmp_path / "scan.json").exists()
