"""Registered data sources: a name and the Ed25519 public key its contributions are signed with.

The functions take the caller's session and never commit (see :mod:`poisonlab.service.registry`).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from poisonlab.service.audit import Actor, record
from poisonlab.service.contributions import check_source_name
from poisonlab.service.db import Source
from poisonlab.service.errors import Rejected
from poisonlab.service.signing import load_public_key, public_key_fingerprint


def add_source(session: Session, name: str, public_key_pem: str, *, actor: Actor) -> Source:
    """Register ``name`` with its PEM public key; Rejected for a bad key, a taken name or a key
    that another source holds (409)."""
    check_source_name(name)
    try:
        key = load_public_key(public_key_pem)
    except ValueError as exc:
        raise Rejected("bad_public_key", str(exc)) from None
    if session.scalar(select(Source.id).where(Source.name == name)) is not None:
        raise Rejected("conflict", f"source {name!r} is registered already", 409)
    fingerprint = public_key_fingerprint(key)
    holder = session.scalar(select(Source.name).where(Source.fingerprint == fingerprint))
    if holder is not None:  # one key, one source: else a signature would not say who sent the data
        raise Rejected("conflict", f"this public key is registered already, as source {holder!r}", 409)
    row = Source(name=name, public_key_pem=public_key_pem.strip() + "\n", fingerprint=fingerprint)
    session.add(row)
    session.flush()
    record(session, actor, "sources.add", f"source:{name}", f"ok: key {row.fingerprint[:16]}")
    return row


def list_sources(session: Session) -> list[Source]:
    """Every registered source, by name."""
    return list(session.scalars(select(Source).order_by(Source.name)))
