"""``poisonlab figures CONFIG --out DIR``: files written, one-line errors, skipped inputs reported."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from cli_helpers import assert_cli_error, flat
from typer.testing import CliRunner

from poisonlab.cli.main import app

runner = CliRunner()
FIGURES = [
    {"name": "single", "trigger": "single_pixel", "params": {"distance": 5, "pixel_value": 1}},
    {"name": "pattern", "trigger": "pattern", "params": {"distance": 5, "pixel_value": 1}},
]


def _write(tmp_path: Path, **data) -> Path:
    path = tmp_path / "figs.yaml"
    path.write_text(yaml.safe_dump({"name": "figs", "figures": FIGURES, "photos": [], **data}))
    return path


def test_figures_writes_the_report_and_prints_the_table(tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["figures", str(_write(tmp_path)), "--out", str(out)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "single_pixel" in result.output and f"report: {out / 'figures.md'}" in flat(result.output)
    doc = json.loads((out / "results.json").read_text())
    assert [f["changed_pixels"] for f in doc["figures"]] == [1, 4]
    assert (out / "canvas" / "single.png").is_file() and (out / "canvas" / "pattern-x8.png").is_file()


def test_missing_photos_are_reported_as_skipped_not_failed(tmp_path):
    config = _write(tmp_path, photos=["no-such-folder"])
    result = runner.invoke(app, ["figures", str(config), "--out", str(tmp_path / "o")], terminal_width=300)
    assert result.exit_code == 0, result.output
    assert "skipped photos: not found" in flat(result.output)


def test_a_bad_config_is_one_error_line(tmp_path):
    config = _write(tmp_path, figures=[{"name": "x", "trigger": "pattern", "params": {"distnace": 2}}])
    result = runner.invoke(app, ["figures", str(config), "--out", str(tmp_path / "o")])
    assert_cli_error(result, "invalid figures config .*distnace")
    assert not (tmp_path / "o").exists()


def test_a_missing_config_and_an_earlier_run_are_one_error_line(tmp_path):
    result = runner.invoke(app, ["figures", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o")])
    assert_cli_error(result, "figures config not found")
    config, out = _write(tmp_path), tmp_path / "out"
    assert runner.invoke(app, ["figures", str(config), "--out", str(out)]).exit_code == 0
    assert_cli_error(runner.invoke(app, ["figures", str(config), "--out", str(out)]), "already holds")
    assert runner.invoke(app, ["figures", str(config), "--out", str(out), "--overwrite"]).exit_code == 0
