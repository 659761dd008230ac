"""Which run is which on the clean-label page: labels, prose lists, configs, budgets.

Checked on constructed records: a later run of a setting gets ``setting (config name)``, prose
names a setting once, a run's config comes from the command it recorded or a known name (an
unknown one is an error, never a guessed path), and eps 255/255 is no budget.
"""

from __future__ import annotations

import pytest

from poisonlab.reporting.clean_label_runs import (
    KNOWN_CONFIGS,
    config_path,
    label_runs,
    largest_change,
    named_settings,
    recorded_config,
    seeds_of,
    setting_label,
    unbounded,
)


def run(setting: str, name: str, **extra) -> dict:
    return {"config": {"setting": setting, "name": name, "eps": 8 / 255, "seed": 0}, "trials": [], **extra}


def test_a_later_run_of_a_setting_is_labelled_by_its_config_name() -> None:
    runs = [run("transfer_linear", "a"), run("scratch", "b"), run("transfer_linear", "fc-chapter")]
    labels = [setting_label(r) for r in label_runs(runs)]
    assert labels == ["transfer_linear", "scratch", "transfer_linear (fc-chapter)"]
    assert [setting_label(r) for r in label_runs(label_runs(runs))] == labels  # idempotent
    assert "label" not in runs[0]  # copies, the records stay as loaded


def test_labels_stay_distinct_when_a_name_repeats_too() -> None:
    runs = [run("scratch", "x"), run("scratch", "x"), run("scratch", "x")]
    labels = [setting_label(r) for r in label_runs(runs)]
    assert labels == ["scratch", "scratch (x)", "scratch (x, run 3)"]


def test_prose_names_a_setting_once_unless_only_some_of_its_runs_are_meant() -> None:
    runs = label_runs([run("transfer_linear", "a"), run("scratch", "b"), run("transfer_linear", "c")])
    assert named_settings(runs, runs) == ["`transfer_linear`", "`scratch`"]
    assert named_settings([runs[0], runs[2]], runs) == ["`transfer_linear`"]
    assert named_settings([runs[1], runs[2]], runs) == ["`scratch`", "`transfer_linear (c)`"]
    assert named_settings([runs[0]], runs) == ["`transfer_linear`"]


def test_the_config_is_the_one_the_run_recorded() -> None:
    argv = ["poisonlab", "clean-label", "/repo/experiments/x/y.yaml", "--out", "runs/y", "--quiet"]
    assert config_path(run("scratch", "y", provenance={"command": argv, "cwd": "/repo"})) == (
        "experiments/x/y.yaml"
    )
    line = "poisonlab clean-label --quiet experiments/z.yaml --out 'runs/z z'"
    assert recorded_config(run("scratch", "z", command_line=line)) == "experiments/z.yaml"
    assert (
        recorded_config(run("scratch", "z", provenance={"command": ["poisonlab", "run", "a.yaml"]})) is None
    )
    # a recorded command wins over a known name
    known = run("scratch", "feature-collision-chapter", provenance={"command": argv, "cwd": "/repo"})
    assert config_path(known) == "experiments/x/y.yaml"


def test_a_run_without_a_command_needs_a_known_name() -> None:
    assert config_path(run("transfer_linear", "feature-collision-chapter")) == (
        "experiments/chapter/feature-collision-chapter.yaml"
    )
    assert (
        config_path(run("scratch", "clean-label-scratch-cifar10"))
        == "experiments/clean_label/scratch-cifar10.yaml"
    )
    with pytest.raises(ValueError, match="'clean-label-new' recorded no command and is not a known run"):
        config_path(run("scratch", "clean-label-new"))


def test_every_known_config_is_committed() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    assert all((root / path).is_file() for path in KNOWN_CONFIGS.values())


def test_budgets_changes_and_seeds() -> None:
    assert unbounded(1.0) and not unbounded(8 / 255) and not unbounded(254 / 255)
    rows = [
        {"attack": "FC", "craft": {"max_linf": 100}},
        {"attack": "FC", "craft": {"max_linf": 177}},
        {"attack": "WB", "craft": None},
    ]
    data = run("scratch", "a", trials=rows)
    assert largest_change(data, "FC") == 177 and largest_change(data, "WB") is None
    assert seeds_of(data) == [0]
    assert seeds_of(run("scratch", "a", trials=[{"seed": 2}, {"seed": 1}, {"seed": 2}])) == [1, 2]
