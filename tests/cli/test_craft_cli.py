"""``poisonlab craft``: the four crafted clean-label attacks end to end on digits, then ``scan``."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from poisonlab.cli.main import app
from poisonlab.data.arrays import load_arrays, save_arrays
from poisonlab.data.dataset import Splits
from poisonlab.models.checkpoint import save_model
from poisonlab.training import train
from poisonlab.training.config import digits_recipe

runner = CliRunner()

TARGET, SOURCE, COUNT = "3", "5", 6
#: attacks whose stored poisons stay inside the eps ball (clean_label_backdoor adds a visible trigger)
IN_BALL = ("hidden_trigger", "feature_collision", "gradient_matching")


def _error_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def digits_model(digits_splits: Splits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits CNN trained for two epochs (about a second), saved as a model folder."""
    torch.manual_seed(0)
    config = digits_recipe().model_copy(update={"epochs": 2, "seed": 0})
    model = train(digits_splits.train, config, val_data=digits_splits.val, device="cpu", progress=False).model
    folder = tmp_path_factory.mktemp("craft-model") / "digits-cnn"
    save_model(
        model.eval(),
        folder,
        class_names=digits_splits.class_names,
        dataset_name=digits_splits.train.name,
        dataset_hash=digits_splits.train.content_hash,
    )
    return folder


@pytest.fixture(scope="module")
def victim_index(digits_splits: Splits) -> int:
    """A test image that is not of the target class."""
    return int(np.flatnonzero(digits_splits.test.y != int(TARGET))[0])


def _attack_args(attack: str, victim: str) -> list[str]:
    if attack == "hidden_trigger":
        return ["--source", SOURCE, "--patch-size", "3", "--patch-offset", "0"]
    if attack == "clean_label_backdoor":
        return ["--patch-size", "3", "--patch-offset", "0"]
    return ["--victim", victim]


def _craft(attack: str, dataset: str, model: Path, out: Path, *extra: str):
    return runner.invoke(
        app,
        [
            "craft", attack, dataset, "--model", str(model), "--target", TARGET,
            "--steps", "2", "--device", "cpu", "--out", str(out), *extra,
        ],
    )  # fmt: skip


@pytest.mark.parametrize(
    "attack", ["hidden_trigger", "feature_collision", "clean_label_backdoor", "gradient_matching"]
)
def test_craft_writes_poisoned_set_report_and_grid(
    attack: str, digits_model: Path, digits_splits: Splits, victim_index: int, tmp_path: Path
) -> None:
    out = tmp_path / "craft"
    budget = ["--fraction", "0.005"] if attack == "hidden_trigger" else ["--count", str(COUNT)]
    result = _craft(
        attack, "digits:train", digits_model, out, *budget, *_attack_args(attack, f"test:{victim_index}")
    )
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    for word in ("poisons", "seconds", "peak RSS", "loss", "max Linf", "next"):
        assert word in result.output
    assert f"poisonlab scan {out / 'data.npz'} --model {digits_model}" in result.output

    clean = digits_splits.train
    data = load_arrays(out / "data.npz")
    mask = data.poison_mask
    assert mask is not None and int(mask.sum()) == COUNT  # 0.005 * 1167 rounds to 6 as well
    np.testing.assert_array_equal(data.y, clean.y)  # clean-label: no label changes
    assert data.class_names == clean.class_names
    np.testing.assert_array_equal(data.x[~mask], clean.x[~mask])
    assert (data.y[mask] == int(TARGET)).all()
    diff = np.abs(data.x.astype(np.int16) - clean.x.astype(np.int16))
    assert diff[mask].max() > 0

    doc = json.loads((out / "craft.json").read_text())
    assert doc["attack"] == attack and doc["description"]
    assert doc["poison_indices"] == np.flatnonzero(mask).tolist()
    assert doc["class_names"] == list(clean.class_names)
    assert doc["target"] == {"index": 3, "name": "3"}
    params = doc["parameters"]
    assert params["steps"] == 2 and params["eps_255"] == pytest.approx(16.0)
    assert params["model"]["path"] == str(digits_model) and params["model"]["id"]
    report = doc["report"]
    for key in ("seconds", "peak_rss_mib", "steps", "loss_initial", "loss_final", "max_linf"):
        assert key in report
    assert report["max_linf"] == int(diff[mask].max())
    if attack in IN_BALL:
        assert diff.max() <= 16
    else:  # the trigger may leave the ball, the adversarial part may not
        assert report["max_linf_adversarial"] <= 16
        assert params["trigger"] == {"kind": "htbd_patch", "size": 3, "offset": 0}
    if attack in ("feature_collision", "gradient_matching"):
        assert params["victims"]["shape"] == [1, 8, 8, 1]
        assert params["victims"]["specs"][0]["spec"] == f"test:{victim_index}"
    if attack == "hidden_trigger":
        assert doc["source"] == {"index": 5, "name": "5"} and params["fraction"] == 0.005
    with Image.open(out / "poisons.png") as img:
        assert img.format == "PNG" and img.size[0] > 100


def test_scan_runs_on_crafted_output_with_the_printed_command(
    digits_model: Path, digits_splits: Splits, tmp_path: Path
) -> None:
    """Craft on an .npz (a path DATASET) with file victims, then run the printed next command."""
    train_npz = save_arrays(digits_splits.train, tmp_path / "train.npz")
    victims_npz = save_arrays(digits_splits.test.subset([0, 1, 2]), tmp_path / "victims.npz")
    png = tmp_path / "victim.png"
    Image.fromarray(digits_splits.test.x[5, :, :, 0]).save(png)
    out = tmp_path / "craft"
    result = _craft(
        "feature_collision", str(train_npz), digits_model, out, "--count", "8",
        "--victim", f"{victims_npz}:1", "--victim", str(png), "--param", "watermark=None",
        "--param", "lr=2e-2",
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    doc = json.loads((out / "craft.json").read_text())
    assert doc["parameters"]["victims"]["shape"] == [2, 8, 8, 1]
    assert doc["parameters"]["watermark"] is None and doc["parameters"]["lr"] == 0.02

    next_line = next(line for line in result.output.splitlines() if line.startswith("next"))
    argv = shlex.split(next_line.removeprefix("next").strip())
    assert argv[:3] == ["poisonlab", "scan", str(out / "data.npz")]
    scan = runner.invoke(app, [*argv[1:], "--device", "cpu"])
    assert scan.exit_code == 0, (scan.output, scan.stderr, scan.exception)
    report = json.loads((out / "scan" / "scan.json").read_text())
    assert report["dataset"]["poison_known"]
    assert {m["name"] for m in report["methods"]} == {"spectral_signatures", "activation_clustering"}


def test_registry_trigger_and_params(digits_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "craft"
    result = _craft(
        "clean_label_backdoor", "digits", digits_model, out, "--count", "4",
        "--trigger", "pattern:distance=1", "--param", "random_start=false,step_size=0.01",
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    params = json.loads((out / "craft.json").read_text())["parameters"]
    assert params["trigger"]["name"] == "pattern" and params["trigger"]["params"]["distance"] == 1
    assert params["trigger_name"] == "pattern"
    assert params["random_start"] is False and params["step_size"] == 0.01


def test_victim_of_the_target_class_gets_a_note(
    digits_model: Path, digits_splits: Splits, tmp_path: Path
) -> None:
    same = int(np.flatnonzero(digits_splits.test.y == int(TARGET))[0])
    args = ["--count", "2", "--steps", "1", "--victim", f"test:{same}"]
    result = _craft("feature_collision", "digits", digits_model, tmp_path / "o", *args)
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    assert f"note: victim test:{same} is already labelled '3', the target class" in result.output


@pytest.mark.parametrize(
    ("attack", "args", "match"),
    [
        ("nope", ["--count", "2"], "unknown attack 'nope'; expected one of clean_label_backdoor, hidden"),
        ("backdoor", ["--count", "2"], "not a crafted attack 'backdoor'"),
        ("clean_label_backdoor", ["--count", "2", "--target", "cat"], "--target: unknown class 'cat'"),
        ("clean_label_backdoor", ["--count", "2", "--target", "12"], "--target: class index 12 out of range"),
        ("feature_collision", ["--count", "5000", "--victim", "test:1"], "cannot poison 5000 samples"),
        ("hidden_trigger", ["--fraction", "0.2", "--source", "5", "--patch-size", "3"], "cannot poison 233"),
        ("clean_label_backdoor", ["--count", "2", "--eps", "0"], "--eps must be in (0, 255]"),
        ("clean_label_backdoor", ["--count", "2", "--eps", "300"], "--eps must be in (0, 255]"),
        ("clean_label_backdoor", ["--count", "2", "--steps", "0"], "--steps must be >= 1"),
        ("clean_label_backdoor", [], "give exactly one of --count or --fraction"),
        ("clean_label_backdoor", ["--count", "2", "--fraction", "0.1"], "give exactly one of"),
        ("feature_collision", ["--count", "2", "--victim", "test:9999"], "index 9999 out of range [0, 359]"),
        ("feature_collision", ["--count", "2", "--victim", "test:x"], "the index must be an integer"),
        ("feature_collision", ["--count", "2", "--victim", "/no/such.png"], "no such file or folder"),
        ("gradient_matching", ["--count", "2"], "gradient_matching needs --victim"),
        ("hidden_trigger", ["--count", "2", "--source", "5", "--victim", "test:1"], "--victim applies to"),
        ("hidden_trigger", ["--count", "2"], "hidden_trigger needs --source"),
        ("hidden_trigger", ["--count", "2", "--source", "3", "--patch-size", "3"], "source and target must"),
        ("feature_collision", ["--count", "2", "--victim", "test:1", "--source", "5"], "--source applies to"),
        ("feature_collision", ["--count", "2", "--victim", "test:1", "--patch-size", "3"], "applies to"),
        ("clean_label_backdoor", ["--count", "2", "--trigger", "nope"], "unknown trigger 'nope'"),
        ("clean_label_backdoor", ["--count", "2", "--trigger", "pattern", "--patch-size", "3"], "not both"),
        ("clean_label_backdoor", ["--count", "2"], "--patch-size 8 --patch-offset 5: the patch does not fit"),
        ("clean_label_backdoor", ["--count", "2", "--patch-size", "9", "--patch-offset", "0"], "not fit 8x8"),
        ("clean_label_backdoor", ["--count", "2", "--patch-size", "0"], "patch_size must be an integer >= 1"),
        (
            "feature_collision",
            ["--count", "2", "--victim", "test:1", "--param", "bogus=1"],
            "unknown parameter 'bogus' for attack 'feature_collision'",
        ),
        ("gradient_matching", ["--count", "2", "--victim", "val:1", "--param", "eps=0.1"], "use --eps"),
        ("gradient_matching", ["--count", "2", "--victim", "val:1", "--param", "lr"], "key=value"),
        ("gradient_matching", ["--count", "2", "--victim", "val:1", "--param", "restarts=0"], "restarts"),
    ],
)
def test_craft_errors_are_one_line(
    attack: str, args: list[str], match: str, digits_model: Path, tmp_path: Path
) -> None:
    if "--target" not in args:
        args = [*args, "--target", TARGET]
    result = runner.invoke(
        app, ["craft", attack, "digits", "--model", str(digits_model), "--out", str(tmp_path / "o"), *args]
    )
    assert match in _error_line(result)
    assert not (tmp_path / "o" / "data.npz").exists()


def test_craft_errors_on_model_data_mismatch_and_path_victims(
    saved_model, digits_model: Path, digits_splits: Splits, tmp_path: Path
) -> None:
    colour_model, _ = saved_model  # (8, 8, 3) inputs, 3 colour classes
    base = ["--target", "1", "--count", "2", "--out", str(tmp_path / "o")]
    args = ["craft", "clean_label_backdoor", "digits", "--model", str(colour_model), *base]
    result = runner.invoke(app, args)
    assert "expects images (8, 8, 3)" in _error_line(result)

    train_npz = save_arrays(digits_splits.train, tmp_path / "train.npz")
    args = ["craft", "feature_collision", str(train_npz), "--model", str(digits_model), *base]
    result = runner.invoke(app, [*args, "--victim", "test:4"])
    assert "SPLIT:INDEX needs a named DATASET" in _error_line(result)
    rgb = tmp_path / "rgb.npz"
    np.savez(rgb, x=np.zeros((2, 8, 8, 3), np.uint8))  # label-less RGB: converted to grey, 2 images
    result = runner.invoke(app, [*args, "--victim", f"{rgb}:5"])
    assert "index 5 out of range [0, 1]" in _error_line(result)
    args = ["craft", "feature_collision", "/no/such/data.npz", "--model", str(digits_model), *base]
    result = runner.invoke(app, [*args, "--victim", "x.png"])
    assert "no/such/data.npz" in _error_line(result)
    args = ["craft", "clean_label_backdoor", "digits", "--model", "/no/such/model", *base]
    result = runner.invoke(app, args)
    assert "no/such/model" in _error_line(result)


def test_craft_help_lists_the_options() -> None:
    result = runner.invoke(app, ["craft", "--help"])
    assert result.exit_code == 0
    options = "model target source count fraction eps steps victim patch-size patch-offset trigger param seed"
    for option in [*options.split(), "device", "out", "data-dir"]:
        assert f"--{option}" in result.output
