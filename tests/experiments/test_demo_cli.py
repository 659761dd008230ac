"""``poisonlab demo`` and ``poisonlab run`` through the CLI, on reduced settings."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from poisonlab.cli.main import app
from poisonlab.experiments.single.demo import DEMO_DEFENSES

runner = CliRunner()


def test_demo_on_digits_reduced(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    res = runner.invoke(app, ["demo", "--out", str(out), "--epochs", "1", "--quiet", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "demo-backdoor-digits" in res.output and "demo-mislabel-digits" in res.output
    assert (out / "summary.html").is_file() and (out / "summary.md").is_file()
    backdoor = json.loads((out / "demo-backdoor-digits" / "results.json").read_text())
    assert backdoor["runs"][0]["num_poison"] > 0
    assert "attack_success_rate" in backdoor["summary"]["poisoned"]
    mislabel = json.loads((out / "demo-mislabel-digits" / "results.json").read_text())
    assert mislabel["runs"][0]["num_poison"] == 25
    assert mislabel["config"]["integration"] == "finetune_poison_only"
    # the backdoored training set is scanned by the demo's defenses, scored against the truth
    scan = json.loads((out / "scan-backdoor" / "scan.json").read_text())
    assert scan["dataset"]["poison"] == backdoor["runs"][0]["num_poison"]
    assert [m["name"] for m in scan["methods"]] == list(DEMO_DEFENSES)
    assert all(m["metrics"] is not None for m in scan["methods"])
    assert "defenses on the backdoored training set" in res.output
    assert "Detecting the backdoor" in (out / "summary.md").read_text()


def test_run_command_and_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        "name: cli-run\n"
        "dataset: {name: digits}\n"
        "training: {settings: {epochs: 1}}\n"
        "attack: {kind: label_flip, source: '3', target: '8', count: 10}\n"
    )
    res = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "r"), "--quiet", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "clean test accuracy" in res.output
    assert json.loads((tmp_path / "r" / "results.json").read_text())["runs"][0]["num_poison"] == 10

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nattack: {kind: label_flip, source: '3', target: '8', count: 10}\nepochs: 3\n")
    res = runner.invoke(app, ["run", str(bad), "--out", str(tmp_path / "b")])
    assert res.exit_code == 2
    assert res.output.startswith("error: invalid experiment config") and "Traceback" not in res.output
    res = runner.invoke(app, ["run", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "not found" in res.output


def test_run_save_data_writes_the_poisoned_set_with_its_mask(tmp_path: Path) -> None:
    from poisonlab.data.arrays import load_arrays

    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        "name: cli-save\n"
        "dataset: {name: digits}\n"
        "training: {settings: {epochs: 1}}\n"
        "attack: {kind: label_flip, source: '3', target: '8', count: 10}\n"
    )
    out = tmp_path / "r"
    args = ["run", str(cfg), "--out", str(out), "--quiet", "--device", "cpu", "--save-data"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    saved = load_arrays(out / "data" / "seed-0.npz")
    assert saved.poison_mask is not None and int(saved.poison_mask.sum()) == 10
    assert set(saved.y[saved.poison_mask]) == {8}
    assert (out / "models" / "seed-0" / "model.json").is_file()
