"""The attacks x defenses matrix: config validation and a tiny end-to-end run on digits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from poisonlab.cli.main import app
from poisonlab.experiments.matrix import load_matrix, parse_matrix

REPO = Path(__file__).resolve().parents[2]

TINY = {
    "name": "tiny-matrix",
    "dataset": {"name": "digits"},
    "training": {"settings": {"epochs": 3}},
    "trusted_size": 100,
    "attacks": [
        {"name": "flip", "attack": {"kind": "label_flip", "source": "3", "target": "8", "fraction": 0.5}},
        {
            "name": "pattern",
            "attack": {
                "kind": "backdoor",
                "trigger": "pattern",
                "source": "7",
                "target": "1",
                "trigger_params": {"distance": 1},
            },
        },
    ],
    "defenses": [{"name": "spectral_signatures"}, {"name": "confident_learning"}],
    "mitigation": {"defenses": "best", "oracle": True},
}


def test_shipped_matrix_configs_parse() -> None:
    configs = sorted((REPO / "experiments" / "defenses").glob("*.yaml"))
    assert configs, "the matrix experiment configs must ship"
    for path in configs:
        cfg = load_matrix(path)
        assert len(cfg.attacks) >= 6 and len(cfg.defenses) >= 10


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"defenses": [{"name": "nope"}]}, "unknown defense 'nope'"),
        ({"defenses": [{"name": "zscore"}, {"name": "zscore"}]}, "defenses names must be unique"),
        ({"mitigation": {"defenses": ["kmeans"]}}, "not in the matrix"),
        ({"attacks": []}, "attacks"),
        ({"surprise": 1}, "surprise"),
        ({"training": {"settings": {"epochs": 0}}}, "epochs"),
    ],
)
def test_matrix_config_errors(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_matrix({**TINY, **change})


def test_tiny_matrix_end_to_end(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["matrix", str(config), "--out", str(out), "--quiet", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "matrix.json").read_text())
    assert [r["name"] for r in data["rows"]] == ["flip", "pattern"]
    for row in data["rows"]:
        assert row["poison_count"] > 0
        assert set(row["detection"]) == {"spectral_signatures", "confident_learning"}
        for cell in row["detection"].values():
            assert cell["flagged"] >= 0 and cell["seconds"] >= 0
        oracle = row["mitigation"]["oracle"]
        assert oracle["poison_left"] == 0 and oracle["removed"] == row["poison_count"]
        assert 0.0 <= row["poisoned"]["attack_success"] <= 1.0
        chosen = [k for k in row["mitigation"] if k != "oracle"]
        assert len(chosen) <= 1  # "best": at most the top-F1 defense of the row
    for key in ("f1", "recall", "precision", "auroc"):
        assert (out / f"heatmap_{key}.png").is_file()
    assert (out / "mitigation_attack_success.png").is_file()
    assert "Attacks x defenses" in (out / "report.html").read_text()


def test_matrix_cli_errors_are_one_line(tmp_path: Path) -> None:
    missing = CliRunner().invoke(app, ["matrix", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert missing.stderr.strip().startswith("error: matrix config not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "defenses": [{"name": "nope"}]}))
    res = CliRunner().invoke(app, ["matrix", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "unknown defense 'nope'" in res.stderr
    assert not (tmp_path / "o").exists()  # nothing written for a config that does not validate


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        (
            {"train_size": 100_000},
            r"train_size=100000 is larger than the training split of digits \(\d+ images\)",
        ),
        ({"trusted_size": 100_000}, r"trusted_size=100000 must be below the validation split of digits"),
    ],
)
def test_sizes_the_data_cannot_give_are_one_line_before_any_training(tmp_path: Path, sizes, message) -> None:
    bad = tmp_path / "big.yaml"
    bad.write_text(yaml.safe_dump({**TINY, **sizes}))
    res = CliRunner().invoke(app, ["matrix", str(bad), "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    lines = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and re.search(message, lines[0]), res.stderr
    assert "training" not in res.stderr.replace(lines[0], "")  # no stage trained before the error


def test_the_default_screen_is_the_matrix_default_and_mitigates_without_ground_truth(tmp_path: Path) -> None:
    """Without ``defenses`` the columns are the screen's detectors and its verdict, and the
    drop-and-retrain step drops exactly what the screen flagged (the oracle stays a reference)."""
    cfg = parse_matrix(
        {k: v for k, v in TINY.items() if k not in ("defenses", "mitigation")}
        | {"attacks": TINY["attacks"][:1]}
    )
    assert cfg.defenses is None and cfg.mitigation.defenses == "screen"
    columns = cfg.defense_names()
    assert columns[-1] == "screen" and "anchored_knn" in columns and "spectre" in columns
    # configured defenses come first; the screen's other detectors join them
    mixed = parse_matrix({**TINY, "mitigation": {"defenses": "screen"}})
    assert mixed.defense_names()[:2] == ["spectral_signatures", "confident_learning"]
    assert mixed.defense_names().count("spectral_signatures") == 1
    assert parse_matrix(TINY).defense_names() == ["spectral_signatures", "confident_learning"]

    config = tmp_path / "screen.yaml"
    config.write_text(
        yaml.safe_dump(
            {k: v for k, v in TINY.items() if k not in ("defenses", "mitigation")}
            | {"attacks": TINY["attacks"][:1]}
        )
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["matrix", str(config), "--out", str(out), "--quiet", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads((out / "matrix.json").read_text())["rows"]
    assert set(row["detection"]) == set(columns)
    screen = row["detection"]["screen"]
    assert set(row["mitigation"]) == {"screen", "oracle"}
    assert row["mitigation"]["screen"]["removed"] == screen["flagged"]
