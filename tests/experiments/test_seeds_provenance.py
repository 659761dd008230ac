"""Seeds with their own clean model, intervals in results.json and the report, the provenance
block of every result file, the 26/27 Rutan option, and the CLI's --seeds (issue 14)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from poisonlab.cli.main import app
from poisonlab.data.dataset import Splits
from poisonlab.experiments import parse_experiment, run_experiment, write_experiment
from poisonlab.experiments.common.measure import aggregate
from poisonlab.experiments.single.build import external_images
from poisonlab.reporting.stamp import PROVENANCE_KEYS

TINY = {"settings": {"epochs": 2, "batch_size": 16, "lr": 0.05, "augment": None}}


@pytest.fixture
def splits(make_colour_dataset) -> Splits:
    return Splits(
        train=make_colour_dataset(per_class=12, seed=0, name="c-train"),
        val=make_colour_dataset(per_class=4, seed=1, name="c-val"),
        test=make_colour_dataset(per_class=8, seed=2, name="c-test"),
    )


def _config(**overrides) -> dict:
    base = {
        "name": "seeds",
        "training": TINY,
        "finetune": {"preset": "chapter-finetune", "settings": {"epochs": 1, "batch_size": 16}},
        "attack": {"kind": "label_flip", "source": "red", "target": "green", "count": 4},
        "integration": "finetune",
        "seeds": [0, 1],
    }
    return {**base, **overrides}


def test_per_seed_baseline_trains_a_clean_model_per_seed(tmp_path: Path, splits: Splits) -> None:
    cfg = parse_experiment(_config(baseline="per_seed"))
    result = run_experiment(cfg, tmp_path / "run", device="cpu", progress=False, splits=splits)
    ids = [r.clean_model_id for r in result.runs]
    assert None not in ids and len(set(ids)) == 2  # two clean models, trained with seeds 0 and 1
    assert result.runs[0].clean is result.clean  # the first seed's clean model is the run's
    assert cfg.clean_train_config(1).seed == 1 and cfg.clean_train_config().seed == 0
    write_experiment(result, tmp_path / "run")
    data = json.loads((tmp_path / "run" / "results.json").read_text())
    summary = data["summary"]
    assert summary["baseline"] == "per_seed"
    assert summary["clean_stats"]["clean_accuracy"]["n"] == 2  # the clean figure is over 2 models
    drop = summary["accuracy_drop_stats"]
    assert drop["n"] == 2 and drop["ci_low"] <= drop["mean"] <= drop["ci_high"]  # paired per seed
    assert [r["clean_model"] for r in data["runs"]] == ids
    assert data["runs"][1]["clean_metrics"]["counts"]["clean_accuracy"] == len(splits.test)


def test_results_json_carries_intervals_and_provenance(tmp_path: Path, splits: Splits) -> None:
    cfg = parse_experiment(_config())
    result = run_experiment(cfg, tmp_path / "r", device="cpu", progress=False, splits=splits)
    write_experiment(result, tmp_path / "r")
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    acc = data["summary"]["poisoned"]["clean_accuracy"]
    assert acc["n"] == 2 and acc["std"] == pytest.approx(np.std(acc["values"], ddof=1))
    assert acc["binomial"]["n"] == len(splits.test)  # one model's test images, not pooled over seeds
    s2t = data["summary"]["poisoned"]["source_to_target"]
    assert s2t["binomial"]["n"] == int(np.sum(splits.test.y == 0))  # the red test images
    prov = data["provenance"]
    assert set(PROVENANCE_KEYS) <= set(prov)
    assert prov["seeds"] == [0, 1] and prov["versions"]["torch"]
    assert prov["parameters"]["poisoned_training"]["1"]["seed"] == 1
    assert prov["parameters"]["config"]["attack"]["count"] == 4
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Intervals" in md and "Student t" in md and "Wilson" in md
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["seeds"] == [0, 1] and set(run["clean_models"]) == {"0", "1"}


def test_aggregate_gives_one_model_wilson_interval_and_no_spread_for_one_seed() -> None:
    one = aggregate([{"clean_accuracy": 0.8}], [{"clean_accuracy": 1000}])["clean_accuracy"]
    assert one["std"] is None and one["ci_low"] is None
    assert one["binomial"]["successes"] == 800 and one["binomial"]["n"] == 1000
    assert one["binomial"]["ci_low"] < 0.8 < one["binomial"]["ci_high"]
    two = aggregate(
        [{"source_to_target": 40.0}, {"source_to_target": 60.0}], [{"source_to_target": 1000}] * 2
    )
    assert two["source_to_target"]["binomial"] == pytest.approx(
        {**two["source_to_target"]["binomial"], "successes": 50, "n": 1000}
    )


def test_seeds_must_be_distinct() -> None:
    with pytest.raises(ValueError, match="distinct"):
        parse_experiment(_config(seeds=[1, 1]))


def _photos(folder: Path, names: list[str]) -> Path:
    folder.mkdir()
    for i, name in enumerate(names):
        Image.fromarray(np.full((12, 10, 3), 40 * i, dtype=np.uint8)).save(folder / name)
    return folder


def test_mislabel_exclude_leaves_files_out(tmp_path: Path, splits: Splits) -> None:
    folder = _photos(tmp_path / "rb", ["rb-1.jpeg", "rb-2.jpeg", "rb-2.webp"])
    attack = {"kind": "mislabel", "images": str(folder), "target": "green"}
    every = parse_experiment(_config(attack=attack))
    assert len(external_images(every, every.attack, splits)) == 3
    notebook = parse_experiment(_config(attack={**attack, "exclude": ["rb-2.webp"]}))
    ds = external_images(notebook, notebook.attack, splits)
    assert len(ds) == 2 and set(ds.y) == {1} and ds.image_shape == splits.train.image_shape
    typo = parse_experiment(_config(attack={**attack, "exclude": ["rb-3.webp"]}))
    with pytest.raises(ValueError, match="not in"):
        external_images(typo, typo.attack, splits)
    with pytest.raises(ValueError, match="exclude"):
        parse_experiment(
            _config(
                attack={
                    "kind": "mislabel",
                    "from_split": {"class_name": "red"},
                    "target": "green",
                    "exclude": ["x"],
                }
            )
        )


def test_shipped_rutan_configs_are_26_by_default_and_27_as_variant() -> None:
    root = Path(__file__).resolve().parents[2] / "experiments" / "chapter"
    for name in ("rutan-finetune", "rutan-retrain"):
        default = yaml.safe_load((root / f"{name}.yaml").read_text())
        variant = yaml.safe_load((root / f"{name}-27.yaml").read_text())
        assert default["attack"]["exclude"] == ["rb-14.webp"]
        assert "exclude" not in variant["attack"] and variant["name"] == f"{name}-27"


def test_cli_seeds_replicates_with_a_clean_model_per_seed(tmp_path: Path, poisonlab_home: Path) -> None:
    config = tmp_path / "exp.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "cli-seeds",
                "dataset": {"name": "digits"},
                "training": {"settings": {"epochs": 1}},
                "attack": {"kind": "label_flip", "source": "3", "target": "8", "count": 10},
            }
        )
    )
    runner = CliRunner()
    both = runner.invoke(
        app, ["run", str(config), "--out", str(tmp_path / "x"), "--seed", "1", "--seeds", "2"]
    )
    assert both.exit_code == 2 and "not both" in both.output
    done = runner.invoke(
        app, ["run", str(config), "--out", str(tmp_path / "o"), "-q", "--device", "cpu", "--seeds", "2"]
    )
    assert done.exit_code == 0, done.output
    data = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [r["seed"] for r in data["runs"]] == [0, 1]
    assert data["summary"]["baseline"] == "per_seed"
    assert len({r["clean_model"] for r in data["runs"]}) == 2
