"""Training runs with several server processes (``serve --workers N``): a run is claimed by one
process only, even when two claim it at the same instant from two database connections; a run a
dead process left ``running`` is requeued once, then failed with the reason; a process whose run
was taken back decides nothing. On SQLite here; on PostgreSQL too under ``.ci/postgres.sh``."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from poisonlab.service import pipeline
from poisonlab.service.db import Alert, Database, TrainingRun, add_missing_columns, utcnow
from poisonlab.service.run_claims import (
    ClaimLost,
    Heartbeat,
    check_claim,
    claim_run,
    owner_is_dead,
    recover_runs,
    worker_identity,
)

HOST = socket.gethostname()[:60]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def two_dbs(db_url):
    """Two engines on one database: what two server processes have."""
    first, second = Database(db_url), Database(db_url)
    yield first, second
    first.dispose()
    second.dispose()


def _add_runs(db: Database, count: int, **fields) -> list[int]:
    with db.write() as session:
        runs = [TrainingRun(requested_by="t", status="queued", params={}, **fields) for _ in range(count)]
        session.add_all(runs)
        session.flush()
        return [r.id for r in runs]


def _run(db: Database, run_id: int) -> TrainingRun:
    with db.read() as session:
        return session.get(TrainingRun, run_id)


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_two_processes_claiming_at_once_claim_each_run_once(two_dbs):
    ids = _add_runs(two_dbs[0], 15)
    workers = ("host-a:1:aaaa", "host-b:2:bbbb")
    barrier = threading.Barrier(2)

    def claim(side: int, run_id: int) -> bool:
        barrier.wait(10)  # both transactions start together
        with two_dbs[side].write() as session:
            return claim_run(session, run_id, workers[side])

    with ThreadPoolExecutor(max_workers=2) as pool:
        for run_id in ids:
            won = [f.result() for f in [pool.submit(claim, side, run_id) for side in (0, 1)]]
            assert sorted(won) == [False, True], (run_id, won)
            run = _run(two_dbs[1], run_id)
            assert run.status == "running" and run.attempts == 1
            assert run.claimed_by == workers[won.index(True)]


def test_two_workers_handed_one_run_execute_it_once(two_dbs, monkeypatch):
    (run_id,) = _add_runs(two_dbs[0], 1)
    executed: list[str] = []

    def fake_pipeline(state, rid, params):
        executed.append(state.worker_id)
        time.sleep(0.2)  # the other worker tries meanwhile
        with state.db.write() as session:
            check_claim(session, rid, state.worker_id)
            pipeline.update_run(session, rid, status="skipped", step="done")
        return "skipped"

    monkeypatch.setattr(pipeline, "_pipeline", fake_pipeline)
    metrics = SimpleNamespace(
        training_runs=SimpleNamespace(labels=lambda _o: SimpleNamespace(inc=lambda: None))
    )
    states = [
        SimpleNamespace(db=db, worker_id=worker_identity(), metrics=metrics,
                        settings=SimpleNamespace(run_stale_after_s=60.0))
        for db in two_dbs
    ]  # fmt: skip
    with ThreadPoolExecutor(max_workers=2) as pool:
        rows = list(pool.map(lambda s: pipeline.run_training(run_id, s), states))
    assert len(executed) == 1 and {r.status for r in rows} <= {"running", "skipped"}
    assert _run(two_dbs[0], run_id).status == "skipped"


def test_a_run_of_a_dead_process_is_requeued_once_then_failed(two_dbs):
    db, other = two_dbs
    me = worker_identity()
    (run_id,) = _add_runs(db, 1)
    for attempt in (1, 2):
        with db.write() as session:
            assert claim_run(session, run_id, f"{HOST}:{_dead_pid()}:dead")
        with other.write() as session:
            queued = recover_runs(session, worker=me, stale_after_s=3600)
        run = _run(db, run_id)
        assert run.attempts == attempt
        if attempt == 1:
            assert queued == [run_id] and run.status == "queued" and run.claimed_by is None
            assert run.report["recovered"] == ["requeued once: the service stopped during step 'starting'"]
            assert run.error == ""
    assert queued == [] and run.status == "failed" and run.finished_at is not None
    assert "second time" in run.error and "not run again" in run.error
    with db.read() as session:
        alerts = list(session.scalars(select(Alert).where(Alert.kind == "pipeline_error")))
    assert len(alerts) == 1 and f"training run {run_id}" in alerts[0].message
    with db.write() as session:  # failed is final: nobody claims it again
        assert not claim_run(session, run_id, me)


def test_a_live_claimant_keeps_its_run_until_its_heartbeat_is_stale(two_dbs):
    db, other = two_dbs
    me = worker_identity()
    elsewhere, parent = "other-host:1:x", f"{HOST}:{os.getppid()}:y"  # alive, or unknowable
    ids = _add_runs(db, 2)
    with db.write() as session:
        assert claim_run(session, ids[0], elsewhere) and claim_run(session, ids[1], parent)
    with other.write() as session:
        assert recover_runs(session, worker=me, stale_after_s=60) == []
    assert {_run(db, i).status for i in ids} == {"running"}
    with db.write() as session:  # no heartbeat for an hour
        for run in session.scalars(select(TrainingRun)):
            run.heartbeat_at = utcnow() - timedelta(hours=1)
    with other.write() as session:
        assert recover_runs(session, worker=me, stale_after_s=60) == ids
    run = _run(db, ids[0])
    assert (
        run.status == "queued" and "other-host:1:x sent no heartbeat for 60 s" in run.report["recovered"][0]
    )


def test_a_process_whose_run_was_taken_back_decides_nothing(two_dbs):
    db, other = two_dbs
    slow, me = worker_identity(), worker_identity()  # one process presumed dead, one recovering
    (run_id,) = _add_runs(db, 1)
    with db.write() as session:
        assert claim_run(session, run_id, slow)
    with Heartbeat(db, run_id, slow, interval_s=0.01) as beat:
        time.sleep(0.1)
        assert not beat.lost and _run(db, run_id).heartbeat_at is not None
        with other.write() as session:  # the heartbeat looks stale to a recoverer with a short limit
            session.get(TrainingRun, run_id).heartbeat_at = utcnow() - timedelta(hours=1)
        with other.write() as session:
            recover_runs(session, worker=me, stale_after_s=0.0)
        deadline = time.monotonic() + 5
        while not beat.lost and time.monotonic() < deadline:
            time.sleep(0.01)
        assert beat.lost
    with pytest.raises(ClaimLost), db.write() as session:
        check_claim(session, run_id, slow)
        pipeline.update_run(session, run_id, status="promoted")  # rolled back with the transaction
    assert _run(db, run_id).status == "queued"


def test_the_failure_of_a_run_taken_back_is_not_recorded(tmp_path, monkeypatch):
    db = Database(f"sqlite:///{tmp_path / 'runs.sqlite'}")
    (run_id,) = _add_runs(db, 1)
    state = SimpleNamespace(
        db=db,
        worker_id=worker_identity(),
        settings=SimpleNamespace(run_stale_after_s=60.0),
        metrics=SimpleNamespace(
            training_runs=SimpleNamespace(labels=lambda _o: SimpleNamespace(inc=lambda: None))
        ),
    )

    def taken_back_then_crash(st, rid, params):
        with db.write() as session:  # another process requeues it meanwhile
            run = session.get(TrainingRun, rid)
            run.status, run.claimed_by = "queued", None
        raise RuntimeError("late failure")

    monkeypatch.setattr(pipeline, "_pipeline", taken_back_then_crash)
    assert pipeline.run_training(run_id, state).status == "queued"
    assert _run(db, run_id).error == ""
    db.dispose()


def test_owner_is_dead_only_when_certain():
    me = f"{HOST}:{os.getpid()}:mine"
    assert owner_is_dead(f"{HOST}:{_dead_pid()}:x", me)
    assert owner_is_dead(f"{HOST}:{os.getpid()}:earlier", me)  # this pid, another process's token
    assert not owner_is_dead(me, me)
    assert not owner_is_dead(f"{HOST}:{os.getppid()}:x", me)
    assert not owner_is_dead(f"elsewhere:{_dead_pid()}:x", me)
    assert not owner_is_dead("garbage", me)


def test_columns_added_to_a_database_of_an_older_version(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    db = Database(url)
    (run_id,) = _add_runs(db, 1)
    with db.engine.begin() as conn:  # what a database created before run claims looks like
        for column in ("claimed_by", "heartbeat_at", "attempts"):
            conn.exec_driver_sql(f"ALTER TABLE training_runs DROP COLUMN {column}")
    assert add_missing_columns(db.engine) == [
        "training_runs.claimed_by",
        "training_runs.heartbeat_at",
        "training_runs.attempts",
    ]
    assert add_missing_columns(db.engine) == []
    run = _run(db, run_id)
    assert run.attempts == 0 and run.claimed_by is None
    db.dispose()
