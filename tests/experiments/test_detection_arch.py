"""Detection benchmark with either network: the ``training`` block, its checks, a run with airbench.

The default block must leave every identity of an existing grid as it was (the models' cache keys,
the grid settings a resumed run is compared on, the cell ids); a network that cannot take the
dataset's images must fail at load time in one line; and a grid with ``training: {preset:
airbench}`` must run end to end through the executor, which hands each cell a pickled config.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from poisonlab.cli.main import app
from poisonlab.data.dataset import Dataset, Splits
from poisonlab.experiments.common.cache import baseline_key
from poisonlab.experiments.common.specs import read_config_mapping
from poisonlab.experiments.detection import run as detection_run
from poisonlab.experiments.detection.cases import grid
from poisonlab.experiments.detection.config import load_detection, parse_detection
from poisonlab.experiments.detection.report import write_report
from poisonlab.experiments.executor import LocalExecutor
from poisonlab.experiments.single.config import parse_experiment
from poisonlab.models.airbench import AirbenchNet
from poisonlab.training.config import TrainConfig, default_recipe

ROOT = Path(__file__).resolve().parents[2]
DETECTION_CONFIGS = sorted((ROOT / "experiments" / "detection").glob("*.yaml"))
AIRBENCH_ON_DIGITS = {"settings": {"model": {"arch": "airbench"}}}


def _grid(**overrides) -> dict:
    return {"name": "t", "seeds": {"start": 0, "count": 1}, **overrides}


# ------------------------------------------------------------------ the default changes nothing
@pytest.mark.parametrize("path", DETECTION_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_parses_and_resolves_its_network(path):
    cfg = load_detection(path)
    recipe = cfg.recipe()
    assert recipe["arch"] == ("airbench" if "airbench" in path.name else "simple-cifar10")
    assert recipe["epochs"] == cfg.train_config(cfg.seeds.start).epochs >= 1


@pytest.mark.parametrize(
    "path", [p for p in DETECTION_CONFIGS if "airbench" not in p.name], ids=lambda p: p.name
)
def test_the_default_training_block_keeps_model_ids_and_grid_settings(path):
    cfg = load_detection(path)
    data = Dataset(
        x=np.zeros((4, 8, 8, 1), np.uint8), y=np.arange(4), class_names=tuple("abcd"), source="s", name="s"
    )
    for seed in cfg.seeds.values[:2]:
        # what train_config was before the block existed: the dataset's recipe, epochs, seed
        update = {"seed": seed} | ({} if cfg.epochs is None else {"epochs": cfg.epochs})
        before = TrainConfig.model_validate({**default_recipe(cfg.dataset.name).model_dump(), **update})
        now = cfg.train_config(seed)
        assert now.model_dump(mode="json") == before.model_dump(mode="json")
        assert baseline_key(data, now) == baseline_key(data, before)  # the cached models' ids
    settings = cfg.grid_settings()
    expected = cfg.model_dump(mode="json", exclude={"base_dir", "device", "description", "training"})
    expected["dataset"].pop("data_dir")
    assert "training" not in settings and settings == expected  # old output folders still resume
    assert [c.id for c in grid(cfg)][0] == f"s{cfg.seeds.start}-control"


def test_epochs_overrides_the_recipe_and_a_named_recipe_is_part_of_the_grid():
    plain = parse_detection(_grid(dataset={"name": "cifar10"}))
    air = parse_detection(_grid(dataset={"name": "cifar10"}, training={"preset": "airbench"}))
    short = parse_detection(_grid(dataset={"name": "cifar10"}, training={"preset": "airbench"}, epochs=2))
    assert air.train_config(0).epochs == 10 and short.train_config(0).epochs == 2
    assert short.train_config(5).model.arch == "airbench" and short.train_config(5).seed == 5
    assert short.recipe() == {"arch": "airbench", "recipe": "preset airbench", "epochs": 2}
    assert plain.recipe() == {"arch": "simple-cifar10", "recipe": "the cifar10 default recipe", "epochs": 12}
    # a resumed run with another recipe is refused: the settings differ in "training"
    assert air.grid_settings()["training"]["resolved"]["model"]["arch"] == "airbench"
    assert air.grid_settings() != short.grid_settings() != plain.grid_settings()
    assert [c.id for c in grid(air)] == [c.id for c in grid(plain)]  # the cells are the same cases


# --------------------------------------------------------------------- checked at load time
def test_airbench_on_the_8x8_digits_is_a_one_line_error_at_load_time(tmp_path):
    with pytest.raises(ValueError) as err:
        parse_detection(_grid(training=AIRBENCH_ON_DIGITS), origin="digits.yaml")
    message = str(err.value)
    assert message == (
        "invalid detection config digits.yaml: training: "
        "airbench needs images of at least 16x16 pixels, got 8x8"
    )
    path = tmp_path / "digits-airbench.yaml"
    path.write_text(json.dumps(_grid(training={"preset": "airbench"})), encoding="utf-8")
    result = CliRunner().invoke(app, ["bench", "detection", str(path), "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "airbench needs images of at least 16x16 pixels" in result.output
    assert not (tmp_path / "out").exists()  # nothing ran


@pytest.mark.parametrize(
    "training,message",
    [
        ({"preset": "nope"}, "unknown preset 'nope'"),
        ({"settings": {"model": {"arch": "vgg"}}}, "invalid training setting model.arch"),
        ({"settings": {"batch_size": 0}}, "invalid training setting batch_size"),
    ],
)
def test_bad_training_blocks_are_value_errors(training, message):
    with pytest.raises(ValueError, match=message):
        parse_detection(_grid(training=training))


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        ({"start": 99999999999999999999, "count": 1}, r"seeds\.start: Input should be less than or equal to"),
        ({"start": 2**32 - 1, "count": 2}, r"the last seed, 4294967296, is above 4294967295"),
    ],
)
def test_seeds_out_of_range_are_one_line_at_load_time(seeds, message):
    with pytest.raises(ValueError, match=message) as err:
        parse_detection(_grid(seeds=seeds), origin="d.yaml")
    assert "\n" not in str(err.value)


def test_a_missing_training_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        parse_detection(_grid(training={"file": "missing.yaml"}, base_dir=str(tmp_path)))


def test_train_with_arch_airbench_on_digits_is_a_one_line_error(tmp_path):
    args = [
        "train",
        "--dataset",
        "digits",
        "--arch",
        "airbench",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "m"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        "error: airbench needs images of at least 16x16 pixels, got 8x8"
    ]


@pytest.mark.parametrize("name", ["rutan-retrain", "cyan-square-add", "art-pattern"])
def test_chapter_configs_accept_the_airbench_preset(name):
    data = read_config_mapping(ROOT / "experiments" / "chapter" / f"{name}.yaml")
    cfg = parse_experiment({**data, "training": {"preset": "airbench"}}, origin=f"{name}-airbench")
    assert cfg.clean_train_config().model.arch == "airbench"
    if cfg.integration == "retrain":  # a fine-tune continues the clean (airbench) model instead
        assert cfg.poison_train_config(0).model.arch == "airbench"


# ---------------------------------------------------------------------- a grid with airbench
def _synthetic_splits(side: int = 16, classes: int = 4) -> Splits:
    """Class-coloured noise of CIFAR-10's kind (RGB uint8), 30/10/10 images per class."""
    rng = np.random.default_rng(0)
    means = rng.integers(40, 216, size=(classes, 1, 1, 3))
    names = tuple(f"c{i}" for i in range(classes))

    def split(per_class: int, name: str) -> Dataset:
        y = np.tile(np.arange(classes), per_class)
        x = np.clip(means[y] + rng.normal(0, 30, size=(len(y), side, side, 3)), 0, 255).astype(np.uint8)
        return Dataset(x=x, y=y, class_names=names, source="synthetic", name=f"synth-{name}")

    return Splits(train=split(30, "train"), val=split(10, "val"), test=split(10, "test"))


class _PicklingExecutor(LocalExecutor):
    """Runs every cell on a pickled copy of its arguments, as a Ray task receives them."""

    def _attempts(self, task):
        return super()._attempts(dataclasses.replace(task, args=pickle.loads(pickle.dumps(task.args))))


def test_a_detection_grid_runs_end_to_end_with_airbench(tmp_path, monkeypatch):
    tiny = {"batch_size": 32, "model": {"widths": [8, 8, 8]}}
    cfg = parse_detection(
        _grid(
            dataset={"name": "cifar10"},
            rates=[0.1],
            families=["patch", "clean_label_pgd"],
            targets=["all_to_one"],
            training={"preset": "airbench", "settings": tiny},
            epochs=1,
            detectors=["spectral_signatures", "confident_learning"],
            device="cpu",
        )
    )
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    monkeypatch.setattr(detection_run, "load_splits", lambda *a, **k: _synthetic_splits())
    out = tmp_path / "out"
    records = detection_run.run_detection(cfg, out, executor=_PicklingExecutor(retries=0))
    assert [r["cell"] for r in records] == [
        "s0-control",
        "s0-patch-all_to_one-0.1",
        "s0-clean_label_pgd-all_to_one-0.1",
    ]
    recipe = 'preset airbench with {"batch_size": 32, "model": {"widths": [8, 8, 8]}}'
    for r in records:
        assert {k: r["model"][k] for k in ("arch", "recipe", "epochs")} == {
            "arch": "airbench",
            "recipe": recipe,
            "epochs": 1,
        }
        assert 0 <= r["model"]["clean_accuracy"] <= 1 and set(r["detectors"]) == set(cfg.detectors)
    assert records[2]["attack"]["poisoned"] == 12  # PGD crafted on the airbench clean model
    header = json.loads((out / "run.json").read_text())
    assert header["training"] == {"arch": "airbench", "recipe": recipe, "epochs": 1}
    assert header["grid"]["training"]["preset"] == "airbench"
    report = write_report(out).read_text()
    assert f"Models: airbench, trained from scratch with {recipe}; epochs: 1." in report
    try:  # the seed's clean model, loaded back from the store: an airbench network
        ctx = detection_run._seed_context(cfg, 0, None, False)
        assert isinstance(ctx.clean_model, AirbenchNet) and ctx.clean["cached"]
    finally:
        detection_run._CONTEXTS.clear()
        detection_run._SPLITS.clear()


def test_a_report_of_an_older_run_names_the_default_network(tmp_path):
    header = {
        "name": "old",
        "split": "dev",
        "seeds": [0],
        "config": {"dataset": {"name": "digits"}, "epochs": None, "detectors": None},
        "planned": ["s0-control"],
        "sessions": [{"commit": "abc", "versions": {"torch": "x"}}],
        "grid": {},
    }
    (tmp_path / "run.json").write_text(json.dumps(header), encoding="utf-8")
    report = write_report(tmp_path).read_text()
    assert (
        "Models: simple-cifar10, trained from scratch with the digits default recipe; epochs: the " in report
    )
