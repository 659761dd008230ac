"""Experiment configs and the end-to-end runner on tiny synthetic colour data (seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from poisonlab.data.dataset import Splits
from poisonlab.experiments import load_experiment, parse_experiment, run_experiment, write_experiment
from poisonlab.experiments.common.cache import baseline_key
from poisonlab.experiments.common.measure import aggregate

TINY_TRAINING = {"settings": {"epochs": 3, "batch_size": 16, "lr": 0.05, "augment": None}}
TINY_FINETUNE = {"preset": "chapter-finetune", "settings": {"epochs": 2, "batch_size": 16}}


@pytest.fixture
def splits(make_colour_dataset) -> Splits:
    return Splits(
        train=make_colour_dataset(per_class=20, seed=0, name="colours-train"),
        val=make_colour_dataset(per_class=6, seed=1, name="colours-val"),
        test=make_colour_dataset(per_class=10, seed=2, name="colours-test"),
    )


def _config(**overrides) -> dict:
    base = {
        "name": "tiny",
        "training": TINY_TRAINING,
        "finetune": TINY_FINETUNE,
        "attack": {
            "kind": "backdoor",
            "trigger": "cyan_square_replace",
            "trigger_params": {"size": 2},
            "source": "red",
            "target": "green",
        },
        "integration": "retrain",
    }
    base.update(overrides)
    return base


def test_backdoor_experiment_end_to_end(tmp_path: Path, splits: Splits) -> None:
    cfg = parse_experiment(_config(seeds=[0, 1]))
    result = run_experiment(cfg, tmp_path / "run", device="cpu", progress=False, splits=splits)
    assert not (tmp_path / "run" / "results.json").exists()  # the runner returns, the writer writes
    write_experiment(result, tmp_path / "run")
    data = json.loads((tmp_path / "run" / "results.json").read_text())
    assert data["experiment"] == "tiny"
    assert len(data["runs"]) == 2
    # every training red image stamped and relabelled green, concatenated
    assert data["runs"][0]["num_poison"] == 20
    assert data["dataset"]["train_hash"] == splits.train.content_hash
    poisoned = data["summary"]["poisoned"]
    assert set(poisoned) >= {"clean_accuracy", "attack_success_rate", "mixed_accuracy"}
    assert len(poisoned["attack_success_rate"]["values"]) == 2
    assert 0.0 <= poisoned["attack_success_rate"]["mean"] <= 1.0
    assert result.clean.attack_success_rate is not None
    for name in (
        "report.md",
        "report.html",
        "trigger.png",
        "poisoned_samples.png",
        "confusion_clean.png",
        "confusion_poisoned.png",
        "curves.png",
    ):
        assert (tmp_path / "run" / name).is_file(), name
    md = (tmp_path / "run" / "report.md").read_text()
    assert "attack success rate" in md and "±" in md  # two seeds -> mean ± std
    assert splits.train.content_hash in md


def test_clean_baseline_is_cached_between_runs(tmp_path: Path, splits: Splits, poisonlab_home: Path) -> None:
    cfg = parse_experiment(_config())
    first = run_experiment(cfg, tmp_path / "a", device="cpu", progress=False, splits=splits)
    key = baseline_key(splits.train, cfg.clean_train_config())
    cached = poisonlab_home / "baselines" / key / "model.json"
    assert cached.is_file()
    stamp = cached.stat().st_mtime_ns
    second = run_experiment(cfg, tmp_path / "b", device="cpu", progress=False, splits=splits)
    assert cached.stat().st_mtime_ns == stamp  # not retrained
    assert first.clean_model_id == second.clean_model_id
    assert first.clean.clean_accuracy == second.clean.clean_accuracy


def test_a_new_training_revision_is_a_new_cache_key(splits: Splits, monkeypatch) -> None:
    # a cached model trained by older code must not be handed out once the code trains another
    config = parse_experiment(_config()).clean_train_config()
    before = baseline_key(splits.train, config)
    monkeypatch.setattr("poisonlab.experiments.common.cache.TRAINING_REVISION", 99)
    assert baseline_key(splits.train, config) != before


def test_a_folder_holding_a_run_is_refused_before_training_unless_overwrite(
    tmp_path: Path, splits: Splits
) -> None:
    cfg = parse_experiment(_config(seeds=[0, 1]))
    out = tmp_path / "run"
    write_experiment(run_experiment(cfg, out, device="cpu", progress=False, splits=splits), out)
    first = json.loads((out / "run.json").read_text())["run_id"]
    second_model = out / "models" / "seed-1" / "model.json"
    stamp = second_model.stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="already holds run"):
        run_experiment(cfg, out, device="cpu", progress=False, splits=splits)
    # a run stopped after its first model left models/seed-0 without a run.json at the top
    (out / "run.json").unlink()
    with pytest.raises(FileExistsError, match="seed-0"):
        run_experiment(cfg, out, device="cpu", progress=False, splits=splits)
    assert second_model.stat().st_mtime_ns == stamp  # refused before seed 0 trained, not at seed 1
    result = run_experiment(cfg, out, device="cpu", progress=False, splits=splits, overwrite=True)
    write_experiment(result, out, overwrite=True)
    assert json.loads((out / "run.json").read_text())["run_id"] != first
    assert json.loads(second_model.read_text())["id"] == result.runs[1].model_id


@pytest.mark.parametrize("integration", ["finetune", "finetune_poison_only"])
def test_mislabel_finetune_modes_record_parent(tmp_path: Path, splits: Splits, integration: str) -> None:
    cfg = parse_experiment(
        _config(
            integration=integration,
            attack={
                "kind": "mislabel",
                "from_split": {"split": "val", "class_name": "red", "count": 5},
                "target": "blue",
            },
            metrics={"source": "red", "target": "blue"},
        )
    )
    result = run_experiment(cfg, tmp_path / "m", device="cpu", progress=False, splits=splits)
    run = result.runs[0]
    assert len(run.poison.poison_indices) == 5
    assert np.all(run.poison.poisoned_only.y == 2)
    card = json.loads((tmp_path / "m" / "models" / "seed-0" / "model.json").read_text())
    assert card["parent_id"] == result.clean_model_id
    assert result.clean.source_to_target is not None
    assert result.clean.attack_success_rate is None  # no trigger, no ASR


def test_label_flip_experiment(tmp_path: Path, splits: Splits) -> None:
    cfg = parse_experiment(
        _config(attack={"kind": "label_flip", "source": "red", "target": "blue", "fraction": 0.5})
    )
    result = run_experiment(cfg, tmp_path / "f", device="cpu", progress=False, splits=splits)
    assert len(result.runs[0].poison.poison_indices) == 10
    assert len(result.runs[0].poison.dataset) == len(splits.train)


def test_unknown_keys_are_errors() -> None:
    with pytest.raises(ValueError, match="epochz|extra"):
        parse_experiment(_config(training={"settings": {"epochz": 3}}))
    with pytest.raises(ValueError, match="colour"):
        parse_experiment({**_config(), "colour": "red"})
    with pytest.raises(ValueError, match="attack"):
        parse_experiment({"name": "x"})


def test_bad_attack_kind_and_mislabel_sources() -> None:
    with pytest.raises(ValueError, match="kind|tag"):
        parse_experiment(_config(attack={"kind": "telepathy", "target": "x"}))
    with pytest.raises(ValueError, match="exactly one"):
        parse_experiment(_config(attack={"kind": "mislabel", "target": "blue"}))


def test_unknown_class_fails_before_training(tmp_path: Path, splits: Splits) -> None:
    cfg = parse_experiment(
        _config(attack={"kind": "backdoor", "trigger": "pattern", "source": "purple", "target": "green"})
    )
    with pytest.raises(ValueError, match="purple"):
        run_experiment(cfg, tmp_path / "x", device="cpu", progress=False, splits=splits)
    assert not (Path(tmp_path / "x") / "results.json").exists()


def test_missing_external_image_is_file_not_found(tmp_path: Path, splits: Splits) -> None:
    cfg = parse_experiment(_config(metrics={"external_images": [str(tmp_path / "nope.jpg")]}))
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        run_experiment(cfg, tmp_path / "x", device="cpu", progress=False, splits=splits)


def test_load_experiment_yaml_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("name: y\nattack:\n  kind: random_label_flip\n  fraction: 0.1\nseeds: [3, 4]\n")
    cfg = load_experiment(path)
    assert cfg.seeds == [3, 4]
    assert cfg.path("photos") == tmp_path.resolve() / "photos"
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(ValueError, match="cannot parse"):
        load_experiment(tmp_path / "bad.yaml")
    with pytest.raises(FileNotFoundError):
        load_experiment(tmp_path / "missing.yaml")


def test_shipped_chapter_configs_validate() -> None:
    root = Path(__file__).resolve().parents[2] / "experiments" / "chapter"
    # the single-run configs (the folder also holds the figures and a clean-label config, which
    # tests/experiments/test_single_robustness.py loads with their own loaders)
    configs = [p for p in sorted(root.glob("*.yaml")) if "attack" in yaml.safe_load(p.read_text())]
    assert len(configs) >= 8
    for path in configs:
        cfg = load_experiment(path)
        assert cfg.dataset.name == "cifar10", path


def test_aggregate_mean_sample_std_and_interval() -> None:
    agg = aggregate([{"a": 1.0, "b": 2.0}, {"a": 3.0}])
    assert agg["a"]["mean"] == 2.0 and agg["a"]["values"] == [1.0, 3.0]
    assert agg["a"]["std"] == pytest.approx(2**0.5)  # sample std (ddof=1), not the population's 1.0
    assert agg["a"]["ci_low"] < 1.0 and agg["a"]["ci_high"] > 3.0  # t(0.975, 1) = 12.7
    assert agg["b"]["values"] == [2.0]
    assert agg["b"]["std"] is None and agg["b"]["ci_low"] is None  # one seed: no spread, never 0
    assert agg["b"]["interval"] == "single run"


def test_control_run_has_no_poison_and_same_integration(tmp_path: Path, splits: Splits) -> None:
    cfg = parse_experiment(
        _config(attack={"kind": "none"}, integration="finetune", metrics={"source": "red", "target": "green"})
    )
    result = run_experiment(cfg, tmp_path / "c", device="cpu", progress=False, splits=splits)
    write_experiment(result, tmp_path / "c")
    run = result.runs[0]
    assert run.poison.poison_indices == frozenset()
    assert run.poison.dataset.content_hash == splits.train.content_hash
    assert result.runs[0].measurement.attack_success_rate is None
    card = json.loads((tmp_path / "c" / "models" / "seed-0" / "model.json").read_text())
    assert card["parent_id"] == result.clean_model_id  # fine-tuned from the clean model like an attack
    assert "none: control run, no poison" in (tmp_path / "c" / "report.md").read_text()
