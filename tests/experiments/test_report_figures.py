"""What the experiment, demo and matrix reports say: clean accuracy beside ASR (marked at chance),
the accuracy change in words, the triggered-set confusion matrix, run.json and no overwrite."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from poisonlab import metrics
from poisonlab.data.dataset import Dataset, Splits
from poisonlab.defenses.scan import scan
from poisonlab.experiments import parse_experiment, run_experiment, write_experiment
from poisonlab.experiments.common.measure import triggered_test
from poisonlab.experiments.single.demo import DemoResult
from poisonlab.experiments.single.demo_report import summary_rows, write_demo
from poisonlab.experiments.single.report import metric_rows, write_report
from poisonlab.inference import forward_pass
from poisonlab.models.checkpoint import load_model
from poisonlab.reporting.success import accuracy_change

CLASSES = ("red", "green", "blue")
_COLOURS = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220]])


def _colours(per_class: int, seed: int, name: str) -> Dataset:
    rng = np.random.default_rng(seed)
    y = np.tile(np.arange(3), per_class)
    x = _COLOURS[y][:, None, None, :] + rng.integers(-25, 26, size=(len(y), 8, 8, 3))
    return Dataset(x=np.clip(x, 0, 255).astype(np.uint8), y=y, class_names=CLASSES, name=name)


CONFIG = {
    "name": "tiny-report",
    "training": {"settings": {"epochs": 3, "batch_size": 16, "lr": 0.05, "augment": None}},
    "finetune": {"preset": "chapter-finetune", "settings": {"epochs": 2, "batch_size": 16}},
    "attack": {
        "kind": "backdoor",
        "trigger": "cyan_square_replace",
        "trigger_params": {"size": 2},
        "source": "red",
        "target": "green",
    },
    "integration": "retrain",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny backdoor run (trained once for the module) and its models' folder."""
    splits = Splits(
        train=_colours(20, 0, "colours-train"),
        val=_colours(6, 1, "colours-val"),
        test=_colours(10, 2, "c-test"),
    )
    out = tmp_path_factory.mktemp("runs") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POISONLAB_HOME", str(tmp_path_factory.mktemp("home")))
        result = run_experiment(parse_experiment(CONFIG), out, device="cpu", progress=False, splits=splits)
    return result, out


def _with_seeds(result, *measures: tuple[int, float, float]):
    """A copy of ``result`` whose seeds' models have the given (seed, clean accuracy, ASR)."""
    first = result.runs[0]
    copy_ = copy.copy(result)
    copy_.runs = [
        dataclasses.replace(
            first,
            seed=seed,
            measurement=dataclasses.replace(first.measurement, clean_accuracy=acc, attack_success_rate=asr),
        )
        for seed, acc, asr in measures
    ]
    return copy_


def _collapsed(result):
    """The result as if the poisoned model had collapsed to chance (3 classes: 1/3)."""
    return _with_seeds(result, (0, 0.30, 1.0))


def test_the_triggered_confusion_matrix_is_measured(run):
    result, out = run
    m = result.runs[0].measurement
    model, _ = load_model(out / "models" / "seed-0")
    triggered = triggered_test(result.splits.test, result.targets)
    pred = forward_pass(model, triggered.x, device="cpu").predictions
    np.testing.assert_array_equal(m.triggered_confusion, metrics.confusion_matrix(triggered.y, pred, 3))
    assert m.triggered_confusion[result.targets.target].sum() == 0  # no triggered target images
    assert m.triggered_confusion.sum() == len(triggered) == 20
    assert result.clean.triggered_confusion is not None


def test_the_report_shows_the_triggered_confusion_matrices(run, tmp_path):
    result, _ = run
    md, _ = write_report(result, tmp_path)
    text = md.read_text()
    assert "## Confusion matrices on the triggered test set" in text
    for name in ("confusion_triggered_clean.png", "confusion_triggered_poisoned.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
        assert f"({name})" in text
    assert "target class (green) is left out" in text


def test_the_accuracy_change_says_which_way(run):
    result, _ = run
    rows = metric_rows(result)
    clean, poisoned = result.clean.clean_accuracy, result.runs[0].measurement.clean_accuracy
    assert rows[-1] == ["stealth (cost of the attack)", "", accuracy_change(clean, poisoned)]
    assert re.fullmatch(r"clean accuracy \d\.\d{3} -> \d\.\d{3} \([-+±]\d+\.\d points\)", rows[-1][2])
    assert not any("accuracy drop" in r[0] for r in rows)


def test_clean_accuracy_sits_beside_the_asr(run):
    labels = [r[0] for r in metric_rows(run[0])]
    assert labels.index("attack success rate") == labels.index("clean test accuracy") + 1


def test_an_asr_of_a_collapsed_model_is_marked_not_meaningful(run, tmp_path):
    result, _ = run
    assert "not meaningful" not in " ".join(sum(metric_rows(result), []))  # a working model: no mark
    broken = _collapsed(result)
    asr_row = next(r for r in metric_rows(broken) if r[0] == "attack success rate")
    assert asr_row[2] == "1.0000 (not meaningful: clean accuracy 0.3000 is at chance)"
    md, page = write_report(broken, tmp_path)
    assert "1/3 = 0.33" in md.read_text() and "not meaningful" in page.read_text()


def test_over_several_seeds_the_mark_counts_the_collapsed_ones(run):
    two = _with_seeds(run[0], (0, 0.9, 1.0), (1, 0.2, 1.0))
    asr_row = next(r for r in metric_rows(two) if r[0] == "attack success rate")
    assert asr_row[2].endswith("(not meaningful in 1 of 2 seeds: clean accuracy at chance)")


def test_write_experiment_records_run_json_and_refuses_to_overwrite(run, tmp_path):
    result, _ = run
    out = tmp_path / "exp"
    write_experiment(result, out)
    record = json.loads((out / "run.json").read_text())
    assert record["kind"] == "experiment" and record["experiment"] == "tiny-report"
    assert record["config"]["attack"]["source"] == "red"
    assert record["models"] == {"0": result.runs[0].model_id}
    assert record["train_hash"] == result.splits.train.content_hash
    with pytest.raises(FileExistsError, match="already holds run"):
        write_experiment(result, out)
    write_experiment(result, out, overwrite=True)
    assert json.loads((out / "run.json").read_text())["run_id"] != record["run_id"]


def test_the_demo_summary_marks_a_collapsed_models_asr(run, tmp_path):
    result, _ = run
    good, bad = summary_rows([result, _collapsed(result)])
    assert "not meaningful" not in good[3]
    assert bad[2] == "0.3000" and bad[3] == "1.0000 (not meaningful)"  # beside its clean accuracy
    scanned = scan(result.runs[0].poison.dataset, [("duplicates", {})], device="cpu")
    demo = DemoResult(dataset="colours", results=[_collapsed(result)], scan=scanned)
    summary = write_demo(demo, tmp_path / "demo")
    assert "1/3 = 0.33" in (tmp_path / "demo" / "summary.md").read_text() and summary.is_file()
    record = json.loads((tmp_path / "demo" / "run.json").read_text())
    assert record["kind"] == "demo" and list(record["config"]) == ["tiny-report"]
    with pytest.raises(FileExistsError):
        write_demo(demo, tmp_path / "demo")
    assert write_demo(demo, tmp_path / "demo", overwrite=True) == summary


def test_the_scan_report_has_a_table_of_contents(run, tmp_path):
    from poisonlab.defenses.scan.report import write_scan_report

    data = run[0].runs[0].poison.dataset
    scanned = scan(data, [("duplicates", {}), ("label_drift", {})], trusted=run[0].splits.val, device="cpu")
    paths = write_scan_report(scanned, tmp_path)
    page = Path(paths["report_html"]).read_text()
    nav = re.search(r"<nav class='toc' id='contents'>(.*?)</nav>", page).group(1)
    targets = re.findall(r"href='#([^']+)'", nav)
    assert targets[0] == "summary" and {"duplicates", "label_drift"} <= set(targets)
    assert all(page.count(f" id='{t}'") == 1 for t in targets)


def test_experiment_records_have_short_reprs(run):
    result, _ = run
    for value, start in (
        (
            result,
            "ExperimentResult(experiment='tiny-report', attack='backdoor[cyan_square_replace]: 20 red->green",
        ),
        (result.runs[0], f"SeedRun(seed=0, model_id='{result.runs[0].model_id}', num_poison=20"),
        (result.clean, "ModelMeasurement(clean_accuracy="),
    ):
        text = repr(value)
        assert text.startswith(start) and "\n" not in text and len(text) < 300, text
