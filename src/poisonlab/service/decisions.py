"""What a training run decides about contributions and its candidate model.

:func:`quarantine_rows` quarantines contributions on evidence, pending ones and ones a previous
promotion accepted alike (everything is screened again on every run); an admin's release stands.

:func:`promote_candidate` registers the candidate, makes it the serving version (the old one
retires), accepts the pending contributions it was trained on and closes the run with its report,
all in a single commit: a crash before the commit leaves the old model serving, the contributions
pending and the run ``running`` (marked interrupted at the next start); a crash after it leaves
all of it done. The model server loads the new weights after the commit. :func:`reject_candidate`
stores the candidate as ``rejected``, quarantines the new contributions it was trained on with the
failed gates as the reason (a plain retry must not train on them again), and records its alerts
and the run's outcome, in one transaction; the old model keeps serving.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from poisonlab.models.checkpoint import load_model
from poisonlab.service import contributions as contrib
from poisonlab.service.alerts import raise_alert
from poisonlab.service.audit import Actor, record
from poisonlab.service.db import Contribution, utcnow
from poisonlab.service.registry import lineage, promote, register_version, serving_version
from poisonlab.service.state import reference_distribution

if TYPE_CHECKING:  # the pipeline imports this module: its types only for annotations
    from poisonlab.service.pipeline import Run, Snapshot

#: the reason :func:`poisonlab.service.contributions.review` writes on a release
RELEASED_PREFIX = "released by "
#: the reason :func:`promote_candidate` writes on the contributions it accepts
_TRAINED_INTO = re.compile(r"^trained into (\S+) \(run \d+\)")


def identity(row: Contribution) -> str:
    """Who a contribution counts against: its signing source, else the key that sent it (an
    unsigned ``source`` field is only a claim)."""
    return f"source:{row.source}" if row.signature and row.source else f"key:{row.contributor}"


def admin_released(row: Contribution) -> bool:
    """Accepted by an admin's release rather than by a promotion."""
    return row.status == "accepted" and (row.reason or "").startswith(RELEASED_PREFIX)


def quarantine_rows(session: Session, reasons: dict[int, str], *, actor: Actor) -> int:
    """Quarantine the contributions in ``reasons`` (id -> reason) that are pending or were accepted
    by a promotion; an admin's decision (a release, a rejection) stands. Returns how many changed."""
    changed = 0
    for row in session.scalars(select(Contribution).where(Contribution.id.in_(list(reasons)))):
        if not (row.status == "pending" or (row.status == "accepted" and not admin_released(row))):
            continue
        old = row.status
        row.status, row.reason, row.updated_at = "quarantined", reasons[row.id][:2000], utcnow()
        record(
            session, actor, "contributions.quarantine", f"contribution:{row.id}",
            f"ok: {old} -> quarantined: {reasons[row.id]}"[:2000],
        )  # fmt: skip
        changed += 1
    return changed


def roll_back_from(session: Session, ids: list[int], *, actor: Actor) -> str | None:
    """Stop serving a model trained on contributions now found poisoned; returns the id served instead.

    Quarantining such contributions keeps them out of the next model, but the serving one has
    learnt them already, and a fine-tune does not unlearn a backdoor. So the serving model's
    lineage is searched for the oldest version that accepted one of ``ids`` (their reason names
    it), and that version's parent, trained without them, serves again (audited as a rollback).
    Call it before their reasons are overwritten. None when the serving model never learnt them.
    """
    rows = session.scalars(select(Contribution).where(Contribution.id.in_(ids)))
    models = {m.group(1) for row in rows if (m := _TRAINED_INTO.match(row.reason or ""))}
    serving = serving_version(session)
    if not models or serving is None:
        return None
    chain = lineage(session, serving.id)  # newest first
    hits = [i for i, version in enumerate(chain) if version.id in models]
    if not hits or chain[max(hits)].parent_id is None:
        return None
    target = chain[max(hits)].parent_id
    promote(session, target, actor=actor, action="models.rollback")
    return target


def reject_candidate(
    run: Run, folder: Path, snap: Snapshot, keep: np.ndarray, checks: dict, metrics: dict, failed: list[str]
) -> str:
    """Keep the serving model; store the candidate as ``rejected``, quarantine the new
    contributions it was trained on, its alerts and the run's outcome in one transaction.

    Parameters
    ----------
    run : Run
        The run's context (service, id, serving model, trusted splits, audit actor).
    folder : Path
        The saved candidate.
    snap : Snapshot
        The contributions of the run (their hash is recorded with the candidate).
    keep : numpy.ndarray
        Boolean mask over ``snap``: what the candidate was trained on. Its pending contributions
        are quarantined with the failed gates as the reason.
    checks : dict
        Every gate's verdict and evidence (the run's report).
    metrics : dict
        Stored with the candidate version.
    failed : list of str
        Names of the failed gates.

    Returns
    -------
    str
        The run's outcome, ``"rejected"``.
    """
    with run.db.write() as session:
        row = register_version(
            session,
            folder,
            actor=run.actor,
            status="rejected",
            metrics=metrics,
            snapshot_hash=snap.hash,
            run_id=run.run_id,
        )
        message = (
            f"training run {run.run_id}: candidate {row.id} failed the {', '.join(failed)} gate(s); "
            f"{run.loaded.version_id} keeps serving"
        )
        reason = f"rejected run {run.run_id}: candidate {row.id} failed the {', '.join(failed)} gate(s)"
        new = snap.ids[keep & snap.pending].tolist()
        held = quarantine_rows(session, {int(i): reason for i in new}, actor=run.actor)
        details = {"run_id": run.run_id, "failed": failed, "quarantined": held}
        raise_alert(session, "gate_failed", message, severity="critical", model_id=row.id, details=details)
        if "canaries" in failed:
            raise_alert(
                session,
                "canary_regression",
                f"candidate {row.id} of run {run.run_id} misclassifies canary records",
                severity="critical",
                model_id=row.id,
                details=checks["canaries"],
            )
        run.update_in(
            session,
            {
                "gates": checks,
                "decision": f"rejected: {', '.join(failed)} failed",
                "quarantined_after_rejection": held,
            },
            status="rejected",
            step="done",
            candidate_model_id=row.id,
        )
    for gate in failed:  # counted once the outcome is committed
        run.state.metrics.gate_failures.labels(gate).inc()
    return "rejected"


def promote_candidate(
    run: Run, folder: Path, snap: Snapshot, keep: np.ndarray, checks: dict, metrics: dict
) -> str:
    """Register the candidate, serve it, accept its contributions and close the run: one commit.

    Parameters
    ----------
    run : Run
        The run's context (service, id, serving model, trusted splits, audit actor).
    folder : Path
        The saved candidate; its weights are loaded (hash-checked) for its reference distribution.
    snap : Snapshot
        The contributions of the run.
    keep : numpy.ndarray
        Boolean mask over ``snap``: what the candidate was trained on. Its pending
        contributions become ``accepted``; quarantined ones stay so.
    checks : dict
        Every gate's verdict and evidence (the run's report).
    metrics : dict
        Stored with the candidate version.

    Returns
    -------
    str
        The run's outcome, ``"promoted"``.
    """
    candidate, _ = load_model(folder)
    reference = reference_distribution(candidate, run.splits, run.state.settings.device)
    used = snap.ids[keep & snap.pending].tolist()
    with run.db.write() as session:
        row = register_version(
            session,
            folder,
            actor=run.actor,
            metrics=metrics,
            snapshot_hash=snap.hash,
            reference=reference,
            run_id=run.run_id,
        )
        promote(session, row.id, actor=run.actor)
        reason = f"trained into {row.id} (run {run.run_id})"
        contrib.accept(session, used, actor=run.actor, reason=reason)
        run.update_in(
            session,
            {"gates": checks, "decision": f"promoted {row.id}", "accepted": len(used)},
            status="promoted",
            step="done",
            candidate_model_id=row.id,
        )
    run.state.server.reload()  # after the commit: the server reads the serving row from the database
    return "promoted"
