"""The append-only audit log: who did what to which object, when, and how it ended.

Successful writes are recorded by the library function that performs them, in the same database
transaction as the change itself (a change without its audit entry cannot be committed). Refused
writes (401/403, bad input, conflicts) are recorded by the service's middleware after the
response status is known (:func:`record_refusal`). Entries are never updated or deleted (see
:class:`poisonlab.service.db.AuditEntry`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from poisonlab.service.db import AuditEntry, Database


@dataclass(frozen=True)
class Actor:
    """Who acts: an API key's name and role, or a system component (``pipeline``, ``cli``)."""

    name: str
    role: str | None = None


SYSTEM = Actor("system")
ANONYMOUS = Actor("anonymous")


def record(session: Session, actor: Actor, action: str, target: str = "", outcome: str = "ok") -> None:
    """Add an entry to the open transaction of ``session`` (it commits with the change)."""
    session.add(
        AuditEntry(
            actor=actor.name[:100],
            role=actor.role,
            action=action[:80],
            target=str(target)[:200],
            outcome=outcome,
        )
    )


def record_refusal(db: Database, actor: Actor, action: str, target: str, status: int, detail: str) -> None:
    """Record a refused write in its own transaction (the request's transaction, if any, was rolled
    back with the refusal, so the entry cannot ride on it)."""
    with db.write() as session:
        record(session, actor, action, target, f"refused {status}: {detail}"[:2000])


def list_entries(
    session: Session, *, limit: int = 100, before_id: int | None = None, actor: str | None = None
) -> list[AuditEntry]:
    """Newest first; ``before_id`` pages backwards."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    return list(session.scalars(query))
