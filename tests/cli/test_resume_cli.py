"""``poisonlab run --resume`` at the command line: a model of another config is one error line."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from poisonlab.cli.main import app


def test_cli_resume_of_another_config_is_one_error_line(tmp_path: Path, poisonlab_home) -> None:
    runner = CliRunner()
    fields = {
        "name": "cli-resume",
        "dataset": {"name": "digits"},
        "training": {"settings": {"epochs": 1}},
        "attack": {"kind": "label_flip", "source": "3", "target": "8", "count": 10},
    }
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(yaml.safe_dump(fields | {"seeds": [0]}), encoding="utf-8")
    second.write_text(
        yaml.safe_dump(fields | {"attack": {**fields["attack"], "count": 12}}), encoding="utf-8"
    )
    out = tmp_path / "out"
    done = runner.invoke(app, ["run", str(first), "--out", str(out), "-q", "--device", "cpu"])
    assert done.exit_code == 0, done.output
    (out / "run.json").unlink()  # as if stopped before the report
    (out / "results.json").unlink()
    result = runner.invoke(app, ["run", str(second), "--out", str(out), "-q", "--device", "cpu", "--resume"])
    # found after the stage headers (the check needs the seed's clean model): still one error line
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if not line.startswith("==> ")]
    assert len(errors) == 1 and errors[0].startswith("error: cannot resume: "), errors
    assert "training data (content hash)" in errors[0]
    again = runner.invoke(app, ["run", str(first), "--out", str(out), "-q", "--device", "cpu", "--resume"])
    assert again.exit_code == 0, again.output
    assert "resumed_from" in json.loads((out / "results.json").read_text())["runs"][0]
