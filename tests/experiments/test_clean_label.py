"""Clean-label benchmark: config validation, a small digits run of every attack, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from poisonlab.cli.main import app
from poisonlab.experiments.clean_label import parse_clean_label, run_clean_label, write_clean_label
from poisonlab.experiments.clean_label.config import CRAFTED_ATTACKS
from poisonlab.experiments.clean_label.report import PUBLISHED, summarize, wilson_interval

SMALL_STEPS = {
    "hidden_trigger": {"steps": 5},
    "feature_collision": {"steps": 5},
    "clean_label_backdoor": {"steps": 3},
    "gradient_matching": {"steps": 3},
    "random_noise": {},  # the placebo: no optimisation
}


def _config(**overrides) -> dict:
    cfg = {
        "name": "cl-test",
        "dataset": {"name": "digits"},
        "setting": "transfer_linear",
        "pretrain_size": 500,
        "train_size": 300,
        "eval_size": 150,
        "trusted_size": 60,
        "budget": 0.03,
        "eps": 16 / 255,
        "trials": 2,
        "pretraining": {"preset": "digits", "settings": {"epochs": 6}},
        "victim_training": {
            "preset": "digits",
            "settings": {"epochs": 2, "lr": 0.01, "schedule": "constant"},
        },
        "attacks": [
            {
                "name": name.upper()[:4],
                "attack": name,
                "params": SMALL_STEPS[name],
                "patch": {"size": 3, "offset": 0},
            }
            for name in CRAFTED_ATTACKS
        ],
        "defenses": [{"name": "spectral_signatures"}],
        "device": "cpu",
    }
    cfg.update(overrides)
    return cfg


def test_every_attack_runs_and_every_trial_is_recorded(tmp_path: Path) -> None:
    cfg = parse_clean_label(_config())
    written = []
    run = run_clean_label(cfg, progress=False, on_row=lambda partial, row: written.append(row))
    assert written == run.trials  # every row handed over as it finished
    assert len(run.trials) == 2 * len(CRAFTED_ATTACKS)
    write_clean_label(run, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["trials"] == json.loads(json.dumps(run.trials))
    for trial in (0, 1):  # paired: every attack of a trial shares the victim and the target class
        rows = [r for r in run.trials if r["trial"] == trial]
        assert len({(r["victim_index"], r["target_class"]) for r in rows}) == 1
        assert all(r["victim_class"] != r["target_class"] for r in rows)
    for row in run.trials:
        assert isinstance(row["success"], bool) and isinstance(row["control"], bool)
        assert row["poisons"] == 9  # 3 % of 300
        assert row["craft"]["seconds"] > 0
        assert 0.0 <= row["clean_accuracy"] <= 1.0
        assert set(row["detection"]) == {"spectral_signatures"}
        if row["kind"] in ("hidden_trigger", "clean_label_backdoor"):
            assert 0.0 <= row["backdoor_rate"] <= 1.0
        if row["kind"] != "clean_label_backdoor":  # the visible trigger may exceed eps
            assert row["craft"]["max_linf"] <= 16
    report = (tmp_path / "report.md").read_text()
    assert "Schwarzschild" in report and "| attack | successes |" in report
    summary = summarize(run)
    assert [r["trials"] for r in summary] == [2] * len(CRAFTED_ATTACKS)
    assert summary[0]["published"] == PUBLISHED["transfer"].get(summary[0]["kind"])


@pytest.mark.parametrize("setting", ["transfer_finetune", "scratch"])
def test_training_settings_run(setting: str) -> None:
    extra = {"pretrain_size": None} if setting == "scratch" else {}
    cfg = parse_clean_label(
        _config(
            setting=setting,
            trials=1,
            attacks=[{"name": "FC", "attack": "feature_collision", "params": {"steps": 3}}],
            defenses=[],
            **extra,
        )
    )
    run = run_clean_label(cfg, progress=False)
    assert len(run.trials) == 1 and run.trials[0]["detection"] == {}
    assert run.clean["pretrain_size"] == (None if setting == "scratch" else 500)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"unknown": 1}, "unknown"),
        ({"pretrain_size": None}, "needs pretrain_size"),
        ({"setting": "scratch"}, "drop pretrain_size"),
        ({"budget": 0.001}, "< 1 poison"),
        ({"eps": 0}, "eps"),
        ({"trials": 0}, "trials"),
        ({"attacks": [{"name": "A", "attack": "feature_collision", "params": {"model": 1}}]}, "may not set"),
        ({"attacks": [{"name": "A", "attack": "poison_frogs"}]}, "attack"),
        ({"attacks": [{"name": "A", "attack": "feature_collision"}] * 2}, "unique"),
        ({"victim_training": {"settings": {"epochs": 0}}}, "epochs"),
    ],
)
def test_bad_configs_are_refused_before_training(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_clean_label(_config(**overrides))


def test_unknown_attack_parameter_names_the_row() -> None:
    cfg = parse_clean_label(
        _config(trials=1, attacks=[{"name": "FCX", "attack": "feature_collision", "params": {"nope": 1}}])
    )
    with pytest.raises(ValueError, match="attack FCX"):
        run_clean_label(cfg, progress=False)


def test_too_large_subsets_are_refused() -> None:
    cfg = parse_clean_label(_config(pretrain_size=5000))
    with pytest.raises(ValueError, match="exceeds"):
        run_clean_label(cfg, progress=False)


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.25 < hi < 0.35
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-3) and hi == pytest.approx(0.7634, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_cli_runs_and_errors_are_one_line(tmp_path: Path) -> None:
    config = tmp_path / "cl.yaml"
    data = _config(
        attacks=[
            {
                "name": "CLBD",
                "attack": "clean_label_backdoor",
                "params": {"steps": 2},
                "patch": {"size": 3, "offset": 0},
            }
        ],
        defenses=[],
    )
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["clean-label", str(config), "--out", str(out), "--trials", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert len(json.loads((out / "results.json").read_text())["trials"]) == 1
    log = (out / "cells.jsonl").read_text()
    record = json.loads((out / "run.json").read_text())
    assert record["kind"] == "clean-label" and record["config"]["trials"] == 1 and record["seed"] == 0
    resume = ["clean-label", str(config), "--out", str(out), "--trials", "1", "--resume", "--quiet"]
    resumed = CliRunner().invoke(app, resume)
    assert resumed.exit_code == 0, resumed.output
    again_record = json.loads((out / "run.json").read_text())
    assert again_record["run_id"] == record["run_id"] and len(again_record["resumed"]) == 1
    assert (out / "cells.jsonl").read_text() == log  # nothing left to do: the finished trial is reused
    again = CliRunner().invoke(app, ["clean-label", str(config), "--out", str(out), "--quiet"])
    assert again.exit_code == 2 and "already holds a clean-label run" in again.stderr, again.output
    both = CliRunner().invoke(app, ["clean-label", str(config), "--out", str(out), "--resume", "--overwrite"])
    assert both.exit_code == 2 and "pick one" in both.stderr
    assert (out / "cells.jsonl").read_text() == log  # the finished trial's record is kept
    missing = CliRunner().invoke(app, ["clean-label", str(tmp_path / "nope.yaml"), "--out", str(out)])
    assert missing.exit_code != 0 and "not found" in missing.output and "Traceback" not in missing.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**data, "budget": 2}))
    res = CliRunner().invoke(app, ["clean-label", str(bad), "--out", str(out)])
    assert res.exit_code != 0 and "budget" in res.output and len(res.output.strip().splitlines()) == 1


def test_the_trial_count_leaves_the_fingerprint_and_older_logs_still_resume() -> None:
    """--trials 50 --resume extends a 10-trial run: the count is not in the fingerprint, and a log
    written when it was (the committed runs) is accepted for the same config, not for another."""
    from poisonlab.experiments.clean_label.run import (
        clean_label_fingerprint,
        legacy_clean_label_fingerprints,
    )
    from poisonlab.experiments.executor import fingerprint

    cfg = parse_clean_label(_config(trials=2))
    assert clean_label_fingerprint(cfg) == clean_label_fingerprint(parse_clean_label(_config(trials=50)))
    old = cfg.model_dump(mode="json", exclude={"base_dir", "description", "device"})  # the old rule
    old["dataset"].pop("data_dir", None)
    assert fingerprint(old) in legacy_clean_label_fingerprints(parse_clean_label(_config(trials=50)))
    other = parse_clean_label(_config(trials=2, eps=8 / 255))
    assert clean_label_fingerprint(other) != clean_label_fingerprint(cfg)
    assert fingerprint(old) not in legacy_clean_label_fingerprints(other)


def test_more_trials_resume_the_first_ones_from_the_log(tmp_path: Path) -> None:
    journal = tmp_path / "cells.jsonl"
    placebo = [{"name": "RAND", "attack": "random_noise", "params": {}, "patch": {"size": 3, "offset": 0}}]
    first = run_clean_label(
        parse_clean_label(_config(trials=1, attacks=placebo)), progress=False, journal=journal
    )
    lines = journal.read_text().splitlines()
    more = run_clean_label(
        parse_clean_label(_config(trials=2, attacks=placebo)), progress=False, journal=journal
    )
    assert journal.read_text().splitlines()[: len(lines)] == lines  # trial 0 not run again
    assert len(journal.read_text().splitlines()) == len(lines) + 1  # only trial 1 appended
    assert more.trials[0] == json.loads(json.dumps(first.trials[0]))
    assert [r["trial"] for r in more.trials] == [0, 1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"params": {"steps": -4}}, r"attack CLEA: steps must be an integer >= 1, got -4"),
        ({"params": {"steps": 2, "bogus": 1}}, r"attack CLEA: unknown parameter\(s\) 'bogus'"),
        ({"patch": {"size": 50, "offset": 40}}, r"attack CLEA: patch: .*does not fit 8x8 images"),
    ],
)
def test_a_bad_attack_row_fails_before_the_surrogate_trains(monkeypatch, change, message) -> None:
    from poisonlab.experiments.clean_label import run as run_module

    data = _config()
    row = next(a for a in data["attacks"] if a["attack"] == "clean_label_backdoor")
    row.update(change)
    cfg = parse_clean_label(data)

    def no_training(*args, **kwargs):
        raise AssertionError("the surrogate was about to train")

    monkeypatch.setattr(run_module, "_prepared", no_training)
    with pytest.raises(ValueError, match=message):
        run_clean_label(cfg, progress=False)
