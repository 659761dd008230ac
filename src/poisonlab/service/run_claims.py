"""Which process executes a training run: an atomic claim, heartbeats, recovery of abandoned runs.

With ``serve --workers N`` every server process resumes the queued runs at start-up, so several
may be handed the same run. :func:`claim_run` is the only way from ``queued`` to ``running``: one
conditional ``UPDATE ... SET status='running', claimed_by=<process> WHERE id=:id AND
status='queued'`` whose row count says who won. On PostgreSQL the losing ``UPDATE`` waits for the
winner's row lock, re-reads the row and matches nothing; on SQLite write transactions are
serialised (``BEGIN IMMEDIATE``). Nothing is read first, so no two processes ever run one run.

The claimant writes :func:`touch` every ``stale_after_s / 6`` seconds (:class:`Heartbeat`) and
before every progress update, which fails with :class:`ClaimLost` once another process has taken
the run back, so a process that was presumed dead cannot decide anything after all.

:func:`recover_runs` (at start-up, then every ``stale_after_s / 4`` seconds while the worker is
idle) takes back the runs left ``running`` by a process that is gone: one on this host whose
process id no longer exists (or is this process under another token), one without a claimant
(a version before claims), or one without a heartbeat for ``stale_after_s``. Such a run is
requeued once (it runs again from the start: its decision is one transaction, so an interrupted
run decided nothing); a run abandoned a second time is failed with the reason and a
``pipeline_error`` alert, so that a run that kills its process cannot do so forever.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from poisonlab.service.alerts import raise_alert
from poisonlab.service.db import Database, TrainingRun, utcnow

log = logging.getLogger("poisonlab.service")
#: A run is claimed at most this many times: once, and once more after its process died.
MAX_ATTEMPTS = 2


class ClaimLost(RuntimeError):
    """This process no longer holds the run (another process recovered it): stop, decide nothing."""


def worker_identity() -> str:
    """``host:pid:token`` of this process (the token tells a reused process id apart)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"


def claim_run(session: Session, run_id: int, worker: str) -> bool:
    """Move run ``run_id`` from ``queued`` to ``running`` for ``worker``; False when it was not queued."""
    result = session.execute(
        update(TrainingRun)
        .where(TrainingRun.id == run_id, TrainingRun.status == "queued")
        .values(
            status="running",
            step="starting",
            claimed_by=worker,
            heartbeat_at=utcnow(),
            attempts=TrainingRun.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def touch(session: Session, run_id: int, worker: str) -> bool:
    """Refresh ``worker``'s heartbeat on run ``run_id``; False when ``worker`` no longer runs it."""
    result = session.execute(
        update(TrainingRun)
        .where(TrainingRun.id == run_id, TrainingRun.status == "running", TrainingRun.claimed_by == worker)
        .values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def check_claim(session: Session, run_id: int, worker: str) -> None:
    """:func:`touch`, raising :class:`ClaimLost` when the run is no longer ``worker``'s.

    Inside a write transaction it also locks the row (PostgreSQL) until the commit, so that no
    recovery can take the run back between this check and the transaction's other writes.
    """
    if not touch(session, run_id, worker):
        raise ClaimLost(f"training run {run_id} is no longer executed by {worker}")


def owner_is_dead(claimed_by: str, me: str) -> bool:
    """Whether the process ``claimed_by`` (``host:pid:token``) is certainly gone, seen from ``me``.

    Certain only on the same host: the process id does not exist, or it is this process under
    another token (a restart that got the same id). Elsewhere only the heartbeat tells.
    """
    try:
        host, pid, token = claimed_by.rsplit(":", 2)
        my_host, my_pid, my_token = me.rsplit(":", 2)
        pid_number = int(pid)
    except ValueError:
        return False
    if host != my_host:
        return False
    if pid == my_pid:
        return token != my_token
    try:
        os.kill(pid_number, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def recover_runs(
    session: Session, *, worker: str, stale_after_s: float, max_attempts: int = MAX_ATTEMPTS
) -> list[int]:
    """Requeue (once) or fail the runs abandoned by a dead process; the ids queued afterwards.

    Each change is a conditional ``UPDATE`` on the row as it was read (claimant, attempts and, for
    a claimant not known to be dead, a heartbeat older than ``stale_after_s``), so that a live
    claimant's heartbeat in between, or another process recovering the same run, wins cleanly.
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=stale_after_s)
    running = session.execute(
        select(TrainingRun.id, TrainingRun.claimed_by, TrainingRun.attempts, TrainingRun.step).where(
            TrainingRun.status == "running"
        )
    ).all()
    for run_id, claimed_by, attempts, step in running:
        dead = claimed_by is None or owner_is_dead(claimed_by, worker)
        conditions = [
            TrainingRun.id == run_id,
            TrainingRun.status == "running",
            TrainingRun.attempts == attempts,
            TrainingRun.claimed_by.is_(None) if claimed_by is None else TrainingRun.claimed_by == claimed_by,
        ]
        if not dead:
            conditions.append(or_(TrainingRun.heartbeat_at.is_(None), TrainingRun.heartbeat_at < cutoff))
        who = "the service stopped" if dead else f"{claimed_by} sent no heartbeat for {stale_after_s:g} s"
        if (attempts or 0) < max_attempts:
            reason = f"requeued once: {who} during step {step!r}"
            values = {"status": "queued", "step": "queued", "claimed_by": None, "heartbeat_at": None}
        else:
            reason = f"interrupted: {who} during step {step!r}, for the second time; not run again"
            values = {"status": "failed", "step": "done", "error": reason, "finished_at": now}
        stmt = update(TrainingRun).where(*conditions).values(**values)
        if session.execute(stmt.execution_options(synchronize_session=False)).rowcount != 1:
            continue  # its claimant is alive after all, or another process recovered it first
        _record(session, run_id, reason, failed=values["status"] == "failed")
    queued = select(TrainingRun.id).where(TrainingRun.status == "queued").order_by(TrainingRun.id)
    return list(session.scalars(queued))


def _record(session: Session, run_id: int, reason: str, *, failed: bool) -> None:
    log.warning("training run %s: %s", run_id, reason)
    if failed:
        raise_alert(
            session, "pipeline_error", f"training run {run_id} {reason}"[:1000], details={"run_id": run_id}
        )
        return
    run = session.get(TrainingRun, run_id, populate_existing=True)
    run.report = {**(run.report or {}), "recovered": [*(run.report or {}).get("recovered", []), reason]}


class Heartbeat:
    """A daemon thread touching run ``run_id`` every ``interval_s`` seconds while the block runs.

    ``lost`` becomes True when a touch finds the run taken back; the pipeline's own progress
    updates then raise :class:`ClaimLost` (:func:`check_claim`).
    """

    def __init__(self, db: Database, run_id: int, worker: str, interval_s: float) -> None:
        self.db, self.run_id, self.worker, self.interval_s = db, run_id, worker, interval_s
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"imrecs-heartbeat-{run_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                with self.db.write() as session:
                    if not touch(session, self.run_id, self.worker):
                        self.lost = True
                        return
            except Exception:  # a missed beat is survivable; the next one may get through
                log.exception("heartbeat of training run %s failed", self.run_id)
