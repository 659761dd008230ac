"""The matrix report: attack success beside clean accuracy, marked at chance; its run.json."""

from __future__ import annotations

import json

import numpy as np

from poisonlab.experiments.matrix import parse_matrix, write_matrix
from poisonlab.experiments.matrix.records import AttackRow, MatrixResult
from poisonlab.experiments.matrix.report import chance_mask, num_classes

CONFIG = {
    "name": "fake-matrix",
    "dataset": {"name": "digits"},
    "training": {"settings": {"epochs": 1}},
    "attacks": [
        {"name": "flip", "attack": {"kind": "label_flip", "source": "3", "target": "8", "fraction": 0.5}},
        {
            "name": "collapsed",
            "attack": {"kind": "label_flip", "source": "7", "target": "1", "fraction": 0.5},
        },
    ],
    "defenses": [{"name": "spectral_signatures"}],
    "mitigation": {"defenses": "all", "oracle": True},
}


def _row(name: str, acc: float, success: float, mitigated_acc: float) -> AttackRow:
    detection = {"spectral_signatures": {"f1": 0.5, "auroc": 0.7, "flagged": 3, "seconds": 0.1}}
    cell = {"clean_accuracy": mitigated_acc, "attack_success": 0.9, "model_id": "m", "removed": 3}
    return AttackRow(
        name=name,
        description=name,
        poison_count=20,
        train_size=1000,
        model_id=f"model-{name}",
        poisoned={"clean_accuracy": acc, "attack_success": success},
        clean_model_success=0.02,
        detection=detection,
        mitigation={"spectral_signatures": cell, "oracle": {**cell, "clean_accuracy": 0.95}},
        forward_seconds=0.2,
    )


def _result(rows: list[AttackRow]) -> MatrixResult:
    clean = {"model_id": "clean", "clean_accuracy": 0.96, "attack_success": None}
    return MatrixResult(config=parse_matrix(CONFIG), rows=rows, clean=clean, seconds=12.0)


def test_attack_success_is_marked_where_the_model_is_at_chance(tmp_path):
    result = _result([_row("flip", 0.93, 0.6, 0.92), _row("collapsed", 0.10, 1.0, 0.11)])
    assert num_classes(result) == 10
    np.testing.assert_array_equal(chance_mask(result), [[False, False, False], [True, True, False]])
    paths = write_matrix(result, tmp_path)
    md = paths["report_md"].read_text()
    lines = md.splitlines()
    flip = next(line for line in lines if line.startswith("| flip | 20 |"))
    assert flip == "| flip | 20 | 0.9300 | 0.6000 | 0.0200 |"  # clean accuracy beside success, no mark
    collapsed = next(line for line in lines if line.startswith("| collapsed | 20 |"))
    assert "1.0000 (not meaningful: clean accuracy 0.1000 is at chance)" in collapsed
    assert (
        "| collapsed | 1.000 (clean acc 0.100), not meaningful | 0.900 (clean acc 0.110), not meaningful |"
        in md
    )
    assert "| flip | 0.600 (clean acc 0.930) | 0.900 (clean acc 0.920) | 0.900 (clean acc 0.950) |" in md
    assert md.count("1/10 = 0.10") == 2  # under the attacks table and under the mitigation table


def test_no_mark_and_no_note_when_every_model_learned(tmp_path):
    md = write_matrix(_result([_row("flip", 0.93, 0.6, 0.92)]), tmp_path)["report_md"].read_text()
    assert "not meaningful" not in md


def test_run_json_keeps_its_run_id_across_the_rows_of_one_run(tmp_path):
    rows = [_row("flip", 0.93, 0.6, 0.92), _row("collapsed", 0.10, 1.0, 0.11)]
    write_matrix(_result(rows[:1]), tmp_path)
    first = json.loads((tmp_path / "run.json").read_text())
    write_matrix(_result(rows), tmp_path)  # the next row of the same run
    second = json.loads((tmp_path / "run.json").read_text())
    assert first["kind"] == "matrix" and first["config"]["name"] == "fake-matrix"
    assert (first["rows_done"], second["rows_done"]) == (1, 2)
    assert second["run_id"] == first["run_id"] and second["created_at"] == first["created_at"]
    write_matrix(_result(rows[:1]), tmp_path)  # a new run into the folder starts a new record
    assert json.loads((tmp_path / "run.json").read_text())["run_id"] != first["run_id"]


def test_a_matrix_result_repr_is_one_line():
    text = repr(_result([_row("flip", 0.93, 0.6, 0.92)]))
    expected = "MatrixResult(matrix='fake-matrix', attacks=['flip'], defenses=['spectral_signatures'], "
    assert text == expected + "seconds=12)"


def test_mitigation_columns_say_where_ground_truth_chose_the_flags() -> None:
    from poisonlab.experiments.matrix.report import mitigation_matrix

    rows = [_row("flip", 0.93, 0.6, 0.92)]
    best = MatrixResult(
        config=parse_matrix({**CONFIG, "mitigation": {"defenses": "best", "oracle": True}}),
        rows=rows,
        clean=_result(rows).clean,
        seconds=1.0,
    )
    _, cols = mitigation_matrix(best, "clean_accuracy")
    assert cols[0] == "no defense" and cols[-1] == "oracle (true poison dropped)"
    assert cols[1].startswith("spectral_signatures (oracle-picked")
    _, plain = mitigation_matrix(_result(rows), "clean_accuracy")
    assert plain[1] == "spectral_signatures"
