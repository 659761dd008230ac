"""Least privilege: every endpoint refuses every role below its own (403) and requests without a
valid key (401); refused writes land in the audit log."""

from __future__ import annotations

import time

import pytest

from poisonlab.service.audit import Actor
from poisonlab.service.auth import ROLES, create_key, revoke_key

MODEL = "{model}"  # replaced by the serving model's id
# (method, path, lowest role, request kwargs). Probes at allowed roles use harmless input (unknown
# ids, invalid bodies) so that the matrix changes nothing.
ENDPOINTS = [
    ("POST", "/v1/predict", "viewer", {"files": {"file": ("x.png", b"not an image", "image/png")}}),
    ("POST", "/v1/predict/batch", "viewer", {"json": {"instances": []}}),
    ("GET", "/v1/models", "viewer", {}),
    ("GET", f"/v1/models/{MODEL}", "viewer", {}),
    ("GET", "/v1/alerts", "viewer", {}),
    ("GET", "/v1/me", "viewer", {}),
    ("GET", "/v1/status", "viewer", {}),
    ("GET", "/metrics", "viewer", {}),
    (
        "POST",
        "/v1/contributions",
        "contributor",
        {"files": {"file": ("x.png", b"nope", "image/png")}, "data": {"label": "1"}},
    ),
    ("GET", "/v1/contributions", "trainer", {}),
    ("GET", "/v1/contributions/999", "trainer", {}),
    ("POST", "/v1/training-runs", "trainer", {"json": {"epochs": 0}}),
    ("GET", "/v1/training-runs", "trainer", {}),
    ("GET", "/v1/training-runs/999", "trainer", {}),
    ("POST", "/v1/training-runs/999/cancel", "trainer", {}),
    ("POST", "/v1/contributions/999/release", "admin", {}),
    ("POST", "/v1/contributions/999/reject", "admin", {}),
    ("POST", f"/v1/models/{MODEL}/promote", "admin", {}),
    ("POST", "/v1/models/rollback", "admin", {}),
    ("GET", "/v1/audit", "admin", {}),
    ("GET", "/v1/keys", "admin", {}),
    ("POST", "/v1/keys", "admin", {"json": {"name": "", "role": "viewer"}}),
    ("POST", "/v1/keys/999/revoke", "admin", {}),
    ("GET", "/v1/sources", "admin", {}),
    ("POST", "/v1/sources", "admin", {"json": {"name": "cam", "public_key_pem": "not a key"}}),
    ("POST", "/v1/alerts/999/resolve", "admin", {}),
]
PUBLIC = {("GET", "/v1/health"), ("GET", "/"), ("GET", "/ui/{name}")}


def _call(svc, method, path, role, kwargs, key=None):
    model = svc.state.server.current().version_id
    headers = {"X-API-Key": key} if key is not None else svc.headers(role)
    return svc.client.request(method, path.replace(MODEL, model), headers=headers, **kwargs)


def test_every_api_route_is_in_the_matrix(service):
    # from the OpenAPI document: FastAPI 0.16x keeps included routers as opaque entries of
    # ``app.routes``, where an isinstance(APIRoute) filter found none and this test checked nothing
    paths = service.client.app.openapi()["paths"]
    routes = {(method.upper(), path) for path, item in paths.items() for method in item}
    assert len(routes) >= 25, sorted(routes)
    listed = {(m, p.replace(MODEL, "{model_id}")) for m, p, _, _ in ENDPOINTS}
    normalise = {"/v1/contributions/999": "/v1/contributions/{contribution_id}"}
    listed = {(m, _template(p)) for m, p in listed} | {(m, normalise.get(p, p)) for m, p in listed}
    missing = sorted(r for r in routes - PUBLIC if r not in listed)
    assert not missing, f"endpoints without an access-control row: {missing}"


def _template(path: str) -> str:
    for prefix, name in (
        ("/v1/contributions/", "contribution_id"),
        ("/v1/training-runs/", "run_id"),
        ("/v1/keys/", "key_id"),
        ("/v1/alerts/", "alert_id"),
    ):
        if path.startswith(prefix) and path[len(prefix) :].split("/")[0].isdigit():
            rest = path[len(prefix) :].split("/", 1)
            return prefix + "{" + name + "}" + ("/" + rest[1] if len(rest) > 1 else "")
    return path


@pytest.mark.parametrize(
    ("method", "path", "needed", "kwargs"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS]
)
def test_role_matrix(service, method, path, needed, kwargs):
    for role in ROLES:
        response = _call(service, method, path, role, kwargs)
        if ROLES.index(role) < ROLES.index(needed):
            assert response.status_code == 403, (role, response.status_code, response.text)
            assert response.json()["code"] == "forbidden"
            assert needed in response.json()["detail"]
        else:
            assert response.status_code not in (401, 403), (role, response.status_code, response.text)
    missing = _call(service, method, path, None, kwargs)
    assert missing.status_code == 401 and missing.json()["code"] == "unauthenticated"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = _call(service, method, path, None, kwargs, key="imrecs_" + "x" * 43)
    assert wrong.status_code == 401 and "unknown" in wrong.json()["detail"]


def test_bearer_header_and_revoked_key(service):
    db = service.state.db
    with db.write() as session:
        key, row = create_key(session, name="temp", role="viewer", actor=Actor("test"))
    assert service.client.get("/v1/me", headers={"Authorization": f"Bearer {key}"}).json() == {
        "name": "temp",
        "role": "viewer",
    }
    revoked = service.client.post(f"/v1/keys/{row.id}/revoke", headers=service.headers("admin"))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert service.client.get("/v1/me", headers={"X-API-Key": key}).status_code == 401  # at once


def test_health_answers_head_without_a_key(service):
    head = service.client.head("/v1/health")
    assert head.status_code == 200 and head.content == b""
    assert service.client.head("/v1/status").status_code in (401, 405)  # only health is public


def test_the_last_active_admin_key_cannot_be_revoked(service):
    admin = service.headers("admin")
    me = [k for k in service.client.get("/v1/keys", headers=admin).json() if k["role"] == "admin"]
    assert len(me) == 1
    refused = service.client.post(f"/v1/keys/{me[0]['id']}/revoke", headers=admin)
    assert refused.status_code == 409 and refused.json()["code"] == "last_admin"
    assert "create another admin key" in refused.json()["detail"]
    assert service.client.get("/v1/me", headers=admin).status_code == 200
    other = service.client.post("/v1/keys", json={"name": "ops", "role": "admin"}, headers=admin).json()
    gone = service.client.post(f"/v1/keys/{me[0]['id']}/revoke", headers=admin)
    assert gone.status_code == 200
    assert service.client.get("/v1/me", headers={"X-API-Key": other["key"]}).json()["role"] == "admin"
    last = service.client.post(f"/v1/keys/{other['id']}/revoke", headers={"X-API-Key": other["key"]})
    assert last.status_code == 409


def test_revocation_from_another_process_applies_within_the_cache_ttl(service):
    with service.state.db.write() as session:
        key, row = create_key(session, name="temp", role="viewer", actor=Actor("test"))
    service.state.keys.ttl = 0.2
    assert service.client.get("/v1/me", headers={"X-API-Key": key}).status_code == 200
    with service.state.db.write() as session:  # as `poisonlab keys revoke` would
        revoke_key(session, row.id, actor=Actor("cli"))
    time.sleep(0.25)
    assert service.client.get("/v1/me", headers={"X-API-Key": key}).status_code == 401


def test_keys_are_stored_hashed_and_shown_once(service):
    admin = service.headers("admin")
    created = service.client.post("/v1/keys", json={"name": "alice", "role": "contributor"}, headers=admin)
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("imrecs_") and len(key) >= 40
    listed = service.client.get("/v1/keys", headers=admin).json()
    assert all("key" not in k for k in listed) and any(k["name"] == "alice" for k in listed)
    with service.state.db.engine.connect() as conn:
        dump = "\n".join(str(row) for row in conn.exec_driver_sql("SELECT * FROM api_keys"))
    assert key not in dump
    again = service.client.post("/v1/keys", json={"name": "alice", "role": "viewer"}, headers=admin)
    assert again.status_code == 409


def test_refused_writes_are_audited(service):
    client = service.client
    client.post("/v1/models/rollback", headers=service.headers("trainer"))
    client.post("/v1/training-runs", json={}, headers={"X-API-Key": "imrecs_bogus"})
    client.post("/v1/training-runs", json={"defenses": []}, headers=service.headers("trainer"))
    entries = client.get("/v1/audit", headers=service.headers("admin")).json()
    refused = [(e["actor"], e["action"], e["outcome"]) for e in entries if e["outcome"].startswith("refused")]
    assert (
        "trainer-key",
        "POST /v1/models/rollback",
        "refused 403: this needs the admin role; key 'trainer-key' is trainer",
    ) in refused
    assert any(a == "anonymous" and o.startswith("refused 401") for a, _, o in refused)
    assert any(a == "trainer-key" and "defenses" in o for a, _, o in refused)
    created = [e for e in entries if e["action"] == "keys.create"]
    assert len(created) == len(ROLES) and all(e["outcome"].startswith("ok") for e in created)
