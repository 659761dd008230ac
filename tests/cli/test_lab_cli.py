"""``poisonlab train|evaluate|predict|models`` through Typer's CliRunner on the offline digits data.

Expected failures must be one ``error: ...`` line on stderr with exit code 2 and no traceback.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import TRAIN_1, assert_cli_error, flat
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

import poisonlab
from poisonlab.cli.main import app
from poisonlab.models.checkpoint import WEIGHTS_FILE, read_card
from poisonlab.models.store import ModelStore

runner = CliRunner()


# ------------------------------------------------------------------------------------------ basics
def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"poisonlab {poisonlab.__version__}"


def test_no_arguments_shows_help():
    result = runner.invoke(app, [])
    assert "Usage" in result.output
    assert "train" in result.output and "evaluate" in result.output


# ------------------------------------------------------------------------------------------ train
def test_train_writes_and_registers_a_model(tmp_path, poisonlab_home):
    out = tmp_path / "first"
    result = runner.invoke(app, [*TRAIN_1, "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = read_card(out)
    assert (out / WEIGHTS_FILE).is_file()
    assert card.id.startswith("simple-cifar10-") and card.name == "first"
    assert card.class_names == [str(d) for d in range(10)]
    assert card.input_shape == (8, 8, 1)
    assert card.dataset_name == "digits-train" and card.parent_id is None
    assert card.train_config["epochs"] == 1
    assert card.train_config["augment"] == {"crop_padding": 1, "flip": False}  # the digits recipe
    assert 0.0 <= card.metrics["test_accuracy"] <= 1.0 and card.metrics["epochs"] == 1
    assert f"saved {card.id} to" in flat(result.stdout)
    entry = ModelStore().get(card.id)
    assert Path(entry.path) == out.resolve() and entry.version == 1 and entry.name == "first"
    assert (poisonlab_home / "registry.sqlite").is_file()


def test_train_preset_and_overrides(tmp_path):
    out = tmp_path / "chap"
    result = runner.invoke(
        app,
        [
            *TRAIN_1,
            "--out",
            str(out),
            "--preset",
            "chapter",
            "--batch-size",
            "128",
            "--lr",
            "0.002",
            "--seed",
            "9",
            "--name",
            "custom",
        ],
    )
    assert result.exit_code == 0, result.output
    card = read_card(out)
    cfg = card.train_config
    assert (cfg["optimizer"], cfg["batch_size"], cfg["lr"], cfg["seed"], cfg["epochs"]) == (
        "adam",
        128,
        0.002,
        9,
        1,
    )
    assert cfg["augment"] is None  # the rest of the chapter preset is kept
    assert card.name == "custom"
    assert ModelStore().get("custom").id == card.id


def test_train_config_file_and_arch_override(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 3\nbatch_size: 100\naugment: null\nmodel:\n  width: 4\n", encoding="utf-8")
    out = tmp_path / "preact"
    result = runner.invoke(
        app,
        [
            "train",
            "--quiet",
            "--config",
            str(cfg),
            "--epochs",
            "1",
            "--arch",
            "preact-resnet18",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    card = read_card(out)
    assert card.arch == "preact-resnet18" and card.spec["width"] == 4
    assert card.train_config["batch_size"] == 100 and card.train_config["epochs"] == 1


def test_fine_tune_records_the_parent(tmp_path, digits_model, wide_consoles):
    parent_dir, parent = digits_model
    out = tmp_path / "child"
    result = runner.invoke(app, [*TRAIN_1, "--init", parent.id, "--out", str(out)])
    assert result.exit_code == 0, result.output
    child = read_card(out)
    assert child.parent_id == parent.id
    assert child.id != parent.id
    assert ModelStore().get(child.id).parent_id == parent.id
    assert [e.id for e in ModelStore().lineage(child.id)] == [child.id, parent.id]

    shown = runner.invoke(app, ["models", "show", child.id])
    assert shown.exit_code == 0, shown.output
    assert f"lineage: child v1 ({child.id}) <- digits-1ep v1 ({parent.id})" in flat(shown.stdout)
    # --init also takes a folder
    by_path = runner.invoke(app, [*TRAIN_1, "--init", str(parent_dir), "--out", str(tmp_path / "child2")])
    assert by_path.exit_code == 0, by_path.output
    assert read_card(tmp_path / "child2").parent_id == parent.id


def test_the_same_name_gets_a_new_version(tmp_path):
    for seed in ("1", "2"):
        result = runner.invoke(
            app, [*TRAIN_1, "--out", str(tmp_path / seed), "--name", "exp", "--seed", seed]
        )
        assert result.exit_code == 0, result.output
    assert ModelStore().get("exp:2").id == read_card(tmp_path / "2").id
    assert ModelStore().get("exp:1").id == read_card(tmp_path / "1").id


def test_train_with_the_progress_bar(tmp_path):
    result = runner.invoke(
        app, ["train", "--dataset", "digits", "--epochs", "2", "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 0, repr(result.exception)
    assert "epoch 2/2" in result.stderr


# ------------------------------------------------------------------------------------------ models
def test_models_list_empty(poisonlab_home):
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0
    assert "no models registered yet" in result.stdout


def test_models_list_shows_registered_models(digits_model, wide_consoles):
    _, card = digits_model
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if card.id in line)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells[:5] == [card.id, "digits-1ep", "1", "simple-cifar10", "-"]
    assert cells[5] == f"{card.metrics['test_accuracy']:.4f}"


def test_models_list_shows_full_ids_at_80_columns(digits_model, monkeypatch):
    _, card = digits_model
    monkeypatch.setattr("poisonlab.cli.models_cmd.console", Console(width=80))
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0
    assert card.id in result.stdout


def test_models_show_prints_the_card_and_lineage(digits_model, wide_consoles):
    folder, card = digits_model
    result = runner.invoke(app, ["models", "show", card.id[:20]])
    assert result.exit_code == 0, result.output
    text = result.stdout
    start, end = text.index("{"), text.rindex("}") + 1
    assert json.loads(text[start:end]) == json.loads((folder / "model.json").read_text())
    assert f"lineage: digits-1ep v1 ({card.id})" in flat(text[end:])
    by_name = runner.invoke(app, ["models", "show", "digits-1ep:1"])
    assert by_name.exit_code == 0 and card.id in by_name.stdout


def test_models_show_unknown_is_an_error(poisonlab_home):
    assert_cli_error(runner.invoke(app, ["models", "show", "simple-cifar10-nothere"]), "no model")


def test_models_show_non_numeric_version_is_a_one_line_error(digits_model):
    assert_cli_error(runner.invoke(app, ["models", "show", "digits-1ep:latest"]))


# ------------------------------------------------------------------------------------------ evaluate
def test_evaluate_writes_the_report(tmp_path, digits_model):
    folder, card = digits_model
    out = tmp_path / "eval"
    result = runner.invoke(
        app,
        ["evaluate", str(folder), "--dataset", "digits", "--out", str(out), "--source", "3", "--target", "8"],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["dataset"] == "digits-test" and metrics["n"] == 360
    assert metrics["accuracy"] == pytest.approx(card.metrics["test_accuracy"])
    count = metrics["confusion_of_interest"]["count"]
    assert metrics["confusion_of_interest"] == {"source": "3", "target": "8", "count": count}
    assert count == metrics["confusion_matrix"][3][8]
    assert metrics["model"]["id"] == card.id
    for name in ("confusion.json", "confusion.png", "confusion_3_as_8.png", "report.md", "report.html"):
        assert (out / name).is_file(), name
    shown = flat(result.stdout)
    assert f"accuracy {metrics['accuracy']:.4f} on 360 images; 3 predicted as 8: {count}" in shown


def test_evaluate_by_registry_id_and_split(tmp_path, digits_model):
    _, card = digits_model
    out = tmp_path / "eval-val"
    result = runner.invoke(app, ["evaluate", card.id, "--split", "val", "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["dataset"] == "digits-val"
    assert "confusion_of_interest" not in metrics


# ------------------------------------------------------------------------------------------ predict
def test_predict_prints_a_class(digits_model, digit_png, wide_consoles):
    folder, card = digits_model
    result = runner.invoke(app, ["predict", str(folder), str(digit_png), "--top", "2"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if str(digit_png) in line)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells[0] == str(digit_png)
    assert cells[1] in card.class_names
    top = re.findall(r"(\d) (\d\.\d{3})", cells[2])
    assert len(top) == 2 and top[0][0] == cells[1]
    assert float(top[0][1]) >= float(top[1][1])


def test_predict_several_images_by_id(digits_model, digit_png, tmp_path, wide_consoles):
    _, card = digits_model
    other = tmp_path / "other.jpg"
    Image.new("RGB", (20, 10), (255, 255, 255)).save(other)
    result = runner.invoke(app, ["predict", card.id, str(digit_png), str(other)])
    assert result.exit_code == 0, result.output
    assert "one.png" in result.stdout and "other.jpg" in result.stdout


# ------------------------------------------------------------------------------------------ errors
def test_error_missing_model_path(tmp_path):
    line = assert_cli_error(
        runner.invoke(app, ["evaluate", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "e")])
    )
    assert "no-such-model" in line
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("command", [["train"], ["evaluate", "MODEL"], ["demo"], ["redteam"]])
def test_error_unknown_dataset_names_the_option_before_any_work(tmp_path, digits_model, command):
    """Every command with ``--dataset`` refuses an unknown name while reading its options, naming
    ``--dataset`` (demo named its config's ``dataset.name`` field, which the user never typed)."""
    args = [str(digits_model[0]) if a == "MODEL" else a for a in command]
    line = assert_cli_error(
        runner.invoke(app, [*args, "--dataset", "mnist", "--out", str(tmp_path / "m")]),
        "--dataset: unknown dataset 'mnist'; valid names: cifar10, digits",
    )
    assert "dataset.name" not in line
    assert not (tmp_path / "m").exists()


def test_dataset_option_takes_the_catalogs_spellings():
    from poisonlab.cli.options import dataset_name

    assert dataset_name("CIFAR-10") == "cifar10" and dataset_name(" digits ") == "digits"
    assert dataset_name(None) is None


def test_error_bad_split(tmp_path, digits_model):
    folder, _ = digits_model
    assert_cli_error(
        runner.invoke(app, ["evaluate", str(folder), "--split", "dev", "--out", str(tmp_path / "e")]),
        "--split must be train, val or test",
    )


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--source", "cat", "--target", "8"], "unknown class 'cat'"),
        (["--source", "3"], "both"),
        (["--source", "3", "--target", "3"], "differ"),
    ],
)
def test_error_bad_classes(tmp_path, digits_model, args, match):
    folder, _ = digits_model
    assert_cli_error(
        runner.invoke(app, ["evaluate", str(folder), "--out", str(tmp_path / "e"), *args]), match
    )


def test_error_corrupt_image(tmp_path, digits_model):
    folder, _ = digits_model
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    assert_cli_error(runner.invoke(app, ["predict", str(folder), str(bad)]), "cannot read image broken.png")
    assert_cli_error(
        runner.invoke(app, ["predict", str(folder), str(tmp_path / "missing.png")]), "no such image file"
    )


def test_error_tampered_weights(tmp_path, digits_model, digit_png):
    folder, card = digits_model
    weights = folder / WEIGHTS_FILE
    raw = bytearray(weights.read_bytes())
    raw[-10] ^= 0xFF
    weights.write_bytes(bytes(raw))
    assert_cli_error(runner.invoke(app, ["predict", str(folder), str(digit_png)]), "modified")
    assert_cli_error(runner.invoke(app, ["evaluate", card.id, "--out", str(tmp_path / "e")]), "modified")
    assert_cli_error(
        runner.invoke(app, [*TRAIN_1, "--init", card.id, "--out", str(tmp_path / "c")]), "modified"
    )


def test_error_unknown_preset(tmp_path):
    assert_cli_error(
        runner.invoke(app, [*TRAIN_1, "--preset", "turbo", "--out", str(tmp_path / "m")]),
        "unknown preset 'turbo'",
    )


def test_error_config_and_preset(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 1\n", encoding="utf-8")
    assert_cli_error(
        runner.invoke(
            app, [*TRAIN_1, "--config", str(cfg), "--preset", "fast", "--out", str(tmp_path / "m")]
        ),
        "not both",
    )


def test_error_config_with_unknown_key_exits_2(tmp_path):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("epochs: 1\nlearning_rate: 0.1\n", encoding="utf-8")
    result = runner.invoke(app, ["train", "--quiet", "--config", str(cfg), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid training config")
    assert "learning_rate" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


def test_error_config_with_unknown_key_is_one_line(tmp_path):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("epochs: 1\nlearning_rate: 0.1\n", encoding="utf-8")
    result = runner.invoke(app, ["train", "--quiet", "--config", str(cfg), "--out", str(tmp_path / "m")])
    assert_cli_error(result, "learning_rate")


@pytest.mark.parametrize(
    "argv",
    [
        TRAIN_1,
        ["evaluate", "some-model"],
        ["scan", "digits"],
        ["run", "some.yaml"],
        ["matrix", "some.yaml"],
        ["clean-label", "some.yaml"],
        ["figures", "some.yaml"],
        ["images", "prepare", "photos"],
        ["demo"],
    ],
    ids=lambda argv: argv[0] if argv[0] != "images" else "images-prepare",
)
@pytest.mark.parametrize("below", [False, True])
def test_error_a_file_where_the_output_folder_goes_is_refused_first(tmp_path, argv, below):
    # refused while the options are read: the model, config or photos named above do not exist
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me", encoding="utf-8")
    out = notes / "run" if below else notes
    result = runner.invoke(app, [*argv, "--out", str(out)])
    assert_cli_error(result, r"output folder .* cannot be made: .*notes\.txt is a file, not a folder")
    assert notes.read_text(encoding="utf-8") == "keep me"


@pytest.mark.parametrize(
    "argv", [TRAIN_1, ["run", "some.yaml"], ["matrix", "some.yaml"], ["demo"]], ids=lambda a: a[0]
)
def test_error_an_unknown_device_is_refused_while_the_options_are_read(tmp_path, argv):
    result = runner.invoke(app, [*argv, "--out", str(tmp_path / "o"), "--device", "tpu"])
    assert_cli_error(result, r"unknown device 'tpu'; expected auto, cpu, cuda or cuda:N")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("seed", ["-1", str(2**32), "99999999999999999999999"])
@pytest.mark.parametrize("argv", [TRAIN_1, ["run", "some.yaml"], ["demo"]], ids=lambda a: a[0])
def test_error_a_seed_out_of_range_is_a_usage_error_naming_the_option(tmp_path, argv, seed):
    result = runner.invoke(app, [*argv, "--out", str(tmp_path / "o"), "--seed", seed])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--seed" in result.output and "Overflow" not in result.output


def test_error_missing_config_file(tmp_path):
    assert_cli_error(
        runner.invoke(app, [*TRAIN_1, "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "m")]),
        "not found",
    )


def test_error_invalid_override(tmp_path):
    assert_cli_error(
        runner.invoke(app, [*TRAIN_1, "--arch", "vgg16", "--out", str(tmp_path / "m")]),
        "invalid training setting",
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_error_cuda_without_gpu(tmp_path, digits_model, digit_png):
    assert_cli_error(
        runner.invoke(app, [*TRAIN_1, "--device", "cuda", "--out", str(tmp_path / "m")]), "no CUDA GPU"
    )
    assert not (tmp_path / "m").exists()
    folder, _ = digits_model
    assert_cli_error(runner.invoke(app, ["predict", str(folder), str(digit_png), "--device", "cuda"]), "CUDA")


def test_error_unknown_device(tmp_path, digits_model):
    folder, _ = digits_model
    assert_cli_error(
        runner.invoke(app, ["evaluate", str(folder), "--device", "tpu", "--out", str(tmp_path / "e")]),
        "unknown device 'tpu'",
    )


def test_error_model_for_other_data(tmp_path, saved_model):
    folder, _ = saved_model  # (8, 8, 3) colour model
    assert_cli_error(
        runner.invoke(app, ["evaluate", str(folder), "--out", str(tmp_path / "e")]), "expects images"
    )


def test_predict_grey_conversion_matches_the_model_input(digits_model, tmp_path, monkeypatch):
    """predict feeds (N, 8, 8, 1) uint8 to a grey model: the luminance of the prepared RGB image."""
    folder, _ = digits_model
    img = tmp_path / "grey.png"
    Image.new("RGB", (8, 8), (200, 100, 50)).save(img)
    seen = {}
    import poisonlab.inference as inference

    real = inference.forward_pass

    def spy(model, images, **kwargs):
        seen["images"] = images
        return real(model, images, **kwargs)

    monkeypatch.setattr(inference, "forward_pass", spy)  # predict imports it when it runs
    result = runner.invoke(app, ["predict", str(folder), str(img)])
    assert result.exit_code == 0, result.output
    x = seen["images"]
    assert x.shape == (1, 8, 8, 1) and x.dtype == np.uint8
    assert int(x[0, 0, 0, 0]) == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)


# ------------------------------------------------------------------------------------------ --overwrite
def test_an_output_folder_holding_a_run_is_refused_before_training(tmp_path, monkeypatch):
    out = tmp_path / "model"
    assert runner.invoke(app, [*TRAIN_1, "--out", str(out)]).exit_code == 0
    calls = []
    with monkeypatch.context() as patch:  # (monkeypatch.undo() would also undo the isolated home)
        patch.setattr("poisonlab.data.catalog.load_splits", lambda *a, **k: calls.append(a))
        assert_cli_error(runner.invoke(app, [*TRAIN_1, "--out", str(out)]), "already holds .*--overwrite")
    assert calls == []  # refused before the data loaded
    again = runner.invoke(app, [*TRAIN_1, "--out", str(out), "--overwrite", "--seed", "1"])
    assert again.exit_code == 0, again.output
    assert read_card(out).train_config["seed"] == 1
