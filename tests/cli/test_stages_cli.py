"""Stage headers of the long commands, and whole configs checked before any training (issue 17)."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from cli_helpers import assert_cli_error
from typer.testing import CliRunner

from poisonlab.cli._stages import duration
from poisonlab.cli.bench_cmd import _plan_stage
from poisonlab.cli.main import app
from poisonlab.experiments.detection.cases import grid
from poisonlab.experiments.detection.config import parse_detection

runner = CliRunner()

LABEL_FLIP = {"kind": "label_flip", "source": "3", "target": "8", "count": 10}


def _config(tmp_path, name="exp.yaml", **fields) -> str:
    cfg = {"name": "cli-stages", "dataset": {"name": "digits"}, "training": {"settings": {"epochs": 1}}}
    path = tmp_path / name
    path.write_text(yaml.safe_dump({**cfg, **fields}), encoding="utf-8")
    return str(path)


def _headers(output: str) -> list[str]:
    return [line[4:] for line in output.splitlines() if line.startswith("==> ")]


def test_duration_text():
    assert duration(None) == ""
    assert duration(20.4) == " (~20 s on 2 idle cores)"
    assert duration(768) == " (~13 min on 2 idle cores)"
    assert duration(5 * 3600) == " (~5.0 h on 2 idle cores)"


def test_run_names_its_stages_and_the_cache(tmp_path, poisonlab_home):
    config = _config(tmp_path, attack=LABEL_FLIP, seeds=[0])
    first = runner.invoke(app, ["run", config, "--out", str(tmp_path / "a"), "-q", "--device", "cpu"])
    assert first.exit_code == 0, first.output
    headers = _headers(first.stderr)
    assert headers[0] == "loading digits"
    assert headers[1].startswith("training the clean baseline on ") and "on 2 idle cores)" in headers[1]
    assert headers[2].startswith("poisoning (label_flip), then training a model from scratch on the poisoned")
    assert headers[-1] == "measuring done; writing the report"
    # the second run finds the baseline in the cache and says so; --seed replaces the config's seeds
    again = runner.invoke(
        app, ["run", config, "--out", str(tmp_path / "b"), "-q", "--device", "cpu", "--seed", "5"]
    )
    assert again.exit_code == 0, again.output
    headers = _headers(again.stderr)
    assert headers[1].startswith("clean baseline loaded from cache (simple-cifar10-")
    assert "seed 5" in headers[2]
    assert json.loads((tmp_path / "b" / "results.json").read_text())["runs"][0]["seed"] == 5


@pytest.mark.parametrize(
    ("attack", "match"),
    [
        (
            {**LABEL_FLIP, "count": None, "fraction": 1.5},
            r"attack \(label_flip\): fraction must be in \(0, 1\]",
        ),
        (
            {"kind": "backdoor", "source": "7", "target": "1", "fraction": 1.5},
            r"attack \(backdoor\): fraction",
        ),
        ({"kind": "mislabel", "target": "1", "images": "no-such-folder"}, "no-such-folder"),
    ],
    ids=["label_flip fraction", "backdoor fraction", "mislabel images"],
)
def test_run_rejects_a_bad_attack_before_any_training(tmp_path, poisonlab_home, attack, match):
    config = _config(tmp_path, attack=attack)
    result = runner.invoke(app, ["run", config, "--out", str(tmp_path / "o"), "-q", "--device", "cpu"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: ") and re.search(match, last), last
    assert not (poisonlab_home / "baselines").exists()  # nothing was trained


def test_matrix_rejects_bad_defense_parameters_before_any_training(tmp_path, poisonlab_home):
    config = _config(
        tmp_path,
        attacks=[{"name": "flip", "attack": LABEL_FLIP}],
        defenses=[{"name": "zscore", "params": {"treshold": 4}}],
    )
    result = runner.invoke(app, ["matrix", config, "--out", str(tmp_path / "o"), "-q"])
    line = assert_cli_error(result, "defense 'zscore' takes .*threshold")
    assert "treshold" in line
    assert not (poisonlab_home / "baselines").exists()


def test_matrix_rejects_a_bad_attack_at_load(tmp_path, poisonlab_home):
    bad = {"name": "flip", "attack": {**LABEL_FLIP, "count": None, "fraction": 1.5}}
    config = _config(tmp_path, attacks=[bad], defenses=[{"name": "zscore"}])
    result = runner.invoke(app, ["matrix", config, "--out", str(tmp_path / "o"), "-q"])
    assert_cli_error(result, r"attack flip.*fraction must be in \(0, 1\]")


def test_bench_detection_plan_counts_cells_and_finished_ones(tmp_path, capsys):
    cfg = parse_detection(
        {
            "name": "tiny",
            "dataset": {"name": "digits"},
            "seeds": {"start": 0, "count": 1},
            "rates": [0.05],
            "families": ["patch", "label_flip"],
            "targets": ["all_to_one"],
        }
    )
    cells = grid(cfg)
    out = tmp_path / "out"
    out.mkdir()
    # one finished cell and a line cut short by a stopped run (that cell runs again)
    (out / "cells.jsonl").write_text(
        json.dumps({"cell": cells[0].id}) + '\n{"cell": "trunc', encoding="utf-8"
    )
    assert _plan_stage(cfg, out) == len(cells)
    (header,) = _headers(capsys.readouterr().err)
    assert f"{len(cells)} cells, 1 already finished in {out} (resuming)" in header
    assert "training a model from scratch (~" in header


def _stop(*args, **kwargs):
    raise ValueError("runner stubbed out")


def _stubbed_headers(result) -> list[str]:
    """The stage headers of a command whose runner was replaced by :func:`_stop`."""
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == "error: runner stubbed out"
    return _headers(result.stderr)


def test_demo_headers_name_both_experiments_and_the_scan(tmp_path, monkeypatch, poisonlab_home):
    monkeypatch.setattr("poisonlab.experiments.single.demo.run_demo", _stop)
    args = ["demo", "--out", str(tmp_path / "d"), "--epochs", "1", "-q", "--device", "cpu", "--seed", "2"]
    headers = _stubbed_headers(runner.invoke(app, args))
    assert headers[:2] == ["loading digits", headers[1]] and headers[1].startswith(
        "training the clean baseline"
    )
    assert headers[2].startswith(
        "demo-backdoor-digits: poisoning (backdoor), then training a model from scratch"
    )
    assert "demo-mislabel-digits: poisoning (mislabel), then fine-tuning the clean model" in headers[2]
    assert "seed 2" in headers[2] and headers[2].endswith("defenses")
    assert (poisonlab_home / "baselines").is_dir()  # the baseline trained under its own header


def test_matrix_headers_name_the_first_attack(tmp_path, monkeypatch, poisonlab_home):
    seen = []

    def stop(cfg, **kwargs):
        seen.append(cfg)
        _stop()

    monkeypatch.setattr("poisonlab.experiments.matrix.run_matrix", stop)
    config = _config(
        tmp_path,
        attacks=[{"name": "flip", "attack": LABEL_FLIP}, {"name": "flip2", "attack": LABEL_FLIP}],
        defenses=[{"name": "zscore"}, {"name": "duplicates"}],
        mitigation={"defenses": "none", "oracle": False},
    )
    args = ["matrix", config, "--out", str(tmp_path / "m"), "-q", "--seed", "3"]
    headers = _stubbed_headers(runner.invoke(app, args))
    assert seen[0].seed == 3
    assert headers[0] == "loading digits" and headers[1].startswith("training the clean baseline")
    assert headers[2].startswith("attack 1/2 flip: poisoning, training on the poisoned set (~")
    assert headers[2].endswith("scanning with 2 defenses")


def test_clean_label_plan_header_and_seed(tmp_path, monkeypatch):
    seen = []

    def stop(cfg, **kwargs):
        seen.append(cfg)
        _stop()

    monkeypatch.setattr("poisonlab.experiments.clean_label.run_clean_label", stop)
    config = tmp_path / "cl.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "cl",
                "dataset": {"name": "digits"},
                "setting": "scratch",
                "train_size": 300,
                "eval_size": 100,
                "trusted_size": 50,
                "trials": 3,
                "budget": 0.03,
                "eps": 0.0627,
                "attacks": [{"name": "FC", "attack": "feature_collision"}],
            }
        ),
        encoding="utf-8",
    )
    args = ["clean-label", str(config), "--out", str(tmp_path / "c"), "--seed", "4"]
    (plan,) = _stubbed_headers(runner.invoke(app, args))
    assert seen[0].seed == 4
    assert plan.startswith("surrogate model: training on 300 images (~")
    assert plan.endswith("then 3 trials, each crafting 1 attacks and training their victims")


def test_an_earlier_run_in_out_is_refused_before_any_training(tmp_path, monkeypatch, poisonlab_home):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"run_id": "run-1", "created_at": "then"}), encoding="utf-8")
    config = _config(tmp_path, attack=LABEL_FLIP)
    assert_cli_error(runner.invoke(app, ["run", config, "--out", str(out), "-q"]), "already holds run run-1")
    matrix = _config(
        tmp_path, "m.yaml", attacks=[{"name": "flip", "attack": LABEL_FLIP}], defenses=[{"name": "zscore"}]
    )
    assert_cli_error(
        runner.invoke(app, ["matrix", matrix, "--out", str(out), "-q"]), "already holds run run-1"
    )
    assert not (poisonlab_home / "baselines").exists()
    monkeypatch.setattr("poisonlab.experiments.matrix.run_matrix", _stop)  # --overwrite gets past it
    assert (
        "runner stubbed out"
        in runner.invoke(app, ["matrix", matrix, "--out", str(out), "--overwrite"]).stderr
    )
