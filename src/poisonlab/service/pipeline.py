"""The defended continuous-learning pipeline: snapshot -> validate -> defenses -> fine-tune -> gates.

:func:`run_training` executes one training run recorded in the database, step by step, writing
its progress and report to the run's row so ``GET /v1/training-runs/{id}`` can show them:

1. **snapshot**: accepted + pending contributions, identified by a hash of (id, sha256, label);
2. **validation**: each blob's sha256 is checked again and the image decoded with the service's
   limits; failures are quarantined (``validation: ...``);
3. **defenses**: the configured :mod:`poisonlab.defenses` run over the trusted base training set
   plus the contributions (the base set gives them context; only contributions are acted on) with
   the serving model and the trusted validation split; flagged pending contributions are
   quarantined with the defenses' names as the reason. A defense that cannot run fails the run
   (fail closed: unscreened data is never trained on);
4. **training**: the serving model is fine-tuned on the base training set plus the surviving
   contributions (:func:`poisonlab.training.train`);
5. **gates**: clean accuracy on the trusted test split not below the serving model's minus
   ``max_accuracy_drop``; every canary right (:mod:`poisonlab.defenses.gates.canary`, picked from the
   validation split with the serving model); the trigger-sensitivity test clean
   (:mod:`poisonlab.defenses.gates.sensitivity`, the serving model as reference). All pass: the
   candidate is promoted and its pending contributions accepted. Otherwise the old model keeps
   serving, the candidate is stored as ``rejected`` and alerts are raised.

The decision at the end is one transaction either way (:mod:`poisonlab.service.decisions`).
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from poisonlab.data.dataset import Dataset, Splits
from poisonlab.defenses.gates.canary import check_canaries, select_canaries
from poisonlab.defenses.gates.sensitivity import trigger_sensitivity
from poisonlab.defenses.scan import scan
from poisonlab.evaluation import evaluate
from poisonlab.models.checkpoint import save_model
from poisonlab.service import contributions as contrib
from poisonlab.service.alerts import raise_alert
from poisonlab.service.audit import Actor
from poisonlab.service.db import Database, TrainingRun
from poisonlab.service.decisions import promote_candidate, reject_candidate
from poisonlab.service.decode import decode_image
from poisonlab.service.runs import get_run, update_run
from poisonlab.service.serving import Loaded
from poisonlab.service.state import ServiceState, base_dataset_name
from poisonlab.training import default_recipe, train

log = logging.getLogger("poisonlab.service")


class PipelineError(RuntimeError):
    """A run that cannot go on (no serving model, no trusted data, a defense that fails)."""


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
        """Record progress as part of the caller's transaction."""
        update_run(session, self.run_id, report, **fields)


@dataclass(frozen=True)
class Snapshot:
    """Decoded contributions of one run: ``data`` (sources ``contribution:<id>``), ids, pending flags."""

    data: Dataset
    ids: np.ndarray
    pending: np.ndarray
    hash: str


def take_snapshot(run: Run) -> Snapshot:
    """Steps 1-2: snapshot, re-check and decode; invalid contributions are quarantined."""
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
        contrib.quarantine(session, bad, actor=run.actor)
        run.update_in(session, {"validation": {"valid": len(kept), "quarantined": sorted(bad)}})
    data = Dataset(
        x=np.stack(images) if images else np.zeros((0, *shape), np.uint8),
        y=np.array([r.label for r in kept], dtype=np.int64),
        class_names=run.loaded.class_names,
        source=np.array([f"contribution:{r.id}" for r in kept], dtype=object),
        name=f"contributions-{digest[:12]}",
    )
    ids = np.array([r.id for r in kept], dtype=np.int64)
    pending = np.array([r.status == "pending" for r in kept], dtype=bool)
    return Snapshot(data, ids, pending, digest)


def screen(run: Run, snap: Snapshot, defenses) -> np.ndarray:
    """Step 3: run the defenses; returns the boolean mask of contributions to train on."""
    keep = np.ones(len(snap.data), dtype=bool)
    if not defenses:
        run.update({"defenses": {"methods": {}, "note": "no defenses configured"}})
        return keep
    union = run.splits.train.concat(snap.data, name="base+contributions")
    offset = len(run.splits.train)
    try:
        result = scan(
            union,
            list(defenses),
            model=run.loaded.model,
            trusted=run.splits.val,
            device=run.state.settings.device,
        )
    except (ValueError, ImportError, AttributeError) as exc:
        raise PipelineError(f"defense scan failed, not training on unscreened data: {exc}") from exc
    reasons: dict[int, list[str]] = {}
    summary = {}
    for method in result.methods:
        flagged = method.flagged[offset:]
        for cid in snap.ids[flagged]:
            reasons.setdefault(int(cid), []).append(method.name)
        summary[method.name] = {
            "flagged_contributions": int(flagged.sum()),
            "flagged_base": int(method.flagged[:offset].sum()),
            "seconds": round(method.seconds, 3),
        }
        keep &= ~flagged
    is_pending = dict(zip(snap.ids.tolist(), snap.pending.tolist(), strict=True))
    to_quarantine = {cid: "defense: " + ", ".join(names) for cid, names in reasons.items() if is_pending[cid]}
    keep |= ~snap.pending  # what an admin accepted stays in training even when flagged
    flagged_accepted = len(reasons) - len(to_quarantine)
    with run.db.write() as session:
        quarantined = contrib.quarantine(session, to_quarantine, actor=run.actor)
        report = {"methods": summary, "quarantined": quarantined, "flagged_accepted": flagged_accepted}
        run.update_in(session, {"defenses": report})
    return keep


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
    """Step 5: the three promotion gates; each entry has ``passed`` and its evidence."""
    s, serving, splits = run.state.settings, run.loaded.model, run.splits
    dev = s.device
    acc_old = evaluate(serving, splits.test, device=dev).accuracy
    acc_new = evaluate(candidate, splits.test, device=dev).accuracy
    out = {
        "accuracy": {
            "passed": bool(acc_new >= acc_old - s.max_accuracy_drop),
            "serving": round(acc_old, 4),
            "candidate": round(acc_new, 4),
            "max_drop": s.max_accuracy_drop,
        }
    }
    try:
        canaries = select_canaries(
            splits.val, serving, per_class=s.canaries_per_class, seed=s.seed, device=dev
        )
        out["canaries"] = check_canaries(candidate, canaries, device=dev).to_dict()
    except ValueError as exc:  # e.g. too few correctly classified samples of a class: fail closed
        out["canaries"] = {"passed": False, "error": str(exc)}
    try:
        report = trigger_sensitivity(
            candidate, splits.test, spike_threshold=s.sensitivity_spike, reference=serving, device=dev
        )
        out["sensitivity"] = {k: v for k, v in report.to_dict().items() if k != "flip_matrix"}
    except ValueError as exc:
        out["sensitivity"] = {"passed": False, "error": str(exc)}
    return out


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
        run.update({"decision": "no contributions to train on"}, status="skipped", step="done")
        return "skipped"
    run.update(step="defenses")
    defenses = params.get("defenses")
    keep = screen(run, snap, state.settings.defenses if defenses is None else defenses)
    run.update(step="training")
    train_data = splits.train.concat(snap.data.subset(keep), name=f"{splits.train.name}+{snap.hash[:12]}")
    candidate, folder = finetune(run, train_data, params)
    run.update(step="gates")
    checks = gates(run, candidate)
    failed = [name for name, check in checks.items() if not check.get("passed")]
    metrics = {
        "test_accuracy": checks["accuracy"]["candidate"],
        "gates": {name: bool(check.get("passed")) for name, check in checks.items()},
    }
    if failed:
        return reject_candidate(run, folder, snap, checks, metrics, failed)
    return promote_candidate(run, folder, snap, keep, checks, metrics)


def run_training(run_id: int, state: ServiceState) -> TrainingRun:
    """Execute training run ``run_id`` to its end (status promoted, rejected, skipped or failed).

    Never raises for a pipeline failure: the run is marked ``failed`` with the error and a
    ``pipeline_error`` alert is raised (one transaction). Call it from a background worker.
    """
    with state.db.write() as session:
        run = get_run(session, run_id)
        if run.status != "queued":
            raise ValueError(f"training run {run_id} is {run.status}, not queued")
        update_run(session, run_id, status="running", step="starting")
    try:
        outcome = _pipeline(state, run_id, dict(run.params or {}))
    except Exception as exc:  # any failure ends the run visibly instead of killing the worker
        log.error("training run %s failed: %s\n%s", run_id, exc, traceback.format_exc())
        outcome = "failed"
        with state.db.write() as session:
            error = f"{type(exc).__name__}: {exc}"[:4000]
            update_run(session, run_id, status="failed", step="done", error=error)
            message = f"training run {run_id} failed: {exc}"[:1000]
            raise_alert(session, "pipeline_error", message, details={"run_id": run_id})
    state.metrics.training_runs.labels(outcome).inc()
    with state.db.read() as session:
        return get_run(session, run_id)
