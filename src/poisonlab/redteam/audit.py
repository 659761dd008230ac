"""The audit trail as the red team reads it back (admin key): entries since a point, grouped.

Used by the walk-through (:mod:`poisonlab.redteam.walkthrough`) to show who did what, refused
writes included, while it attacked.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from poisonlab.redteam.walkthrough import ImRecS

__all__ = ["audit_since", "audit_summary"]


def audit_since(api: ImRecS, after_id: int) -> list[dict]:
    """Audit entries with id > ``after_id``, oldest first (admin key)."""
    entries, before = [], None
    while True:
        page = api.get("/v1/audit", "admin", limit=1000, **({} if before is None else {"before_id": before}))
        entries += [e for e in page if e["id"] > after_id]
        if len(page) < 1000 or page[-1]["id"] <= after_id:
            return entries[::-1]
        before = page[-1]["id"]


def audit_summary(entries: list[dict]) -> list[dict]:
    """Entries grouped by (actor, action, outcome kind), in order of first appearance."""
    groups: Counter = Counter()
    for e in entries:
        outcome = e["outcome"].split(":")[0]  # "ok" or "refused 403"
        groups[(e["actor"], e["role"] or "-", e["action"], outcome)] += 1
    return [
        {"actor": a, "role": r, "action": act, "outcome": o, "count": n}
        for (a, r, act, o), n in groups.items()
    ]
