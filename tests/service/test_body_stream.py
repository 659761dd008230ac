"""A request body that stops arriving: a time limit (408), and a client that leaves (not a 500)."""

from __future__ import annotations

import json
import logging

import anyio


def _call(app, headers: dict[str, str], receive) -> tuple[int, dict]:
    """Run one ASGI request on ``app``; its status and JSON body."""
    sent: list[dict] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/predict/batch",
        "raw_path": b"/v1/predict/batch",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }

    async def send(message: dict) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)


def _headers(svc) -> dict[str, str]:
    return {**svc.headers("viewer"), "Content-Type": "application/json", "Content-Length": "100"}


def test_a_body_that_stops_arriving_is_refused_after_the_idle_limit(make_service):
    svc = make_service(body_idle_s=0.3)
    parts = iter([{"type": "http.request", "body": b'{"instan', "more_body": True}])

    async def receive() -> dict:
        part = next(parts, None)
        if part is None:
            await anyio.sleep_forever()  # announced 100 bytes, sent 8: the slow-loris client
        return part

    status, body = _call(svc.client.app, _headers(svc), receive)
    assert status == 408 and body["code"] == "body_timeout"
    assert "nothing more arrived within 0.3 s" in body["detail"]


def test_a_client_that_leaves_mid_body_is_not_a_server_error(make_service, caplog):
    svc = make_service()
    parts = iter(
        [{"type": "http.request", "body": b'{"instan', "more_body": True}, {"type": "http.disconnect"}]
    )

    async def receive() -> dict:
        return next(parts, {"type": "http.disconnect"})

    with caplog.at_level(logging.INFO, logger="poisonlab.service"):
        status, body = _call(svc.client.app, _headers(svc), receive)
    assert status == 499 and body["code"] == "client_closed"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no "unhandled error"
    metrics = svc.client.get("/metrics", headers=svc.headers("admin")).text
    assert 'status="500"' not in metrics


def test_a_request_with_both_length_and_chunked_framing_is_refused(make_service):
    """Content-Length beside Transfer-Encoding is the request-smuggling shape (RFC 9112 6.1)."""
    svc = make_service()
    reads = []

    async def receive() -> dict:
        reads.append(1)
        return {"type": "http.request", "body": b"{}", "more_body": False}

    headers = {**_headers(svc), "Transfer-Encoding": "chunked"}
    status, body = _call(svc.client.app, headers, receive)
    assert status == 400 and body["code"] == "bad_request"
    assert "Content-Length or Transfer-Encoding, not both" in body["detail"]
    assert not reads  # refused before any of the body was read
