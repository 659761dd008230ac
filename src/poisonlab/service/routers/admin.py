"""Identity, health, metrics, alerts, the audit log, API keys and data sources.

``GET /v1/health`` needs no key and so says only whether the service is alive and serving; which
model it serves and which software runs it are identifying details, answered by ``GET /v1/status``
to a viewer key.
"""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from poisonlab import __version__
from poisonlab.service import alerts, audit, auth, sources
from poisonlab.service.deps import (
    AdminDep,
    JsonContent,
    KeysDep,
    MetricsDep,
    ServerDep,
    SessionDep,
    ViewerDep,
    WriteSessionDep,
)
from poisonlab.service.errors import ServiceError
from poisonlab.service.routers.common import errors
from poisonlab.service.schemas import (
    AlertOut,
    AuditOut,
    HealthOut,
    KeyCreatedOut,
    KeyIn,
    KeyOut,
    MeOut,
    SourceIn,
    SourceOut,
    StatusOut,
    row_id,
)

router = APIRouter(tags=["operations"])
AlertId = row_id("alert")
KeyId = row_id("API key")
# query filters compared in SQL: no control characters (PostgreSQL refuses a NUL with an error)
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


@router.get("/v1/health", response_model=HealthOut)
def health(server: ServerDep) -> HealthOut:
    """Liveness and readiness without a key: ``ok`` when a model serves, else ``no_model``.

    Nothing that identifies the model or the software: that is ``GET /v1/status`` (viewer).
    """
    return HealthOut(status="ok" if server.current() else "no_model")


@router.head("/v1/health", include_in_schema=False)
def health_head() -> Response:
    """``HEAD /v1/health`` for probes that send HEAD: the status line of ``GET`` (200 while the
    service is alive, RFC 9110 9.3.2); whether a model serves is in ``GET``'s body."""
    return Response(status_code=200)


@router.get("/v1/status", response_model=StatusOut, responses=errors(401, 403))
def status(_actor: ViewerDep, server: ServerDep) -> StatusOut:
    """The serving model's version id and the service's software version (viewer)."""
    loaded = server.current()
    return StatusOut(
        status="ok" if loaded else "no_model",
        model_version=loaded.version_id if loaded else None,
        service_version=__version__,
    )


@router.get("/metrics", response_class=Response, responses=errors(401, 403))
def metrics(_actor: ViewerDep, service_metrics: MetricsDep) -> Response:
    """Prometheus text exposition (scrape with a viewer key as bearer token)."""
    return Response(generate_latest(service_metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/me", response_model=MeOut, responses=errors(401))
def me(actor: ViewerDep) -> MeOut:
    return MeOut(name=actor.name, role=actor.role or "viewer")


@router.get("/v1/alerts", response_model=list[AlertOut], responses=errors(401, 403, 422))
def list_alerts(
    _actor: ViewerDep,
    session: SessionDep,
    open_only: bool = False,
    kind: str | None = Query(None, max_length=40, pattern=_PRINTABLE),
    limit: int = Query(100, ge=1, le=1000),
) -> list[AlertOut]:
    rows = alerts.list_alerts(session, open_only=open_only, kind=kind, limit=limit)
    return [AlertOut.model_validate(a) for a in rows]


@router.post("/v1/alerts/{alert_id}/resolve", response_model=AlertOut, responses=errors(401, 403, 404, 422))
def resolve_alert(actor: AdminDep, session: WriteSessionDep, alert_id: AlertId) -> AlertOut:
    return AlertOut.model_validate(alerts.resolve_alert(session, alert_id, actor=actor))


@router.get("/v1/audit", response_model=list[AuditOut], responses=errors(401, 403, 422))
def list_audit(
    _actor: AdminDep,
    session: SessionDep,
    limit: int = Query(100, ge=1, le=1000),
    before_id: int | None = Query(None, ge=1, le=2**62),
    actor_name: str | None = Query(None, alias="actor", max_length=100, pattern=_PRINTABLE),
) -> list[AuditOut]:
    rows = audit.list_entries(session, limit=limit, before_id=before_id, actor=actor_name)
    return [AuditOut.model_validate(e) for e in rows]


@router.get("/v1/keys", response_model=list[KeyOut], responses=errors(401, 403))
def list_keys(_actor: AdminDep, session: SessionDep) -> list[KeyOut]:
    return [KeyOut.model_validate(k) for k in auth.list_keys(session)]


@router.post(
    "/v1/keys", status_code=201, response_model=KeyCreatedOut, responses=errors(401, 403, 409, 415, 422)
)
def create_key(actor: AdminDep, _json: JsonContent, session: WriteSessionDep, body: KeyIn) -> KeyCreatedOut:
    """Create an API key; the key is in this response only."""
    try:
        key, row = auth.create_key(session, name=body.name, role=body.role, actor=actor)
    except ValueError as exc:
        status = 409 if "exists" in str(exc) else 422
        raise ServiceError(status, "conflict" if status == 409 else "invalid_input", str(exc)) from None
    return KeyCreatedOut(key=key, **KeyOut.model_validate(row).model_dump())


@router.post("/v1/keys/{key_id}/revoke", response_model=KeyOut, responses=errors(401, 403, 404, 409, 422))
def revoke_key(actor: AdminDep, session: WriteSessionDep, keys: KeysDep, key_id: KeyId) -> KeyOut:
    row = auth.revoke_key(session, key_id, actor=actor)
    session.commit()  # before clearing the cache: a request in between must not re-cache the old row
    keys.clear()  # effective on the next request
    return KeyOut.model_validate(row)


@router.get("/v1/sources", response_model=list[SourceOut], responses=errors(401, 403))
def list_sources(_actor: AdminDep, session: SessionDep) -> list[SourceOut]:
    return [SourceOut.model_validate(s) for s in sources.list_sources(session)]


@router.post(
    "/v1/sources", status_code=201, response_model=SourceOut, responses=errors(401, 403, 409, 415, 422)
)
def add_source(actor: AdminDep, _json: JsonContent, session: WriteSessionDep, body: SourceIn) -> SourceOut:
    """Register a data source with its Ed25519 public key (PEM)."""
    return SourceOut.model_validate(sources.add_source(session, body.name, body.public_key_pem, actor=actor))
