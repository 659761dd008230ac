"""Access control: API keys with ordered roles.

Roles are ordered ``viewer < contributor < trainer < admin``; an endpoint declares the lowest role
it needs with a role dependency of :mod:`poisonlab.service.deps` (``TrainerDep``) and every higher
role passes too. Keys are random
(``imrecs_`` + 43 URL-safe characters, 256 bits), shown once when created and stored only as their
sha256: a stolen database does not reveal usable keys. Clients send a key as ``X-API-Key: <key>``
or ``Authorization: Bearer <key>``. A missing or unknown key gives 401, a key below the endpoint's
role 403. Key management takes the caller's session and never commits (see
:mod:`poisonlab.service.registry`).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from poisonlab.service.audit import Actor, record
from poisonlab.service.db import ApiKey, Database, utcnow
from poisonlab.service.errors import NotFound, Rejected
from poisonlab.service.schemas import no_control

ROLES: tuple[str, ...] = ("viewer", "contributor", "trainer", "admin")
KEY_PREFIX = "imrecs_"


def role_rank(role: str) -> int:
    """Position of ``role`` in :data:`ROLES` (ValueError for an unknown role)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {list(ROLES)}")
    return ROLES.index(role)


def hash_key(key: str) -> str:
    """The stored form of a key: its sha256, hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(session: Session, *, name: str, role: str, actor: Actor) -> tuple[str, ApiKey]:
    """Create a key; returns (the key, shown only now, its row). ValueError for a taken name."""
    role_rank(role)
    name = name.strip()
    if not name or len(name) > 100 or any(c in name for c in "\r\n\t"):
        raise ValueError(f"key name must be 1-100 printable characters on one line, got {name!r}")
    try:  # the API's rule for stored text (schemas.Text): the CLI creates keys without the API
        no_control(name)
    except ValueError as exc:
        raise ValueError(f"key name {exc}") from None
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise ValueError(f"a key named {name!r} exists already; names identify contributors")
    row = ApiKey(name=name, role=role, key_hash=hash_key(key), prefix=key[: len(KEY_PREFIX) + 4])
    session.add(row)
    session.flush()  # assigns the id the audit entry names
    record(session, actor, "keys.create", f"key:{row.id}", f"ok: {name} ({role})")
    return key, row


def revoke_key(session: Session, key_id: int, *, actor: Actor) -> ApiKey:
    """Revoke a key (idempotent); NotFound when there is no such key, :class:`Rejected` (409)
    for the last active admin key: without one nobody could manage keys through the API."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no API key with id {key_id}")
    if row.revoked_at is None:
        if row.role == "admin" and _active_admins(session) <= 1:
            raise Rejected(
                "last_admin",
                f"key {key_id} ({row.name}) is the last active admin key; create another admin key "
                "before revoking it",
                status=409,
            )
        row.revoked_at = utcnow()
    record(session, actor, "keys.revoke", f"key:{key_id}", f"ok: {row.name}")
    return row


def _active_admins(session: Session) -> int:
    query = select(func.count()).select_from(ApiKey)
    return session.scalar(query.where(ApiKey.role == "admin", ApiKey.revoked_at.is_(None))) or 0


def list_keys(session: Session) -> list[ApiKey]:
    """Every key (hashes and prefixes only), oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def authenticate(db: Database, key: str) -> Actor | None:
    """The actor owning ``key``, or None for an unknown or revoked key."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    query = select(ApiKey.name, ApiKey.role, ApiKey.revoked_at).where(ApiKey.key_hash == hash_key(key))
    with db.engine.connect() as conn:  # a plain read on every request: no ORM session needed
        row = conn.execute(query).first()
    if row is None or row.revoked_at is not None:
        return None
    return Actor(row.name, row.role)


class KeyCache:
    """Remembers accepted keys for ``ttl`` seconds: the key lookup was ~15% of a prediction's CPU.

    Revoking through this process (API) clears it at once; a revocation made elsewhere (the CLI,
    another server process) takes effect within ``ttl``. Unknown keys are never cached.
    """

    def __init__(self, db: Database, ttl: float = 2.0) -> None:
        self.db, self.ttl = db, ttl
        self._seen: dict[str, tuple[float, Actor]] = {}
        self._lock = threading.Lock()

    def authenticate(self, key: str) -> Actor | None:
        digest = hash_key(key)
        now = time.monotonic()
        with self._lock:
            hit = self._seen.get(digest)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        actor = authenticate(self.db, key)
        with self._lock:
            if actor is None:
                self._seen.pop(digest, None)
            else:
                if len(self._seen) > 10_000:  # bound memory: forget everything, it refills
                    self._seen.clear()
                self._seen[digest] = (now, actor)
        return actor

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()
