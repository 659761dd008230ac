"""The service's database: SQLAlchemy 2.x tables, engine set-up and transaction helpers.

Portable by construction: only ORM statements and generic column types (``JSON``, timezone-aware
``DateTime``), so the same code runs on SQLite (the default) and PostgreSQL. SQLite gets the
settings a concurrent server needs (write-ahead log, ``synchronous=FULL`` so an acknowledged
commit survives a crash, a busy timeout) and ``BEGIN IMMEDIATE`` for write transactions: a deferred
transaction that upgrades from read to write fails at once with ``SQLITE_BUSY`` under concurrency
instead of waiting for the lock.

The audit log is append-only at the ORM level: updating or deleting an :class:`AuditEntry` raises.
Columns added to a table after a database was created are added to it at start-up
(:func:`add_missing_columns`: ``ALTER TABLE ... ADD COLUMN``, nullable or with a server default).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    inspect,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


def utcnow() -> datetime:
    return datetime.now(UTC)


#: Row ids: 64-bit like the API's (up to 2**62). BIGINT (BIGSERIAL keys) on PostgreSQL, whose INTEGER is
#: 32-bit; INTEGER on SQLite, where only an INTEGER PRIMARY KEY is the auto-incremented 64-bit rowid.
RowId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class ApiKey(Base):
    """An API key: only its sha256 is stored; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Source(Base):
    """A registered data source and its Ed25519 public key (PEM)."""

    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Contribution(Base):
    """A labelled image sent by a user; the bytes live in the blob store under ``sha256``."""

    __tablename__ = "contributions"
    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    contributor: Mapped[str] = mapped_column(String(100), index=True)
    source: Mapped[str | None] = mapped_column(String(100), default=None)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    label: Mapped[int] = mapped_column(Integer)
    label_name: Mapped[str] = mapped_column(String(100))
    signature: Mapped[str | None] = mapped_column(Text, default=None)
    status: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersion(Base):
    """A model the service knows: serving, retired, candidate (never served) or rejected by a gate."""

    __tablename__ = "model_versions"
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    parent_id: Mapped[str | None] = mapped_column(String(100), default=None)
    status: Mapped[str] = mapped_column(String(20), index=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    data_snapshot_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    reference_distribution: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    training_run_id: Mapped[int | None] = mapped_column(RowId, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    served_at: Mapped[datetime | None] = mapped_column(default=None)


class TrainingRun(Base):
    """One pass of the continuous-learning pipeline and its report."""

    __tablename__ = "training_runs"
    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    requested_by: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), index=True)
    step: Mapped[str] = mapped_column(String(40), default="queued")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    snapshot_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    base_model_id: Mapped[str | None] = mapped_column(String(100), default=None)
    candidate_model_id: Mapped[str | None] = mapped_column(String(100), default=None)
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # which process executes it, when that process last said it is alive, and how many times a
    # process has claimed it (see poisonlab.service.run_claims)
    claimed_by: Mapped[str | None] = mapped_column(String(100), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AuditEntry(Base):
    """Append-only record of every write and every refused write."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    role: Mapped[str | None] = mapped_column(String(20), default=None)
    action: Mapped[str] = mapped_column(String(80))
    target: Mapped[str] = mapped_column(String(200), default="")
    outcome: Mapped[str] = mapped_column(Text)


class Alert(Base):
    """An operator alert: a failed gate, a canary regression, a prediction-distribution shift."""

    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(RowId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    severity: Mapped[str] = mapped_column(String(20))
    message: Mapped[str] = mapped_column(Text)
    model_id: Mapped[str | None] = mapped_column(
        String(100), ForeignKey("model_versions.id", ondelete="SET NULL"), default=None
    )
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)


class SignatureNonce(Base):
    """A signature nonce a source has used, kept while its timestamp is inside the skew window.

    The primary key makes a second use of a nonce fail even between processes (see
    :func:`poisonlab.service.signing.claim_nonce`); ``expires_at`` is in seconds since 1970.
    """

    __tablename__ = "signature_nonces"
    source: Mapped[str] = mapped_column(String(100), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)


@event.listens_for(AuditEntry, "before_update")
@event.listens_for(AuditEntry, "before_delete")
def _append_only(mapper: Any, connection: Any, target: AuditEntry) -> None:
    raise ValueError("the audit log is append-only: entries cannot be changed or deleted")


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN itself
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000", "foreign_keys=ON"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


_URL_FORMS = "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/NAME"


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the tables created (idempotent).

    Raises
    ------
    ValueError
        ``url`` is not a database URL SQLAlchemy can parse, or names a driver that is not
        installed.
    OSError
        The database cannot be opened (a missing folder for SQLite, a server that refuses).
    """
    is_sqlite = url.startswith("sqlite")
    kwargs: dict[str, Any] = {"pool_pre_ping": not is_sqlite}
    if is_sqlite:
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        kwargs["pool_size"] = 20
        kwargs["max_overflow"] = 20
    try:
        engine = create_engine(url, **kwargs)
    except ArgumentError:  # not echoed: a malformed URL may still hold a password
        raise ValueError(f"the database URL cannot be parsed; expected {_URL_FORMS}") from None
    except ImportError as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        raise ValueError(
            f"database URL {shown} needs a driver that is not installed ({exc}); expected {_URL_FORMS}"
        ) from None
    if is_sqlite:
        _sqlite_setup(engine)
    try:
        Base.metadata.create_all(engine)
    except OperationalError as exc:
        shown = engine.url.render_as_string(hide_password=True)
        raise OSError(f"cannot open the database {shown}: {' '.join(str(exc.orig).split())}") from None
    add_missing_columns(engine)
    return engine


def add_missing_columns(engine: Engine) -> list[str]:
    """Add the columns of existing tables that a database created by an older version lacks.

    Each column is nullable or has a server default, so existing rows stay valid. Several server
    processes may start at once (``serve --workers N``): a column another one added in between
    is not an error. Returns ``table.column`` of each column added.
    """
    inspector = inspect(engine)
    added = []
    for table in Base.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            ddl = f"{column.name} {column.type.compile(dialect=engine.dialect)}"
            if column.server_default is not None:
                ddl += f" NOT NULL DEFAULT {column.server_default.arg}"
            try:
                with engine.begin() as conn:
                    conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {ddl}")
                added.append(f"{table.name}.{column.name}")
            except DBAPIError:
                names = {c["name"] for c in inspect(engine).get_columns(table.name)}
                if column.name not in names:
                    raise
    return added


class Database:
    """Session factories over one engine: :meth:`read` for queries, :meth:`write` for changes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(write=True), expire_on_commit=False)

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session:
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction: committed when the block ends normally, rolled back on any exception."""
        with self._write() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
