"""Fixtures of the CLI tests: one digits model trained by the CLI, shared by every test file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_helpers import TRAIN_1
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from poisonlab.cli.main import app
from poisonlab.models.checkpoint import read_card
from poisonlab.models.store import ModelStore


@pytest.fixture
def wide_consoles(monkeypatch):
    """Render rich output 300 columns wide so tables keep whole ids and paths."""
    for module in (
        "poisonlab.cli.lab",
        "poisonlab.cli.predict_cmd",
        "poisonlab.cli.models_cmd",
        "poisonlab.cli.scan_cmd",
    ):
        monkeypatch.setattr(f"{module}.console", Console(width=300))


@pytest.fixture(scope="session")
def trained_digits_dir(tmp_path_factory) -> Path:
    """One model trained by the CLI for 1 epoch on digits (shared; copy it before changing it)."""
    out = tmp_path_factory.mktemp("shared-models") / "digits-1ep"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POISONLAB_HOME", str(tmp_path_factory.mktemp("shared-home")))
        result = CliRunner().invoke(app, [*TRAIN_1, "--out", str(out), "--seed", "3"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def digits_model(trained_digits_dir, tmp_path):
    """A private copy of the CLI-trained model, registered in this test's POISONLAB_HOME."""
    folder = tmp_path / "digits-1ep"
    shutil.copytree(trained_digits_dir, folder)
    card = read_card(folder)
    ModelStore().register(card, folder)
    return folder, card


@pytest.fixture
def digit_png(tmp_path) -> Path:
    img = Image.new("L", (16, 16), 0)
    img.paste(255, (6, 2, 10, 14))  # a white "1" on black
    path = tmp_path / "one.png"
    img.convert("RGB").save(path)
    return path
