"""``matrix --seeds N``: the whole grid once per seed, then one report over the seeds (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from poisonlab.cli.main import app

#: one attack row, one defense, no retrain: a clean model and one poisoned model per seed
TINY = {
    "name": "seeds-matrix",
    "dataset": {"name": "digits"},
    "training": {"settings": {"epochs": 1}},
    "train_size": 300,
    "trusted_size": 60,
    "attacks": [
        {"name": "flip", "attack": {"kind": "label_flip", "source": "3", "target": "8", "fraction": 0.5}}
    ],
    "defenses": [{"name": "spectral_signatures"}],
    "mitigation": {"defenses": "none", "oracle": False},
}


def test_matrix_over_seeds_writes_each_seed_and_the_combined_report(tmp_path: Path) -> None:
    config = tmp_path / "m.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["matrix", str(config), "--out", str(out), "--seeds", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    per_seed = [json.loads((out / f"seed-{s}" / "matrix.json").read_text()) for s in (0, 1)]
    assert [r["provenance"]["seeds"] for r in per_seed] == [[0], [1]]
    # every cell records the parameters its detector ran with, defaults included
    assert per_seed[0]["rows"][0]["detection"]["spectral_signatures"]["params"]
    combined = json.loads((out / "matrix_seeds.json").read_text())
    assert combined["seeds"] == [0, 1]
    assert (out / "report.md").read_text().count("seeds") >= 1
    # every seed trained its own clean model: the combined figure is their mean
    accuracies = [r["clean_model"]["clean_accuracy"] for r in per_seed]
    assert per_seed[0]["clean_model"]["model_id"] != per_seed[1]["clean_model"]["model_id"]
    assert combined["clean"]["clean_accuracy"]["values"] == accuracies
    assert abs(combined["clean"]["clean_accuracy"]["mean"] - sum(accuracies) / 2) < 1e-12


def test_seed_and_seeds_together_are_one_line(tmp_path: Path) -> None:
    config = tmp_path / "m.yaml"
    config.write_text(yaml.safe_dump(TINY))
    for command in ("matrix", "clean-label"):
        args = [command, str(config), "--out", str(tmp_path / "o"), "--seed", "1", "--seeds", "2"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert "--seeds N" in result.output and result.output.strip().count("\n") == 0
