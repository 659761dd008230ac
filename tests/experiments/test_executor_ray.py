"""The Ray executor on a 2-CPU local Ray: the same numbers as in-process, retries, reports.

One Ray start for the module (a few seconds); every test hands its own store to the cells.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

ray = pytest.importorskip("ray")

from poisonlab.cli.main import app  # noqa: E402
from poisonlab.experiments.executor import CellTask, LocalExecutor, RayExecutor  # noqa: E402
from poisonlab.experiments.matrix import parse_matrix, run_matrix  # noqa: E402

#: two attack rows, one defense, no retrain: a clean model and one model per row, 400 digits
SMALL = {
    "name": "ray-matrix",
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
    "mitigation": {"defenses": "none", "oracle": False},
}
#: timings (and the provenance's time) differ from run to run; every other figure must not
TIMINGS = {"seconds", "forward_seconds", "created_at"}


@pytest.fixture(scope="module")
def ray_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Ray cells' model store, shared by the module's tests (the CLI test hits its cache)."""
    return tmp_path_factory.mktemp("ray-store")


@pytest.fixture(scope="module")
def local_ray():
    """A 2-CPU Ray for the module; workers import this module's cell functions by value."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 1024 * 1024,
        logging_level=logging.WARNING,
    )
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


def _double(x: int) -> dict:
    return {"value": 2 * x}


def _flaky(marker: str, x: int) -> dict:
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise RuntimeError("transient failure")
    return {"value": x}


def _broken(x: int) -> dict:
    raise ValueError(f"cell {x} is broken")


def _without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def test_a_digits_matrix_on_two_ray_workers_gives_the_local_numbers(
    local_ray, ray_store: Path, tmp_path: Path
) -> None:
    cfg = parse_matrix(SMALL)
    local = run_matrix(cfg, device="cpu", progress=False, executor=LocalExecutor(store=tmp_path / "a"))
    streamed = []
    with RayExecutor(workers=2, store=ray_store) as executor:
        remote = run_matrix(
            cfg,
            device="cpu",
            progress=False,
            executor=executor,
            on_row=lambda r: streamed.append(len(r.rows)),
        )
    assert streamed == [1, 2]  # a partial result after each row, rows kept in config order
    a, b = _without_timings(local.to_json()), _without_timings(remote.to_json())
    assert b == a  # model ids are weight digests: the same weights, trained in another process
    trained = [
        sorted(p.parent.name for p in s.glob("baselines/*/model.json")) for s in (tmp_path / "a", ray_store)
    ]
    assert trained[0] == trained[1] and len(trained[0]) == 3  # each store: the clean model, the rows'


def test_the_matrix_command_runs_on_ray_and_resumes(local_ray, ray_store: Path, tmp_path: Path) -> None:
    config, out = tmp_path / "m.yaml", tmp_path / "out"
    config.write_text(yaml.safe_dump(SMALL))
    args = ["matrix", str(config), "--out", str(out), "--device", "cpu", "--executor", "ray"]
    args += ["--workers", "2", "--store", str(ray_store)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "attack rows as Ray tasks" in first.stderr and "[2/2]" in first.stderr
    rows = [r["name"] for r in json.loads((out / "matrix.json").read_text())["rows"]]
    log = (out / "cells.jsonl").read_text()
    assert rows == ["flip", "pattern"] and len(log.splitlines()) == 2
    again = CliRunner().invoke(app, [*args, "--resume"])
    assert again.exit_code == 0, again.output
    assert (out / "cells.jsonl").read_text() == log and "[1/2]" not in again.stderr  # nothing ran again
    refused = CliRunner().invoke(app, args)  # without --resume a finished run is refused, as before
    assert refused.exit_code == 2 and "already holds" in refused.stderr


def test_ray_retries_a_failed_cell_once_and_reports_it(local_ray, tmp_path: Path) -> None:
    tasks = [
        CellTask("a", _double, (1,)),
        CellTask("flaky", _flaky, (str(tmp_path / "marker"), 5)),
        CellTask("broken", _broken, (3,)),
        CellTask("b", _double, (4,)),
    ]
    seen = []
    summary = RayExecutor(workers=2, store=tmp_path).run(tasks, on_outcome=seen.append)
    by_key = {o.key: o for o in seen}
    assert sorted(by_key) == ["a", "b", "broken", "flaky"]
    assert by_key["a"].record == {"value": 2} and by_key["b"].record == {"value": 8}
    assert by_key["flaky"].record == {"value": 5} and by_key["flaky"].attempts == 2
    assert by_key["broken"].error == "ValueError: cell 3 is broken" and by_key["broken"].attempts == 2
    assert summary.finished == 3 and [o.key for o in summary.failed] == ["broken"]
    for outcome in (by_key["a"], by_key["b"]):  # ran in a worker, timed there
        assert outcome.worker.split(":")[1] != str(os.getpid())
        assert 0 <= (outcome.compute_seconds or 0) <= outcome.wall_seconds


def test_a_gpu_is_asked_for_only_on_cuda(local_ray) -> None:
    executor = RayExecutor(workers=2)
    assert executor.gpus_per_cell("cuda") == 1.0 and executor.gpus_per_cell("cpu") == 0.0
    assert executor.gpus_per_cell("auto") == 0.0  # this Ray has no GPU
    assert executor.window(0.0) == 2


def test_bad_ray_options_are_refused() -> None:
    with pytest.raises(ValueError, match="--ray-address must be"):
        RayExecutor(address="http://head:8265")
    with pytest.raises(ValueError, match="workers must be"):
        RayExecutor(workers=0)
