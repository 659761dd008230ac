"""``poisonlab scan`` and ``poisonlab defenses list`` end to end on a tiny planted label flip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from poisonlab.cli.main import app
from poisonlab.data.arrays import save_arrays
from poisonlab.metrics import detection_scores
from poisonlab.models.checkpoint import save_model

runner = CliRunner()


def _error_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture
def saved_case(mislabeled, tmp_path: Path) -> tuple[Path, Path]:
    """(poisoned .npz with its poison mask, model folder) of the label-flipped digits case."""
    case = mislabeled
    data = save_arrays(case.dataset, tmp_path / "poisoned.npz")
    folder = tmp_path / "model"
    save_model(
        case.model,
        folder,
        class_names=case.dataset.class_names,
        dataset_name=case.dataset.name,
        dataset_hash=case.dataset.content_hash,
    )
    return data, folder


def test_scan_writes_json_and_html_with_metrics(saved_case, tmp_path: Path) -> None:
    data, model = saved_case
    out = tmp_path / "scan"
    result = runner.invoke(
        app,
        [
            "scan",
            str(data),
            "--model",
            str(model),
            "--trusted",
            "digits:val",
            "--method",
            "spectral_signatures",
            "--method",
            "activation_clustering",
            "--method",
            "zscore:space=pixels",
            "--out",
            str(out),
            "--top",
            "10",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "report:" in result.output and "spectral_signatures" in result.output
    report = json.loads((out / "scan.json").read_text())
    assert report["dataset"]["poison_known"] and report["model"]["path"] == str(model)
    methods = {m["name"]: m for m in report["methods"]}
    assert set(methods) == {"spectral_signatures", "activation_clustering", "zscore"}
    assert methods["zscore"]["params"]["space"] == "pixels"
    # the recorded metrics are those of the written flags and scores against the mask
    flags = np.load(out / "flags.npz")
    mask = np.load(data)["poison_mask"]
    for name, entry in methods.items():
        expected = detection_scores(mask, flags[f"flagged_{name}"], flags[f"scores_{name}"])
        assert entry["metrics"] == pytest.approx(expected, nan_ok=True), name
    assert (out / "report.html").is_file() and (out / "report.md").is_file()


def test_scan_named_dataset_without_model(tmp_path: Path) -> None:
    out = tmp_path / "scan"
    result = runner.invoke(app, ["scan", "digits", "--method", "duplicates", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "scan.json").read_text())
    assert report["dataset"]["poison_known"] is False
    assert report["methods"][0]["metrics"] is None


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["digits", "--method", "nope"], "unknown defense 'nope'"),
        (["digits", "--method", "spectral_signatures"], "needs a model"),
        (["digits", "--method", "zscore:bogus=1"], "unknown parameter 'bogus' for defense 'zscore'"),
        (["digits", "--method", "duplicates", "--split", "all"], "--split must be one of"),
        (["digits:everything", "--method", "duplicates"], "split after 'digits'"),
        (["/no/such/data.npz", "--method", "duplicates"], "no/such/data.npz"),
        (["digits", "--method", "roni", "--model", "/no/such/model"], "no/such/model"),
    ],
)
def test_scan_errors_are_one_line(args: list[str], match: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["scan", *args, "--out", str(tmp_path / "o")])
    assert match in _error_line(result)


def test_defenses_list_shows_every_defense() -> None:
    from poisonlab.defenses import DEFENSES

    result = runner.invoke(app, ["defenses", "list"])
    assert result.exit_code == 0, result.output
    for name in DEFENSES:
        assert name in result.output
