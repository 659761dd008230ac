"""The training-run queue is bounded: per key and for the whole service (429 ``queue_full``)."""

from __future__ import annotations

import pytest

from poisonlab.service import runs
from poisonlab.service.audit import Actor
from poisonlab.service.errors import Rejected


@pytest.fixture
def held(make_service, monkeypatch):
    """A service whose worker never starts a run: everything queued stays queued."""
    svc = make_service(max_queued_runs=3, max_queued_runs_per_key=2)
    monkeypatch.setattr(svc.state.worker, "submit", lambda run_id: None)
    return svc


def _start(svc, role):
    return svc.client.post("/v1/training-runs", json={}, headers=svc.headers(role))


def test_a_key_may_queue_only_so_many_runs(held):
    assert [_start(held, "trainer").status_code for _ in range(2)] == [202, 202]
    full = _start(held, "trainer")
    assert full.status_code == 429, full.text
    assert full.json()["code"] == "queue_full" and "per key is 2" in full.json()["detail"]
    assert full.headers["retry-after"] == "60"  # when to ask again, like the rate limiter's 429
    assert _start(held, "admin").status_code == 202  # another key still has room (3 of 3 now)
    service_full = _start(held, "admin")
    assert service_full.status_code == 429 and "the limit is 3" in service_full.json()["detail"]
    queued = held.client.get("/v1/training-runs", headers=held.headers("trainer")).json()
    assert len(queued) == 3 and {r["status"] for r in queued} == {"queued"}
    audit = held.client.get("/v1/audit?actor=trainer-key", headers=held.headers("admin")).json()
    assert any(e["outcome"].startswith("refused 429") for e in audit)  # authenticated: audited


def test_finished_runs_free_their_place(held):
    ids = [_start(held, "trainer").json()["id"] for _ in range(2)]
    assert _start(held, "trainer").status_code == 429
    with held.state.db.write() as session:
        runs.update_run(session, ids[0], status="failed")
    assert _start(held, "trainer").status_code == 202


def test_create_run_without_bounds_is_unbounded(held):
    with held.state.db.write() as session:  # library callers (the CLI, tests) choose their bounds
        for _ in range(5):
            runs.create_run(session, actor=Actor("cli"), params={})
        with pytest.raises(Rejected, match="5 training runs are queued"):
            runs.create_run(session, actor=Actor("cli"), params={}, max_queued=5)


@pytest.mark.parametrize("body", [{"epochs": True}, {"epochs": "3"}, {"epochs": 2.0}, {"defenses": "strip"}])
def test_a_run_request_of_the_wrong_json_type_is_refused_and_queues_nothing(held, body):
    """JSON's ``true`` or ``"3"`` is not an epoch count: pydantic's lax mode read them as 1 and 3."""
    response = held.client.post("/v1/training-runs", json=body, headers=held.headers("admin"))
    assert response.status_code == 422 and response.json()["code"] == "invalid_input", response.text
    assert held.client.get("/v1/training-runs", headers=held.headers("admin")).json() == []


def test_names_with_bidirectional_overrides_are_refused_by_the_api_and_the_library(held):
    from poisonlab.service.auth import create_key

    spoof = "admin\u202egnp.exe"  # displays as "adminexe.png"
    response = held.client.post(
        "/v1/keys", json={"name": spoof, "role": "viewer"}, headers=held.headers("admin")
    )
    assert response.status_code == 422 and "control characters" in response.json()["detail"]
    with held.state.db.write() as session, pytest.raises(ValueError, match="key name must not contain"):
        create_key(session, name="a\x01b", role="viewer", actor=Actor("cli"))


def test_a_queued_run_can_be_cancelled_by_its_requester_or_an_admin_and_then_never_starts(held):
    from poisonlab.service.run_claims import claim_run

    mine, other = (_start(held, "trainer").json()["id"] for _ in range(2))
    cancel = held.client.post(f"/v1/training-runs/{mine}/cancel", headers=held.headers("trainer"))
    assert cancel.status_code == 200, cancel.text
    body = cancel.json()
    assert body["status"] == "cancelled" and body["finished_at"]
    assert body["error"] == "cancelled by trainer-key"
    with held.state.db.write() as session:
        assert claim_run(session, mine, "worker-1") is False  # the worker's claim needs `queued`
    again = held.client.post(f"/v1/training-runs/{mine}/cancel", headers=held.headers("trainer"))
    assert again.status_code == 409
    assert again.json()["detail"] == f"training run {mine} is cancelled; only a queued run can be cancelled"
    assert _start(held, "trainer").status_code == 202  # the cancelled run freed its place
    admins = held.client.post(f"/v1/training-runs/{other}/cancel", headers=held.headers("admin"))
    assert admins.status_code == 200 and admins.json()["status"] == "cancelled"
    audit = held.client.get("/v1/audit?actor=admin-key", headers=held.headers("admin")).json()
    assert any(e["action"] == "training_runs.cancel" and e["target"] == f"run:{other}" for e in audit)


def test_only_the_requester_or_an_admin_may_cancel_and_not_once_started(held):
    run_id = _start(held, "admin").json()["id"]
    foreign = held.client.post(f"/v1/training-runs/{run_id}/cancel", headers=held.headers("trainer"))
    assert foreign.status_code == 403 and "only the key that queued a run" in foreign.json()["detail"]
    with held.state.db.write() as session:
        runs.update_run(session, run_id, status="running")
    started = held.client.post(f"/v1/training-runs/{run_id}/cancel", headers=held.headers("admin"))
    assert started.status_code == 409 and "is running" in started.json()["detail"]
    missing = held.client.post("/v1/training-runs/999/cancel", headers=held.headers("admin"))
    assert missing.status_code == 404
