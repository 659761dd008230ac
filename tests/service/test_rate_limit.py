"""Rate limits: token buckets per accepted key and per client address without one (429 with
Retry-After, before any work is done), and anonymous refusals counted in metrics rather than
written to the audit log one row each."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select

from poisonlab.service.audit import AnonymousRefusals
from poisonlab.service.db import AuditEntry
from poisonlab.service.ratelimit import TokenBuckets, client_address, key_digest

_AUDIT_ROWS = select(func.count()).select_from(AuditEntry)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_admits_a_burst_then_refills_at_the_rate():
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # one token comes back in 1 / rate seconds
    assert buckets.take("b") == 0.0  # another identity has its own bucket
    clock.now += 0.5
    assert buckets.take("a") == 0.0 and buckets.take("a") == pytest.approx(0.5)
    clock.now += 100  # refills up to the burst, no further
    assert [buckets.take("a") for _ in range(4)][-1] > 0


def test_token_bucket_off_bounded_and_validated():
    off = TokenBuckets(rate=0, burst=1)
    assert all(off.take("a") == 0.0 for _ in range(100))
    bounded = TokenBuckets(rate=1, burst=1, max_identities=2)
    for name in "abc":
        bounded.admit(name)
    assert len(bounded) == 2 and "a" not in bounded and "c" in bounded  # least recently used dropped
    with pytest.raises(ValueError, match="burst"):
        TokenBuckets(rate=1, burst=0)


def test_identity_comes_from_the_headers_and_the_peer():
    scope = {"headers": [(b"x-api-key", b"imrecs_abc")], "client": ("10.0.0.1", 5)}
    assert key_digest(scope) == hashlib.sha256(b"imrecs_abc").digest()
    bearer = {"headers": [(b"authorization", b"Bearer imrecs_abc")]}
    assert key_digest(bearer) == key_digest(scope)
    assert key_digest({"headers": [(b"authorization", b"Basic eA==")]}) is None
    assert client_address(scope) == "10.0.0.1" and client_address({}) == "unknown"


def _metric(svc, name: str) -> float:
    text = svc.client.get("/metrics", headers=svc.headers("admin")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_a_flooding_key_gets_429_and_another_key_does_not(make_service):
    svc = make_service(rate_limit_per_key=0.001, rate_limit_key_burst=3, rate_limit_anonymous=0)
    viewer, trainer = svc.headers("viewer"), svc.headers("trainer")
    codes = [svc.client.get("/v1/me", headers=viewer).status_code for _ in range(6)]
    # the first request proves the key (drawn from the address's bucket), then the key's 3 tokens
    assert codes == [200, 200, 200, 200, 429, 429]
    refused = svc.client.get("/v1/me", headers=viewer)
    assert refused.json()["code"] == "rate_limited" and "per API key" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) >= 1
    assert all(svc.client.get("/v1/me", headers=trainer).status_code == 200 for _ in range(3))
    assert _metric(svc, 'imrecs_rate_limited_total{bucket="key"}') == 3


def test_a_limited_upload_is_refused_before_any_work(make_service, png, digits):
    svc = make_service(rate_limit_per_key=0.001, rate_limit_key_burst=1, rate_limit_anonymous=0)
    contributor = svc.headers("contributor")
    assert svc.client.get("/v1/me", headers=contributor).status_code == 200  # key proven
    assert svc.client.get("/v1/me", headers=contributor).status_code == 200  # its one token
    with svc.state.db.read() as session:
        before = session.execute(_AUDIT_ROWS).scalar()
    response = svc.client.post(
        "/v1/contributions",
        files={"file": ("d.png", png(digits.test.x[0]))},
        data={"label": "1"},
        headers=contributor,
    )
    assert response.status_code == 429
    with svc.state.db.read() as session:
        assert session.execute(_AUDIT_ROWS).scalar() == before  # no audit entry, no contribution
    assert list(svc.state.store) == []


def test_requests_without_an_accepted_key_are_limited_per_address(make_service):
    svc = make_service(rate_limit_anonymous=0.001, rate_limit_anonymous_burst=5)
    viewer = svc.headers("viewer")
    assert svc.client.get("/v1/me", headers=viewer).status_code == 200  # proves the key (1 token)
    assert svc.client.get("/v1/me", headers=svc.headers("admin")).status_code == 200  # for /metrics
    assert svc.client.get("/v1/me").status_code == 401
    assert svc.client.get("/v1/me", headers={"X-API-Key": "imrecs_" + "x" * 43}).status_code == 401
    # random keys draw on the address's bucket too: they cannot buy fresh buckets
    assert svc.client.get("/v1/me", headers={"X-API-Key": "imrecs_" + "y" * 43}).status_code == 401
    limited = svc.client.get("/v1/me", headers={"X-API-Key": "imrecs_" + "z" * 43})
    assert limited.status_code == 429 and "per client address" in limited.json()["detail"]
    assert svc.client.get("/v1/me").status_code == 429
    assert svc.client.get("/v1/me", headers=viewer).status_code == 200  # a proven key is not affected
    assert svc.client.get("/v1/health").status_code == 200  # liveness probes are never limited
    assert _metric(svc, 'imrecs_rate_limited_total{bucket="address"}') == 2


def test_anonymous_refusals_sampler_one_entry_per_address_per_window():
    clock = Clock()
    sampler = AnonymousRefusals(60, clock=clock)
    assert sampler.admit("a") == 0
    assert [sampler.admit("a") for _ in range(5)] == [None] * 5
    assert sampler.admit("b") == 0
    clock.now += 61
    assert sampler.admit("a") == 5 and sampler.admit("a") is None
    assert all(AnonymousRefusals(0, clock=clock).admit("a") == 0 for _ in range(3))


def test_anonymous_refusals_are_counted_not_logged_one_row_each(make_service):
    svc = make_service(rate_limit_anonymous=0)
    for _ in range(30):
        assert svc.client.post("/v1/training-runs", json={}).status_code == 401
    svc.client.post("/v1/models/rollback", headers=svc.headers("trainer"))  # authenticated: logged
    svc.client.post("/v1/models/rollback", headers=svc.headers("trainer"))
    admin = svc.headers("admin")
    refused = [
        e for e in svc.client.get("/v1/audit", headers=admin).json() if e["outcome"].startswith("refused")
    ]
    anonymous = [e for e in refused if e["actor"] == "anonymous"]
    assert len(anonymous) == 1 and anonymous[0]["target"] == "/v1/training-runs from testclient"
    assert [e["target"] for e in refused if e["actor"] == "trainer-key"] == [
        "/v1/models/rollback from testclient"
    ] * 2
    assert _metric(svc, 'imrecs_anonymous_refusals_total{status="401"}') == 30
    svc.state.anonymous_refusals.clock = lambda: 10.0**9  # the window has passed
    svc.client.post("/v1/training-runs", json={})
    latest = svc.client.get("/v1/audit?limit=1&actor=anonymous", headers=admin).json()[0]
    assert latest["outcome"].startswith("refused 401") and "+29 more" in latest["outcome"]
