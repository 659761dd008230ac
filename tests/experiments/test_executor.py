"""Executors without Ray: retries, failure reports, the cell log, the store, resume, the errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from poisonlab.cli.main import app
from poisonlab.experiments.executor import (
    CellLog,
    CellTask,
    GridIncomplete,
    LocalExecutor,
    ProcessMemo,
    make_executor,
    resolve_store,
    store_home,
)
from poisonlab.experiments.matrix import parse_matrix, run_matrix
from poisonlab.experiments.matrix import run as matrix_run

#: two attack rows on a 400-image digits subsample, two epochs, one defense, the oracle retrain
SMALL = {
    "name": "executor-matrix",
    "dataset": {"name": "digits"},
    "training": {"settings": {"epochs": 2}},
    "train_size": 400,
    "trusted_size": 60,
    "attacks": [
        {"name": "flip", "attack": {"kind": "label_flip", "source": "3", "target": "8", "fraction": 0.5}},
        {
            "name": "pattern",
            "attack": {"kind": "backdoor", "trigger": "pattern", "source": "7", "target": "1"},
        },
    ],
    "defenses": [{"name": "spectral_signatures"}],
    "mitigation": {"defenses": "none", "oracle": True},
}


def _double(x: int) -> dict:
    return {"value": 2 * x}


def _flaky(marker: str, x: int) -> dict:
    """Fails on the first call (the marker file does not exist yet), succeeds on the second."""
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise RuntimeError("transient failure")
    return {"value": x}


def _broken(x: int) -> dict:
    raise ValueError(f"cell {x} is broken")


# ------------------------------------------------------------------------------- the executor
def test_a_failed_cell_is_retried_once_then_reported_and_the_others_finish(tmp_path: Path) -> None:
    tasks = [
        CellTask("a", _double, (1,)),
        CellTask("flaky", _flaky, (str(tmp_path / "marker"), 5)),
        CellTask("broken", _broken, (3,), label="broken cell"),
        CellTask("b", _double, (4,)),
    ]
    seen = []
    summary = LocalExecutor().run(tasks, on_outcome=seen.append)
    assert [o.key for o in seen] == ["a", "flaky", "broken", "b"]  # serial: in order
    by_key = {o.key: o for o in seen}
    assert by_key["a"].record == {"value": 2} and by_key["a"].attempts == 1
    assert by_key["flaky"].record == {"value": 5} and by_key["flaky"].attempts == 2
    broken = by_key["broken"]
    assert not broken.ok and broken.attempts == 2 and broken.record is None
    assert broken.error == "ValueError: cell 3 is broken" and "Traceback" in (broken.traceback or "")
    assert by_key["b"].record == {"value": 8}
    assert summary.finished == 3 and summary.retried == 2 and [o.key for o in summary.failed] == ["broken"]
    error = GridIncomplete(summary.failed, summary.total)
    assert isinstance(error, ValueError) and "\n" not in str(error)
    assert "1 of 4 cells failed after 2 attempts" in str(error) and "broken cell: ValueError" in str(error)


def test_without_retries_a_failure_is_reported_at_once(tmp_path: Path) -> None:
    summary = LocalExecutor(retries=0).run([CellTask("flaky", _flaky, (str(tmp_path / "m"), 1))])
    assert summary.failed[0].attempts == 1 and summary.failed[0].error == "RuntimeError: transient failure"


def test_progress_lines_one_per_cell(capsys: pytest.CaptureFixture[str]) -> None:
    tasks = [CellTask("a", _double, (1,), label="cell a"), CellTask("b", _broken, (2,))]
    LocalExecutor(progress=True, retries=0).run(tasks, describe=lambda r: f"value {r['value']}", already=3)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("[4/5] cell a: value 2 (") and lines[1].startswith("[5/5] b: FAILED after 1")


def test_cell_keys_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        LocalExecutor().run([CellTask("a", _double, (1,)), CellTask("a", _double, (2,))])


# --------------------------------------------------------------------- the store and the log
def test_store_home_sets_and_restores_the_home(tmp_path: Path) -> None:
    before = os.environ.get("POISONLAB_HOME")
    with store_home(str(tmp_path / "store")):
        assert os.environ["POISONLAB_HOME"] == str(tmp_path / "store")
    assert os.environ.get("POISONLAB_HOME") == before
    assert resolve_store(tmp_path / "x") == (tmp_path / "x").absolute()
    with pytest.raises(ValueError, match="mounts"):
        resolve_store("s3://bucket/models")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="must be a folder"):
        resolve_store(tmp_path / "file")


def test_process_memo_builds_once_and_evicts_the_oldest() -> None:
    memo, built = ProcessMemo(size=2), []
    for key in ("a", "b", "a", "c", "b"):
        memo.get(key, lambda k=key: built.append(k) or k)
    assert built == ["a", "b", "c", "b"]  # "b" was evicted by "c" (the least recently used)


def test_cell_log_keeps_finished_cells_refuses_another_grid(tmp_path: Path) -> None:
    log = CellLog(tmp_path / "out" / "cells.jsonl", "grid1")
    assert log.finished() == {}
    log.append("a", {"x": 1})
    log.append_failure("b", "ValueError: no", "Traceback ...")
    with log.path.open("a") as fh:
        fh.write('{"grid": "grid1", "key": "c", "rec')  # a crash cut the last line
    assert log.finished() == {"a": {"x": 1}}  # the failure and the cut line are not finished cells
    log.append("c", {"x": 3})
    assert log.finished() == {"a": {"x": 1}, "c": {"x": 3}}
    with pytest.raises(ValueError, match="another grid"):
        CellLog(log.path, "grid2").finished()
    log.reset()
    assert not log.path.exists()


# ------------------------------------------------------------------------- resume and failures
def test_matrix_resumes_from_its_cell_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, journal = parse_matrix(SMALL), tmp_path / "cells.jsonl"
    first = run_matrix(cfg, device="cpu", progress=False, journal=journal)
    assert [r.name for r in first.rows] == ["flip", "pattern"]
    assert len(journal.read_text().splitlines()) == 2

    def refuse(*args: object) -> dict:
        raise AssertionError("a finished row ran again")

    monkeypatch.setattr(matrix_run, "matrix_row_cell", refuse)
    again = run_matrix(cfg, device="cpu", progress=False, journal=journal)
    assert [r.__dict__ for r in again.rows] == [r.__dict__ for r in first.rows]

    lines = journal.read_text().splitlines()
    journal.write_text(lines[0] + "\n")  # the "pattern" row is lost: only it runs again
    ran = []
    monkeypatch.setattr(matrix_run, "matrix_row_cell", lambda cfg, i, *a: ran.append(i) or _row(first, i))
    resumed = run_matrix(cfg, device="cpu", progress=False, journal=journal)
    assert ran == [1] and [r.name for r in resumed.rows] == ["flip", "pattern"]


def _row(result: object, i: int) -> dict:
    return dict(result.rows[i].__dict__)  # type: ignore[attr-defined]


def test_a_failing_row_is_reported_after_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, journal = parse_matrix(SMALL), tmp_path / "cells.jsonl"
    real = matrix_run.run_row

    def run_row(cfg, row, *args):  # noqa: ANN001, ANN202
        if row.name == "flip":
            raise RuntimeError("node lost")
        return real(cfg, row, *args)

    monkeypatch.setattr(matrix_run, "run_row", run_row)
    partials = []
    with pytest.raises(GridIncomplete, match="flip: RuntimeError: node lost") as info:
        run_matrix(cfg, device="cpu", progress=False, journal=journal, on_row=lambda r: partials.append(r))
    assert [r.name for r in info.value.partial.rows] == ["pattern"] and len(partials) == 1
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [(e["key"], bool(e.get("failed"))) for e in entries] == [
        ("attack:flip", True),
        ("attack:pattern", False),
    ]


# -------------------------------------------------------------------------------- the options
def test_executor_options_are_checked() -> None:
    with pytest.raises(ValueError, match="--executor must be one of local, ray"):
        make_executor("dask")
    with pytest.raises(ValueError, match="--workers needs --executor ray"):
        make_executor("local", workers=2)


def test_missing_ray_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # ``import ray`` now raises ImportError
    with pytest.raises(ValueError, match=r"pip install 'poisonlab\[ray\]'"):
        make_executor("ray")
    config = tmp_path / "m.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    for command in (["matrix", str(config)], ["clean-label", str(config)]):
        result = CliRunner().invoke(app, [*command, "--out", str(tmp_path / "o"), "--executor", "ray"])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        line = result.output.strip()
        assert "\n" not in line and "pip install 'poisonlab[ray]'" in line, command


def test_the_grid_commands_help_does_not_import_ray() -> None:
    code = (
        "import sys; sys.argv = ['poisonlab', 'matrix', '--help']\n"
        "import poisonlab.cli.main as cli\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print('RAY', 'ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--executor" in done.stdout and "--store" in done.stdout and "--resume" in done.stdout
    assert done.stdout.strip().endswith("RAY False")
