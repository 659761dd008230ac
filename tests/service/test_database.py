"""Database portability: the schema compiles for PostgreSQL, SQLite runs in WAL mode, and (opt-in,
with ``POISONLAB_TEST_POSTGRES_URL=postgresql+psycopg://...``, which ``.ci/postgres.sh`` sets) the
service runs on PostgreSQL."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from poisonlab.service.audit import Actor, record
from poisonlab.service.db import AuditEntry, Base, Database


def test_schema_compiles_for_postgresql():
    ddl = "\n".join(
        str(CreateTable(t).compile(dialect=postgresql.dialect())) for t in Base.metadata.sorted_tables
    )
    assert "TIMESTAMP WITH TIME ZONE" in ddl and "JSON" in ddl
    assert "AUTOINCREMENT" not in ddl.upper()


def test_sqlite_settings_and_append_only_audit(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'x.sqlite'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    with db.write() as session:
        record(session, Actor("a"), "test.write", "x")
    with pytest.raises(ValueError, match="append-only"), db.write() as session:
        session.query(AuditEntry).first().outcome = "changed"
    with pytest.raises(ValueError, match="append-only"), db.write() as session:
        session.delete(session.query(AuditEntry).first())
    with db.read() as session:
        assert [e.outcome for e in session.query(AuditEntry)] == ["ok"]
    db.dispose()


def test_service_on_postgresql(postgres_url, make_service, png, digits):
    # the storage path on PostgreSQL, not the screen (which may quarantine 1-2 % of clean uploads)
    svc = make_service(unsigned_policy="pending", defenses=("duplicates",), screen=False)
    assert svc.state.db.engine.dialect.name == "postgresql"  # make_service follows the URL
    contributor, trainer = svc.headers("contributor"), svc.headers("trainer")
    ids = []
    for image, label in zip(digits.test.x[:12], digits.test.y[:12], strict=True):
        r = svc.client.post(
            "/v1/contributions",
            files={"file": ("d.png", png(image))},
            data={"label": str(label)},
            headers=contributor,
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    svc.client.post(f"/v1/contributions/{ids[0]}/reject", headers=svc.headers("admin"))
    run = svc.client.post("/v1/training-runs", json={}, headers=trainer).json()
    for _ in range(600):
        run = svc.client.get(f"/v1/training-runs/{run['id']}", headers=trainer).json()
        if run["status"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    assert run["status"] == "promoted", run
    assert run["report"]["snapshot"]["contributions"] == 11
    statuses = [c["status"] for c in svc.client.get("/v1/contributions", headers=trainer).json()]
    assert sorted(statuses) == ["accepted"] * 11 + ["rejected"]
    audit = svc.client.get("/v1/audit?limit=1000", headers=svc.headers("admin")).json()
    assert {"contributions.create", "contributions.reject", "models.promote"} <= {e["action"] for e in audit}
