"""ASGI middleware: the request-body limit, and request metrics plus the audit of refused writes.

:class:`BodyLimitMiddleware` refuses a body whose ``Content-Length`` is over the limit before
reading anything (and a request declaring both ``Content-Length`` and ``Transfer-Encoding``, the
request-smuggling shape), and counts the bytes of every body as it streams in (chunked uploads carry no
length): the chunk that crosses the limit raises a 413 instead of being buffered, so no request
makes the service hold more than the limit.

:class:`ObserveMiddleware` times every request for Prometheus (labelled by route template, never
by raw path, to bound the label set) and writes an audit entry for every refused write
(a POST/PUT/PATCH/DELETE under ``/v1`` answered with 4xx/5xx), naming the key if one was given
and the client's address. Refusals without a valid key are counted in the metrics and sampled
into the audit log (:class:`~poisonlab.service.audit.AnonymousRefusals`), so that nobody can
flood the log without a key.
"""

from __future__ import annotations

import json
import logging
import time
from functools import partial

import anyio
from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poisonlab.service.audit import ANONYMOUS, record_refusal
from poisonlab.service.errors import error_response
from poisonlab.service.ratelimit import client_address

log = logging.getLogger("poisonlab.service")
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over the {limit:,}-byte limit")


class BodyTimeout(HTTPException):
    def __init__(self, idle_s: float) -> None:
        super().__init__(408, f"request body incomplete: nothing more arrived within {idle_s:g} s")


class BodyLimitMiddleware:
    """The body's size limit (413) and the longest wait for its next part (408).

    Parameters
    ----------
    app : ASGIApp
    max_bytes : int
        Largest body accepted.
    idle_s : float
        Longest wait for the next part of a body (uvicorn sets no such limit: a client that
        announced a length and sent less held its connection open for ever).
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, idle_s: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.idle_s = idle_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and b"transfer-encoding" in headers:
            # RFC 9112 6.1: the two framings disagree about where the body ends; a proxy in front
            # that trusts the other one would see a different request (request smuggling)
            await error_response(
                400, "a request may carry Content-Length or Transfer-Encoding, not both", "bad_request"
            )(scope, receive, send)
            return
        if length is not None:
            if not length.isdigit():
                await error_response(400, "Content-Length must be a number", "bad_request")(
                    scope, receive, send
                )
                return
            # a length of thousands of digits is over any limit (and int() refuses >4,300 digits)
            digits = length.lstrip(b"0") or b"0"
            if len(digits) > 18 or int(digits) > self.max_bytes:
                await error_response(413, str(BodyTooLarge(self.max_bytes).detail))(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            try:
                with anyio.fail_after(self.idle_s):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.idle_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, *, state: object) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status, body = 500, bytearray()

        async def observing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400 and len(body) < 4096:
                body.extend(message.get("body", b"")[:4096])
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            metrics = self.state.metrics
            metrics.requests.labels(route, scope["method"], str(status)).inc()
            metrics.latency.labels(route).observe(time.perf_counter() - start)
            if status >= 400 and "actor" not in scope.get("state", {}):
                metrics.anonymous_refusals.labels(str(status)).inc()
            if status >= 400 and scope["method"] in _WRITES and scope["path"].startswith("/v1"):
                await self._audit_refusal(scope, route, status, bytes(body))

    async def _audit_refusal(self, scope: Scope, route: str, status: int, body: bytes) -> None:
        try:
            detail = str(json.loads(body).get("detail", ""))
        except (ValueError, AttributeError):
            detail = body[:200].decode("utf-8", "replace")
        actor = scope.get("state", {}).get("actor", ANONYMOUS)
        client = client_address(scope)
        left_out = 0
        if "actor" not in scope.get("state", {}):  # no valid key: one entry per address per window
            left_out = self.state.anonymous_refusals.admit(client)
            if left_out is None:
                return
        action = f"{scope['method']} {route}"
        try:
            await anyio.to_thread.run_sync(
                partial(record_refusal, client=client, left_out=left_out),
                self.state.db,
                actor,
                action,
                scope["path"],
                status,
                detail,
            )
        except Exception:  # the response is sent; a failed audit write must be visible in the log
            log.exception("could not audit refused %s %s", scope["method"], scope["path"])
