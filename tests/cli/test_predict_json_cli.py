"""``predict`` on folders with unreadable files, and the ``--json`` output of predict, scan and
models list (one JSON document on stdout, nothing else there)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import assert_cli_error
from PIL import Image
from typer.testing import CliRunner

from poisonlab.cli.main import app
from poisonlab.cli.predict_cmd import EXIT_SOME_UNREADABLE

runner = CliRunner()


@pytest.fixture
def photo_folder(tmp_path, digit_png) -> Path:
    """Two readable images, one corrupt PNG and a text file (not an image: ignored)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(digit_png, folder / "a-one.png")
    Image.new("RGB", (12, 9), (255, 255, 255)).save(folder / "c-white.jpg")
    (folder / "b-broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (folder / "notes.txt").write_text("not an image", encoding="utf-8")
    return folder


def test_predict_folder_with_a_corrupt_file_predicts_the_rest(digits_model, photo_folder, wide_consoles):
    folder, _ = digits_model
    result = runner.invoke(app, ["predict", str(folder), str(photo_folder)])
    assert result.exit_code == EXIT_SOME_UNREADABLE == 3, result.output
    assert "a-one.png" in result.stdout and "c-white.jpg" in result.stdout
    assert "b-broken.png" not in result.stdout and "notes.txt" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: cannot read image b-broken.png")
    assert "Traceback" not in result.output


def test_predict_json_lists_predictions_and_errors(digits_model, photo_folder):
    folder, card = digits_model
    result = runner.invoke(app, ["predict", card.id, str(photo_folder), "--json", "--top", "2"])
    assert result.exit_code == 3
    doc = json.loads(result.stdout)  # stdout is exactly one JSON document
    assert doc["model"]["id"] == card.id
    assert [Path(p["image"]).name for p in doc["predictions"]] == ["a-one.png", "c-white.jpg"]
    for p in doc["predictions"]:
        assert p["prediction"] == p["top"][0]["class"] and len(p["top"]) == 2
        assert p["top"][0]["probability"] >= p["top"][1]["probability"]
    assert [Path(e["image"]).name for e in doc["errors"]] == ["b-broken.png"]
    assert "b-broken.png" in result.stderr


def test_predict_with_no_readable_image_is_exit_2(digits_model, tmp_path):
    folder, _ = digits_model
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"junk")
    result = runner.invoke(app, ["predict", str(folder), str(bad), str(tmp_path / "missing.png")])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_cli_error(runner.invoke(app, ["predict", str(folder), str(empty)]), "no image files in folder")


def test_models_list_json(digits_model, poisonlab_home):
    _, card = digits_model
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert Path(doc["registry"]) == poisonlab_home / "registry.sqlite"
    (entry,) = doc["models"]
    assert (entry["id"], entry["name"], entry["version"]) == (card.id, "digits-1ep", 1)
    assert entry["metrics"]["test_accuracy"] == pytest.approx(card.metrics["test_accuracy"])


def test_models_list_json_when_empty(poisonlab_home):
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["models"] == []


def test_scan_json(tmp_path):
    out = tmp_path / "scan"
    args = ["scan", "digits", "--method", "duplicates:max_distance=2", "--out", str(out), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["dataset"]["name"] == "digits-train" and doc["dataset"]["poison_known"] is False
    (method,) = doc["methods"]
    assert method["name"] == "duplicates" and method["params"]["max_distance"] == 2
    assert isinstance(method["flagged"], int) and method["metrics"] is None
    assert doc["screen"] is None and Path(doc["files"]["report_html"]).is_file()
