"""Detection benchmark: the grid's mechanics (cases, masks, counts, labels) and the CLI end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from poisonlab.attacks.all_to_all import AllToAllBackdoor
from poisonlab.cli.bench_cmd import bench_app
from poisonlab.data.catalog import load_splits
from poisonlab.experiments.detection import Cell, grid, make_case, parse_detection, tpr_at_fpr
from poisonlab.experiments.detection.cases import draw_params, poison_count
from poisonlab.experiments.detection.config import FAMILIES, AttackSettings

SETTINGS = AttackSettings()
RATES = (0.005, 0.01, 0.05, 0.1)
NO_MODEL = [f for f in FAMILIES if f != "clean_label_pgd"]


@pytest.fixture(scope="module")
def digits():
    return load_splits("digits")


def _cells(seed: int = 0, rate: float = 0.05) -> list[Cell]:
    cfg = parse_detection(
        {"name": "t", "seeds": {"start": seed, "count": 1}, "rates": [rate], "families": NO_MODEL}
    )
    return [c for c in grid(cfg) if c.family != "control"]


# ------------------------------------------------------------------------------------- the grid
def test_grid_covers_families_targets_rates_and_controls():
    cfg = parse_detection({"name": "t", "seeds": {"start": 1000, "count": 2}})
    cells = grid(cfg)
    assert cfg.seeds.split == "held-out"
    assert len(cells) == 2 * (
        1 + 4 * 2 * 4 + 2 * 4 + 2 * 4
    )  # control, trigger x 2 targets, 4 one-mode families
    assert len({c.id for c in cells}) == len(cells)
    assert {c.target for c in cells if c.family == "sig"} == {"all_to_one"}
    assert {c.target for c in cells if c.family == "warp"} == {"all_to_one", "all_to_all"}
    assert [c.id for c in cells[:2]] == ["s1000-control", "s1000-patch-all_to_one-0.005"]


def test_case_draws_are_deterministic_per_seed(digits):
    for cell in _cells(seed=3):
        assert draw_params(cell, digits.train, SETTINGS) == draw_params(cell, digits.train, SETTINGS)
    a, b = (draw_params(Cell(s, "patch", "all_to_one", 0.05), digits.train, SETTINGS) for s in (3, 4))
    assert a != b
    # all rates of one (seed, family, target) share the trigger and the target; the selection differs
    low, high = (
        draw_params(Cell(3, "watermark", "all_to_one", r), digits.train, SETTINGS) for r in (0.01, 0.1)
    )
    assert low["trigger"] == high["trigger"] and low["target"] == high["target"]
    assert low["selection_seed"] != high["selection_seed"]


def test_patch_cases_follow_the_settings(digits):
    sides = set()
    for seed in range(40):
        p = draw_params(Cell(seed, "patch", "all_to_one", 0.01), digits.train, SETTINGS)["trigger"]
        sides.add(p["size"])
        assert 0 <= p["top"] <= 8 - p["size"] and 0 <= p["left"] <= 8 - p["size"]
        assert np.asarray(p["pixels"]).shape == (p["size"], p["size"], 1)
    assert sides == {2, 3, 4, 5}
    alphas = [
        draw_params(Cell(s, "blended", "all_to_one", 0.01), digits.train, SETTINGS)["trigger"]["alpha"]
        for s in range(20)
    ]
    assert min(alphas) >= 0.05 and max(alphas) <= 0.2


@pytest.mark.parametrize("cell", _cells(), ids=lambda c: c.id)
def test_poison_mask_matches_the_poisoned_samples(digits, cell):
    train = digits.train
    case = make_case(cell, train, SETTINGS)
    result = case.attack.poison(train)
    data = result.dataset
    assert len(data) == len(train)  # every attack of the grid replaces in place
    mask = data.poison_mask
    np.testing.assert_array_equal(np.flatnonzero(mask), sorted(result.poison_indices))
    changed = np.any(data.x != train.x, axis=(1, 2, 3)) | (data.y != train.y)
    assert not changed[~mask].any()  # nothing outside the mask was touched
    assert mask.sum() == case.requested == result.num_poison
    if cell.family in ("label_flip", "random_flip"):
        np.testing.assert_array_equal(changed, mask)  # every flipped label is marked
    if cell.family == "sig":  # clean-label: target-class images, labels kept
        assert (data.y[mask] == case.params["target"]).all() and (data.y == train.y).all()
    if cell.target == "all_to_one" and cell.family != "sig":
        assert (data.y[mask] == case.params["target"]).all() and (
            train.y[mask] != case.params["target"]
        ).all()


@pytest.mark.parametrize("family", ["patch", "warp"])
def test_all_to_all_labels_are_the_next_class(digits, family):
    train = digits.train
    case = make_case(Cell(2, family, "all_to_all", 0.1), train, SETTINGS)
    data = case.attack.poison(train).dataset
    mask = data.poison_mask
    np.testing.assert_array_equal(data.y[mask], (train.y[mask] + 1) % 10)
    assert len(np.unique(train.y[mask])) == 10  # every class is a source
    images, wanted = case.success_inputs(digits.test)
    assert len(images) == len(digits.test)
    np.testing.assert_array_equal(wanted, (digits.test.y + 1) % 10)


def test_all_to_all_attack_checks_its_shift(digits):
    attack = AllToAllBackdoor(perturbation=lambda x: x, shift=10, count=3)
    with pytest.raises(ValueError, match="shift must be < the number of classes"):
        attack.poison(digits.train)


@pytest.mark.parametrize("rate", RATES)
def test_rates_give_the_right_poison_counts(digits, rate):
    train = digits.train
    n = len(train)
    for cell in _cells(seed=1, rate=rate):
        case = make_case(cell, train, SETTINGS)
        got = case.attack.poison(train).num_poison
        if cell.family == "label_flip":
            expected = poison_count(rate, int(np.sum(train.y == case.params["source"])))
        elif cell.family == "sig":
            expected = min(poison_count(rate, n), int(np.sum(train.y == case.params["target"])))
        else:
            expected = int(np.floor(rate * n + 0.5))
        assert got == expected, cell.id
    assert poison_count(0.005, 1167) == 6 and poison_count(0.1, 1167) == 117


# ------------------------------------------------------------------------------------- the figures
def test_tpr_at_fpr_counts_clean_samples_above_the_threshold():
    mask = np.array([False] * 200 + [True] * 4)
    scores = np.concatenate([np.arange(200.0), [250.0, 199.5, 198.5, 10.0]])
    # 1% of 200 clean = 2 may pass: threshold = third-highest clean score (197) -> 3 of 4 poison above
    assert tpr_at_fpr(mask, scores) == 0.75
    assert tpr_at_fpr(mask, scores, max_fpr=0.0) == 0.5  # only above every clean score (199)
    assert tpr_at_fpr(np.zeros(5, bool), np.arange(5.0)) is None
    assert tpr_at_fpr(mask, np.full(204, 3.0)) == 0.0  # ties at the threshold are not flagged


# --------------------------------------------------------------------------------------- the CLI
def _config(tmp_path: Path, **overrides) -> Path:
    cfg = {
        "name": "tiny-detection",
        "dataset": {"name": "digits"},
        "seeds": {"start": 0, "count": 1},
        "rates": [0.05],
        "families": ["patch", "label_flip"],
        "targets": ["all_to_one"],
        "epochs": 2,
        "detectors": ["spectral_signatures", "confident_learning"],
        "device": "cpu",
        **overrides,
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


REQUIRED = {"cell", "seed", "family", "target", "rate", "split", "case", "attack", "model", "detectors"}
FIGURES = {"tpr_at_1fpr", "auroc", "precision", "recall", "fpr", "seconds", "params", "flagged"}


def test_cli_runs_records_and_resumes(tmp_path: Path):
    config, out = _config(tmp_path), tmp_path / "out"
    runner = CliRunner()
    first = runner.invoke(bench_app, ["detection", str(config), "--out", str(out), "-q", "--threads", "1"])
    assert first.exit_code == 0, first.output
    assert {p.name for p in out.iterdir()} == {"run.json", "cells.jsonl", "report.md", "scores"}
    header = json.loads((out / "run.json").read_text())
    assert header["split"] == "dev" and header["seeds"] == [0]
    assert header["config"]["rates"] == [0.05] and header["config"]["epochs"] == 2
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", header["sessions"][0]["commit"])
    assert header["sessions"][0]["versions"]["numpy"] == np.__version__
    lines = (out / "cells.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert (
        [r["cell"] for r in records]
        == header["planned"]
        == [
            "s0-control",
            "s0-patch-all_to_one-0.05",
            "s0-label_flip-one_to_one-0.05",
        ]
    )
    for r in records:
        assert set(r) >= REQUIRED and r["commit"] == header["sessions"][0]["commit"]
        assert set(r["detectors"]) == {"spectral_signatures", "confident_learning"}
        assert all(set(d) >= FIGURES for d in r["detectors"].values())
        assert set(r["screen"]) >= FIGURES and r["screen"]["params"]["min_votes"] == 2
        assert 0 <= r["model"]["clean_accuracy"] <= 1 and r["scan"]["seconds"] > 0
        assert (out / "scores" / f"{r['cell']}.npz").is_file()
    assert (
        records[0]["model"]["attack_success"] is None
        and records[0]["detectors"]["confident_learning"]["recall"] is None
    )
    assert records[1]["attack"]["poisoned"] == 58 and 0 <= records[1]["model"]["attack_success"] <= 1
    report = (out / "report.md").read_text()
    assert "development grid" in report and "| patch | all_to_one | 5% | 1 |" in report

    # a rerun skips every finished cell; a cell whose line is lost is run again, alone
    (out / "cells.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:40], encoding="utf-8")
    again = runner.invoke(bench_app, ["detection", str(config), "--out", str(out), "-q"])
    assert again.exit_code == 0, again.output
    rerun = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]  # cut line gone
    assert [r["cell"] for r in rerun] == [r["cell"] for r in records]
    assert rerun[:2] == records[:2] and rerun[2]["session"] == 1
    assert len(json.loads((out / "run.json").read_text())["sessions"]) == 2


def test_cli_refuses_another_grid_in_the_same_folder(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    header = {"grid": {"rates": [0.1]}, "sessions": []}
    (out / "run.json").write_text(json.dumps(header), encoding="utf-8")
    result = CliRunner().invoke(bench_app, ["detection", str(_config(tmp_path)), "--out", str(out), "-q"])
    assert result.exit_code == 2
    assert "holds results of another grid" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"colour": "red"}, r"colour: Extra inputs are not permitted"),
        ({"seeds": {"start": 990, "count": 20}}, r"mix the development grid"),
        ({"detectors": ["nope"]}, r"unknown detector\(s\) \['nope'\]"),
        ({"rates": [0.7]}, r"rates must be in \(0, 0.5\]"),
        ({"attacks": {"warp": {"grid": 4, "k": 3}}}, r"attacks.warp.k: Extra inputs are not permitted"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, overrides, message):
    result = CliRunner().invoke(
        bench_app, ["detection", str(_config(tmp_path, **overrides)), "--out", str(tmp_path / "o"), "-q"]
    )
    assert result.exit_code == 2
    assert re.search(message, result.output) and "Traceback" not in result.output
    assert result.output.startswith("error: invalid detection config") and result.output.count("\n") == 1
    assert not (tmp_path / "o").exists()
