"""Operator alerts, kept in the database: raised by the pipeline and the shift monitor.

Kinds: ``gate_failed`` (a candidate model failed a promotion gate and was not promoted),
``canary_regression`` (a candidate misclassified a canary record), ``prediction_shift`` (served
predictions drifted from the model's validation distribution), ``pipeline_error`` (a training
run could not finish), ``base_flagged`` (the screen flagged a block of one class of the trusted
base data: the samples stay in training, someone should look at them), ``flagged_accepted``
(the screen flagged contributions that a served model was trained on or that an admin released:
the former are quarantined again, the latter left out of the run). An alert stays open until
an admin resolves it; a deduplicated alert is
not raised again while one of the same kind for the same model is open. The functions take the
caller's session and never commit (see :mod:`poisonlab.service.registry`).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from poisonlab.service.audit import SYSTEM, Actor, record
from poisonlab.service.db import Alert, utcnow
from poisonlab.service.errors import NotFound

KINDS = (
    "gate_failed",
    "canary_regression",
    "prediction_shift",
    "pipeline_error",
    "base_flagged",
    "flagged_accepted",
)
SEVERITIES = ("info", "warning", "critical")


def raise_alert(
    session: Session,
    kind: str,
    message: str,
    *,
    severity: str = "warning",
    model_id: str | None = None,
    details: dict | None = None,
    dedupe: bool = False,
) -> Alert | None:
    """Store an alert; with ``dedupe`` returns None when an open one of this kind and model exists."""
    if kind not in KINDS:
        raise ValueError(f"unknown alert kind {kind!r}; expected one of {list(KINDS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}; expected one of {list(SEVERITIES)}")
    if dedupe:
        query = select(Alert.id).where(
            Alert.kind == kind, Alert.model_id == model_id, Alert.resolved_at.is_(None)
        )
        if session.scalar(query) is not None:
            return None
    alert = Alert(kind=kind, severity=severity, message=message, model_id=model_id, details=details or {})
    session.add(alert)
    session.flush()  # assigns the id the audit entry names
    record(session, SYSTEM, "alerts.raise", f"alert:{alert.id}", f"ok: {kind}: {message}"[:2000])
    return alert


def list_alerts(
    session: Session, *, open_only: bool = False, kind: str | None = None, limit: int = 100
) -> list[Alert]:
    """Newest first, optionally only open ones or one kind."""
    query = select(Alert).order_by(Alert.id.desc()).limit(limit)
    if open_only:
        query = query.where(Alert.resolved_at.is_(None))
    if kind is not None:
        query = query.where(Alert.kind == kind)
    return list(session.scalars(query))


def resolve_alert(session: Session, alert_id: int, *, actor: Actor) -> Alert:
    """Mark an alert resolved (idempotent); NotFound when unknown."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"no alert with id {alert_id}")
    if alert.resolved_at is None:
        alert.resolved_at = utcnow()
    record(session, actor, "alerts.resolve", f"alert:{alert_id}")
    return alert
