"""The chapter page's note on clean models recalibrated on plain images (training revision 1)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from poisonlab.provenance import TRAINING_REVISION
from poisonlab.reporting.chapter_revision import (
    clean_model_ids,
    load_recalibration,
    revision_section,
    steps_of,
    training_revision,
)

RECORD = {
    "models": [{"model": "m0"}, {"model": "m1"}],
    "summary": {
        "as_saved": {"mean": 0.82, "n": 2},
        "augmented": {"mean": 0.845, "n": 2},
        "augmented_minus_as_saved": {"mean": 0.025, "ci_low": 0.01, "ci_high": 0.04, "n": 2},
    },
}


def _row(integration: str, clean: list[str], *, num_poison: int, size: int, epochs: int, batch: int) -> dict:
    runs = [
        {"seed": k, "clean_model": c, "num_poison": num_poison, "poison_rate": num_poison / size}
        for k, c in enumerate(clean)
    ]
    training = {str(k): {"epochs": epochs, "batch_size": batch} for k in range(len(clean))}
    return {
        "config": {"integration": integration},
        "clean_model": clean[0],
        "runs": runs,
        "provenance": {"parameters": {"poisoned_training": training}},
    }


def _runs() -> dict[str, dict]:
    return {
        "photos": _row("finetune_poison_only", ["m0", "m1"], num_poison=26, size=40026, epochs=10, batch=64),
        "backdoor": _row("finetune", ["m0", "m1"], num_poison=4000, size=44000, epochs=5, batch=128),
        "old": _row("finetune", ["x9"], num_poison=4000, size=44000, epochs=5, batch=128),
        "rerun": _row("finetune", ["y0", "y1"], num_poison=4000, size=44000, epochs=5, batch=128)
        | {"provenance": {"versions": {"training_revision": str(TRAINING_REVISION)}}},
    }


def test_steps_count_the_fine_tune_s_batches() -> None:
    runs = _runs()
    assert steps_of(runs["photos"]) == 10  # 26 photos in one batch of 64, 10 epochs
    assert steps_of(runs["backdoor"]) == 5 * 344  # ceil(44,000 / 128) = 344 batches per epoch
    assert steps_of({"config": {}, "runs": [{"seed": 0}]}) is None  # nothing recorded


def test_clean_models_per_seed_or_the_row_s_one() -> None:
    assert clean_model_ids(_runs()["photos"]) == ["m0", "m1"]
    assert clean_model_ids({"clean_model": "z", "runs": [{"seed": 0}, {"seed": 1}]}) == ["z"]


def test_the_section_names_the_rows_and_what_the_old_statistics_touch() -> None:
    text = " ".join(revision_section(_runs(), RECORD)).replace("\n", " ")
    assert "The clean models of `photos`, `backdoor` (2 models" in text
    assert "score 0.8450 against 0.8200 (+2.50 points, paired t +1.00 to +4.00 over 2 models)" in text
    assert "`backdoor` (1720 steps, <1% kept) replace the old statistics" in text
    assert "`photos` (10 steps, 90% kept) keep that share" in text
    assert f"Rows whose record names training revision {TRAINING_REVISION} (`rerun`) were run" in text
    assert "Rows with other clean models (`old`) were not re-measured." in text
    assert training_revision(_runs()["rerun"]) == TRAINING_REVISION
    assert training_revision(_runs()["old"]) is None  # made before the revision was recorded
    assert revision_section(_runs(), None) == []
    assert revision_section({"old": _runs()["old"]}, RECORD) == []  # no row on a measured model
    without_old = {k: v for k, v in _runs().items() if k != "old"}
    section = " ".join(revision_section(without_old, RECORD))
    assert "The clean models of" in section and "not re-measured" not in section  # no "(none)" line


def test_a_bad_record_is_refused_with_its_name(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        load_recalibration(tmp_path / "none.json")
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"models": []}), encoding="utf-8")
    with pytest.raises(ValueError, match="r.json: no 'summary'"):
        load_recalibration(path)
    path.write_text(json.dumps({"models": [], "summary": {"as_saved": {}}}), encoding="utf-8")
    with pytest.raises(ValueError, match="summary has no 'augmented'"):
        load_recalibration(path)
    path.write_text(json.dumps(RECORD), encoding="utf-8")
    assert load_recalibration(path)["models"][0]["model"] == "m0"


@pytest.mark.parametrize(
    ("record", "message"), [(None, "result file not found"), ({"models": []}, "no 'summary'")]
)
def test_the_page_command_reports_a_bad_record(tmp_path, capsys, record, message) -> None:
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "chapter_table_cmd", root / "benchmarks" / "chapter_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = tmp_path / "r.json"
    if record is not None:
        path.write_text(json.dumps(record), encoding="utf-8")
    out = tmp_path / "page.md"
    runs = root / "docs" / "results" / "chapter"
    assert module.main([str(runs), "--recalibration", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not out.exists()
