"""The append-only audit log: who did what to which object, when, and how it ended.

Successful writes are recorded by the library function that performs them, in the same database
transaction as the change itself (a change without its audit entry cannot be committed). Refused
writes (401/403, bad input, conflicts) are recorded by the service's middleware after the
response status is known (:func:`record_refusal`), with the client's address in the target.
Entries are never updated or deleted (see :class:`poisonlab.service.db.AuditEntry`).

Refusals without a valid key cost an attacker nothing, so one entry each would let anyone flood
the append-only log (3,597 rows in 10 s). They are counted in the metrics instead, and
:class:`AnonymousRefusals` lets at most one entry per client address per window through, which
carries the number of refusals from that address left out since its previous entry.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
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


def record_refusal(
    db: Database,
    actor: Actor,
    action: str,
    target: str,
    status: int,
    detail: str,
    *,
    client: str | None = None,
    left_out: int = 0,
) -> None:
    """Record a refused write in its own transaction (the request's transaction, if any, was rolled
    back with the refusal, so the entry cannot ride on it).

    ``client`` (the peer address) is appended to the target as ``from <address>``; ``left_out``
    is the number of earlier refusals this entry stands for (see :class:`AnonymousRefusals`).
    """
    if client is not None:
        target = f"{target[:150]} from {client[:45]}"
    outcome = f"refused {status}: {detail}"
    if left_out:
        outcome += f" [+{left_out} more refused requests without a valid key from this address, not logged]"
    with db.write() as session:
        record(session, actor, action, target, outcome[:2000])


class AnonymousRefusals:
    """Decides which refusals without a valid key reach the audit log: one per address per window.

    Parameters
    ----------
    window : float
        Seconds; ``0`` logs every refusal.
    max_addresses : int
        Addresses remembered; the least recently refused one is forgotten beyond it.
    clock : callable
        Monotonic seconds (injected by the tests).
    """

    def __init__(
        self,
        window: float = 60.0,
        *,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window, self.max_addresses, self.clock = window, max_addresses, clock
        self._seen: OrderedDict[str, list[float]] = OrderedDict()  # address -> [last entry, left out]
        self._lock = threading.Lock()

    def admit(self, address: str) -> int | None:
        """None: count only; otherwise write an entry standing for this many left-out refusals too."""
        now = self.clock()
        with self._lock:
            seen = self._seen.get(address)
            if seen is not None and now - seen[0] < self.window:
                seen[1] += 1
                return None
            left_out = 0 if seen is None else int(seen[1])
            self._seen[address] = [now, 0]
            self._seen.move_to_end(address)
            if len(self._seen) > self.max_addresses:
                self._seen.popitem(last=False)
            return left_out


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
