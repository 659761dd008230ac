"""Contributions: the continuous-learning surface, and so the attacker's way in.

:func:`submit` validates a labelled upload, checks its signature, applies the signing policy,
writes the bytes to the content-addressed store (fsync + atomic rename) and commits the database
row with its audit entry, all before the caller acknowledges it. Status life cycle::

    pending ----(pipeline defense flags it)----> quarantined
    pending / quarantined / rejected --release--> accepted      (admin)
    pending / quarantined / accepted --reject---> rejected      (admin)

Training snapshots take ``accepted`` and ``pending`` contributions; only ``pending`` ones are
quarantined automatically (an admin's release is a human decision the pipeline does not undo).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from poisonlab.data.images import resolve_label
from poisonlab.service.audit import Actor, record
from poisonlab.service.db import Contribution, Database, Source, utcnow
from poisonlab.service.decode import decode_image
from poisonlab.service.errors import Rejected
from poisonlab.service.signing import verify_contribution
from poisonlab.service.storage import BlobStore, sha256_hex

STATUSES = ("pending", "accepted", "quarantined", "rejected")
SNAPSHOT_STATUSES = ("accepted", "pending")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
_TRANSITIONS = {
    "release": ("accepted", ("pending", "quarantined", "rejected")),
    "reject": ("rejected", ("pending", "quarantined", "accepted")),
}


@dataclass(frozen=True)
class Policy:
    """What unsigned and unknown-source contributions get (see ``ServiceSettings``)."""

    unsigned: str = "quarantine"
    unknown_source: str = "quarantine"


@dataclass(frozen=True)
class Upload:
    """One contribution request: the file's bytes, the label as sent, optional signature and source."""

    data: bytes
    label: str
    signature: str | None = None
    source: str | None = None


def check_source_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise Rejected(
            "bad_source",
            f"source names are 1-100 of A-Z a-z 0-9 _ . : - (starting alphanumeric), got {name!r}",
        )
    return name


def _decide(
    upload: Upload, label_name: str, sha: str, source: Source | None, policy: Policy
) -> tuple[str, str]:
    """(status, reason) for a contribution, or Rejected."""
    if upload.signature:
        if upload.source is None:
            raise Rejected("bad_signature", "a signature needs the source whose key made it (field source)")
        if source is None:
            raise Rejected(
                "unknown_source", f"source {upload.source!r} is not registered; cannot check its signature"
            )
        try:
            verify_contribution(source.public_key_pem, upload.signature, sha, label_name)
        except ValueError as exc:
            raise Rejected("bad_signature", f"{exc} (source {source.name!r})") from None
        return "pending", f"signed by {source.name}"
    if upload.source is not None and source is None:
        if policy.unknown_source == "reject":
            raise Rejected("unknown_source", f"source {upload.source!r} is not registered (policy: reject)")
        return "quarantined", f"unsigned, unknown source {upload.source!r}"
    if policy.unsigned == "reject":
        raise Rejected("unsigned", "unsigned contributions are refused by this service's policy")
    return (
        ("pending", "unsigned (policy: pending)")
        if policy.unsigned == "pending"
        else ("quarantined", "unsigned")
    )


def submit(
    db: Database,
    store: BlobStore,
    upload: Upload,
    *,
    actor: Actor,
    class_names: Sequence[str],
    input_shape: Sequence[int],
    max_pixels: int,
    policy: Policy,
) -> Contribution:
    """Validate, store durably and record one contribution; raises :class:`Rejected` for bad input."""
    decode_image(upload.data, input_shape, max_pixels=max_pixels, name="file")
    try:
        label = resolve_label(upload.label.strip(), class_names)
    except ValueError as exc:
        raise Rejected("unknown_label", str(exc)) from None
    label_name = str(class_names[label])
    source = None
    if upload.source is not None:
        check_source_name(upload.source)
        with db.read() as session:
            source = session.scalar(select(Source).where(Source.name == upload.source))
    status, reason = _decide(upload, label_name, sha256_hex(upload.data), source, policy)
    sha = store.put(upload.data)  # durable before the row that points at it
    with db.write() as session:
        row = Contribution(
            contributor=actor.name,
            source=upload.source,
            sha256=sha,
            size_bytes=len(upload.data),
            label=label,
            label_name=label_name,
            signature=upload.signature or None,
            status=status,
            reason=reason,
        )
        session.add(row)
        session.flush()
        record(session, actor, "contributions.create", f"contribution:{row.id}", f"ok: {status} ({reason})")
    return row


def review(db: Database, contribution_id: int, action: str, *, actor: Actor, note: str = "") -> Contribution:
    """Admin decision ``release`` or ``reject``; LookupError when unknown, Rejected (409) when not allowed."""
    new, allowed = _TRANSITIONS[action]
    with db.write() as session:
        row = session.get(Contribution, contribution_id)
        if row is None:
            raise LookupError(f"no contribution with id {contribution_id}")
        if row.status not in allowed:
            raise Rejected(
                "conflict", f"contribution {contribution_id} is {row.status}; cannot {action} it", 409
            )
        old = row.status
        row.status, row.updated_at = new, utcnow()
        row.reason = f"{action}d by {actor.name}" + (f": {note}" if note else "")
        record(
            session,
            actor,
            f"contributions.{action}",
            f"contribution:{contribution_id}",
            f"ok: {old} -> {new}",
        )
    return row


def list_contributions(
    db: Database, *, status: str | None = None, limit: int = 100, before_id: int | None = None
) -> list[Contribution]:
    """Newest first, optionally of one status; ``before_id`` pages backwards."""
    query = select(Contribution).order_by(Contribution.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Contribution.status == status)
    if before_id is not None:
        query = query.where(Contribution.id < before_id)
    with db.read() as session:
        return list(session.scalars(query))


def get_contribution(db: Database, contribution_id: int) -> Contribution:
    with db.read() as session:
        row = session.get(Contribution, contribution_id)
    if row is None:
        raise LookupError(f"no contribution with id {contribution_id}")
    return row


def snapshot(db: Database) -> tuple[list[Contribution], str]:
    """Accepted + pending contributions in id order and the sha256 identifying that exact set."""
    query = select(Contribution).where(Contribution.status.in_(SNAPSHOT_STATUSES)).order_by(Contribution.id)
    with db.read() as session:
        rows = list(session.scalars(query))
    h = hashlib.sha256()
    for row in rows:
        h.update(f"{row.id}\t{row.sha256}\t{row.label}\n".encode())
    return rows, h.hexdigest()


def quarantine(db: Database, reasons: dict[int, str], *, actor: Actor) -> int:
    """Quarantine the still-pending contributions in ``reasons`` (id -> reason); returns how many."""
    changed = 0
    with db.write() as session:
        for row in session.scalars(select(Contribution).where(Contribution.id.in_(list(reasons)))):
            if row.status != "pending":
                continue
            row.status, row.reason, row.updated_at = "quarantined", reasons[row.id], utcnow()
            record(
                session, actor, "contributions.quarantine", f"contribution:{row.id}", f"ok: {reasons[row.id]}"
            )
            changed += 1
    return changed


def accept(db: Database, ids: Sequence[int], *, actor: Actor, reason: str) -> int:
    """Mark pending contributions accepted (they went into a promoted model)."""
    changed = 0
    with db.write() as session:
        for row in session.scalars(select(Contribution).where(Contribution.id.in_(list(ids)))):
            if row.status == "pending":
                row.status, row.reason, row.updated_at = "accepted", reason, utcnow()
                changed += 1
        record(session, actor, "contributions.accept", f"{changed} contributions", f"ok: {reason}")
    return changed
