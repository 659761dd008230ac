"""Contributions: the continuous-learning surface, and so the attacker's way in.

:func:`submit` validates a labelled upload, checks its signature, applies the signing policy,
writes the bytes to the content-addressed store (fsync + atomic rename) and commits the database
row with its audit entry, all before the caller acknowledges it. Status life cycle::

    pending ----(pipeline defense flags it)----> quarantined
    pending / quarantined / rejected --release--> accepted      (admin)
    pending / quarantined / accepted --reject---> rejected      (admin)

Training snapshots take ``accepted`` and ``pending`` contributions; only ``pending`` ones are
quarantined automatically (an admin's release is a human decision the pipeline does not undo).

The functions take the caller's session and never commit (see :mod:`poisonlab.service.registry`):
an accepted contribution's status changes in the same transaction as the promotion it went into.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from poisonlab.data.image_limits import ImageLimits
from poisonlab.data.images import resolve_label
from poisonlab.service.audit import Actor, record
from poisonlab.service.db import Contribution, Source, utcnow
from poisonlab.service.decode import decode_image
from poisonlab.service.decode_budget import DecodeBudget
from poisonlab.service.errors import NotFound, Rejected
from poisonlab.service.signing import (
    DEFAULT_MAX_SKEW,
    SignedToken,
    StaleSignature,
    claim_nonce,
    verify_contribution,
)
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
    """What unsigned and unknown-source contributions get, and how old a signature may be
    (see ``ServiceSettings``)."""

    unsigned: str = "quarantine"
    unknown_source: str = "quarantine"
    signature_max_skew: float = DEFAULT_MAX_SKEW


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


def _check_signature(
    session: Session, upload: Upload, label_name: str, sha: str, source: Source, policy: Policy, now: float
) -> None:
    """Rejected unless the signature verifies, is inside the skew window and its nonce is fresh."""
    skew = policy.signature_max_skew
    try:
        token: SignedToken = verify_contribution(
            source.public_key_pem, upload.signature, sha, label_name, now=now, max_skew=skew
        )
    except StaleSignature as exc:
        raise Rejected("stale_signature", f"{exc} (source {source.name!r})") from None
    except ValueError as exc:
        raise Rejected("bad_signature", f"{exc} (source {source.name!r})") from None
    if not claim_nonce(session, source.name, token, max_skew=skew, now=now):
        raise Rejected(
            "replayed_signature",
            f"this signature's nonce was already used by source {source.name!r}: a signed upload is "
            "accepted once (sign every upload afresh)",
            409,
        )


def _decide(
    session: Session,
    upload: Upload,
    label_name: str,
    sha: str,
    source: Source | None,
    policy: Policy,
    now: float,
) -> tuple[str, str]:
    """(status, reason) for a contribution, or Rejected; a valid signature's nonce is spent."""
    if upload.signature:
        if upload.source is None:
            raise Rejected("bad_signature", "a signature needs the source whose key made it (field source)")
        if source is None:
            raise Rejected(
                "unknown_source", f"source {upload.source!r} is not registered; cannot check its signature"
            )
        _check_signature(session, upload, label_name, sha, source, policy, now)
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


def _label(sent: str, class_names: Sequence[str]) -> tuple[int, str]:
    """(index, class name) of a label sent as a name or an index; Rejected when it names no class."""
    try:
        label = resolve_label(sent.strip(), class_names)
    except ValueError as exc:
        raise Rejected("unknown_label", str(exc)) from None
    return label, str(class_names[label])


def _source(session: Session, name: str) -> Source | None:
    """The registered source ``name`` (None when unknown: the policy decides)."""
    check_source_name(name)
    return session.scalar(select(Source).where(Source.name == name))


def submit(
    session: Session,
    store: BlobStore,
    upload: Upload,
    *,
    actor: Actor,
    class_names: Sequence[str],
    input_shape: Sequence[int],
    max_pixels: int,
    policy: Policy,
    now: float | None = None,
    limits: ImageLimits | None = None,
    budget: DecodeBudget | None = None,
) -> Contribution:
    """Validate, store durably and record one contribution.

    Parameters
    ----------
    session : Session
        A write session. The row and its audit entry are durable when the caller commits, which
        must happen before the contribution is acknowledged; the blob is durable before the row.
    store : BlobStore
        Where the file's bytes go (fsync-ed, content-addressed).
    upload : Upload
        File, label, optional signature and source, as sent.
    actor : Actor
        The contributor (the row's ``contributor``, audited).
    class_names, input_shape : sequence
        Of the serving model: the label must name a class, the image must decode to this shape.
    max_pixels : int
        Decompression-bomb limit of the decoder (used without ``limits``).
    policy : Policy
        What unsigned and unknown-source contributions get, and the signatures' skew window.
    now : float, optional
        The time signatures are checked against (``time.time()`` by default).
    limits : ImageLimits, optional
        Every decode-cost limit of the file (the service's ``settings.image_limits``).
    budget : DecodeBudget, optional
        The process's decode budget, reserved while the file is decoded (503 ``decode_busy``).

    Returns
    -------
    Contribution
        The new row (its id is assigned).

    Raises
    ------
    Rejected
        Bad image, unknown label, bad, stale or replayed (409) signature, or refused by the policy.
    """
    decode_image(upload.data, input_shape, max_pixels=max_pixels, limits=limits, name="file", budget=budget)
    label, label_name = _label(upload.label, class_names)
    source = None if upload.source is None else _source(session, upload.source)
    now = time.time() if now is None else now
    status, reason = _decide(session, upload, label_name, sha256_hex(upload.data), source, policy, now)
    sha = store.put(upload.data)  # durable before the row that points at it
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
    session.flush()  # assigns the id the audit entry names
    record(session, actor, "contributions.create", f"contribution:{row.id}", f"ok: {status} ({reason})")
    return row


def review(
    session: Session, contribution_id: int, action: str, *, actor: Actor, note: str = ""
) -> Contribution:
    """Admin decision ``release`` or ``reject``; NotFound when unknown, Rejected (409) when not allowed."""
    new, allowed = _TRANSITIONS[action]
    row = get_contribution(session, contribution_id)
    if row.status not in allowed:
        raise Rejected("conflict", f"contribution {contribution_id} is {row.status}; cannot {action} it", 409)
    old = row.status
    row.status, row.updated_at = new, utcnow()
    row.reason = f"{action}d by {actor.name}" + (f": {note}" if note else "")
    record(
        session, actor, f"contributions.{action}", f"contribution:{contribution_id}", f"ok: {old} -> {new}"
    )
    return row


def list_contributions(
    session: Session, *, status: str | None = None, limit: int = 100, before_id: int | None = None
) -> list[Contribution]:
    """Newest first, optionally of one status; ``before_id`` pages backwards."""
    query = select(Contribution).order_by(Contribution.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Contribution.status == status)
    if before_id is not None:
        query = query.where(Contribution.id < before_id)
    return list(session.scalars(query))


def get_contribution(session: Session, contribution_id: int) -> Contribution:
    """The contribution ``contribution_id``; NotFound when unknown."""
    row = session.get(Contribution, contribution_id)
    if row is None:
        raise NotFound(f"no contribution with id {contribution_id}")
    return row


def snapshot(session: Session) -> tuple[list[Contribution], str]:
    """Accepted + pending contributions in id order and the sha256 identifying that exact set."""
    query = select(Contribution).where(Contribution.status.in_(SNAPSHOT_STATUSES)).order_by(Contribution.id)
    rows = list(session.scalars(query))
    h = hashlib.sha256()
    for row in rows:
        h.update(f"{row.id}\t{row.sha256}\t{row.label}\n".encode())
    return rows, h.hexdigest()


def quarantine(session: Session, reasons: dict[int, str], *, actor: Actor) -> int:
    """Quarantine the still-pending contributions in ``reasons`` (id -> reason); returns how many."""
    changed = 0
    for row in session.scalars(select(Contribution).where(Contribution.id.in_(list(reasons)))):
        if row.status != "pending":  # an admin's decision (or an earlier run's) stands
            continue
        row.status, row.reason, row.updated_at = "quarantined", reasons[row.id], utcnow()
        record(session, actor, "contributions.quarantine", f"contribution:{row.id}", f"ok: {reasons[row.id]}")
        changed += 1
    return changed


def accept(session: Session, ids: Sequence[int], *, actor: Actor, reason: str) -> int:
    """Mark pending contributions accepted (they went into a promoted model); returns how many."""
    changed = 0
    for row in session.scalars(select(Contribution).where(Contribution.id.in_(list(ids)))):
        if row.status == "pending":
            row.status, row.reason, row.updated_at = "accepted", reason, utcnow()
            changed += 1
    record(session, actor, "contributions.accept", f"{changed} contributions", f"ok: {reason}")
    return changed
