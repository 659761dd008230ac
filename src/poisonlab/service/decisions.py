"""The end of a training run: promote the candidate or reject it, each in one transaction.

:func:`promote_candidate` registers the candidate, makes it the serving version (the old one
retires), accepts the pending contributions it was trained on and closes the run with its report,
all in a single commit: a crash before the commit leaves the old model serving, the contributions
pending and the run ``running`` (marked interrupted at the next start); a crash after it leaves
all of it done. The model server loads the new weights after the commit. :func:`reject_candidate`
stores the candidate as ``rejected``, its alerts and the run's outcome together; the old model
keeps serving.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from poisonlab.models.checkpoint import load_model
from poisonlab.service import contributions as contrib
from poisonlab.service.alerts import raise_alert
from poisonlab.service.registry import promote, register_version
from poisonlab.service.state import reference_distribution

if TYPE_CHECKING:  # the pipeline imports this module: its types only for annotations
    from poisonlab.service.pipeline import Run, Snapshot


def reject_candidate(
    run: Run, folder: Path, snap: Snapshot, checks: dict, metrics: dict, failed: list[str]
) -> str:
    """Keep the serving model; store the candidate as ``rejected``, its alerts and the run's outcome
    in one transaction.

    Parameters
    ----------
    run : Run
        The run's context (service, id, serving model, trusted splits, audit actor).
    folder : Path
        The saved candidate.
    snap : Snapshot
        The contributions it was trained on (their hash is recorded with the candidate).
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
        details = {"run_id": run.run_id, "failed": failed}
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
            {"gates": checks, "decision": f"rejected: {', '.join(failed)} failed"},
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
