"""``poisonlab demo`` and ``poisonlab run`` through the CLI, on reduced settings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from poisonlab.cli.main import app
from poisonlab.experiments.single.demo import DEMO_DEFENSES

runner = CliRunner()


def test_demo_on_digits_reduced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from poisonlab.experiments.single import demo

    # the second run (--overwrite) reuses the first one's result: its wiring, not a second training
    results: list = []
    overwrites: list[bool] = []
    real_run_demo = demo.run_demo

    def recording_run_demo(*args, **kwargs):
        overwrites.append(kwargs["overwrite"])
        if not results:
            results.append(real_run_demo(*args, **kwargs))
        return results[0]

    monkeypatch.setattr(demo, "run_demo", recording_run_demo)
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
    assert mislabel["config"]["integration"] == "finetune"  # injected into the training set
    # the backdoored training set is scanned by the demo's defenses, scored against the truth
    scan = json.loads((out / "scan-backdoor" / "scan.json").read_text())
    assert scan["dataset"]["poison"] == backdoor["runs"][0]["num_poison"]
    assert [m["name"] for m in scan["methods"]] == list(DEMO_DEFENSES)
    assert all(m["metrics"] is not None for m in scan["methods"])
    assert "defenses on the backdoored training set" in res.output
    # every table says what it shows, every attack gets a verdict, the screen one too
    assert res.output.count("What you are looking at") == 2
    for name in ("demo-backdoor-digits", "demo-mislabel-digits"):
        assert re.search(rf"^Verdict: {name}: (EFFECTIVE|NOT effective|NOT MEANINGFUL)", res.output, re.M)
    assert "injected images labelled '1'" in res.output
    screen = re.search(
        r"^Verdict: the default screen (CAUGHT|did NOT catch) the backdoor: .*recall", res.output, re.M
    )
    assert screen is not None and "false-positive rate" in screen.group(0)
    summary = (out / "summary.md").read_text()
    assert "Detecting the backdoor" in summary and "## Verdicts" in summary
    assert len(json.loads((out / "run.json").read_text())["verdicts"]) == 2

    # a second demo into the same folder is refused at once, one line, exit 2; --overwrite replaces it
    again = runner.invoke(app, ["demo", "--out", str(out), "--epochs", "1", "--quiet", "--device", "cpu"])
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert again.output.count("\n") == 1 and "==>" not in again.output  # nothing loaded or trained
    first = json.loads((out / "run.json").read_text())["run_id"]
    args = ["demo", "--out", str(out), "--epochs", "1", "--quiet", "--device", "cpu", "--overwrite"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert overwrites == [False, True]  # the refused run never reached the runner
    assert json.loads((out / "run.json").read_text())["run_id"] != first


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
    first = json.loads((tmp_path / "r" / "run.json").read_text())["run_id"]
    args = ["run", str(cfg), "--out", str(tmp_path / "r"), "--quiet", "--device", "cpu"]
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already holds run" in again.output and "--overwrite" in again.output
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    assert json.loads((tmp_path / "r" / "run.json").read_text())["run_id"] != first

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


def _fake_run(name: str, *, clean_acc: float, acc: float, asr: tuple[float, float] | None, spread=(0, 4)):
    """The parts of an ExperimentResult a verdict reads: classes 0-9, source 7, target 1."""
    from types import SimpleNamespace

    import numpy as np

    clean = {"clean_accuracy": clean_acc, "source_to_target": float(spread[0])}
    poisoned = {"clean_accuracy": {"mean": acc}, "source_to_target": {"mean": float(spread[1])}}
    if asr is not None:
        clean["attack_success_rate"] = asr[0]
        poisoned["attack_success_rate"] = {"mean": asr[1]}
    return SimpleNamespace(
        config=SimpleNamespace(name=name),
        splits=SimpleNamespace(
            class_names=tuple(map(str, range(10))), test=SimpleNamespace(y=np.arange(360) % 10)
        ),
        targets=SimpleNamespace(source=7, target=1),
        runs=[SimpleNamespace(measurement=SimpleNamespace(clean_accuracy=acc))],
        summary=lambda: {"clean": clean, "poisoned": poisoned},
    )


def test_attack_verdicts_say_effective_or_not_and_why() -> None:
    from poisonlab.experiments.single.demo import InjectedHits
    from poisonlab.experiments.single.demo_report import attack_verdict

    line = attack_verdict(_fake_run("bd", clean_acc=0.99, acc=0.98, asr=(0.0, 0.97)))
    assert line.startswith("bd: EFFECTIVE: 97% of triggered test '7' images are classified '1'")
    assert "clean model: 0%" in line and line.endswith("clean accuracy 0.990 -> 0.980 (-1.0 points)")
    line = attack_verdict(_fake_run("bd", clean_acc=0.99, acc=0.99, asr=(0.02, 0.1)))
    assert line.startswith("bd: NOT effective (the model did not learn the trigger): 10%")
    # a collapsed model scores ASR 1.0 without any backdoor: no verdict on its success
    line = attack_verdict(_fake_run("bd", clean_acc=0.99, acc=0.1, asr=(0.0, 1.0)))
    assert line.startswith("bd: NOT MEANINGFUL: the poisoned model is at chance level")

    run = _fake_run("ml", clean_acc=0.99, acc=0.98, asr=None)
    line = attack_verdict(run, InjectedHits(total=25, clean=0, poisoned=(22, 20)))
    assert line.startswith("ml: EFFECTIVE: 21 of 25 injected images labelled '1' are now classified '1'")
    assert "(clean model: 0 of 25), and 4 of 36 clean test '7' images with them (clean model: 0)" in line
    line = attack_verdict(run, InjectedHits(total=25, clean=0, poisoned=(2,)))
    assert line.startswith("ml: NOT effective (the fine-tune did not learn them): 2 of 25")
    assert attack_verdict(run).startswith("ml: not measured")


def _fake_scan(flagged, mask, methods=()):
    from types import SimpleNamespace

    import numpy as np

    return SimpleNamespace(
        screen=SimpleNamespace(flagged=np.array(flagged, dtype=bool)),
        dataset=SimpleNamespace(poison_mask=np.array(mask, dtype=bool)),
        methods=[SimpleNamespace(name=n, metrics={"recall": r, "auroc": a}) for n, r, a in methods],
    )


def test_the_screen_verdict_gives_recall_and_false_positive_rate() -> None:
    from poisonlab.experiments.single.demo_report import screen_verdict_line

    mask = [True] * 10 + [False] * 90
    caught = screen_verdict_line(_fake_scan([True] * 10 + [True] * 2 + [False] * 88, mask))
    assert caught.startswith("Verdict: the default screen CAUGHT the backdoor: 10 of 10 poisoned")
    assert "(recall 1.00), 2 of 90 clean samples flagged (false-positive rate 2.2%)" in caught
    # flagging everything finds all the poison but catches nothing
    noisy = screen_verdict_line(_fake_scan([True] * 100, mask))
    assert noisy.startswith("Verdict: the default screen did NOT catch the backdoor") and "100.0%" in noisy
    missed = screen_verdict_line(_fake_scan([True] * 5 + [False] * 95, mask))
    assert "did NOT catch" in missed and "recall 0.50" in missed
    assert "no verdict" in screen_verdict_line(_fake_scan([False] * 100, [False] * 100))


def test_detectors_that_flagged_no_poison_are_named_with_their_ranking() -> None:
    from poisonlab.experiments.single.demo_report import silent_detectors_line

    scan = _fake_scan([], [], [("a", 0.0, 0.3), ("b", 0.0, 0.5), ("c", 0.0, 0.96), ("found", 0.8, 0.9)])
    line = silent_detectors_line(scan)
    assert "a, b (AUROC 0.30-0.50) do not rank it high" in line
    assert (
        "c (AUROC 0.96) ranks it high, but its threshold fired on none of it" in line and "found" not in line
    )
    assert silent_detectors_line(_fake_scan([], [], [("found", 0.8, 0.9)])) is None
