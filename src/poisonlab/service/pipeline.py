"""The defended continuous-learning pipeline: snapshot -> caps -> screen -> fine-tune -> gates.

:func:`run_training` executes one training run recorded in the database, step by step, writing
its progress and report to the run's row so ``GET /v1/training-runs/{id}`` can show them:

1. **snapshot**: accepted + pending contributions, identified by a hash of (id, sha256, label);
   each blob's sha256 is checked again and the image decoded with the service's limits; failures
   are quarantined (``validation: ...``);
2. **caps**: what one source (its signing source, else its key) sends of a class beyond
   ``max_source_class_fraction`` of that class in the base data, and what all sources send beyond
   ``max_class_contribution_fraction``, waits in review (quarantined, ``review: volume cap``;
   :func:`~poisonlab.service.decisions.volume_caps`);
3. **defenses** (:mod:`poisonlab.service.screening`): the default screen
   (:mod:`poisonlab.defenses.scan.screen`) runs over the whole training snapshot, the trusted base
   training set *and every contribution*, accepted ones included, with the serving model and the
   base data's held-out validation and test splits as the trusted clean set (contributions never
   join it), plus the configured ``defenses`` whose flags act alone. The screen quarantines by
   evidence (its anchored detector compares each sample with trusted samples of its label), not
   by group size, so poison that outnumbers a class cannot turn the clean part into the suspect.
   Flagged contributions are quarantined (``screen: <detectors>``); a source whose flagged share
   is high loses its other contributions too (``source: ...``); contributions a previous promotion
   accepted are quarantined as well, and when the serving model had learnt them it is rolled back
   to the version trained without them and the run ends there (``flagged_accepted`` alert); an
   admin's release stands but the flagged sample is left out of the run; flagged base samples are
   reported (audit entry, ``base_flagged`` alert when a block of one class is flagged) and stay in
   training. A defense that cannot run fails the run (fail closed). An admin may run without
   screening (``defenses: []``); the caps and gates still apply;
4. **training**: when no pending contribution survived, the run ends ``skipped``: nothing new to
   learn, so no new version. Otherwise the serving model is fine-tuned on the base training set
   plus the surviving contributions (:func:`poisonlab.training.train`);
5. **gates** (:func:`poisonlab.defenses.gates.promotion.promotion_gates`, the serving model as the
   reference of each): accuracy, canaries, reverse-engineered triggers (Neural Cleanse), the
   trigger-sensitivity test with those triggers added, and the per-class behaviour shift. All
   pass: the candidate is promoted and its pending contributions accepted. Otherwise the old model
   keeps serving, the candidate is stored as ``rejected``, the new contributions it was trained on
   are quarantined with the failed gates as the reason, and alerts are raised.

The decision at the end is one transaction either way (:mod:`poisonlab.service.decisions`).
A run is claimed atomically before it starts and every progress update checks the claim still
holds (:mod:`poisonlab.service.run_claims`): with ``serve --workers N`` no run is executed twice,
and a process whose run was taken back decides nothing.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from poisonlab.data.dataset import Dataset, Splits
from poisonlab.defenses.gates.promotion import GatePolicy, promotion_gates
from poisonlab.models.checkpoint import save_model
from poisonlab.service import contributions as contrib
from poisonlab.service.alerts import raise_alert
from poisonlab.service.audit import Actor
from poisonlab.service.db import Database, TrainingRun
from poisonlab.service.decisions import (
    admin_released,
    identity,
    promote_candidate,
    quarantine_rows,
    reject_candidate,
)
from poisonlab.service.decode import decode_image
from poisonlab.service.run_claims import ClaimLost, Heartbeat, check_claim, claim_run, touch
from poisonlab.service.runs import get_run, update_run
from poisonlab.service.screening import PipelineError, apply_caps, screen
from poisonlab.service.serving import Loaded
from poisonlab.service.state import ServiceState, base_dataset_name
from poisonlab.training import default_recipe, train

log = logging.getLogger("poisonlab.service")


@dataclass(frozen=True)
class Run:
    """What every step of one run works with: the service, the run id, the serving model (the
    parent of the candidate), the trusted splits and the pipeline's audit actor."""

    state: ServiceState
    run_id: int
    loaded: Loaded
    splits: Splits
    actor: Actor

    @property
    def db(self) -> Database:
        return self.state.db

    def update(self, report: dict | None = None, **fields: object) -> None:
        """Record progress in its own transaction (``GET /v1/training-runs/{id}`` shows it at once)."""
        with self.db.write() as session:
            self.update_in(session, report, **fields)

    def update_in(self, session: Session, report: dict | None = None, **fields: object) -> None:
        """Record progress as part of the caller's transaction; ClaimLost (and the transaction
        rolls back) when this process no longer executes the run."""
        check_claim(session, self.run_id, self.state.worker_id)
        update_run(session, self.run_id, report, **fields)


@dataclass(frozen=True)
class Snapshot:
    """Decoded contributions of one run: ``data`` (sources ``contribution:<id>``), their ids, which
    are pending, which an admin released, and whom each counts against (:func:`identity`)."""

    data: Dataset
    ids: np.ndarray
    pending: np.ndarray
    admin: np.ndarray
    who: np.ndarray
    hash: str


def take_snapshot(run: Run) -> Snapshot:
    """Step 1: snapshot, re-check and decode; invalid contributions are quarantined."""
    with run.db.read() as session:
        rows, digest = contrib.snapshot(session)
    run.update({"snapshot": {"contributions": len(rows)}}, step="validation", snapshot_hash=digest)
    shape, limit = run.loaded.input_shape, run.state.settings.max_pixels
    images, kept, bad = [], [], {}
    for row in rows:
        try:
            images.append(decode_image(run.state.store.get(row.sha256), shape, max_pixels=limit))
            kept.append(row)
        except (OSError, ValueError) as exc:  # a missing or modified blob, an undecodable file
            bad[row.id] = f"validation: {exc}"[:500]
    with run.db.write() as session:
        quarantine_rows(session, bad, actor=run.actor)
        run.update_in(session, {"validation": {"valid": len(kept), "quarantined": sorted(bad)}})
    data = Dataset(
        x=np.stack(images) if images else np.zeros((0, *shape), np.uint8),
        y=np.array([r.label for r in kept], dtype=np.int64),
        class_names=run.loaded.class_names,
        source=np.array([f"contribution:{r.id}" for r in kept], dtype=object),
        name=f"contributions-{digest[:12]}",
    )
    return Snapshot(
        data,
        ids=np.array([r.id for r in kept], dtype=np.int64),
        pending=np.array([r.status == "pending" for r in kept], dtype=bool),
        admin=np.array([admin_released(r) for r in kept], dtype=bool),
        who=np.array([identity(r) for r in kept], dtype=object),
        hash=digest,
    )


def finetune(run: Run, train_data: Dataset, params: dict):
    """Step 4: fine-tune a copy of the serving model; returns (model, folder)."""
    settings = run.state.settings
    cfg = default_recipe(base_dataset_name(settings, run.loaded.card) or "cifar10")
    epochs, lr = params.get("epochs") or settings.finetune_epochs, settings.finetune_lr or cfg.lr / 4
    cfg = cfg.model_copy(update={"epochs": epochs, "lr": lr, "seed": settings.seed})
    result = train(train_data, cfg, model=run.loaded.model, device=settings.device, progress=False)
    folder = settings.models_dir / f"run-{run.run_id}"
    save_model(
        result.model,
        folder,
        class_names=run.loaded.class_names,
        name=f"imrecs-run-{run.run_id}",
        train_config=cfg.model_dump(mode="json"),
        dataset_name=train_data.name,
        dataset_hash=train_data.content_hash,
        parent_id=run.loaded.version_id,
        metrics={"train_seconds": round(result.seconds, 2), "epochs": epochs},
    )
    run.update(
        {
            "training": {
                "samples": len(train_data),
                "epochs": epochs,
                "lr": lr,
                "seconds": round(result.seconds, 2),
            }
        }
    )
    return result.model, folder


def gates(run: Run, candidate) -> dict:
    """Step 5: the promotion gates, the serving model as the reference of each."""
    s = run.state.settings
    policy = GatePolicy(
        max_accuracy_drop=s.max_accuracy_drop,
        canaries_per_class=s.canaries_per_class,
        sensitivity_spike=s.sensitivity_spike,
        reverse_engineer_steps=s.reverse_engineer_steps,
        reverse_engineer_gap=s.reverse_engineer_gap,
        behaviour_max_shift=s.behaviour_max_shift,
        seed=s.seed,
    )
    return promotion_gates(
        candidate, run.loaded.model, canary_pool=run.splits.val, gate_set=run.splits.test,
        trusted=run.splits.val, policy=policy, device=s.device,
    )  # fmt: skip


def _skip(run: Run, decision: str) -> str:
    run.update({"decision": decision}, status="skipped", step="done")
    return "skipped"


def _pipeline(state: ServiceState, run_id: int, params: dict) -> str:
    loaded = state.server.reload()
    if loaded is None:
        raise PipelineError("no serving model to fine-tune")
    splits = state.base_splits(loaded.card)
    if splits is None:
        raise PipelineError(
            f"the trusted base data of {loaded.version_id} cannot be loaded (set base_dataset)"
        )
    run = Run(state, run_id, loaded, splits, Actor(f"pipeline:run-{run_id}", "trainer"))
    run.update(step="snapshot", base_model_id=loaded.version_id)
    snap = take_snapshot(run)
    if len(snap.data) == 0:
        return _skip(run, "no contributions to train on")
    run.update(step="caps")
    active = apply_caps(run, snap)
    run.update(step="defenses")
    override = params.get("defenses")
    keep, rolled_back = screen(run, snap, active, None if override is None else tuple(override))
    if rolled_back is not None:  # the serving model had learnt flagged data: start again from its parent
        state.server.reload()
        return _skip(run, f"rolled back to {rolled_back}: {loaded.version_id} was trained on flagged data")
    if not (keep & snap.pending).any():  # nothing new to learn: no new version (issue 17)
        return _skip(run, "nothing new to train on: no pending contribution passed the caps and the screen")
    run.update(step="training")
    train_data = splits.train.concat(snap.data.subset(keep), name=f"{splits.train.name}+{snap.hash[:12]}")
    candidate, folder = finetune(run, train_data, params)
    run.update(step="gates")
    checks = gates(run, candidate)
    failed = [name for name, check in checks.items() if not check.get("passed")]
    metrics = {
        "test_accuracy": checks["accuracy"].get("candidate"),
        "gates": {name: bool(check.get("passed")) for name, check in checks.items()},
    }
    if failed:
        return reject_candidate(run, folder, snap, keep, checks, metrics, failed)
    return promote_candidate(run, folder, snap, keep, checks, metrics)


def run_training(run_id: int, state: ServiceState) -> TrainingRun:
    """Execute training run ``run_id`` to its end (status promoted, rejected, skipped or failed).

    Never raises for a pipeline failure: the run is marked ``failed`` with the error and a
    ``pipeline_error`` alert is raised (one transaction). Call it from a background worker.
    A run that is not ``queued`` (another process claimed it first, or it is finished) is left
    alone, and so is one another process took back meanwhile (NotFound for an unknown id).
    """
    worker = state.worker_id
    with state.db.write() as session:
        claimed = claim_run(session, run_id, worker)
        run = get_run(session, run_id)
    if not claimed:
        log.info("training run %s is %s: not claimed by this process", run_id, run.status)
        return run
    beat = max(0.05, state.settings.run_stale_after_s / 6)
    with Heartbeat(state.db, run_id, worker, beat):
        try:
            outcome = _pipeline(state, run_id, dict(run.params or {}))
        except ClaimLost as exc:  # another process took the run back: it decides, not this one
            log.warning("training run %s abandoned: %s", run_id, exc)
            outcome = "abandoned"
        except Exception as exc:  # any failure ends the run visibly instead of killing the worker
            log.error("training run %s failed: %s\n%s", run_id, exc, traceback.format_exc())
            outcome = "failed"
            _fail(state, run_id, exc)
    state.metrics.training_runs.labels(outcome).inc()
    with state.db.read() as session:
        return get_run(session, run_id)


def _fail(state: ServiceState, run_id: int, exc: Exception) -> None:
    """Mark the run failed with a ``pipeline_error`` alert, unless it is no longer this process's."""
    with state.db.write() as session:
        if not touch(session, run_id, state.worker_id):
            log.warning("training run %s failed here but was taken back meanwhile", run_id)
            return
        error = f"{type(exc).__name__}: {exc}"[:4000]
        update_run(session, run_id, status="failed", step="done", error=error)
        message = f"training run {run_id} failed: {exc}"[:1000]
        raise_alert(session, "pipeline_error", message, details={"run_id": run_id})
