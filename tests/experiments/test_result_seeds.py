"""Matrix and clean-label results over several seeds, their provenance, and collapsed victims
reported apart (issue 14). Constructed records only: nothing trains."""

from __future__ import annotations

import copy
import json

import pytest

from poisonlab.experiments.clean_label import parse_clean_label
from poisonlab.experiments.clean_label.records import CleanLabelResult, pool_seeds
from poisonlab.experiments.clean_label.report import (
    COLLAPSE_MARGIN,
    collapsed,
    summarize_data,
    write_pooled_clean_label,
)
from poisonlab.experiments.matrix import parse_matrix
from poisonlab.experiments.matrix.records import AttackRow, MatrixResult, aggregate_seeds
from poisonlab.experiments.matrix.report import seed_cell, write_matrix_seeds
from poisonlab.reporting.clean_label_doc import collapsed_table, success_table
from poisonlab.reporting.stamp import PROVENANCE_KEYS

MATRIX = {
    "name": "seeds-matrix",
    "dataset": {"name": "digits"},
    "training": {"settings": {"epochs": 1}},
    "attacks": [
        {"name": "flip", "attack": {"kind": "label_flip", "source": "3", "target": "8", "fraction": 0.5}}
    ],
    "defenses": [{"name": "spectral_signatures", "params": {"eps_multiplier": 2.0}}],
    "mitigation": {"defenses": "all", "oracle": False},
}


def _matrix(seed: int, f1: float | None, success: float) -> MatrixResult:
    row = AttackRow(
        name="flip",
        description="flip",
        poison_count=20,
        train_size=1000,
        model_id="m",
        poisoned={"clean_accuracy": 0.9 + seed / 100, "attack_success": success},
        clean_model_success=0.01,
        detection={
            "spectral_signatures": {"precision": None, "recall": 0.5, "f1": f1, "fpr": 0.0, "auroc": 0.8}
        },
        mitigation={
            "spectral_signatures": {
                "clean_accuracy": 0.95,
                "attack_success": 0.1,
                "removed": 5,
                "poison_left": 2,
            }
        },
    )
    cfg = parse_matrix({**MATRIX, "seed": seed})
    return MatrixResult(config=cfg, rows=[row], clean={"model_id": "c", "clean_accuracy": 0.96}, seconds=1.0)


def test_matrix_json_records_commit_versions_seed_and_full_defense_parameters() -> None:
    prov = _matrix(3, 0.5, 0.6).to_json()["provenance"]
    assert set(PROVENANCE_KEYS) <= set(prov) and prov["seeds"] == [3]
    spectral = prov["parameters"]["defenses"]["spectral_signatures"]
    assert spectral["eps_multiplier"] == 2.0  # the config's value
    assert len(spectral) > 1  # and every default it ran with
    assert prov["parameters"]["training"]["epochs"] == 1


def test_aggregate_seeds_gives_mean_sample_std_and_t_interval() -> None:
    results = [
        json.loads(json.dumps(_matrix(s, f1, sr).to_json()))
        for s, f1, sr in ((0, 0.4, 0.6), (1, 0.6, 0.8), (2, None, 0.7))
    ]
    agg = aggregate_seeds(results)
    assert agg["seeds"] == [0, 1, 2]
    f1 = agg["rows"][0]["detection"]["spectral_signatures"]["f1"]
    assert (
        f1["defined"] == 2
        and f1["mean"] == pytest.approx(0.5)
        and f1["std"] == pytest.approx(0.1414, abs=1e-4)
    )
    assert seed_cell(f1).endswith("(2 of 3 seeds)")
    assert (f1["ci_low"], f1["ci_high"]) == (0.0, 1.0)  # 2 seeds: t(0.975, 1) = 12.7, cut to [0, 1]
    removed = agg["rows"][0]["mitigation"]["spectral_signatures"]["removed"]
    assert removed["ci_low"] == removed["ci_high"] == 5.0  # a count: never cut (and no spread here)
    success = agg["rows"][0]["poisoned"]["attack_success"]
    assert success["ci_low"] < 0.7 < success["ci_high"]
    assert seed_cell(agg["rows"][0]["detection"]["spectral_signatures"]["precision"]) == "n/a"
    with pytest.raises(ValueError, match="once"):
        aggregate_seeds([results[0], results[0]])
    other = copy.deepcopy(results[1])
    other["rows"][0]["name"] = "renamed"
    with pytest.raises(ValueError, match="differs"):
        aggregate_seeds([results[0], other])


def test_write_matrix_seeds_reports_intervals(tmp_path) -> None:
    results = [_matrix(s, 0.4 + s / 10, 0.6).to_json() for s in (0, 1)]
    paths = write_matrix_seeds(results, tmp_path)
    md = paths["report_md"].read_text()
    assert "over 2 seeds" in md and "±" in md and "Student-t" in md
    assert json.loads(paths["json"].read_text())["seeds"] == [0, 1]
    assert seed_cell({"defined": 1, "seeds": 1, "mean": 0.5, "std": None}) == "0.50 (1 seed)"


def _clean_label_data(seed: int, accuracies: list[float], successes: list[bool]) -> dict:
    config = {
        "name": "cl",
        "setting": "transfer_finetune",
        "eps": 8 / 255,
        "seed": seed,
        "attacks": [{"name": "FC", "attack": "feature_collision", "eps": None}],
    }
    trials = [
        {
            "trial": i,
            "attack": "FC",
            "kind": "feature_collision",
            "success": s,
            "control": False,
            "clean_accuracy": a,
        }
        for i, (a, s) in enumerate(zip(accuracies, successes, strict=True))
    ]
    clean = {"victim_accuracy": 0.75, "poisons": 25, "train_size": 2500}
    return {"config": config, "clean": clean, "trials": trials}


def test_collapsed_victims_are_reported_apart_not_as_failures() -> None:
    data = _clean_label_data(0, [0.74, 0.25, 0.73, 0.58], [True, False, False, True])
    assert [collapsed(data, r) for r in data["trials"]] == [False, True, False, True]
    assert 0.75 - COLLAPSE_MARGIN > 0.58
    row = summarize_data(data)[0]
    assert (row["trials"], row["counted"], row["successes"]) == (4, 2, 1)
    assert [c["clean_accuracy"] for c in row["collapsed"]] == [0.25, 0.58]
    assert row["clean_accuracy"] == pytest.approx(0.735)  # the victims that trained only
    table = success_table([data])
    assert "| 1/2 |" in table and "| 2 |" in table
    assert "0.250" in collapsed_table([data]) and "0.580" in collapsed_table([data])


def test_pool_seeds_adds_trials_and_keeps_each_seeds_clean_victim() -> None:
    a = _clean_label_data(0, [0.74, 0.70], [True, False])
    b = _clean_label_data(1, [0.60, 0.71], [False, True])
    b["clean"] = {**b["clean"], "victim_accuracy": 0.62}  # seed 1's clean victim is weaker
    pooled = pool_seeds([a, b])
    assert pooled["config"]["seeds"] == [0, 1] and "seed" not in pooled["config"]
    assert [r["seed"] for r in pooled["trials"]] == [0, 0, 1, 1]
    row = summarize_data(pooled)[0]
    assert (row["counted"], row["successes"]) == (4, 2)  # 0.60 is not a collapse against 0.62
    with pytest.raises(ValueError, match="differs"):
        pool_seeds([a, {**b, "config": {**b["config"], "setting": "scratch"}}])
    with pytest.raises(ValueError, match="once"):
        pool_seeds([a, a])


def test_pool_seeds_keeps_every_seeds_provenance() -> None:
    a = _clean_label_data(0, [0.74], [True])
    b = _clean_label_data(1, [0.70], [False])
    a["provenance"] = {"commit": "abc", "seeds": [0], "parameters": {"config": {"seed": 0}}}
    b["provenance"] = {"commit": "abd", "seeds": [1], "parameters": {"config": {"seed": 1}}}
    pooled = pool_seeds([a, b])
    assert pooled["provenance"] == {**a["provenance"], "seeds": [0, 1]}
    assert pooled["provenance_per_seed"] == {"0": a["provenance"], "1": b["provenance"]}
    del b["provenance"]  # a seed without a record: no pooled record rather than a wrong one
    assert "provenance" not in pool_seeds([a, b]) and "provenance_per_seed" not in pool_seeds([a, b])


def test_write_pooled_clean_label(tmp_path) -> None:
    a = _clean_label_data(0, [0.74, 0.70], [True, False])
    b = _clean_label_data(1, [0.20, 0.71], [False, True])
    for data in (a, b):
        data["config"]["name"] = "cl"
        for row in data["trials"]:
            row["detection"] = {}
    md = write_pooled_clean_label([a, b], tmp_path).read_text()
    assert "over seeds 0, 1" in md and "| 2/3 |" in md and "0 (seed 1)" in md
    assert json.loads((tmp_path / "results_pooled.json").read_text())["config"]["seeds"] == [0, 1]


def test_clean_label_results_json_has_provenance() -> None:
    cfg = parse_clean_label(
        {
            "name": "cl-prov",
            "dataset": {"name": "digits"},
            "setting": "transfer_linear",
            "pretrain_size": 500,
            "train_size": 300,
            "eval_size": 150,
            "trusted_size": 60,
            "budget": 0.03,
            "eps": 16 / 255,
            "trials": 1,
            "attacks": [{"name": "FC", "attack": "feature_collision"}],
            "defenses": [{"name": "spectral_signatures"}],
        }
    )
    data = CleanLabelResult(config=cfg, clean={"victim_accuracy": 0.9}).to_json()
    prov = data["provenance"]
    assert prov["seeds"] == [0] and "spectral_signatures" in prov["parameters"]["defenses"]
    assert prov["parameters"]["victim_training"]["epochs"] >= 1
