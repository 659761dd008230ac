"""Training runs: their rows, and the background worker that executes them one at a time.

A run is created ``queued`` by ``POST /v1/training-runs`` and executed by :class:`TrainingWorker`
in a daemon thread, so it outlives the request that started it. The process that executes it
claims it first, atomically (:mod:`poisonlab.service.run_claims`); a service that restarts
requeues once the runs a dead process was executing and executes the queued ones, and while
idle the worker looks for such runs again (``poll``). The functions on rows take the caller's
session and never commit (see :mod:`poisonlab.service.registry`).

The queue is bounded: a run takes minutes, so a key that queues runs faster than they finish
only builds a backlog (a fuzzer queued 1,666). :func:`create_run` refuses with 429
``queue_full`` when the service already holds ``max_queued`` queued runs, or the requesting key
``max_queued_per_key``. On SQLite the write transaction holds the database's write lock from the
count to the commit, so the bound is exact; on PostgreSQL two concurrent requests may each see
room for one more.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from poisonlab.service.audit import Actor, record
from poisonlab.service.auth import role_rank
from poisonlab.service.db import TrainingRun, utcnow
from poisonlab.service.errors import NotFound, Rejected

log = logging.getLogger("poisonlab.service")
RUN_STATUSES = ("queued", "running", "promoted", "rejected", "skipped", "failed", "cancelled")
FINISHED = ("promoted", "rejected", "skipped", "failed", "cancelled")


#: when to ask again after a full queue: a queued run starts within minutes (the 429 of the rate
#: limiter carries its own, shorter Retry-After)
_RETRY = {"Retry-After": "60"}


def check_queue(session: Session, *, actor: Actor, max_queued: int, max_queued_per_key: int) -> None:
    """Rejected (429 ``queue_full``) when the service or ``actor`` has no room for another queued run."""
    queued = select(func.count()).select_from(TrainingRun).where(TrainingRun.status == "queued")
    total = session.scalar(queued) or 0
    if total >= max_queued:
        raise Rejected(
            "queue_full",
            f"{total} training runs are queued already (the limit is {max_queued}); "
            "try again when one has started",
            429,
            headers=_RETRY,
        )
    mine = session.scalar(queued.where(TrainingRun.requested_by == actor.name)) or 0
    if mine >= max_queued_per_key:
        raise Rejected(
            "queue_full",
            f"key {actor.name!r} has {mine} training runs queued already (the limit per key is "
            f"{max_queued_per_key}); try again when one has started",
            429,
            headers=_RETRY,
        )


def create_run(
    session: Session,
    *,
    actor: Actor,
    params: dict,
    max_queued: int | None = None,
    max_queued_per_key: int | None = None,
) -> TrainingRun:
    """A new ``queued`` run; the caller commits, then submits its id to the worker.

    Parameters
    ----------
    session : Session
        A write session (not committed here).
    actor : Actor
        Who asks (the run's ``requested_by``, audited).
    params : dict
        The run's parameters as validated by the router.
    max_queued, max_queued_per_key : int, optional
        Bounds of the queue (see the module docstring); None leaves that bound off.

    Raises
    ------
    Rejected
        429 ``queue_full`` when a bound is reached.
    """
    if max_queued is not None or max_queued_per_key is not None:
        check_queue(
            session,
            actor=actor,
            max_queued=max_queued if max_queued is not None else 2**62,
            max_queued_per_key=max_queued_per_key if max_queued_per_key is not None else 2**62,
        )
    run = TrainingRun(requested_by=actor.name, status="queued", step="queued", params=params)
    session.add(run)
    session.flush()  # assigns the id the audit entry names
    record(session, actor, "training_runs.create", f"run:{run.id}", f"ok: {params}")
    return run


def get_run(session: Session, run_id: int) -> TrainingRun:
    """The run ``run_id``; NotFound when unknown."""
    run = session.get(TrainingRun, run_id)
    if run is None:
        raise NotFound(f"no training run with id {run_id}")
    return run


def cancel_run(session: Session, run_id: int, *, actor: Actor) -> TrainingRun:
    """Cancel a queued run: it never starts (the worker's claim needs ``queued``).

    Only the key that queued the run or an admin may (403); a run that has started or finished is
    a 409 (a running fine-tune is not interrupted: its decision is one transaction). The status
    moves by one conditional ``UPDATE``, so a cancel and a worker's claim cannot both win.
    """
    run = get_run(session, run_id)
    if run.requested_by != actor.name and role_rank(actor.role or "viewer") < role_rank("admin"):
        raise Rejected("forbidden", "only the key that queued a run, or an admin, may cancel it", 403)
    cancelled = session.execute(
        update(TrainingRun)
        .where(TrainingRun.id == run_id, TrainingRun.status == "queued")
        .values(
            status="cancelled", step="cancelled", finished_at=utcnow(), error=f"cancelled by {actor.name}"
        )
    )
    session.refresh(run)
    if cancelled.rowcount != 1:
        raise Rejected(
            "conflict", f"training run {run_id} is {run.status}; only a queued run can be cancelled", 409
        )
    record(session, actor, "training_runs.cancel", f"run:{run_id}", "ok")
    return run


def list_runs(session: Session, *, limit: int = 50) -> list[TrainingRun]:
    """The newest ``limit`` runs, newest first."""
    return list(session.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit)))


def update_run(session: Session, run_id: int, report: dict | None = None, **fields: object) -> TrainingRun:
    """Set ``fields`` of run ``run_id`` and merge ``report`` into its report; a finishing status
    stamps ``finished_at``."""
    run = get_run(session, run_id)
    for key, value in fields.items():
        setattr(run, key, value)
    if report:
        run.report = {**(run.report or {}), **report}  # a new dict: JSON columns track assignment only
    if fields.get("status") in FINISHED:
        run.finished_at = utcnow()
    return run


class TrainingWorker:
    """One daemon thread executing queued runs in order with ``execute(run_id)``.

    Parameters
    ----------
    execute : callable
        Runs one training run to its end (it claims the run first, so a run id handed over twice,
        here or to another process, runs once).
    poll : callable, optional
        Returns run ids to execute (abandoned runs taken back, queued ones); called whenever the
        worker has had nothing to do for ``poll_every_s`` seconds.
    poll_every_s : float
        Seconds of idleness between polls.
    """

    def __init__(
        self,
        execute: Callable[[int], object],
        *,
        poll: Callable[[], list[int]] | None = None,
        poll_every_s: float = 30.0,
    ) -> None:
        self.execute = execute
        self.poll, self.poll_every_s = poll, poll_every_s
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="imrecs-training", daemon=True)
                self._thread.start()

    def submit(self, run_id: int) -> None:
        self.start()
        self._queue.put(run_id)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to finish after the current run (waits up to ``timeout`` seconds)."""
        with self._lock:
            thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout)

    def idle(self) -> bool:
        return self._queue.unfinished_tasks == 0

    def _loop(self) -> None:
        while True:
            try:
                run_id = self._queue.get(timeout=self.poll_every_s if self.poll else None)
            except queue.Empty:
                self._poll()
                continue
            try:
                if run_id is None:
                    return
                self.execute(run_id)
            except Exception:  # a bug in one run must not stop the worker for the next
                log.exception("training run %s crashed the worker step", run_id)
            finally:
                self._queue.task_done()

    def _poll(self) -> None:
        try:
            found = self.poll() if self.poll else []
        except Exception:  # a database hiccup must not stop the worker
            log.exception("looking for abandoned training runs failed")
            return
        for run_id in found:
            self.submit(run_id)
